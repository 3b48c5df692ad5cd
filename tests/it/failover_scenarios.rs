//! Scenario tests of the failover core: a timed script of events in, the trace of actions out.
//!
//! Script lines: `<secs> <check> <healthy|suspect|down|unknown>`, `<secs> tick`,
//! `<secs> failover [force]`, `<secs> failback`. Trace lines: `<secs>s <from> -> <to> <cause>
//! [announce] [in <detection>s]`, `<secs>s switch <side>`, `<secs>s wake <secs>s`.

use std::time::Duration;
use switchboard::announce::Kind;
use switchboard::clock::Timestamp;
use switchboard::config::{Failback, FailoverWhen};
use switchboard::failover::{
    step, Action, Cause, Command, Event, Ground, HoldKind, Policy, Seen, Service, Side, State,
};
use switchboard::health::Health;

fn policy(when: FailoverWhen, failback: Failback, primary: &[&str], backup: &[&str]) -> Policy {
    Policy {
        failover_when: when,
        failback,
        recovery_hold: Duration::from_secs(300),
        primary: primary.iter().map(|s| s.to_string()).collect(),
        backup: backup.iter().map(|s| s.to_string()).collect(),
        max_failovers: 3,
        flap_window: Duration::from_secs(3600),
        maintenance_side: Side::Backup,
        windows: Vec::new(),
    }
}

fn any() -> Policy {
    policy(FailoverWhen::Any, Failback::Auto, &["form"], &["backup"])
}

/// Runs `script` against a fresh operational service and compares the whole trace to `expect`.
fn check(p: &Policy, script: &str, expect: &[&str]) -> Service {
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    let trace = run(&mut svc, p, script);
    assert_eq!(
        trace,
        expect,
        "\nscript:{script}\nactual trace:\n{}",
        trace.join("\n")
    );
    svc
}

fn run(svc: &mut Service, p: &Policy, script: &str) -> Vec<String> {
    let mut trace = Vec::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let secs: i64 = words[0].parse().expect("seconds");
        let now = Timestamp(secs * 1000);
        let actor = || "alice".to_string();
        let reason = || "ops".to_string();
        // `until N` anywhere on the line gives a deadline in seconds.
        let until = words
            .iter()
            .position(|w| *w == "until")
            .map(|i| Timestamp(words[i + 1].parse::<i64>().expect("until secs") * 1000));
        let side = |w: &str| match w {
            "backup" => Side::Backup,
            "primary" => Side::Primary,
            other => panic!("bad side {other}"),
        };
        let event = match words[1] {
            "tick" => Event::Tick,
            "failover" => Event::Command(Command::Failover {
                actor: actor(),
                reason: "drill".into(),
                force: words.get(2) == Some(&"force"),
            }),
            "failback" => Event::Command(Command::Failback {
                actor: actor(),
                reason: "primary verified".into(),
            }),
            "pin" => Event::Command(Command::Pin {
                side: side(words[2]),
                until,
                actor: actor(),
                reason: reason(),
                force: words.contains(&"force"),
            }),
            "unpin" => Event::Command(Command::Unpin {
                actor: actor(),
                reason: reason(),
            }),
            "maint" => Event::Command(Command::MaintenanceStart {
                until,
                actor: actor(),
                reason: reason(),
            }),
            "maint-stop" => Event::Command(Command::MaintenanceStop {
                actor: actor(),
                reason: reason(),
            }),
            "drill" => Event::Command(Command::DrillStart {
                id: "d1".into(),
                live: words[2] == "live",
                until: until.expect("drill needs until"),
                actor: actor(),
                reason: reason(),
            }),
            "drill-abort" => Event::Command(Command::DrillAbort {
                actor: actor(),
                reason: reason(),
            }),
            check => Event::Health {
                check: check.to_string(),
                health: match words[2] {
                    "healthy" => Health::Healthy,
                    "suspect" => Health::Suspect,
                    "down" => Health::Down,
                    "unknown" => Health::Unknown,
                    other => panic!("bad health {other}"),
                },
                detail: format!("{check} probe"),
                seen: Default::default(),
            },
        };
        for a in step(svc, p, &event, now) {
            trace.push(match a {
                Action::Record {
                    transition: t,
                    announce,
                    detected_in,
                    ..
                } => {
                    let mut s = format!("{secs}s {} -> {} {}", t.from, t.to, t.cause.as_str());
                    if announce {
                        s.push_str(" announce");
                    }
                    if let Some(d) = detected_in {
                        s.push_str(&format!(" in {}s", d.as_secs()));
                    }
                    s
                }
                Action::SwitchRoutes { to } => format!("{secs}s switch {}", to.as_str()),
                Action::WakeAt(at) => format!("{secs}s wake {}s", at.as_millis() / 1000),
                Action::Flapping { on } => {
                    format!("{secs}s flapping {}", if on { "on" } else { "off" })
                }
                Action::Rejected { reason } => format!("{secs}s rejected: {reason}"),
            });
        }
    }
    trace
}

#[test]
fn primary_down_with_healthy_backup_fails_over_and_announces() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 form suspect
         20 form down",
        &[
            "20s operational -> failed_over primary_down announce in 10s",
            "20s switch backup",
        ],
    );
}

#[test]
fn suspect_alone_never_fails_over() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 form suspect
         15 form healthy
         20 form suspect",
        &[],
    );
}

#[test]
fn full_cycle_waits_recovery_hold_before_failing_back() {
    check(
        &any(),
        "0 backup healthy
         0 form down
         100 form healthy
         200 tick
         399 tick
         400 tick",
        &[
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "100s failed_over -> recovering primary_recovered",
            "100s wake 400s",
            "400s recovering -> operational recovery_hold_elapsed announce",
            "400s switch primary",
        ],
    );
}

#[test]
fn primary_failing_during_hold_goes_back_to_failed_over_and_restarts_the_hold() {
    check(
        &any(),
        "0 backup healthy
         0 form down
         100 form healthy
         200 form suspect
         210 form healthy
         400 tick
         450 form down
         500 form healthy
         800 tick",
        &[
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "100s failed_over -> recovering primary_recovered",
            "100s wake 400s",
            // The suspect at 200 s reset the hold; health at 210 s restarts it.
            "210s wake 510s",
            "450s recovering -> failed_over primary_down in 0s",
            "500s failed_over -> recovering primary_recovered",
            "500s wake 800s",
            "800s recovering -> operational recovery_hold_elapsed announce",
            "800s switch primary",
        ],
    );
}

#[test]
fn all_policy_degrades_on_one_and_fails_over_on_every_primary_down() {
    let p = policy(FailoverWhen::All, Failback::Auto, &["a", "b"], &["backup"]);
    check(
        &p,
        "0 backup healthy
         0 a healthy
         0 b healthy
         10 a down
         20 b down
         30 b healthy",
        &[
            "10s operational -> degraded primary_down in 0s",
            "20s degraded -> failed_over primary_down announce in 10s",
            "20s switch backup",
        ],
    );
}

#[test]
fn degraded_returns_to_operational_when_primary_recovers() {
    let p = policy(FailoverWhen::All, Failback::Auto, &["a", "b"], &["backup"]);
    check(
        &p,
        "0 backup healthy
         10 a down
         20 a healthy",
        &[
            "10s operational -> degraded primary_down in 0s",
            "20s degraded -> operational primary_recovered",
        ],
    );
}

#[test]
fn k_of_n_needs_k_primary_checks_down() {
    let p = policy(
        FailoverWhen::AtLeast(2),
        Failback::Auto,
        &["a", "b", "c"],
        &["backup"],
    );
    check(
        &p,
        "0 backup healthy
         10 a down
         20 c down",
        &[
            "10s operational -> degraded primary_down in 0s",
            "20s degraded -> failed_over primary_down announce in 10s",
            "20s switch backup",
        ],
    );
}

#[test]
fn never_switches_to_a_backup_that_is_down() {
    check(
        &any(),
        "0 backup down
         10 form down
         20 backup healthy",
        &[
            "10s operational -> outage primary_down announce in 0s",
            "20s outage -> failed_over backup_recovered announce",
            "20s switch backup",
        ],
    );
}

#[test]
fn outage_resolves_when_the_primary_comes_back() {
    check(
        &any(),
        "0 backup down
         10 form down
         60 form healthy",
        &[
            "10s operational -> outage primary_down announce in 0s",
            "60s outage -> operational primary_recovered announce",
        ],
    );
}

#[test]
fn unverified_backup_waits_in_degraded_then_fails_over_once_verified() {
    check(
        &any(),
        "10 form down
         12 backup healthy",
        &[
            "10s operational -> degraded primary_down in 0s",
            "12s degraded -> failed_over primary_down announce in 2s",
            "12s switch backup",
        ],
    );
}

#[test]
fn backup_failing_while_in_use_is_an_outage_on_primary() {
    check(
        &any(),
        "0 backup healthy
         0 form down
         30 backup down",
        &[
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "30s failed_over -> outage backup_down announce in 0s",
            "30s switch primary",
        ],
    );
}

#[test]
fn manual_failback_waits_for_an_operator() {
    let p = policy(FailoverWhen::Any, Failback::Manual, &["form"], &["backup"]);
    check(
        &p,
        "0 backup healthy
         0 form down
         100 form healthy
         10000 tick
         10001 failback",
        &[
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "100s failed_over -> recovering primary_recovered",
            "10001s recovering -> operational operator announce",
            "10001s switch primary",
        ],
    );
}

#[test]
fn operator_failover_refuses_a_down_backup_unless_forced() {
    check(
        &any(),
        "0 backup down
         0 form healthy
         10 failover
         20 failover force",
        &[
            "10s rejected: the backup's checks are down; force (admin) to switch anyway",
            "20s operational -> failed_over operator announce",
            "20s switch backup",
        ],
    );
}

#[test]
fn transitions_carry_actor_reason_and_evidence() {
    let p = any();
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    let h = |check: &str, health, detail: &str, streak| Event::Health {
        check: check.into(),
        health,
        detail: detail.into(),
        seen: Seen {
            vantage: "node-a".into(),
            streak,
            threshold: streak,
            ..Seen::default()
        },
    };
    let up = h("backup", Health::Healthy, "ok 200 in 0.012s", 1);
    step(&mut svc, &p, &up, Timestamp(0));
    let refused = "failed (connect): connection refused";
    let down = h("form", Health::Down, refused, 3);
    let actions = step(&mut svc, &p, &down, Timestamp(5_000));
    let Some(Action::Record {
        transition,
        grounds,
        ..
    }) = actions.first()
    else {
        panic!("expected a record first, got {actions:?}");
    };
    assert_eq!(transition.actor, "system");
    assert_eq!(transition.service, "svc");
    assert_eq!(transition.at, Timestamp(5_000));
    assert_eq!(transition.reason, "primary down; backup healthy");
    // The failing primary check, and the backup verified before customers go to it.
    assert_eq!(
        transition.evidence,
        [
            "form: down (failed (connect): connection refused)",
            "backup: healthy (ok 200 in 0.012s)"
        ]
    );
    let seen: Vec<_> = grounds.iter().filter_map(|g| g.check()).collect();
    assert_eq!(seen.len(), 2, "{grounds:?}");
    assert_eq!(
        (seen[0].role.as_str(), seen[0].at, seen[0].streak),
        ("primary", Some(Timestamp(5_000)), 3)
    );
    assert_eq!(
        (seen[1].role.as_str(), seen[1].at, seen[1].vantage.as_str()),
        ("backup", Some(Timestamp(0)), "node-a")
    );
    assert_eq!(svc.state, State::FailedOver);
    assert_eq!(svc.since, Timestamp(5_000));
}

#[test]
fn an_automatic_failback_cites_every_primary_check_healthy_and_its_streak() {
    let p = any();
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    run(
        &mut svc,
        &p,
        "0 backup healthy
         0 form healthy
         5 form down
         40 form healthy",
    );
    let actions = step(&mut svc, &p, &Event::Tick, Timestamp(40_000 + 300_000));
    let Some(Action::Record {
        transition: t,
        grounds,
        ..
    }) = actions.first()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(t.cause, Cause::RecoveryHoldElapsed);
    assert_eq!(t.evidence, ["form: healthy (form probe)"]);
    let o = grounds[0].check().expect("a check");
    assert_eq!((o.check.as_str(), o.health), ("form", Health::Healthy));
    assert_eq!(
        o.at,
        Some(Timestamp(40_000)),
        "when the primary was seen healthy"
    );
}

#[test]
fn a_planned_window_is_the_evidence_of_the_maintenance_it_begins_and_ends() {
    use switchboard::failover::window::{Schedule, Window};
    let start = Timestamp(60_000);
    let p = Policy {
        windows: vec![Window {
            schedule: Schedule::Once(start),
            duration: Duration::from_secs(120),
            reason: "database upgrade".into(),
        }],
        ..any()
    };
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    run(&mut svc, &p, "0 backup healthy\n0 form healthy");
    let began = step(&mut svc, &p, &Event::Tick, start);
    let ended = step(&mut svc, &p, &Event::Tick, Timestamp(180_000));
    let first = |actions: &[Action]| match actions.first() {
        Some(Action::Record {
            transition,
            grounds,
            ..
        }) => (transition.clone(), grounds.clone()),
        other => panic!("{other:?}"),
    };
    let (t, g) = first(&began);
    assert_eq!(t.cause, Cause::MaintenanceScheduled);
    assert_eq!(
        g[0],
        Ground::Window {
            reason: "database upgrade".into(),
            start,
            end: Timestamp(180_000),
            event: "began".into()
        }
    );
    let (t, g) = first(&ended);
    assert_eq!(t.cause, Cause::MaintenanceEnded);
    assert!(
        matches!(&g[0], Ground::Window { event, start: s, .. } if event == "ended" && *s == start),
        "{g:?}"
    );
    assert_eq!(
        t.evidence[..2],
        [
            "maintenance window \"database upgrade\" ended (ends 1970-01-01T00:03:00.000Z)",
            "form: healthy (form probe)"
        ]
    );
}

#[test]
fn restored_failed_over_service_stays_on_backup_until_primary_proves_healthy() {
    // After a restart every check is unknown: nothing may be switched or announced.
    let p = any();
    let mut svc = Service::new("svc", State::FailedOver, Timestamp(0));
    let trace = run(&mut svc, &p, "1000 backup healthy\n1001 tick");
    assert!(trace.is_empty(), "{trace:?}");
    assert_eq!(svc.state, State::FailedOver);
}

#[test]
fn flapping_holds_the_backup_after_max_failovers_in_the_window() {
    // Three automatic failovers within the hour; the third recovery holds the backup until
    // the first failover leaves the window, then fails back.
    check(
        &any(),
        "0 backup healthy
         0 form down
         10 form healthy
         310 tick
         400 form down
         410 form healthy
         710 tick
         800 form down
         810 form healthy
         1110 tick
         3601 tick",
        &[
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "10s failed_over -> recovering primary_recovered",
            "10s wake 310s",
            "310s recovering -> operational recovery_hold_elapsed announce",
            "310s switch primary",
            "400s operational -> failed_over primary_down announce in 0s",
            "400s switch backup",
            "410s failed_over -> recovering primary_recovered",
            "410s wake 710s",
            "710s recovering -> operational recovery_hold_elapsed announce",
            "710s switch primary",
            "800s operational -> failed_over primary_down announce in 0s",
            "800s switch backup",
            "810s failed_over -> recovering primary_recovered",
            "810s wake 1110s",
            "1110s flapping on",
            "1110s wake 3600s",
            "3601s recovering -> operational recovery_hold_elapsed announce",
            "3601s switch primary",
            "3601s flapping off",
        ],
    );
}

#[test]
fn flap_damping_delays_failback_but_never_holds_a_failover_to_a_healthy_backup() {
    // Issue 11: two automatic failovers fill the window (max_failovers = 2), the second
    // failback is held, an operator fails back by hand, and the primary breaks again. The
    // customers go to the healthy backup at once; the failback that follows waits until the
    // window has cleared of enough failovers.
    let p = Policy {
        max_failovers: 2,
        ..any()
    };
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    let trace = run(
        &mut svc,
        &p,
        "0 backup healthy
         0 form down
         10 form healthy
         310 tick
         400 form down
         410 form healthy
         710 tick
         720 failback
         800 form down",
    );
    assert_eq!(
        trace,
        [
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "10s failed_over -> recovering primary_recovered",
            "10s wake 310s",
            "310s recovering -> operational recovery_hold_elapsed announce",
            "310s switch primary",
            "400s operational -> failed_over primary_down announce in 0s",
            "400s switch backup",
            "410s failed_over -> recovering primary_recovered",
            "410s wake 710s",
            "710s flapping on",
            "710s wake 3600s",
            "720s recovering -> operational operator announce",
            "720s switch primary",
            "800s operational -> failed_over primary_down announce in 0s",
            "800s switch backup",
            "800s wake 4000s",
        ]
    );
    // The hold is shown with its end: the failover of 400 s leaves the window at 4000 s,
    // leaving one, below max_failovers.
    let holds = svc.holds_in_force(&p, Timestamp(800_000));
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0].kind, HoldKind::Flapping);
    assert_eq!(holds[0].until, Some(Timestamp(4_000_001)));
    assert!(
        holds[0].line().starts_with(
            "flapping: automatic failback held: 3 automatic failovers within 1h until "
        ),
        "{}",
        holds[0].line()
    );
    // The failback waits while two failovers remain in the window, then happens by itself.
    let trace = run(
        &mut svc,
        &p,
        "810 form healthy
1110 tick
3601 tick
4001 tick",
    );
    assert_eq!(
        trace,
        [
            "810s failed_over -> recovering primary_recovered",
            "810s wake 1110s",
            "4001s recovering -> operational recovery_hold_elapsed announce",
            "4001s switch primary",
            "4001s flapping off",
        ]
    );
}

#[test]
fn holds_in_force_name_the_recovery_hold_pin_and_maintenance_with_their_ends() {
    let p = any();
    let mut svc = check(
        &p,
        "0 backup healthy
         0 form down
         10 form healthy",
        &[
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "10s failed_over -> recovering primary_recovered",
            "10s wake 310s",
        ],
    );
    let holds = svc.holds_in_force(&p, Timestamp(20_000));
    assert_eq!(
        holds.iter().map(|h| (h.kind, h.until)).collect::<Vec<_>>(),
        [(HoldKind::RecoveryHold, Some(Timestamp(310_000)))]
    );
    run(&mut svc, &p, "20 pin backup until 900");
    let kinds: Vec<_> = svc
        .holds_in_force(&p, Timestamp(30_000))
        .iter()
        .map(|h| (h.kind, h.until))
        .collect();
    assert_eq!(kinds, [(HoldKind::Pin, Some(Timestamp(900_000)))]);
    run(
        &mut svc,
        &p,
        "40 unpin
50 maint until 700",
    );
    let holds = svc.holds_in_force(&p, Timestamp(60_000));
    assert_eq!(holds[0].kind, HoldKind::Maintenance);
    assert_eq!(holds[0].until, Some(Timestamp(700_000)));
    let manual = policy(FailoverWhen::Any, Failback::Manual, &["form"], &["backup"]);
    let svc = check(
        &manual,
        "0 backup healthy
0 form down
10 form healthy",
        &[
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "10s failed_over -> recovering primary_recovered",
        ],
    );
    let holds = svc.holds_in_force(&manual, Timestamp(20_000));
    assert_eq!(holds[0].kind, HoldKind::RecoveryHold);
    assert_eq!(
        holds[0].until, None,
        "manual failback: until an operator acts"
    );
}

#[test]
fn pin_holds_the_routes_whatever_the_checks_say_until_it_expires() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 pin primary until 100
         20 form down
         100 tick",
        &[
            "10s wake 100s",
            "100s operational -> failed_over operator announce",
            "100s switch backup",
        ],
    );
}

#[test]
fn pin_to_a_down_backup_needs_force() {
    check(
        &any(),
        "0 backup down
         0 form healthy
         10 pin backup
         20 pin backup force
         30 form down
         40 unpin",
        &[
            "10s rejected: the backup's checks are down; force (admin) to pin it anyway",
            "20s operational -> failed_over operator announce",
            "20s switch backup",
            "40s failed_over -> outage operator announce",
            "40s switch primary",
        ],
    );
}

#[test]
fn maintenance_sends_customers_to_the_backup_and_pauses_the_rules_until_it_ends() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 maint until 100
         20 form down
         30 form healthy
         100 tick",
        &[
            "10s operational -> maintenance operator announce",
            "10s switch backup",
            "10s wake 100s",
            "100s maintenance -> operational maintenance_ended announce",
            "100s switch primary",
        ],
    );
}

#[test]
fn maintenance_stopped_while_the_primary_is_down_settles_on_the_backup() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 maint
         20 form down
         30 maint-stop",
        &[
            "10s operational -> maintenance operator announce",
            "10s switch backup",
            "30s maintenance -> failed_over operator announce",
        ],
    );
}

#[test]
fn live_drill_switches_to_backup_and_reverts_at_its_deadline() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 drill live until 70
         20 drill live until 90
         70 tick",
        &[
            "10s operational -> drill operator announce",
            "10s switch backup",
            "10s wake 70s",
            "20s rejected: a drill is already running for this service",
            "70s drill -> operational drill_deadline announce",
            "70s switch primary",
        ],
    );
}

#[test]
fn dry_run_drill_keeps_customers_on_the_primary_and_can_be_aborted() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 drill dry until 600
         20 drill-abort
         30 drill-abort",
        &[
            "10s operational -> drill operator announce",
            "10s wake 600s",
            "20s drill -> operational operator announce",
            "30s rejected: no drill is running",
        ],
    );
}

#[test]
fn no_drill_while_really_failed_over_and_no_live_drill_to_an_unverified_backup() {
    check(
        &any(),
        "0 form healthy
         5 drill live until 100
         6 backup healthy
         10 form down
         20 drill live until 100",
        &[
            "5s rejected: the backup is not verified healthy; a live drill would send customers to it",
            "10s operational -> failed_over primary_down announce in 0s",
            "10s switch backup",
            "20s rejected: the service is really failed_over; no drill now",
        ],
    );
}

#[test]
fn a_real_outage_interrupts_a_dry_run_drill_and_customers_go_to_the_backup_at_once() {
    let p = any();
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    let mut trace = run(
        &mut svc,
        &p,
        "0 backup healthy
         0 form healthy
         10 drill dry until 600
         20 form suspect",
    );
    let e = Event::Health {
        check: "form".into(),
        health: Health::Down,
        detail: "HTTP 503".into(),
        seen: Default::default(),
    };
    let actions = step(&mut svc, &p, &e, Timestamp(21_000));
    let Some(Action::Record { transition: t, .. }) = actions.first() else {
        panic!("{actions:?}")
    };
    // The real cause, a reason naming the check, and the real announcement beside the drill's.
    assert_eq!(t.cause, Cause::PrimaryDown);
    assert_eq!(t.reason, "form down");
    assert_eq!(
        t.evidence,
        [
            "drill d1 interrupted: a real outage beats a drill",
            "form: down (HTTP 503)",
            "backup: healthy (backup probe)"
        ]
    );
    assert!(t.interrupts_drill());
    assert_eq!(Kind::all_of(t), [Kind::DrillEnd, Kind::Failover]);
    trace.extend(run(&mut svc, &p, "600 tick"));
    assert_eq!(
        trace,
        [
            "10s operational -> drill operator announce",
            "10s wake 600s",
        ]
    );
    assert_eq!(
        actions[1],
        Action::SwitchRoutes { to: Side::Backup },
        "customers go to the healthy backup at once"
    );
    assert_eq!(
        (svc.state, svc.side, svc.drill.clone()),
        (State::FailedOver, Side::Backup, None)
    );
}

#[test]
fn a_real_outage_interrupts_a_live_drill_and_customers_stay_on_the_healthy_backup() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 drill live until 600
         20 form down
         600 tick",
        &[
            "10s operational -> drill operator announce",
            "10s switch backup",
            "10s wake 600s",
            "20s drill -> failed_over primary_down announce in 0s",
        ],
    );
}

#[test]
fn after_an_interrupted_drill_the_real_rules_go_on() {
    check(
        &policy(
            FailoverWhen::Any,
            Failback::Auto,
            &["form"],
            &["backup", "backup2"],
        ),
        "0 backup healthy
         0 backup2 healthy
         0 form healthy
         10 drill live until 600
         20 form down
         20 backup down",
        &[
            "10s operational -> drill operator announce",
            "10s switch backup",
            "10s wake 600s",
            "20s drill -> failed_over primary_down announce in 0s",
            "20s failed_over -> outage backup_down announce in 0s",
            "20s switch primary",
        ],
    );
}

#[test]
fn no_drill_while_a_check_is_down() {
    check(
        &policy(FailoverWhen::All, Failback::Auto, &["a", "b"], &["backup"]),
        "0 backup healthy
         0 a healthy
         0 b down
         10 drill dry until 600",
        &[
            "0s operational -> degraded primary_down in 0s",
            "10s rejected: check b is down: the real problem comes first; no drill now",
        ],
    );
}

#[test]
fn a_live_drill_ends_at_once_when_the_backup_goes_down() {
    check(
        &any(),
        "0 backup healthy
         0 form healthy
         10 drill live until 600
         20 backup down",
        &[
            "10s operational -> drill operator announce",
            "10s switch backup",
            "10s wake 600s",
            "20s drill -> operational backup_down announce in 0s",
            "20s switch primary",
        ],
    );
}

#[test]
fn a_drill_restored_after_a_restart_ends_at_the_first_event() {
    let p = any();
    let mut svc = Service::new("svc", State::Drill, Timestamp(0));
    let trace = run(&mut svc, &p, "5 backup healthy");
    assert_eq!(
        trace,
        [
            "5s drill -> operational drill_deadline announce",
            "5s switch primary"
        ]
    );
}

#[test]
fn failback_is_refused_while_the_primary_is_down() {
    check(
        &any(),
        "0 backup healthy
         0 form down
         10 failback",
        &[
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "10s rejected: the primary's checks are down; pin to the primary to override",
        ],
    );
}

fn with_window(start_secs: i64, secs: u64) -> Policy {
    use switchboard::failover::window::{Schedule, Window};
    Policy {
        windows: vec![Window {
            schedule: Schedule::Once(Timestamp(start_secs * 1000)),
            duration: Duration::from_secs(secs),
            reason: "portal upgrade".into(),
        }],
        ..any()
    }
}

#[test]
fn a_planned_window_starts_and_ends_maintenance_by_itself() {
    check(
        &with_window(100, 50),
        "0 backup healthy
         0 form healthy
         100 tick
         120 form down
         150 form healthy
         150 tick",
        &[
            "0s wake 100s",
            "100s operational -> maintenance maintenance_scheduled announce",
            "100s switch backup",
            "100s wake 150s",
            "150s maintenance -> operational maintenance_ended announce",
            "150s switch primary",
        ],
    );
}

#[test]
fn an_operator_can_end_a_planned_window_early_and_it_does_not_come_back() {
    check(
        &with_window(100, 50),
        "0 backup healthy
         0 form healthy
         100 tick
         110 maint-stop
         120 tick
         150 tick",
        &[
            "0s wake 100s",
            "100s operational -> maintenance maintenance_scheduled announce",
            "100s switch backup",
            "100s wake 150s",
            "110s maintenance -> operational operator announce",
            "110s switch primary",
        ],
    );
}

#[test]
fn holds_survive_a_restart_a_pin_keeps_the_routes_and_a_drill_keeps_its_deadline() {
    let p = any();
    let mut before = Service::new("svc", State::Operational, Timestamp(0));
    run(
        &mut before,
        &p,
        "0 backup healthy\n0 form healthy\n10 pin backup until 500",
    );
    assert_eq!(before.state, State::FailedOver);
    // A restart: the store gives back the state and the holds; health starts unknown.
    let mut after = Service::new("svc", before.state, before.since);
    after.restore(&p, before.holds());
    let trace = run(
        &mut after,
        &p,
        "20 backup healthy\n20 form healthy\n100 tick\n500 tick",
    );
    assert_eq!(
        trace,
        [
            "500s failed_over -> operational operator announce",
            "500s switch primary"
        ],
        "the pin held until its expiry instead of recovering at once"
    );

    let mut drilling = Service::new("svc", State::Operational, Timestamp(0));
    run(
        &mut drilling,
        &p,
        "0 backup healthy\n0 form healthy\n10 drill live until 300",
    );
    let mut restarted = Service::new("svc", drilling.state, drilling.since);
    restarted.restore(&p, drilling.holds());
    assert_eq!(
        restarted.side,
        Side::Backup,
        "a live drill stays on the backup"
    );
    let trace = run(&mut restarted, &p, "20 backup healthy\n100 tick\n300 tick");
    assert_eq!(
        trace,
        [
            "300s drill -> operational drill_deadline announce",
            "300s switch primary"
        ]
    );
}

#[test]
fn a_flap_hold_under_maintenance_ends_with_its_window_and_is_a_deadline() {
    // Issue 13: flap damping holds the backup, then an operator starts open-ended maintenance.
    // Maintenance stops the rules early, so the flap hold used to outlive its window (the
    // flapping signal stayed on). It now ends with its window, and its end is one of the
    // deadlines the shell keeps a wake-up at (after a restart too).
    let p = Policy {
        max_failovers: 1,
        ..any()
    };
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    let trace = run(
        &mut svc,
        &p,
        "0 backup healthy
         0 form down
         10 form healthy
         310 tick
         320 maint",
    );
    assert_eq!(
        trace,
        [
            "0s operational -> failed_over primary_down announce in 0s",
            "0s switch backup",
            "10s failed_over -> recovering primary_recovered",
            "10s wake 310s",
            "310s flapping on",
            "310s wake 3600s",
            "320s recovering -> maintenance operator announce",
        ]
    );
    assert_eq!(
        svc.deadlines(&p, Timestamp(320_000)),
        [Timestamp(3_600_001)]
    );
    let mut restored = Service::new("svc", svc.state, svc.since);
    restored.restore(&p, svc.holds());
    assert_eq!(
        restored.deadlines(&p, Timestamp(320_000)),
        [Timestamp(3_600_001)]
    );
    let trace = run(&mut svc, &p, "3601 tick");
    assert_eq!(trace, ["3601s flapping off"]);
    assert!(svc.deadlines(&p, Timestamp(3_601_000)).is_empty());
}

#[test]
fn deadlines_name_every_hold_end_and_the_recovery_hold() {
    let p = any();
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    run(
        &mut svc,
        &p,
        "0 backup healthy
         0 form down
         10 form healthy",
    );
    // Recovering: the recovery hold ends 300 s after the primary came back.
    assert_eq!(svc.deadlines(&p, Timestamp(20_000)), [Timestamp(310_000)]);
    run(&mut svc, &p, "20 pin backup until 900");
    assert_eq!(svc.deadlines(&p, Timestamp(20_000)), [Timestamp(900_000)]);
}
