//! Tests of the drill report.

use super::report::End;
use super::*;
use crate::config::DrillTargets;

fn started(live: bool, on_backup: bool) -> Report {
    Report::started(Started {
        id: "drill-1",
        service: "svc",
        live,
        actor: "alice",
        reason: "quarterly",
        ticket: Some("OPS-7"),
        received: Timestamp(1_000),
        decided: Timestamp(1_020),
        switched: Timestamp(1_030),
        deadline: Timestamp(61_000),
        targets: DrillTargets::default(),
        on_backup,
    })
}

#[test]
fn a_live_drill_starts_with_decision_and_switch_timed() {
    let r = started(true, true);
    assert_eq!(r.status, DrillStatus::Running);
    assert_eq!(r.steps[0].status, StepStatus::Pass);
    assert_eq!(r.steps[0].duration_seconds, Some(0.02));
    assert_eq!(r.steps[1].status, StepStatus::Pass);
    assert_eq!(r.steps[1].duration_seconds, Some(0.03));
    assert!(r.steps[2..].iter().all(|s| s.status == StepStatus::Pending));
    // Pending steps are not a pass.
    assert_eq!(r.verdict(&End::Planned), DrillStatus::Fail);
}

#[test]
fn a_dry_run_skips_the_switch_and_a_live_drill_that_did_not_switch_fails_it() {
    assert_eq!(started(false, false).steps[1].status, StepStatus::Skipped);
    assert_eq!(started(true, false).steps[1].status, StepStatus::Fail);
}

#[test]
fn verdict_passes_only_when_every_step_passed_or_was_skipped() {
    let mut r = started(false, false);
    for s in &mut r.steps {
        if s.status == StepStatus::Pending {
            s.status = StepStatus::Pass;
        }
    }
    assert_eq!(r.verdict(&End::Planned), DrillStatus::Pass);
    assert_eq!(r.verdict(&End::Aborted), DrillStatus::Aborted);
    let why = End::Interrupted("form down".into());
    assert_eq!(r.verdict(&why), DrillStatus::Interrupted);
    r.steps[3].status = StepStatus::Fail;
    assert_eq!(r.verdict(&End::Planned), DrillStatus::Fail);
    assert_eq!(r.verdict(&why), DrillStatus::Interrupted);
}

#[test]
fn reports_round_trip_through_their_row() {
    let r = started(true, true);
    let row = r.row();
    assert_eq!(row.status, "running");
    assert_eq!(row.deadline, Timestamp(61_000));
    let back = Report::from_row(&row).unwrap();
    assert_eq!(back, r);
    let mut i = back;
    i.interrupt("restart");
    assert_eq!(i.status, DrillStatus::Fail);
    assert!(i.steps[6].detail.contains("restart"));
}

#[test]
fn ids_are_unique_and_readable() {
    let a = new_id(Timestamp(1_795_000_000_000));
    let b = new_id(Timestamp(1_795_000_000_000));
    assert!(a.starts_with("drill-2026"), "{a}");
    assert_ne!(a, b);
}
