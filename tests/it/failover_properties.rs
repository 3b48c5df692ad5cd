//! Property tests of the failover rules in design.md, over random sequences of check health,
//! operator commands and clock jumps.

use proptest::prelude::*;
use std::time::Duration;
use switchboard::announce::{Audience, Kind};
use switchboard::audit::AuditContext;
use switchboard::clock::Timestamp;
use switchboard::config::{Failback, FailoverWhen};
use switchboard::failover::{
    step, Action, Cause, Command, Event, Ground, HoldKind, Policy, Seen, Service, Side, State,
};
use switchboard::health::Health;
use switchboard::store::Store;

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

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Primary), Just(Side::Backup)]
}

/// A deadline somewhere in the next ten minutes, or none.
fn until() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (1u64..600).prop_map(Some)]
}

/// Commands carry deadlines relative to the script's clock; `run` makes them absolute.
#[derive(Clone, Debug)]
enum Input {
    Event(Event),
    Pin(Side, Option<u64>, bool),
    Maintenance(Option<u64>),
    Drill(bool, u64),
}

fn input() -> impl Strategy<Value = Input> {
    let check = prop::sample::select(vec!["p1", "p2", "b1"]);
    let op = || ("op".to_string(), "r".to_string());
    prop_oneof![
        12 => (check, health()).prop_map(|(c, h)| Input::Event(Event::Health { check: c.into(), health: h, detail: String::new(), seen: Default::default() })),
        4 => Just(Input::Event(Event::Tick)),
        1 => any::<bool>().prop_map(move |force| { let (actor, reason) = op(); Input::Event(Event::Command(Command::Failover { actor, reason, force })) }),
        1 => Just(Input::Event(Event::Command(Command::Failback { actor: "op".into(), reason: "r".into() }))),
        1 => (side(), until(), any::<bool>()).prop_map(|(s, u, f)| Input::Pin(s, u, f)),
        1 => Just(Input::Event(Event::Command(Command::Unpin { actor: "op".into(), reason: "r".into() }))),
        1 => until().prop_map(Input::Maintenance),
        1 => Just(Input::Event(Event::Command(Command::MaintenanceStop { actor: "op".into(), reason: "r".into() }))),
        1 => (any::<bool>(), 1u64..600).prop_map(|(live, u)| Input::Drill(live, u)),
        1 => Just(Input::Event(Event::Command(Command::DrillAbort { actor: "op".into(), reason: "r".into() }))),
    ]
}

/// (seconds since the previous event, event)
fn script() -> impl Strategy<Value = Vec<(u64, Input)>> {
    prop::collection::vec(
        (prop_oneof![Just(0u64), 0u64..30, 0u64..700], input()),
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
            max_failovers: 3,
            flap_window: Duration::from_secs(3600),
            maintenance_side: Side::Backup,
            windows: Vec::new(),
        })
}

/// Everything `run` saw, step by step.
struct Step {
    now: Timestamp,
    event: Event,
    actions: Vec<Action>,
    state_before: State,
    state_after: State,
    /// Health of every check after the step.
    health: Vec<(String, Health)>,
    /// Where the routes point after the step, and whether an operator pin holds them.
    side_after: Side,
    pinned: bool,
    /// The whole decision state after the step (for restoring it as a restart does).
    svc: Service,
}

fn run(p: &Policy, script: &[(u64, Input)]) -> Vec<Step> {
    let mut svc = Service::new("s", State::Operational, Timestamp(0));
    let mut now = Timestamp(0);
    let mut steps = Vec::new();
    for (dt, input) in script {
        now = now.plus(Duration::from_secs(*dt));
        let at = |secs: u64| now.plus(Duration::from_secs(secs));
        let (actor, reason) = ("op".to_string(), "r".to_string());
        let e = match input {
            Input::Event(e) => e.clone(),
            Input::Pin(side, until, force) => Event::Command(Command::Pin {
                side: *side,
                until: until.map(at),
                actor,
                reason,
                force: *force,
            }),
            Input::Maintenance(until) => Event::Command(Command::MaintenanceStart {
                until: until.map(at),
                actor,
                reason,
            }),
            Input::Drill(live, until) => Event::Command(Command::DrillStart {
                id: "d".into(),
                live: *live,
                until: at(*until),
                actor,
                reason,
            }),
        };
        let before = svc.state;
        let actions = step(&mut svc, p, &e, now);
        steps.push(Step {
            now,
            event: e,
            actions,
            state_before: before,
            state_after: svc.state,
            health: svc.health.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            side_after: svc.side,
            pinned: svc.pin.is_some(),
            svc: svc.clone(),
        });
    }
    steps
}

impl Step {
    fn health_of(&self, check: &str) -> Health {
        self.health
            .iter()
            .find(|(c, _)| c == check)
            .map(|(_, h)| *h)
            .unwrap_or(Health::Unknown)
    }

    /// The failover condition of `p` on the health after the step.
    fn primary_down(&self, p: &Policy) -> bool {
        let down = PRIMARY
            .iter()
            .filter(|c| self.health_of(c) == Health::Down)
            .count();
        match p.failover_when {
            FailoverWhen::Any => down >= 1,
            FailoverWhen::All => down == PRIMARY.len(),
            FailoverWhen::AtLeast(k) => down >= k.max(1) as usize,
        }
    }

    fn backup_up(&self) -> bool {
        BACKUP.iter().all(|c| self.health_of(c).is_up())
    }

    fn any_down(&self) -> bool {
        self.health.iter().any(|(_, h)| *h == Health::Down)
    }
}

fn records(st: &Step) -> impl Iterator<Item = &switchboard::failover::Transition> {
    st.actions.iter().filter_map(|a| match a {
        Action::Record { transition, .. } => Some(transition),
        _ => None,
    })
}

proptest! {
    #![proptest_config(crate::support::proptest_config(1000))]

    #[test]
    fn same_events_in_same_actions_out(p in policy(), s in script()) {
        let a: Vec<_> = run(&p, &s).into_iter().map(|x| x.actions).collect();
        let b: Vec<_> = run(&p, &s).into_iter().map(|x| x.actions).collect();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn never_switches_automatically_to_a_backup_that_is_down(p in policy(), s in script()) {
        for st in run(&p, &s) {
            let automatic = records(&st).any(|t| t.actor == "system");
            let to_backup = st.actions.iter().any(|a| matches!(a, Action::SwitchRoutes { to: Side::Backup }));
            if automatic && to_backup {
                let backup_down = st.health.iter().any(|(c, h)| c == "b1" && *h == Health::Down);
                prop_assert!(!backup_down, "switched to a down backup at {:?}", st.now);
            }
        }
    }

    #[test]
    fn each_state_change_has_exactly_one_record_and_each_switch_follows_one(p in policy(), s in script()) {
        for st in run(&p, &s) {
            // Records chain from the state before to the state after, one per change.
            let mut cur = st.state_before;
            for t in records(&st) {
                prop_assert_eq!(t.from, cur);
                cur = t.to;
            }
            prop_assert_eq!(cur, st.state_after);
            for (i, a) in st.actions.iter().enumerate() {
                if matches!(a, Action::SwitchRoutes { .. }) {
                    prop_assert!(i > 0 && matches!(st.actions[i - 1], Action::Record { .. }),
                        "a switch without its record: {:?}", st.actions);
                }
            }
        }
    }

    #[test]
    fn automatic_failback_never_before_recovery_hold(p in policy(), s in script()) {
        // Since when have both primary checks been continuously healthy (as of each step)?
        let mut healthy_since: Option<Timestamp> = None;
        for st in run(&p, &s) {
            let all_healthy = PRIMARY.iter().all(|c| st.health.iter().any(|(k, v)| k == c && *v == Health::Healthy));
            healthy_since = match (all_healthy, healthy_since) {
                (true, Some(t)) => Some(t),
                (true, None) => Some(st.now),
                (false, _) => None,
            };
            for t in records(&st) {
                if t.cause == Cause::RecoveryHoldElapsed {
                    prop_assert_eq!(p.failback, Failback::Auto);
                    let since = healthy_since.expect("failback with the primary not healthy");
                    prop_assert!(st.now.since(since) >= HOLD, "failback after {:?}", st.now.since(since));
                }
            }
        }
    }

    #[test]
    fn flap_damping_holds_automatic_failback_while_max_failovers_fall_in_the_flap_window(p in policy(), s in script()) {
        // Past `max_failovers` automatic failovers within `flap_window`, the backup is held:
        // no automatic failback until enough of them have left the window.
        let mut failovers: Vec<Timestamp> = Vec::new();
        for st in run(&p, &s) {
            for (i, a) in st.actions.iter().enumerate() {
                let Action::Record { transition: t, .. } = a else { continue };
                let switched_to = match st.actions.get(i + 1) {
                    Some(Action::SwitchRoutes { to }) => Some(*to),
                    _ => None,
                };
                if t.actor == "system" && t.to == State::FailedOver && switched_to == Some(Side::Backup) {
                    failovers.push(st.now);
                }
                if t.cause == Cause::RecoveryHoldElapsed {
                    let in_window = failovers.iter().filter(|f| st.now.since(**f) < p.flap_window).count();
                    prop_assert!((in_window as u32) < p.max_failovers,
                        "automatic failback at {:?} with {} failovers in the window", st.now, in_window);
                }
            }
        }
    }

    #[test]
    fn customers_are_never_left_on_a_down_primary_while_the_backup_is_up(p in policy(), s in script()) {
        // Damping delays failback, never failover; only a pin or maintenance holds the routes
        // (a drill does not: a real outage ends it).
        for st in run(&p, &s) {
            if st.primary_down(&p) && st.backup_up() && !st.pinned && st.state_after != State::Maintenance {
                prop_assert_eq!(st.side_after, Side::Backup,
                    "on the primary at {:?} in {:?} after {:?}: {:?}", st.now, st.state_after, st.event, st.actions);
            }
        }
    }

    #[test]
    fn a_real_outage_ends_a_drill_at_once_and_is_announced_to_the_real_audiences(p in policy(), s in script()) {
        for st in run(&p, &s) {
            prop_assert!(!(st.state_after == State::Drill && st.any_down()),
                "still in a drill with a check down at {:?}", st.now);
            if st.state_before == State::Drill && st.state_after != State::Drill && st.any_down() {
                let t = records(&st).next().expect("a record ends the drill");
                prop_assert!(t.interrupts_drill(), "{:?}", t);
                prop_assert!(t.evidence.first().is_some_and(|e| e.contains("interrupted")), "{:?}", t.evidence);
                // The real change reaches the real audiences when customers would notice it.
                let kinds = Kind::all_of(t);
                let real = kinds.iter().any(|k| k.audiences().contains(&Audience::Customers));
                prop_assert_eq!(real, matches!(t.to, State::FailedOver | State::Outage), "{:?} -> {:?}", t.from, t.to);
            }
        }
    }

    #[test]
    fn a_drill_always_ends_by_its_deadline_and_never_reaches_customers(p in policy(), s in script()) {
        let mut deadline: Option<Timestamp> = None;
        for st in run(&p, &s) {
            if let Event::Command(Command::DrillStart { until, .. }) = &st.event {
                if st.state_after == State::Drill && st.state_before != State::Drill {
                    deadline = Some(*until);
                }
            }
            if st.state_after != State::Drill {
                deadline = None;
            }
            if let (Some(d), Event::Tick) = (deadline, &st.event) {
                prop_assert!(st.now < d, "still in a drill at {:?}, deadline {:?}", st.now, d);
            }
            for t in records(&st) {
                if t.from == State::Drill || t.to == State::Drill {
                    // The drill's own messages never reach customers; only a real outage that
                    // interrupted it is announced to them, as the real change it is.
                    for kind in Kind::all_of(t) {
                        let drill_kind = matches!(kind, Kind::DrillStart | Kind::DrillEnd);
                        prop_assert!(drill_kind || t.interrupts_drill(), "{:?} for {:?} -> {:?}", kind, t.from, t.to);
                        if drill_kind {
                            prop_assert!(!kind.audiences().contains(&Audience::Customers), "{:?} -> {:?} reaches customers", t.from, t.to);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn customers_hear_of_every_switch_and_of_nothing_else_routine(p in policy(), s in script()) {
        for st in run(&p, &s) {
            let switched = st.actions.iter().any(|a| matches!(a, Action::SwitchRoutes { .. }));
            for a in &st.actions {
                if let Action::Record { transition: t, announce, .. } = a {
                    let involves = |x: State| t.from == x || t.to == x;
                    let expected = switched || involves(State::Outage) || involves(State::Maintenance) || involves(State::Drill);
                    prop_assert_eq!(*announce, expected, "{:?} -> {:?}", t.from, t.to);
                }
            }
        }
    }
}

/// A restart at `now`: the state and holds as the store keeps them, and no health known yet.
fn restored(p: &Policy, saved: &Service) -> Service {
    let mut svc = Service::new("s", saved.state, saved.since);
    svc.restore(p, saved.holds());
    svc
}

/// The shell after a restore, with no health reported: a first `Tick` at `now`, a wake-up at
/// every `deadlines` entry and every `WakeAt` asked for, nothing else, until `until`.
/// Returns the service as it is then.
fn wake_only_at_deadlines(
    p: &Policy,
    mut svc: Service,
    now: Timestamp,
    until: Timestamp,
) -> Service {
    let mut pending: std::collections::BTreeSet<Timestamp> =
        svc.deadlines(p, now).into_iter().collect();
    let mut at = now;
    for _ in 0..200 {
        for a in step(&mut svc, p, &Event::Tick, at) {
            if let Action::WakeAt(t) = a {
                pending.insert(t);
            }
        }
        pending.extend(svc.deadlines(p, at));
        match pending.iter().copied().find(|t| *t > at && *t <= until) {
            Some(t) => at = t,
            None => break,
        }
    }
    svc
}

proptest! {
    #![proptest_config(crate::support::proptest_config(1000))]

    /// Issue 13: after a restart every hold with an end has a pending wake-up, and waking only
    /// at those ends every one of them (drill, pin, maintenance, flap window), whatever state
    /// the restart found.
    #[test]
    fn after_a_restore_every_hold_with_an_end_has_a_wake_up_and_ends(p in policy(), max in 1u32..4, s in script()) {
        let p = Policy { max_failovers: max, flap_window: Duration::from_secs(1200), ..p };
        for st in run(&p, &s) {
            let saved = &st.svc;
            let svc = restored(&p, saved);
            let wakes = svc.deadlines(&p, st.now);
            let holds = saved.holds();
            let ends: Vec<Timestamp> = [holds.pin.and_then(|x| x.until), holds.maintenance_until, holds.drill.map(|d| d.until)]
                .into_iter().flatten().collect();
            for end in &ends {
                prop_assert!(wakes.contains(end), "hold ending {:?} has no wake-up: {:?}", end, wakes);
            }
            let in_force = svc.holds_in_force(&p, st.now);
            for h in &in_force {
                if let Some(u) = h.until {
                    prop_assert!(wakes.contains(&u), "{:?} until {:?} has no wake-up: {:?}", h.kind, u, wakes);
                }
            }
            // The live service too, whose recovery hold lives in memory only.
            let live = saved.deadlines(&p, st.now);
            for h in saved.holds_in_force(&p, st.now) {
                if let Some(u) = h.until {
                    prop_assert!(live.contains(&u), "{:?} until {:?} has no wake-up: {:?}", h.kind, u, live);
                }
            }
            // Woken at nothing but those, every hold with an end is over once its end has passed.
            let last = ends.iter().chain(in_force.iter().filter_map(|h| h.until.as_ref())).max().copied();
            if let Some(last) = last {
                let after = wake_only_at_deadlines(&p, svc, st.now, last);
                prop_assert!(after.drill.is_none(), "drill still running after {:?}", last);
                prop_assert!(after.pin.as_ref().is_none_or(|x| x.until.is_none()), "pin still held after {:?}", last);
                prop_assert!(after.state != State::Maintenance || after.maintenance_until.is_none(), "maintenance still on after {:?}", last);
                let flap_hold = in_force.iter().any(|h| h.kind == HoldKind::Flapping);
                prop_assert!(!(flap_hold && after.flapping), "still flapping after {:?}", last);
            }
        }
    }
}

/// `policy()` with, half the time, a planned window every ten minutes (five minutes long),
/// so maintenance begins and ends by itself within a script.
fn policy_with_windows() -> impl Strategy<Value = Policy> {
    use switchboard::failover::window::{Cron, Schedule, Window};
    (policy(), any::<bool>()).prop_map(|(p, windows)| Policy {
        windows: if windows {
            vec![Window {
                schedule: Schedule::Cron(Cron::parse("*/10 * * * *").expect("cron")),
                duration: Duration::from_secs(300),
                reason: "database upgrade".into(),
            }]
        } else {
            Vec::new()
        },
        ..p
    })
}

/// What the shell would say with each health event: where and on what streak.
fn seen(script: Vec<(u64, Input)>) -> Vec<(u64, Input)> {
    script
        .into_iter()
        .map(|(dt, input)| match input {
            Input::Event(Event::Health {
                check,
                health,
                detail,
                ..
            }) => {
                let streak = if health == Health::Unknown { 0 } else { 3 };
                let seen = Seen {
                    vantage: "node-a".into(),
                    streak,
                    threshold: streak,
                    ..Seen::default()
                };
                let detail = format!("{detail}{check} outcome");
                (
                    dt,
                    Input::Event(Event::Health {
                        check,
                        health,
                        detail,
                        seen,
                    }),
                )
            }
            other => (dt, other),
        })
        .collect()
}

proptest! {
    #![proptest_config(crate::support::proptest_config(256))]

    /// Issue 16 point 1: every automatic transition carries its evidence. Its audit record, as
    /// the store writes it in the transition's transaction, has evidence lines and grounds
    /// naming a check of the service (with the verdict the machine held then, where and when
    /// it was seen and its streak) or the planned window; a failover cites a primary check
    /// that is down, a failback or recovery every primary check, an outage of the backup a
    /// backup check that is down.
    #[test]
    fn every_automatic_transition_carries_the_evidence_it_rests_on(p in policy_with_windows(), s in script()) {
        let store = Store::open_in_memory().expect("store");
        let checks: Vec<&str> = PRIMARY.iter().chain(BACKUP.iter()).copied().collect();
        for st in run(&p, &seen(s)) {
            for a in &st.actions {
                let Action::Record { transition: t, grounds, .. } = a else { continue };
                let ctx = AuditContext { config_version: "v".into(), node: "node-a".into(), grounds: grounds.clone(), ..AuditContext::default() };
                let committed = store.commit_transition(t, ctx, &[]).expect("commit");
                if t.actor != "system" {
                    continue;
                }
                let named: Vec<&str> = grounds.iter().filter_map(|g| g.check()).map(|o| o.check.as_str()).collect();
                let window = grounds.iter().any(|g| matches!(g, Ground::Window { .. }));
                prop_assert!(!t.evidence.is_empty(), "no evidence: {:?}", t);
                prop_assert!(window || named.iter().any(|c| checks.contains(c)), "no check nor window: {:?} {:?}", t, grounds);
                for o in grounds.iter().filter_map(|g| g.check()) {
                    // The verdict cited is the one the machine held when it decided.
                    prop_assert_eq!(o.health, st.svc.health.get(&o.check).copied().unwrap_or(Health::Unknown));
                    if o.health != Health::Unknown {
                        prop_assert_eq!(&o.vantage, "node-a");
                        prop_assert!(o.at.is_some_and(|at| at <= t.at) && o.streak == 3, "{:?}", o);
                        prop_assert!(o.outcome.ends_with("outcome"), "{:?}", o);
                    }
                }
                let cites = |check: &str, health: Option<Health>| grounds.iter().filter_map(|g| g.check())
                    .any(|o| o.check == check && health.is_none_or(|h| o.health == h));
                match t.cause {
                    Cause::PrimaryDown => prop_assert!(PRIMARY.iter().any(|c| cites(c, Some(Health::Down))), "{:?}", grounds),
                    Cause::BackupDown => prop_assert!(BACKUP.iter().any(|c| cites(c, Some(Health::Down))), "{:?}", grounds),
                    Cause::PrimaryRecovered | Cause::RecoveryHoldElapsed if matches!(t.to, State::Operational | State::Recovering) =>
                        prop_assert!(PRIMARY.iter().all(|c| cites(c, None)), "{:?}", grounds),
                    Cause::MaintenanceScheduled | Cause::MaintenanceEnded => prop_assert!(
                        matches!(&grounds[0], Ground::Window { reason, .. } if reason == "database upgrade")
                            || matches!(&grounds[0], Ground::HoldEnded { hold, .. } if hold == "maintenance"),
                        "{:?}", grounds),
                    _ => {}
                }
                // The audit record holds the same, as lines and as the record's grounds.
                let rec = store.audit_rows(None).expect("audit").into_iter().filter_map(Result::ok)
                    .find(|r| r.transition_id == Some(committed.transition_id)).expect("audit record");
                prop_assert_eq!(&rec.evidence, &t.evidence);
                let stored = rec.detail["grounds"].as_array().map_or(0, Vec::len);
                prop_assert_eq!(stored, grounds.len(), "{}", rec.detail);
            }
        }
    }
}

// The configured thresholds are the thresholds (issue 11): how many failed probes in a row
// make a check down, over random outcome sequences, for both confirmation settings.
mod confirmation {
    use proptest::prelude::*;
    use switchboard::clock::Timestamp;
    use switchboard::health::{CheckHealth, Health, Thresholds, NOISE_MAX_EXTRA};

    /// Outcomes: mostly successes with random failures, runs of failures, and outages.
    fn outcomes() -> impl Strategy<Value = Vec<bool>> {
        prop::collection::vec(
            prop_oneof![
                8 => Just(vec![true]),
                2 => Just(vec![false]),
                1 => (1usize..12).prop_map(|n| vec![false; n]),
            ],
            0..120,
        )
        .prop_map(|runs| runs.concat())
    }

    /// Feeds the outcomes; for each change to `Down`, the failures in a row it took.
    fn downs_after(t: Thresholds, outcomes: &[bool]) -> Vec<u32> {
        let mut h = CheckHealth::new(Timestamp(0));
        let mut downs = Vec::new();
        for (i, ok) in outcomes.iter().enumerate() {
            if h.observe(t, *ok, Timestamp(i as i64 * 1000)).is_some() && h.health == Health::Down {
                downs.push(h.consecutive_failures);
            }
        }
        downs
    }

    proptest! {
        #![proptest_config(crate::support::proptest_config(256))]

        #[test]
        fn fixed_confirmation_is_down_after_exactly_failure_threshold_failures(
            failure in 1u32..6, outcomes in outcomes()
        ) {
            let t = Thresholds { failure, success: 2, adaptive: false };
            for n in downs_after(t, &outcomes) {
                prop_assert_eq!(n, failure);
            }
        }

        #[test]
        fn adaptive_confirmation_needs_at_least_the_threshold_and_at_most_three_more(
            failure in 1u32..6, outcomes in outcomes()
        ) {
            let t = Thresholds { failure, success: 2, adaptive: true };
            for n in downs_after(t, &outcomes) {
                prop_assert!(n >= failure && n <= failure + NOISE_MAX_EXTRA, "{} failures", n);
            }
            let mut h = CheckHealth::new(Timestamp(0));
            for (i, ok) in outcomes.iter().enumerate() {
                h.observe(t, *ok, Timestamp(i as i64 * 1000));
                let now = h.failure_threshold(t);
                prop_assert!(now >= failure && now <= t.max_failures());
            }
        }
    }
}
