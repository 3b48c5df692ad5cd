//! Prometheus registry and named telemetry events: call sites say what happened, never format metric names.
//!
//! Probe metrics carry blackbox_exporter's names and meanings (so its dashboards and alert
//! rules work unchanged), labelled `instance` (the target), `service` and `check`. Switchboard's
//! own metrics are `switchboard_*`. Each method is one thing that happened; it updates every
//! series that thing touches, so no caller can update half of them.

use crate::config::CheckSpec;
use crate::failover::{Cause, Side, State};
use crate::probe::{ErrorClass, Outcome};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

mod table;

#[cfg(test)]
use table::PHASES;
use table::{CheckTable, ProbeValues, ServiceTable, HEALTHS};

/// Everything Switchboard exports, in its own registry (never the global one, so tests and
/// several daemons in one process do not see each other's series).
pub struct Metrics {
    pub registry: Registry,
    /// Per-check probe series (blackbox names), health and probe counts.
    checks: CheckTable,
    /// Per-service state, time in state, flapping and route targets.
    services: ServiceTable,
    transitions_total: IntCounterVec,
    announcements_total: IntCounterVec,
    announcements_suppressed_total: IntCounterVec,
    announcements_waiting: IntGaugeVec,
    announcement_last_success: GaugeVec,
    outbox_given_up_total: IntCounterVec,
    outbox_backlog: IntGauge,
    incidents_open: IntGauge,
    outbox_oldest_age_seconds: Gauge,
    reviews_pending: IntGauge,
    review_oldest_pending_age_seconds: Gauge,
    config_last_reload_success_timestamp_seconds: Gauge,
    api_auth_failures_total: IntCounterVec,
    schedule_lag_seconds: Histogram,
    config_reloads_total: IntCounterVec,
    config_last_reload_successful: IntGauge,
    audit_records_total: IntCounterVec,
    store_errors_total: IntCounterVec,
    store_pending_transitions: IntGauge,
    probe_loop_restarts_total: IntCounterVec,
    probe_local_errors_total: IntCounterVec,
    clock_offset_seconds: Gauge,
    build_info: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric, and sets `switchboard_build_info`.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let metrics = Metrics {
            checks: CheckTable::default(),
            services: ServiceTable::default(),
            transitions_total: counter_vec(
                r,
                "switchboard_transitions_total",
                "Failover state transitions, by cause.",
                &["service", "from", "to", "cause"],
            ),
            announcements_total: counter_vec(
                r,
                "switchboard_announcements_total",
                "Announcement delivery attempts, by channel, audience, kind and result (success, failure, given_up).",
                &["channel", "audience", "kind", "result"],
            ),
            announcements_suppressed_total: counter_vec(
                r,
                "switchboard_announcements_suppressed_total",
                "E-mail announcements deliberately not sent, by audience and reason (undone: the change undid itself within customer_delay; superseded: a later change within it replaced it). Rebuilt from the store at start.",
                &["audience", "reason"],
            ),
            announcements_waiting: int_gauge_vec(
                r,
                "switchboard_announcements_waiting",
                "E-mail announcements waiting for their group (group_window) or their customer_delay, by audience.",
                &["audience"],
            ),
            announcement_last_success: gauge_vec(
                r,
                "switchboard_announcement_last_success_timestamp_seconds",
                "When an announcement was last delivered over this channel (Unix seconds; 0 never).",
                &["channel"],
            ),
            outbox_given_up_total: counter_vec(
                r,
                "switchboard_outbox_given_up_total",
                "Announcements given up after give_up_after without delivery, by channel. Any increase needs a human.",
                &["channel"],
            ),
            outbox_backlog: int_gauge(
                r,
                "switchboard_outbox_backlog",
                "Announcements waiting in the outbox.",
            ),
            incidents_open: int_gauge(
                r,
                "switchboard_incidents_open",
                "Incidents on the status page that are not resolved.",
            ),
            outbox_oldest_age_seconds: gauge(
                r,
                "switchboard_outbox_oldest_age_seconds",
                "Age of the oldest announcement waiting in the outbox, in seconds (0 when empty).",
            ),
            reviews_pending: int_gauge(
                r,
                "switchboard_reviews_pending",
                "Automatic transitions no operator has reviewed yet.",
            ),
            review_oldest_pending_age_seconds: gauge(
                r,
                "switchboard_review_oldest_pending_age_seconds",
                "Age of the oldest unreviewed automatic transition, in seconds (0 when none).",
            ),
            config_last_reload_success_timestamp_seconds: gauge(
                r,
                "switchboard_config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully, in seconds since the epoch.",
            ),
            api_auth_failures_total: counter_vec(
                r,
                "switchboard_api_auth_failures_total",
                "Control API requests refused, by reason (missing, invalid, forbidden, throttled).",
                &["reason"],
            ),
            schedule_lag_seconds: histogram(
                r,
                "switchboard_probe_schedule_lag_seconds",
                "How late probes started compared to their schedule, in seconds.",
                vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            config_reloads_total: counter_vec(
                r,
                "switchboard_config_reloads_total",
                "Configuration loads and reloads, by result (success or failure).",
                &["result"],
            ),
            config_last_reload_successful: int_gauge(
                r,
                "switchboard_config_last_reload_successful",
                "Whether the last configuration reload succeeded.",
            ),
            audit_records_total: counter_vec(
                r,
                "switchboard_audit_records_total",
                "Records appended to the hash-chained audit log, by kind.",
                &["kind"],
            ),
            probe_local_errors_total: counter_vec(
                r,
                "switchboard_probe_local_errors_total",
                "Probes that failed on this machine's own shortage (open files, buffers, memory), by service and check: not counted against the target.",
                &["service", "check"],
            ),
            probe_loop_restarts_total: counter_vec(
                r,
                "switchboard_probe_loop_restarts_total",
                "Probe loops restarted after a panic, by service and check (a bug: report it).",
                &["service", "check"],
            ),
            store_errors_total: counter_vec(
                r,
                "switchboard_store_errors_total",
                "Database or disk errors, by the store operation that failed. Any increase needs a human.",
                &["operation"],
            ),
            store_pending_transitions: int_gauge(
                r,
                "switchboard_store_pending_transitions",
                "Transitions decided but not yet recorded because the store refused them (disk full, database locked), waiting in memory with their announcements.",
            ),
            clock_offset_seconds: gauge(
                r,
                "switchboard_clock_offset_seconds",
                "How far the system clock has been stepped from the daemon's clock since it started (negative: set back). Holds and deadlines follow the daemon's clock, which never jumps; a restart re-reads the system clock.",
            ),
            build_info: int_gauge_vec(
                r,
                "switchboard_build_info",
                "Always 1; labelled with the running version.",
                &["version"],
            ),
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
    }

    /// A check ran once: sets blackbox's probe gauges and counts the probe.
    pub fn probe_finished(&self, service: &str, check: &CheckSpec, outcome: &Outcome) {
        use crate::config::CheckKind;
        let ph = &outcome.phases;
        let v = ProbeValues {
            // A multi-step check is HTTP: its series describe the whole sequence (see
            // probe::steps), so blackbox's HTTP dashboards read it like any HTTP check.
            http: matches!(check.kind, CheckKind::Http(_) | CheckKind::Steps(_)),
            regex: matches!(
                check.kind,
                CheckKind::Http(_) | CheckKind::Steps(_) | CheckKind::Tcp(_)
            ),
            dns: matches!(check.kind, CheckKind::Dns(_)).then(|| {
                let d = outcome.dns.unwrap_or_default();
                [d.answer_rrs, d.authority_rrs, d.additional_rrs].map(f64::from)
            }),
            success: outcome.success,
            duration: outcome.duration.as_secs_f64(),
            dns_lookup: ph.resolve.as_secs_f64(),
            status: f64::from(outcome.status.unwrap_or(0)),
            phases: [ph.resolve, ph.connect, ph.tls, ph.processing, ph.transfer]
                .map(|d| d.as_secs_f64()),
            ssl: outcome.tls.is_some(),
            http_version: outcome.http_version.unwrap_or(0.0),
            content_length: outcome.content_length as f64,
            redirects: f64::from(outcome.redirects),
            // Like blackbox, TLS series exist only for probes that used TLS; a target that
            // moved to plain HTTP must not keep reporting its old certificate.
            cert_expiry: outcome.tls.as_ref().map(|t| t.earliest_cert_expiry as f64),
            tls_version: outcome.tls.as_ref().map(|t| t.version.clone()),
            failed_due_to_regex: outcome.failed_due_to_regex || failed_due_to_body(outcome),
        };
        self.checks.probed(service, &check.name, &check.target(), v);
    }

    /// A check is configured: its health series appear (as `unknown`) before its first probe.
    pub fn check_configured(&self, service: &str, check: &CheckSpec) {
        self.checks
            .configured(service, &check.name, &check.target());
        // A new or changed check starts without a noise estimate: its configured threshold.
        self.checks
            .failure_threshold(&check.name, check.failure_threshold.max(1));
    }

    /// The consecutive failures a check needs to be down changed (adaptive confirmation).
    pub fn check_failure_threshold(&self, check: &str, threshold: u32) {
        self.checks.failure_threshold(check, threshold);
    }

    /// A check's smoothed health is now `health` (`unknown`, `healthy`, `suspect` or `down`).
    pub fn check_health(&self, service: &str, check: &str, health: &str) {
        if let Some(h) = HEALTHS.iter().find(|h| **h == health) {
            // Check names are unique across the configuration: the row already knows its
            // service, which keeps call sites explicit about what they report.
            let _ = service;
            self.checks.health(check, h);
        }
    }

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

    /// An announcement attempt over `channel` to `audience` about `kind` ended with `result`
    /// (`success`, `failure` or `given_up`). A success also moves the channel's last-success
    /// time to `at_secs`; a give-up also counts in `switchboard_outbox_given_up_total`.
    pub fn announcement(
        &self,
        channel: &str,
        audience: &str,
        kind: &str,
        result: &str,
        at_secs: f64,
    ) {
        self.announcements_total
            .with_label_values(&[channel, audience, kind, result])
            .inc();
        match result {
            "success" => self
                .announcement_last_success
                .with_label_values(&[channel])
                .set(at_secs),
            "given_up" => self
                .outbox_given_up_total
                .with_label_values(&[channel])
                .inc(),
            _ => {}
        }
    }

    /// `n` more e-mail announcements to `audience` were deliberately not sent, for `reason`
    /// (`n = 0` only exports the series).
    pub fn announcements_suppressed(&self, audience: &str, reason: &str, n: u64) {
        self.announcements_suppressed_total
            .with_label_values(&[audience, reason])
            .inc_by(n);
    }

    /// Parts waiting for their group now, by audience; audiences not named have none.
    pub fn announcements_waiting(&self, by_audience: &[(String, u64)]) {
        for audience in ["oncall", "customers"] {
            if !by_audience.iter().any(|(a, _)| a == audience) {
                self.announcements_waiting
                    .with_label_values(&[audience])
                    .set(0);
            }
        }
        for (audience, n) in by_audience {
            self.announcements_waiting
                .with_label_values(&[audience])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Exports the announcement series of a configured channel at zero, so alerts and
    /// dashboards see them before the first message: `pairs` are the (audience, kind)
    /// combinations the channel can carry.
    pub fn announcement_channel(&self, channel: &str, pairs: &[(&str, &str)]) {
        self.announcement_last_success.with_label_values(&[channel]);
        self.outbox_given_up_total.with_label_values(&[channel]);
        for (audience, kind) in pairs {
            for result in ["success", "failure", "given_up"] {
                self.announcements_total
                    .with_label_values(&[channel, audience, kind, result]);
            }
        }
    }

    /// Rebuilds, at start, every series that counts stored facts (drills, transitions,
    /// announcement attempts, audit records) for the configured `services`, so a restart
    /// leaves them where they were. Call once, on fresh metrics, before anything happens.
    pub fn restore(&self, facts: &crate::store::MetricFacts, services: &[&str]) {
        let configured = |s: &str| services.contains(&s);
        // Replayed through the live event, oldest first: the last drill and the last
        // success come out exactly as they were.
        for d in facts.drills.iter().filter(|d| configured(&d.service)) {
            self.drill(&d.service, &d.result, d.ended_at.as_secs_f64());
        }
        for t in facts.transitions.iter().filter(|t| configured(&t.service)) {
            self.transitions_total
                .with_label_values(&[&t.service, &t.from, &t.to, &t.cause])
                .inc_by(t.count);
        }
        for d in &facts.deliveries {
            // As `report_deliveries` labels rows from before the outbox knew kinds.
            let kind = if d.kind.is_empty() {
                "unknown"
            } else {
                &d.kind
            };
            for (result, n) in [
                ("success", d.success),
                ("failure", d.failure),
                ("given_up", d.given_up),
            ] {
                if n > 0 {
                    self.announcements_total
                        .with_label_values(&[&d.channel, &d.audience, kind, result])
                        .inc_by(n);
                }
            }
            if d.given_up > 0 {
                self.outbox_given_up_total
                    .with_label_values(&[&d.channel])
                    .inc_by(d.given_up);
            }
        }
        for (channel, at) in &facts.last_delivered {
            self.announcement_last_success
                .with_label_values(&[channel])
                .set(at.as_secs_f64());
        }
        for (kind, n) in &facts.audit_records {
            self.audit_records_total
                .with_label_values(&[kind])
                .inc_by(*n);
        }
    }

    /// The outbox now holds `backlog` announcements, the oldest waiting `oldest_age_secs`.
    pub fn outbox(&self, backlog: u64, oldest_age_secs: f64) {
        self.outbox_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        self.outbox_oldest_age_seconds.set(oldest_age_secs);
    }

    /// The status page has `open` unresolved incidents.
    pub fn incidents_open(&self, open: usize) {
        self.incidents_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// A record of `kind` was appended to the audit chain.
    pub fn audit_recorded(&self, kind: &str) {
        self.audit_records_total.with_label_values(&[kind]).inc();
    }

    /// The store failed during `operation` (e.g. `commit_transition`); the caller logs the error.
    pub fn store_error(&self, operation: &str) {
        self.store_errors_total
            .with_label_values(&[operation])
            .inc();
    }

    /// `n` transitions wait in memory for the store to take them (0 once all are recorded).
    pub fn store_pending_transitions(&self, n: usize) {
        self.store_pending_transitions
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A service is configured: its detection histogram exists from the start, at zero, so
    /// `increase()` and `rate()` see the first detection.
    pub fn detection_configured(&self, service: &str) {
        self.services.configured(service);
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

    /// The control API refused a request (`missing`, `invalid`, `forbidden`, `throttled`).
    pub fn auth_failure(&self, reason: &str) {
        self.api_auth_failures_total
            .with_label_values(&[reason])
            .inc();
    }

    /// Exports every auth failure reason at 0.
    pub fn auth_configured(&self) {
        for reason in ["missing", "invalid", "forbidden", "throttled"] {
            self.api_auth_failures_total.with_label_values(&[reason]);
        }
    }

    /// A probe failed for lack of local resources; its outcome was set aside.
    pub fn probe_local_error(&self, service: &str, check: &str) {
        self.probe_local_errors_total
            .with_label_values(&[service, check])
            .inc();
    }

    /// A check's probe loop panicked and was started again.
    pub fn probe_loop_restarted(&self, service: &str, check: &str) {
        self.probe_loop_restarts_total
            .with_label_values(&[service, check])
            .inc();
    }

    /// A probe started `secs` after it was scheduled to.
    pub fn schedule_lag(&self, secs: f64) {
        self.schedule_lag_seconds.observe(secs.max(0.0));
    }

    /// How far the system clock now is from the daemon's (`Timestamp::wall_offset_secs`).
    pub fn clock_offset(&self, secs: f64) {
        self.clock_offset_seconds.set(secs);
    }

    /// A configuration (re)load finished.
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.config_reloads_total.with_label_values(&[result]).inc();
        self.config_last_reload_successful.set(i64::from(ok));
        if ok {
            self.config_last_reload_success_timestamp_seconds
                .set(crate::clock::Timestamp::now().as_secs_f64());
        }
    }

    /// Exports both reload results at 0 (the first load counts as a success by the caller).
    pub fn config_reload_configured(&self) {
        for result in ["success", "failure"] {
            self.config_reloads_total.with_label_values(&[result]);
        }
    }

    /// A check is no longer configured (after a reload): drops all its series so dashboards do
    /// not show a frozen last value forever.
    pub fn remove_check(&self, _service: &str, check: &CheckSpec) {
        self.checks.remove(&check.name);
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

    /// The text exposition format 0.0.4, for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1 << 16);
        self.checks.render(&mut out);
        self.services.render(&mut out);
        let mut buf = out.into_bytes();
        // Encoding to a Vec only fails on metric families that violate the format, which the
        // registry prevents; an empty or partial page is the worst case, never a panic.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Best effort blackbox parity: a failed condition about `[BODY]` is the closest thing to
/// blackbox's failed `fail_if_body_*_regexp`.
fn failed_due_to_body(outcome: &Outcome) -> bool {
    outcome
        .error
        .as_ref()
        .is_some_and(|e| e.class == ErrorClass::Conditions)
        && outcome
            .conditions
            .iter()
            .any(|c| !c.success && c.condition.contains("[BODY]"))
}

// Registration fails only on a duplicate or malformed name. The names below are constants and
// the registry is fresh, so a failure is a bug caught by the first unit test: these helpers
// panic with the metric's name on that stated invariant.

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect(name);
    r.register(Box::new(m.clone())).expect(name);
    m
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect(name);
    r.register(Box::new(m.clone())).expect(name);
    m
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let m = IntGauge::new(name, help).expect(name);
    r.register(Box::new(m.clone())).expect(name);
    m
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let m = GaugeVec::new(Opts::new(name, help), labels).expect(name);
    r.register(Box::new(m.clone())).expect(name);
    m
}

fn gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    let m = Gauge::new(name, help).expect(name);
    r.register(Box::new(m.clone())).expect(name);
    m
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect(name);
    r.register(Box::new(m.clone())).expect(name);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::config::{CheckKind, HttpCheck, Role};
    use crate::probe::{ConditionResult, Phases, ProbeError, TlsInfo};
    use std::time::Duration;

    fn spec() -> CheckSpec {
        CheckSpec {
            name: "portal-form".to_string(),
            service: "tickets".to_string(),
            role: Role::Primary,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            retry_interval: Duration::from_secs(5),
            failure_threshold: 3,
            success_threshold: 2,
            confirmation: Default::default(),
            conditions: Vec::new(),
            kind: CheckKind::Http(HttpCheck {
                url: "https://support.example.com/new".parse().unwrap(),
                method: "GET".to_string(),
                headers: Vec::new(),
                body: None,
                max_redirects: 10,
                max_body_bytes: 1 << 20,
                insecure: false,
                net: Default::default(),
            }),
        }
    }

    fn outcome(tls: bool) -> Outcome {
        Outcome {
            check: "portal-form".to_string(),
            success: true,
            conditions: Vec::new(),
            status: Some(200),
            duration: Duration::from_millis(250),
            phases: Phases {
                resolve: Duration::from_millis(10),
                connect: Duration::from_millis(20),
                tls: if tls {
                    Duration::from_millis(30)
                } else {
                    Duration::ZERO
                },
                processing: Duration::from_millis(40),
                transfer: Duration::from_millis(50),
            },
            error: None,
            started_at: Timestamp::from_millis(0),
            tls: tls.then(|| TlsInfo {
                version: "TLS 1.3".to_string(),
                earliest_cert_expiry: 1_900_000_000,
            }),
            http_version: Some(1.1),
            content_length: 1234,
            body_truncated: false,
            redirects: 1,
            failed_due_to_regex: false,
            dns: None,
            steps: Vec::new(),
        }
    }

    /// Sample lines (no comments) whose name and labels contain every fragment in `parts`.
    fn lines<'a>(text: &'a str, parts: &[&str]) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .collect()
    }

    const LABELS: &str =
        r#"{check="portal-form",instance="https://support.example.com/new",service="tickets"}"#;

    #[test]
    fn probe_finished_exports_blackbox_gauges_with_all_phases() {
        let m = Metrics::new();
        m.probe_finished("tickets", &spec(), &outcome(true));
        let text = m.render();
        for (name, value) in [
            ("probe_success", "1"),
            ("probe_duration_seconds", "0.25"),
            ("probe_dns_lookup_time_seconds", "0.01"),
            ("probe_http_status_code", "200"),
            ("probe_http_ssl", "1"),
            ("probe_http_version", "1.1"),
            ("probe_http_content_length", "1234"),
            ("probe_http_redirects", "1"),
            ("probe_ssl_earliest_cert_expiry", "1900000000"),
            ("probe_failed_due_to_regex", "0"),
        ] {
            let line = format!("{name}{LABELS} {value}");
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        for (phase, value) in PHASES.iter().zip(["0.01", "0.02", "0.03", "0.04", "0.05"]) {
            let found = lines(
                &text,
                &[
                    "probe_http_duration_seconds{",
                    &format!("phase=\"{phase}\""),
                ],
            );
            assert_eq!(found.len(), 1, "{phase}: {found:?}");
            assert!(found[0].ends_with(&format!(" {value}")), "{found:?}");
        }
        assert_eq!(
            lines(
                &text,
                &["probe_tls_version_info{", "version=\"TLS 1.3\"", "} 1"]
            )
            .len(),
            1
        );
        assert_eq!(
            lines(
                &text,
                &["switchboard_probes_total{", "result=\"success\"", "} 1"]
            )
            .len(),
            1
        );
    }

    #[test]
    fn plain_http_probe_has_all_phases_but_no_tls_series() {
        let m = Metrics::new();
        m.probe_finished("tickets", &spec(), &outcome(true));
        m.probe_finished("tickets", &spec(), &outcome(false));
        let text = m.render();
        assert_eq!(lines(&text, &["probe_http_duration_seconds{"]).len(), 5);
        assert!(
            lines(
                &text,
                &["probe_http_duration_seconds{", "phase=\"tls\"", "} 0"]
            )
            .len()
                == 1
        );
        assert!(
            lines(&text, &["probe_ssl_earliest_cert_expiry"]).is_empty(),
            "{text}"
        );
        assert!(
            lines(&text, &["probe_tls_version_info"]).is_empty(),
            "{text}"
        );
        assert_eq!(lines(&text, &["probe_http_ssl{", "} 0"]).len(), 1);
    }

    #[test]
    fn failed_body_condition_sets_failed_due_to_regex() {
        let m = Metrics::new();
        let mut o = outcome(false);
        o.success = false;
        o.conditions = vec![ConditionResult {
            condition: "[BODY] == pat(*request_subject*)".to_string(),
            success: false,
            resolved: "[BODY] (...) == pat(*request_subject*)".to_string(),
        }];
        o.error = Some(ProbeError {
            class: ErrorClass::Conditions,
            message: "condition failed".to_string(),
        });
        m.probe_finished("tickets", &spec(), &o);
        let text = m.render();
        assert_eq!(
            lines(&text, &["probe_failed_due_to_regex{", "} 1"]).len(),
            1,
            "{text}"
        );
        assert_eq!(lines(&text, &["probe_success{", "} 0"]).len(), 1);
        assert_eq!(
            lines(
                &text,
                &["switchboard_probes_total{", "result=\"failure\"", "} 1"]
            )
            .len(),
            1
        );
    }

    #[test]
    fn exactly_one_service_state_is_current() {
        let m = Metrics::new();
        m.service_state("tickets", State::Operational);
        m.service_state("tickets", State::FailedOver);
        let text = m.render();
        let all = lines(
            &text,
            &["switchboard_service_state{", "service=\"tickets\""],
        );
        assert_eq!(all.len(), State::ALL.len());
        let current = lines(&text, &["switchboard_service_state{", "} 1"]);
        assert_eq!(
            current,
            [r#"switchboard_service_state{service="tickets",state="failed_over"} 1"#]
        );
    }

    #[test]
    fn check_health_has_one_series_per_value() {
        let m = Metrics::new();
        m.check_configured("tickets", &spec());
        m.check_health("tickets", "portal-form", "suspect");
        let text = m.render();
        assert_eq!(lines(&text, &["switchboard_check_health{"]).len(), 4);
        assert_eq!(
            lines(&text, &["switchboard_check_health{", "} 1"]),
            [
                r#"switchboard_check_health{check="portal-form",health="suspect",service="tickets"} 1"#
            ]
        );
    }

    #[test]
    fn route_switch_keeps_two_series_with_one_active() {
        let m = Metrics::new();
        m.route_active("tickets", "submit", Side::Primary, "https://a.example.com/");
        m.route_active("tickets", "submit", Side::Backup, "https://b.example.net/");
        let text = m.render();
        assert_eq!(
            lines(&text, &["switchboard_route_active_target{"]),
            [
                r#"switchboard_route_active_target{route="submit",service="tickets",side="backup",target="https://b.example.net/"} 1"#,
                r#"switchboard_route_active_target{route="submit",service="tickets",side="primary",target="https://a.example.com/"} 0"#,
            ]
        );
        // A reload that changes the backup target replaces its series instead of adding a third.
        m.route_targets(
            "tickets",
            "submit",
            "https://a.example.com/",
            "https://c.example.net/",
            Side::Primary,
        );
        let text = m.render();
        assert_eq!(
            lines(&text, &["switchboard_route_active_target{"]).len(),
            2,
            "{text}"
        );
        assert_eq!(
            lines(
                &text,
                &[
                    "switchboard_route_active_target{",
                    "side=\"primary\"",
                    "} 1"
                ]
            )
            .len(),
            1
        );
    }

    #[test]
    fn counters_histograms_and_info() {
        let m = Metrics::new();
        m.transition(
            "tickets",
            State::Operational,
            State::FailedOver,
            Cause::PrimaryDown,
        );
        m.detection_seconds("tickets", 3.2);
        m.announcement("email", "oncall", "failover", "success", 1_700_000_000.0);
        m.announcement("chat", "oncall", "failover", "given_up", 0.0);
        m.outbox(2, 4.5);
        m.schedule_lag(0.003);
        m.config_reload(true);
        m.config_reload(false);
        m.drill("ticket-submission", "pass", 1.0);
        let text = m.render();
        for line in [
            r#"switchboard_transitions_total{cause="primary_down",from="operational",service="tickets",to="failed_over"} 1"#,
            r#"switchboard_detection_seconds_count{service="tickets"} 1"#,
            r#"switchboard_detection_seconds_bucket{service="tickets",le="5"} 1"#,
            r#"switchboard_announcements_total{audience="oncall",channel="email",kind="failover",result="success"} 1"#,
            r#"switchboard_announcement_last_success_timestamp_seconds{channel="email"} 1700000000"#,
            r#"switchboard_outbox_given_up_total{channel="chat"} 1"#,
            "switchboard_outbox_backlog 2",
            "switchboard_outbox_oldest_age_seconds 4.5",
            "switchboard_probe_schedule_lag_seconds_count 1",
            r#"switchboard_config_reloads_total{result="success"} 1"#,
            r#"switchboard_config_reloads_total{result="failure"} 1"#,
            "switchboard_config_last_reload_successful 0",
            r#"switchboard_drills_total{result="pass",service="ticket-submission"} 1"#,
            &format!(
                r#"switchboard_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains("# TYPE switchboard_transitions_total counter"));
        assert!(text.contains("# TYPE switchboard_detection_seconds histogram"));
    }

    #[test]
    fn restored_facts_read_as_the_live_events_left_them() {
        use crate::store::{DeliveryCount, FinishedDrill, MetricFacts, TransitionCount};
        let drill = |result: &str, at: i64| FinishedDrill {
            service: "tickets".into(),
            result: result.into(),
            ended_at: crate::clock::Timestamp(at),
        };
        let facts = MetricFacts {
            // A fail, a pass, then an abort: the last drill is the abort, and the abort leaves
            // the last result (the pass), as it does live.
            drills: vec![
                drill("fail", 1_000),
                drill("pass", 5_000),
                drill("aborted", 9_000),
            ],
            transitions: vec![TransitionCount {
                service: "gone".into(),
                from: "operational".into(),
                to: "failed_over".into(),
                cause: "primary_down".into(),
                count: 4,
            }],
            deliveries: vec![DeliveryCount {
                channel: "email".into(),
                audience: "oncall".into(),
                kind: String::new(),
                success: 2,
                failure: 3,
                given_up: 1,
            }],
            last_delivered: vec![("email".into(), crate::clock::Timestamp(7_500))],
            audit_records: vec![("transition".into(), 6)],
        };
        let m = Metrics::new();
        m.restore(&facts, &["tickets"]);
        let text = m.render();
        for line in [
            r#"switchboard_drills_total{result="fail",service="tickets"} 1"#,
            r#"switchboard_drills_total{result="pass",service="tickets"} 1"#,
            r#"switchboard_drills_total{result="aborted",service="tickets"} 1"#,
            r#"switchboard_drill_last_timestamp_seconds{service="tickets"} 9"#,
            r#"switchboard_drill_last_success{service="tickets"} 1"#,
            r#"switchboard_announcements_total{audience="oncall",channel="email",kind="unknown",result="success"} 2"#,
            r#"switchboard_announcements_total{audience="oncall",channel="email",kind="unknown",result="failure"} 3"#,
            r#"switchboard_announcements_total{audience="oncall",channel="email",kind="unknown",result="given_up"} 1"#,
            r#"switchboard_outbox_given_up_total{channel="email"} 1"#,
            r#"switchboard_announcement_last_success_timestamp_seconds{channel="email"} 7.5"#,
            r#"switchboard_audit_records_total{kind="transition"} 6"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("service=\"gone\""),
            "a service no longer configured gets no series back"
        );
    }

    #[test]
    fn removed_check_leaves_no_series() {
        let m = Metrics::new();
        m.probe_finished("tickets", &spec(), &outcome(true));
        m.check_health("tickets", "portal-form", "healthy");
        m.remove_check("tickets", &spec());
        let text = m.render();
        assert!(!text.contains("portal-form"), "{text}");
    }
    /// A check of another kind than http, with the same name as `spec()`.
    fn spec_of(kind: CheckKind) -> CheckSpec {
        CheckSpec { kind, ..spec() }
    }

    #[test]
    fn smtp_with_starttls_exports_common_and_tls_series_but_no_http_series() {
        let m = Metrics::new();
        let smtp = spec_of(CheckKind::Smtp(crate::config::SmtpCheck {
            host: "mx.example.com".to_string(),
            port: 25,
            starttls: true,
            tls: false,
            insecure: false,
            ehlo: "probe.example.com".to_string(),
            net: Default::default(),
        }));
        let mut o = outcome(true);
        o.status = Some(220);
        o.http_version = None;
        m.probe_finished("tickets", &smtp, &o);
        let text = m.render();
        let labels =
            r#"{check="portal-form",instance="smtp://mx.example.com:25",service="tickets"}"#;
        for (name, value) in [
            ("probe_success", "1"),
            ("probe_duration_seconds", "0.25"),
            ("probe_dns_lookup_time_seconds", "0.01"),
            ("probe_ssl_earliest_cert_expiry", "1900000000"),
        ] {
            let line = format!("{name}{labels} {value}");
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(
            lines(
                &text,
                &["probe_tls_version_info{", "version=\"TLS 1.3\"", "} 1"]
            )
            .len(),
            1,
            "{text}"
        );
        assert!(lines(&text, &["probe_http_"]).is_empty(), "{text}");
        assert!(
            lines(&text, &["probe_failed_due_to_regex"]).is_empty(),
            "{text}"
        );
    }

    #[test]
    fn a_configured_service_has_zeroed_detection_and_drill_series_until_forgotten() {
        let m = Metrics::new();
        m.detection_configured("tickets");
        m.drill_service_configured("tickets");
        let text = m.render();
        assert!(text.contains(r#"switchboard_detection_seconds_count{service="tickets"} 0"#));
        assert!(text.contains(r#"switchboard_drills_total{result="pass",service="tickets"} 0"#));
        m.forget_service("tickets");
        let text = m.render();
        assert!(!text.contains(r#"service="tickets""#), "{text}");
    }

    #[test]
    fn dns_exports_no_http_and_no_tls_series() {
        let m = Metrics::new();
        let dns = spec_of(CheckKind::Dns(crate::config::DnsCheck {
            server: "127.0.0.1".parse().unwrap(),
            port: 53,
            name: "support.example.com".to_string(),
            qtype: 1,
            expect_rcode: "NOERROR".to_string(),
            expect_answers: Vec::new(),
        }));
        let mut o = outcome(false);
        o.status = None;
        o.http_version = None;
        o.success = false;
        m.probe_finished("tickets", &dns, &o);
        let text = m.render();
        assert_eq!(lines(&text, &["probe_success{", "} 0"]).len(), 1, "{text}");
        assert_eq!(
            lines(
                &text,
                &[
                    "probe_dns_lookup_time_seconds{",
                    "instance=\"dns://127.0.0.1:53/support.example.com\"",
                    "} 0.01"
                ]
            )
            .len(),
            1,
            "{text}"
        );
        assert!(lines(&text, &["probe_http_"]).is_empty(), "{text}");
        assert!(lines(&text, &["probe_ssl_"]).is_empty(), "{text}");
        assert!(lines(&text, &["probe_tls_"]).is_empty(), "{text}");
    }
}
