//! `kind = "vendor_status"`: a vendor's public status feed (Statuspage, status.io, Zendesk,
//! Slack, or a GitLab project's CI jobs), judged by the components it selects and the impact
//! it fails at. It corroborates services that name it and never fails a service over alone.

use super::{Common, Loader, Source};
use crate::config::{CheckKind, Defaults, Impact, VendorFormat, VendorStatusCheck};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;
use url::Url;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVendorStatusCheck {
    /// Unique across the whole configuration; services name it in `corroborate`.
    pub name: Spanned<String>,
    /// `"vendor_status"`.
    pub kind: Option<Spanned<String>>,
    /// `"statuspage"`, `"statusio"`, `"zendesk"`, `"slack"` or `"gitlab_jobs"`.
    pub format: Option<Spanned<String>>,
    /// The feed: `.../api/v2/summary.json`, `.../1.0/status/{page_id}`,
    /// `.../api/incidents/active?subdomain=...`, `.../api/v2.0.0/current`, or a project's
    /// `.../api/v4/projects/{id}/jobs?scope[]=pending&scope[]=running`.
    pub url: Option<Spanned<String>>,
    /// Components (Statuspage), components or containers (status.io), services (Zendesk,
    /// Slack) to judge, by name (case-insensitive) or id. Default: the whole page.
    pub components: Option<Spanned<Vec<String>>>,
    /// The least impact that fails the check: `"minor"`, `"major"` (default) or `"critical"`.
    pub impact: Option<Spanned<String>>,
    /// `gitlab_jobs`: fail when at least this many jobs are pending.
    pub max_pending: Option<Spanned<i64>>,
    /// `gitlab_jobs`: fail when a job has been running at least this long (such as `"25m"`).
    pub max_running: Option<Spanned<String>>,
    /// Default 1 MiB; a longer feed is a failed outcome.
    pub max_body_bytes: Option<Spanned<i64>>,
    /// Skip certificate verification. Default `false`.
    pub insecure: Option<bool>,
    /// PEM file of the CAs to trust instead of the webpki roots, relative to this file.
    pub ca_file: Option<Spanned<String>>,
    /// TLS server name (SNI and verification) instead of the host's.
    pub server_name: Option<Spanned<String>>,
    /// `"any"` (default), `"4"`, `"6"`, `"prefer4"` or `"prefer6"`.
    pub ip_version: Option<Spanned<String>>,
    /// The local address to connect from (an IPv4 or IPv6 address of this host); default
    /// `[defaults] source_address`, else the system's choice.
    pub source_address: Option<Spanned<String>>,
    /// At least the format's minimum (Zendesk 6s, the others 30s).
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Default: the check's interval (a vendor's declaration needs no fast re-probe); at
    /// least the format's minimum.
    pub retry_interval: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    /// `"adaptive"` or `"fixed"`; default from `[defaults]`.
    pub confirmation: Option<Spanned<String>>,
}

impl RawVendorStatusCheck {
    /// The shared fields; a vendor check has no `role` (it is always `vendor`).
    pub(super) fn common(&self) -> Common<'_> {
        Common {
            name: &self.name,
            role: None,
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            retry_interval: self.retry_interval.as_ref(),
            failure_threshold: self.failure_threshold.as_ref(),
            success_threshold: self.success_threshold.as_ref(),
            confirmation: self.confirmation.as_ref(),
            has_timeout: true,
        }
    }
}

impl Loader {
    /// The kind's own fields, and the polling limits: `interval` and `retry_interval` (which
    /// defaults to `interval` for this kind) at least the format's minimum.
    pub(super) fn vendor_status_check(
        &mut self,
        source: &Source<'_>,
        raw: RawVendorStatusCheck,
        interval: Duration,
        retry_interval: Duration,
        defaults: &Defaults,
    ) -> Option<CheckKind> {
        let mut ok = true;
        let format = match &raw.format {
            None => {
                let message = format!(
                    "check \"{}\" of kind \"vendor_status\" needs a format: {}",
                    raw.name.get_ref(),
                    formats()
                );
                self.report_at(source, &raw.name, message);
                None
            }
            Some(f) => match f.get_ref().parse::<VendorFormat>() {
                Ok(format) => Some(format),
                Err(_) => {
                    let message = format!("format \"{}\" is not one of {}", f.get_ref(), formats());
                    self.report_at(source, f, message);
                    None
                }
            },
        };
        let url = match &raw.url {
            Some(u) => match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
                _ => {
                    let message = format!(
                        "url: \"{}\" is not an absolute http:// or https:// URL",
                        u.get_ref()
                    );
                    self.report_at(source, u, message);
                    None
                }
            },
            None => {
                let message = format!("check \"{}\" needs the url of its feed", raw.name.get_ref());
                self.report_at(source, &raw.name, message);
                None
            }
        };
        let impact = match &raw.impact {
            None => Some(Impact::Major),
            Some(i) => match i.get_ref().as_str() {
                "minor" => Some(Impact::Minor),
                "major" => Some(Impact::Major),
                "critical" => Some(Impact::Critical),
                other => {
                    let message = format!(
                        "impact must be \"minor\", \"major\" or \"critical\", not \"{other}\""
                    );
                    self.report_at(source, i, message);
                    None
                }
            },
        };
        let max_pending = match &raw.max_pending {
            None => Some(None),
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(n) if n >= 1 => Some(Some(n)),
                _ => {
                    let message = format!("max_pending must be at least 1, not {}", m.get_ref());
                    self.report_at(source, m, message);
                    None
                }
            },
        };
        let max_running = match &raw.max_running {
            None => Some(None),
            Some(r) => self
                .duration(source, "max_running", Some(r), false)
                .map(Some),
        };
        let max_body_bytes = self.max_body_bytes(source, raw.max_body_bytes.as_ref());
        let net = self.validate_net(source, &super::net::net_fields!(raw));
        if let Some(format) = format {
            let jobs = format == VendorFormat::GitlabJobs;
            if jobs && raw.max_pending.is_none() && raw.max_running.is_none() {
                let message = format!(
                    "check \"{}\" of format \"gitlab_jobs\" needs max_pending, max_running or both",
                    raw.name.get_ref()
                );
                self.report_at(source, &raw.name, message);
                ok = false;
            }
            if !jobs {
                for (field, line) in [
                    ("max_pending", raw.max_pending.as_ref().map(|m| m.span())),
                    ("max_running", raw.max_running.as_ref().map(|m| m.span())),
                ] {
                    if let Some(span) = line {
                        let message = format!(
                            "{field} is only for format \"gitlab_jobs\", not \"{}\"",
                            format.as_str()
                        );
                        self.report_at(source, &Spanned::new(span, ()), message);
                        ok = false;
                    }
                }
            }
            if jobs {
                if let Some(c) = &raw.components {
                    let message = "components: a gitlab_jobs feed has no components (its url names the project)";
                    self.report_at(source, c, message);
                    ok = false;
                }
            }
            ok &= self.vendor_polling(source, &raw, format, interval, retry_interval, defaults);
        }
        if let Some(c) = &raw.components {
            if c.get_ref().iter().any(|name| name.trim().is_empty()) {
                self.report_at(source, c, "components: an empty name selects nothing");
                ok = false;
            }
        }
        let components = raw.components.map(Spanned::into_inner).unwrap_or_default();
        if !ok {
            return None;
        }
        if format == Some(VendorFormat::Zendesk) {
            let (file, line) = source.at(&raw.name);
            self.zendesk_polls.push((
                file,
                line,
                raw.name.get_ref().clone(),
                interval.min(retry_interval),
            ));
        }
        let kind = CheckKind::VendorStatus(VendorStatusCheck {
            format: format?,
            url: url?,
            components,
            impact: impact?,
            max_pending: max_pending?,
            max_running: max_running?,
            max_body_bytes: max_body_bytes?,
            insecure: raw.insecure.unwrap_or(false),
            net: net?,
        });
        Some(kind)
    }

    /// `interval` and `retry_interval` at least the format's minimum, reported where they are
    /// written (or at the check's name when `[defaults]` gave them).
    fn vendor_polling(
        &mut self,
        source: &Source<'_>,
        raw: &RawVendorStatusCheck,
        format: VendorFormat,
        interval: Duration,
        retry_interval: Duration,
        defaults: &Defaults,
    ) -> bool {
        let min = format.min_interval();
        let mut ok = true;
        for (field, value, written) in [
            ("interval", interval, raw.interval.as_ref()),
            (
                "retry_interval",
                retry_interval,
                raw.retry_interval.as_ref(),
            ),
        ] {
            if value >= min {
                continue;
            }
            let from = if written.is_some() {
                String::new()
            } else if field == "interval" && interval == defaults.interval {
                " (from [defaults])".to_string()
            } else {
                " (the check's interval)".to_string()
            };
            let message = format!(
                "{field} {}{from} is shorter than {}, the least a \"{}\" feed may be polled at: {}",
                humantime::format_duration(value),
                humantime::format_duration(min),
                format.as_str(),
                format.limit_words()
            );
            match written {
                Some(w) => self.report_at(source, w, message),
                None => self.report_at(source, &raw.name, message),
            }
            ok = false;
        }
        ok
    }
}

/// `"statuspage", "statusio", ...` for messages.
fn formats() -> String {
    VendorFormat::ALL
        .iter()
        .map(|f| format!("\"{}\"", f.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
