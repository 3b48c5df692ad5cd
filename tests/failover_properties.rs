//! Property tests of the failover rules in design.md, over random sequences of check health,
//! operator commands and clock jumps.

use proptest::prelude::*;
use std::time::Duration;
use switchboard::clock::Timestamp;
use switchboard::config::{Failback, FailoverWhen};
use switchboard::failover::{step, Action, Cause, Command, Event, Policy, Service, Side, State};
use switchboard::health::Health;

const PRIMARY: [&str; 2] = ["p1", "p2"];
const BACKUP: [&str; 1] = ["b1"];
const HOLD: Duration = Duration::from_secs(300);

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Healthy),
        Just(Health::Suspect),
        Just(Health::Down),
        Just(Health::Unknown)
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let check = prop::sample::select(vec!["p1", "p2", "b1"]);
    prop_oneof![
        6 => (check, health()).prop_map(|(c, h)| Event::Health { check: c.into(), health: h, detail: String::new() }),
        2 => Just(Event::Tick),
        1 => any::<bool>().prop_map(|force| Event::Command(Command::Failover { actor: "op".into(), reason: "r".into(), force })),
        1 => Just(Event::Command(Command::Failback { actor: "op".into(), reason: "r".into() })),
    ]
}

/// (seconds since the previous event, event)
fn script() -> impl Strategy<Value = Vec<(u64, Event)>> {
    prop::collection::vec(
        (prop_oneof![Just(0u64), 0u64..30, 0u64..700], event()),
        1..120,
    )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![
            Just(FailoverWhen::Any),
            Just(FailoverWhen::All),
            Just(FailoverWhen::AtLeast(1)),
            Just(FailoverWhen::AtLeast(2))
        ],
        prop_oneof![Just(Failback::Auto), Just(Failback::Manual)],
    )
        .prop_map(|(when, back)| Policy {
            failover_when: when,
            failback: back,
            recovery_hold: HOLD,
            primary: PRIMARY.iter().map(|s| s.to_string()).collect(),
            backup: BACKUP.iter().map(|s| s.to_string()).collect(),
        })
}

/// Everything `run` saw, step by step: (now, event, actions, health after, state after).
struct Step {
    now: Timestamp,
    actions: Vec<Action>,
    state_before: State,
    state_after: State,
}

fn run(p: &Policy, script: &[(u64, Event)]) -> (Vec<Step>, Vec<Vec<(String, Health)>>) {
    let mut svc = Service::new("s", State::Operational, Timestamp(0));
    let mut now = Timestamp(0);
    let mut steps = Vec::new();
    let mut healths = Vec::new();
    for (dt, e) in script {
        now = now.plus(Duration::from_secs(*dt));
        let before = svc.state;
        let actions = step(&mut svc, p, e, now);
        steps.push(Step {
            now,
            actions,
            state_before: before,
            state_after: svc.state,
        });
        healths.push(svc.health.iter().map(|(k, v)| (k.clone(), *v)).collect());
    }
    (steps, healths)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn same_events_in_same_actions_out(p in policy(), s in script()) {
        let (a, _) = run(&p, &s);
        let (b, _) = run(&p, &s);
        let a: Vec<_> = a.into_iter().map(|x| x.actions).collect();
        let b: Vec<_> = b.into_iter().map(|x| x.actions).collect();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn never_switches_automatically_to_a_backup_that_is_down(p in policy(), s in script()) {
        let (steps, healths) = run(&p, &s);
        for (st, h) in steps.iter().zip(&healths) {
            let automatic = st.actions.iter().any(|a| matches!(a, Action::Record { transition, .. } if transition.actor == "system"));
            let to_backup = st.actions.iter().any(|a| matches!(a, Action::SwitchRoutes { to: Side::Backup }));
            if automatic && to_backup {
                let backup_down = h.iter().any(|(c, hh)| c == "b1" && *hh == Health::Down);
                prop_assert!(!backup_down, "switched to a down backup at {:?}", st.now);
            }
        }
    }

    #[test]
    fn each_state_change_has_exactly_one_record(p in policy(), s in script()) {
        let (steps, _) = run(&p, &s);
        for st in &steps {
            let records: Vec<_> = st.actions.iter().filter_map(|a| match a {
                Action::Record { transition, .. } => Some(transition),
                _ => None,
            }).collect();
            // Records chain from the state before to the state after, one per change.
            let mut cur = st.state_before;
            for t in &records {
                prop_assert_eq!(t.from, cur);
                prop_assert_ne!(t.from, t.to);
                cur = t.to;
            }
            prop_assert_eq!(cur, st.state_after);
            // The routes follow the state: each switch matches a record whose sides differ.
            let switches = st.actions.iter().filter(|a| matches!(a, Action::SwitchRoutes { .. })).count();
            let side_changes = records.iter().filter(|t| t.from.routes_side() != t.to.routes_side()).count();
            prop_assert_eq!(switches, side_changes);
        }
    }

    #[test]
    fn automatic_failback_never_before_recovery_hold(p in policy(), s in script()) {
        let (steps, healths) = run(&p, &s);
        // Since when have both primary checks been continuously healthy (as of each step)?
        let mut healthy_since: Option<Timestamp> = None;
        for (st, h) in steps.iter().zip(&healths) {
            let all_healthy = PRIMARY.iter().all(|c| h.iter().any(|(k, v)| k == c && *v == Health::Healthy));
            healthy_since = match (all_healthy, healthy_since) {
                (true, Some(t)) => Some(t),
                (true, None) => Some(st.now),
                (false, _) => None,
            };
            for a in &st.actions {
                if let Action::Record { transition, .. } = a {
                    if transition.cause == Cause::RecoveryHoldElapsed {
                        prop_assert_eq!(p.failback, Failback::Auto);
                        let since = healthy_since.expect("failback with the primary not healthy");
                        prop_assert!(st.now.since(since) >= HOLD, "failback after {:?}", st.now.since(since));
                    }
                }
            }
        }
    }

    #[test]
    fn at_most_one_announcement_per_transition_and_only_when_customers_are_affected(p in policy(), s in script()) {
        let (steps, _) = run(&p, &s);
        for st in &steps {
            for a in &st.actions {
                if let Action::Record { transition: t, announce, .. } = a {
                    let expected = t.from.routes_side() != t.to.routes_side() || t.to == State::Outage || t.from == State::Outage;
                    prop_assert_eq!(*announce, expected, "{:?} -> {:?}", t.from, t.to);
                }
            }
        }
    }
}
