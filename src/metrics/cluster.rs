//! The cluster's series (`switchboard_cluster_*`), rendered from the election's shared state at each scrape, the same on a follower and a leader.

use crate::cluster::election::Shared;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// The cluster series of node `node` in the text exposition format.
pub fn cluster_text(node: &str, shared: &Shared, applied: u64) -> String {
    let leading = u8::from(shared.acting_term().is_some());
    let mut out = String::with_capacity(1024);
    let mut series = |name: &str, kind: &str, help: &str, labels: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    series(
        "switchboard_cluster_leader",
        "gauge",
        "1 while this node leads the cluster and may act; 0 otherwise.",
        &format!("{{node=\"{node}\"}}"),
        leading.to_string(),
    );
    series(
        "switchboard_cluster_leader_changes_total",
        "counter",
        "Leader changes this node has seen (including its own elections).",
        "",
        shared.leader_changes.load(Ordering::Relaxed).to_string(),
    );
    series(
        "switchboard_cluster_fenced_writes_total",
        "counter",
        "Writes etcd refused because this node's leader term had ended.",
        "",
        shared.fenced_writes.load(Ordering::Relaxed).to_string(),
    );
    series(
        "switchboard_cluster_demotions_total",
        "counter",
        "Times this node stepped down as leader (lease lost, renew deadline passed, fenced).",
        "",
        shared.demotions.load(Ordering::Relaxed).to_string(),
    );
    series(
        "switchboard_cluster_etcd_up",
        "gauge",
        "1 when etcd answered this node's last election round.",
        "",
        u8::from(shared.etcd_reachable()).to_string(),
    );
    series(
        "switchboard_cluster_lease_age_seconds",
        "gauge",
        "Seconds since this node's lease was last renewed.",
        "",
        shared
            .lease_age()
            .map_or_else(|| "NaN".to_string(), |a| format!("{:.3}", a.as_secs_f64())),
    );
    series(
        "switchboard_cluster_applied_entry",
        "gauge",
        "The last entry of the replicated log applied to this node's store.",
        "",
        applied.to_string(),
    );
    out
}
