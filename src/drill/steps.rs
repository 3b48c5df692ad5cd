//! Each step of a drill observed from outside: backup probed, e-mail accepted, status page, webhooks, the revert.

use super::monitor::update;
use super::report::{End, StepStatus};
use super::{health_cause, Context, Shared, POLL};
use crate::clock::Timestamp;
use crate::failover::{Side, State};
use crate::health::Health;
use crate::store::OutboxStatus;
use std::time::Duration;

/// Probes every backup check once, now.
pub(super) async fn verify_backup(ctx: &Context, r: &Shared, start: Timestamp, target: Duration) {
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
        })
        .await;
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
    })
    .await;
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
        let rows = ctx
            .store
            .read(move |s| s.announcements(tid))
            .await
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

pub(super) async fn email_accepted(ctx: &Context, r: &Shared, start: Timestamp, target: Duration) {
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
    })
    .await;
}

pub(super) async fn webhooks(
    ctx: &Context,
    r: &Shared,
    start: Timestamp,
    target: Duration,
    live: bool,
) {
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
        })
        .await;
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
        })
        .await;
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
    })
    .await;
}

/// The published snapshot (what `/status` and `/api/v2/*.json` serve) shows the drill.
pub(super) async fn status_page(ctx: &Context, r: &Shared, start: Timestamp, target: Duration) {
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
    })
    .await;
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
pub(super) async fn reverted(
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
        })
        .await;
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
        })
        .await;
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
    })
    .await;
    if aborted {
        End::Aborted
    } else {
        End::Planned
    }
}
