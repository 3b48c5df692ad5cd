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

/// The vantages' series: each live vantage and whether it distrusts its own network, and
/// for every check the counted votes per verdict and whether its quorum is out of reach.
pub fn votes_text(
    board: &crate::cluster::vantage::VoteBoard,
    config: &crate::config::Config,
) -> String {
    use crate::cluster::votes::{check_key, decide};
    use crate::health::Health;
    use crate::metrics::table::escape;
    let reports = board.reports();
    let mut out = String::with_capacity(256 + 200 * config.services.len());
    let _ = writeln!(out, "# HELP switchboard_vantage_up 1 for each vantage whose votes this node holds (its lease is alive).");
    let _ = writeln!(out, "# TYPE switchboard_vantage_up gauge");
    for r in &reports {
        let _ = writeln!(
            out,
            "switchboard_vantage_up{{vantage=\"{}\"}} 1",
            escape(&r.node)
        );
    }
    let _ = writeln!(out, "# HELP switchboard_vantage_suspect 1 while a vantage distrusts its own network (most targets failing at once); its votes are not counted.");
    let _ = writeln!(out, "# TYPE switchboard_vantage_suspect gauge");
    for r in &reports {
        let _ = writeln!(
            out,
            "switchboard_vantage_suspect{{vantage=\"{}\"}} {}",
            escape(&r.node),
            u8::from(r.suspect)
        );
    }
    let mut votes = String::new();
    let mut blocked = String::new();
    for s in &config.services {
        for c in s
            .checks
            .iter()
            .filter(|c| c.role != crate::config::Role::Vendor)
        {
            let d = decide(reports.iter(), &check_key(&s.id, &c.name), s.vote);
            let labels = format!(
                "service=\"{}\",check=\"{}\"",
                escape(&s.id),
                escape(&c.name)
            );
            for h in [
                Health::Healthy,
                Health::Suspect,
                Health::Down,
                Health::Unknown,
            ] {
                let n = d
                    .votes
                    .iter()
                    .filter(|v| v.counted && v.health == h)
                    .count();
                let _ = writeln!(
                    votes,
                    "switchboard_check_votes{{{labels},verdict=\"{}\"}} {n}",
                    h.as_str()
                );
            }
            let _ = writeln!(
                blocked,
                "switchboard_check_quorum_blocked{{{labels}}} {}",
                u8::from(d.blocked.is_some())
            );
        }
    }
    let _ = writeln!(out, "# HELP switchboard_check_votes Counted vantages voting each verdict on a check (suspect vantages excluded).");
    let _ = writeln!(out, "# TYPE switchboard_check_votes gauge");
    out.push_str(&votes);
    let _ = writeln!(out, "# HELP switchboard_check_quorum_blocked 1 while too few vantages can vote on a check (min_vantages or k not met): no automatic decision is made.");
    let _ = writeln!(out, "# TYPE switchboard_check_quorum_blocked gauge");
    out.push_str(&blocked);
    out
}
