//! Starting, resuming and finishing the watch of a drill; every change of the report is saved as it happens.

use super::report::{DrillStatus, End, Report, StepStatus};
use super::steps::{email_accepted, reverted, status_page, verify_backup, webhooks};
use super::{health_cause, Context, Shared};
use crate::audit::NewAuditRecord;
use crate::clock::Timestamp;
use crate::failover::State;
use std::sync::{Arc, Mutex};
use tracing::{error, info, warn};

/// Applies `f` to the report and saves it, waiting for the writer.
///
/// The report is copied and its save queued in one step, with no await between: the steps
/// watched concurrently (one task, `join!`) therefore queue their saves in the order they
/// changed the report, and a later save never carries an older report.
pub(super) async fn update(ctx: &Context, r: &Shared, f: impl FnOnce(&mut Report)) {
    let (id, status, ended, json) = {
        let mut g = r.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
        (g.id.clone(), g.status, g.ended_at_ts(), g.json())
    };
    let key = id.clone();
    let saved = ctx
        .store
        .write(move |s| s.update_drill(&key, status.as_str(), ended, &json));
    if let Err(e) = saved.await {
        error!("drill {id}: could not save its report: {e}");
    }
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
    finish(&ctx, &shared, end).await;
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
    finish(&ctx, &shared, end).await;
}

async fn finish(ctx: &Context, shared: &Shared, end: End) {
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
    })
    .await;
    let r = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ctx.metrics
        .drill(&r.service, r.status.as_str(), now.as_secs_f64());
    let rec = NewAuditRecord {
        kind: crate::audit::KIND_OPERATOR_ACTION.to_string(),
        at: now,
        actor: r.actor.clone(),
        service: Some(r.service.clone()),
        reason: r.reason.clone(),
        config_version: ctx.config_version.clone(),
        node: ctx.node.clone(),
        detail: r.audit_detail(),
    };
    match ctx.store.append_audit(rec).await {
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
