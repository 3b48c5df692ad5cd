//! The condition language (Gatus-compatible): parse at load time, evaluate against what a probe saw.
//!
//! `[STATUS] == 200`, `[BODY] == pat(*request_subject*)`, `[RESPONSE_TIME] < 3000`,
//! `[BODY].data.items[0].id == 5`, `len([BODY]) > 10`, `[CERTIFICATE_EXPIRATION] > 168h`,
//! `[HEADER].Content-Type == pat(text/html*)`, `[BODY].version == regex(^2\.[0-9]+$)`.
//!
//! A condition is exactly two operands around one operator (`==` `!=` `<` `<=` `>` `>=`),
//! and the operator must have a space on each side: that is how Gatus tells an operator from
//! a `<` inside a literal, so we keep the rule and enforce it instead of guessing.
//!
//! An operand is one of:
//! - a placeholder: `[STATUS]`, `[BODY]` with an optional JSON path (`.key`, `[index]`),
//!   `[HEADER].Name`, `[RESPONSE_TIME]` (ms), `[CERTIFICATE_EXPIRATION]` (ms, negative once
//!   expired), `[CONNECTED]`, `[DNS_RCODE]`, `[IP]`;
//! - `len(placeholder)` or `has(placeholder)`, which turn a placeholder into a number or a boolean;
//! - a matcher, only on one side of `==` / `!=`: `pat(...)` (`*` matches any run of characters),
//!   `any(a, b, ...)`, `regex(...)` (unanchored; add `^`/`$` yourself);
//! - a literal: everything else, compared as written.
//!
//! Evaluation follows Gatus where its rules are sound: when both sides read as numbers
//! (decimal, `0x`, `0o`, `0b`, or a literal duration such as `48h`, which counts as
//! milliseconds) they compare as numbers, otherwise as exact strings. Where Gatus silently
//! turns nonsense into `0` or `false` we refuse it: at parse time when the text alone shows
//! it cannot mean anything, and at evaluation time (a failed condition whose resolved text
//! says why) when the probe did not produce the value or the value is not a number.
//!
//! Brackets must balance across the whole condition, including inside `pat()` and
//! `regex()` arguments, because that is how the operator and the function arguments are found.

use super::ConditionResult;
use regex::Regex;
use std::cell::OnceCell;
use std::fmt;

/// A parsed condition. Parsing rejects what cannot mean anything.
#[derive(Clone, Debug)]
pub struct Condition {
    /// The text as written.
    pub text: String,
    left: Operand,
    op: Op,
    right: Operand,
}

/// Two conditions are the same when they were written the same: the syntax tree is a
/// function of the text, and `Regex` has no equality of its own.
impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// Why a condition could not be parsed; shown as `file:line: condition "...": {reason}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConditionError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ConditionError> {
    Err(ConditionError(message.into()))
}

/// What a probe observed, for condition evaluation. Fields the probe kind does not produce are `None`.
///
/// Build it with `..Default::default()` so that new placeholders do not break callers.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub status: Option<u16>,
    pub body: Option<&'a [u8]>,
    pub response_time_ms: Option<u64>,
    pub connected: Option<bool>,
    /// Milliseconds until the earliest certificate expires (negative once expired).
    pub certificate_expiration_ms: Option<i64>,
    pub dns_rcode: Option<&'a str>,
    /// Response headers of the final response, for `[HEADER].Name`.
    pub headers: Option<&'a hyper::HeaderMap>,
    /// The address the probe connected to, for `[IP]`.
    pub ip: Option<&'a str>,
}

/// Shown values longer than this are cut, as Gatus does for bodies compared with `pat()`:
/// a whole HTML page in a resolved condition helps nobody and bloats every outcome.
const BODY_SHOWN_CHARS: usize = 25;
/// Other values (JSON fields, headers) are usually short and worth seeing whole, up to a point.
const VALUE_SHOWN_CHARS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }
}

/// Where a placeholder's value comes from.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    Status,
    /// `[BODY]` with a JSON path; an empty path is the whole body as text.
    Body(Vec<PathStep>),
    Header(String),
    ResponseTime,
    CertificateExpiration,
    Connected,
    DnsRcode,
    Ip,
}

impl Source {
    /// Whether the value is always a number, so comparing it with a word is nonsense.
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Source::Status | Source::ResponseTime | Source::CertificateExpiration
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
enum PathStep {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug)]
struct Placeholder {
    /// As written, e.g. `[BODY].data[0].id`.
    text: String,
    source: Source,
}

#[derive(Clone, Debug)]
enum Matcher {
    Pat(String),
    Any(Vec<String>),
    Regex(Regex),
}

#[derive(Clone, Debug)]
enum OperandKind {
    Placeholder(Placeholder),
    Len(Placeholder),
    Has(Placeholder),
    Matcher(Matcher),
    Literal,
}

#[derive(Clone, Debug)]
struct Operand {
    /// As written, trimmed.
    text: String,
    kind: OperandKind,
}

impl Operand {
    fn is_observed(&self) -> bool {
        matches!(
            self.kind,
            OperandKind::Placeholder(_) | OperandKind::Len(_) | OperandKind::Has(_)
        )
    }

    fn is_matcher(&self) -> bool {
        matches!(self.kind, OperandKind::Matcher(_))
    }

    fn uses_body(&self) -> bool {
        match &self.kind {
            OperandKind::Placeholder(p) | OperandKind::Len(p) | OperandKind::Has(p) => {
                matches!(p.source, Source::Body(_))
            }
            _ => false,
        }
    }
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return err("empty condition");
        }
        check_brackets(trimmed)?;
        let (at, op) = find_operator(trimmed)?;
        let left = parse_operand(trimmed[..at].trim())?;
        let right = parse_operand(trimmed[at + op.as_str().len()..].trim())?;
        check_meaning(&left, op, &right)?;
        Ok(Condition {
            text: text.to_string(),
            left,
            op,
            right,
        })
    }

    /// Whether evaluating needs the response body, so a probe that runs no such condition
    /// may skip reading it.
    pub fn uses_body(&self) -> bool {
        self.left.uses_body() || self.right.uses_body()
    }

    pub fn evaluate(&self, observed: &Observed<'_>) -> ConditionResult {
        self.evaluate_in(&Context::new(observed))
    }

    /// Evaluates every condition against one observation, parsing a JSON body at most once.
    pub fn evaluate_all(conditions: &[Condition], observed: &Observed<'_>) -> Vec<ConditionResult> {
        let context = Context::new(observed);
        conditions.iter().map(|c| c.evaluate_in(&context)).collect()
    }

    fn evaluate_in(&self, context: &Context<'_, '_>) -> ConditionResult {
        let left = resolve(&self.left, context);
        let right = resolve(&self.right, context);
        let (success, numeric) = match self.op {
            Op::Eq | Op::Ne => {
                let equal = match (&self.left.kind, &self.right.kind) {
                    (OperandKind::Matcher(m), _) => right.value().map(|v| m.matches(v)),
                    (_, OperandKind::Matcher(m)) => left.value().map(|v| m.matches(v)),
                    _ => match (left.value(), right.value()) {
                        (Some(l), Some(r)) => Some(equal(l, &self.left, r, &self.right)),
                        _ => None,
                    },
                };
                let numeric = matches!((left.value(), right.value()), (Some(l), Some(r))
                    if number(l, &self.left).is_some() && number(r, &self.right).is_some());
                // An operand that could not be resolved fails the condition both ways:
                // `!=` must not pass just because there was nothing to compare.
                let success = equal.is_some_and(|e| e == (self.op == Op::Eq));
                (success, numeric)
            }
            _ => {
                let l = left.value().and_then(|v| number(v, &self.left));
                let r = right.value().and_then(|v| number(v, &self.right));
                let success = match (l, r) {
                    (Some(l), Some(r)) => match self.op {
                        Op::Lt => l < r,
                        Op::Le => l <= r,
                        Op::Gt => l > r,
                        _ => l >= r,
                    },
                    _ => false,
                };
                (success, true)
            }
        };
        let needs_number = self.op.is_ordering();
        let resolved = format!(
            "{} {} {}",
            show(&self.left, &left, numeric, needs_number),
            self.op.as_str(),
            show(&self.right, &right, numeric, needs_number)
        );
        ConditionResult {
            condition: self.text.clone(),
            success,
            resolved,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// Rejects unbalanced `(`/`[` up front, so later steps can find operators and arguments by depth.
fn check_brackets(text: &str) -> Result<(), ConditionError> {
    let mut open: Vec<(char, usize)> = Vec::new();
    for (column, c) in text.chars().enumerate().map(|(i, c)| (i + 1, c)) {
        match c {
            '(' | '[' => open.push((c, column)),
            ')' | ']' => {
                let wanted = if c == ')' { '(' } else { '[' };
                match open.pop() {
                    Some((o, _)) if o == wanted => {}
                    Some((o, at)) => {
                        return err(format!(
                            "unbalanced brackets: `{o}` at column {at} is closed by `{c}` at column {column}"
                        ))
                    }
                    None => {
                        return err(format!(
                            "unbalanced brackets: `{c}` at column {column} has no matching `{wanted}`"
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    match open.first() {
        Some((o, at)) => err(format!(
            "unbalanced brackets: `{o}` at column {at} is never closed"
        )),
        None => Ok(()),
    }
}

/// Finds the one operator outside brackets that has a space on each side.
fn find_operator(text: &str) -> Result<(usize, Op), ConditionError> {
    const OPS: [(&str, Option<Op>); 7] = [
        ("==", Some(Op::Eq)),
        ("!=", Some(Op::Ne)),
        ("<=", Some(Op::Le)),
        (">=", Some(Op::Ge)),
        ("<", Some(Op::Lt)),
        (">", Some(Op::Gt)),
        // A lone `=` is never an operator, but it is the likeliest typo, so it is found and named.
        ("=", None),
    ];
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut spaced: Vec<(usize, Op)> = Vec::new();
    let mut unspaced: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => {
                if let Some((s, op)) = OPS
                    .iter()
                    .find(|(s, _)| bytes[i..].starts_with(s.as_bytes()))
                {
                    let end = i + s.len();
                    let before = i > 0 && bytes[i - 1] == b' ';
                    let after = end < bytes.len() && bytes[end] == b' ';
                    match op {
                        Some(op) if before && after => spaced.push((i, *op)),
                        _ => unspaced.push((i, s)),
                    }
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    match spaced.as_slice() {
        [one] => Ok(*one),
        [] => match unspaced.first() {
            Some((_, "=")) => err("`=` is not an operator; use `==`"),
            Some((at, s)) if *at == 0 => err(format!("operator `{s}` has nothing on its left")),
            Some((at, s)) if at + s.len() == text.len() => {
                err(format!("operator `{s}` has nothing on its right"))
            }
            Some((_, s)) => err(format!(
                "operator `{s}` must have a space on each side, as in `[STATUS] {s} 200`"
            )),
            None => err("no operator; expected one of == != < <= > >= between two operands"),
        },
        [(_, a), (_, b), ..] => err(format!(
            "more than one operator (`{}` and `{}`); a condition compares exactly two operands",
            a.as_str(),
            b.as_str()
        )),
    }
}

const PLACEHOLDERS: &str = "[STATUS], [BODY], [HEADER], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [DNS_RCODE], [IP]";

fn parse_operand(text: &str) -> Result<Operand, ConditionError> {
    let kind = if text.is_empty() {
        return err("empty operand");
    } else if text.starts_with('[') {
        OperandKind::Placeholder(parse_placeholder(text)?)
    } else if let Some((name, args)) = split_call(text)? {
        parse_function(name, args)?
    } else {
        OperandKind::Literal
    };
    Ok(Operand {
        text: text.to_string(),
        kind,
    })
}

/// `name(args)` → `Some((name, args))`; anything not shaped like a call → `None`.
fn split_call(text: &str) -> Result<Option<(&str, &str)>, ConditionError> {
    let name_len = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())))
        .map_or(text.len(), |(i, _)| i);
    if name_len == 0 || !text[name_len..].starts_with('(') {
        return Ok(None);
    }
    let name = &text[..name_len];
    let close = matching_close(text, name_len);
    if close + 1 != text.len() {
        return err(format!(
            "unexpected `{}` after `{name}(...)`",
            &text[close + 1..]
        ));
    }
    Ok(Some((name, &text[name_len + 1..close])))
}

/// Index of the bracket closing the one at `open`; brackets are known to balance.
fn matching_close(text: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate().skip(open) {
        match b {
            b'(' | b'[' => depth += 1,
            b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    text.len() - 1
}

fn parse_function(name: &str, args: &str) -> Result<OperandKind, ConditionError> {
    match name {
        "len" | "has" => {
            let arg = args.trim();
            let placeholder = if arg.starts_with('[') {
                parse_placeholder(arg)?
            } else {
                return err(format!(
                    "{name}() takes a [BODY] path or a [HEADER].Name, not `{arg}`"
                ));
            };
            if !matches!(placeholder.source, Source::Body(_) | Source::Header(_)) {
                return err(format!(
                    "{name}() takes a [BODY] path or a [HEADER].Name, not {}",
                    placeholder.text
                ));
            }
            Ok(if name == "len" {
                OperandKind::Len(placeholder)
            } else {
                OperandKind::Has(placeholder)
            })
        }
        "pat" => Ok(OperandKind::Matcher(Matcher::Pat(args.to_string()))),
        "any" => {
            let options: Vec<String> = args.split(',').map(|o| o.trim().to_string()).collect();
            if options.iter().all(|o| o.is_empty()) {
                return err("any() needs at least one value, as in any(200, 204)");
            }
            Ok(OperandKind::Matcher(Matcher::Any(options)))
        }
        "regex" => match Regex::new(args) {
            Ok(re) => Ok(OperandKind::Matcher(Matcher::Regex(re))),
            Err(e) => err(format!("bad regex `{args}`: {}", regex_reason(&e))),
        },
        _ => err(format!(
            "unknown function `{name}()`; known: len(), has(), pat(), any(), regex()"
        )),
    }
}

/// The regex crate explains syntax errors over several lines with a caret; a diagnostic is
/// one line, so keep only the closing `error: ...` sentence.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}

fn parse_placeholder(text: &str) -> Result<Placeholder, ConditionError> {
    // Brackets balance, so the first `]` closes the placeholder name.
    let close = text.find(']').unwrap_or(text.len() - 1);
    let name = &text[1..close];
    let rest = &text[close + 1..];
    let simple = |source: Source| {
        if rest.is_empty() {
            Ok(source)
        } else {
            err(format!("[{name}] takes no path, but `{rest}` follows it"))
        }
    };
    let source = match name {
        "STATUS" => simple(Source::Status)?,
        "RESPONSE_TIME" => simple(Source::ResponseTime)?,
        "CERTIFICATE_EXPIRATION" => simple(Source::CertificateExpiration)?,
        "CONNECTED" => simple(Source::Connected)?,
        "DNS_RCODE" => simple(Source::DnsRcode)?,
        "IP" => simple(Source::Ip)?,
        "BODY" => Source::Body(parse_json_path(rest)?),
        "HEADER" => {
            let header = rest.strip_prefix('.').unwrap_or("");
            if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return err(format!(
                    "[HEADER] needs a header name, as in [HEADER].Content-Type, not `[HEADER]{rest}`"
                ));
            }
            Source::Header(header.to_string())
        }
        _ => {
            let upper = format!("[{}]", name.to_ascii_uppercase());
            return if PLACEHOLDERS.split(", ").any(|p| p == upper) {
                err(format!(
                    "unknown placeholder `[{name}]`; placeholders are upper case: {upper}"
                ))
            } else {
                err(format!(
                    "unknown placeholder `[{name}]`; known: {PLACEHOLDERS}"
                ))
            };
        }
    };
    Ok(Placeholder {
        text: text.to_string(),
        source,
    })
}

/// A JSON path as written after `[BODY]` (`.form.id`, `.items[0]`), for other parts of the
/// probe that read JSON the way conditions do (multi-step extraction).
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath(Vec<PathStep>);

impl JsonPath {
    /// Parses the part after `[BODY]`; empty means the whole document.
    pub fn parse(path: &str) -> Result<JsonPath, ConditionError> {
        parse_json_path(path).map(JsonPath)
    }

    /// The value at this path, if every key and index exists.
    pub fn get<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.0.iter().try_fold(value, |v, step| match step {
            PathStep::Key(k) => v.get(k.as_str()),
            PathStep::Index(i) => v.get(*i),
        })
    }
}

/// `.data.items[0].id` → steps. Keys run to the next `.` or `[`.
fn parse_json_path(mut rest: &str) -> Result<Vec<PathStep>, ConditionError> {
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return err("empty key in JSON path after [BODY]");
            }
            steps.push(PathStep::Key(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').unwrap_or(after.len());
            let index = &after[..end];
            match index.parse::<usize>() {
                Ok(i) => steps.push(PathStep::Index(i)),
                Err(_) => return err(format!("JSON path index must be a number, not `[{index}]`")),
            }
            rest = after.get(end + 1..).unwrap_or("");
        } else {
            return err(format!(
                "unexpected `{rest}` in JSON path; use .key or [index] after [BODY]"
            ));
        }
    }
    Ok(steps)
}

/// The checks that need both operands and the operator: what the text alone shows to be nonsense.
fn check_meaning(left: &Operand, op: Op, right: &Operand) -> Result<(), ConditionError> {
    if !left.is_observed() && !right.is_observed() {
        return err(
            "neither side is a placeholder such as [STATUS] or [BODY], so the result never changes",
        );
    }
    if left.is_matcher() && right.is_matcher() {
        return err("both sides are patterns; compare a placeholder with a pattern");
    }
    let op_str = op.as_str();
    // Operator misuse first: it is the more basic mistake and the more useful message.
    if op.is_ordering() {
        for this in [left, right] {
            match &this.kind {
                OperandKind::Matcher(_) => {
                    return err(format!(
                        "`{}` can only be used with == or !=, not `{op_str}`",
                        this.text
                    ))
                }
                OperandKind::Literal if literal_number(&this.text).is_none() => {
                    return err(format!(
                        "`{op_str}` compares numbers, and `{}` is not a number or a duration",
                        this.text
                    ))
                }
                OperandKind::Placeholder(p)
                    if matches!(p.source, Source::Connected | Source::DnsRcode | Source::Ip) =>
                {
                    return err(format!(
                        "`{op_str}` compares numbers, and {} is not a number",
                        p.text
                    ))
                }
                OperandKind::Has(_) => {
                    return err(format!(
                        "`{op_str}` compares numbers, and `{}` is true or false",
                        this.text
                    ))
                }
                _ => {}
            }
        }
    }
    for (this, other) in [(left, right), (right, left)] {
        match &this.kind {
            OperandKind::Placeholder(p) if p.source == Source::Connected => {
                check_boolean(&this.text, other)?
            }
            OperandKind::Has(_) => check_boolean(&this.text, other)?,
            OperandKind::Placeholder(p) if p.source.is_numeric() => check_number(&p.text, other)?,
            OperandKind::Len(_) => check_number(&this.text, other)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_boolean(this: &str, other: &Operand) -> Result<(), ConditionError> {
    let bad = match &other.kind {
        OperandKind::Literal => !matches!(other.text.as_str(), "true" | "false"),
        OperandKind::Matcher(Matcher::Any(options)) => options
            .iter()
            .any(|o| !matches!(o.as_str(), "true" | "false")),
        _ => false,
    };
    if bad {
        return err(format!(
            "{this} is true or false, so comparing it with `{}` never holds",
            other.text
        ));
    }
    Ok(())
}

fn check_number(this: &str, other: &Operand) -> Result<(), ConditionError> {
    let bad = match &other.kind {
        OperandKind::Literal => literal_number(&other.text).is_none(),
        OperandKind::Matcher(Matcher::Any(options)) => {
            options.iter().any(|o| literal_number(o).is_none())
        }
        _ => false,
    };
    if bad {
        return err(format!(
            "{this} is a number, so comparing it with `{}` never holds",
            other.text
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------

/// Integers in decimal, `0x`, `0o`, `0b` (with an optional sign) and decimal fractions.
/// Written by hand because `f64::from_str` also accepts `inf` and `NaN`, which are words here.
fn parse_number(text: &str) -> Option<f64> {
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
fn literal_number(text: &str) -> Option<f64> {
    parse_number(text).or_else(|| {
        humantime::parse_duration(text)
            .ok()
            .map(|d| d.as_secs_f64() * 1000.0)
    })
}

/// An operand's resolved value as a number. Durations are only read from literals: a value
/// the probe reports is already in its unit, and `"5m"` in a JSON body is a word.
fn number(value: &str, operand: &Operand) -> Option<f64> {
    match operand.kind {
        OperandKind::Literal => literal_number(value),
        _ => parse_number(value),
    }
}

fn equal(left: &str, left_operand: &Operand, right: &str, right_operand: &Operand) -> bool {
    match (number(left, left_operand), number(right, right_operand)) {
        (Some(l), Some(r)) => l == r,
        _ => left == right,
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// One observation plus its body parsed as JSON on first use, shared by every condition.
struct Context<'o, 'a> {
    observed: &'o Observed<'a>,
    json: OnceCell<Option<serde_json::Value>>,
}

impl<'o, 'a> Context<'o, 'a> {
    fn new(observed: &'o Observed<'a>) -> Self {
        Context {
            observed,
            json: OnceCell::new(),
        }
    }

    fn json(&self) -> Option<&serde_json::Value> {
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
enum Resolved {
    Value(String),
    /// The value could not be had; the reason is shown in the resolved text.
    Unavailable(&'static str),
    /// Matchers have no value of their own.
    Matcher,
}

impl Resolved {
    fn value(&self) -> Option<&str> {
        match self {
            Resolved::Value(v) => Some(v),
            _ => None,
        }
    }
}

fn resolve(operand: &Operand, context: &Context<'_, '_>) -> Resolved {
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

fn resolve_placeholder(source: &Source, context: &Context<'_, '_>) -> Resolved {
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
fn body_text(body: &[u8]) -> std::borrow::Cow<'_, str> {
    match String::from_utf8_lossy(body) {
        std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.trim()),
        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.trim().to_string()),
    }
}

fn json_at<'c>(
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

fn json_len(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(a) => a.len(),
        serde_json::Value::Object(o) => o.len(),
        serde_json::Value::String(s) => s.chars().count(),
        other => other.to_string().chars().count(),
    }
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
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
fn wildcard_match(pattern: &str, value: &str) -> bool {
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
fn show(operand: &Operand, resolved: &Resolved, numeric: bool, needs_number: bool) -> String {
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
fn shorten(value: &str, limit: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` and expects the error `expected`, or success when `expected` is empty.
    fn check_parse(text: &str, expected: &str) {
        let got = match Condition::parse(text) {
            Ok(_) => String::new(),
            Err(e) => e.0,
        };
        assert_eq!(got, expected, "condition {text:?}");
    }

    #[test]
    fn parse_accepts_and_rejects() {
        let table: &[(&str, &str)] = &[
            ("[STATUS] == 200", ""),
            ("[BODY] == pat(*request_subject*)", ""),
            ("[RESPONSE_TIME] < 3000", ""),
            ("[CERTIFICATE_EXPIRATION] > 168h", ""),
            ("[BODY].data.items[0].id == 5", ""),
            ("[BODY][0].name == alice", ""),
            ("len([BODY].items) >= 0x10", ""),
            ("has([BODY].errors) == false", ""),
            ("[STATUS] == any(200, 204, 302)", ""),
            ("[CONNECTED] == true", ""),
            ("[DNS_RCODE] == NOERROR", ""),
            ("[IP] == pat(10.0.*)", ""),
            ("[HEADER].Content-Type == pat(text/html*)", ""),
            ("[BODY].version == regex(^2\\.[0-9]+$)", ""),
            ("[BODY] == pat(*<h1>Example</h1>*)", ""),
            ("200 == [STATUS]", ""),
            ("[STATUS]==200", "operator `==` must have a space on each side, as in `[STATUS] == 200`"),
            ("[RESPONSE_TIME] <3000", "operator `<` must have a space on each side, as in `[STATUS] < 200`"),
            ("[STATUS] = 200", "`=` is not an operator; use `==`"),
            ("[STATUS] ==", "operator `==` has nothing on its right"),
            ("[STATUS] 200", "no operator; expected one of == != < <= > >= between two operands"),
            ("", "empty condition"),
            ("[STATUS] == 200 == 201", "more than one operator (`==` and `==`); a condition compares exactly two operands"),
            ("[STATSU] == 200", "unknown placeholder `[STATSU]`; known: [STATUS], [BODY], [HEADER], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [DNS_RCODE], [IP]"),
            ("[status] == 200", "unknown placeholder `[status]`; placeholders are upper case: [STATUS]"),
            ("[STATUS].code == 200", "[STATUS] takes no path, but `.code` follows it"),
            ("[HEADER] == x", "[HEADER] needs a header name, as in [HEADER].Content-Type, not `[HEADER]`"),
            ("[BODY]..a == 1", "empty key in JSON path after [BODY]"),
            ("[BODY].a[x] == 1", "JSON path index must be a number, not `[x]`"),
            ("[BODY]a == 1", "unexpected `a` in JSON path; use .key or [index] after [BODY]"),
            ("[RESPONSE_TIME] < fast", "`<` compares numbers, and `fast` is not a number or a duration"),
            ("[CONNECTED] > 1", "`>` compares numbers, and [CONNECTED] is not a number"),
            ("has([BODY].a) >= 1", "`>=` compares numbers, and `has([BODY].a)` is true or false"),
            ("[STATUS] < pat(2*)", "`pat(2*)` can only be used with == or !=, not `<`"),
            ("[STATUS] == OK", "[STATUS] is a number, so comparing it with `OK` never holds"),
            ("[STATUS] == any(200, ok)", "[STATUS] is a number, so comparing it with `any(200, ok)` never holds"),
            ("[CONNECTED] == yes", "[CONNECTED] is true or false, so comparing it with `yes` never holds"),
            ("len([BODY]) == many", "len([BODY]) is a number, so comparing it with `many` never holds"),
            ("len([BODY] == 1", "unbalanced brackets: `(` at column 4 is never closed"),
            ("[BODY == 1", "unbalanced brackets: `[` at column 1 is never closed"),
            ("[STATUS]) == 1", "unbalanced brackets: `)` at column 9 has no matching `(`"),
            ("len([BODY)] == 1", "unbalanced brackets: `[` at column 5 is closed by `)` at column 10"),
            ("[BODY] == regex(a[)", "unbalanced brackets: `[` at column 18 is closed by `)` at column 19"),
            ("[BODY] == regex(a{2)", "bad regex `a{2`: unclosed counted repetition"),
            ("[BODY] == contains(x)", "unknown function `contains()`; known: len(), has(), pat(), any(), regex()"),
            ("len(x) == 1", "len() takes a [BODY] path or a [HEADER].Name, not `x`"),
            ("has([STATUS]) == true", "has() takes a [BODY] path or a [HEADER].Name, not [STATUS]"),
            ("len([BODY]) x == 1", "unexpected ` x` after `len(...)`"),
            ("pat(a*) == pat(b*)", "neither side is a placeholder such as [STATUS] or [BODY], so the result never changes"),
            ("[BODY] == any()", "any() needs at least one value, as in any(200, 204)"),
            ("200 == 200", "neither side is a placeholder such as [STATUS] or [BODY], so the result never changes"),
        ];
        for (text, expected) in table {
            check_parse(text, expected);
        }
    }

    struct Case {
        condition: &'static str,
        observed: Observed<'static>,
        success: bool,
        resolved: &'static str,
    }

    fn case(
        condition: &'static str,
        observed: Observed<'static>,
        success: bool,
        resolved: &'static str,
    ) -> Case {
        Case {
            condition,
            observed,
            success,
            resolved,
        }
    }

    fn status(s: u16) -> Observed<'static> {
        Observed {
            status: Some(s),
            ..Default::default()
        }
    }

    fn body(b: &'static str) -> Observed<'static> {
        Observed {
            status: Some(200),
            body: Some(b.as_bytes()),
            ..Default::default()
        }
    }

    #[test]
    fn evaluate_resolves_like_gatus() {
        const JSON: &str = r#"{"status":"DOWN","count":3,"items":[{"id":5},{"id":7}],"ratio":0.5,"hex":"0x1f","big":"1m"}"#;
        let cert = |ms: i64| Observed {
            certificate_expiration_ms: Some(ms),
            ..Default::default()
        };
        let table = vec![
            case(
                "[STATUS] == 200",
                status(200),
                true,
                "[STATUS] (200) == 200",
            ),
            case(
                "[STATUS] == 200",
                status(500),
                false,
                "[STATUS] (500) == 200",
            ),
            case(
                "[STATUS] != 200",
                status(500),
                true,
                "[STATUS] (500) != 200",
            ),
            case("[STATUS] < 300", status(204), true, "[STATUS] (204) < 300"),
            case(
                "[STATUS] >= 0x1F4",
                status(500),
                true,
                "[STATUS] (500) >= 0x1F4",
            ),
            case(
                "[STATUS] == any(200, 429)",
                status(429),
                true,
                "[STATUS] (429) == any(200, 429)",
            ),
            case(
                "[STATUS] == any(200, 429)",
                status(500),
                false,
                "[STATUS] (500) == any(200, 429)",
            ),
            case(
                "200 == [STATUS]",
                status(200),
                true,
                "200 == [STATUS] (200)",
            ),
            case(
                "[STATUS] == 200",
                Observed::default(),
                false,
                "[STATUS] (no response) == 200",
            ),
            // `!=` must not pass on a value that was never observed.
            case(
                "[STATUS] != 200",
                Observed::default(),
                false,
                "[STATUS] (no response) != 200",
            ),
            case(
                "[BODY].status == UP",
                body(JSON),
                false,
                "[BODY].status (DOWN) == UP",
            ),
            case(
                "[BODY].status == DOWN",
                body(JSON),
                true,
                "[BODY].status (DOWN) == DOWN",
            ),
            case(
                "[BODY].items[1].id == 7",
                body(JSON),
                true,
                "[BODY].items[1].id (7) == 7",
            ),
            case(
                "[BODY].items[2].id == 7",
                body(JSON),
                false,
                "[BODY].items[2].id (missing) == 7",
            ),
            case(
                "[BODY].nothing != x",
                body(JSON),
                false,
                "[BODY].nothing (missing) != x",
            ),
            case(
                "[BODY].status == UP",
                body("<html>"),
                false,
                "[BODY].status (body is not JSON) == UP",
            ),
            case(
                "[BODY].status == UP",
                Observed::default(),
                false,
                "[BODY].status (no body) == UP",
            ),
            case(
                "[BODY].count == 3.0",
                body(JSON),
                true,
                "[BODY].count (3) == 3.0",
            ),
            case(
                "[BODY].ratio < 1",
                body(JSON),
                true,
                "[BODY].ratio (0.5) < 1",
            ),
            case(
                "[BODY].hex == 31",
                body(JSON),
                true,
                "[BODY].hex (0x1f) == 31",
            ),
            // Durations are read from what the condition says, not from what the target sends.
            case(
                "[BODY].big == 60000",
                body(JSON),
                false,
                "[BODY].big (1m) == 60000",
            ),
            case(
                "[BODY].status < 5",
                body(JSON),
                false,
                "[BODY].status (DOWN, not a number) < 5",
            ),
            case(
                "[BODY].items == pat(*\"id\":7*)",
                body(JSON),
                true,
                "[BODY].items ([{\"id\":5},{\"id\":7}]) == pat(*\"id\":7*)",
            ),
            case(
                "len([BODY].items) == 2",
                body(JSON),
                true,
                "len([BODY].items) (2) == 2",
            ),
            case(
                "len([BODY].status) > 3",
                body(JSON),
                true,
                "len([BODY].status) (4) > 3",
            ),
            case(
                "len([BODY]) == 3",
                body("[1,2,3]"),
                true,
                "len([BODY]) (3) == 3",
            ),
            case(
                "len([BODY]) == 5",
                body(" hello\n"),
                true,
                "len([BODY]) (5) == 5",
            ),
            case(
                "has([BODY].items) == true",
                body(JSON),
                true,
                "has([BODY].items) (true) == true",
            ),
            case(
                "has([BODY].errors) == false",
                body(JSON),
                true,
                "has([BODY].errors) (false) == false",
            ),
            case(
                "has([BODY].errors) == false",
                body("oops"),
                true,
                "has([BODY].errors) (false) == false",
            ),
            case(
                "[BODY] == pat(*request_subject*)",
                body("<form><input name=\"request_subject\"></form>"),
                true,
                "[BODY] (<form><input name=\"reques...(truncated)) == pat(*request_subject*)",
            ),
            case(
                "[BODY] == pat(*request_subject*)",
                body("<h1>Maintenance</h1>\n"),
                false,
                "[BODY] (<h1>Maintenance</h1>) == pat(*request_subject*)",
            ),
            case(
                "[BODY] == pat(ok)",
                body("ok\n"),
                true,
                "[BODY] (ok) == pat(ok)",
            ),
            case(
                "[BODY] == pat(o*k*)",
                body("ok"),
                true,
                "[BODY] (ok) == pat(o*k*)",
            ),
            case(
                "[BODY] != pat(*error*)",
                body("fine"),
                true,
                "[BODY] (fine) != pat(*error*)",
            ),
            case(
                "[BODY].status == regex(^(UP|DOWN)$)",
                body(JSON),
                true,
                "[BODY].status (DOWN) == regex(^(UP|DOWN)$)",
            ),
            case(
                "[BODY] == regex(\\d{3})",
                body("abc"),
                false,
                "[BODY] (abc) == regex(\\d{3})",
            ),
            case(
                "[RESPONSE_TIME] < 3000",
                Observed {
                    response_time_ms: Some(120),
                    ..Default::default()
                },
                true,
                "[RESPONSE_TIME] (120) < 3000",
            ),
            case(
                "[RESPONSE_TIME] < 1s",
                Observed {
                    response_time_ms: Some(1500),
                    ..Default::default()
                },
                false,
                "[RESPONSE_TIME] (1500) < 1s (1000)",
            ),
            case(
                "[RESPONSE_TIME] < 3000",
                Observed::default(),
                false,
                "[RESPONSE_TIME] (not measured) < 3000",
            ),
            case(
                "[CERTIFICATE_EXPIRATION] > 48h",
                cert(200_000_000),
                true,
                "[CERTIFICATE_EXPIRATION] (200000000) > 48h (172800000)",
            ),
            case(
                "[CERTIFICATE_EXPIRATION] > 48h",
                cert(-5),
                false,
                "[CERTIFICATE_EXPIRATION] (-5) > 48h (172800000)",
            ),
            case(
                "[CERTIFICATE_EXPIRATION] > 168h",
                Observed::default(),
                false,
                "[CERTIFICATE_EXPIRATION] (no certificate) > 168h (604800000)",
            ),
            case(
                "[CONNECTED] == true",
                Observed {
                    connected: Some(false),
                    ..Default::default()
                },
                false,
                "[CONNECTED] (false) == true",
            ),
            case(
                "[DNS_RCODE] == NOERROR",
                Observed {
                    dns_rcode: Some("NXDOMAIN"),
                    ..Default::default()
                },
                false,
                "[DNS_RCODE] (NXDOMAIN) == NOERROR",
            ),
            case(
                "[IP] == pat(127.0.0.*)",
                Observed {
                    ip: Some("127.0.0.1"),
                    ..Default::default()
                },
                true,
                "[IP] (127.0.0.1) == pat(127.0.0.*)",
            ),
        ];
        for c in table {
            let condition = Condition::parse(c.condition).expect(c.condition);
            let got = condition.evaluate(&c.observed);
            assert_eq!(
                (got.success, got.resolved.as_str()),
                (c.success, c.resolved),
                "condition {:?}",
                c.condition
            );
            assert_eq!(got.condition, c.condition);
        }
    }

    #[test]
    fn header_placeholder_reads_final_response_headers() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            "content-type",
            "text/html; charset=utf-8".parse().expect("valid"),
        );
        let observed = Observed {
            headers: Some(&headers),
            ..Default::default()
        };
        let table = [
            (
                "[HEADER].Content-Type == pat(text/html*)",
                true,
                "[HEADER].Content-Type (text/html; charset=utf-8) == pat(text/html*)",
            ),
            (
                "has([HEADER].X-Request-Id) == false",
                true,
                "has([HEADER].X-Request-Id) (false) == false",
            ),
            (
                "[HEADER].Location == /",
                false,
                "[HEADER].Location (missing) == /",
            ),
        ];
        for (text, success, resolved) in table {
            let got = Condition::parse(text).expect(text).evaluate(&observed);
            assert_eq!(
                (got.success, got.resolved.as_str()),
                (success, resolved),
                "{text}"
            );
        }
        let got = Condition::parse("[HEADER].Location == /")
            .expect("valid")
            .evaluate(&Observed::default());
        assert_eq!(got.resolved, "[HEADER].Location (no response) == /");
    }

    #[test]
    fn evaluate_all_matches_evaluate_one_by_one() {
        let conditions: Vec<Condition> = ["[STATUS] == 200", "[BODY].a == 1", "[BODY].b == 2"]
            .iter()
            .map(|t| Condition::parse(t).expect(t))
            .collect();
        let observed = body(r#"{"a":1,"b":3}"#);
        let all = Condition::evaluate_all(&conditions, &observed);
        let one_by_one: Vec<_> = conditions.iter().map(|c| c.evaluate(&observed)).collect();
        assert_eq!(all, one_by_one);
        assert_eq!(
            all.iter().map(|r| r.success).collect::<Vec<_>>(),
            [true, true, false]
        );
    }

    #[test]
    fn uses_body_only_when_a_body_placeholder_appears() {
        let uses = |t: &str| Condition::parse(t).expect(t).uses_body();
        assert!(uses("[BODY] == pat(*x*)"));
        assert!(uses("len([BODY].items) > 0"));
        assert!(!uses("[STATUS] == 200"));
    }

    #[test]
    fn wildcards() {
        let table = [
            ("*", "", true),
            ("a*c", "abc", true),
            ("a*c", "ab", false),
            ("*b*", "abc", true),
            ("a*a", "a", false),
            ("abc", "abc", true),
            ("ab", "abc", false),
        ];
        for (pattern, value, expected) in table {
            assert_eq!(
                wildcard_match(pattern, value),
                expected,
                "{pattern} vs {value}"
            );
        }
    }
}
