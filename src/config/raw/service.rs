//! A service file, `probes/*.toml`: its `[service]`, `[[maintenance]]` windows, and the loading
//! of the whole file (checks, routes and webhooks are validated by their own files).

use super::check::RawCheck;
use super::route::RawRoute;
use super::webhook::{OnSwitch, RawWebhook};
use super::{
    LineIndex, Loader, Source, Unique, DEFAULT_FLAP_WINDOW, DEFAULT_MAX_FAILOVERS,
    DEFAULT_RECOVERY_HOLD,
};
use crate::clock::Timestamp;
use crate::config::{
    CheckSpec, Defaults, Failback, FailoverWhen, Role, RouteSpec, ServiceSpec, Side, WebhookSpec,
};
use crate::lang::window::{Cron, Schedule, Window};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One service file, or one region of it: a `[service]`, its `[[check]]`s, `[[route]]`s,
/// `[[maintenance]]` windows and `[[on_switch]]` webhooks. `C` is what a check is read as:
/// one kind's struct while a region is parsed (`check::parse_service_region`), then `RawCheck`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "C: Deserialize<'de>"))]
pub struct RawServiceFile<C = RawCheck> {
    pub service: Option<Spanned<RawService>>,
    #[serde(default = "Vec::new")]
    pub check: Vec<Spanned<C>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub maintenance: Vec<Spanned<RawMaintenance>>,
    #[serde(default)]
    pub on_switch: Vec<Spanned<RawWebhook>>,
}

impl<C> RawServiceFile<C> {
    /// The same file with each check wrapped as `RawCheck` (spans kept).
    pub(super) fn map_checks(self, wrap: impl Fn(C) -> RawCheck) -> RawServiceFile {
        RawServiceFile {
            service: self.service,
            check: self
                .check
                .into_iter()
                .map(|c| Spanned::new(c.span(), wrap(c.into_inner())))
                .collect(),
            route: self.route,
            maintenance: self.maintenance,
            on_switch: self.on_switch,
        }
    }
}

/// A planned maintenance window: `start` (RFC 3339) for a one-off, or `cron` (5 fields, UTC)
/// for a recurring one, each with a `duration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub start: Option<Spanned<String>>,
    pub cron: Option<Spanned<String>>,
    pub duration: Spanned<String>,
    /// Shown on the status page and in messages. Default "planned maintenance".
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Unique across the configuration; letters, digits, `-`, `_`, `.`.
    pub id: Spanned<String>,
    /// Display name. Default: the id.
    pub name: Option<String>,
    pub runbook: Option<String>,
    /// Component id of this service on the pushed Statuspage page (`[statuspage_push]`).
    pub statuspage_component: Option<String>,
    /// `"any"` (default), `"all"` or `"k of n"`, counted over primary checks that are down.
    pub failover_when: Option<Spanned<String>>,
    /// `"auto"` (default) or `"manual"`.
    pub failback: Option<Spanned<String>>,
    /// How long the primary must stay healthy before an automatic failback. Default `5m`.
    pub recovery_hold: Option<Spanned<String>>,
    /// Automatic failovers allowed per `flap_window` before the backup is held. Default 3;
    /// 0 turns flap damping off.
    pub max_failovers: Option<Spanned<i64>>,
    /// Default `1h`.
    pub flap_window: Option<Spanned<String>>,
    /// Where customers go during maintenance: `"backup"` (default) or `"primary"`.
    pub maintenance_route: Option<Spanned<String>>,
    /// What a drill of this service is timed against: `{ switch = "5s", notify = "60s" }`.
    pub drill_targets: Option<RawDrillTargets>,
    /// Overrides `[email] customer_delay` for this service.
    pub customer_delay: Option<Spanned<String>>,
    /// Names of `vendor_status` checks (in any service file) whose declared outage shortens
    /// the confirmation of this service's own failing checks. They never fail it over alone.
    #[serde(default)]
    pub corroborate: Vec<Spanned<String>>,
    /// Quote the corroborating vendor's words in the public incident too. Default `false`.
    pub public_vendor_words: Option<bool>,
    /// Cluster mode: how many vantages must agree on a check's verdict, `"majority"`
    /// (default) or `"k of n"`.
    pub quorum: Option<Spanned<String>>,
    /// Cluster mode: fewer vantages able to vote than this and no automatic decision is
    /// made. Default 1.
    pub min_vantages: Option<Spanned<i64>>,
}

/// `drill_targets = { switch = "5s", notify = "60s" }`: both optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrillTargets {
    /// Decision, route switch, backup verified and revert, each within this. Default `5s`.
    pub switch: Option<Spanned<String>>,
    /// E-mail accepted, status page updated and webhooks acknowledged within this of the
    /// drill's start. Default `60s`.
    pub notify: Option<Spanned<String>>,
}

impl Loader {
    /// Loads every `*.toml` under the probes directory, in file-name order.
    pub(super) fn load_services(
        &mut self,
        dir: &Path,
        probes_line: usize,
        main_path: &Path,
        defaults: &Defaults,
    ) -> Option<Vec<ServiceSpec>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.report(
                    main_path,
                    probes_line,
                    format!("probes directory \"{}\" cannot be read: {e}", dir.display()),
                );
                return None;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        // Paths in diagnostics read `probes/x.toml`, not the platform's directory listing form.
        let files = files
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| dir.join(n)));

        let mut services = Vec::new();
        for file in files {
            if let Some(service) = self.load_service_file(&file, defaults) {
                services.push(service);
            }
        }
        self.check_corroborations(&services);
        self.check_zendesk_budget();
        Some(services)
    }

    fn load_service_file(&mut self, path: &Path, defaults: &Defaults) -> Option<ServiceSpec> {
        let text = self.read(path)?;
        let lines = LineIndex::new(&text);
        let whole = Source {
            path,
            text: &text,
            lines: &lines,
            base: 0,
        };
        let (parts, region_failed) =
            self.parse_regions(&whole, super::check::parse_service_region)?;
        // Each item keeps the source of the region it was parsed in, for its line numbers.
        let mut service: Option<(Source<'_>, Spanned<RawService>)> = None;
        let mut raw_checks = Vec::new();
        let mut raw_routes = Vec::new();
        let mut raw_windows = Vec::new();
        let mut raw_hooks = Vec::new();
        for (src, part) in parts {
            raw_hooks.extend(part.on_switch.into_iter().map(|h| (src, h)));
            if service.is_none() {
                service = part.service.map(|s| (src, s));
            }
            raw_checks.extend(part.check.into_iter().map(|c| (src, c)));
            raw_routes.extend(part.route.into_iter().map(|r| (src, r)));
            raw_windows.extend(part.maintenance.into_iter().map(|w| (src, w)));
        }
        // A [service] that failed to deserialize is still there: do not also claim its checks
        // belong to nothing.
        let has_service_table = service.is_some() || mentions_service(&text);
        if !has_service_table {
            if raw_checks.is_empty() && raw_routes.is_empty() && !region_failed {
                self.report(path, 0, "no [service] table");
            }
            for (src, c) in &raw_checks {
                let message = format!(
                    "check \"{}\" belongs to no service: this file has no [service] table",
                    c.get_ref().name().get_ref()
                );
                self.report_at(src, c, message);
            }
            for (src, r) in &raw_routes {
                let message = format!(
                    "route \"{}\" belongs to no service: this file has no [service] table",
                    r.get_ref().id.get_ref()
                );
                self.report_at(src, r, message);
            }
        }

        let service_id = service
            .as_ref()
            .map_or_else(String::new, |(_, s)| s.get_ref().id.get_ref().clone());
        let check_count = raw_checks.len();
        let checks: Vec<CheckSpec> = raw_checks
            .into_iter()
            .filter_map(|(src, c)| self.validate_check(&src, c, &service_id, defaults))
            .collect();
        let routes: Vec<RouteSpec> = raw_routes
            .into_iter()
            .filter_map(|(src, r)| self.validate_route(&src, r, &service_id))
            .collect();
        // Counting primaries is only meaningful when every check made it through; otherwise
        // the problem is already reported and a second, derived complaint would mislead.
        let checks_complete = !region_failed && checks.len() == check_count;
        let window_count = raw_windows.len();
        let windows: Vec<Window> = raw_windows
            .into_iter()
            .filter_map(|(src, w)| self.validate_window(&src, w))
            .collect();
        let hook_count = raw_hooks.len();
        let mut hooks: Vec<WebhookSpec> = Vec::new();
        let mut articles = Vec::new();
        for (n, (src, h)) in raw_hooks.into_iter().enumerate() {
            match self.validate_webhook(&src, h, &service_id, n + 1) {
                Some(OnSwitch::Webhook(w)) => hooks.push(w),
                Some(OnSwitch::ZendeskArticle(a)) => articles.push(a),
                None => {}
            }
        }
        let (src, service) = service?;
        let mut spec = self.validate_service(
            &src,
            service,
            checks,
            routes,
            checks_complete,
            defaults.vote,
        )?;
        if windows.len() != window_count || hooks.len() + articles.len() != hook_count {
            return None;
        }
        spec.maintenance = windows;
        spec.on_switch = hooks;
        spec.zendesk_articles = articles;
        Some(spec)
    }

    /// Every name in a `corroborate` list must be a `vendor_status` check of some service:
    /// checked once all files are read, since the check may live in another file.
    fn check_corroborations(&mut self, services: &[ServiceSpec]) {
        for (file, line, name) in std::mem::take(&mut self.corroborations) {
            let found = services
                .iter()
                .flat_map(|s| s.checks.iter())
                .find(|c| c.name == name);
            let message = match found {
                Some(c) if c.role == Role::Vendor => continue,
                Some(c) => format!(
                    "corroborate: \"{name}\" (a check of service \"{}\") is not a vendor_status check; only vendor_status checks corroborate",
                    c.service
                ),
                // A check that failed validation was reported where it is written.
                None if self.check_names.contains_key(&name) => continue,
                None => format!("corroborate: no check is named \"{name}\""),
            };
            self.report(&file, line, message);
        }
    }

    /// Zendesk's status API allows 10 requests a minute from one client: every Zendesk
    /// check together, each at its fastest (`interval` or `retry_interval`), must stay within
    /// it. Reported at the first of them.
    fn check_zendesk_budget(&mut self) {
        let polls = std::mem::take(&mut self.zendesk_polls);
        let per_minute: f64 = polls
            .iter()
            .map(|(_, _, _, every)| 60.0 / every.as_secs_f64().max(0.001))
            .sum();
        if per_minute <= 10.0 + 1e-9 {
            return;
        }
        let names: Vec<String> = polls
            .iter()
            .map(|(_, _, n, every)| format!("{n} every {}", humantime::format_duration(*every)))
            .collect();
        let (file, line, _, _) = &polls[0];
        let message = format!(
            "the zendesk checks together poll Zendesk's status API {per_minute:.1} times a minute ({}); it allows 10: lengthen their interval or retry_interval, or share one check through corroborate",
            names.join(", ")
        );
        self.report(&file.clone(), *line, message);
    }

    fn validate_window(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawMaintenance>,
    ) -> Option<Window> {
        let line = source.line(raw.span());
        let raw = raw.into_inner();
        let duration = self.duration(source, "duration", Some(&raw.duration), false);
        let schedule = match (&raw.start, &raw.cron) {
            (Some(start), None) => match humantime::parse_rfc3339_weak(start.get_ref()) {
                Ok(t) => {
                    let ms = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    Some(Schedule::Once(Timestamp(ms)))
                }
                Err(_) => {
                    let message = format!(
                        "maintenance start: \"{}\" is not a time such as 2026-12-05T02:00:00Z",
                        start.get_ref()
                    );
                    self.report_at(source, start, message);
                    None
                }
            },
            (None, Some(cron)) => match Cron::parse(cron.get_ref()) {
                Ok(c) => Some(Schedule::Cron(c)),
                Err(e) => {
                    self.report_at(source, cron, format!("maintenance cron: {e}"));
                    None
                }
            },
            _ => {
                self.report(
                    source.path,
                    line,
                    "a [[maintenance]] window needs exactly one of `start` (one-off) or `cron` (recurring)",
                );
                None
            }
        };
        Some(Window {
            schedule: schedule?,
            duration: duration?,
            reason: raw
                .reason
                .unwrap_or_else(|| "planned maintenance".to_string()),
        })
    }

    fn validate_service(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawService>,
        checks: Vec<CheckSpec>,
        routes: Vec<RouteSpec>,
        checks_complete: bool,
        default_vote: crate::config::vote::Rule,
    ) -> Option<ServiceSpec> {
        let table_line = source.line(raw.span());
        let raw = raw.into_inner();
        let mut ok = self.identifier(source, "service id", &raw.id);
        ok &= self.unique(source, Unique::Service, &raw.id);
        let id = raw.id.into_inner();
        let primaries = checks.iter().filter(|c| c.role == Role::Primary).count();
        if checks_complete && primaries == 0 {
            self.report(
                source.path,
                table_line,
                format!("service \"{id}\" has no primary check"),
            );
            ok = false;
        }

        let failover_when = match &raw.failover_when {
            None => Some(FailoverWhen::Any),
            Some(f) => self.failover_when(source, f, primaries, checks_complete),
        };
        let failback = match raw.failback.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("auto") => Some(Failback::Auto),
            Some("manual") => Some(Failback::Manual),
            Some(other) => {
                let message = format!("failback must be \"auto\" or \"manual\", not \"{other}\"");
                if let Some(f) = &raw.failback {
                    self.report_at(source, f, message);
                }
                None
            }
        };
        let recovery_hold = match &raw.recovery_hold {
            None => Some(DEFAULT_RECOVERY_HOLD),
            // Zero is a deliberate choice here: fail back as soon as the primary is healthy.
            Some(r) => self.duration(source, "recovery_hold", Some(r), true),
        };
        let max_failovers = match &raw.max_failovers {
            None => Some(DEFAULT_MAX_FAILOVERS),
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(n) => Some(n),
                Err(_) => {
                    let v = *m.get_ref();
                    self.report_at(
                        source,
                        m,
                        format!("max_failovers must be 0 or more, not {v}"),
                    );
                    None
                }
            },
        };
        let flap_window = match &raw.flap_window {
            None => Some(DEFAULT_FLAP_WINDOW),
            Some(r) => self.duration(source, "flap_window", Some(r), false),
        };
        let maintenance_side = match raw.maintenance_route.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("backup") => Some(Side::Backup),
            Some("primary") => Some(Side::Primary),
            Some(other) => {
                let message =
                    format!("maintenance_route must be \"backup\" or \"primary\", not \"{other}\"");
                if let Some(f) = &raw.maintenance_route {
                    self.report_at(source, f, message);
                }
                None
            }
        };
        let targets = raw.drill_targets.as_ref();
        let drill_switch = match targets.and_then(|t| t.switch.as_ref()) {
            None => Some(crate::config::DrillTargets::default().switch),
            Some(r) => self.duration(source, "drill_targets.switch", Some(r), false),
        };
        let drill_notify = match targets.and_then(|t| t.notify.as_ref()) {
            None => Some(crate::config::DrillTargets::default().notify),
            Some(r) => self.duration(source, "drill_targets.notify", Some(r), false),
        };
        let customer_delay = match &raw.customer_delay {
            None => Some(None),
            Some(r) => self
                .duration(source, "customer_delay", Some(r), true)
                .map(Some),
        };
        let vote = self.vote_rule(
            source,
            raw.quorum.as_ref(),
            raw.min_vantages.as_ref(),
            default_vote,
        );
        for name in &raw.corroborate {
            let at = source.at(name);
            self.corroborations
                .push((at.0, at.1, name.get_ref().clone()));
        }
        if !ok {
            return None;
        }
        Some(ServiceSpec {
            vote: vote?,
            corroborate: raw
                .corroborate
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            public_vendor_words: raw.public_vendor_words.unwrap_or(false),
            customer_delay: customer_delay?,
            drill_targets: crate::config::DrillTargets {
                switch: drill_switch?,
                notify: drill_notify?,
            },
            max_failovers: max_failovers?,
            flap_window: flap_window?,
            maintenance_side: maintenance_side?,
            maintenance: Vec::new(),
            on_switch: Vec::new(),
            zendesk_articles: Vec::new(),
            name: raw.name.unwrap_or_else(|| id.clone()),
            id,
            runbook: raw.runbook,
            statuspage_component: raw.statuspage_component,
            failover_when: failover_when?,
            failback: failback?,
            recovery_hold: recovery_hold?,
            checks,
            routes,
            source: source.path.to_path_buf(),
        })
    }

    /// `quorum` and `min_vantages` as written (in `[defaults]` or a `[service]`), each
    /// falling back to `default`; `None` after reporting what is wrong.
    pub(super) fn vote_rule(
        &mut self,
        source: &Source<'_>,
        quorum: Option<&Spanned<String>>,
        min_vantages: Option<&Spanned<i64>>,
        default: crate::config::vote::Rule,
    ) -> Option<crate::config::vote::Rule> {
        let quorum = match quorum {
            None => Some(default.quorum),
            Some(q) => match crate::config::vote::Quorum::parse(q.get_ref()) {
                Ok(q) => Some(q),
                Err(message) => {
                    self.report_at(source, q, message);
                    None
                }
            },
        };
        let min_vantages = match min_vantages {
            None => Some(default.min_vantages),
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    let v = *m.get_ref();
                    self.report_at(
                        source,
                        m,
                        format!("min_vantages must be 1 or more, not {v}"),
                    );
                    None
                }
            },
        };
        Some(crate::config::vote::Rule {
            quorum: quorum?,
            min_vantages: min_vantages?,
        })
    }

    fn failover_when(
        &mut self,
        source: &Source<'_>,
        raw: &Spanned<String>,
        primaries: usize,
        checks_complete: bool,
    ) -> Option<FailoverWhen> {
        let text = raw.get_ref().trim();
        let parsed = match text {
            "any" => return Some(FailoverWhen::Any),
            "all" => return Some(FailoverWhen::All),
            _ => text.split_once(" of ").and_then(|(k, n)| {
                Some((k.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
            }),
        };
        let message = match parsed {
            None => format!(
                "failover_when must be \"any\", \"all\" or \"k of n\" (such as \"2 of 3\"), not \"{text}\""
            ),
            Some((0, _)) => format!("failover_when \"{text}\": k must be at least 1"),
            Some((k, n)) if k > n => {
                format!("failover_when \"{text}\": k ({k}) is larger than n ({n})")
            }
            Some((_, n)) if checks_complete && n as usize != primaries => format!(
                "failover_when \"{text}\": n ({n}) must equal the number of primary checks ({primaries})"
            ),
            Some((k, _)) => return Some(FailoverWhen::AtLeast(k)),
        };
        self.report_at(source, raw, message);
        None
    }
}

/// Whether a file that failed to deserialize its [service] still has one, so its checks are
/// not reported as orphans on top of the real problem.
fn mentions_service(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("[service]") || l.starts_with("[ service ]") || l.starts_with("[service.")
    })
}
