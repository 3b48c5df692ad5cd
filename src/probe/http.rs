//! HTTP probe: resolve, connect, TLS, request, response, body (capped), with each phase timed.

use super::Outcome;
use crate::config::{CheckSpec, HttpCheck};

pub async fn probe(check: &CheckSpec, http: &HttpCheck) -> Outcome {
    let _ = (check, http);
    todo!("http probe")
}
