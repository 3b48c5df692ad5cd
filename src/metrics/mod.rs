//! Prometheus registry and named telemetry events: call sites say what happened, never format metric names.
//!
//! Probe metrics carry blackbox_exporter's names and meanings (so its dashboards and alert
//! rules work unchanged), labelled `instance` (the target), `service` and `check`. Switchboard's
//! own metrics are `switchboard_*`. Each method is one thing that happened; it updates every
//! series that thing touches, so no caller can update half of them.
//!
//! This file holds the registry and the text rendering; the events are grouped by what they
//! are about: `probes.rs`, `services.rs`, `announce.rs` and `daemon.rs` (store, audit,
//! auth, clock, reloads, and the restore at start). `table.rs` holds the per-check and
//! per-service series.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

mod announce;
mod cluster;
pub use cluster::{cluster_text, votes_text};
mod daemon;
mod probes;
mod services;
mod table;

use table::{CheckTable, ServiceTable};

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
    audit_head_sequence: IntGauge,
    audit_head_info: IntGaugeVec,
    store_errors_total: IntCounterVec,
    store_pending_transitions: IntGauge,
    probe_loop_restarts_total: IntCounterVec,
    probe_local_errors_total: IntCounterVec,
    clock_offset_seconds: Gauge,
    build_info: IntGaugeVec,
    /// Each step of a browser check: few checks, so a registry family is cheap enough.
    browser_step_duration_seconds: GaugeVec,
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
            browser_step_duration_seconds: gauge_vec(
                r,
                "probe_browser_step_duration_seconds",
                "Time each step of a browser check took in its last run (only steps that ran; the failing step's time is up to its failure).",
                &["instance", "service", "check", "step"],
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
            audit_head_sequence: int_gauge(
                r,
                "switchboard_audit_head_sequence",
                "The id of the newest audit record (the chain's head), anchored outside the database: compare it with `switchboard audit verify --anchor SEQ:HASH`.",
            ),
            audit_head_info: int_gauge_vec(
                r,
                "switchboard_audit_head_info",
                "Always 1; labelled with the chain head's sequence and the first 12 hex characters of its hash (one series, replaced as the head moves).",
                &["sequence", "hash"],
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
mod tests;
