//! The operator commands: failover, failback, pins and maintenance, each applied or answered
//! with `Action::Rejected` when it does not fit the current state (drills are in `drills.rs`).

use super::holds::Pin;
use super::machine::{Action, Backup, Command, Policy, Service};
use super::rules::{active_window, settle, transition};
use super::{drills, Cause, Side, State};
use crate::clock::Timestamp;

/// Answers a command that does not fit the current state; nothing changes.
pub(super) fn reject(out: &mut Vec<Action>, reason: impl Into<String>) {
    out.push(Action::Rejected {
        reason: reason.into(),
    });
}

/// Applies one operator command (authorised before it gets here).
pub(super) fn command(
    svc: &mut Service,
    p: &Policy,
    cmd: &Command,
    now: Timestamp,
    out: &mut Vec<Action>,
) {
    let busy = matches!(svc.state, State::Maintenance | State::Drill);
    match cmd {
        Command::Failover {
            actor,
            reason,
            force,
        } => {
            if busy {
                reject(
                    out,
                    format!("the service is in {}; end it first", svc.state),
                );
            } else if svc.side == Side::Backup {
                reject(out, "already on the backup");
            } else if svc.backup(p) == Backup::Down && !force {
                reject(
                    out,
                    "the backup's checks are down; force (admin) to switch anyway",
                );
            } else {
                let to = State::FailedOver;
                transition(svc, p, to, Cause::Operator, actor, reason, now, out);
            }
        }
        Command::Failback { actor, reason } => {
            if busy {
                reject(
                    out,
                    format!("the service is in {}; end it first", svc.state),
                );
            } else if svc.side == Side::Primary {
                reject(out, "already on the primary");
            } else if svc.pin.is_some() {
                reject(out, "the routes are pinned; unpin first");
            } else if svc.failover_condition(p) {
                reject(
                    out,
                    "the primary's checks are down; pin to the primary to override",
                );
            } else {
                svc.primary_healthy_since = None;
                let to = State::Operational;
                transition(svc, p, to, Cause::Operator, actor, reason, now, out);
            }
        }
        Command::Pin {
            side,
            until,
            actor,
            reason,
            force,
        } => {
            if busy {
                reject(
                    out,
                    format!("the service is in {}; end it first", svc.state),
                );
            } else if *side == Side::Backup && svc.backup(p) == Backup::Down && !force {
                reject(
                    out,
                    "the backup's checks are down; force (admin) to pin it anyway",
                );
            } else {
                svc.pin = Some(Pin {
                    side: *side,
                    until: *until,
                    actor: actor.clone(),
                    reason: reason.clone(),
                });
                let to = match side {
                    Side::Backup => State::FailedOver,
                    Side::Primary if svc.primary_down(p) > 0 => State::Degraded,
                    Side::Primary => State::Operational,
                };
                if to != svc.state || svc.side != *side {
                    transition(svc, p, to, Cause::Operator, actor, reason, now, out);
                }
                if let Some(t) = until {
                    out.push(Action::WakeAt(*t));
                }
            }
        }
        Command::Unpin { actor, reason } => {
            if svc.pin.take().is_none() {
                reject(out, "the routes are not pinned");
            } else {
                settle(svc, p, Cause::Operator, actor, reason, now, out);
            }
        }
        Command::MaintenanceStart {
            until,
            actor,
            reason,
        } => {
            if svc.state == State::Drill {
                reject(out, "a drill is running; abort it first");
            } else {
                svc.maintenance_until = *until;
                if svc.state != State::Maintenance {
                    let to = State::Maintenance;
                    transition(svc, p, to, Cause::Operator, actor, reason, now, out);
                }
                if let Some(t) = until {
                    out.push(Action::WakeAt(*t));
                }
            }
        }
        Command::MaintenanceStop { actor, reason } => {
            if svc.state != State::Maintenance {
                reject(out, "the service is not in maintenance");
            } else {
                svc.maintenance_until = None;
                svc.window_skipped_until = active_window(p, now).map(|(end, _)| end);
                settle(svc, p, Cause::Operator, actor, reason, now, out);
            }
        }
        Command::DrillStart {
            id,
            live,
            until,
            actor,
            reason,
        } => {
            let run = drills::DrillRun {
                id: id.clone(),
                live: *live,
                until: *until,
            };
            drills::start(svc, p, run, actor, reason, now, out)
        }
        Command::DrillAbort { actor, reason } => drills::abort(svc, p, actor, reason, now, out),
    }
}
