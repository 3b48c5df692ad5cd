//! Reading a file as regions: the syntax check of the whole file, its split into one region per
//! top-level table, and each region deserialized on its own with every serde error reported at
//! its line (an unknown key is blanked and the region parsed again, so one typo hides nothing).

use super::{Loader, Source};
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// Why one region did not deserialize: the span it is about (counted from the region's start)
/// and the message to report there.
pub(super) struct RegionError {
    pub(super) span: Option<Range<usize>>,
    pub(super) message: String,
    /// An unknown key: its line can be blanked and the region parsed again.
    pub(super) unknown_field: bool,
}

impl RegionError {
    /// toml's error, with the key named when serde's message does not name it. An unknown
    /// field's message may be replaced by `explain` (given the field's name), which knows
    /// which struct was asked for.
    pub(super) fn new(
        text: &str,
        e: &toml::de::Error,
        explain: impl FnOnce(&str, &str) -> Option<String>,
    ) -> RegionError {
        let unknown_field = e.message().starts_with("unknown field");
        let message = if unknown_field {
            let field = e.message().split('`').nth(1).unwrap_or_default();
            explain(field, e.message()).unwrap_or_else(|| toml_message(e))
        } else {
            match e.span().and_then(|s| key_before(text, s.start)) {
                Some(key) => format!("{key}: {}", toml_message(e)),
                None => toml_message(e),
            }
        };
        RegionError {
            span: e.span(),
            message,
            unknown_field,
        }
    }
}

/// Deserializes a region as `T`, as the main file's regions are: no field needs explaining.
pub(super) fn parse_plain<T: serde::de::DeserializeOwned>(
    text: &str,
    parsed: &mut usize,
) -> Result<T, RegionError> {
    *parsed += text.len();
    toml::from_str(text).map_err(|e| RegionError::new(text, &e, |_, _| None))
}

impl Loader {
    /// Parses the file region by region with `parse`, reporting every error with its line.
    /// Returns the partial results in file order, each with the source of its region (its
    /// spans count from the region's start), and whether any region failed. `parse` adds the
    /// bytes it hands to the TOML parser to its counter.
    ///
    /// Each region is parsed as its own text rather than as the whole file with the rest
    /// blanked out: the blanked copy made every region cost as much as the file, so a file of
    /// n checks cost n times its size.
    pub(super) fn parse_regions<'a, T>(
        &mut self,
        source: &Source<'a>,
        parse: impl Fn(&str, &mut usize) -> Result<T, RegionError>,
    ) -> Option<(Vec<(Source<'a>, T)>, bool)> {
        self.parsed_bytes += source.text.len();
        let regions = match regions(source.text) {
            Ok(r) => r,
            Err(e) => {
                // A syntax error leaves nothing trustworthy in this file; other files go on.
                let line = e.span().map_or(0, |s| source.line(s));
                self.report(
                    source.path,
                    line,
                    format!("invalid TOML: {}", toml_message(&e)),
                );
                return None;
            }
        };
        let mut parts = Vec::new();
        let mut failed = false;
        for region in regions {
            let here = source.region(region.start);
            // Regions start at `[` (ASCII) or at 0, so no character is ever cut in half.
            let mut text = std::borrow::Cow::Borrowed(&source.text[region]);
            // An unknown key says nothing about its neighbours: blank its line and parse again,
            // so one typo does not hide the next problem in the same table.
            for _ in 0..64 {
                match parse(&text, &mut self.parsed_bytes) {
                    Ok(part) => {
                        parts.push((here, part));
                        break;
                    }
                    Err(e) => {
                        failed = true;
                        let line = e.span.clone().map_or(0, |s| here.line(s));
                        self.report(source.path, line, e.message);
                        match e.span {
                            Some(span) if e.unknown_field => {
                                match without_line(&text, span.start) {
                                    Some(next) => text = std::borrow::Cow::Owned(next),
                                    None => break,
                                }
                            }
                            _ => break,
                        }
                    }
                }
            }
        }
        Some((parts, failed))
    }
}

/// The key whose value starts at `offset`, read back from the text: serde's type errors
/// (`invalid type: integer `30`, expected a string`) do not name the field, and toml only
/// names it in a banner we do not print.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let prefix = text.get(..offset)?;
    let line = &prefix[prefix.rfind('\n').map_or(0, |i| i + 1)..];
    let (before, after) = line.rsplit_once('=')?;
    if !after.trim().is_empty() {
        return None;
    }
    // Inside an inline table the key is the last one before `=`.
    let key = before.rsplit([',', '{']).next()?.trim();
    (!key.is_empty()).then_some(key)
}

/// toml's message, minus its own location banner (we print `file:line:` ourselves).
fn toml_message(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

/// Splits a TOML document into regions that each hold one top-level table (or one element
/// of an array of tables) with its sub-tables; the first region holds the root key/values.
/// Fails with the syntax error when the document is not TOML.
pub(super) fn regions(text: &str) -> Result<Vec<Range<usize>>, toml::de::Error> {
    let items: BTreeMap<String, Spanned<ElementSpans>> = toml::from_str(text)?;
    let header_at = |span: &Range<usize>| text.as_bytes().get(span.start) == Some(&b'[');
    let mut starts: Vec<usize> = Vec::new();
    for item in items.values() {
        let elements = &item.get_ref().0;
        if elements.is_empty() {
            // A `[table]`: only headers start regions; an inline `key = { ... }` stays where it is.
            if header_at(&item.span()) {
                starts.push(item.span().start);
            }
        } else {
            starts.extend(elements.iter().filter(|s| header_at(s)).map(|s| s.start));
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let mut bounds = vec![0];
    bounds.extend(starts.into_iter().filter(|&s| s > 0));
    bounds.push(text.len());
    Ok(bounds.windows(2).map(|w| w[0]..w[1]).collect())
}

/// `text` with the line holding `offset` blanked, if that line is a plain key and what remains
/// is still TOML (a key whose value spans several lines cannot be removed this way).
fn without_line(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    if text[start..end].trim_start().starts_with('[') {
        // A table header: without it, its keys would land in the table above.
        return None;
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.extend(std::iter::repeat_n(' ', text[start..end].chars().count()));
    out.push_str(&text[end..]);
    out.parse::<toml::Table>().is_ok().then_some(out)
}

/// Spans of the elements when a top-level value is an array; empty otherwise. Lets one pass
/// over the document find every `[[check]]` header without knowing the schema.
struct ElementSpans(Vec<Range<usize>>);

impl<'de> Deserialize<'de> for ElementSpans {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ElementSpans;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ElementSpans, A::Error> {
                let mut spans = Vec::new();
                while let Some(e) = seq.next_element::<Spanned<IgnoredAny>>()? {
                    spans.push(e.span());
                }
                Ok(ElementSpans(spans))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ElementSpans, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
        }
        deserializer.deserialize_any(V)
    }
}
