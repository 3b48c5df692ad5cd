//! Scenario tests of the failover core: a timed script of events in, the trace of actions out.
//!
//! Script lines: `<secs> <check> <healthy|suspect|down|unknown>`, `<secs> tick`,
//! `<secs> failover [force]`, `<secs> failback`. Trace lines: `<secs>s <from> -> <to> <cause>
//! [announce] [in <detection>s]`, `<secs>s switch <side>`, `<secs>s wake <secs>s`.

use std::time::Duration;
use switchboard::clock::Timestamp;
use switchboard::config::{Failback, FailoverWhen};
use switchboard::failover::{step, Action, Command, Event, Policy, Service, State};
use switchboard::health::Health;

fn policy(when: FailoverWhen, failback: Failback, primary: &[&str], backup: &[&str]) -> Policy {
    Policy {
        failover_when: when,
        failback,
        recovery_hold: Duration::from_secs(300),
        primary: primary.iter().map(|s| s.to_string()).collect(),
        backup: backup.iter().map(|s| s.to_string()).collect(),
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
        let event = match words[1] {
            "tick" => Event::Tick,
            "failover" => Event::Command(Command::Failover {
                actor: "alice".into(),
                reason: "drill".into(),
                force: words.get(2) == Some(&"force"),
            }),
            "failback" => Event::Command(Command::Failback {
                actor: "alice".into(),
                reason: "primary verified".into(),
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
            },
        };
        for a in step(svc, p, &event, now) {
            trace.push(match a {
                Action::Record {
                    transition: t,
                    announce,
                    detected_in,
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
            "20s operational -> failed_over operator announce",
            "20s switch backup",
        ],
    );
}

#[test]
fn transitions_carry_actor_reason_and_evidence() {
    let p = any();
    let mut svc = Service::new("svc", State::Operational, Timestamp(0));
    let h = |check: &str, health| Event::Health {
        check: check.into(),
        health,
        detail: "failed (connect): connection refused".into(),
    };
    step(&mut svc, &p, &h("backup", Health::Healthy), Timestamp(0));
    let actions = step(&mut svc, &p, &h("form", Health::Down), Timestamp(5_000));
    let Some(Action::Record { transition, .. }) = actions.first() else {
        panic!("expected a record first, got {actions:?}");
    };
    assert_eq!(transition.actor, "system");
    assert_eq!(transition.service, "svc");
    assert_eq!(transition.at, Timestamp(5_000));
    assert_eq!(transition.reason, "primary down; backup healthy");
    assert_eq!(
        transition.evidence,
        vec!["form: down (failed (connect): connection refused)".to_string()]
    );
    assert_eq!(svc.state, State::FailedOver);
    assert_eq!(svc.since, Timestamp(5_000));
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
