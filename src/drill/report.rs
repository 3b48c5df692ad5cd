//! The drill report: its steps, their timing against the targets, the verdict, and its stored row.

use crate::clock::Timestamp;
use crate::config::DrillTargets;
use crate::store::DrillRow;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A step's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Pass,
    Fail,
    /// Does not apply to this drill (e.g. the route switch of a dry run); never fails it.
    Skipped,
}

/// One step of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `decision`, `routes_switched`, `backup_verified`, `email_accepted`,
    /// `status_page_updated`, `webhooks_acknowledged`, `reverted`.
    pub name: String,
    pub status: StepStatus,
    /// When the step finished (RFC 3339).
    pub at: Option<String>,
    /// From the drill's start (or, for `reverted`, from the deadline or abort) to `at`.
    pub duration_seconds: Option<f64>,
    /// The target the step is judged against (from the start, whether or not it is reached).
    pub target_seconds: Option<f64>,
    /// Which of the service's `drill_targets` that is: `drill_targets.switch` or
    /// `drill_targets.notify`. Absent in reports stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the measured time was within the target; absent while nothing was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_target: Option<bool>,
    pub detail: String,
}

/// The `drill_targets` key a step is judged against: the switch target for the decision,
/// the switch itself, the backup's verification and the revert; the notify target for
/// what people and systems are told.
pub fn target_of(step: &str) -> &'static str {
    match step {
        "email_accepted" | "status_page_updated" | "webhooks_acknowledged" => "notify",
        _ => "switch",
    }
}

/// The drill's result so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    Running,
    Pass,
    Fail,
    Aborted,
    /// A real outage ended the drill: a check of the service went down during it.
    Interrupted,
}

impl DrillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillStatus::Running => "running",
            DrillStatus::Pass => "pass",
            DrillStatus::Fail => "fail",
            DrillStatus::Aborted => "aborted",
            DrillStatus::Interrupted => "interrupted",
        }
    }
}

/// The report, as stored and served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub service: String,
    /// `live` or `dry_run`.
    pub mode: String,
    pub actor: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub started_at: String,
    pub deadline: String,
    pub ended_at: Option<String>,
    pub status: DrillStatus,
    /// Why a real outage interrupted the drill: the checks that went down and the state that
    /// applied then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption: Option<String>,
    pub targets: TargetsDoc,
    pub steps: Vec<Step>,
    #[serde(skip)]
    pub(super) started_ms: i64,
    #[serde(skip)]
    pub(super) deadline_ms: i64,
    #[serde(skip)]
    pub(super) ended_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetsDoc {
    pub switch_seconds: f64,
    pub notify_seconds: f64,
}

/// What the core knows when a drill has just started.
pub struct Started<'a> {
    pub id: &'a str,
    pub service: &'a str,
    pub live: bool,
    pub actor: &'a str,
    pub reason: &'a str,
    pub ticket: Option<&'a str>,
    /// When the request arrived.
    pub received: Timestamp,
    /// When the machine decided (and the transition was recorded).
    pub decided: Timestamp,
    /// When the route switch had been executed (live).
    pub switched: Timestamp,
    pub deadline: Timestamp,
    pub targets: DrillTargets,
    /// Whether the routes are on the backup now.
    pub on_backup: bool,
}

pub const STEPS: [&str; 7] = [
    "decision",
    "routes_switched",
    "backup_verified",
    "email_accepted",
    "status_page_updated",
    "webhooks_acknowledged",
    "reverted",
];

impl Report {
    pub fn started(s: Started<'_>) -> Report {
        let switch = s.targets.switch.as_secs_f64();
        let notify = s.targets.notify.as_secs_f64();
        // Every step carries its target from the start, so the stored report, its audit
        // record and the export say what each was judged against even when it never ran.
        let mut steps: Vec<Step> = STEPS
            .iter()
            .map(|n| Step {
                name: n.to_string(),
                status: StepStatus::Pending,
                at: None,
                duration_seconds: None,
                target_seconds: Some(if target_of(n) == "notify" {
                    notify
                } else {
                    switch
                }),
                target: Some(format!("drill_targets.{}", target_of(n))),
                within_target: None,
                detail: String::new(),
            })
            .collect();
        let took = s.decided.since(s.received).as_secs_f64();
        steps[0] = Step {
            status: if took <= switch {
                StepStatus::Pass
            } else {
                StepStatus::Fail
            },
            at: Some(s.decided.rfc3339()),
            duration_seconds: Some(took),
            target_seconds: Some(switch),
            within_target: Some(took <= switch),
            detail: "drill accepted by the failover machine and recorded".into(),
            ..steps[0].clone()
        };
        steps[1] = if s.live {
            let took = s.switched.since(s.received).as_secs_f64();
            Step {
                status: if s.on_backup && took <= switch {
                    StepStatus::Pass
                } else {
                    StepStatus::Fail
                },
                at: Some(s.switched.rfc3339()),
                duration_seconds: Some(took),
                target_seconds: Some(switch),
                within_target: Some(took <= switch),
                detail: if s.on_backup {
                    "routes point at the backup targets".into()
                } else {
                    "routes did not switch to the backup".into()
                },
                ..steps[1].clone()
            }
        } else {
            Step {
                status: StepStatus::Skipped,
                detail: "dry run: routes stay on the primary".into(),
                ..steps[1].clone()
            }
        };
        Report {
            id: s.id.to_string(),
            service: s.service.to_string(),
            mode: if s.live { "live" } else { "dry_run" }.to_string(),
            actor: s.actor.to_string(),
            reason: s.reason.to_string(),
            ticket: s.ticket.map(str::to_string),
            started_at: s.received.rfc3339(),
            deadline: s.deadline.rfc3339(),
            ended_at: None,
            status: DrillStatus::Running,
            interruption: None,
            targets: TargetsDoc {
                switch_seconds: switch,
                notify_seconds: s.targets.notify.as_secs_f64(),
            },
            steps,
            started_ms: s.received.as_millis(),
            deadline_ms: s.deadline.as_millis(),
            ended_ms: None,
        }
    }

    /// The stored report of `row` (restart).
    pub fn from_row(row: &DrillRow) -> Option<Report> {
        let mut r: Report = serde_json::from_str(&row.report).ok()?;
        r.started_ms = row.started_at.as_millis();
        r.deadline_ms = row.deadline.as_millis();
        r.ended_ms = row.ended_at.map(Timestamp::as_millis);
        Some(r)
    }

    pub fn json(&self) -> String {
        // A struct of strings, numbers and enums always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn row(&self) -> DrillRow {
        DrillRow {
            id: self.id.clone(),
            service: self.service.clone(),
            mode: self.mode.clone(),
            actor: self.actor.clone(),
            reason: self.reason.clone(),
            ticket: self.ticket.clone(),
            started_at: Timestamp(self.started_ms),
            deadline: Timestamp(self.deadline_ms),
            ended_at: self.ended_at_ts(),
            status: self.status.as_str().to_string(),
            report: self.json(),
        }
    }

    pub fn ended_at_ts(&self) -> Option<Timestamp> {
        self.ended_ms.map(Timestamp)
    }

    pub(super) fn start(&self) -> Timestamp {
        Timestamp(self.started_ms)
    }

    pub(super) fn step_mut(&mut self, name: &str) -> Option<&mut Step> {
        self.steps.iter_mut().find(|s| s.name == name)
    }

    /// Sets a step's verdict.
    pub(super) fn set(
        &mut self,
        name: &str,
        status: StepStatus,
        at: Option<Timestamp>,
        duration: Option<Duration>,
        target: Option<Duration>,
        detail: String,
    ) {
        if let Some(s) = self.step_mut(name) {
            s.status = status;
            s.at = at.map(Timestamp::rfc3339);
            s.duration_seconds = duration.map(|d| d.as_secs_f64());
            // The target stays the one set at the start when the caller names none.
            if let Some(t) = target {
                s.target_seconds = Some(t.as_secs_f64());
            }
            s.within_target = match (s.duration_seconds, s.target_seconds) {
                (Some(d), Some(t)) => Some(d <= t),
                _ => None,
            };
            s.detail = detail;
        }
    }

    /// The report as its audit record keeps it (`detail` of the `drill_report` record): the
    /// drill, its `drill_targets`, each step with its target, the measured time, whether it
    /// was within the target and its verdict, and the drill's overall result.
    pub fn audit_detail(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "step": s.name,
                    "status": s.status,
                    "at": s.at,
                    "duration_seconds": s.duration_seconds,
                    "target": s.target,
                    "target_seconds": s.target_seconds,
                    "within_target": s.within_target,
                    "detail": s.detail,
                })
            })
            .collect();
        serde_json::json!({
            "command": "drill_report",
            "drill": self.id,
            "mode": self.mode,
            "ticket": self.ticket,
            "started_at": self.started_at,
            "deadline": self.deadline,
            "ended_at": self.ended_at,
            "targets": self.targets,
            "result": self.status,
            "interruption": self.interruption,
            "steps": steps,
        })
    }

    /// Marks every pending step failed with `why` and ends the drill as failed (a restart
    /// lost what was being watched, or the service is gone).
    pub fn interrupt(&mut self, why: &str) {
        for s in &mut self.steps {
            if s.status == StepStatus::Pending {
                s.status = StepStatus::Fail;
                s.detail = format!("not observed: {why}");
            }
        }
        self.finish(DrillStatus::Fail, Timestamp::now());
    }

    pub(super) fn finish(&mut self, status: DrillStatus, at: Timestamp) {
        self.status = status;
        self.ended_at = Some(at.rfc3339());
        self.ended_ms = Some(at.as_millis());
    }

    /// Pass when no step failed (pending counts as failed), unless aborted or interrupted.
    pub(super) fn verdict(&self, end: &End) -> DrillStatus {
        if *end == End::Aborted {
            DrillStatus::Aborted
        } else if matches!(end, End::Interrupted(_)) {
            DrillStatus::Interrupted
        } else if self
            .steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Pass | StepStatus::Skipped))
        {
            DrillStatus::Pass
        } else {
            DrillStatus::Fail
        }
    }
}

/// How a drill ended, as the monitor observed it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum End {
    /// The deadline passed (or the service was removed, or the daemon stopped).
    Planned,
    Aborted,
    /// A real outage: why, naming the checks.
    Interrupted(String),
}
