//! The daemon's own events: the store, the audit chain, API auth, the clock, config reloads,
//! and the metrics rebuilt from stored facts at start.

use super::Metrics;

impl Metrics {
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

    /// A record of `kind` was appended to the audit chain.
    pub fn audit_recorded(&self, kind: &str) {
        self.audit_records_total.with_label_values(&[kind]).inc();
    }

    /// The audit chain's head is record `sequence` with `hash`: the gauge, and the info series
    /// naming its short hash (the previous head's series is removed).
    pub fn audit_head(&self, sequence: i64, hash: &str) {
        self.audit_head_sequence.set(sequence);
        self.audit_head_info.reset();
        self.audit_head_info
            .with_label_values(&[&sequence.to_string(), crate::audit::short_hash(hash)])
            .set(1);
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
}
