//! Probe events: a check configured, probed, judged, removed; its loop restarted or late.

use super::table::{ProbeValues, HEALTHS};
use super::Metrics;
use crate::config::CheckSpec;
use crate::probe::{ErrorClass, Outcome};

impl Metrics {
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
            mail: matches!(check.kind, CheckKind::MailRoundtrip(_)).then(|| mail_phases(outcome)),
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
        if let CheckKind::Browser(browser) = &check.kind {
            self.browser_steps(service, check, browser, outcome);
        }
    }

    /// Each browser step's time in this run; a step that did not run loses its series, so a
    /// dashboard never shows a time from an older run beside this one's.
    fn browser_steps(
        &self,
        service: &str,
        check: &CheckSpec,
        browser: &crate::config::BrowserCheck,
        outcome: &Outcome,
    ) {
        let instance = check.target();
        for step in &browser.steps {
            let labels = [
                instance.as_str(),
                service,
                check.name.as_str(),
                step.name.as_str(),
            ];
            match outcome.steps.iter().find(|s| s.name == step.name) {
                Some(ran) => self
                    .browser_step_duration_seconds
                    .with_label_values(&labels)
                    .set(ran.duration.as_secs_f64()),
                None => {
                    let _ = self
                        .browser_step_duration_seconds
                        .remove_label_values(&labels);
                }
            }
        }
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

    /// A check is no longer configured (after a reload): drops all its series so dashboards do
    /// not show a frozen last value forever.
    pub fn remove_check(&self, service: &str, check: &CheckSpec) {
        self.checks.remove(&check.name);
        if let crate::config::CheckKind::Browser(browser) = &check.kind {
            let instance = check.target();
            for step in &browser.steps {
                let labels = [
                    instance.as_str(),
                    service,
                    check.name.as_str(),
                    step.name.as_str(),
                ];
                let _ = self
                    .browser_step_duration_seconds
                    .remove_label_values(&labels);
            }
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
}

/// The mail round trip's phases from its steps, each 0 unless it finished.
fn mail_phases(outcome: &Outcome) -> [f64; 2] {
    ["accepted", "arrived"].map(|name| {
        outcome
            .steps
            .iter()
            .find(|s| s.name == name && s.success)
            .map_or(0.0, |s| s.duration.as_secs_f64())
    })
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
