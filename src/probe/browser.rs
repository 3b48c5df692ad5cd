//! `kind = "browser"`: a headless Chromium takes the check's steps (open, wait for, fill,
//! click, expect text) as a customer would, each step timed; the first failing step ends the
//! run, is named in the outcome, and leaves a screenshot of the page as `{check}.png` in
//! `[browser] screenshot_dir` (the last failure's, kept until the next one).
//!
//! Every run starts its own Chromium with a fresh profile (`browser/process.rs`) and speaks the
//! DevTools protocol to it over a pipe (`browser/cdp.rs`). The check's timeout is hard: it
//! bounds the wait for a browser slot, the browser's start, every step and the screenshot, and
//! when it passes the run's future is dropped, which kills Chromium's whole process group. At
//! most `[browser] max_concurrent` browsers run at once; a probe past the cap waits for a slot
//! within its own timeout, and one that never gets a slot fails as `local` (the machine was
//! busy: no evidence against the target).
//!
//! Waiting steps poll the page every 50 ms instead of following protocol events: a form that
//! appears after a script runs is found the same way whichever script made it.

mod cdp;
mod process;

pub use process::{Browser, LaunchError};

use super::{ErrorClass, Outcome, Phases, ProbeError, StepResult};
use crate::clock::Timestamp;
use crate::config::{BrowserAction, BrowserCheck, BrowserStep, CheckSpec};
use cdp::{Cdp, CdpError};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How often a waiting step looks at the page again.
const POLL: Duration = Duration::from_millis(50);

/// The browser slots, sized by `[browser] max_concurrent`. A reload that changes the size
/// makes a new semaphore: browsers already running finish on the old one's permits, so for
/// one interval after such a reload the cap may be exceeded by those.
static SLOTS: Mutex<Option<(u32, Arc<Semaphore>)>> = Mutex::new(None);

fn slots(max: u32) -> Arc<Semaphore> {
    let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    match &*slots {
        Some((size, s)) if *size == max => s.clone(),
        _ => {
            let s = Arc::new(Semaphore::new(max.max(1) as usize));
            *slots = Some((max, s.clone()));
            s
        }
    }
}

/// Where a run is, so that a timeout can say what it cut short.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    WaitingForSlot,
    Launching,
    Step(usize),
    Screenshot,
    Done,
}

/// What a run has seen so far; kept outside the run's future, which a timeout drops.
struct Seen {
    stage: Stage,
    step_started: Instant,
    steps: Vec<StepResult>,
    status: Option<u16>,
    error: Option<ProbeError>,
}

/// Runs a browser check once, within its timeout.
pub async fn probe(check: &CheckSpec, browser: &BrowserCheck) -> Outcome {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let deadline = start + check.timeout;
    let mut seen = Seen {
        stage: Stage::WaitingForSlot,
        step_started: start,
        steps: Vec::with_capacity(browser.steps.len()),
        status: None,
        error: None,
    };
    let finished =
        tokio::time::timeout(check.timeout, run(check, browser, deadline, &mut seen)).await;
    if finished.is_err() {
        timed_out(check, browser, &mut seen);
    }
    Outcome {
        check: check.name.clone(),
        success: seen.error.is_none(),
        conditions: Vec::new(),
        status: seen.status,
        duration: start.elapsed(),
        phases: Phases::default(),
        error: seen.error,
        started_at,
        tls: None,
        http_version: None,
        content_length: 0,
        body_truncated: false,
        redirects: 0,
        failed_due_to_regex: false,
        dns: None,
        steps: seen.steps,
        vendor: None,
    }
}

/// The check's timeout passed: the run was dropped (and the browser with it) at `seen.stage`.
fn timed_out(check: &CheckSpec, browser: &BrowserCheck, seen: &mut Seen) {
    let limit = humantime::format_duration(check.timeout);
    let (class, message) = match seen.stage {
        Stage::WaitingForSlot => (
            ErrorClass::Local,
            format!(
                "no browser slot within the timeout ({limit}): {} browser(s) already running ([browser] max_concurrent)",
                browser.settings.max_concurrent
            ),
        ),
        Stage::Launching => (
            ErrorClass::Timeout,
            format!("the browser did not start within the timeout ({limit})"),
        ),
        Stage::Step(i) => {
            let step = &browser.steps[i];
            let message = format!(
                "step \"{}\" ({}) did not finish within the check's timeout ({limit}); the browser was killed",
                step.name,
                step.action.name()
            );
            seen.steps.push(StepResult {
                name: step.name.clone(),
                success: false,
                conditions: Vec::new(),
                status: None,
                duration: seen.step_started.elapsed(),
                phases: Phases::default(),
                error: Some(ProbeError {
                    class: ErrorClass::Timeout,
                    message: message.clone(),
                }),
                extracted: Vec::new(),
            });
            (ErrorClass::Timeout, message)
        }
        // A step already failed; the screenshot (or the closing) ran out of time.
        Stage::Screenshot | Stage::Done => {
            if seen.error.is_some() {
                return;
            }
            (
                ErrorClass::Timeout,
                format!("the browser did not close within the timeout ({limit})"),
            )
        }
    };
    seen.error = Some(ProbeError { class, message });
}

async fn run(check: &CheckSpec, browser: &BrowserCheck, deadline: Instant, seen: &mut Seen) {
    let settings = &browser.settings;
    let _slot = slots(settings.max_concurrent).acquire_owned().await;
    seen.stage = Stage::Launching;
    let launched = match Browser::launch(&settings.chromium) {
        Ok(b) => b,
        Err(e) => {
            seen.error = Some(ProbeError {
                class: ErrorClass::Local,
                message: e.to_string(),
            });
            return;
        }
    };
    let mut cdp = Cdp::new(launched);
    if let Err(e) = cdp.open_page().await {
        seen.error = Some(ProbeError {
            class: ErrorClass::Local,
            message: format!("the browser did not open a page: {e}"),
        });
        cdp.into_browser().close().await;
        return;
    }
    // Time kept back from the waiting steps so that a failure still leaves time to take the
    // screenshot before the hard timeout kills the browser.
    let reserve = (check.timeout / 5).min(Duration::from_secs(2));
    let waits_end = deadline.checked_sub(reserve).unwrap_or(deadline);
    for (i, step) in browser.steps.iter().enumerate() {
        seen.stage = Stage::Step(i);
        seen.step_started = Instant::now();
        let until = step
            .timeout
            .map_or(waits_end, |t| (seen.step_started + t).min(waits_end));
        let result = act(&mut cdp, step, until, seen).await;
        let duration = seen.step_started.elapsed();
        let error = result.err().map(|e| ProbeError {
            class: e.class,
            message: format!(
                "step \"{}\" ({}): {}",
                step.name,
                step.action.name(),
                e.message
            ),
        });
        seen.steps.push(StepResult {
            name: step.name.clone(),
            success: error.is_none(),
            conditions: Vec::new(),
            status: None,
            duration,
            phases: Phases::default(),
            error: error.clone(),
            extracted: Vec::new(),
        });
        if let Some(mut error) = error {
            seen.stage = Stage::Screenshot;
            // Recorded before the screenshot, so a timeout during it keeps the step's words.
            seen.error = Some(error.clone());
            match screenshot(&mut cdp, check, settings).await {
                Ok(path) => {
                    error.message = format!("{}; screenshot {}", error.message, path.display())
                }
                Err(why) => error.message = format!("{}; no screenshot: {why}", error.message),
            }
            seen.error = Some(error);
            break;
        }
    }
    seen.stage = Stage::Done;
    cdp.into_browser().close().await;
}

/// A step's failure, before it is prefixed with the step's name.
struct Failed {
    class: ErrorClass,
    message: String,
}

impl From<CdpError> for Failed {
    fn from(e: CdpError) -> Failed {
        Failed {
            class: ErrorClass::Protocol,
            message: e.to_string(),
        }
    }
}

/// A JavaScript string literal holding `text` (JSON's string syntax is JavaScript's).
fn js(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

async fn act(
    cdp: &mut Cdp,
    step: &BrowserStep,
    until: Instant,
    seen: &mut Seen,
) -> Result<(), Failed> {
    // What a waiting step did not see: the page is there but not as the customer needs it.
    let waited = |message: String| Failed {
        class: ErrorClass::Conditions,
        message,
    };
    match &step.action {
        BrowserAction::Open(url) => {
            let left = until.saturating_duration_since(Instant::now());
            cdp.document_status = None;
            let navigated = tokio::time::timeout(
                left,
                cdp.page("Page.navigate", json!({ "url": url.as_str() })),
            )
            .await
            .map_err(|_| Failed {
                class: ErrorClass::Timeout,
                message: format!("{url} did not answer within {}", secs(left)),
            })??;
            if let Some(error) = navigated["errorText"].as_str().filter(|e| !e.is_empty()) {
                // An error status with an empty body is a failed navigation to Chromium.
                if let Some(s) = cdp.document_status.filter(|s| *s >= 400) {
                    seen.status = Some(s);
                    return Err(Failed {
                        class: ErrorClass::Conditions,
                        message: format!("{url} answered HTTP {s}"),
                    });
                }
                return Err(Failed {
                    class: navigation_class(error),
                    message: format!("{url} did not load: {error}"),
                });
            }
            let loaded = poll(cdp, "document.readyState === 'complete'", until).await?;
            if loaded.is_none() {
                return Err(Failed {
                    class: ErrorClass::Timeout,
                    message: format!("{url} did not finish loading within the step's time"),
                });
            }
            let status = cdp
                .evaluate(
                    "(performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0",
                )
                .await?
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| *s > 0);
            // The document's own response first; the page's navigation entry if that event
            // was not seen.
            let status = cdp.document_status.or(status);
            seen.status = status.or(seen.status);
            if let Some(s) = status.filter(|s| *s >= 400) {
                return Err(Failed {
                    class: ErrorClass::Conditions,
                    message: format!("{url} answered HTTP {s}"),
                });
            }
            Ok(())
        }
        BrowserAction::WaitFor(selector) => {
            let expr = format!("document.querySelector({}) !== null", js(selector));
            match poll(cdp, &expr, until).await? {
                Some(_) => Ok(()),
                None => Err(waited(format!("no element matched {selector:?}"))),
            }
        }
        BrowserAction::Fill { selector, value } => {
            let expr = format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return false; \
                 e.focus(); if ('value' in e) e.value = ''; return true; }})()",
                js(selector)
            );
            if poll(cdp, &expr, until).await?.is_none() {
                return Err(waited(format!("no element matched {selector:?} to fill")));
            }
            // Typed as text input, so the page's input listeners see it as a person's typing.
            cdp.page("Input.insertText", json!({ "text": value }))
                .await?;
            Ok(())
        }
        BrowserAction::Click(selector) => {
            let expr = format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return false; \
                 e.scrollIntoView({{block: 'center', inline: 'center'}}); \
                 const r = e.getBoundingClientRect(); \
                 if (r.width === 0 || r.height === 0) return false; \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()",
                js(selector)
            );
            let Some(at) = poll(cdp, &expr, until).await? else {
                return Err(waited(format!(
                    "no visible element matched {selector:?} to click"
                )));
            };
            let (x, y) = (at[0].as_f64().unwrap_or(0.0), at[1].as_f64().unwrap_or(0.0));
            // A real mouse click at the element's middle: whatever covers it gets the click,
            // as it would for a customer.
            for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
                cdp.page(
                    "Input.dispatchMouseEvent",
                    json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
                )
                .await?;
            }
            Ok(())
        }
        BrowserAction::ExpectText { text, selector } => {
            let scope = selector.as_ref().map_or_else(
                || "document.body".to_string(),
                |s| format!("document.querySelector({})", js(s)),
            );
            let expr = format!(
                "(() => {{ const e = {scope}; return !!e && e.innerText.includes({}); }})()",
                js(text)
            );
            match poll(cdp, &expr, until).await? {
                Some(_) => Ok(()),
                None => Err(waited(match selector {
                    Some(s) => format!("text {text:?} did not appear in {s:?}"),
                    None => format!("text {text:?} did not appear on the page"),
                })),
            }
        }
    }
}

/// Evaluates `expression` until it yields something other than `false`/`null`, or `until`
/// passes (`None`).
async fn poll(cdp: &mut Cdp, expression: &str, until: Instant) -> Result<Option<Value>, Failed> {
    loop {
        let value = cdp.evaluate(expression).await?;
        if !matches!(value, Value::Bool(false) | Value::Null) {
            return Ok(Some(value));
        }
        let now = Instant::now();
        if now >= until {
            return Ok(None);
        }
        tokio::time::sleep(POLL.min(until - now)).await;
    }
}

/// Chromium's `net::ERR_*` names, classed as the other probes class the same failures.
fn navigation_class(error: &str) -> ErrorClass {
    if error.contains("NAME_NOT_RESOLVED") || error.contains("NAME_RESOLUTION") {
        ErrorClass::Dns
    } else if error.contains("CERT") || error.contains("SSL") {
        ErrorClass::Tls
    } else if error.contains("TIMED_OUT") {
        ErrorClass::Timeout
    } else if error.contains("CONNECTION") || error.contains("ADDRESS") {
        ErrorClass::Connect
    } else {
        ErrorClass::Protocol
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The page as it is now, written to `{screenshot_dir}/{check}.png` (through a temporary file
/// and a rename, so a reader never sees half a picture).
async fn screenshot(
    cdp: &mut Cdp,
    check: &CheckSpec,
    settings: &crate::config::BrowserSettings,
) -> Result<PathBuf, String> {
    use base64::Engine;
    let capture = json!({ "format": "png" });
    let shot = match cdp.page("Page.captureScreenshot", capture.clone()).await {
        Ok(shot) => shot,
        // A failed navigation replaced the page's renderer (Chromium's error page), which
        // ended our session: attach again and take the error page as the customer saw it.
        Err(mut last) => {
            let mut shot = None;
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                cdp.attach().await.map_err(|e| e.to_string())?;
                match cdp.page("Page.captureScreenshot", capture.clone()).await {
                    Ok(s) => {
                        shot = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            shot.ok_or_else(|| last.to_string())?
        }
    };
    let data = shot["data"].as_str().ok_or("the browser sent no image")?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| "the browser sent an image that is not base64".to_string())?;
    let dir = &settings.screenshot_dir;
    let path = dir.join(format!("{}.png", check.name));
    let partial = dir.join(format!(".{}.png.partial", check.name));
    let write = async {
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::write(&partial, &png).await?;
        tokio::fs::rename(&partial, &path).await
    };
    write
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
