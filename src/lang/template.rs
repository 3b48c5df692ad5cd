//! The little languages of multi-step checks: `${var}` templates and `extract` rules, parsed at load time.
//!
//! A template is text with `${name}` references (`${name|url}` percent-encodes the value; in
//! a URL every value is). An extraction takes a value from a response: the first capture
//! group of a regex, a JSON path (as conditions read JSON), or a header. Both are parsed when
//! the configuration loads, so a typo is a config error; the probe fills and applies them.

use crate::lang::condition::JsonPath;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Text with `${name}` references, parsed at load time so a typo is a config error.
#[derive(Clone, Debug)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    /// `${name}`, or `${name|url}` to percent-encode the value.
    Var {
        name: String,
        encode: bool,
    },
}

/// Why a template or an extraction could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepsError(pub String);

/// Where a variable may be used; values in a URL are always percent-encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Url,
    Text,
}

/// Variable names: letters, digits and `_`, not starting with a digit.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, StepsError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(close) = after.find('}') else {
                return Err(StepsError(format!(
                    "`${{` at column {} is never closed with `}}`",
                    text.len() - rest.len() + at + 1
                )));
            };
            let inner = &after[..close];
            let (name, encode) = match inner.split_once('|') {
                Some((name, "url")) => (name, true),
                Some((_, filter)) => {
                    return Err(StepsError(format!(
                        "unknown filter `|{filter}` in `${{{inner}}}`; the only one is `|url`"
                    )))
                }
                None => (inner, false),
            };
            if !valid_name(name) {
                return Err(StepsError(format!(
                    "`${{{inner}}}` is not a variable name (letters, digits and _)"
                )));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var {
                name: name.to_string(),
                encode,
            });
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// As written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The variables it uses, in order of appearance.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, .. } => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Fills in the variables; `Err(name)` for the first one that has no value.
    pub fn render(
        &self,
        vars: &HashMap<String, String>,
        context: Context,
    ) -> Result<String, String> {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var { name, encode } => {
                    let value = vars.get(name).ok_or_else(|| name.clone())?;
                    if *encode || context == Context::Url {
                        percent_encode(value, &mut out);
                    } else {
                        out.push_str(value);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a value can never
/// change the structure of the URL (or form body) it is put into.
fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Where a step takes a variable's value from.
#[derive(Clone, Debug)]
pub enum Source {
    /// `regex:PATTERN`: the first capture group of the first match in the body.
    Regex(regex::Regex),
    /// `json:$.a.b` or `[BODY].a.b`: a value in the JSON body.
    Json(JsonPath),
    /// `header:Name`: a header of the final response.
    Header(hyper::header::HeaderName),
}

/// One `extract` entry of a step: `name = "source"`.
#[derive(Clone, Debug)]
pub struct Extraction {
    pub var: String,
    /// As written, for messages.
    pub text: String,
    pub source: Source,
}

impl Extraction {
    pub fn parse(var: &str, text: &str) -> Result<Extraction, StepsError> {
        if !valid_name(var) {
            return Err(StepsError(format!(
                "\"{var}\" is not a variable name (letters, digits and _, not starting with a digit)"
            )));
        }
        let source = if let Some(pattern) = text.strip_prefix("regex:") {
            let re = regex::Regex::new(pattern)
                .map_err(|e| StepsError(format!("bad regex `{pattern}`: {}", regex_reason(&e))))?;
            if re.captures_len() < 2 {
                return Err(StepsError(format!(
                    "regex `{pattern}` has no capture group; put the value in ( ), as in value=\"([^\"]+)\""
                )));
            }
            Source::Regex(re)
        } else if let Some(path) = text
            .strip_prefix("[BODY]")
            .or_else(|| text.strip_prefix("json:$"))
        {
            Source::Json(JsonPath::parse(path).map_err(|e| StepsError(e.0))?)
        } else if let Some(path) = text.strip_prefix("json:") {
            Source::Json(JsonPath::parse(&format!(".{path}")).map_err(|e| StepsError(e.0))?)
        } else if let Some(name) = text.strip_prefix("header:") {
            Source::Header(
                hyper::header::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| StepsError(format!("\"{name}\" is not a header name")))?,
            )
        } else {
            return Err(StepsError(format!(
                "\"{text}\" is not regex:PATTERN, json:$.path, [BODY].path or header:Name"
            )));
        };
        Ok(Extraction {
            var: var.to_string(),
            text: text.to_string(),
            source,
        })
    }

    /// The value in this response, or why there is none.
    pub fn apply(&self, body: &[u8], headers: Option<&hyper::HeaderMap>) -> Result<String, String> {
        match &self.source {
            Source::Regex(re) => {
                let text = String::from_utf8_lossy(body);
                let caps = re
                    .captures(&text)
                    .ok_or_else(|| format!("regex `{}` found no match in the body", re.as_str()))?;
                caps.get(1).map(|m| m.as_str().to_string()).ok_or_else(|| {
                    format!("regex `{}` matched, but its group did not", re.as_str())
                })
            }
            Source::Json(path) => {
                let json: serde_json::Value =
                    serde_json::from_slice(body).map_err(|_| "the body is not JSON".to_string())?;
                match path.get(&json) {
                    None | Some(serde_json::Value::Null) => {
                        Err(format!("{} is not in the JSON body", self.text))
                    }
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(other) => Ok(other.to_string()),
                }
            }
            Source::Header(name) => headers
                .and_then(|h| h.get(name))
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .ok_or_else(|| format!("the response has no {name} header")),
        }
    }
}

fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .last()
            .unwrap_or(s)
            .trim()
            .trim_start_matches("error: ")
            .to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn templates_fill_in_and_encode_in_urls() {
        let t = Template::parse("https://x/forms/${id}/submit?t=${token}").unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["id", "token"]);
        let v = vars(&[("id", "a b/c"), ("token", "x+y=")]);
        assert_eq!(
            t.render(&v, Context::Url).unwrap(),
            "https://x/forms/a%20b%2Fc/submit?t=x%2By%3D"
        );
        let body = Template::parse("csrf=${token|url}&raw=${token}").unwrap();
        assert_eq!(
            body.render(&v, Context::Text).unwrap(),
            "csrf=x%2By%3D&raw=x+y="
        );
        assert_eq!(
            t.render(&vars(&[("id", "1")]), Context::Url),
            Err("token".to_string())
        );
        assert_eq!(Template::parse("no vars $ here").unwrap().vars().count(), 0);
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(Template::parse("x ${open")
            .unwrap_err()
            .0
            .contains("never closed"));
        assert!(Template::parse("${1x}")
            .unwrap_err()
            .0
            .contains("not a variable name"));
        assert!(Template::parse("${a|base64}")
            .unwrap_err()
            .0
            .contains("unknown filter"));
    }

    #[test]
    fn extractions_read_regex_json_and_headers() {
        let html = br#"<input type="hidden" name="csrf" value="tok-123">"#;
        let re = Extraction::parse("csrf", r#"regex:name="csrf" value="([^"]+)""#).unwrap();
        assert_eq!(re.apply(html, None), Ok("tok-123".to_string()));
        assert!(re
            .apply(b"<p>maintenance</p>", None)
            .unwrap_err()
            .contains("no match"));

        let json = br#"{"form": {"id": 42, "name": "tickets"}}"#;
        for text in ["[BODY].form.id", "json:$.form.id", "json:form.id"] {
            let x = Extraction::parse("form_id", text).unwrap();
            assert_eq!(x.apply(json, None), Ok("42".to_string()), "{text}");
        }
        let name = Extraction::parse("n", "[BODY].form.name").unwrap();
        assert_eq!(name.apply(json, None), Ok("tickets".to_string()));
        let missing = Extraction::parse("n", "[BODY].form.nope").unwrap();
        assert!(missing
            .apply(json, None)
            .unwrap_err()
            .contains("not in the JSON body"));
        assert!(missing.apply(html, None).unwrap_err().contains("not JSON"));

        let mut headers = hyper::HeaderMap::new();
        headers.insert("location", "/done/7".parse().unwrap());
        let h = Extraction::parse("next", "header:Location").unwrap();
        assert_eq!(h.apply(b"", Some(&headers)), Ok("/done/7".to_string()));
    }

    #[test]
    fn bad_extractions_are_refused() {
        assert!(Extraction::parse("x", "regex:value=.*")
            .unwrap_err()
            .0
            .contains("no capture group"));
        assert!(Extraction::parse("x", "regex:(a")
            .unwrap_err()
            .0
            .contains("bad regex"));
        assert!(Extraction::parse("x", "xpath://a")
            .unwrap_err()
            .0
            .contains("is not regex:"));
        assert!(Extraction::parse("9x", "regex:(a)")
            .unwrap_err()
            .0
            .contains("not a variable name"));
        assert!(Extraction::parse("x", "[BODY].a[b]").is_err());
    }
}
