//! Human-readable rendering of an `Outcome`: the default output of `switchboard probe CHECK`.
//!
//! Pure: the text depends only on the outcome (relative times are measured from the probe's own
//! start), so it is tested by comparing strings.

use super::{Outcome, Phases};
use crate::clock::Timestamp;
use std::fmt::Write;

/// Renders `outcome` for a terminal:
///
/// ```text
/// ✓ portal-form  success  status 200  0.012s
///   ✓ [STATUS] (200) == 200
///   phases  resolve 0.000s  connect 0.001s  tls 0.004s  processing 0.003s  transfer 0.000s
///   http    HTTP/1.1, 5120 bytes, 0 redirects
///   tls     TLS 1.3, earliest certificate expiry 2026-03-01T00:00:00.000Z (in 90 days)
/// ```
pub fn human(outcome: &Outcome) -> String {
    let mut out = String::new();
    let (mark, word) = if outcome.success {
        ("✓", "success")
    } else {
        ("✗", "failure")
    };
    let status = outcome
        .status
        .map_or_else(|| "-".to_string(), |s| s.to_string());
    // `write!` into a String cannot fail; the results are ignored for that reason throughout.
    let _ = writeln!(
        out,
        "{mark} {}  {word}  status {status}  {:.3}s",
        outcome.check,
        outcome.duration.as_secs_f64()
    );
    if outcome.steps.is_empty() {
        for c in &outcome.conditions {
            let mark = if c.success { "✓" } else { "✗" };
            let _ = writeln!(out, "  {mark} {}", c.resolved);
        }
    }
    // A multi-step check shows each step with its own conditions, timings and error; the
    // check's conditions are the same ones again, so they are not repeated.
    for step in &outcome.steps {
        let mark = if step.success { "✓" } else { "✗" };
        let status = step
            .status
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        let extracted = if step.extracted.is_empty() {
            String::new()
        } else {
            format!("  extracted {}", step.extracted.join(", "))
        };
        let _ = writeln!(
            out,
            "  step {mark} {}  status {status}  {:.3}s{extracted}",
            step.name,
            step.duration.as_secs_f64()
        );
        for c in &step.conditions {
            let mark = if c.success { "✓" } else { "✗" };
            let _ = writeln!(out, "    {mark} {}", c.resolved);
        }
        phases_line(&mut out, "    ", &step.phases);
        if let Some(e) = &step.error {
            let _ = writeln!(out, "    error   {}: {}", e.class.as_str(), e.message);
        }
    }
    phases_line(&mut out, "  ", &outcome.phases);
    if let Some(version) = outcome.http_version {
        let version = if version == 2.0 {
            "HTTP/2".to_string()
        } else {
            format!("HTTP/{version:.1}")
        };
        let truncated = if outcome.body_truncated {
            " (body cap reached, rest not read)"
        } else {
            ""
        };
        let plural = if outcome.redirects == 1 { "" } else { "s" };
        let _ = writeln!(
            out,
            "  http    {version}, {} bytes{truncated}, {} redirect{plural}",
            outcome.content_length, outcome.redirects
        );
    }
    if let Some(tls) = &outcome.tls {
        let expiry = Timestamp::from_millis(tls.earliest_cert_expiry.saturating_mul(1000));
        let _ = writeln!(
            out,
            "  tls     {}, earliest certificate expiry {} ({})",
            tls.version,
            expiry,
            relative(expiry, outcome.started_at)
        );
    }
    if let Some(v) = &outcome.vendor {
        vendor_lines(&mut out, v);
    }
    if let Some(e) = &outcome.error {
        let _ = writeln!(out, "  error   {}: {}", e.class.as_str(), e.message);
    }
    out
}

/// A vendor check's verdict and the vendor's own words, with their source:
///
/// ```text
///   vendor  statuspage: partial outage (declared) — "Partially Degraded Service"
///           component Ticket form: partial_outage
///           incident "Ticket form errors" <https://status.example.com/incidents/x> (major)
///   source  https://status.example.com/api/v2/summary.json
/// ```
fn vendor_lines(out: &mut String, v: &super::vendor_status::VendorReport) {
    match v.impact {
        Some(impact) => {
            let declared = if v.declared { " (declared)" } else { "" };
            let said = if v.indicator.is_empty() {
                String::new()
            } else {
                format!(" — \"{}\"", v.indicator)
            };
            let _ = writeln!(
                out,
                "  vendor  {}: {}{declared}{said}",
                v.format.as_str(),
                impact.words()
            );
        }
        None => {
            let _ = writeln!(out, "  vendor  {}: not judged", v.format.as_str());
        }
    }
    for c in &v.components {
        let _ = writeln!(out, "          component {}: {}", c.name, c.status);
    }
    for i in &v.incidents {
        let url = i
            .url
            .as_ref()
            .map(|u| format!(" <{u}>"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "          incident \"{}\"{url} ({})",
            i.title,
            i.impact.as_str()
        );
    }
    let _ = writeln!(out, "  source  {}", v.source);
}

fn phases_line(out: &mut String, indent: &str, p: &Phases) {
    let _ = writeln!(
        out,
        "{indent}phases  resolve {:.3}s  connect {:.3}s  tls {:.3}s  processing {:.3}s  transfer {:.3}s",
        p.resolve.as_secs_f64(),
        p.connect.as_secs_f64(),
        p.tls.as_secs_f64(),
        p.processing.as_secs_f64(),
        p.transfer.as_secs_f64()
    );
}

/// `in 3 days`, `in 5 hours`, `expired 2 days ago`: the precision on-call needs at a glance.
fn relative(at: Timestamp, now: Timestamp) -> String {
    let delta = at.as_millis().saturating_sub(now.as_millis());
    let secs = delta.unsigned_abs() / 1000;
    let amount = if secs >= 2 * 86_400 {
        format!("{} days", secs / 86_400)
    } else if secs >= 2 * 3_600 {
        format!("{} hours", secs / 3_600)
    } else {
        format!("{} minutes", secs / 60)
    };
    if delta >= 0 {
        format!("in {amount}")
    } else {
        format!("expired {amount} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{ConditionResult, ErrorClass, Phases, ProbeError, TlsInfo};
    use std::time::Duration;

    fn outcome() -> Outcome {
        Outcome {
            check: "portal-form".to_string(),
            success: true,
            conditions: Vec::new(),
            status: Some(200),
            duration: Duration::from_millis(12),
            phases: Phases {
                resolve: Duration::from_millis(1),
                connect: Duration::from_millis(2),
                tls: Duration::from_millis(4),
                processing: Duration::from_millis(3),
                transfer: Duration::from_millis(2),
            },
            error: None,
            started_at: Timestamp::from_millis(1_700_000_000_000),
            tls: None,
            http_version: Some(1.1),
            content_length: 5120,
            body_truncated: false,
            redirects: 0,
            failed_due_to_regex: false,
            dns: None,
            steps: Vec::new(),
            vendor: None,
        }
    }

    fn check(outcome: &Outcome, expect: &str) {
        assert_eq!(human(outcome), expect, "\n{}", human(outcome));
    }

    #[test]
    fn success_without_conditions() {
        check(
            &outcome(),
            "✓ portal-form  success  status 200  0.012s\n\
             \x20 phases  resolve 0.001s  connect 0.002s  tls 0.004s  processing 0.003s  transfer 0.002s\n\
             \x20 http    HTTP/1.1, 5120 bytes, 0 redirects\n",
        );
    }

    #[test]
    fn failed_condition_with_tls_and_error() {
        let mut o = outcome();
        o.success = false;
        o.status = Some(500);
        o.http_version = Some(2.0);
        o.redirects = 1;
        o.body_truncated = true;
        o.conditions = vec![
            ConditionResult {
                condition: "[STATUS] == 200".to_string(),
                success: false,
                resolved: "[STATUS] (500) == 200".to_string(),
            },
            ConditionResult {
                condition: "[RESPONSE_TIME] < 3000".to_string(),
                success: true,
                resolved: "[RESPONSE_TIME] (12) < 3000".to_string(),
            },
        ];
        o.tls = Some(TlsInfo {
            version: "TLS 1.3".to_string(),
            earliest_cert_expiry: 1_700_000_000 + 90 * 86_400,
        });
        o.error = Some(ProbeError {
            class: ErrorClass::Conditions,
            message: "condition failed: [STATUS] (500) == 200".to_string(),
        });
        check(
            &o,
            "✗ portal-form  failure  status 500  0.012s\n\
             \x20 ✗ [STATUS] (500) == 200\n\
             \x20 ✓ [RESPONSE_TIME] (12) < 3000\n\
             \x20 phases  resolve 0.001s  connect 0.002s  tls 0.004s  processing 0.003s  transfer 0.002s\n\
             \x20 http    HTTP/2, 5120 bytes (body cap reached, rest not read), 1 redirect\n\
             \x20 tls     TLS 1.3, earliest certificate expiry 2024-02-12T22:13:20.000Z (in 90 days)\n\
             \x20 error   conditions: condition failed: [STATUS] (500) == 200\n",
        );
    }

    #[test]
    fn connection_failure_has_no_status_and_no_http_line() {
        let mut o = outcome();
        o.success = false;
        o.status = None;
        o.http_version = None;
        o.phases = Phases::default();
        o.error = Some(ProbeError {
            class: ErrorClass::Connect,
            message: "connect to 127.0.0.1:1 failed: Connection refused (os error 111)".into(),
        });
        let text = human(&o);
        assert!(text.starts_with("✗ portal-form  failure  status -  0.012s\n"));
        assert!(!text.contains("  http "));
        assert!(text.ends_with(
            "  error   connect: connect to 127.0.0.1:1 failed: Connection refused (os error 111)\n"
        ));
    }

    #[test]
    fn steps_show_each_with_conditions_timings_and_error() {
        use crate::probe::StepResult;
        let mut o = outcome();
        o.check = "ticket-form-canary".to_string();
        o.success = false;
        o.status = Some(403);
        let ok = ConditionResult {
            condition: "[STATUS] == 200".to_string(),
            success: true,
            resolved: "[STATUS] (200) == 200".to_string(),
        };
        let bad = ConditionResult {
            condition: "[STATUS] == any(201, 302)".to_string(),
            success: false,
            resolved: "[STATUS] (403) == any(201, 302)".to_string(),
        };
        let error = ProbeError {
            class: ErrorClass::Conditions,
            message: "condition failed: [STATUS] (403) == any(201, 302)".to_string(),
        };
        o.conditions = vec![ok.clone(), bad.clone()];
        o.steps = vec![
            StepResult {
                name: "load-form".to_string(),
                success: true,
                conditions: vec![ok],
                status: Some(200),
                duration: Duration::from_millis(5),
                phases: Phases::default(),
                error: None,
                extracted: vec!["csrf".to_string(), "form_id".to_string()],
            },
            StepResult {
                name: "submit".to_string(),
                success: false,
                conditions: vec![bad],
                status: Some(403),
                duration: Duration::from_millis(7),
                phases: Phases::default(),
                error: Some(error.clone()),
                extracted: Vec::new(),
            },
        ];
        o.error = Some(ProbeError {
            message: format!("step \"submit\": {}", error.message),
            ..error
        });
        let zero = "phases  resolve 0.000s  connect 0.000s  tls 0.000s  processing 0.000s  transfer 0.000s";
        check(
            &o,
            &format!(
                "✗ ticket-form-canary  failure  status 403  0.012s\n\
                 \x20 step ✓ load-form  status 200  0.005s  extracted csrf, form_id\n\
                 \x20   ✓ [STATUS] (200) == 200\n\
                 \x20   {zero}\n\
                 \x20 step ✗ submit  status 403  0.007s\n\
                 \x20   ✗ [STATUS] (403) == any(201, 302)\n\
                 \x20   {zero}\n\
                 \x20   error   conditions: condition failed: [STATUS] (403) == any(201, 302)\n\
                 \x20 phases  resolve 0.001s  connect 0.002s  tls 0.004s  processing 0.003s  transfer 0.002s\n\
                 \x20 http    HTTP/1.1, 5120 bytes, 0 redirects\n\
                 \x20 error   conditions: step \"submit\": condition failed: [STATUS] (403) == any(201, 302)\n"
            ),
        );
    }

    #[test]
    fn expired_certificate_reads_as_expired() {
        let now = Timestamp::from_millis(10 * 86_400_000);
        assert_eq!(
            relative(Timestamp::from_millis(7 * 86_400_000), now),
            "expired 3 days ago"
        );
        assert_eq!(
            relative(Timestamp::from_millis(now.0 + 5 * 3_600_000), now),
            "in 5 hours"
        );
    }
}
