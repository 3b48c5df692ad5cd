//! The failover state machine of one service: pure, deterministic, no I/O, no clock reads.
//!
//! `step(&mut Service, &Policy, &Event, now) -> Vec<Action>` updates the service's decision
//! state and returns what the shell must do. The same events in give the same actions out.
//! This file holds the vocabulary; `machine.rs` holds the machine's data and `step`, and the
//! files beside it the rules, one concern each.

mod commands;
mod drills;
mod evidence;
mod holds;
mod machine;
mod reconfigure;
mod rules;
pub mod vendor;

/// Planned windows are configuration's language (`lang::window`); the old path stays.
pub use crate::lang::window;

/// `Side` is configuration vocabulary (`maintenance_route`), so it is defined there.
pub use crate::config::Side;
pub use drills::DrillRun;
pub use evidence::{Ground, Observation, Seen, Sighting};
pub use holds::{HoldInForce, HoldKind, Holds, Pin};
pub use machine::{step, Action, Command, Event, Policy, Service};

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The service's failover state (design.md, "Failover states"). The snake_case names are
/// stored, exported as metric labels and served by the API: serde and strum must agree.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
        self.into()
    }

    pub fn parse(s: &str) -> Option<State> {
        s.parse().ok()
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

/// Why a transition happened. The snake_case names are stored and exported as metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// A drill reached its deadline.
    DrillDeadline,
    /// A maintenance window ended.
    MaintenanceEnded,
    /// A maintenance window from the configuration began.
    MaintenanceScheduled,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A change of check health (as opposed to an operator, a deadline or a window).
    pub fn is_health(self) -> bool {
        matches!(
            self,
            Cause::PrimaryDown
                | Cause::PrimaryRecovered
                | Cause::RecoveryHoldElapsed
                | Cause::BackupDown
                | Cause::BackupRecovered
        )
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
    /// What customers may read about it, given by the operator whose command caused it.
    /// `reason` is internal (audit, on-call); public text is this or a template's, never the
    /// reason. Set by the shell on the records a command produced, not by the rules; absent
    /// from the JSON when unset, so records written before it existed read and hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_message: Option<String>,
}

impl Transition {
    /// A drill ended by a real change of health (a check went down) rather than by its
    /// deadline or an operator: the real decision applies and is announced as real.
    pub fn interrupts_drill(&self) -> bool {
        self.from == State::Drill && self.to != State::Drill && self.cause.is_health()
    }
}
