//! The vantages' series (`switchboard_vantage_*`), labelled with the vantage (the node's name): up and suspect rendered from the vote board, the guard's host counts from the registry.

use super::{int_gauge_vec, Metrics};
use crate::cluster::vantage::VoteBoard;
use crate::metrics::table::escape;
use prometheus::{IntGaugeVec, Registry};
use std::fmt::Write;

/// `switchboard_vantage_up` and `switchboard_vantage_suspect` of every vantage whose report
/// `board` holds (this node's own, and in cluster mode the live peers'), rendered at scrape
/// time from the board, the one place that knows them.
pub fn vantage_text(board: &VoteBoard) -> String {
    let reports = board.reports();
    let mut out = String::with_capacity(256 + 80 * reports.len());
    let _ = writeln!(out, "# HELP switchboard_vantage_up 1 for each vantage whose votes this node holds (this node, and the peers whose lease is alive).");
    let _ = writeln!(out, "# TYPE switchboard_vantage_up gauge");
    for r in &reports {
        let _ = writeln!(
            out,
            "switchboard_vantage_up{{vantage=\"{}\"}} 1",
            escape(&r.node)
        );
    }
    let _ = writeln!(out, "# HELP switchboard_vantage_suspect 1 while a vantage distrusts its own network (most of its targets' hosts failing at once): its outcomes count for nothing and its votes are not counted.");
    let _ = writeln!(out, "# TYPE switchboard_vantage_suspect gauge");
    for r in &reports {
        let _ = writeln!(
            out,
            "switchboard_vantage_suspect{{vantage=\"{}\"}} {}",
            escape(&r.node),
            u8::from(r.suspect)
        );
    }
    out
}

pub(super) struct VantageSeries {
    hosts: IntGaugeVec,
    failing_hosts: IntGaugeVec,
}

impl VantageSeries {
    pub(super) fn new(r: &Registry) -> VantageSeries {
        VantageSeries {
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
