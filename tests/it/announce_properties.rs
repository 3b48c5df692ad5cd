//! Property tests of the grouping rules (`announce::group`) over random bursts of failovers and failbacks of three services, run second by second.
//!
//! The rules, from design.md and the README: every e-mail part is decided once (sent in
//! exactly one message, or, for customers only, suppressed); an audience gets at most one
//! message per `group_window`; customers hear of a change only if it lasted its
//! `customer_delay`; and once everything is decided, what customers were last told about
//! each service is where the service really is.

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchboard::announce::group::plan;
use switchboard::announce::Templates;
use switchboard::clock::Timestamp;
use switchboard::failover::State;
use switchboard::store::{GroupDecision, WaitingPart};

const T0: i64 = 1_700_000_000_000;

fn at(s: u64) -> Timestamp {
    Timestamp(T0 + (s as i64) * 1000)
}

/// Each step: (service 0..3, seconds after the previous change). Every change toggles the
/// service between operational and failed over.
fn script() -> impl Strategy<Value = Vec<(usize, u64)>> {
    prop::collection::vec((0usize..3, 0u64..200), 1..25)
}

/// The parts the shell writes for `script`: on-call's at once, customers' after `delay`.
fn parts(script: &[(usize, u64)], window: u64, delay: u64) -> Vec<WaitingPart> {
    let mut states = [State::Operational; 3];
    let mut t = 0;
    let mut out = Vec::new();
    for (i, &(svc, gap)) in script.iter().enumerate() {
        t += gap;
        let from = states[svc];
        let to = if from == State::Operational {
            State::FailedOver
        } else {
            State::Operational
        };
        states[svc] = to;
        for (k, (audience, d)) in [("oncall", 0), ("customers", delay)]
            .into_iter()
            .enumerate()
        {
            out.push(WaitingPart {
                id: (i * 2 + k + 1) as i64,
                transition_id: (i + 1) as i64,
                service: format!("s{svc}"),
                service_name: format!("Service {svc}"),
                from,
                to,
                at: at(t),
                audience: audience.into(),
                kind: "failover".into(),
                recipients: vec![format!("{audience}@example.com")],
                subject: format!("[Switchboard] Service {svc}: {from} -> {to}"),
                text: "changed\n\n-- \nSent by Switchboard.\n".into(),
                html: None,
                created_at: at(t),
                ready_at: at(t + d),
                window: Duration::from_secs(window),
            });
        }
    }
    out
}

/// What happened to the parts, run second by second until long after the last change.
struct Run {
    /// (audience, second, part ids) of every message.
    sent: Vec<(String, u64, Vec<i64>)>,
    /// Part id -> reason.
    suppressed: BTreeMap<i64, String>,
}

fn run(all: &[WaitingPart], end: u64) -> Run {
    let templates = Templates::embedded();
    let mut waiting: Vec<WaitingPart> = Vec::new();
    let mut next = 0;
    let mut last: HashMap<String, Timestamp> = HashMap::new();
    let mut r = Run {
        sent: Vec::new(),
        suppressed: BTreeMap::new(),
    };
    for s in 0..=end {
        let now = at(s);
        // Parts exist from their transition on.
        while next < all.len() && all[next].at <= now {
            waiting.push(all[next].clone());
            next += 1;
        }
        for d in plan(&waiting, &last, now, &templates) {
            match d {
                GroupDecision::Compose {
                    part_ids, audience, ..
                } => {
                    waiting.retain(|p| !part_ids.contains(&p.id));
                    last.insert(audience.clone(), now);
                    r.sent.push((audience, s, part_ids));
                }
                GroupDecision::Suppress { part_id, reason } => {
                    waiting.retain(|p| p.id != part_id);
                    assert!(r.suppressed.insert(part_id, reason).is_none());
                }
            }
        }
    }
    assert!(waiting.is_empty(), "still waiting at the end: {waiting:?}");
    r
}

proptest! {
    #![proptest_config(crate::support::proptest_config(128))]

    #[test]
    fn grouping_decides_each_part_once_and_keeps_customers_truthful(
        script in script(),
        window in prop_oneof![Just(0u64), Just(30u64)],
        delay in prop_oneof![Just(0u64), Just(120u64)],
    ) {
        let all = parts(&script, window, delay);
        let end = script.iter().map(|(_, g)| g).sum::<u64>() + delay + 2 * window + 5;
        let r = run(&all, end);
        let by_id: HashMap<i64, &WaitingPart> = all.iter().map(|p| (p.id, p)).collect();

        // Every part decided exactly once.
        let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
        for (_, _, ids) in &r.sent {
            for id in ids {
                *seen.entry(*id).or_default() += 1;
            }
        }
        for id in r.suppressed.keys() {
            *seen.entry(*id).or_default() += 1;
        }
        prop_assert!(seen.values().all(|n| *n == 1), "{seen:?}");
        prop_assert_eq!(seen.len(), all.len());

        // Only customers are ever kept in the dark; on-call gets the record of everything.
        for id in r.suppressed.keys() {
            prop_assert_eq!(&by_id[id].audience, "customers");
        }

        // At most one message per audience per window (a zero window sends each change alone).
        if window > 0 {
            for audience in ["oncall", "customers"] {
                let times: Vec<u64> = r.sent.iter().filter(|(a, _, _)| a == audience).map(|(_, s, _)| *s).collect();
                for pair in times.windows(2) {
                    prop_assert!(pair[1] - pair[0] >= window, "{audience} at {times:?}");
                }
            }
        } else {
            prop_assert!(r.sent.iter().all(|(_, _, ids)| ids.len() == 1));
        }

        // Customers hear of a change only if it lasted its delay.
        for (audience, _, ids) in &r.sent {
            if audience != "customers" {
                continue;
            }
            for id in ids {
                let p = by_id[id];
                let undone_within = all.iter().any(|q| {
                    q.audience == "customers" && q.service == p.service && q.id > p.id
                        && q.at <= p.ready_at
                });
                prop_assert!(!undone_within, "part {id} sent though changed again within its delay");
            }
        }

        // In the end, what customers were last told is the truth.
        let mut told: BTreeMap<&str, State> = BTreeMap::new();
        let mut truth: BTreeMap<&str, State> = BTreeMap::new();
        for p in all.iter().filter(|p| p.audience == "customers") {
            truth.insert(&p.service, p.to);
        }
        let mut sent_customer: Vec<i64> = r.sent.iter().filter(|(a, _, _)| a == "customers").flat_map(|(_, _, ids)| ids.clone()).collect();
        sent_customer.sort();
        for id in sent_customer {
            told.insert(&by_id[&id].service, by_id[&id].to);
        }
        for (service, state) in truth {
            let known = told.get(service).copied().unwrap_or(State::Operational);
            prop_assert_eq!(known, state, "customers' view of {}", service);
        }
    }
}
