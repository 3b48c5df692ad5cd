//! HTTP probe: resolve, connect, TLS, request, response, body (capped), with each phase timed.
//!
//! Built directly on hyper's client connections rather than a pooled client so that every
//! phase is observed where it happens, as blackbox_exporter's httptrace does:
//!
//! - `resolve`: name lookup (zero for IP literals),
//! - `connect`: TCP connect,
//! - `tls`: the TLS handshake (zero for `http://`),
//! - `processing`: connection ready → response headers received (request written, server working),
//! - `transfer`: response headers → body read done (or the cap reached).
//!
//! Phases add up over redirect hops, as blackbox does. Every probe opens fresh connections and
//! keeps nothing afterwards; a multi-step check (`steps`) hands in a cookie jar, which every
//! hop reads and every response's `Set-Cookie` fills. The whole probe, redirects included, runs under the check's
//! timeout; what was learned before a timeout (phases, status) is kept in the outcome.
//!
//! This file holds the probe's record of what it learned (`Progress`, phases, errors) and the
//! outcome; `http/redirects.rs` follows the redirects, `http/connection.rs` opens one
//! connection and speaks HTTP/1.1 or HTTP/2 on it, `http/request.rs` builds each request,
//! `http/body.rs` reads the response, and `http/stream.rs` wraps the socket.

use super::condition::{Condition, Observed};
use super::tls::TlsError;
use super::{ConditionResult, ErrorClass, Outcome, Phases, ProbeError, TlsInfo};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, HttpCheck};
use cookie_store::CookieStore;
use redirects::run;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod body;
mod connection;
mod redirects;
mod request;
mod stream;

/// The `User-Agent` every probe sends unless the check sets its own.
pub const USER_AGENT_VALUE: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

/// Why one HTTP exchange failed. Mapped to an `ErrorClass` for the outcome.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("unsupported URL {0:?}: need http:// or https:// with a host")]
    BadUrl(String),
    #[error("DNS lookup of {host} failed: {source}")]
    Dns {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS lookup of {0} returned no addresses")]
    NoAddress(String),
    #[error("{host} has no IPv{version} address (ip_version = \"{version}\")")]
    NoAddressOfVersion { host: String, version: &'static str },
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// `source_address` cannot reach any of the target's addresses (another family).
    #[error("{0}")]
    Source(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid request: {0}")]
    Request(String),
    #[error("{}", chain(.0))]
    Http(#[from] hyper::Error),
    #[error("stopped after {0} redirects")]
    TooManyRedirects(u32),
    #[error("redirect with unusable Location {0:?}")]
    BadRedirect(String),
}

impl HttpError {
    fn class(&self) -> ErrorClass {
        match self {
            HttpError::Dns { .. }
            | HttpError::NoAddress(_)
            | HttpError::NoAddressOfVersion { .. } => ErrorClass::Dns,
            HttpError::Connect { source, .. } if super::is_local_resource(source) => {
                ErrorClass::Local
            }
            HttpError::Connect { .. } | HttpError::Source(_) => ErrorClass::Connect,
            HttpError::Tls(_) => ErrorClass::Tls,
            HttpError::TooManyRedirects(_) => ErrorClass::TooManyRedirects,
            HttpError::BadUrl(_)
            | HttpError::Request(_)
            | HttpError::Http(_)
            | HttpError::BadRedirect(_) => ErrorClass::Protocol,
        }
    }
}

/// `error: cause: cause`, because hyper's top-level message alone ("connection error") rarely
/// tells on-call what happened.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// An HTTP probe's phases, named as blackbox names them (the names appear in timeout messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
enum Phase {
    Resolve,
    Connect,
    Tls,
    Processing,
    Transfer,
}

impl Phase {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What the probe has learned so far. It lives outside the future that the timeout cancels,
/// so a timed-out probe still reports its phases and whatever response it saw.
#[derive(Default)]
struct Progress {
    phases: Phases,
    /// The phase running now and since when, so a timeout or error charges the wait to it.
    current: Option<(Phase, Instant)>,
    status: Option<u16>,
    http_version: Option<f64>,
    /// TLS of the last hop (`None` when the last hop was plain HTTP).
    tls: Option<TlsInfo>,
    /// The last hop got a TCP connection.
    connected: bool,
    body: Vec<u8>,
    /// The body was longer than the cap; `body` holds its first `max_body_bytes`.
    body_truncated: bool,
    redirects: u32,
    /// Headers of the last response, for `[HEADER].Name` conditions.
    headers: Option<hyper::HeaderMap>,
    /// The address of the last connection, for `[IP]`.
    ip: Option<String>,
    /// Cookies kept across hops and steps (multi-step checks only; single checks keep none).
    jar: Option<CookieStore>,
}

impl Progress {
    /// Ends the running phase (if any) and starts `phase`.
    fn begin(&mut self, phase: Phase) {
        self.end();
        self.current = Some((phase, Instant::now()));
    }

    /// Ends the running phase, adding its time to the total for that phase.
    fn end(&mut self) {
        if let Some((phase, since)) = self.current.take() {
            let slot = match phase {
                Phase::Resolve => &mut self.phases.resolve,
                Phase::Connect => &mut self.phases.connect,
                Phase::Tls => &mut self.phases.tls,
                Phase::Processing => &mut self.phases.processing,
                Phase::Transfer => &mut self.phases.transfer,
            };
            *slot += since.elapsed();
        }
    }
}

/// Runs one HTTP check once. Never takes (much) longer than `check.timeout`, never panics on
/// what a peer sends, and reads at most `max_body_bytes` of body.
pub async fn probe(check: &CheckSpec, http: &HttpCheck) -> Outcome {
    exchange_step(&check.name, &check.conditions, check.timeout, http, None)
        .await
        .outcome
}

/// One HTTP exchange (redirects included) as a multi-step check's step sees it: the outcome,
/// and the final response's body and headers to extract values from.
pub(crate) struct StepExchange {
    pub outcome: Outcome,
    pub body: Vec<u8>,
    pub headers: Option<hyper::HeaderMap>,
    /// The cookie jar handed in, with this exchange's `Set-Cookie`s added.
    pub jar: Option<CookieStore>,
}

/// Runs one HTTP exchange under `timeout` and evaluates `conditions` on it. With a `jar`,
/// cookies it holds are sent and cookies set by every response (redirects too) are kept.
pub(crate) async fn exchange_step(
    name: &str,
    conditions: &[Condition],
    timeout: Duration,
    http: &HttpCheck,
    jar: Option<CookieStore>,
) -> StepExchange {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let mut progress = Progress {
        jar,
        ..Progress::default()
    };
    let result = tokio::time::timeout(timeout, run(http, &mut progress)).await;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(ProbeError {
            class: e.class(),
            message: e.to_string(),
        }),
        Err(_elapsed) => Some(ProbeError {
            class: ErrorClass::Timeout,
            message: format!(
                "timed out after {}{}",
                humantime::format_duration(timeout),
                progress
                    .current
                    .map(|(p, _)| format!(" during {}", p.as_str()))
                    .unwrap_or_default()
            ),
        }),
    };
    progress.end();
    let duration = start.elapsed();
    let outcome = finish(name, conditions, started_at, duration, &mut progress, error);
    StepExchange {
        outcome,
        body: std::mem::take(&mut progress.body),
        headers: progress.headers.take(),
        jar: progress.jar.take(),
    }
}

/// Evaluates conditions and assembles the outcome.
fn finish(
    name: &str,
    check_conditions: &[Condition],
    started_at: Timestamp,
    duration: Duration,
    progress: &mut Progress,
    mut error: Option<ProbeError>,
) -> Outcome {
    let conditions: Vec<ConditionResult> = if check_conditions.is_empty() {
        Vec::new()
    } else {
        let observed = Observed {
            status: progress.status,
            body: progress.status.map(|_| progress.body.as_slice()),
            response_time_ms: Some(duration.as_millis() as u64),
            connected: Some(progress.connected),
            certificate_expiration_ms: progress.tls.as_ref().map(|t| {
                t.earliest_cert_expiry
                    .saturating_mul(1000)
                    .saturating_sub(started_at.as_millis())
            }),
            dns_rcode: None,
            headers: progress.headers.as_ref(),
            ip: progress.ip.as_deref(),
        };
        // One pass, so a JSON body is parsed once for all conditions.
        Condition::evaluate_all(check_conditions, &observed)
    };
    if error.is_none() {
        if let Some(failed) = conditions.iter().find(|c| !c.success) {
            error = Some(ProbeError {
                class: ErrorClass::Conditions,
                message: format!("condition failed: {}", failed.resolved),
            });
        } else if conditions.is_empty() && !progress.status.is_some_and(is_success_status) {
            // Without conditions the implicit one is "the final status is 2xx or 3xx".
            error = Some(ProbeError {
                class: ErrorClass::Conditions,
                message: format!(
                    "status {} is not 200..=399 (no conditions configured)",
                    progress
                        .status
                        .map_or_else(|| "none".to_string(), |s| s.to_string())
                ),
            });
        }
    }
    Outcome {
        check: name.to_string(),
        success: error.is_none(),
        conditions,
        status: progress.status,
        duration,
        phases: progress.phases,
        error,
        started_at,
        tls: progress.tls.take(),
        http_version: progress.http_version,
        content_length: progress.body.len() as u64,
        body_truncated: progress.body_truncated,
        redirects: progress.redirects,
        failed_due_to_regex: false,
        dns: None,
        steps: Vec::new(),
        vendor: None,
    }
}

fn is_success_status(status: u16) -> bool {
    (200..=399).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_charges_time_to_the_running_phase() {
        let mut p = Progress::default();
        p.begin(Phase::Connect);
        std::thread::sleep(Duration::from_millis(2));
        p.begin(Phase::Processing);
        p.end();
        assert!(p.phases.connect >= Duration::from_millis(2));
        assert_eq!(p.phases.resolve, Duration::ZERO);
        assert!(p.current.is_none());
    }
}
