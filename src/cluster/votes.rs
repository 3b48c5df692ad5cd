//! Vantage votes: each node's own verdict per check, and the quorum by which the leader turns the live vantages' verdicts into the one verdict the failover core hears.
//!
//! Every node probes every check and keeps its own `health::CheckHealth` per check: its
//! *verdict*. A node publishes its verdicts as one [`Report`] (only when one changes; the
//! report is attached to the node's lease, so a dead node's votes vanish with it). The
//! leader decides each check with [`decide`]: down when at least k counted vantages say
//! down, healthy when at least k say healthy, otherwise no decision, so the check keeps the
//! cluster verdict it had and the disagreement stays visible. A vantage that marked itself
//! suspect (it sees most targets fail at once: its own network) is listed but not counted.
//! With one vantage and nothing else heard, the decision is that vantage's verdict, so a
//! single node decides exactly as it always did. Nothing here does I/O or reads a clock.

use crate::clock::Timestamp;
use crate::health::Health;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::config::vote::{Quorum, Rule};

/// One vantage's verdict on one check, as it publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub health: Health,
    /// The outcome behind it (`200 in 12 ms`, `failed (connect): connection refused`).
    pub outcome: String,
    #[serde(with = "crate::clock::rfc3339_text")]
    pub at: Timestamp,
    /// Outcomes in a row agreeing with the verdict, and the streak it needed.
    pub streak: u32,
    pub threshold: u32,
}

/// Everything one vantage says: its verdict per check (keyed by [`check_key`]) and whether
/// it distrusts its own network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub node: String,
    #[serde(default)]
    pub suspect: bool,
    #[serde(default)]
    pub checks: BTreeMap<String, Verdict>,
}

/// How a check is named in a report: its service's id and its own name.
pub fn check_key(service: &str, check: &str) -> String {
    format!("{service}/{check}")
}

/// One vantage's vote as a decision lists it (and the evidence records it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub vantage: String,
    pub health: Health,
    pub outcome: String,
    #[serde(with = "crate::clock::rfc3339_text::option")]
    pub at: Option<Timestamp>,
    /// False for a suspect vantage's vote, which is listed but not counted.
    pub counted: bool,
}

/// What the live vantages decide about one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The cluster verdict; `None` when no verdict has its quorum (keep the previous one).
    pub health: Option<Health>,
    /// Every vantage that voted on the check, in name order.
    pub votes: Vec<Vote>,
    /// Counted vantages (live and not suspect).
    pub counted: u32,
    /// Votes a verdict needed.
    pub needed: u32,
    /// Why there is no decision, when there is none for a reason worth saying.
    pub blocked: Option<String>,
}

impl Decision {
    /// Whether the counted vantages disagree (some say up, some down or failing).
    pub fn disagrees(&self) -> bool {
        let counted = || self.votes.iter().filter(|v| v.counted);
        counted().any(|v| v.health == Health::Healthy)
            && counted().any(|v| matches!(v.health, Health::Down | Health::Suspect))
    }

    /// The counted vantages whose vote agrees with `health`, comma-separated.
    pub fn agreeing(&self, health: Health) -> String {
        self.votes
            .iter()
            .filter(|v| v.counted && v.health == health)
            .map(|v| v.vantage.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Decides `key` from the `reports` of the live vantages (this node's own among them).
pub fn decide<'a>(
    reports: impl IntoIterator<Item = &'a Report>,
    key: &str,
    rule: Rule,
) -> Decision {
    let mut votes: Vec<Vote> = reports
        .into_iter()
        .filter_map(|r| {
            r.checks.get(key).map(|v| Vote {
                vantage: r.node.clone(),
                health: v.health,
                outcome: v.outcome.clone(),
                at: Some(v.at),
                counted: !r.suspect,
            })
        })
        .collect();
    votes.sort_by(|a, b| a.vantage.cmp(&b.vantage));
    let counted = votes.iter().filter(|v| v.counted).count() as u32;
    let needed = rule.quorum.needed(counted).max(1);
    let count = |h: Health| votes.iter().filter(|v| v.counted && v.health == h).count() as u32;
    let (down, suspect, healthy) = (
        count(Health::Down),
        count(Health::Suspect),
        count(Health::Healthy),
    );
    let blocked = if counted < rule.min_vantages {
        Some(format!(
            "only {counted} vantage(s) can vote, fewer than min_vantages = {}",
            rule.min_vantages
        ))
    } else if needed > counted && counted > 0 {
        Some(format!(
            "quorum {} needs {needed} vantages, only {counted} can vote",
            rule.quorum.describe()
        ))
    } else {
        None
    };
    let health = if blocked.is_some() || counted == 0 {
        None
    } else if votes.len() == 1 && counted == 1 {
        // One vantage alone: its verdict, whatever it is (a single node decides as always).
        Some(votes[0].health)
    } else if down >= needed {
        Some(Health::Down)
    } else if healthy >= needed {
        Some(Health::Healthy)
    } else if down + suspect >= needed {
        Some(Health::Suspect)
    } else {
        None
    };
    Decision {
        health,
        votes,
        counted,
        needed,
        blocked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn report(node: &str, suspect: bool, verdicts: &[(&str, Health)]) -> Report {
        Report {
            node: node.into(),
            suspect,
            checks: verdicts
                .iter()
                .map(|(k, h)| {
                    (
                        k.to_string(),
                        Verdict {
                            health: *h,
                            outcome: format!("{h:?}"),
                            at: Timestamp::from_millis(1_000),
                            streak: 1,
                            threshold: 1,
                        },
                    )
                })
                .collect(),
        }
    }

    fn majority() -> Rule {
        Rule::default()
    }

    #[test]
    fn one_vantage_decides_alone_as_a_single_node_always_did() {
        for h in [
            Health::Unknown,
            Health::Healthy,
            Health::Suspect,
            Health::Down,
        ] {
            let r = report("a", false, &[("s/c", h)]);
            assert_eq!(decide([&r], "s/c", majority()).health, Some(h));
        }
    }

    #[test]
    fn one_of_three_saying_down_changes_nothing_two_do() {
        let a = report("a", false, &[("s/c", Health::Down)]);
        let b = report("b", false, &[("s/c", Health::Healthy)]);
        let c = report("c", false, &[("s/c", Health::Healthy)]);
        let d = decide([&a, &b, &c], "s/c", majority());
        assert_eq!(d.health, Some(Health::Healthy));
        assert!(d.disagrees());
        assert_eq!(d.needed, 2);
        let b = report("b", false, &[("s/c", Health::Down)]);
        let d = decide([&a, &b, &c], "s/c", majority());
        assert_eq!(d.health, Some(Health::Down));
        assert_eq!(d.agreeing(Health::Down), "a,b");
    }

    #[test]
    fn a_split_without_quorum_keeps_the_previous_verdict() {
        // Two vantages, one each way: a majority of two is two.
        let a = report("a", false, &[("s/c", Health::Down)]);
        let b = report("b", false, &[("s/c", Health::Healthy)]);
        let d = decide([&a, &b], "s/c", majority());
        assert_eq!(d.health, None);
        assert!(d.disagrees());
    }

    #[test]
    fn a_suspect_vantage_is_listed_but_not_counted() {
        let a = report("a", true, &[("s/c", Health::Down)]);
        let b = report("b", false, &[("s/c", Health::Healthy)]);
        let c = report("c", false, &[("s/c", Health::Healthy)]);
        let d = decide([&a, &b, &c], "s/c", majority());
        assert_eq!(d.counted, 2);
        assert_eq!(d.votes.len(), 3);
        assert!(!d.votes[0].counted);
        assert_eq!(d.health, Some(Health::Healthy));
        // Alone and suspect: no decision at all.
        assert_eq!(decide([&a], "s/c", majority()).health, None);
    }

    #[test]
    fn too_few_vantages_for_min_vantages_decide_nothing() {
        let a = report("a", false, &[("s/c", Health::Down)]);
        let b = report("b", false, &[("s/c", Health::Down)]);
        let rule = Rule {
            quorum: Quorum::Majority,
            min_vantages: 3,
        };
        let d = decide([&a, &b], "s/c", rule);
        assert_eq!(d.health, None);
        assert!(d.blocked.unwrap().contains("min_vantages = 3"));
        // k of n with fewer live than k: blocked too.
        let rule = Rule {
            quorum: Quorum::AtLeast { k: 3, n: 3 },
            min_vantages: 1,
        };
        assert!(decide([&a, &b], "s/c", rule).blocked.is_some());
    }

    #[test]
    fn quorum_text_is_parsed_or_refused_with_the_reason() {
        assert_eq!(Quorum::parse("majority"), Ok(Quorum::Majority));
        assert_eq!(
            Quorum::parse(" 2 of 3 "),
            Ok(Quorum::AtLeast { k: 2, n: 3 })
        );
        assert!(Quorum::parse("0 of 3").unwrap_err().contains("at least 1"));
        assert!(Quorum::parse("4 of 3").unwrap_err().contains("larger"));
        assert!(Quorum::parse("most").unwrap_err().contains("majority"));
    }

    fn health() -> impl Strategy<Value = Health> {
        prop_oneof![
            Just(Health::Unknown),
            Just(Health::Healthy),
            Just(Health::Suspect),
            Just(Health::Down)
        ]
    }

    proptest! {
        /// Whatever the votes, a decision of down has at least `needed` counted down votes,
        /// a decision of healthy at least `needed` healthy ones, and a minority of counted
        /// vantages (fewer than needed) can never make either.
        #[test]
        fn a_verdict_always_has_its_quorum(
            votes in proptest::collection::vec((health(), any::<bool>()), 2..7),
            k in 1u32..5,
            majority in any::<bool>(),
        ) {
            let reports: Vec<Report> = votes
                .iter()
                .enumerate()
                .map(|(i, (h, s))| report(&format!("n{i}"), *s, &[("s/c", *h)]))
                .collect();
            let n = votes.len() as u32;
            let rule = Rule {
                quorum: if majority { Quorum::Majority } else { Quorum::AtLeast { k: k.min(n), n } },
                min_vantages: 1,
            };
            let d = decide(reports.iter(), "s/c", rule);
            let counted = |h: Health| votes.iter().filter(|(v, s)| !s && *v == h).count() as u32;
            match d.health {
                Some(Health::Down) => prop_assert!(counted(Health::Down) >= d.needed),
                Some(Health::Healthy) => prop_assert!(counted(Health::Healthy) >= d.needed),
                Some(Health::Suspect) => prop_assert!(counted(Health::Down) + counted(Health::Suspect) >= d.needed),
                Some(Health::Unknown) => prop_assert!(votes.len() == 1),
                None => {}
            }
            // Down and healthy can't both have a quorum of a majority.
            if majority && d.counted > 0 {
                prop_assert!(!(counted(Health::Down) >= d.needed && counted(Health::Healthy) >= d.needed));
            }
        }
    }
}
