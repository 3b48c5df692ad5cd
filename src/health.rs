//! Check health: smooths a check's outcomes into healthy / suspect / down. Pure: no I/O, no clock.
//!
//! A check starts `Unknown`. A success makes it `Healthy` at once from `Unknown`; from `Down`
//! it takes `success_threshold` consecutive successes. A failure makes a healthy check
//! `Suspect`; `failure_threshold` consecutive failures make it `Down`. While a check is
//! `Suspect` (or `Down` with successes accumulating) the scheduler re-probes it at
//! `retry_interval` instead of its interval, so confirmation is fast.
//!
//! Noise-aware confirmation: a target that fails a few percent of probes at random would
//! string `failure_threshold` failures together every few weeks and cause a false failover.
//! So each check also keeps the failure rate of its scheduled probes while healthy (the last
//! 128) and, once it has seen enough of them, asks for as many consecutive failures as it
//! takes to make a false `Down` rarer than once in a hundred months (at most three more than
//! `failure_threshold`). A clean target keeps `failure_threshold` exactly. This is
//! `confirmation = "adaptive"` (the default); `confirmation = "fixed"` turns it off, so
//! `failure_threshold` is exact whatever the noise. Either way the threshold in force is
//! `CheckHealth::failure_threshold`, which the shell shows (status, API, metric) and logs
//! whenever it changes.
//!
//! Corroboration: while a vendor the service names in `corroborate` declares an outage (its
//! `vendor_status` check's verdict reaches its `impact`), our own failing checks are confirmed
//! with `corroborated(thresholds)`: no adaptive extra, and at most `CORROBORATED_FAILURES`
//! failures in a row (the first failure and one confirmation re-probe, which rules out a lone
//! lost packet on our side). Two independent sources agreeing is the "second opinion" Pingdom
//! and updown.io wait for; the vendor's declaration is that opinion. It only ever shortens the
//! wait for failures: a passing check stays healthy whatever the vendor says, so a vendor can
//! never fail a service over by itself.

use crate::clock::Timestamp;
/// The thresholds are configuration, so they are defined there; this path stays for callers.
pub use crate::config::{Thresholds, NOISE_MAX_EXTRA};
use serde::{Deserialize, Serialize};

/// A check's smoothed health. The snake_case names are metric label values and API fields:
/// serde and strum must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
        self.into()
    }

    /// Counts as up for failover decisions: healthy, or suspect (not yet confirmed down).
    pub fn is_up(self) -> bool {
        matches!(self, Health::Healthy | Health::Suspect)
    }
}

/// Failures in a row that confirm a check while a corroborating vendor declares an outage.
pub const CORROBORATED_FAILURES: u32 = 2;

/// The thresholds in force while a corroborating vendor declares an outage: the configured
/// failure threshold capped at `CORROBORATED_FAILURES`, without the adaptive extra. The
/// success threshold is unchanged: recovering is not what the vendor speaks to.
pub fn corroborated(t: Thresholds) -> Thresholds {
    Thresholds {
        failure: t.failure.clamp(1, CORROBORATED_FAILURES),
        adaptive: false,
        ..t
    }
}

/// Scheduled probes seen while healthy before the noise estimate is trusted.
const NOISE_MIN_SAMPLES: u32 = 32;
/// Scheduled probes in a month at a 30 s interval, and the false `Down`s tolerated in it.
const PROBES_PER_MONTH: f64 = 86_400.0;
const FALSE_DOWNS_PER_MONTH: f64 = 0.01;

/// Consecutive failures needed before `Down` for a target that fails `noise` of its probes
/// at random: the smallest `k >= base` with `PROBES_PER_MONTH * noise^k < FALSE_DOWNS_PER_MONTH`,
/// capped at `base + NOISE_MAX_EXTRA`.
pub fn required_failures(base: u32, noise: f64) -> u32 {
    let base = base.max(1);
    let mut k = base;
    while k < base + NOISE_MAX_EXTRA
        && PROBES_PER_MONTH * noise.powi(k as i32) >= FALSE_DOWNS_PER_MONTH
    {
        k += 1;
    }
    k
}

/// A check's smoothed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckHealth {
    pub health: Health,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// When `health` last changed.
    pub since: Timestamp,
    /// Outcomes of the last scheduled probes taken while healthy (bit set = failed), newest
    /// in bit 0, and how many of the 128 slots are filled.
    noise_window: u128,
    noise_samples: u32,
}

impl CheckHealth {
    pub fn new(now: Timestamp) -> Self {
        CheckHealth {
            health: Health::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            since: now,
            noise_window: 0,
            noise_samples: 0,
        }
    }

    /// The share of scheduled probes that failed at random while the check was healthy, once
    /// enough were seen; `None` before.
    pub fn noise(&self) -> Option<f64> {
        (self.noise_samples >= NOISE_MIN_SAMPLES)
            .then(|| self.noise_window.count_ones() as f64 / self.noise_samples as f64)
    }

    /// The consecutive failures this check needs to be `Down` now.
    pub fn failure_threshold(&self, t: Thresholds) -> u32 {
        match (t.adaptive, self.noise()) {
            (true, Some(noise)) => required_failures(t.failure, noise),
            _ => t.failure.max(1),
        }
    }

    /// Feeds one outcome. Returns the previous health if it changed.
    pub fn observe(&mut self, t: Thresholds, success: bool, at: Timestamp) -> Option<Health> {
        self.observe_guarded(t, success, at, true)
    }

    /// `observe`, where a failure that would confirm the check `Down` leaves it `Suspect`
    /// unless `may_confirm`: the suspect-vantage guard (`crate::vantage`) has not yet heard
    /// from enough other hosts to tell the target's failure from our own network's. The
    /// failures are still counted, so the first failure after the guard allows it confirms.
    pub fn observe_guarded(
        &mut self,
        t: Thresholds,
        success: bool,
        at: Timestamp,
        may_confirm: bool,
    ) -> Option<Health> {
        // Only probes taken at the normal interval while healthy measure the noise: the
        // confirmation re-probes of a suspect check and an outage's failures would not.
        if self.health == Health::Healthy {
            self.noise_window = (self.noise_window << 1) | u128::from(!success);
            self.noise_samples = (self.noise_samples + 1).min(128);
        }
        let failure_threshold = self.failure_threshold(t);
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
            (_, false) if self.consecutive_failures >= failure_threshold && may_confirm => {
                Health::Down
            }
            (_, false) => Health::Suspect,
        };
        if next == Health::Down && self.health != Health::Down {
            // The streak was an outage, not noise: its first failure (the newest sample, as
            // confirmation re-probes are not sampled) leaves the noise estimate.
            self.noise_window &= !1;
        }
        if next != self.health {
            let prev = self.health;
            self.health = next;
            self.since = at;
            Some(prev)
        } else {
            None
        }
    }

    /// The streak behind a verdict just reached from `prev`, and the streak it needed: the
    /// evidence an automatic transition cites. Failures in a row against `failure_threshold`
    /// (the threshold the outcome was judged by) for suspect and down; successes in a row
    /// against `success_threshold` for healthy after down, against 1 otherwise (one success
    /// clears a suspicion).
    pub fn streak(&self, prev: Health, t: Thresholds, failure_threshold: u32) -> (u32, u32) {
        match self.health {
            Health::Healthy if prev == Health::Down => {
                (self.consecutive_successes, t.success.max(1))
            }
            Health::Healthy => (self.consecutive_successes, 1),
            Health::Suspect | Health::Down => (self.consecutive_failures, failure_threshold),
            Health::Unknown => (0, 0),
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
        adaptive: true,
    };

    /// Feeds a script of outcomes ('+' success, '-' failure) and returns the health after each.
    fn trace(script: &str) -> Vec<Health> {
        trace_with(T, script)
    }

    fn trace_with(t: Thresholds, script: &str) -> Vec<Health> {
        let mut h = CheckHealth::new(Timestamp(0));
        script
            .chars()
            .enumerate()
            .map(|(i, c)| {
                h.observe(t, c == '+', Timestamp(i as i64 * 1000));
                h.health
            })
            .collect()
    }

    /// A failure held by the vantage guard ('h': failed, may not confirm) stays suspect and
    /// keeps counting; the next failure the guard allows confirms at once.
    #[test]
    fn a_held_failure_stays_suspect_and_the_next_allowed_one_confirms() {
        use Health::*;
        let mut h = CheckHealth::new(Timestamp(0));
        let got: Vec<Health> = "+hhhh-"
            .chars()
            .enumerate()
            .map(|(i, c)| {
                h.observe_guarded(T, c == '+', Timestamp(i as i64 * 1000), c != 'h');
                h.health
            })
            .collect();
        assert_eq!(got, [Healthy, Suspect, Suspect, Suspect, Suspect, Down]);
        assert_eq!(h.consecutive_failures, 5);
    }

    /// The effective failure threshold after each outcome of a script.
    fn thresholds_with(t: Thresholds, script: &str) -> Vec<u32> {
        let mut h = CheckHealth::new(Timestamp(0));
        script
            .chars()
            .enumerate()
            .map(|(i, c)| {
                h.observe(t, c == '+', Timestamp(i as i64 * 1000));
                h.failure_threshold(t)
            })
            .collect()
    }

    const FIXED: Thresholds = Thresholds {
        failure: 3,
        success: 2,
        adaptive: false,
    };

    /// 40 scheduled probes while healthy with every 8th failing (12.5 %): isolated failures,
    /// each cleared by the next probe, as a noisy target produces them.
    fn noisy_warm_up() -> String {
        (0..40)
            .map(|i| if i % 8 == 3 { '-' } else { '+' })
            .collect()
    }

    use Health::*;

    #[test]
    fn the_streak_behind_a_verdict_is_the_one_that_crossed_its_threshold() {
        let mut h = CheckHealth::new(Timestamp(0));
        h.observe(T, true, Timestamp(0));
        h.observe(T, false, Timestamp(1));
        h.observe(T, false, Timestamp(2));
        let threshold = h.failure_threshold(T);
        let prev = h.observe(T, false, Timestamp(3));
        assert_eq!(prev, Some(Suspect));
        assert_eq!(h.streak(Suspect, T, threshold), (3, 3));
        h.observe(T, true, Timestamp(4));
        let prev = h.observe(T, true, Timestamp(5));
        assert_eq!(prev, Some(Down));
        assert_eq!(
            h.streak(Down, T, threshold),
            (2, 2),
            "success_threshold after down"
        );
        h.observe(T, false, Timestamp(6));
        h.observe(T, true, Timestamp(7));
        assert_eq!(
            h.streak(Suspect, T, threshold),
            (1, 1),
            "one success clears a suspicion"
        );
    }

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
    fn required_failures_grow_with_noise_and_are_capped() {
        assert_eq!(required_failures(3, 0.0), 3);
        assert_eq!(required_failures(3, 0.001), 3);
        assert_eq!(required_failures(3, 0.01), 4);
        assert_eq!(required_failures(3, 0.03), 5);
        assert_eq!(required_failures(3, 0.5), 6, "capped at three more");
    }

    #[test]
    fn a_noisy_target_needs_more_consecutive_failures_a_clean_one_does_not() {
        // 100 scheduled probes while healthy, of which every 25th fails (4 %); each failure is
        // followed by a confirmation re-probe that succeeds and does not count as a sample.
        let mut h = CheckHealth::new(Timestamp(0));
        let mut t = 0;
        let mut probe = |h: &mut CheckHealth, ok: bool| {
            t += 1;
            h.observe(T, ok, Timestamp(t));
        };
        probe(&mut h, true);
        for i in 0..100 {
            probe(&mut h, i % 25 != 0);
            if i % 25 == 0 {
                probe(&mut h, true);
            }
        }
        assert_eq!(h.noise(), Some(4.0 / 100.0));
        assert_eq!(h.failure_threshold(T), 5);
        // The outage's first failure is a scheduled probe too: 5 in 101 now, so six are needed.
        probe(&mut h, false);
        assert_eq!(h.failure_threshold(T), 6);
        for _ in 0..4 {
            probe(&mut h, false);
        }
        assert_eq!(
            h.health, Suspect,
            "five failures are not enough on a 5 % noisy target"
        );
        probe(&mut h, false);
        assert_eq!(h.health, Down);

        let mut clean = CheckHealth::new(Timestamp(0));
        for _ in 0..100 {
            probe(&mut clean, true);
        }
        assert_eq!(clean.failure_threshold(T), 3);
        let fixed = Thresholds {
            adaptive: false,
            ..T
        };
        assert_eq!(
            h.failure_threshold(fixed),
            3,
            "adaptation can be turned off"
        );
    }

    #[test]
    fn fixed_confirmation_is_down_after_exactly_failure_threshold_on_a_noisy_target() {
        let script = noisy_warm_up() + "---";
        let health = trace_with(FIXED, &script);
        assert_eq!(health[40..], [Suspect, Suspect, Down]);
        assert!(thresholds_with(FIXED, &script).iter().all(|t| *t == 3));
    }

    #[test]
    fn adaptive_confirmation_on_the_same_target_needs_more_and_stops_at_its_cap() {
        let script = noisy_warm_up() + "------";
        let health = trace_with(T, &script);
        assert_eq!(
            health[40..],
            [Suspect, Suspect, Suspect, Suspect, Suspect, Down],
            "12.5 % noise asks for the cap: failure_threshold + 3"
        );
        let thresholds = thresholds_with(T, &script);
        assert_eq!(
            thresholds[30], 3,
            "fewer than 32 samples: the configured threshold"
        );
        assert_eq!(thresholds[39], 6);
        assert_eq!(T.max_failures(), 6);
        assert_eq!(FIXED.max_failures(), 3);
    }

    #[test]
    fn the_adaptive_threshold_shrinks_back_as_the_noise_leaves_the_window() {
        // 128 clean scheduled probes push the noisy ones out of the estimate.
        let script = noisy_warm_up() + &"+".repeat(128);
        let thresholds = thresholds_with(T, &script);
        assert_eq!(thresholds[39], 6);
        assert_eq!(*thresholds.last().expect("outcomes"), 3);
    }

    #[test]
    fn a_corroborated_check_is_down_after_two_failures_even_when_noisy() {
        let c = corroborated(T);
        assert_eq!((c.failure, c.adaptive, c.success), (2, false, 2));
        assert_eq!(trace_with(c, "+--"), vec![Healthy, Suspect, Down]);
        // The noisy target that needed six failures needs two under corroboration.
        let script = noisy_warm_up() + "--";
        assert_eq!(trace_with(T, &script)[41], Suspect);
        let mut h = CheckHealth::new(Timestamp(0));
        for (i, ch) in noisy_warm_up().chars().enumerate() {
            h.observe(T, ch == '+', Timestamp(i as i64));
        }
        h.observe(c, false, Timestamp(100));
        h.observe(c, false, Timestamp(101));
        assert_eq!(h.health, Down);
        // A threshold of 1 stays 1; successes never make a check down.
        assert_eq!(corroborated(Thresholds::new(1, 1)).failure, 1);
        assert!(trace_with(c, "+++++").iter().all(|h| *h == Healthy));
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
