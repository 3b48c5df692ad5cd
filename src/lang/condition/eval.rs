//! Evaluating a parsed condition: numbers, resolving placeholders against what a probe saw, matchers, and the shown form.

use super::*;

/// Integers in decimal, `0x`, `0o`, `0b` (with an optional sign) and decimal fractions.
/// Written by hand because `f64::from_str` also accepts `inf` and `NaN`, which are words here.
pub(super) fn parse_number(text: &str) -> Option<f64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let radix = [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ]
    .iter()
    .find_map(|(prefix, radix)| digits.strip_prefix(prefix).map(|d| (d, *radix)));
    let magnitude = match radix {
        Some((d, radix)) => i64::from_str_radix(d, radix).ok()? as f64,
        None => {
            let first_is_digit = digits.as_bytes().first()?.is_ascii_digit();
            let plain = digits
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
            if !first_is_digit || !plain {
                return None;
            }
            digits.parse::<f64>().ok()?
        }
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// A literal as a number: a plain number, or a duration such as `48h` in milliseconds.
pub(super) fn literal_number(text: &str) -> Option<f64> {
    parse_number(text).or_else(|| {
        humantime::parse_duration(text)
            .ok()
            .map(|d| d.as_secs_f64() * 1000.0)
    })
}

/// An operand's resolved value as a number. Durations are only read from literals: a value
/// the probe reports is already in its unit, and `"5m"` in a JSON body is a word.
pub(super) fn number(value: &str, operand: &Operand) -> Option<f64> {
    match operand.kind {
        OperandKind::Literal => literal_number(value),
        _ => parse_number(value),
    }
}

pub(super) fn equal(
    left: &str,
    left_operand: &Operand,
    right: &str,
    right_operand: &Operand,
) -> bool {
    match (number(left, left_operand), number(right, right_operand)) {
        (Some(l), Some(r)) => l == r,
        _ => left == right,
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// One observation plus its body parsed as JSON on first use, shared by every condition.
pub(super) struct Context<'o, 'a> {
    observed: &'o Observed<'a>,
    json: OnceCell<Option<serde_json::Value>>,
}

impl<'o, 'a> Context<'o, 'a> {
    pub(super) fn new(observed: &'o Observed<'a>) -> Self {
        Context {
            observed,
            json: OnceCell::new(),
        }
    }

    pub(super) fn json(&self) -> Option<&serde_json::Value> {
        self.json
            .get_or_init(|| {
                self.observed
                    .body
                    .and_then(|b| serde_json::from_slice(b).ok())
            })
            .as_ref()
    }
}

/// An operand after looking at the observation.
pub(super) enum Resolved {
    Value(String),
    /// The value could not be had; the reason is shown in the resolved text.
    Unavailable(&'static str),
    /// Matchers have no value of their own.
    Matcher,
}

impl Resolved {
    pub(super) fn value(&self) -> Option<&str> {
        match self {
            Resolved::Value(v) => Some(v),
            _ => None,
        }
    }
}

pub(super) fn resolve(operand: &Operand, context: &Context<'_, '_>) -> Resolved {
    match &operand.kind {
        OperandKind::Literal => Resolved::Value(operand.text.clone()),
        OperandKind::Matcher(_) => Resolved::Matcher,
        OperandKind::Placeholder(p) => resolve_placeholder(&p.source, context),
        OperandKind::Len(p) => match &p.source {
            Source::Body(path) if path.is_empty() => {
                let Some(body) = context.observed.body else {
                    return Resolved::Unavailable("no body");
                };
                // A JSON array body counts its elements, like a path to an array does.
                match context.json() {
                    Some(serde_json::Value::Array(a)) => Resolved::Value(a.len().to_string()),
                    _ => Resolved::Value(body_text(body).chars().count().to_string()),
                }
            }
            Source::Body(path) => match json_at(path, context) {
                Ok(v) => Resolved::Value(json_len(v).to_string()),
                Err(reason) => Resolved::Unavailable(reason),
            },
            source => match resolve_placeholder(source, context) {
                Resolved::Value(v) => Resolved::Value(v.chars().count().to_string()),
                other => other,
            },
        },
        OperandKind::Has(p) => match &p.source {
            Source::Body(_) if context.observed.body.is_none() => Resolved::Unavailable("no body"),
            Source::Body(path) if path.is_empty() => Resolved::Value(
                context
                    .observed
                    .body
                    .is_some_and(|b| !b.is_empty())
                    .to_string(),
            ),
            Source::Body(path) => Resolved::Value(json_at(path, context).is_ok().to_string()),
            Source::Header(_) if context.observed.headers.is_none() => {
                Resolved::Unavailable("no response")
            }
            source => Resolved::Value(
                matches!(resolve_placeholder(source, context), Resolved::Value(_)).to_string(),
            ),
        },
    }
}

pub(super) fn resolve_placeholder(source: &Source, context: &Context<'_, '_>) -> Resolved {
    let o = context.observed;
    let shown =
        |v: Option<String>, reason| v.map_or(Resolved::Unavailable(reason), Resolved::Value);
    match source {
        Source::Status => shown(o.status.map(|s| s.to_string()), "no response"),
        Source::ResponseTime => shown(o.response_time_ms.map(|t| t.to_string()), "not measured"),
        Source::CertificateExpiration => shown(
            o.certificate_expiration_ms.map(|t| t.to_string()),
            "no certificate",
        ),
        Source::Connected => shown(o.connected.map(|c| c.to_string()), "not measured"),
        Source::DnsRcode => shown(o.dns_rcode.map(str::to_string), "no DNS answer"),
        Source::Ip => shown(o.ip.map(str::to_string), "not resolved"),
        Source::Body(path) if path.is_empty() => {
            shown(o.body.map(|b| body_text(b).to_string()), "no body")
        }
        Source::Body(path) => match json_at(path, context) {
            Ok(serde_json::Value::String(s)) => Resolved::Value(s.clone()),
            Ok(v) => Resolved::Value(v.to_string()),
            Err(reason) => Resolved::Unavailable(reason),
        },
        Source::Header(name) => match o.headers {
            None => Resolved::Unavailable("no response"),
            Some(h) => shown(
                h.get(name.as_str())
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                "missing",
            ),
        },
    }
}

/// The body as text, trimmed like Gatus does so a trailing newline does not break `==`.
pub(super) fn body_text(body: &[u8]) -> std::borrow::Cow<'_, str> {
    match String::from_utf8_lossy(body) {
        std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.trim()),
        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.trim().to_string()),
    }
}

pub(super) fn json_at<'c>(
    path: &[PathStep],
    context: &'c Context<'_, '_>,
) -> Result<&'c serde_json::Value, &'static str> {
    if context.observed.body.is_none() {
        return Err("no body");
    }
    let mut value = context.json().ok_or("body is not JSON")?;
    for step in path {
        value = match step {
            PathStep::Key(k) => value.get(k.as_str()),
            PathStep::Index(i) => value.get(*i),
        }
        .ok_or("missing")?;
    }
    Ok(value)
}

pub(super) fn json_len(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(a) => a.len(),
        serde_json::Value::Object(o) => o.len(),
        serde_json::Value::String(s) => s.chars().count(),
        other => other.to_string().chars().count(),
    }
}

impl Matcher {
    pub(super) fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Pat(pattern) => wildcard_match(pattern, value),
            Matcher::Any(options) => {
                options
                    .iter()
                    .any(|o| match (parse_number(value), literal_number(o)) {
                        (Some(v), Some(o)) => v == o,
                        _ => value == o,
                    })
            }
            Matcher::Regex(re) => re.is_match(value),
        }
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub(super) fn wildcard_match(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        // No `*` at all: `split` yields exactly one part.
        return pattern == value;
    };
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// How one operand appears in the resolved text: placeholders with their value in
/// parentheses (`[STATUS] (500)`), literal durations with their milliseconds when they were
/// compared as numbers, everything else as written.
pub(super) fn show(
    operand: &Operand,
    resolved: &Resolved,
    numeric: bool,
    needs_number: bool,
) -> String {
    match (&operand.kind, resolved) {
        (OperandKind::Literal, _) => {
            let text = &operand.text;
            match (numeric, parse_number(text), literal_number(text)) {
                (true, None, Some(ms)) => format!("{text} ({ms})"),
                _ => text.clone(),
            }
        }
        (_, Resolved::Matcher) => operand.text.clone(),
        (_, Resolved::Unavailable(reason)) => format!("{} ({reason})", operand.text),
        (kind, Resolved::Value(v)) => {
            let limit = match kind {
                OperandKind::Placeholder(Placeholder {
                    source: Source::Body(path),
                    ..
                }) if path.is_empty() => BODY_SHOWN_CHARS,
                _ => VALUE_SHOWN_CHARS,
            };
            let mut shown = shorten(v, limit);
            if needs_number && parse_number(v).is_none() {
                shown.push_str(", not a number");
            }
            format!("{} ({shown})", operand.text)
        }
    }
}

/// Cuts long values and flattens line breaks so a resolved condition stays one line.
pub(super) fn shorten(value: &str, limit: usize) -> String {
    let flat: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > limit {
        let cut: String = flat.chars().take(limit).collect();
        format!("{cut}...(truncated)")
    } else {
        flat
    }
}
