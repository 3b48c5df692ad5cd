//! The failover state machine of one service: pure, deterministic, no I/O, no clock reads.
//!
//! `step(&Service, &Policy, &Event, now) -> Vec<Action>` mutates the service's decision state
//! and returns what the shell must do. The same events in give the same actions out.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The service's failover state (design.md, "Failover states").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Operational,
    Degraded,
    FailedOver,
    Recovering,
    Outage,
    Maintenance,
    Drill,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Operational,
        State::Degraded,
        State::FailedOver,
        State::Recovering,
        State::Outage,
        State::Maintenance,
        State::Drill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Operational => "operational",
            State::Degraded => "degraded",
            State::FailedOver => "failed_over",
            State::Recovering => "recovering",
            State::Outage => "outage",
            State::Maintenance => "maintenance",
            State::Drill => "drill",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The Statuspage v2 component status this state shows as.
    pub fn component_status(self) -> &'static str {
        match self {
            State::Operational | State::Drill => "operational",
            State::Degraded => "degraded_performance",
            State::FailedOver | State::Recovering => "partial_outage",
            State::Outage => "major_outage",
            State::Maintenance => "under_maintenance",
        }
    }

    /// Which side the routes point at in this state (drills and maintenance decided elsewhere).
    pub fn routes_side(self) -> Side {
        match self {
            State::FailedOver | State::Recovering | State::Drill => Side::Backup,
            _ => Side::Primary,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which target of its routes a service sends customers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Primary,
    Backup,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
        }
    }
}

/// Why a transition happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Primary checks went down and the failover condition was met.
    PrimaryDown,
    /// Primary checks became healthy again.
    PrimaryRecovered,
    /// The recovery hold elapsed with the primary healthy throughout.
    RecoveryHoldElapsed,
    /// Backup checks went down (or came back) while relevant.
    BackupDown,
    BackupRecovered,
    /// An operator command.
    Operator,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::PrimaryDown => "primary_down",
            Cause::PrimaryRecovered => "primary_recovered",
            Cause::RecoveryHoldElapsed => "recovery_hold_elapsed",
            Cause::BackupDown => "backup_down",
            Cause::BackupRecovered => "backup_recovered",
            Cause::Operator => "operator",
        }
    }
}

/// One change of state, as recorded and announced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub service: String,
    pub from: State,
    pub to: State,
    pub cause: Cause,
    pub at: Timestamp,
    /// `system` for automatic transitions, else the operator's token name.
    pub actor: String,
    pub reason: String,
    /// The check health changes behind it: one line per check, e.g. `portal-form: down (connect: connection refused)`.
    pub evidence: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The machine.
// ---------------------------------------------------------------------------------------------

use crate::config::{Failback, FailoverWhen};
use crate::health::Health;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a service's configuration says about failing over. Built from `ServiceSpec`.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub failover_when: FailoverWhen,
    pub failback: Failback,
    pub recovery_hold: Duration,
    /// Names of the primary checks.
    pub primary: Vec<String>,
    /// Names of the backup checks. With none, the backup is taken as usable (nothing to verify).
    pub backup: Vec<String>,
}

impl Policy {
    pub fn from_spec(spec: &crate::config::ServiceSpec) -> Policy {
        Policy {
            failover_when: spec.failover_when,
            failback: spec.failback,
            recovery_hold: spec.recovery_hold,
            primary: spec.primary_checks().map(|c| c.name.clone()).collect(),
            backup: spec.backup_checks().map(|c| c.name.clone()).collect(),
        }
    }
}

/// Something that happened to a service.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A check's health changed (from `health`). `detail` is the last outcome's summary.
    Health {
        check: String,
        health: Health,
        detail: String,
    },
    /// Time passed; the shell sends this at the instants asked for by `Action::WakeAt`.
    Tick,
    Command(Command),
}

/// An operator's instruction. Authorisation happened before; the core only decides.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Switch to the backup now. Without `force` the backup's checks must not be down.
    Failover {
        actor: String,
        reason: String,
        force: bool,
    },
    /// Switch back to the primary now (ends `recovering` under `failback = "manual"`).
    Failback { actor: String, reason: String },
}

/// What the shell must do, in order. `Record` comes before the route switch it causes,
/// so the store holds the transition (and its announcements) before anything is executed.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Record {
        transition: Transition,
        /// Whether this transition is announced (one message per audience).
        announce: bool,
        /// From the first failing probe of the checks that caused it to this decision.
        detected_in: Option<Duration>,
    },
    SwitchRoutes {
        to: Side,
    },
    /// Send an `Event::Tick` at (or after) this instant.
    WakeAt(Timestamp),
}

/// The decision state of one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub id: String,
    pub state: State,
    pub since: Timestamp,
    /// Last known health per check; checks never reported are `Unknown`.
    pub health: BTreeMap<String, Health>,
    /// Last outcome summary per check, for evidence.
    pub detail: BTreeMap<String, String>,
    /// When each currently failing check first failed (its streak's start).
    pub failing_since: BTreeMap<String, Timestamp>,
    /// Since when every primary check has been healthy, while recovering.
    pub primary_healthy_since: Option<Timestamp>,
}

/// Where the backup stands for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backup {
    Up,
    Down,
    Unknown,
}

impl Service {
    /// A service starting fresh (operational, on primary) or restored from the store.
    pub fn new(id: &str, state: State, since: Timestamp) -> Service {
        Service {
            id: id.to_string(),
            state,
            since,
            health: BTreeMap::new(),
            detail: BTreeMap::new(),
            failing_since: BTreeMap::new(),
            primary_healthy_since: None,
        }
    }

    fn health_of(&self, check: &str) -> Health {
        self.health.get(check).copied().unwrap_or(Health::Unknown)
    }

    fn primary_down(&self, p: &Policy) -> usize {
        p.primary
            .iter()
            .filter(|c| self.health_of(c) == Health::Down)
            .count()
    }

    fn primary_all_healthy(&self, p: &Policy) -> bool {
        !p.primary.is_empty()
            && p.primary
                .iter()
                .all(|c| self.health_of(c) == Health::Healthy)
    }

    fn failover_condition(&self, p: &Policy) -> bool {
        let down = self.primary_down(p);
        match p.failover_when {
            FailoverWhen::Any => down >= 1,
            FailoverWhen::All => !p.primary.is_empty() && down == p.primary.len(),
            FailoverWhen::AtLeast(k) => down >= (k.max(1) as usize),
        }
    }

    fn backup(&self, p: &Policy) -> Backup {
        if p.backup.iter().any(|c| self.health_of(c) == Health::Down) {
            Backup::Down
        } else if p.backup.iter().all(|c| self.health_of(c).is_up()) {
            Backup::Up
        } else {
            Backup::Unknown
        }
    }

    /// Evidence lines: every check that is not healthy, with its last outcome.
    fn evidence(&self, p: &Policy) -> Vec<String> {
        p.primary
            .iter()
            .chain(p.backup.iter())
            .filter_map(|c| {
                let h = self.health_of(c);
                (h != Health::Healthy).then(|| match self.detail.get(c) {
                    Some(d) => format!("{c}: {} ({d})", h.as_str()),
                    None => format!("{c}: {}", h.as_str()),
                })
            })
            .collect()
    }

    /// How long ago the earliest of the given checks started failing.
    fn detection(&self, checks: &[String], now: Timestamp) -> Option<Duration> {
        checks
            .iter()
            .filter_map(|c| self.failing_since.get(c))
            .min()
            .map(|first| now.since(*first))
    }
}

/// Feeds one event at `now`; updates `svc` and returns the actions for the shell.
pub fn step(svc: &mut Service, p: &Policy, event: &Event, now: Timestamp) -> Vec<Action> {
    let mut out = Vec::new();
    match event {
        Event::Health {
            check,
            health,
            detail,
        } => {
            svc.health.insert(check.clone(), *health);
            svc.detail.insert(check.clone(), detail.clone());
            match health {
                Health::Suspect | Health::Down => {
                    svc.failing_since.entry(check.clone()).or_insert(now);
                }
                Health::Healthy | Health::Unknown => {
                    svc.failing_since.remove(check);
                }
            }
            evaluate(svc, p, now, &mut out);
        }
        Event::Tick => evaluate(svc, p, now, &mut out),
        Event::Command(cmd) => command(svc, p, cmd, now, &mut out),
    }
    out
}

fn command(svc: &mut Service, p: &Policy, cmd: &Command, now: Timestamp, out: &mut Vec<Action>) {
    match cmd {
        Command::Failover {
            actor,
            reason,
            force,
        } => {
            let allowed = *force || svc.backup(p) != Backup::Down;
            if allowed && svc.state.routes_side() == Side::Primary {
                transition(
                    svc,
                    p,
                    State::FailedOver,
                    Cause::Operator,
                    actor,
                    reason,
                    now,
                    out,
                );
            }
        }
        Command::Failback { actor, reason } => {
            if svc.state.routes_side() == Side::Backup {
                svc.primary_healthy_since = None;
                transition(
                    svc,
                    p,
                    State::Operational,
                    Cause::Operator,
                    actor,
                    reason,
                    now,
                    out,
                );
                // The primary may still be down: let the rules speak at once.
                evaluate(svc, p, now, out);
            }
        }
    }
}

/// Applies the automatic rules to the current health picture.
fn evaluate(svc: &mut Service, p: &Policy, now: Timestamp, out: &mut Vec<Action>) {
    let sys = "system";
    match svc.state {
        State::Operational | State::Degraded => {
            if svc.failover_condition(p) {
                match svc.backup(p) {
                    Backup::Up => {
                        let reason = "primary down; backup healthy";
                        transition(
                            svc,
                            p,
                            State::FailedOver,
                            Cause::PrimaryDown,
                            sys,
                            reason,
                            now,
                            out,
                        )
                    }
                    Backup::Down => {
                        let reason = "primary down and backup down: nothing healthy to switch to";
                        transition(
                            svc,
                            p,
                            State::Outage,
                            Cause::PrimaryDown,
                            sys,
                            reason,
                            now,
                            out,
                        )
                    }
                    // Backup not probed yet: wait for its verdict rather than switch blind.
                    Backup::Unknown if svc.state == State::Operational => {
                        let reason = "primary down; backup not verified yet";
                        transition(
                            svc,
                            p,
                            State::Degraded,
                            Cause::PrimaryDown,
                            sys,
                            reason,
                            now,
                            out,
                        )
                    }
                    Backup::Unknown => {}
                }
            } else if svc.primary_down(p) > 0 {
                if svc.state == State::Operational {
                    let reason = "some primary checks down; failover condition not met";
                    transition(
                        svc,
                        p,
                        State::Degraded,
                        Cause::PrimaryDown,
                        sys,
                        reason,
                        now,
                        out,
                    );
                }
            } else if svc.state == State::Degraded {
                let reason = "primary checks back up";
                transition(
                    svc,
                    p,
                    State::Operational,
                    Cause::PrimaryRecovered,
                    sys,
                    reason,
                    now,
                    out,
                );
            }
        }
        State::FailedOver => {
            if svc.backup(p) == Backup::Down {
                let reason = "backup down while in use: nothing healthy to switch to";
                transition(
                    svc,
                    p,
                    State::Outage,
                    Cause::BackupDown,
                    sys,
                    reason,
                    now,
                    out,
                );
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
                transition(
                    svc,
                    p,
                    State::Recovering,
                    Cause::PrimaryRecovered,
                    sys,
                    &reason,
                    now,
                    out,
                );
                if p.failback == Failback::Auto {
                    out.push(Action::WakeAt(now.plus(p.recovery_hold)));
                }
            }
        }
        State::Recovering => {
            if svc.primary_down(p) > 0 {
                svc.primary_healthy_since = None;
                let reason = "primary down again during recovery hold";
                transition(
                    svc,
                    p,
                    State::FailedOver,
                    Cause::PrimaryDown,
                    sys,
                    reason,
                    now,
                    out,
                );
            } else if !svc.primary_all_healthy(p) {
                // A suspect primary check is not proof of health: the hold starts over.
                svc.primary_healthy_since = None;
            } else if svc.backup(p) == Backup::Down {
                svc.primary_healthy_since = None;
                let reason = "backup down while recovering; primary healthy";
                transition(
                    svc,
                    p,
                    State::Operational,
                    Cause::BackupDown,
                    sys,
                    reason,
                    now,
                    out,
                );
            } else {
                let since = *svc.primary_healthy_since.get_or_insert(now);
                let due = since.plus(p.recovery_hold);
                if p.failback == Failback::Auto {
                    if now >= due {
                        svc.primary_healthy_since = None;
                        let reason = format!(
                            "primary healthy for {}",
                            humantime::format_duration(p.recovery_hold)
                        );
                        transition(
                            svc,
                            p,
                            State::Operational,
                            Cause::RecoveryHoldElapsed,
                            sys,
                            &reason,
                            now,
                            out,
                        );
                    } else if since == now {
                        out.push(Action::WakeAt(due));
                    }
                }
            }
        }
        State::Outage => {
            if !svc.failover_condition(p) && svc.primary_down(p) == 0 {
                let reason = "primary checks back up";
                transition(
                    svc,
                    p,
                    State::Operational,
                    Cause::PrimaryRecovered,
                    sys,
                    reason,
                    now,
                    out,
                );
            } else if svc.failover_condition(p) && svc.backup(p) == Backup::Up {
                let reason = "backup healthy again; primary still down";
                transition(
                    svc,
                    p,
                    State::FailedOver,
                    Cause::BackupRecovered,
                    sys,
                    reason,
                    now,
                    out,
                );
            }
        }
        // Entered and left only by operator commands and drills (later issues).
        State::Maintenance | State::Drill => {}
    }
}

/// Records one transition and the route switch it implies.
#[allow(clippy::too_many_arguments)]
fn transition(
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
    if from == to {
        return;
    }
    let (side_before, side_after) = (from.routes_side(), to.routes_side());
    let detected_in = match cause {
        Cause::PrimaryDown => svc.detection(&p.primary, now),
        Cause::BackupDown => svc.detection(&p.backup, now),
        _ => None,
    };
    out.push(Action::Record {
        transition: Transition {
            service: svc.id.clone(),
            from,
            to,
            cause,
            at: now,
            actor: actor.to_string(),
            reason: reason.to_string(),
            evidence: svc.evidence(p),
        },
        announce: side_before != side_after || to == State::Outage || from == State::Outage,
        detected_in,
    });
    if side_before != side_after {
        out.push(Action::SwitchRoutes { to: side_after });
    }
    svc.state = to;
    svc.since = now;
}
