//! Multi-step HTTP checks: requests in order, sharing one cookie jar, each step able to take a
//! value from its response (regex capture, JSON path or header) into a variable that later
//! steps use in their URL, headers or body as `${name}`.
//!
//! Every step is the ordinary HTTP probe (phases, body cap, redirects, TLS) with its own
//! conditions and timings. The check's timeout bounds the whole sequence: a step runs under its
//! own `timeout` or what is left of the check's, whichever is shorter. The outcome fails at the
//! first failing step and names it; steps after it do not run.

use super::{http, ErrorClass, Outcome, Phases, ProbeError, StepResult, TlsInfo};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, HttpCheck, HttpStep, StepsCheck};
pub use crate::lang::template::{valid_name, Context, Extraction, Source, StepsError, Template};
use cookie_store::CookieStore;
use std::collections::HashMap;
use std::time::Instant;

/// The request a step sends, with its variables filled in.
fn render(
    step: &HttpStep,
    check: &StepsCheck,
    vars: &HashMap<String, String>,
) -> Result<HttpCheck, ProbeError> {
    let unknown = |name: String| ProbeError {
        class: ErrorClass::Conditions,
        message: format!("unknown variable ${{{name}}}: no earlier step set it"),
    };
    let url_text = step.url.render(vars, Context::Url).map_err(unknown)?;
    let url = url::Url::parse(&url_text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| ProbeError {
            class: ErrorClass::Protocol,
            message: format!("url {url_text:?} is not an http(s) URL once filled in"),
        })?;
    let mut headers = Vec::with_capacity(step.headers.len());
    for (name, value) in &step.headers {
        headers.push((
            name.clone(),
            value.render(vars, Context::Text).map_err(unknown)?,
        ));
    }
    let body = match &step.body {
        Some(b) => Some(b.render(vars, Context::Text).map_err(unknown)?),
        None => None,
    };
    Ok(HttpCheck {
        url,
        method: step.method.clone(),
        headers,
        body,
        max_redirects: step.max_redirects,
        max_body_bytes: check.max_body_bytes,
        insecure: check.insecure,
        net: check.net.clone(),
    })
}

/// Runs a multi-step check once, bounded by the check's timeout.
pub async fn probe(check: &CheckSpec, steps: &StepsCheck) -> Outcome {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let deadline = start + check.timeout;
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut jar = Some(CookieStore::default());
    let mut results: Vec<StepResult> = Vec::with_capacity(steps.steps.len());
    let mut last: Option<Outcome> = None;
    let mut error: Option<ProbeError> = None;
    let mut phases = Phases::default();
    let mut redirects = 0;
    let mut earliest_tls: Option<TlsInfo> = None;

    for step in &steps.steps {
        let step_start = Instant::now();
        let fail = |results: &mut Vec<StepResult>, e: ProbeError| {
            results.push(StepResult {
                name: step.name.clone(),
                success: false,
                conditions: Vec::new(),
                status: None,
                duration: step_start.elapsed(),
                phases: Phases::default(),
                error: Some(e.clone()),
                extracted: Vec::new(),
            });
            e
        };
        let remaining = deadline.saturating_duration_since(step_start);
        if remaining.is_zero() {
            let e = ProbeError {
                class: ErrorClass::Timeout,
                message: format!(
                    "the check's timeout ({}) ran out before this step",
                    humantime::format_duration(check.timeout)
                ),
            };
            error = Some(fail(&mut results, e));
            break;
        }
        let timeout = step.timeout.map_or(remaining, |t| t.min(remaining));
        let http = match render(step, steps, &vars) {
            Ok(h) => h,
            Err(e) => {
                error = Some(fail(&mut results, e));
                break;
            }
        };
        let done =
            http::exchange_step(&step.name, &step.conditions, timeout, &http, jar.take()).await;
        jar = done.jar;
        let mut outcome = done.outcome;
        let mut extracted = Vec::new();
        if outcome.success {
            for x in &step.extract {
                match x.apply(&done.body, done.headers.as_ref()) {
                    Ok(value) => {
                        vars.insert(x.var.clone(), value);
                        extracted.push(x.var.clone());
                    }
                    Err(why) => {
                        outcome.success = false;
                        outcome.error = Some(ProbeError {
                            class: ErrorClass::Conditions,
                            message: format!("extract {}: {why}", x.var),
                        });
                        break;
                    }
                }
            }
        }
        add_phases(&mut phases, &outcome.phases);
        redirects += outcome.redirects;
        if let Some(tls) = &outcome.tls {
            if earliest_tls
                .as_ref()
                .is_none_or(|e| tls.earliest_cert_expiry < e.earliest_cert_expiry)
            {
                earliest_tls = Some(tls.clone());
            }
        }
        results.push(StepResult {
            name: step.name.clone(),
            success: outcome.success,
            conditions: outcome.conditions.clone(),
            status: outcome.status,
            duration: outcome.duration,
            phases: outcome.phases,
            error: outcome.error.clone(),
            extracted,
        });
        let failed = !outcome.success;
        if failed {
            error = outcome.error.clone();
        }
        last = Some(outcome);
        if failed {
            break;
        }
    }

    let error = error.map(|e| {
        let step = results.last().map_or("", |r| r.name.as_str());
        ProbeError {
            class: e.class,
            message: format!("step \"{step}\": {}", e.message),
        }
    });
    // The check's conditions are its steps' conditions, each named by its step, so alerting
    // on `conditions` (and `probe_failed_due_to_regex`) sees every one.
    let conditions = results
        .iter()
        .flat_map(|r| {
            r.conditions.iter().map(move |c| super::ConditionResult {
                condition: c.condition.clone(),
                success: c.success,
                resolved: format!("{}: {}", r.name, c.resolved),
            })
        })
        .collect();
    let tls = match (last.as_ref().and_then(|o| o.tls.clone()), earliest_tls) {
        // The version is the last step's; the expiry is the earliest any step saw, because a
        // certificate about to expire anywhere on the path breaks the whole flow.
        (Some(mut t), Some(e)) => {
            t.earliest_cert_expiry = t.earliest_cert_expiry.min(e.earliest_cert_expiry);
            Some(t)
        }
        (t, e) => t.or(e),
    };
    Outcome {
        check: check.name.clone(),
        success: error.is_none() && results.len() == steps.steps.len(),
        conditions,
        status: last.as_ref().and_then(|o| o.status),
        duration: start.elapsed(),
        phases,
        error,
        started_at,
        tls,
        http_version: last.as_ref().and_then(|o| o.http_version),
        content_length: last.as_ref().map_or(0, |o| o.content_length),
        body_truncated: last.as_ref().is_some_and(|o| o.body_truncated),
        redirects,
        failed_due_to_regex: false,
        dns: None,
        steps: results,
        vendor: None,
    }
}

fn add_phases(total: &mut Phases, step: &Phases) {
    total.resolve += step.resolve;
    total.connect += step.connect;
    total.tls += step.tls;
    total.processing += step.processing;
    total.transfer += step.transfer;
}
