//! The failover machine: its data, and `step`, the one entry point: check health, operator commands and time in; transitions, route switches and wake-ups out.
//!
//! Rules (design.md, each a property test in `tests/it/failover_properties.rs`):
//! - never switch automatically to a backup whose checks are down;
//! - each state change yields exactly one transition record;
//! - past `max_failovers` automatic failovers within `flap_window`, hold the backup (delay
//!   the automatic failback) and raise the flapping signal instead of oscillating;
//! - never leave customers on a primary that is down while the backup is up, unless an
//!   operator pin or maintenance holds the routes: damping delays failback, never failover;
//! - automatic failback only after the primary has been healthy for `recovery_hold`;
//! - a drill always ends (deadline or abort), and a real outage ends it at once: a check of
//!   the drilled service going down interrupts it and the real decision applies.
//!
//! This file holds the machine's data and its one entry point, `step`. The rules live beside
//! it, one concern a file: `rules.rs` the automatic rules (failover, failback, recovery hold,
//! flap damping, planned windows), `commands.rs` the operator commands and their `Rejected`
//! answers, `drills.rs` drills, `holds.rs` what a service holds and when each hold ends
//! (`holds_in_force`, `deadlines`), `reconfigure.rs` what a reload changes.

use super::drills::DrillRun;
use super::evidence::{Ground, Seen, Sighting};
use super::holds::Pin;
use super::window::Window;
use super::{commands, rules, Side, State, Transition};
use crate::clock::Timestamp;
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
    /// Automatic failovers allowed per `flap_window` before the backup is held; 0 = no limit.
    pub max_failovers: u32,
    pub flap_window: Duration,
    /// Where customers go during maintenance.
    pub maintenance_side: Side,
    /// Planned maintenance windows.
    pub windows: Vec<Window>,
}

impl Policy {
    pub fn from_spec(spec: &crate::config::ServiceSpec) -> Policy {
        Policy {
            failover_when: spec.failover_when,
            failback: spec.failback,
            recovery_hold: spec.recovery_hold,
            primary: spec.primary_checks().map(|c| c.name.clone()).collect(),
            backup: spec.backup_checks().map(|c| c.name.clone()).collect(),
            max_failovers: spec.max_failovers,
            flap_window: spec.flap_window,
            maintenance_side: spec.maintenance_side,
            windows: spec.maintenance.clone(),
        }
    }
}

/// Something that happened to a service.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A check's health changed (from `health`). `detail` is the last outcome's summary;
    /// `seen` where it was observed and the streak behind the verdict (the evidence an
    /// automatic transition cites).
    Health {
        check: String,
        health: Health,
        detail: String,
        seen: Seen,
    },
    /// Time passed; the shell sends this at the instants asked for by `Action::WakeAt`.
    Tick,
    Command(Command),
}

/// An operator's instruction. Authorisation happened before; the core only decides, and
/// answers `Action::Rejected` when the instruction does not fit the current state.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Switch to the backup now. Without `force` the backup's checks must not be down.
    /// The automatic rules apply afterwards (use `Pin` to hold the backup).
    Failover {
        actor: String,
        reason: String,
        force: bool,
    },
    /// Switch back to the primary now (ends `recovering` under `failback = "manual"`).
    Failback {
        actor: String,
        reason: String,
    },
    /// Hold the routes on `side` until `until` (or an `Unpin`), whatever the checks say.
    Pin {
        side: Side,
        until: Option<Timestamp>,
        actor: String,
        reason: String,
        force: bool,
    },
    Unpin {
        actor: String,
        reason: String,
    },
    /// Enter maintenance until `until` (or a `MaintenanceStop`): automatic rules pause.
    MaintenanceStart {
        until: Option<Timestamp>,
        actor: String,
        reason: String,
    },
    MaintenanceStop {
        actor: String,
        reason: String,
    },
    /// Start a drill that ends by itself at `until`. Live drills switch to the backup.
    DrillStart {
        id: String,
        live: bool,
        until: Timestamp,
        actor: String,
        reason: String,
    },
    DrillAbort {
        actor: String,
        reason: String,
    },
}

/// What the shell must do, in order. `Record` comes before the route switch it causes,
/// so the store holds the transition (and its announcements) before anything is executed.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Record {
        transition: Transition,
        /// Whether this transition is announced (one message per audience it concerns).
        announce: bool,
        /// From the first failing probe of the checks that caused it to this decision.
        detected_in: Option<Duration>,
        /// What it rests on: the checks' verdicts (with outcome, vantage, time and streak),
        /// the window that began or ended, the hold that ended. `transition.evidence` holds
        /// the same as lines; the shell writes these into the audit record.
        grounds: Vec<Ground>,
    },
    SwitchRoutes {
        to: Side,
    },
    /// Send an `Event::Tick` at (or after) this instant.
    WakeAt(Timestamp),
    /// The flapping signal turned on (backup held) or off.
    Flapping {
        on: bool,
    },
    /// A command that does not fit the current state; nothing changed.
    Rejected {
        reason: String,
    },
}

/// The decision state of one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub id: String,
    pub state: State,
    pub since: Timestamp,
    /// Which target of its routes customers are sent to.
    pub side: Side,
    /// Last known health per check; checks never reported are `Unknown`.
    pub health: BTreeMap<String, Health>,
    /// Each check's latest verdict as heard (outcome, vantage, time, streak), for evidence.
    pub observed: BTreeMap<String, Sighting>,
    /// When each currently failing check first failed (its streak's start).
    pub failing_since: BTreeMap<String, Timestamp>,
    /// Since when every primary check has been healthy, while recovering.
    pub primary_healthy_since: Option<Timestamp>,
    /// Automatic failovers within the last `flap_window`.
    pub auto_failovers: Vec<Timestamp>,
    /// The backup is held because of too many failovers.
    pub flapping: bool,
    pub pin: Option<Pin>,
    /// End of the maintenance in progress (`None` inside: until stopped).
    pub maintenance_until: Option<Timestamp>,
    pub drill: Option<DrillRun>,
    /// An operator ended the planned window that ends then: do not re-enter it.
    pub window_skipped_until: Option<Timestamp>,
    /// The next window start a wake-up was asked for.
    pub next_window_wake: Option<Timestamp>,
    /// The flap window's clearing a wake-up was asked for (while flapping).
    pub flap_wake: Option<Timestamp>,
}

/// Where the backup stands for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Backup {
    Up,
    Down,
    Unknown,
}

impl Service {
    /// A service starting fresh (operational, on primary) or restored from the store. A
    /// restored drill has lost its deadline, so it ends at the first event.
    pub fn new(id: &str, state: State, since: Timestamp) -> Service {
        Service {
            id: id.to_string(),
            state,
            since,
            side: state.routes_side(),
            health: BTreeMap::new(),
            observed: BTreeMap::new(),
            failing_since: BTreeMap::new(),
            primary_healthy_since: None,
            auto_failovers: Vec::new(),
            flapping: false,
            pin: None,
            maintenance_until: None,
            drill: None,
            window_skipped_until: None,
            next_window_wake: None,
            flap_wake: None,
        }
    }

    pub(super) fn health_of(&self, check: &str) -> Health {
        self.health.get(check).copied().unwrap_or(Health::Unknown)
    }

    pub(super) fn primary_down(&self, p: &Policy) -> usize {
        p.primary
            .iter()
            .filter(|c| self.health_of(c) == Health::Down)
            .count()
    }

    pub(super) fn primary_all_healthy(&self, p: &Policy) -> bool {
        !p.primary.is_empty()
            && p.primary
                .iter()
                .all(|c| self.health_of(c) == Health::Healthy)
    }

    pub(super) fn failover_condition(&self, p: &Policy) -> bool {
        let down = self.primary_down(p);
        match p.failover_when {
            FailoverWhen::Any => down >= 1,
            FailoverWhen::All => !p.primary.is_empty() && down == p.primary.len(),
            FailoverWhen::AtLeast(k) => down >= (k.max(1) as usize),
        }
    }

    /// The checks that are down, primary checks first, in configuration order.
    pub(super) fn down_checks<'a>(&self, p: &'a Policy) -> Vec<&'a str> {
        p.primary
            .iter()
            .chain(p.backup.iter())
            .filter(|c| self.health_of(c) == Health::Down)
            .map(String::as_str)
            .collect()
    }

    pub(super) fn backup(&self, p: &Policy) -> Backup {
        if p.backup.iter().any(|c| self.health_of(c) == Health::Down) {
            Backup::Down
        } else if p.backup.iter().all(|c| self.health_of(c).is_up()) {
            Backup::Up
        } else {
            Backup::Unknown
        }
    }

    /// How long ago the earliest of the given checks started failing.
    pub(super) fn detection(&self, checks: &[String], now: Timestamp) -> Option<Duration> {
        checks
            .iter()
            .filter_map(|c| self.failing_since.get(c))
            .min()
            .map(|first| now.since(*first))
    }

    /// The side customers go to in `state`, honouring a pin, maintenance and drill mode.
    pub(super) fn side_for(&self, p: &Policy, state: State) -> Side {
        if let Some(pin) = &self.pin {
            return pin.side;
        }
        match state {
            State::Maintenance => p.maintenance_side,
            State::Drill => match &self.drill {
                Some(d) if d.live => Side::Backup,
                _ => Side::Primary,
            },
            s => s.routes_side(),
        }
    }

    /// The state the checks call for when no hold applies (end of maintenance, drill, pin).
    pub(super) fn settled(&self, p: &Policy) -> State {
        if self.failover_condition(p) {
            match self.backup(p) {
                Backup::Up => State::FailedOver,
                Backup::Down => State::Outage,
                Backup::Unknown => State::Degraded,
            }
        } else if self.primary_down(p) > 0 {
            State::Degraded
        } else {
            State::Operational
        }
    }
}

/// Feeds one event at `now`; updates `svc` and returns the actions for the shell. The one
/// entry point of the machine: every change of a service's decision state goes through here.
///
/// The rules apply in this order:
/// 1. A health event first updates the check's verdict, its last detail and its failing
///    streak. A command goes to the operator rules alone (`commands.rs`, drills in
///    `drills.rs`): it changes the state or is answered with `Action::Rejected`, and no
///    automatic rule runs on it.
/// 2. After a health event or a tick, the automatic rules (`rules.rs`), first match wins:
///    a flap hold whose window cleared ends even under a drill, pin or maintenance; a pin
///    past its end is released; a drill ends on a real outage or at its deadline; maintenance
///    ends at its end; an operator's pin stops the rules here; a planned window beginning
///    enters maintenance; otherwise failover, failback and the recovery hold by state, with
///    flap damping holding the backup instead of failing back too often.
/// 3. Last, a wake-up is asked for at the next planned window's start.
pub fn step(svc: &mut Service, p: &Policy, event: &Event, now: Timestamp) -> Vec<Action> {
    let mut out = Vec::new();
    match event {
        Event::Health {
            check,
            health,
            detail,
            seen,
        } => {
            svc.health.insert(check.clone(), *health);
            svc.observe(check, *health, detail, seen, now);
            match health {
                Health::Suspect | Health::Down => {
                    svc.failing_since.entry(check.clone()).or_insert(now);
                }
                Health::Healthy | Health::Unknown => {
                    svc.failing_since.remove(check);
                }
            }
            rules::evaluate(svc, p, now, &mut out);
        }
        Event::Tick => rules::evaluate(svc, p, now, &mut out),
        Event::Command(cmd) => commands::command(svc, p, cmd, now, &mut out),
    }
    out
}
