//! Check health: smooths a check's outcomes into healthy / suspect / down. Pure: no I/O, no clock.
//!
//! A check starts `Unknown`. A success makes it `Healthy` at once from `Unknown`; from `Down`
//! it takes `success_threshold` consecutive successes. A failure makes a healthy check
//! `Suspect`; `failure_threshold` consecutive failures make it `Down`. While a check is
//! `Suspect` (or `Down` with successes accumulating) the scheduler re-probes it at
//! `retry_interval` instead of its interval, so confirmation is fast.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not probed yet since start.
    Unknown,
    Healthy,
    /// Failing, but not yet `failure_threshold` times in a row.
    Suspect,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Suspect => "suspect",
            Health::Down => "down",
        }
    }

    /// Counts as up for failover decisions: healthy, or suspect (not yet confirmed down).
    pub fn is_up(self) -> bool {
        matches!(self, Health::Healthy | Health::Suspect)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
}

/// A check's smoothed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckHealth {
    pub health: Health,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// When `health` last changed.
    pub since: Timestamp,
}

impl CheckHealth {
    pub fn new(now: Timestamp) -> Self {
        CheckHealth {
            health: Health::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            since: now,
        }
    }

    /// Feeds one outcome. Returns the previous health if it changed.
    pub fn observe(&mut self, t: Thresholds, success: bool, at: Timestamp) -> Option<Health> {
        if success {
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
        }
        let next = match (self.health, success) {
            (Health::Unknown | Health::Healthy | Health::Suspect, true) => Health::Healthy,
            (Health::Down, true) if self.consecutive_successes >= t.success.max(1) => {
                Health::Healthy
            }
            (Health::Down, true) => Health::Down,
            (Health::Down, false) => Health::Down,
            (_, false) if self.consecutive_failures >= t.failure.max(1) => Health::Down,
            (_, false) => Health::Suspect,
        };
        if next != self.health {
            let prev = self.health;
            self.health = next;
            self.since = at;
            Some(prev)
        } else {
            None
        }
    }

    /// Whether the scheduler should re-probe at `retry_interval` rather than the interval:
    /// the check is suspect, or down and on its way back up.
    pub fn wants_confirmation(&self) -> bool {
        match self.health {
            Health::Suspect => true,
            Health::Down => self.consecutive_successes > 0,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        failure: 3,
        success: 2,
    };

    /// Feeds a script of outcomes ('+' success, '-' failure) and returns the health after each.
    fn trace(script: &str) -> Vec<Health> {
        let mut h = CheckHealth::new(Timestamp(0));
        script
            .chars()
            .enumerate()
            .map(|(i, c)| {
                h.observe(T, c == '+', Timestamp(i as i64 * 1000));
                h.health
            })
            .collect()
    }

    use Health::*;

    #[test]
    fn first_success_is_healthy_at_once() {
        assert_eq!(trace("+"), vec![Healthy]);
    }

    #[test]
    fn down_after_failure_threshold_consecutive_failures() {
        assert_eq!(trace("+---"), vec![Healthy, Suspect, Suspect, Down]);
    }

    #[test]
    fn a_success_while_suspect_clears_the_suspicion() {
        assert_eq!(
            trace("+--+--"),
            vec![Healthy, Suspect, Suspect, Healthy, Suspect, Suspect]
        );
    }

    #[test]
    fn up_again_only_after_success_threshold_consecutive_successes() {
        assert_eq!(
            trace("---+-++"),
            vec![Suspect, Suspect, Down, Down, Down, Down, Healthy]
        );
    }

    #[test]
    fn confirmation_reprobes_while_suspect_or_climbing_back() {
        let mut h = CheckHealth::new(Timestamp(0));
        h.observe(T, true, Timestamp(0));
        assert!(!h.wants_confirmation());
        h.observe(T, false, Timestamp(1));
        assert!(h.wants_confirmation());
        h.observe(T, false, Timestamp(2));
        h.observe(T, false, Timestamp(3));
        assert_eq!(h.health, Down);
        assert!(
            !h.wants_confirmation(),
            "down and still failing: normal interval"
        );
        h.observe(T, true, Timestamp(4));
        assert!(
            h.wants_confirmation(),
            "first success after down: confirm quickly"
        );
    }

    #[test]
    fn change_reports_previous_health_and_moves_since() {
        let mut h = CheckHealth::new(Timestamp(0));
        assert_eq!(h.observe(T, true, Timestamp(5)), Some(Unknown));
        assert_eq!(h.since, Timestamp(5));
        assert_eq!(h.observe(T, true, Timestamp(6)), None);
        assert_eq!(h.since, Timestamp(5));
    }
}
