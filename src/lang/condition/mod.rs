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

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use eval::*;
pub use parse::JsonPath;
use parse::*;
use regex::Regex;
use std::cell::OnceCell;
use std::fmt;

/// One evaluated condition: its text, whether it held, and the resolved form such as `[STATUS] (500) == 200`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ConditionResult {
    pub condition: String,
    pub success: bool,
    pub resolved: String,
}

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
