//! The condition language (Gatus-compatible): parse at load time, evaluate against what a probe saw.
//!
//! `[STATUS] == 200`, `[BODY] == pat(*request_subject*)`, `[RESPONSE_TIME] < 3000`,
//! `[BODY].data.items[0].id == 5`, `len([BODY]) > 10`, `[CERTIFICATE_EXPIRATION] > 168h`.

use super::ConditionResult;

/// A parsed condition. Parsing rejects what cannot mean anything.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The text as written.
    pub text: String,
}

/// Why a condition could not be parsed; shown as `file:line: condition "...": {reason}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConditionError(pub String);

/// What a probe observed, for condition evaluation. Fields the probe kind does not produce are `None`.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub status: Option<u16>,
    pub body: Option<&'a [u8]>,
    pub response_time_ms: Option<u64>,
    pub connected: Option<bool>,
    /// Milliseconds until the earliest certificate expires (negative once expired).
    pub certificate_expiration_ms: Option<i64>,
    pub dns_rcode: Option<&'a str>,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        Ok(Condition {
            text: text.to_string(),
        })
    }

    pub fn evaluate(&self, observed: &Observed<'_>) -> ConditionResult {
        let _ = observed;
        todo!("condition evaluation")
    }
}
