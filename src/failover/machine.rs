//! The failover rules: check health, operator commands and time in; transitions, route switches and wake-ups out.
//!
//! Rules (design.md, each a property test in `tests/failover_properties.rs`):
//! - never switch automatically to a backup whose checks are down;
//! - each state change yields exactly one transition record;
//! - past `max_failovers` automatic failovers within `flap_window`, hold the backup (delay
//!   the automatic failback) and raise the flapping signal instead of oscillating;
//! - never leave customers on a primary that is down while the backup is up, unless an
//!   operator pin or maintenance holds the routes: damping delays failback, never failover;
//! - automatic failback only after the primary has been healthy for `recovery_hold`;
//! - a drill always ends (deadline or abort), and a real outage ends it at once: a check of
//!   the drilled service going down interrupts it and the real decision applies.

use super::window::Window;
use super::{Cause, Side, State, Transition};
use crate::clock::Timestamp;
use crate::config::{Failback, FailoverWhen};
use crate::health::Health;
use serde::{Deserialize, Serialize};
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

/// An operator's hold on one side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub side: Side,
    pub until: Option<Timestamp>,
    pub actor: String,
    pub reason: String,
}

/// The drill in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRun {
    pub id: String,
    pub live: bool,
    pub until: Timestamp,
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
    /// Last outcome summary per check, for evidence.
    pub detail: BTreeMap<String, String>,
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

/// Where the backup stands for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backup {
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
            detail: BTreeMap::new(),
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
    fn flap_clear_at(&self, p: &Policy, now: Timestamp) -> Option<(Timestamp, usize)> {
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

    /// A reload gave the service a new configuration (its new `Policy` is passed to `step`
    /// from now on). The verdicts of the checks named in `forget` (changed, added or removed)
    /// no longer describe anything probed: they are dropped, so each such check counts as
    /// never reported until its first outcome under the new definition. State, holds and flap
    /// history stay. The next planned window's wake-up is asked for again, since the new
    /// policy may plan other windows.
    pub fn reconfigure<'a>(&mut self, forget: impl IntoIterator<Item = &'a str>) {
        for check in forget {
            self.forget_check(check);
        }
        self.next_window_wake = None;
    }

    /// Drops what the machine knows of one check: its health, its failing streak and its
    /// last outcome's detail.
    pub fn forget_check(&mut self, check: &str) {
        self.health.remove(check);
        self.failing_since.remove(check);
        self.detail.remove(check);
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

    /// The checks that are down, primary checks first, in configuration order.
    fn down_checks<'a>(&self, p: &'a Policy) -> Vec<&'a str> {
        p.primary
            .iter()
            .chain(p.backup.iter())
            .filter(|c| self.health_of(c) == Health::Down)
            .map(String::as_str)
            .collect()
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

    /// The side customers go to in `state`, honouring a pin, maintenance and drill mode.
    fn side_for(&self, p: &Policy, state: State) -> Side {
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
    fn settled(&self, p: &Policy) -> State {
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

fn reject(out: &mut Vec<Action>, reason: impl Into<String>) {
    out.push(Action::Rejected {
        reason: reason.into(),
    });
}

fn command(svc: &mut Service, p: &Policy, cmd: &Command, now: Timestamp, out: &mut Vec<Action>) {
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
            } else if *live && svc.backup(p) != Backup::Up {
                reject(
                    out,
                    "the backup is not verified healthy; a live drill would send customers to it",
                );
            } else {
                svc.drill = Some(DrillRun {
                    id: id.clone(),
                    live: *live,
                    until: *until,
                });
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
                out.push(Action::WakeAt(*until));
            }
        }
        Command::DrillAbort { actor, reason } => {
            if svc.state != State::Drill {
                reject(out, "no drill is running");
            } else {
                svc.drill = None;
                settle(svc, p, Cause::Operator, actor, reason, now, out);
            }
        }
    }
}

/// Leaves a hold (maintenance, drill, pin) for the state the checks call for.
fn settle(
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
fn active_window(p: &Policy, now: Timestamp) -> Option<(Timestamp, &str)> {
    p.windows
        .iter()
        .find_map(|w| w.active_until(now).map(|end| (end, w.reason.as_str())))
}

/// Applies the rules, then asks to be woken at the next planned window's start.
fn evaluate(svc: &mut Service, p: &Policy, now: Timestamp, out: &mut Vec<Action>) {
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
        svc.pin = None;
        settle(svc, p, Cause::Operator, sys, "pin expired", now, out);
    }
    match svc.state {
        State::Drill => {
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
                Some(d) if now >= d.until => {
                    (true, Cause::DrillDeadline, "drill deadline reached".into())
                }
                Some(_) => (false, Cause::DrillDeadline, String::new()),
            };
            if ended {
                svc.drill = None;
                settle(svc, p, cause, sys, &reason, now, out);
            }
            return;
        }
        State::Maintenance => {
            if svc.maintenance_until.is_some_and(|t| now >= t) {
                svc.maintenance_until = None;
                let reason = "maintenance window ended";
                settle(svc, p, Cause::MaintenanceEnded, sys, reason, now, out);
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
            transition(svc, p, State::Maintenance, c, sys, &reason, now, out);
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
            evidence: svc.evidence(p),
            public_message: None,
        },
        announce,
        detected_in,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            failover_when: FailoverWhen::Any,
            failback: Failback::Auto,
            recovery_hold: Duration::from_secs(60),
            primary: vec!["page".into(), "api".into()],
            backup: vec!["backup".into()],
            max_failovers: 0,
            flap_window: Duration::from_secs(3600),
            maintenance_side: Side::Backup,
            windows: Vec::new(),
        }
    }

    fn down(check: &str) -> Event {
        Event::Health {
            check: check.into(),
            health: Health::Down,
            detail: "HTTP 500".into(),
        }
    }

    #[test]
    fn reconfigure_forgets_only_the_named_verdicts_and_keeps_the_state() {
        let p = policy();
        let t0 = Timestamp::from_millis(1_000_000);
        let mut s = Service::new("svc", State::Operational, t0);
        step(&mut s, &p, &down("page"), t0);
        step(&mut s, &p, &down("api"), t0);
        let state = s.state;
        s.next_window_wake = Some(t0);
        s.reconfigure(["page"]);
        assert_eq!(s.health_of("page"), Health::Unknown, "forgotten");
        assert!(!s.failing_since.contains_key("page") && !s.detail.contains_key("page"));
        assert_eq!(s.health_of("api"), Health::Down, "kept");
        assert!(s.failing_since.contains_key("api"));
        assert_eq!(
            s.state, state,
            "the state is not the configuration's to change"
        );
        assert_eq!(
            s.next_window_wake, None,
            "the window wake is asked for again"
        );
    }
}
