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

#[test]
fn every_step_carries_its_target_from_the_start_into_the_audit_record() {
    let mut r = started(true, true);
    let targets: Vec<(&str, Option<f64>, Option<&str>)> = r
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.target_seconds, s.target.as_deref()))
        .collect();
    let (switch, notify) = (
        DrillTargets::default().switch.as_secs_f64(),
        DrillTargets::default().notify.as_secs_f64(),
    );
    let sw = Some("drill_targets.switch");
    let no = Some("drill_targets.notify");
    assert_eq!(
        targets,
        [
            ("decision", Some(switch), sw),
            ("routes_switched", Some(switch), sw),
            ("backup_verified", Some(switch), sw),
            ("email_accepted", Some(notify), no),
            ("status_page_updated", Some(notify), no),
            ("webhooks_acknowledged", Some(notify), no),
            ("reverted", Some(switch), sw),
        ]
    );
    assert_eq!(r.steps[0].within_target, Some(true));
    // Measured later than its target: the time, the target and the verdict are all kept.
    let late = std::time::Duration::from_secs_f64(notify + 1.5);
    r.set(
        "email_accepted",
        StepStatus::Fail,
        Some(Timestamp(2_000)),
        Some(late),
        None,
        "accepted late".into(),
    );
    r.finish(DrillStatus::Fail, Timestamp(70_000));
    let d = r.audit_detail();
    assert_eq!(d["result"], "fail");
    assert_eq!(d["targets"]["notify_seconds"], notify);
    let email = &d["steps"][3];
    assert_eq!(email["step"], "email_accepted");
    assert_eq!(email["status"], "fail");
    assert_eq!(email["duration_seconds"], notify + 1.5);
    assert_eq!(email["target_seconds"], notify);
    assert_eq!(email["within_target"], false);
    assert_eq!(d["steps"][6]["target"], "drill_targets.switch");
    assert_eq!(d["steps"][6]["within_target"], serde_json::Value::Null);
}
