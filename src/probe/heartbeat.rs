//! `kind = "heartbeat"`: jobs report that they ran (`POST /api/v1/heartbeats/{check}`), and the
//! check is judged at its interval: failed when the last heartbeat is older than `deadline` +
//! `grace` (or the job reported itself down), succeeded otherwise.
//!
//! `Heartbeats` is the in-memory record of what arrived, owned by the shell (one for the
//! daemon's life, so a reload keeps it) and shared with the control API, which writes to it.
//! Nothing is stored: after a restart every heartbeat check is measured from the moment it is
//! first watched (start-up, or the reload that added it), so a job gets a full deadline to
//! report after Switchboard comes back. Tokens are known only by their SHA-256, compared in
//! constant time.

use super::tcp::{self, Seen};
use super::{ErrorClass, Outcome, ProbeError};
use crate::clock::Timestamp;
use crate::config::{CheckKind, CheckSpec, Config, HeartbeatCheck};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest `message` a job may send with a heartbeat, in characters.
pub const MESSAGE_LIMIT: usize = 500;

/// What a job said with one heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beat {
    /// False when the job reported that it failed (`"status": "down"`).
    pub up: bool,
    /// The job's words, at most `MESSAGE_LIMIT` characters; shown in the outcome.
    pub message: Option<String>,
}

/// Why a heartbeat was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no check named {0:?}")]
    UnknownCheck(String),
    #[error("check {0:?} is not a heartbeat check")]
    NotHeartbeat(String),
    #[error("the token is not this check's")]
    BadToken,
}

/// One watched heartbeat check.
#[derive(Debug)]
struct Watched {
    token_sha256: String,
    /// When watching began: the deadline of a check that never had a heartbeat runs from here.
    since: Instant,
    last: Option<(Instant, Timestamp, Beat)>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every configured check name, so a heartbeat to a check of another kind is told so.
    checks: HashMap<String, bool>,
    watched: HashMap<String, Watched>,
}

/// The heartbeats received, by check. Shared by the probe loops (which judge) and the API
/// (which reports); every operation holds the lock for a map lookup only.
#[derive(Debug, Default)]
pub struct Heartbeats {
    inner: Mutex<Inner>,
}

impl Heartbeats {
    pub fn new() -> Heartbeats {
        Heartbeats::default()
    }

    /// Takes the checks of the configuration in force (at start, and after each reload): a new
    /// heartbeat check is watched from now; a kept one keeps its last heartbeat (its token may
    /// change); a removed one is forgotten.
    pub fn configure(&self, config: &Config) {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut watched = std::mem::take(&mut inner.watched);
        inner.checks.clear();
        for check in config.checks() {
            let heartbeat = matches!(check.kind, CheckKind::Heartbeat(_));
            inner.checks.insert(check.name.clone(), heartbeat);
            if let CheckKind::Heartbeat(hb) = &check.kind {
                let entry = watched.remove(&check.name).unwrap_or(Watched {
                    token_sha256: String::new(),
                    since: now,
                    last: None,
                });
                inner.watched.insert(
                    check.name.clone(),
                    Watched {
                        token_sha256: hb.token_sha256.clone(),
                        ..entry
                    },
                );
            }
        }
    }

    /// Whether `token` may report for `check`: the check is looked up first (check names are
    /// not secret: they are in `/metrics`), then the token's SHA-256 compared in constant time
    /// with the check's.
    pub fn check_token(&self, check: &str, token: &str) -> Result<(), Refused> {
        authorize(&self.lock(), check, token)
    }

    /// A job's heartbeat for `check`, authenticated by `token`; the time it was recorded.
    pub fn report(&self, check: &str, token: &str, beat: Beat) -> Result<Timestamp, Refused> {
        let mut inner = self.lock();
        authorize(&inner, check, token)?;
        let w = inner
            .watched
            .get_mut(check)
            .ok_or_else(|| Refused::UnknownCheck(check.to_string()))?;
        let at = Timestamp::now();
        w.last = Some((Instant::now(), at, beat));
        Ok(at)
    }

    /// The outcome of judging `check` now.
    pub fn judge(&self, check: &CheckSpec, hb: &HeartbeatCheck) -> Outcome {
        let started_at = Timestamp::now();
        let now = Instant::now();
        let error = {
            let mut inner = self.lock();
            // A check judged before `configure` saw it (it cannot happen in the daemon, which
            // configures before starting the loops) is watched from now.
            let w = inner
                .watched
                .entry(check.name.clone())
                .or_insert_with(|| Watched {
                    token_sha256: hb.token_sha256.clone(),
                    since: now,
                    last: None,
                });
            verdict(w, hb, now)
        };
        tcp::finish(
            check,
            started_at,
            Duration::ZERO,
            Seen::default(),
            error,
            None,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn authorize(inner: &Inner, check: &str, token: &str) -> Result<(), Refused> {
    match inner.checks.get(check) {
        None => return Err(Refused::UnknownCheck(check.to_string())),
        Some(false) => return Err(Refused::NotHeartbeat(check.to_string())),
        Some(true) => {}
    }
    let w = inner
        .watched
        .get(check)
        .ok_or_else(|| Refused::UnknownCheck(check.to_string()))?;
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    if constant_time_eq(hash.as_bytes(), w.token_sha256.as_bytes()) {
        Ok(())
    } else {
        Err(Refused::BadToken)
    }
}

/// The error of a heartbeat check at `now`, or `None` when it is fine.
fn verdict(w: &Watched, hb: &HeartbeatCheck, now: Instant) -> Option<ProbeError> {
    let allowed = hb.deadline.saturating_add(hb.grace);
    let words = |m: &Option<String>| m.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
    match &w.last {
        None if now.saturating_duration_since(w.since) <= allowed => None,
        None => Some(ProbeError {
            class: ErrorClass::Timeout,
            message: format!(
                "no heartbeat since watching began {} ago (deadline {} + grace {})",
                secs(now.saturating_duration_since(w.since)),
                humantime::format_duration(hb.deadline),
                humantime::format_duration(hb.grace)
            ),
        }),
        Some((at, wall, beat)) => {
            let age = now.saturating_duration_since(*at);
            if age > allowed {
                Some(ProbeError {
                    class: ErrorClass::Timeout,
                    message: format!(
                        "last heartbeat {} ago (at {}), past its deadline {} + grace {}",
                        secs(age),
                        wall.rfc3339(),
                        humantime::format_duration(hb.deadline),
                        humantime::format_duration(hb.grace)
                    ),
                })
            } else if !beat.up {
                Some(ProbeError {
                    class: ErrorClass::Conditions,
                    message: format!("the job reported itself down{}", words(&beat.message)),
                })
            } else {
                None
            }
        }
    }
}

/// The outcome of a heartbeat check run on its own (`switchboard probe`): there is nothing to
/// fetch, and no heartbeats outside the running daemon, so it fails and says why.
pub fn outside_daemon(check: &CheckSpec) -> Outcome {
    let error = ProbeError {
        class: ErrorClass::Local,
        message: "a heartbeat check is judged by the running daemon from the heartbeats jobs send (POST /api/v1/heartbeats/{check}); it cannot be probed on its own".into(),
    };
    tcp::finish(
        check,
        Timestamp::now(),
        Duration::ZERO,
        Seen::default(),
        Some(error),
        None,
    )
}

/// Whole seconds, for messages.
fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Compares two byte strings in time that depends only on their lengths (both are SHA-256
/// hex digests here, so equal): no early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(deadline: u64, grace: u64) -> HeartbeatCheck {
        HeartbeatCheck {
            deadline: Duration::from_secs(deadline),
            grace: Duration::from_secs(grace),
            token_sha256: hex::encode(Sha256::digest(b"t0ken")),
        }
    }

    fn watched(since: Instant, last: Option<(Instant, Beat)>) -> Watched {
        Watched {
            token_sha256: String::new(),
            since,
            last: last.map(|(at, b)| (at, Timestamp(0), b)),
        }
    }

    const UP: Beat = Beat {
        up: true,
        message: None,
    };

    #[test]
    fn a_check_without_heartbeats_gets_its_deadline_plus_grace_from_when_watching_began() {
        let t0 = Instant::now();
        let w = watched(t0, None);
        assert_eq!(verdict(&w, &hb(60, 30), t0 + Duration::from_secs(90)), None);
        let e = verdict(&w, &hb(60, 30), t0 + Duration::from_secs(91)).unwrap();
        assert_eq!(e.class, ErrorClass::Timeout);
        assert!(
            e.message
                .starts_with("no heartbeat since watching began 1m 31s ago"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_heartbeat_counts_until_deadline_plus_grace_after_it() {
        let t0 = Instant::now();
        let at = t0 + Duration::from_secs(100);
        let w = watched(t0, Some((at, UP)));
        assert_eq!(verdict(&w, &hb(60, 0), at + Duration::from_secs(60)), None);
        let e = verdict(&w, &hb(60, 0), at + Duration::from_secs(61)).unwrap();
        assert!(
            e.message.starts_with("last heartbeat 1m 1s ago"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_job_that_reports_itself_down_fails_with_its_words() {
        let t0 = Instant::now();
        let beat = Beat {
            up: false,
            message: Some("sync lagging 4h".into()),
        };
        let e = verdict(&watched(t0, Some((t0, beat))), &hb(60, 0), t0).unwrap();
        assert_eq!(e.class, ErrorClass::Conditions);
        assert_eq!(e.message, "the job reported itself down: sync lagging 4h");
    }
}
