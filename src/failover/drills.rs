//! Drills: starting one (only when nothing is really wrong), aborting it, and how it ends (at
//! its deadline, or at once when a real outage beats it).

use super::commands::reject;
use super::evidence::Ground;
use super::machine::{Action, Backup, Policy, Service};
use super::rules::{cite, settle, transition};
use super::{Cause, Side, State};
use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

/// The drill in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRun {
    pub id: String,
    pub live: bool,
    pub until: Timestamp,
}

/// `Command::DrillStart`: refused while anything holds the service or a check is down, and a
/// live drill only with a backup verified healthy.
pub(super) fn start(
    svc: &mut Service,
    p: &Policy,
    run: DrillRun,
    actor: &str,
    reason: &str,
    now: Timestamp,
    out: &mut Vec<Action>,
) {
    if svc.state == State::Drill {
        reject(out, "a drill is already running for this service");
    } else if svc.state == State::Maintenance {
        reject(out, "the service is in maintenance");
    } else if svc.side == Side::Backup || svc.state == State::Outage {
        reject(
            out,
            format!("the service is really {}; no drill now", svc.state),
        );
    } else if svc.pin.is_some() {
        reject(out, "the routes are pinned; unpin first");
    } else if let Some(check) = svc.down_checks(p).first() {
        // A drill would only be interrupted by it at once (a real outage beats a drill).
        reject(
            out,
            format!("check {check} is down: the real problem comes first; no drill now"),
        );
    } else if run.live && svc.backup(p) != Backup::Up {
        reject(
            out,
            "the backup is not verified healthy; a live drill would send customers to it",
        );
    } else {
        let until = run.until;
        svc.drill = Some(run);
        transition(
            svc,
            p,
            State::Drill,
            Cause::Operator,
            actor,
            reason,
            now,
            out,
        );
        out.push(Action::WakeAt(until));
    }
}

/// `Command::DrillAbort`: back to the state the checks call for.
pub(super) fn abort(
    svc: &mut Service,
    p: &Policy,
    actor: &str,
    reason: &str,
    now: Timestamp,
    out: &mut Vec<Action>,
) {
    if svc.state != State::Drill {
        reject(out, "no drill is running");
    } else {
        svc.drill = None;
        settle(svc, p, Cause::Operator, actor, reason, now, out);
    }
}

/// The automatic rules while in a drill: it ends on a real outage or at its deadline, and
/// nothing else applies until it has ended.
pub(super) fn apply_rules(svc: &mut Service, p: &Policy, now: Timestamp, out: &mut Vec<Action>) {
    let sys = "system";
    // A real outage beats a drill: any check of the service going down ends the drill
    // at once, whatever its mode or deadline, and the real decision applies. The cause
    // is the real one, so the transition is announced to the real audiences too. The
    // reason is the real one as well (customers may read it); the interruption is the
    // first line of the evidence, which only on-call, the drill audience and the audit
    // chain see.
    let down = svc.down_checks(p);
    if !down.is_empty() {
        let primary = p.primary.iter().any(|c| down.contains(&c.as_str()));
        let cause = if primary {
            Cause::PrimaryDown
        } else {
            Cause::BackupDown
        };
        let note = match &svc.drill {
            Some(d) => format!("drill {} interrupted: a real outage beats a drill", d.id),
            None => "drill interrupted: a real outage beats a drill".to_string(),
        };
        let reason = format!("{} down", down.join(", "));
        svc.drill = None;
        let first = out.len();
        settle(svc, p, cause, sys, &reason, now, out);
        // The interruption is a line of evidence; its grounds are the checks that went down.
        if let Some(Action::Record { transition, .. }) = out
            .get_mut(first..)
            .and_then(|new| new.iter_mut().find(|a| matches!(a, Action::Record { .. })))
        {
            transition.evidence.insert(0, note);
        }
        return;
    }
    let (ended, cause, reason) = match &svc.drill {
        None => (
            true,
            Cause::DrillDeadline,
            "drill lost on restart; ended".into(),
        ),
        Some(d) if now >= d.until => (true, Cause::DrillDeadline, "drill deadline reached".into()),
        Some(_) => (false, Cause::DrillDeadline, String::new()),
    };
    if ended {
        let ground = svc.drill.take().map(|d| Ground::HoldEnded {
            hold: "drill".to_owned(),
            id: Some(d.id),
            until: d.until,
        });
        let first = out.len();
        settle(svc, p, cause, sys, &reason, now, out);
        if let Some(g) = ground {
            cite(out, first, g);
        }
    }
}
