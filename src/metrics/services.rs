//! Service events: state, transitions, routes, holds, detection time, drills and reviews.

use super::Metrics;
use crate::failover::{Cause, Side, State};

impl Metrics {
    /// A service is now in `state`: exactly one of its state series is 1.
    pub fn service_state(&self, service: &str, state: State) {
        self.services.state(service, state);
    }

    /// A route now sends customers to `side`, whose target is `target`; the other side's
    /// series (once declared with [`Metrics::route_targets`]) drops to 0.
    pub fn route_active(&self, service: &str, route: &str, side: Side, target: &str) {
        let (primary, backup) = match side {
            Side::Primary => (Some(target), None),
            Side::Backup => (None, Some(target)),
        };
        self.services.route(service, route, primary, backup, side);
    }

    /// A route's two targets and its active side, e.g. at start-up: both series appear at once.
    pub fn route_targets(
        &self,
        service: &str,
        route: &str,
        primary: &str,
        backup: &str,
        active: Side,
    ) {
        self.services
            .route(service, route, Some(primary), Some(backup), active);
    }

    /// A service changed state.
    pub fn transition(&self, service: &str, from: State, to: State, cause: Cause) {
        self.transitions_total
            .with_label_values(&[service, from.as_str(), to.as_str(), cause.as_str()])
            .inc();
    }

    /// An outage was detected and acted on `secs` after its first failing probe.
    pub fn detection_seconds(&self, service: &str, secs: f64) {
        // Labelled by service so on-call can see which channel was slow to switch. Kept in
        // the flat service table, not the registry: at thousands of services the registry's
        // per-series cost in memory and scrape time is what the scale goals cannot afford.
        self.services.detection(service, secs);
    }

    /// A service is configured: its detection histogram exists from the start, at zero, so
    /// `increase()` and `rate()` see the first detection.
    pub fn detection_configured(&self, service: &str) {
        self.services.configured(service);
    }

    /// When the service entered its current state.
    pub fn state_since(&self, service: &str, since: crate::clock::Timestamp) {
        self.services.since(service, since.as_secs_f64());
    }

    /// The flapping signal of a service turned on or off.
    pub fn flapping(&self, service: &str, on: bool) {
        self.services.flapping(service, on);
    }

    /// The holds in force for a service now (flapping, pin, maintenance, recovery hold), with
    /// their end times: `switchboard_service_hold` and its `_until_timestamp_seconds`.
    pub fn holds(&self, service: &str, holds: &[crate::failover::HoldInForce]) {
        self.services.holds(service, holds);
    }

    /// A service is no longer configured: drops its state and route series.
    pub fn forget_service(&self, service: &str) {
        // All its series go with it (state, routes, detection, drills) rather than staying at
        // their last values forever.
        self.services.remove(service);
    }

    /// Exports the drill series of a configured service at 0, so alerts on "no drill for 90
    /// days" see the service before its first drill.
    pub fn drill_service_configured(&self, service: &str) {
        self.services.configured(service);
    }

    /// A drill of `service` ended at `at_secs` with `result` (`pass`, `fail`, `aborted` or
    /// `interrupted`). An aborted or interrupted drill does not change the last success.
    pub fn drill(&self, service: &str, result: &str, at_secs: f64) {
        self.services.drill(service, result, at_secs);
    }

    /// The unreviewed automatic transitions now: how many, and the oldest one's age.
    pub fn reviews(&self, pending: u64, oldest_age_secs: f64) {
        self.reviews_pending.set(pending as i64);
        self.review_oldest_pending_age_seconds
            .set(oldest_age_secs.max(0.0));
    }
}
