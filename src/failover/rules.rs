//! The automatic rules: failover to a healthy backup, failback after `recovery_hold`, flap
//! damping, holds that end with time, planned windows, and the one way a state changes
//! (`transition`).

use super::evidence::{self, Ground};
use super::machine::{Action, Backup, Policy, Service};
use super::{drills, Cause, Side, State, Transition};
use crate::clock::Timestamp;
use crate::config::Failback;

/// Leaves a hold (maintenance, drill, pin) for the state the checks call for.
pub(super) fn settle(
    svc: &mut Service,
    p: &Policy,
    cause: Cause,
    actor: &str,
    reason: &str,
    now: Timestamp,
    out: &mut Vec<Action>,
) {
    svc.primary_healthy_since = None;
    // No flap guard here: damping delays failback, never a failover to a healthy backup.
    let to = svc.settled(p);
    if to != svc.state || svc.side_for(p, to) != svc.side {
        transition(svc, p, to, cause, actor, reason, now, out);
    }
}

/// The planned window under way at `now`: its end and reason.
pub(super) fn active_window(p: &Policy, now: Timestamp) -> Option<(Timestamp, &str)> {
    p.windows
        .iter()
        .find_map(|w| w.active_until(now).map(|end| (end, w.reason.as_str())))
}

/// Applies the rules, then asks to be woken at the next planned window's start.
pub(super) fn evaluate(svc: &mut Service, p: &Policy, now: Timestamp, out: &mut Vec<Action>) {
    apply_rules(svc, p, now, out);
    let next = p.windows.iter().filter_map(|w| w.next_start(now)).min();
    if next != svc.next_window_wake {
        svc.next_window_wake = next;
        if let Some(t) = next {
            out.push(Action::WakeAt(t));
        }
    }
}

/// Applies the automatic rules to the current health picture.
fn apply_rules(svc: &mut Service, p: &Policy, now: Timestamp, out: &mut Vec<Action>) {
    let sys = "system";
    // The flap hold ends with its window whatever else holds the service: under a drill, a
    // pin or maintenance the rules below stop early, so it is ended here, and the flapping
    // signal never outlives it. (Otherwise it ends at the bottom, after any failback.)
    let held = svc.pin.is_some() || matches!(svc.state, State::Drill | State::Maintenance);
    if held && svc.flapping && flap_hold(svc, p, now).is_none() {
        svc.flapping = false;
        svc.flap_wake = None;
        out.push(Action::Flapping { on: false });
    }
    // Holds that end with time.
    if svc
        .pin
        .as_ref()
        .and_then(|x| x.until)
        .is_some_and(|t| now >= t)
    {
        let until = svc.pin.take().and_then(|pin| pin.until);
        let first = out.len();
        settle(svc, p, Cause::Operator, sys, "pin expired", now, out);
        if let Some(until) = until {
            let hold = "pin".to_owned();
            cite(
                out,
                first,
                Ground::HoldEnded {
                    hold,
                    id: None,
                    until,
                },
            );
        }
    }
    match svc.state {
        State::Drill => {
            drills::apply_rules(svc, p, now, out);
            return;
        }
        State::Maintenance => {
            if let Some(end) = svc.maintenance_until.filter(|t| now >= *t) {
                svc.maintenance_until = None;
                let reason = "maintenance window ended";
                let first = out.len();
                settle(svc, p, Cause::MaintenanceEnded, sys, reason, now, out);
                cite(out, first, ended_window(p, end));
            }
            return;
        }
        _ => {}
    }
    if svc.pin.is_some() {
        // The operator holds the routes; the checks still feed metrics and evidence.
        return;
    }
    if let Some((end, reason)) = active_window(p, now) {
        if svc.window_skipped_until.is_none_or(|skip| skip < end) {
            svc.window_skipped_until = None;
            svc.maintenance_until = Some(end);
            let reason = reason.to_string();
            let c = Cause::MaintenanceScheduled;
            let first = out.len();
            transition(svc, p, State::Maintenance, c, sys, &reason, now, out);
            cite(out, first, window_ground(p, end, &reason, "began"));
            out.push(Action::WakeAt(end));
            return;
        }
    }
    match svc.state {
        State::Operational | State::Degraded => {
            if svc.failover_condition(p) {
                match svc.backup(p) {
                    // Never held back by flap damping: customers go to the healthy backup, and
                    // damping holds them there longer instead (see `Recovering`).
                    Backup::Up => {
                        let reason = "primary down; backup healthy";
                        let c = Cause::PrimaryDown;
                        transition(svc, p, State::FailedOver, c, sys, reason, now, out)
                    }
                    Backup::Down => {
                        let reason = "primary down and backup down: nothing healthy to switch to";
                        let c = Cause::PrimaryDown;
                        transition(svc, p, State::Outage, c, sys, reason, now, out)
                    }
                    // Backup not probed yet: wait for its verdict rather than switch blind.
                    Backup::Unknown if svc.state == State::Operational => {
                        let reason = "primary down; backup not verified yet";
                        let c = Cause::PrimaryDown;
                        transition(svc, p, State::Degraded, c, sys, reason, now, out)
                    }
                    Backup::Unknown => {}
                }
            } else if svc.primary_down(p) > 0 {
                if svc.state == State::Operational {
                    let reason = "some primary checks down; failover condition not met";
                    let c = Cause::PrimaryDown;
                    transition(svc, p, State::Degraded, c, sys, reason, now, out);
                }
            } else if svc.state == State::Degraded {
                let reason = "primary checks back up";
                let c = Cause::PrimaryRecovered;
                transition(svc, p, State::Operational, c, sys, reason, now, out);
            }
        }
        State::FailedOver => {
            if svc.backup(p) == Backup::Down {
                // While flapping, the routes stay on the backup (see `transition`).
                flap_guard(svc, p, now, out);
                let reason = "backup down while in use: nothing healthy to switch to";
                let c = Cause::BackupDown;
                transition(svc, p, State::Outage, c, sys, reason, now, out);
            } else if svc.primary_all_healthy(p) {
                svc.primary_healthy_since = Some(now);
                let reason = match p.failback {
                    Failback::Auto => format!(
                        "primary healthy; switching back after {} of health",
                        humantime::format_duration(p.recovery_hold)
                    ),
                    Failback::Manual => {
                        "primary healthy; waiting for an operator to fail back".into()
                    }
                };
                let c = Cause::PrimaryRecovered;
                transition(svc, p, State::Recovering, c, sys, &reason, now, out);
                if p.failback == Failback::Auto {
                    out.push(Action::WakeAt(now.plus(p.recovery_hold)));
                }
            }
        }
        State::Recovering => {
            if svc.primary_down(p) > 0 {
                svc.primary_healthy_since = None;
                let reason = "primary down again during recovery hold";
                let c = Cause::PrimaryDown;
                transition(svc, p, State::FailedOver, c, sys, reason, now, out);
            } else if !svc.primary_all_healthy(p) {
                // A suspect primary check is not proof of health: the hold starts over.
                svc.primary_healthy_since = None;
            } else if svc.backup(p) == Backup::Down {
                svc.primary_healthy_since = None;
                let reason = "backup down while recovering; primary healthy";
                let c = Cause::BackupDown;
                transition(svc, p, State::Operational, c, sys, reason, now, out);
            } else {
                let since = *svc.primary_healthy_since.get_or_insert(now);
                let due = since.plus(p.recovery_hold);
                if p.failback == Failback::Auto {
                    if now < due {
                        if since == now {
                            out.push(Action::WakeAt(due));
                        }
                    } else if flap_guard(svc, p, now, out) {
                        // Too many failovers lately: hold the backup until the window clears.
                    } else {
                        svc.primary_healthy_since = None;
                        let reason = format!(
                            "primary healthy for {}",
                            humantime::format_duration(p.recovery_hold)
                        );
                        let c = Cause::RecoveryHoldElapsed;
                        transition(svc, p, State::Operational, c, sys, &reason, now, out);
                    }
                }
            }
        }
        State::Outage => {
            if !svc.failover_condition(p) && svc.primary_down(p) == 0 {
                let reason = "primary checks back up";
                let c = Cause::PrimaryRecovered;
                transition(svc, p, State::Operational, c, sys, reason, now, out);
            } else if svc.failover_condition(p) && svc.backup(p) == Backup::Up {
                let reason = "backup healthy again; primary still down";
                let c = Cause::BackupRecovered;
                transition(svc, p, State::FailedOver, c, sys, reason, now, out);
            }
        }
        State::Maintenance | State::Drill => {}
    }
    if svc.flapping {
        match flap_hold(svc, p, now) {
            None => {
                svc.flapping = false;
                svc.flap_wake = None;
                out.push(Action::Flapping { on: false });
            }
            // More failovers joined the window: wake when the hold really ends, so it ends on
            // time rather than at some later event.
            Some(clear_at) if svc.flap_wake != Some(clear_at) => {
                svc.flap_wake = Some(clear_at);
                out.push(Action::WakeAt(clear_at));
            }
            Some(_) => {}
        }
    }
}

/// True while the service has failed over `max_failovers` times within `flap_window`;
/// raises the flapping signal (once) and asks to be woken when the window clears.
fn flap_guard(svc: &mut Service, p: &Policy, now: Timestamp, out: &mut Vec<Action>) -> bool {
    match flap_hold(svc, p, now) {
        Some(clear_at) => {
            if !svc.flapping {
                svc.flapping = true;
                svc.flap_wake = Some(clear_at);
                out.push(Action::Flapping { on: true });
                out.push(Action::WakeAt(clear_at));
            }
            true
        }
        None => false,
    }
}

/// While `max_failovers` or more automatic failovers fall in the window ending now, returns
/// when enough of them will have left it; forgets the failovers that already left it.
fn flap_hold(svc: &mut Service, p: &Policy, now: Timestamp) -> Option<Timestamp> {
    let window_start = Timestamp(now.as_millis() - p.flap_window.as_millis() as i64);
    svc.auto_failovers.retain(|t| *t > window_start);
    svc.flap_clear_at(p, now).map(|(clear_at, _)| clear_at)
}

/// Records one transition and the route switch it implies.
#[allow(clippy::too_many_arguments)]
pub(super) fn transition(
    svc: &mut Service,
    p: &Policy,
    to: State,
    cause: Cause,
    actor: &str,
    reason: &str,
    now: Timestamp,
    out: &mut Vec<Action>,
) {
    let from = svc.state;
    let side_before = svc.side;
    // A flapping service in outage keeps its routes on the backup while the primary is down
    // too: switching between two broken targets would only add one more oscillation. With
    // the primary not down, customers go back to it rather than stay on a broken backup.
    let held = svc.flapping
        && to == State::Outage
        && side_before == Side::Backup
        && svc.failover_condition(p);
    let side_after = if held {
        Side::Backup
    } else {
        svc.side_for(p, to)
    };
    if from == to && side_before == side_after {
        return;
    }
    let detected_in = match cause {
        Cause::PrimaryDown => svc.detection(&p.primary, now),
        Cause::BackupDown => svc.detection(&p.backup, now),
        _ => None,
    };
    let grounds = evidence::grounds(svc, p, to);
    let involves = |s: State| from == s || to == s;
    let announce = side_before != side_after
        || involves(State::Outage)
        || involves(State::Maintenance)
        || involves(State::Drill);
    out.push(Action::Record {
        transition: Transition {
            service: svc.id.clone(),
            from,
            to,
            cause,
            at: now,
            actor: actor.to_string(),
            reason: reason.to_string(),
            evidence: evidence::lines(&grounds),
            public_message: None,
        },
        announce,
        detected_in,
        grounds,
    });
    if side_before != side_after {
        out.push(Action::SwitchRoutes { to: side_after });
        if side_after == Side::Backup && actor == "system" && to == State::FailedOver {
            svc.auto_failovers.push(now);
        }
    }
    svc.state = to;
    svc.since = now;
    svc.side = side_after;
}

/// Puts `ground` first among the grounds (and evidence lines) of the first transition
/// recorded in `out` from index `first` on: the window or hold that ended is what the
/// transition rests on before the checks' verdicts that chose its state.
pub(super) fn cite(out: &mut [Action], first: usize, ground: Ground) {
    let record = out
        .get_mut(first..)
        .and_then(|new| new.iter_mut().find(|a| matches!(a, Action::Record { .. })));
    if let Some(Action::Record {
        transition,
        grounds,
        ..
    }) = record
    {
        transition.evidence.insert(0, ground.line());
        grounds.insert(0, ground);
    }
}

/// The planned window occurrence that ends at `end`, as a ground.
fn window_ground(p: &Policy, end: Timestamp, reason: &str, event: &str) -> Ground {
    let duration = p
        .windows
        .iter()
        .find(|w| w.reason == reason && w.active_until(Timestamp(end.0 - 1)) == Some(end))
        .map_or(0, |w| w.duration.as_millis() as i64);
    Ground::Window {
        reason: reason.to_owned(),
        start: Timestamp(end.0 - duration),
        end,
        event: event.to_owned(),
    }
}

/// What ended a maintenance at `end`: the planned window whose occurrence ended then, else
/// the end an operator gave.
fn ended_window(p: &Policy, end: Timestamp) -> Ground {
    match p
        .windows
        .iter()
        .find(|w| w.active_until(Timestamp(end.0 - 1)) == Some(end))
    {
        Some(w) => window_ground(p, end, &w.reason, "ended"),
        None => Ground::HoldEnded {
            hold: "maintenance".to_owned(),
            id: None,
            until: end,
        },
    }
}
