//! The vocabulary of `kind = "vendor_status"` checks: which feed format, the impact scale every
//! format is mapped onto, and the polling limits each vendor asks for.
//!
//! Defined in `config` because the loader validates against it (format names, minimum
//! intervals) and the probe and the core read it; it knows nothing of HTTP or JSON.

use serde::Serialize;
use std::time::Duration;

/// The shape of the feed a vendor check reads (`format = "..."`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum VendorFormat {
    /// Atlassian Statuspage v2, `/api/v2/summary.json` (Calendly and many others).
    Statuspage,
    /// status.io, `/1.0/status/{page_id}` (GitLab.com).
    Statusio,
    /// Zendesk's status API, `/api/incidents/active?subdomain=...`.
    Zendesk,
    /// Slack's status API, `/api/v2.0.0/current`.
    Slack,
    /// GitLab's jobs API of a project (`/api/v4/projects/{id}/jobs?scope[]=pending&scope[]=running`):
    /// the CI health GitLab's own support team watches, judged by `max_pending` and `max_running`.
    GitlabJobs,
}

impl VendorFormat {
    pub const ALL: &'static [VendorFormat] = <VendorFormat as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The shortest `interval` (and `retry_interval`) a check of this format may use, so that
    /// Switchboard stays within what the vendor allows: Zendesk's status API takes at most 10
    /// requests a minute; Statuspage, status.io and Slack pages are cached for about a minute
    /// by their CDNs, so polling them faster only costs the vendor; GitLab's API allows far
    /// more, but a jobs list does not change meaningfully faster than this.
    pub fn min_interval(self) -> Duration {
        match self {
            VendorFormat::Zendesk => Duration::from_secs(6),
            VendorFormat::Statuspage | VendorFormat::Statusio | VendorFormat::Slack => {
                Duration::from_secs(30)
            }
            VendorFormat::GitlabJobs => Duration::from_secs(30),
        }
    }

    /// What a vendor limits, in words, for the error that names the minimum.
    pub fn limit_words(self) -> &'static str {
        match self {
            VendorFormat::Zendesk => "Zendesk's status API allows at most 10 requests a minute",
            VendorFormat::Statuspage | VendorFormat::Statusio | VendorFormat::Slack => {
                "the vendor's status page is cached for about a minute, so faster polling only adds load"
            }
            VendorFormat::GitlabJobs => "GitLab's jobs list does not change meaningfully faster",
        }
    }
}

/// How bad a vendor says things are, every format mapped onto Statuspage's scale (its
/// `status.indicator`), with planned maintenance below any impact. Ordered: a threshold is
/// "at least this bad".
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Impact {
    /// Operational: nothing declared.
    None,
    /// Planned maintenance in progress: declared, but not an outage.
    Maintenance,
    /// Degraded performance, a minor incident.
    Minor,
    /// Partial outage, a major incident.
    Major,
    /// Major outage: the vendor says the service is down.
    Critical,
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The words people read: "major outage" rather than "critical".
    pub fn words(self) -> &'static str {
        match self {
            Impact::None => "operational",
            Impact::Maintenance => "under maintenance",
            Impact::Minor => "degraded performance",
            Impact::Major => "partial outage",
            Impact::Critical => "major outage",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impacts_are_ordered_from_nothing_to_a_major_outage() {
        assert!(Impact::None < Impact::Maintenance);
        assert!(Impact::Maintenance < Impact::Minor);
        assert!(Impact::Minor < Impact::Major);
        assert!(Impact::Major < Impact::Critical);
        assert_eq!("critical".parse::<Impact>().ok(), Some(Impact::Critical));
    }

    #[test]
    fn format_names_are_the_config_words() {
        let names: Vec<&str> = VendorFormat::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            ["statuspage", "statusio", "zendesk", "slack", "gitlab_jobs"]
        );
        assert_eq!(
            VendorFormat::Zendesk.min_interval(),
            Duration::from_secs(6),
            "10 requests a minute"
        );
    }
}
