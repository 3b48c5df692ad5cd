//! Probes: run one check once and describe what happened as an `Outcome`.
//!
//! Every probe kind has the same shape: a check spec and a deadline in, an `Outcome` out.
//! A network error, timeout or TLS failure is a failed outcome whatever the conditions say.
//! Probes hold no state between runs; thresholds and smoothing live in `health`.

/// The condition language lives in `lang` (config parses it, probes evaluate it); the old path stays.
pub use crate::lang::condition;
pub mod browser;
pub mod dns;
pub mod heartbeat;
pub mod http;
pub(crate) mod imap;
pub mod mail_roundtrip;
pub mod report;
pub mod smtp;
pub mod steps;
pub mod tcp;
pub mod tls;
pub mod vendor_status;
pub mod wake;

use crate::clock::Timestamp;
use crate::config::{CheckKind, CheckSpec};
use serde::Serialize;
use std::time::Duration;

/// Why a probe failed, coarse enough to alert and group on. The snake_case names are in the
/// outcome's JSON, the store and the logs: serde and strum must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorClass {
    /// Name resolution failed.
    Dns,
    /// TCP connect refused, reset or unreachable.
    Connect,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The check's timeout elapsed.
    Timeout,
    /// The peer spoke something that is not valid HTTP (or the protocol failed mid-way).
    Protocol,
    /// More redirects than allowed.
    TooManyRedirects,
    /// The probe ran, but one or more conditions did not hold.
    Conditions,
    /// This machine ran out of something (file descriptors, buffers, memory) before the
    /// target was reached: says nothing about the target, so it is not evidence against it.
    Local,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether an I/O error is this machine's own shortage (too many open files in the process
/// or the system, no buffer space, no memory, no such local address: a `source_address` this
/// host does not have, or no free local port) rather than anything the target did.
pub fn is_local_resource(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || e.kind() == std::io::ErrorKind::AddrNotAvailable
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeError {
    pub class: ErrorClass,
    /// Short, human-readable, no secrets.
    pub message: String,
}

/// Time spent in each phase, as blackbox_exporter splits it. Phases that did not happen are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Phases {
    #[serde(serialize_with = "secs")]
    pub resolve: Duration,
    #[serde(serialize_with = "secs")]
    pub connect: Duration,
    #[serde(serialize_with = "secs")]
    pub tls: Duration,
    /// From request sent to first response byte.
    #[serde(serialize_with = "secs")]
    pub processing: Duration,
    /// From first response byte to the end of the body read.
    #[serde(serialize_with = "secs")]
    pub transfer: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One evaluated condition (defined with the condition language, in `lang`).
pub use crate::lang::condition::ConditionResult;

/// What TLS looked like, when TLS was used.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TlsInfo {
    /// e.g. `TLS 1.3`.
    pub version: String,
    /// Earliest `notAfter` of the presented chain, Unix seconds.
    pub earliest_cert_expiry: i64,
}

/// The result of running a check once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub check: String,
    pub success: bool,
    pub conditions: Vec<ConditionResult>,
    /// HTTP status of the final response, if one arrived.
    pub status: Option<u16>,
    #[serde(rename = "duration_seconds", serialize_with = "secs")]
    pub duration: Duration,
    pub phases: Phases,
    pub error: Option<ProbeError>,
    /// When the probe started.
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// 1.0, 1.1, 2.0 when a response arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_version: Option<f64>,
    /// Body bytes read (capped).
    pub content_length: u64,
    /// The body was longer than `max_body_bytes`; only its first `content_length` bytes were read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    pub redirects: u32,
    /// The reply did not match `expect_regex` (tcp): blackbox's `probe_failed_due_to_regex`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failed_due_to_regex: bool,
    /// What a DNS reply held (dns checks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfo>,
    /// Each executed step of a multi-step check, in order (empty for other checks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// What a vendor's status feed said (vendor_status checks only): the verdict and the
    /// vendor's own words. Boxed: the other kinds pay one pointer for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<Box<vendor_status::VendorReport>>,
}

/// Record counts of a DNS reply, as blackbox exports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsInfo {
    pub answer_rrs: u16,
    pub authority_rrs: u16,
    pub additional_rrs: u16,
}

/// One step of a multi-step check: its own conditions, status, timings and error.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepResult {
    pub name: String,
    pub success: bool,
    pub conditions: Vec<ConditionResult>,
    pub status: Option<u16>,
    #[serde(rename = "duration_seconds", serialize_with = "secs")]
    pub duration: Duration,
    pub phases: Phases,
    pub error: Option<ProbeError>,
    /// Names of the variables this step set. Their values are never shown: they are often
    /// session or CSRF tokens.
    pub extracted: Vec<String>,
}

impl Outcome {
    /// One line for logs and evidence: `ok 200 in 0.012s` or `failed (connect): connection refused`.
    pub fn summary(&self) -> String {
        match (&self.error, self.success) {
            (_, true) => format!(
                "ok{} in {:.3}s{}",
                self.status.map(|s| format!(" {s}")).unwrap_or_default(),
                self.duration.as_secs_f64(),
                // A vendor's words below the check's threshold are still worth reading.
                self.vendor
                    .as_ref()
                    .filter(|v| v.impact.is_some_and(|i| i > crate::config::Impact::None))
                    .and_then(|v| v.quote())
                    .map(|q| format!("; {q}"))
                    .unwrap_or_default()
            ),
            (Some(e), false) => format!("failed ({}): {}", e.class.as_str(), e.message),
            (None, false) => "failed".to_string(),
        }
    }
}

/// Runs `check` once. Never takes longer than the check's timeout (plus scheduling slack).
///
/// The probe's state lives in a box allocated for this run only (a sleeping probe loop keeps
/// no room for it), and the wakes it causes itself are absorbed (`wake::SelfWakes`).
pub fn run(check: &CheckSpec) -> wake::SelfWakes<impl std::future::Future<Output = Outcome> + '_> {
    wake::SelfWakes::new(run_kind(check))
}

async fn run_kind(check: &CheckSpec) -> Outcome {
    match &check.kind {
        CheckKind::Http(http) => http::probe(check, http).await,
        CheckKind::Steps(steps) => steps::probe(check, steps).await,
        CheckKind::Tcp(tcp) => tcp::probe(check, tcp).await,
        CheckKind::Smtp(smtp) => smtp::probe(check, smtp).await,
        CheckKind::Dns(dns) => dns::probe(check, dns).await,
        CheckKind::VendorStatus(v) => vendor_status::probe(check, v).await,
        CheckKind::Browser(b) => browser::probe(check, b).await,
        CheckKind::MailRoundtrip(m) => mail_roundtrip::probe(check, m).await,
        // Judged by the daemon from the heartbeats jobs send (`heartbeat::Heartbeats`).
        CheckKind::Heartbeat(_) => heartbeat::outside_daemon(check),
    }
}
