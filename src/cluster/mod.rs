//! The coordinator seam: which node may execute decisions. Single node is always the leader.
//!
//! The core decides on every node; only the leader executes (records, switches, announces).
//! `SingleNode` is the default; with `[cluster]`, `election::EtcdCoordinator` leads while this
//! node holds the leader key in etcd (`etcd.rs` is the client, `election.rs` the HA loop and
//! the fenced writes).

pub mod election;
pub mod etcd;
pub mod vantage;
pub mod votes;

/// Who may act, and who we are.
pub trait Coordinator: Send + Sync {
    /// Whether this node may execute decisions now.
    fn is_leader(&self) -> bool;
    /// This node's name, recorded with every transition.
    fn node(&self) -> &str;
}

/// The default: one node, always the leader.
#[derive(Clone, Debug)]
pub struct SingleNode {
    node: String,
}

impl SingleNode {
    pub fn new(node: impl Into<String>) -> SingleNode {
        SingleNode { node: node.into() }
    }

    /// Named after the machine (its kernel host name), or `switchboard` when that is unknown.
    pub fn from_host() -> SingleNode {
        SingleNode::new(host_name().unwrap_or_else(|| "switchboard".to_string()))
    }
}

impl Coordinator for SingleNode {
    fn is_leader(&self) -> bool {
        true
    }

    fn node(&self) -> &str {
        &self.node
    }
}

/// The kernel's host name, without a dependency: Linux exposes it under /proc.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_always_leads_under_its_name() {
        let c = SingleNode::new("eu-west");
        assert!(c.is_leader());
        assert_eq!(c.node(), "eu-west");
        assert!(!SingleNode::from_host().node().is_empty());
    }
}
