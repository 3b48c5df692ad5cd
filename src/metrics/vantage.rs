//! The suspect-vantage guard's series (`switchboard_vantage_*`), labelled with the vantage (the node's name).

use super::{int_gauge_vec, Metrics};
use prometheus::{IntGaugeVec, Registry};

pub(super) struct VantageSeries {
    up: IntGaugeVec,
    suspect: IntGaugeVec,
    hosts: IntGaugeVec,
    failing_hosts: IntGaugeVec,
}

impl VantageSeries {
    pub(super) fn new(r: &Registry) -> VantageSeries {
        VantageSeries {
            up: int_gauge_vec(
                r,
                "switchboard_vantage_up",
                "1 while the vantage probes (this node's own series is 1 while it runs).",
                &["vantage"],
            ),
            suspect: int_gauge_vec(
                r,
                "switchboard_vantage_suspect",
                "1 while the vantage sees most of its targets' hosts fail at once and suspects its own network: its outcomes count for nothing (single node) and its votes are set aside (cluster).",
                &["vantage"],
            ),
            hosts: int_gauge_vec(
                r,
                "switchboard_vantage_hosts",
                "Distinct hosts the vantage's checks probe, as the suspect-vantage guard counts them.",
                &["vantage"],
            ),
            failing_hosts: int_gauge_vec(
                r,
                "switchboard_vantage_failing_hosts",
                "Hosts whose every check failed at its latest probe from this vantage.",
                &["vantage"],
            ),
        }
    }
}

impl Metrics {
    /// The vantage probes (`up`) or has stopped.
    pub fn vantage_up(&self, vantage: &str, up: bool) {
        self.vantage
            .up
            .with_label_values(&[vantage])
            .set(i64::from(up));
    }

    /// The vantage suspects its own network, or no longer does.
    pub fn vantage_suspect(&self, vantage: &str, suspect: bool) {
        self.vantage
            .suspect
            .with_label_values(&[vantage])
            .set(i64::from(suspect));
    }

    /// The hosts the vantage watches, and how many of them fail now.
    pub fn vantage_hosts(&self, vantage: &str, hosts: usize, failing: usize) {
        let v = &self.vantage;
        v.hosts
            .with_label_values(&[vantage])
            .set(i64::try_from(hosts).unwrap_or(i64::MAX));
        v.failing_hosts
            .with_label_values(&[vantage])
            .set(i64::try_from(failing).unwrap_or(i64::MAX));
    }
}
