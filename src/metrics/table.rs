//! Per-check and per-service series kept in flat tables with their labels rendered once, and
//! written straight to the text format.
//!
//! At 10,000 checks the probe metrics are some 200,000 series. Kept as prometheus-crate label
//! vectors they cost hundreds of MiB and a second to encode; here a check is one small struct
//! with a pre-escaped label string, and a scrape is a few passes of string appends.

use crate::failover::{HoldInForce, HoldKind, Side, State};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};

/// Appends a sample value: integers without a fraction (as other clients write them), other
/// numbers in their shortest exact form. Formatting is most of a scrape's cost at 10,000 checks.
fn value(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else if v.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v > 0.0 {
        out.push_str("+Inf");
    } else {
        out.push_str("-Inf");
    }
}

/// Appends one sample line: `name{labels} value`.
fn sample(out: &mut String, name: &str, labels: &[&str], v: f64) {
    out.push_str(name);
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(l);
    }
    out.push_str("} ");
    value(out, v);
    out.push('\n');
}

/// Escapes a label value for the text format.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The last probe of one check, as blackbox exports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeValues {
    /// An HTTP check: only these get the `probe_http_*` series, as in blackbox.
    pub http: bool,
    /// A kind that exports `probe_failed_due_to_regex` (http and tcp, as in blackbox).
    pub regex: bool,
    /// A DNS check: answer, authority and additional record counts (0 without a reply).
    pub dns: Option<[f64; 3]>,
    /// A mail round trip: the `accepted` and `arrived` phases (0 for one that did not finish).
    pub mail: Option<[f64; 2]>,
    pub success: bool,
    pub duration: f64,
    pub dns_lookup: f64,
    pub status: f64,
    /// resolve, connect, tls, processing, transfer.
    pub phases: [f64; 5],
    pub ssl: bool,
    pub http_version: f64,
    pub content_length: f64,
    pub redirects: f64,
    /// Present only when the probe used TLS.
    pub cert_expiry: Option<f64>,
    pub tls_version: Option<String>,
    pub failed_due_to_regex: bool,
}

#[derive(Default)]
struct CheckValues {
    probe: Option<ProbeValues>,
    health: Option<&'static str>,
    /// Consecutive failures the check needs to be down now (adaptive confirmation may raise it).
    failure_threshold: Option<u32>,
    successes: u64,
    failures: u64,
}

/// Labels are written sorted by name, as Prometheus clients write them.
struct CheckRow {
    name: String,
    /// `check="…",instance="…"`.
    check_instance: String,
    /// `check="…"`.
    check: String,
    /// `service="…"`.
    service: String,
    values: Mutex<CheckValues>,
}

/// Rows in declaration order, and each check name's index among them.
type Rows = (Vec<Arc<CheckRow>>, HashMap<String, usize>);

/// One consistent copy of a row's values, taken for a scrape.
struct Copied {
    row: Arc<CheckRow>,
    probe: Option<ProbeValues>,
    health: Option<&'static str>,
    failure_threshold: Option<u32>,
    successes: u64,
    failures: u64,
}

/// Every check's probe series.
#[derive(Default)]
pub struct CheckTable {
    rows: RwLock<Rows>,
}

impl CheckTable {
    fn row(&self, service: &str, check: &str, instance: &str) -> Arc<CheckRow> {
        if let Some(row) = {
            let rows = self.rows.read().unwrap_or_else(|e| e.into_inner());
            rows.1.get(check).map(|i| rows.0[*i].clone())
        } {
            return row;
        }
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = rows.1.get(check) {
            return rows.0[*i].clone();
        }
        let c = escape(check);
        let row = Arc::new(CheckRow {
            name: check.to_string(),
            check_instance: format!("check=\"{c}\",instance=\"{}\"", escape(instance)),
            check: format!("check=\"{c}\""),
            service: format!("service=\"{}\"", escape(service)),
            values: Mutex::new(CheckValues::default()),
        });
        let index = rows.0.len();
        rows.0.push(row.clone());
        rows.1.insert(check.to_string(), index);
        row
    }

    pub fn probed(&self, service: &str, check: &str, instance: &str, v: ProbeValues) {
        let row = self.row(service, check, instance);
        let mut values = row.values.lock().unwrap_or_else(|e| e.into_inner());
        if v.success {
            values.successes += 1;
        } else {
            values.failures += 1;
        }
        values.probe = Some(v);
    }

    /// Declares a check (at start-up), so its health shows as `unknown` before its first probe.
    pub fn configured(&self, service: &str, check: &str, instance: &str) {
        let row = self.row(service, check, instance);
        let mut v = row.values.lock().unwrap_or_else(|e| e.into_inner());
        v.health.get_or_insert("unknown");
    }

    /// Sets a check's health; an undeclared check has no row and gets no health series.
    pub fn health(&self, check: &str, health: &'static str) {
        self.update(check, |v| v.health = Some(health));
    }

    /// Sets the failure threshold a check is held to now; undeclared checks are skipped.
    pub fn failure_threshold(&self, check: &str, threshold: u32) {
        self.update(check, |v| v.failure_threshold = Some(threshold));
    }

    fn update(&self, check: &str, f: impl FnOnce(&mut CheckValues)) {
        let row = {
            let rows = self.rows.read().unwrap_or_else(|e| e.into_inner());
            rows.1.get(check).map(|i| rows.0[*i].clone())
        };
        if let Some(row) = row {
            f(&mut row.values.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    pub fn remove(&self, check: &str) {
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = rows.1.remove(check) {
            rows.0.swap_remove(i);
            // The last row took the removed one's place.
            if let Some(name) = rows.0.get(i).map(|r| r.name.clone()) {
                rows.1.insert(name, i);
            }
        }
    }

    /// Appends every probe family to `out`.
    pub fn render(&self, out: &mut String) {
        let rows: Vec<Arc<CheckRow>> = {
            let rows = self.rows.read().unwrap_or_else(|e| e.into_inner());
            rows.0.clone()
        };
        // One consistent copy per check, so a scrape never mixes two probes of one check.
        let values: Vec<Copied> = rows
            .into_iter()
            .map(|row| {
                let v = row.values.lock().unwrap_or_else(|e| e.into_inner());
                let (probe, health, successes, failures) =
                    (v.probe.clone(), v.health, v.successes, v.failures);
                let failure_threshold = v.failure_threshold;
                drop(v);
                Copied {
                    row,
                    probe,
                    health,
                    failure_threshold,
                    successes,
                    failures,
                }
            })
            .collect();
        let probes = || {
            values
                .iter()
                .filter_map(|c| c.probe.as_ref().map(|p| (&c.row, p)))
        };
        let gauge =
            |out: &mut String, name: &str, help: &str, f: &dyn Fn(&ProbeValues) -> Option<f64>| {
                header(out, name, help, "gauge");
                for (r, p) in probes() {
                    if let Some(v) = f(p) {
                        sample(out, name, &[&r.check_instance, &r.service], v);
                    }
                }
            };
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        gauge(
            out,
            "probe_success",
            "Whether the probe was a success.",
            &|p| Some(b(p.success)),
        );
        gauge(
            out,
            "probe_duration_seconds",
            "How long the probe took to complete in seconds.",
            &|p| Some(p.duration),
        );
        gauge(
            out,
            "probe_dns_lookup_time_seconds",
            "Returns the time taken for probe dns lookup in seconds.",
            &|p| Some(p.dns_lookup),
        );
        gauge(
            out,
            "probe_http_status_code",
            "Response HTTP status code (0 when no response arrived).",
            &|p| p.http.then_some(p.status),
        );
        header(
            out,
            "probe_http_duration_seconds",
            "Duration of http request by phase, summed over all redirects.",
            "gauge",
        );
        for (r, p) in probes().filter(|(_, p)| p.http) {
            for (phase, v) in PHASE_LABELS.iter().zip(p.phases) {
                let labels = [r.check_instance.as_str(), phase, &r.service];
                sample(out, "probe_http_duration_seconds", &labels, v);
            }
        }
        gauge(
            out,
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect.",
            &|p| p.http.then_some(b(p.ssl)),
        );
        gauge(
            out,
            "probe_http_version",
            "Returns the version of HTTP of the probe response.",
            &|p| p.http.then_some(p.http_version),
        );
        gauge(
            out,
            "probe_http_content_length",
            "Length of the HTTP response body read, in bytes (capped at max_body_bytes).",
            &|p| p.http.then_some(p.content_length),
        );
        gauge(
            out,
            "probe_http_redirects",
            "The number of redirects.",
            &|p| p.http.then_some(p.redirects),
        );
        gauge(
            out,
            "probe_ssl_earliest_cert_expiry",
            "Returns last SSL chain expiry in unixtime.",
            &|p| p.cert_expiry,
        );
        header(
            out,
            "probe_tls_version_info",
            "Returns the TLS version used or NaN when unknown.",
            "gauge",
        );
        for (r, p) in probes() {
            if let Some(version) = &p.tls_version {
                let _ = writeln!(
                    out,
                    "probe_tls_version_info{{{},{},version=\"{}\"}} 1",
                    r.check_instance,
                    r.service,
                    escape(version)
                );
            }
        }
        gauge(
            out,
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to a body condition.",
            &|p| p.regex.then_some(b(p.failed_due_to_regex)),
        );
        for (i, (name, help)) in [
            (
                "probe_dns_answer_rrs",
                "Returns number of entries in the answer resource record list.",
            ),
            (
                "probe_dns_authority_rrs",
                "Returns number of entries in the authority resource record list.",
            ),
            (
                "probe_dns_additional_rrs",
                "Returns number of entries in the additional resource record list.",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            gauge(out, name, help, &|p| p.dns.map(|counts| counts[i]));
        }
        header(
            out,
            "probe_dns_duration_seconds",
            "Duration of DNS request by phase.",
            "gauge",
        );
        for (r, p) in probes().filter(|(_, p)| p.dns.is_some()) {
            // blackbox's phases: resolving the target, setting up the socket, the exchange.
            let phases = [
                ("phase=\"resolve\"", p.phases[0]),
                ("phase=\"connect\"", p.phases[1]),
                ("phase=\"request\"", p.phases[3]),
            ];
            for (phase, v) in phases {
                let labels = [r.check_instance.as_str(), phase, &r.service];
                sample(out, "probe_dns_duration_seconds", &labels, v);
            }
        }
        header(
            out,
            "probe_mail_roundtrip_duration_seconds",
            "Duration of a mail round trip by phase: accepted (SMTP connect to the 250 after DATA), arrived (from then to the canary seen); 0 for a phase that did not finish.",
            "gauge",
        );
        for (r, p) in probes() {
            let Some(mail) = p.mail else { continue };
            for (phase, v) in ["phase=\"accepted\"", "phase=\"arrived\""]
                .into_iter()
                .zip(mail)
            {
                let labels = [r.check_instance.as_str(), phase, &r.service];
                sample(out, "probe_mail_roundtrip_duration_seconds", &labels, v);
            }
        }
        header(
            out,
            "switchboard_probes_total",
            "Probes run, by result (success or failure).",
            "counter",
        );
        for Copied {
            row: r,
            probe,
            successes: ok,
            failures: failed,
            ..
        } in &values
        {
            if probe.is_some() {
                let name = "switchboard_probes_total";
                let failure = [r.check.as_str(), "result=\"failure\"", &r.service];
                sample(out, name, &failure, *failed as f64);
                let success = [r.check.as_str(), "result=\"success\"", &r.service];
                sample(out, name, &success, *ok as f64);
            }
        }
        header(
            out,
            "switchboard_check_health",
            "Smoothed health of each check: 1 for its current health, 0 for the others.",
            "gauge",
        );
        for Copied { row: r, health, .. } in &values {
            if let Some(current) = health {
                for (h, label) in HEALTHS.iter().zip(HEALTH_LABELS) {
                    let labels = [r.check.as_str(), label, &r.service];
                    let v = f64::from(u8::from(current == h));
                    sample(out, "switchboard_check_health", &labels, v);
                }
            }
        }
        header(
            out,
            "switchboard_check_failure_threshold",
            "Consecutive failed probes each check needs to be down now: failure_threshold, raised on a noisy target by confirmation = \"adaptive\".",
            "gauge",
        );
        for c in &values {
            if let Some(n) = c.failure_threshold {
                let labels = [c.row.check.as_str(), &c.row.service];
                sample(
                    out,
                    "switchboard_check_failure_threshold",
                    &labels,
                    f64::from(n),
                );
            }
        }
    }
}

/// The health labels, pre-rendered.
const HEALTH_LABELS: [&str; 4] = [
    "health=\"unknown\"",
    "health=\"healthy\"",
    "health=\"suspect\"",
    "health=\"down\"",
];
/// The phase labels, pre-rendered.
const PHASE_LABELS: [&str; 5] = [
    "phase=\"resolve\"",
    "phase=\"connect\"",
    "phase=\"tls\"",
    "phase=\"processing\"",
    "phase=\"transfer\"",
];
/// The five HTTP phases, always exported (zero when a phase did not happen), as blackbox does.
#[cfg(test)]
pub const PHASES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];
/// Every check health value, one series each.
pub const HEALTHS: [&str; 4] = ["unknown", "healthy", "suspect", "down"];

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[derive(Clone)]
struct RouteRow {
    /// `route="…",service="…"`, without the side and target.
    id: String,
    primary: String,
    backup: String,
    active: Side,
}

/// Bucket bounds of `switchboard_detection_seconds`, in seconds.
pub const DETECTION_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Drill results, in label order.
const DRILL_RESULTS: [&str; 4] = ["aborted", "fail", "interrupted", "pass"];

#[derive(Clone, Default)]
struct Detection {
    /// Observations per bucket (not cumulative); above the last bound only in `count`.
    buckets: [u64; DETECTION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Clone, Default)]
struct Drills {
    /// By `DRILL_RESULTS`.
    totals: [u64; DRILL_RESULTS.len()],
    last_at: f64,
    last_success: u8,
}

#[derive(Clone)]
struct ServiceValues {
    state: State,
    since: f64,
    flapping: bool,
    /// By `HoldKind::ALL`: whether the hold is in force, and its end (Unix time, 0 if none).
    holds: [(bool, f64); HoldKind::ALL.len()],
    routes: Vec<RouteRow>,
    detection: Detection,
    drills: Drills,
}

/// Every service's state, time in state, flapping signal and routes.
#[derive(Default)]
pub struct ServiceTable {
    rows: Mutex<Vec<(String, String, ServiceValues)>>,
}

impl ServiceTable {
    fn render_detection_and_drills(rows: &[(String, String, ServiceValues)], out: &mut String) {
        header(
            out,
            "switchboard_detection_seconds",
            "Time from the first failing probe to the route switch, in seconds, by service.",
            "histogram",
        );
        for (_, labels, v) in rows {
            let d = &v.detection;
            let mut cumulative = 0;
            for (bound, n) in DETECTION_BUCKETS.iter().zip(d.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "switchboard_detection_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "switchboard_detection_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 switchboard_detection_seconds_sum{{{labels}}} {}\n\
                 switchboard_detection_seconds_count{{{labels}}} {}",
                d.count, d.sum, d.count
            );
        }
        header(
            out,
            "switchboard_drills_total",
            "Drills finished, by service and result (pass, fail, aborted, interrupted).",
            "counter",
        );
        for (_, labels, v) in rows {
            for (result, n) in DRILL_RESULTS.iter().zip(v.drills.totals) {
                let _ = writeln!(
                    out,
                    "switchboard_drills_total{{result=\"{result}\",{labels}}} {n}"
                );
            }
        }
        header(
            out,
            "switchboard_drill_last_timestamp_seconds",
            "When the service's last drill ended (Unix time; 0 before its first).",
            "gauge",
        );
        for (_, labels, v) in rows {
            let _ = writeln!(
                out,
                "switchboard_drill_last_timestamp_seconds{{{labels}}} {}",
                v.drills.last_at
            );
        }
        header(
            out,
            "switchboard_drill_last_success",
            "1 if the service's last finished drill passed, 0 if it failed or there was none.",
            "gauge",
        );
        for (_, labels, v) in rows {
            let _ = writeln!(
                out,
                "switchboard_drill_last_success{{{labels}}} {}",
                v.drills.last_success
            );
        }
    }

    fn with(&self, service: &str, f: impl FnOnce(&mut ServiceValues)) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, v)) = rows.iter_mut().find(|(id, ..)| id == service) {
            f(v);
            return;
        }
        let mut v = ServiceValues {
            state: State::Operational,
            since: 0.0,
            flapping: false,
            holds: Default::default(),
            routes: Vec::new(),
            detection: Detection::default(),
            drills: Drills::default(),
        };
        f(&mut v);
        rows.push((
            service.to_string(),
            format!("service=\"{}\"", escape(service)),
            v,
        ));
    }

    pub fn state(&self, service: &str, state: State) {
        self.with(service, |v| v.state = state);
    }

    pub fn since(&self, service: &str, since: f64) {
        self.with(service, |v| v.since = since);
    }

    pub fn flapping(&self, service: &str, on: bool) {
        self.with(service, |v| v.flapping = on);
    }

    pub fn holds(&self, service: &str, holds: &[HoldInForce]) {
        self.with(service, |v| {
            for (slot, kind) in v.holds.iter_mut().zip(HoldKind::ALL) {
                *slot = match holds.iter().find(|h| h.kind == kind) {
                    Some(h) => (true, h.until.map(|t| t.as_secs_f64()).unwrap_or(0.0)),
                    None => (false, 0.0),
                };
            }
        });
    }

    /// Makes sure the service has a row (its detection and drill series at zero).
    pub fn configured(&self, service: &str) {
        self.with(service, |_| {});
    }

    pub fn detection(&self, service: &str, secs: f64) {
        self.with(service, |v| {
            let d = &mut v.detection;
            if let Some(i) = DETECTION_BUCKETS.iter().position(|b| secs <= *b) {
                d.buckets[i] += 1;
            }
            d.count += 1;
            d.sum += secs;
        });
    }

    /// A drill ended with `result` at `at_secs`; an aborted drill, or one a real outage
    /// interrupted, leaves the last success: it neither proved nor disproved the path.
    pub fn drill(&self, service: &str, result: &str, at_secs: f64) {
        self.with(service, |v| {
            if let Some(i) = DRILL_RESULTS.iter().position(|r| *r == result) {
                v.drills.totals[i] += 1;
            }
            v.drills.last_at = at_secs;
            if result != "aborted" && result != "interrupted" {
                v.drills.last_success = u8::from(result == "pass");
            }
        });
    }

    /// A route's targets and active side; `primary`/`backup` `None` keep what is known.
    pub fn route(
        &self,
        service: &str,
        route: &str,
        primary: Option<&str>,
        backup: Option<&str>,
        active: Side,
    ) {
        let id = format!(
            "route=\"{}\",service=\"{}\"",
            escape(route),
            escape(service)
        );
        self.with(service, |v| {
            match v.routes.iter_mut().find(|r| r.id == id) {
                Some(r) => {
                    if let Some(p) = primary {
                        r.primary = p.to_string();
                    }
                    if let Some(b) = backup {
                        r.backup = b.to_string();
                    }
                    r.active = active;
                }
                None => v.routes.push(RouteRow {
                    id,
                    primary: primary.unwrap_or_default().to_string(),
                    backup: backup.unwrap_or_default().to_string(),
                    active,
                }),
            }
        });
    }

    pub fn remove(&self, service: &str) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.retain(|(id, ..)| id != service);
    }

    pub fn render(&self, out: &mut String) {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Self::render_detection_and_drills(&rows, out);
        header(
            out,
            "switchboard_service_state",
            "Failover state of each service: 1 for its current state, 0 for the others.",
            "gauge",
        );
        let states: Vec<String> = State::ALL
            .iter()
            .map(|s| format!("state=\"{}\"", s.as_str()))
            .collect();
        for (_, labels, v) in &rows {
            for (s, state) in State::ALL.iter().zip(&states) {
                let value = f64::from(u8::from(*s == v.state));
                sample(out, "switchboard_service_state", &[labels, state], value);
            }
        }
        header(out, "switchboard_service_state_since_timestamp_seconds", "When each service entered its current state (Unix time); time in state is time() minus this.", "gauge");
        for (_, labels, v) in &rows {
            let _ = writeln!(
                out,
                "switchboard_service_state_since_timestamp_seconds{{{labels}}} {}",
                v.since
            );
        }
        header(out, "switchboard_service_flapping", "1 while a service holds its backup because it failed over too often within its flap window.", "gauge");
        for (_, labels, v) in &rows {
            let _ = writeln!(
                out,
                "switchboard_service_flapping{{{labels}}} {}",
                u8::from(v.flapping)
            );
        }
        header(out, "switchboard_service_hold", "1 while a hold changes what the automatic rules do (flapping: failback held; pin; maintenance; recovery_hold), by service and hold.", "gauge");
        for (_, labels, v) in &rows {
            for (kind, (on, _)) in HoldKind::ALL.iter().zip(v.holds) {
                let hold = format!("hold=\"{}\"", kind.as_str());
                sample(
                    out,
                    "switchboard_service_hold",
                    &[&hold, labels],
                    f64::from(u8::from(on)),
                );
            }
        }
        header(out, "switchboard_service_hold_until_timestamp_seconds", "When each hold in force ends by itself (Unix time); 0 when not in force or only an operator can end it.", "gauge");
        for (_, labels, v) in &rows {
            for (kind, (_, until)) in HoldKind::ALL.iter().zip(v.holds) {
                let hold = format!("hold=\"{}\"", kind.as_str());
                sample(
                    out,
                    "switchboard_service_hold_until_timestamp_seconds",
                    &[&hold, labels],
                    until,
                );
            }
        }
        header(
            out,
            "switchboard_route_active_target",
            "Which target each route sends customers to: 1 for the active side, 0 for the other.",
            "gauge",
        );
        for (_, _, v) in &rows {
            for r in &v.routes {
                // Sides in name order, as label sets sort.
                for (side, target) in [(Side::Backup, &r.backup), (Side::Primary, &r.primary)] {
                    if target.is_empty() {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "switchboard_route_active_target{{{},side=\"{}\",target=\"{}\"}} {}",
                        r.id,
                        side.as_str(),
                        escape(target),
                        u8::from(side == r.active)
                    );
                }
            }
        }
    }
}

impl Clone for ServiceTable {
    fn clone(&self) -> Self {
        ServiceTable {
            rows: Mutex::new(self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        }
    }
}
