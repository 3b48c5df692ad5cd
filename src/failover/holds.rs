//! What a service holds beyond its state (pins, maintenance, a drill, flap history): what a
//! restart keeps, which holds change behaviour now (`holds_in_force`), and when each ends
//! by itself (`deadlines`).

use super::drills::DrillRun;
use super::machine::{Policy, Service};
use super::rules::active_window;
use super::{Side, State};
use crate::clock::Timestamp;
use crate::config::Failback;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An operator's hold on one side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub side: Side,
    pub until: Option<Timestamp>,
    pub actor: String,
    pub reason: String,
}

/// What a service holds beyond its state: pins, maintenance, a drill, flap history. Stored
/// with the state so that a restart does not silently drop an operator's hold or a drill's
/// deadline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Holds {
    #[serde(default)]
    pub pin: Option<Pin>,
    #[serde(default)]
    pub maintenance_until: Option<Timestamp>,
    #[serde(default)]
    pub drill: Option<DrillRun>,
    #[serde(default)]
    pub auto_failovers: Vec<Timestamp>,
    #[serde(default)]
    pub flapping: bool,
    #[serde(default)]
    pub window_skipped_until: Option<Timestamp>,
}

/// A hold that changes what the automatic rules do, as `switchboard status`, the service API,
/// the metrics and on-call's e-mail show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldInForce {
    pub kind: HoldKind,
    /// When it ends by itself; `None` while only an operator can end it.
    pub until: Option<Timestamp>,
    /// What it does, in a few words, e.g. `automatic failback held: 2 automatic failovers within 1h`.
    pub detail: String,
}

/// The holds that change behaviour. (A drill is shown as the drill itself.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldKind {
    /// Flap damping holds the backup: automatic failback waits until the flap window clears.
    Flapping,
    /// An operator pinned the routes to one side.
    Pin,
    /// Maintenance: the automatic rules pause.
    Maintenance,
    /// Recovering: failback waits for `recovery_hold` of primary health, or for an operator.
    RecoveryHold,
}

impl HoldKind {
    pub const ALL: [HoldKind; 4] = [
        HoldKind::Flapping,
        HoldKind::Maintenance,
        HoldKind::Pin,
        HoldKind::RecoveryHold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Flapping => "flapping",
            HoldKind::Pin => "pin",
            HoldKind::Maintenance => "maintenance",
            HoldKind::RecoveryHold => "recovery_hold",
        }
    }
}

impl HoldInForce {
    /// One line for people: `flapping: automatic failback held ... until 2026-...Z`.
    pub fn line(&self) -> String {
        let until = match self.until {
            Some(t) => format!("until {}", t.rfc3339()),
            None => "until an operator ends it".to_string(),
        };
        format!("{}: {} {until}", self.kind.as_str(), self.detail)
    }
}

impl Service {
    /// What must survive a restart besides the state.
    pub fn holds(&self) -> Holds {
        Holds {
            pin: self.pin.clone(),
            maintenance_until: self.maintenance_until,
            drill: self.drill.clone(),
            auto_failovers: self.auto_failovers.clone(),
            flapping: self.flapping,
            window_skipped_until: self.window_skipped_until,
        }
    }

    /// The holds in force at `now` that change what the automatic rules do, with their end
    /// times. Pure: it reads the decision state and changes nothing.
    pub fn holds_in_force(&self, p: &Policy, now: Timestamp) -> Vec<HoldInForce> {
        let mut holds = Vec::new();
        if let Some((clear_at, n)) = self.flap_clear_at(p, now).filter(|_| self.flapping) {
            holds.push(HoldInForce {
                kind: HoldKind::Flapping,
                until: Some(clear_at),
                detail: format!(
                    "automatic failback held: {n} automatic failover{} within {}",
                    if n == 1 { "" } else { "s" },
                    humantime::format_duration(p.flap_window)
                ),
            });
        }
        if let Some(pin) = &self.pin {
            holds.push(HoldInForce {
                kind: HoldKind::Pin,
                until: pin.until,
                detail: format!(
                    "routes pinned to the {} by {}: {}",
                    pin.side.as_str(),
                    pin.actor,
                    pin.reason
                ),
            });
        }
        if self.state == State::Maintenance {
            holds.push(HoldInForce {
                kind: HoldKind::Maintenance,
                until: self.maintenance_until,
                detail: format!(
                    "automatic rules paused, customers on the {}",
                    self.side.as_str()
                ),
            });
        }
        if self.state == State::Recovering {
            match (p.failback, self.primary_healthy_since) {
                (Failback::Manual, _) => holds.push(HoldInForce {
                    kind: HoldKind::RecoveryHold,
                    until: None,
                    detail: "failback = manual: customers stay on the backup".into(),
                }),
                (Failback::Auto, Some(since)) if now < since.plus(p.recovery_hold) => {
                    holds.push(HoldInForce {
                        kind: HoldKind::RecoveryHold,
                        until: Some(since.plus(p.recovery_hold)),
                        detail: format!(
                            "automatic failback once the primary has been healthy for {}",
                            humantime::format_duration(p.recovery_hold)
                        ),
                    })
                }
                _ => {}
            }
        }
        holds
    }

    /// Every instant at which something this service holds ends by itself, or a planned
    /// window begins, as far as known at `now`: the end of a drill, a pin, maintenance, the
    /// flap hold and the recovery hold, and the next start of a planned window. The shell
    /// keeps a wake-up pending at each (after a restore too), so that no hold outlives its
    /// end for want of an event. Sorted, without repeats. Pure: it changes nothing.
    pub fn deadlines(&self, p: &Policy, now: Timestamp) -> Vec<Timestamp> {
        let mut at: Vec<Timestamp> = [
            self.drill.as_ref().map(|d| d.until),
            self.pin.as_ref().and_then(|x| x.until),
            self.maintenance_until,
            // A flap hold whose window has already cleared is due now.
            self.flapping.then(|| {
                self.flap_clear_at(p, now)
                    .map_or(now, |(clear_at, _)| clear_at)
            }),
            self.primary_healthy_since
                .filter(|_| self.state == State::Recovering && p.failback == Failback::Auto)
                .map(|since| since.plus(p.recovery_hold)),
            active_window(p, now).map(|(end, _)| end),
            p.windows.iter().filter_map(|w| w.next_start(now)).min(),
        ]
        .into_iter()
        .flatten()
        .collect();
        at.sort();
        at.dedup();
        at
    }

    /// While `max_failovers` or more automatic failovers fall in the flap window ending at
    /// `now`: when enough of them will have left it for the hold to end, and how many there are.
    pub(super) fn flap_clear_at(&self, p: &Policy, now: Timestamp) -> Option<(Timestamp, usize)> {
        let max = p.max_failovers as usize;
        let window_start = now.as_millis() - p.flap_window.as_millis() as i64;
        let recent: Vec<Timestamp> = self
            .auto_failovers
            .iter()
            .copied()
            .filter(|t| t.as_millis() > window_start)
            .collect();
        if max == 0 || recent.len() < max {
            return None;
        }
        let clear_at = recent[recent.len() - max]
            .plus(p.flap_window)
            .plus(Duration::from_millis(1));
        Some((clear_at, recent.len()))
    }

    /// Puts back what `holds` saved; the routes side follows the restored pin or drill.
    pub fn restore(&mut self, p: &Policy, holds: Holds) {
        self.pin = holds.pin;
        self.maintenance_until = holds.maintenance_until;
        self.drill = holds.drill;
        self.auto_failovers = holds.auto_failovers;
        self.flapping = holds.flapping;
        self.window_skipped_until = holds.window_skipped_until;
        self.side = self.side_for(p, self.state);
    }
}
