//! Announcement events: delivery attempts, suppressed and waiting e-mail, the outbox, incidents.

use super::Metrics;

impl Metrics {
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
}
