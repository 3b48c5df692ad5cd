//! Drills: the timed report of an operator-started exercise of the failover path, watched step by step and kept as evidence.
//!
//! The core starts a drill through the failover machine (`Command::DrillStart`), which
//! records the transition (announced to the drill audience only) and, for a live drill,
//! switches the routes. `monitor` then observes the rest from the outside, the way a person
//! would check it: the backup verified by an immediate probe of its backup checks, the
//! drill e-mail accepted by the mail server (read from the outbox row's delivery result,
//! never assumed), the published snapshot (what `/status` and the Statuspage JSON serve)
//! showing the drill, `on_switch` webhooks acknowledged, and the revert at the deadline. Each
//! step is timed and checked against the service's `drill_targets`; the report is rewritten
//! in the store as steps finish, so `GET /api/v1/drills/{id}` shows them as they happen.
//!
//! A real outage beats a drill: when a check of the service goes down, the failover machine
//! ends the drill at once with the real decision (announced to the real audiences). The
//! monitor then stops watching, and the report ends `interrupted`, naming the checks.

use crate::audit::NewAuditRecord;
use crate::clock::Timestamp;
use crate::config::{DrillTargets, ServiceSpec};
use crate::failover::{Cause, Side, State};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::{DrillRow, OutboxStatus, Store};
use crate::view::Snapshot;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// How often the outbox is looked at while waiting for a delivery result.
const POLL: Duration = Duration::from_millis(100);

/// A fresh drill id: the start time and random bits, e.g. `drill-20261129T041502-3fa9c1`.
pub fn new_id(now: Timestamp) -> String {
    let stamp: String = now
        .rfc3339()
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("drill-{stamp}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

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
    pub target_seconds: Option<f64>,
    pub detail: String,
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
    started_ms: i64,
    #[serde(skip)]
    deadline_ms: i64,
    #[serde(skip)]
    ended_ms: Option<i64>,
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
        let mut steps: Vec<Step> = STEPS
            .iter()
            .map(|n| Step {
                name: n.to_string(),
                status: StepStatus::Pending,
                at: None,
                duration_seconds: None,
                target_seconds: None,
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

    fn start(&self) -> Timestamp {
        Timestamp(self.started_ms)
    }

    fn step_mut(&mut self, name: &str) -> Option<&mut Step> {
        self.steps.iter_mut().find(|s| s.name == name)
    }

    /// Sets a step's verdict.
    fn set(
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
            s.target_seconds = target.map(|d| d.as_secs_f64());
            s.detail = detail;
        }
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

    fn finish(&mut self, status: DrillStatus, at: Timestamp) {
        self.status = status;
        self.ended_at = Some(at.rfc3339());
        self.ended_ms = Some(at.as_millis());
    }

    /// Pass when no step failed (pending counts as failed), unless aborted or interrupted.
    fn verdict(&self, end: &End) -> DrillStatus {
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

/// What a drill monitor needs.
pub struct Context {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub spec: Arc<ServiceSpec>,
    /// The transition into `drill` (its outbox rows are the drill's announcements).
    pub transition_id: Option<i64>,
    pub node: String,
    pub config_version: String,
}

type Shared = Arc<Mutex<Report>>;

fn save(store: &Store, r: &Shared) {
    let (id, status, ended, json) = {
        let r = r.lock().unwrap_or_else(|p| p.into_inner());
        (r.id.clone(), r.status, r.ended_at_ts(), r.json())
    };
    if let Err(e) = store.update_drill(&id, status.as_str(), ended, &json) {
        error!("drill {id}: could not save its report: {e}");
    }
}

fn update(ctx: &Context, r: &Shared, f: impl FnOnce(&mut Report)) {
    {
        let mut g = r.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }
    let store = ctx.store.clone();
    let r = r.clone();
    // Short synchronous SQLite write; the monitor is its own task.
    tokio::task::block_in_place(|| save(&store, &r));
}

/// Watches a drill that just started until its report is complete.
pub async fn monitor(ctx: Context, report: Report) {
    let live = report.mode == "live";
    let deadline = Timestamp(report.deadline_ms);
    let start = report.start();
    let shared: Shared = Arc::new(Mutex::new(report));
    let targets = ctx.spec.drill_targets;
    let observe = async {
        tokio::join!(
            verify_backup(&ctx, &shared, start, targets.switch),
            email_accepted(&ctx, &shared, start, targets.notify),
            status_page(&ctx, &shared, start, targets.notify),
            webhooks(&ctx, &shared, start, targets.notify, live),
        )
    };
    // A real outage ends the drill at once: what is still being watched then is moot.
    tokio::select! {
        _ = observe => {}
        _ = interrupted(&ctx) => {}
    }
    let end = reverted(&ctx, &shared, deadline, targets.switch, live).await;
    finish(&ctx, &shared, end);
}

/// How a drill ended, as the monitor observed it.
#[derive(Clone, Debug, PartialEq)]
enum End {
    /// The deadline passed (or the service was removed, or the daemon stopped).
    Planned,
    Aborted,
    /// A real outage: why, naming the checks.
    Interrupted(String),
}

/// A cause (as the snapshot spells it) that is a change of check health: the machine ends a
/// drill with one only when a check of the service went down.
fn health_cause(cause: &str) -> bool {
    serde_json::from_value::<Cause>(serde_json::Value::String(cause.to_owned()))
        .is_ok_and(Cause::is_health)
}

/// Resolves once the published snapshot shows the drill ended by a real outage.
async fn interrupted(ctx: &Context) {
    let mut rx = ctx.snapshot.clone();
    loop {
        let ended = rx
            .borrow_and_update()
            .services
            .iter()
            .any(|s| s.id == ctx.spec.id && s.state != State::Drill && health_cause(&s.cause));
        if ended {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Finishes the report of a drill that was running when the daemon stopped: what was being
/// watched then is lost (failed, saying so); the revert is still observed.
pub async fn resume(ctx: Context, mut report: Report) {
    let live = report.mode == "live";
    let deadline = Timestamp(report.deadline_ms);
    for s in &mut report.steps {
        if s.status == StepStatus::Pending && s.name != "reverted" {
            s.status = StepStatus::Fail;
            s.detail = "not observed: the daemon restarted during the drill".into();
        }
    }
    let shared: Shared = Arc::new(Mutex::new(report));
    let end = reverted(&ctx, &shared, deadline, ctx.spec.drill_targets.switch, live).await;
    finish(&ctx, &shared, end);
}

fn finish(ctx: &Context, shared: &Shared, end: End) {
    let now = Timestamp::now();
    update(ctx, shared, |r| {
        if let End::Interrupted(why) = &end {
            // Steps cut short by the interruption did not fail the failover path.
            for s in &mut r.steps {
                if s.status == StepStatus::Pending {
                    s.status = StepStatus::Skipped;
                    s.detail = "not observed: a real outage interrupted the drill".into();
                }
            }
            r.interruption = Some(why.clone());
        }
        let v = r.verdict(&end);
        r.finish(v, now);
    });
    let r = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ctx.metrics
        .drill(&r.service, r.status.as_str(), now.as_secs_f64());
    let summary: Vec<serde_json::Value> = r
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "step": s.name, "status": s.status, "duration_seconds": s.duration_seconds,
            })
        })
        .collect();
    let rec = NewAuditRecord {
        kind: crate::audit::KIND_OPERATOR_ACTION.to_string(),
        at: now,
        actor: r.actor.clone(),
        service: Some(r.service.clone()),
        reason: r.reason.clone(),
        config_version: ctx.config_version.clone(),
        node: ctx.node.clone(),
        detail: serde_json::json!({
            "command": "drill_report",
            "drill": r.id,
            "mode": r.mode,
            "ticket": r.ticket,
            "result": r.status,
            "interruption": r.interruption,
            "steps": summary,
        }),
    };
    match tokio::task::block_in_place(|| ctx.store.append_audit(&rec)) {
        Ok(_) => ctx
            .metrics
            .audit_recorded(crate::audit::KIND_OPERATOR_ACTION),
        Err(e) => {
            ctx.metrics.store_error("append_audit");
            error!("drill {}: could not audit its report: {e}", r.id);
        }
    }
    let failed: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Fail)
        .map(|s| s.name.as_str())
        .collect();
    match r.status {
        DrillStatus::Pass => info!("drill {} of {}: pass", r.id, r.service),
        DrillStatus::Aborted => info!("drill {} of {}: aborted", r.id, r.service),
        DrillStatus::Interrupted => warn!(
            "drill {} of {}: interrupted: {}",
            r.id,
            r.service,
            r.interruption.as_deref().unwrap_or("")
        ),
        _ => warn!(
            "drill {} of {}: {} (failed steps: {})",
            r.id,
            r.service,
            r.status.as_str(),
            failed.join(", ")
        ),
    }
}

/// Probes every backup check once, now.
async fn verify_backup(ctx: &Context, r: &Shared, start: Timestamp, target: Duration) {
    let checks: Vec<_> = ctx.spec.backup_checks().collect();
    if checks.is_empty() {
        update(ctx, r, |r| {
            r.set(
                "backup_verified",
                StepStatus::Skipped,
                None,
                None,
                None,
                "no backup checks configured".into(),
            )
        });
        return;
    }
    // Concurrently, each bounded by its own timeout inside `probe::run`.
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in checks.iter().enumerate() {
        let c = (*c).clone();
        set.spawn(async move { (i, crate::probe::run(&c).await) });
    }
    let mut outcomes: Vec<(usize, crate::probe::Outcome)> = Vec::new();
    while let Some(res) = set.join_next().await {
        if let Ok(o) = res {
            outcomes.push(o);
        }
    }
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<crate::probe::Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    let now = Timestamp::now();
    let took = now.since(start);
    let ok = outcomes.len() == checks.len() && outcomes.iter().all(|o| o.success);
    let detail = checks
        .iter()
        .zip(&outcomes)
        .map(|(c, o)| format!("{}: {}", c.name, o.summary()))
        .collect::<Vec<_>>()
        .join("; ");
    let status = if ok && took <= target {
        StepStatus::Pass
    } else {
        StepStatus::Fail
    };
    update(ctx, r, |r| {
        r.set(
            "backup_verified",
            status,
            Some(now),
            Some(took),
            Some(target),
            detail,
        )
    });
}

/// Waits for the outbox rows of `channel` (and, for e-mail, the drill audience) of the
/// drill's transition to be delivered, until `start + target`.
async fn deliveries(
    ctx: &Context,
    start: Timestamp,
    target: Duration,
    pick: impl Fn(&crate::store::OutboxItem) -> bool,
) -> Result<(Timestamp, Vec<String>), String> {
    let Some(tid) = ctx.transition_id else {
        return Err("the drill's transition was not recorded".into());
    };
    let give_up = start.plus(target);
    loop {
        let store = ctx.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.announcements(tid))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let rows: Vec<_> = rows.into_iter().filter(|r| pick(r)).collect();
        if rows.is_empty() {
            return Err(String::new());
        }
        if rows.iter().all(|r| r.status == OutboxStatus::Delivered) {
            let at = rows
                .iter()
                .filter_map(|r| r.delivered_at)
                .max()
                .unwrap_or_else(Timestamp::now);
            let details = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}: {}",
                        r.recipients.join(", "),
                        r.detail.clone().unwrap_or_default()
                    )
                })
                .collect();
            return Ok((at, details));
        }
        if Timestamp::now() >= give_up {
            let errors: Vec<String> = rows
                .iter()
                .filter(|r| r.status != OutboxStatus::Delivered)
                .map(|r| {
                    format!(
                        "{}: not accepted after {} attempt(s){}",
                        r.recipients.join(", "),
                        r.attempts,
                        r.last_error
                            .as_ref()
                            .map(|e| format!(", last error: {e}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            return Err(errors.join("; "));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A step observed at `at`: a pass when within `target` of `start`, a fail when later.
fn observed(
    start: Timestamp,
    at: Timestamp,
    target: Duration,
    verb: &str,
    details: &[String],
) -> (StepStatus, Option<Timestamp>, Option<Duration>, String) {
    let took = at.since(start);
    let status = if took <= target {
        StepStatus::Pass
    } else {
        StepStatus::Fail
    };
    (
        status,
        Some(at),
        Some(took),
        format!("{verb}: {}", details.join("; ")),
    )
}

async fn email_accepted(ctx: &Context, r: &Shared, start: Timestamp, target: Duration) {
    let res = deliveries(ctx, start, target, |row| {
        row.channel == "email" && row.audience == "drill"
    })
    .await;
    let (status, at, took, detail) = match res {
        Ok((at, details)) => observed(start, at, target, "accepted", &details),
        Err(e) if e.is_empty() => (
            StepStatus::Skipped,
            None,
            None,
            "no drill audience recipients configured ([audiences] drill)".to_string(),
        ),
        Err(e) => (StepStatus::Fail, None, None, e),
    };
    update(ctx, r, |r| {
        r.set("email_accepted", status, at, took, Some(target), detail)
    });
}

async fn webhooks(ctx: &Context, r: &Shared, start: Timestamp, target: Duration, live: bool) {
    if !live {
        update(ctx, r, |r| {
            r.set(
                "webhooks_acknowledged",
                StepStatus::Skipped,
                None,
                None,
                None,
                "dry run: no external pushes".into(),
            )
        });
        return;
    }
    if ctx.spec.on_switch.is_empty() {
        update(ctx, r, |r| {
            r.set(
                "webhooks_acknowledged",
                StepStatus::Skipped,
                None,
                None,
                None,
                "no on_switch webhooks configured".into(),
            )
        });
        return;
    }
    let res = deliveries(ctx, start, target, |row| row.channel == "webhook").await;
    let (status, at, took, detail) = match res {
        Ok((at, details)) => observed(start, at, target, "acknowledged", &details),
        Err(e) if e.is_empty() => (
            StepStatus::Fail,
            None,
            None,
            "no webhook was queued for the switch".to_string(),
        ),
        Err(e) => (StepStatus::Fail, None, None, e),
    };
    update(ctx, r, |r| {
        r.set(
            "webhooks_acknowledged",
            status,
            at,
            took,
            Some(target),
            detail,
        )
    });
}

/// The published snapshot (what `/status` and `/api/v2/*.json` serve) shows the drill.
async fn status_page(ctx: &Context, r: &Shared, start: Timestamp, target: Duration) {
    let mut rx = ctx.snapshot.clone();
    let id = ctx.spec.id.clone();
    let seen = tokio::time::timeout(target, async {
        loop {
            let shown = rx
                .borrow_and_update()
                .services
                .iter()
                .any(|s| s.id == id && s.state == State::Drill);
            if shown {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    })
    .await
    .unwrap_or(false);
    let now = Timestamp::now();
    let took = now.since(start);
    let (status, detail) = if seen {
        (
            StepStatus::Pass,
            "the published status snapshot shows the service in drill".to_string(),
        )
    } else {
        (
            StepStatus::Fail,
            "the published status snapshot never showed the drill".to_string(),
        )
    };
    update(ctx, r, |r| {
        r.set(
            "status_page_updated",
            status,
            Some(now),
            Some(took),
            Some(target),
            detail,
        )
    });
}

/// The checks of `s` that are down, with their last outcomes, for the interruption's reason.
fn down_checks(s: &crate::view::ServiceView) -> String {
    let down: Vec<String> = s
        .checks
        .iter()
        .filter(|c| c.health == Health::Down)
        .map(|c| {
            format!(
                "{} ({} check) down: {}",
                c.name,
                c.role.as_str(),
                c.last_outcome.as_deref().unwrap_or("no outcome")
            )
        })
        .collect();
    if down.is_empty() {
        "a check went down".to_string()
    } else {
        down.join("; ")
    }
}

/// Waits for the service to leave the drill (and, after a planned end of a live drill, for
/// the routes to be back on the primary). Returns how the drill ended.
async fn reverted(
    ctx: &Context,
    r: &Shared,
    deadline: Timestamp,
    target: Duration,
    live: bool,
) -> End {
    let mut rx = ctx.snapshot.clone();
    let id = ctx.spec.id.clone();
    let left = loop {
        let left = {
            let snap = rx.borrow_and_update();
            match snap.services.iter().find(|s| s.id == id) {
                // Removed by a reload: nothing is left to revert or to watch.
                None => Some((
                    Timestamp::now(),
                    "removed".to_string(),
                    State::Operational,
                    None,
                )),
                Some(s) if s.state != State::Drill && health_cause(&s.cause) => {
                    // Interrupted: the routes follow the real state, wherever that is.
                    let side = s
                        .routes
                        .first()
                        .map(|rt| rt.active)
                        .unwrap_or(Side::Primary);
                    let why = format!(
                        "a real outage interrupted the drill: {}; the real state applies: {}, customers on the {}",
                        down_checks(s),
                        s.state,
                        side.as_str()
                    );
                    Some((s.since, s.cause.clone(), s.state, Some(why)))
                }
                Some(s) => {
                    let routes_back = !live || s.routes.iter().all(|rt| rt.active == Side::Primary);
                    (s.state != State::Drill && routes_back)
                        .then(|| (s.since, s.cause.clone(), s.state, None))
                }
            }
        };
        if let Some(l) = left {
            break Some(l);
        }
        if rx.changed().await.is_err() {
            break None;
        }
    };
    let now = Timestamp::now();
    let Some((since, cause, state, interruption)) = left else {
        update(ctx, r, |r| {
            r.set(
                "reverted",
                StepStatus::Fail,
                None,
                None,
                Some(target),
                "the daemon stopped before the drill ended".into(),
            )
        });
        return End::Planned;
    };
    if let Some(why) = interruption {
        // Nothing to revert: the real decision took over from the drill at `since`.
        update(ctx, r, |r| {
            r.set(
                "reverted",
                StepStatus::Skipped,
                Some(since),
                Some(since.since(r.start())),
                None,
                why.clone(),
            )
        });
        return End::Interrupted(why);
    }
    let aborted = cause == "operator";
    // Lateness: from the deadline (or the abort) to the moment the revert was observed.
    let due = if cause == "drill_deadline" {
        deadline
    } else {
        since
    };
    let took = now.since(due);
    let (status, detail) = if cause == "removed" {
        (
            StepStatus::Fail,
            "the service was removed from the configuration during the drill".to_string(),
        )
    } else if took <= target {
        (
            StepStatus::Pass,
            format!(
                "{}; now {state}{}",
                if aborted {
                    "aborted by an operator"
                } else {
                    "deadline reached"
                },
                if live {
                    ", routes back on the primary"
                } else {
                    ""
                }
            ),
        )
    } else {
        (
            StepStatus::Fail,
            format!(
                "reverted {:.1}s after it was due; now {state}",
                took.as_secs_f64()
            ),
        )
    };
    update(ctx, r, |r| {
        r.set(
            "reverted",
            status,
            Some(now),
            Some(took),
            Some(target),
            detail,
        )
    });
    if aborted {
        End::Aborted
    } else {
        End::Planned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
