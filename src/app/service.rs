//! One service as the core holds it (spec, policy, machine, side, each check's health) and the one projection of it that the snapshot and the control API both show.
//!
//! `ServiceRuntime::view` is the per-service view: the status snapshot publishes it as it is,
//! and `ServiceRuntime::detail` hands the same view to `api::core::ServiceDetail::from_view`
//! with what only operators see (thresholds, holds), so the status page and the control API
//! cannot disagree about a state, a health or a last outcome.

use crate::api::core::{
    CheckExtras, DetailExtras, DrillHold, HoldLine, HoldUntil, HoldsDetail, MaintenanceDetail,
    PinDetail, ServiceDetail,
};
use crate::clock::Timestamp;
use crate::config::ServiceSpec;
use crate::failover::window::{Schedule, Window};
use crate::failover::{self, Holds, Policy, Side, State};
use crate::health::CheckHealth;
use crate::store::{ScheduledWindow, Store, StoreError};
use crate::view::{CheckView, RouteView, ServiceView};
use std::sync::Arc;
use tracing::{error, info};

pub(super) struct CheckRuntime {
    pub(super) health: CheckHealth,
    /// The last outcome's one-line summary and start, for the status page; the outcome itself
    /// is not kept (at 10,000 checks it would be the daemon's largest memory cost).
    pub(super) last: Option<(String, Timestamp)>,
    /// The last outcome was judged with `health::corroborated` thresholds (a vendor the
    /// service corroborates with declared an outage).
    pub(super) corroborated: bool,
    /// The verdict the failover machine last heard for this check: this node's own on a
    /// single node, the vantages' quorum in a cluster (`cluster::votes`).
    pub(super) decided: Option<crate::health::Health>,
}

impl CheckRuntime {
    /// The thresholds in force for this check: its own, or corroborated ones.
    pub(super) fn thresholds(&self, spec: &crate::config::CheckSpec) -> crate::health::Thresholds {
        if self.corroborated {
            crate::health::corroborated(spec.thresholds())
        } else {
            spec.thresholds()
        }
    }

    pub(super) fn new(now: Timestamp) -> Self {
        CheckRuntime {
            health: CheckHealth::new(now),
            last: None,
            corroborated: false,
            decided: None,
        }
    }
}

pub(super) struct ServiceRuntime {
    pub(super) spec: Arc<ServiceSpec>,
    /// The holds last written to the store, to write only changes.
    pub(super) saved_holds: Holds,
    pub(super) policy: Policy,
    pub(super) machine: failover::Service,
    pub(super) side: Side,
    pub(super) cause: String,
    pub(super) created_at: Timestamp,
    pub(super) checks: Vec<CheckRuntime>,
}

impl ServiceRuntime {
    /// The service as the store remembers it (state, holds), or fresh if it is new.
    pub(super) fn load(
        spec: &Arc<ServiceSpec>,
        store: &Store,
        now: Timestamp,
    ) -> Result<ServiceRuntime, StoreError> {
        let rec = store.ensure_service(&spec.id, now)?;
        if rec.state != State::Operational {
            info!(
                "{}: restored state {} (since {}); routes stay on {}",
                spec.name,
                rec.state,
                rec.since,
                rec.state.routes_side().as_str()
            );
        }
        ServiceRuntime::restore(spec, rec, store, now)
    }

    /// The service as a cluster follower's replica holds it, without writing: a service the
    /// leader has not stored yet is shown operational.
    pub(super) fn from_replica(
        spec: &Arc<ServiceSpec>,
        store: &Store,
        now: Timestamp,
    ) -> Result<ServiceRuntime, StoreError> {
        let rec = store
            .service(&spec.id)?
            .unwrap_or(crate::store::ServiceRecord {
                id: spec.id.clone(),
                state: State::Operational,
                since: now,
                cause: "startup".into(),
                created_at: now,
            });
        ServiceRuntime::restore(spec, rec, store, now)
    }

    fn restore(
        spec: &Arc<ServiceSpec>,
        rec: crate::store::ServiceRecord,
        store: &Store,
        now: Timestamp,
    ) -> Result<ServiceRuntime, StoreError> {
        let policy = policy_for(spec, store, now)?;
        let mut machine = failover::Service::new(&spec.id, rec.state, rec.since);
        if let Some(json) = store.holds(&spec.id)? {
            match serde_json::from_str::<Holds>(&json) {
                Ok(holds) => machine.restore(&policy, holds),
                // Unreadable holds are dropped loudly rather than stopping the daemon.
                Err(e) => error!(
                    "{}: stored holds are unreadable and dropped: {e}",
                    spec.name
                ),
            }
        }
        Ok(ServiceRuntime {
            saved_holds: machine.holds(),
            side: machine.side,
            policy,
            machine,
            cause: rec.cause.clone(),
            created_at: rec.created_at,
            checks: spec.checks.iter().map(|_| CheckRuntime::new(now)).collect(),
            spec: spec.clone(),
        })
    }

    /// The holds in force at `now`, one line each, for on-call's messages.
    pub(super) fn hold_lines(&self, now: Timestamp) -> Vec<String> {
        self.machine
            .holds_in_force(&self.policy, now)
            .iter()
            .map(failover::HoldInForce::line)
            .collect()
    }

    /// The service as the status snapshot shows it: the one projection of its state, which
    /// the control API's `detail` shows too.
    pub(super) fn view(&self) -> ServiceView {
        ServiceView {
            id: self.spec.id.clone(),
            name: self.spec.name.clone(),
            state: self.machine.state,
            since: self.machine.since,
            cause: self.cause.clone(),
            created_at: self.created_at,
            checks: self
                .spec
                .checks
                .iter()
                .zip(&self.checks)
                .map(|(c, rt)| CheckView {
                    name: c.name.clone(),
                    role: c.role,
                    target: c.target(),
                    health: rt.health.health,
                    last_outcome: rt.last.as_ref().map(|(s, _)| s.clone()),
                    last_probe_at: rt.last.as_ref().map(|(_, t)| *t),
                })
                .collect(),
            routes: route_views(&self.spec, self.side),
            maintenance_until: self.machine.maintenance_until,
        }
    }

    /// The service as the control API shows it: `view` with the operator's extras.
    pub(super) fn detail(&self) -> ServiceDetail {
        ServiceDetail::from_view(self.view(), self.extras())
    }

    /// What the control API shows beyond `view`: settings, flags, thresholds and holds.
    fn extras(&self) -> DetailExtras {
        let m = &self.machine;
        let in_force = m.holds_in_force(&self.policy, Timestamp::now());
        let hold = |kind: failover::HoldKind| {
            in_force.iter().find(|h| h.kind == kind).map(|h| HoldUntil {
                until: h.until.map(Timestamp::rfc3339),
                detail: h.detail.clone(),
            })
        };
        DetailExtras {
            side: self.side,
            failback: match self.spec.failback {
                crate::config::Failback::Auto => "auto",
                crate::config::Failback::Manual => "manual",
            },
            flapping: m.flapping,
            runbook: self.spec.runbook.clone(),
            checks: self
                .spec
                .checks
                .iter()
                .zip(&self.checks)
                .map(|(c, rt)| CheckExtras {
                    failure_threshold: c.failure_threshold,
                    effective_failure_threshold: rt.health.failure_threshold(rt.thresholds(c)),
                    confirmation: c.confirmation,
                })
                .collect(),
            holds: HoldsDetail {
                pin: m.pin.as_ref().map(|p| PinDetail {
                    side: p.side,
                    until: p.until.map(Timestamp::rfc3339),
                    actor: p.actor.clone(),
                    reason: p.reason.clone(),
                }),
                maintenance: (m.state == State::Maintenance).then(|| MaintenanceDetail {
                    until: m.maintenance_until.map(Timestamp::rfc3339),
                }),
                drill: m.drill.as_ref().map(|d| DrillHold {
                    id: d.id.clone(),
                    mode: if d.live { "live" } else { "dry_run" },
                    until: d.until.rfc3339(),
                }),
                flapping: hold(failover::HoldKind::Flapping),
                recovery_hold: hold(failover::HoldKind::RecoveryHold),
                in_force: in_force
                    .iter()
                    .map(|h| HoldLine {
                        hold: h.kind.as_str(),
                        until: h.until.map(Timestamp::rfc3339),
                        detail: h.detail.clone(),
                    })
                    .collect(),
            },
        }
    }
}

/// The service's policy: its configuration plus the maintenance windows scheduled through
/// the API that have not ended yet.
pub(super) fn policy_for(
    spec: &ServiceSpec,
    store: &Store,
    now: Timestamp,
) -> Result<Policy, StoreError> {
    let mut policy = Policy::from_spec(spec);
    for w in store.scheduled_maintenance(&spec.id, now)? {
        policy.windows.push(scheduled_window(&w));
    }
    Ok(policy)
}

pub(super) fn scheduled_window(w: &ScheduledWindow) -> Window {
    Window {
        schedule: Schedule::Once(w.starts_at),
        duration: w.ends_at.since(w.starts_at),
        // The window's words are public (the status page and feeds list it): the operator's
        // public message or a neutral sentence. Their internal reason stays in the audit
        // record of the scheduling and in the store's row.
        reason: w
            .public_message
            .clone()
            .unwrap_or_else(|| SCHEDULED_MAINTENANCE_TEXT.to_owned()),
    }
}

/// What the status page says about a window scheduled without a `public_message`.
pub const SCHEDULED_MAINTENANCE_TEXT: &str = "Scheduled maintenance";

pub(super) fn side_target(r: &crate::config::RouteSpec, side: Side) -> &str {
    match side {
        Side::Primary => &r.primary,
        Side::Backup => &r.backup,
    }
}

pub(super) fn route_views(spec: &ServiceSpec, side: Side) -> Vec<RouteView> {
    spec.routes
        .iter()
        .map(|r| RouteView {
            id: r.id.clone(),
            service: spec.id.clone(),
            primary: r.primary.clone(),
            backup: r.backup.clone(),
            active: side,
        })
        .collect()
}
