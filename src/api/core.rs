//! What the control API needs from the core: the `Core` trait the shell implements, and the data that crosses it.
//!
//! The API sits below the shell (`app`): it names what it asks of the core here, as a trait
//! of boxed futures (object-safe, so handlers hold an `Arc<dyn Core>` and tests can stand in
//! a fake), and the shell's `CoreHandle` implements it. Nothing here imports `app`, so the
//! server can be built, tested and documented without the daemon it serves.

use crate::audit::AuditRecord;
use crate::clock::Timestamp;
use crate::failover::{Command, Side, State};
use crate::store::{DrillRow, ScheduledWindow};
use crate::view::ServiceView;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future every `Core` method returns: boxed so the trait can be used as `dyn Core`.
pub type CoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The core task as the control API reaches it. Each call is one request answered by the
/// core, decided in order with outcomes and ticks; nothing here changes state by itself.
pub trait Core: Send + Sync + std::fmt::Debug {
    /// Runs an operator command on `service`. `what` and `params` describe the request for
    /// its audit record; `public_message` goes on the transitions it causes.
    fn command<'a>(
        &'a self,
        service: &'a str,
        command: Command,
        what: &'a str,
        params: serde_json::Value,
        public_message: Option<String>,
    ) -> CoreFuture<'a, Result<Applied, CommandError>>;

    /// Every service with its state, checks and holds.
    fn services(&self) -> CoreFuture<'_, Result<Vec<ServiceDetail>, CommandError>>;

    fn start_drill(&self, request: DrillRequest) -> CoreFuture<'_, Result<DrillRow, CommandError>>;

    fn abort_drill<'a>(
        &'a self,
        id: &'a str,
        actor: &'a str,
        reason: &'a str,
        public_message: Option<String>,
    ) -> CoreFuture<'a, Result<Applied, CommandError>>;

    fn schedule_maintenance(
        &self,
        window: ScheduledWindow,
    ) -> CoreFuture<'_, Result<i64, CommandError>>;

    /// Records `actor`'s review of the automatic transition in audit record `audit_id`.
    fn review<'a>(
        &'a self,
        audit_id: i64,
        actor: &'a str,
        note: &'a str,
    ) -> CoreFuture<'a, Result<AuditRecord, CommandError>>;

    /// Appends an operator action outside any service's machine to the audit chain; `None`
    /// when it could not be written (logged and counted by the core).
    fn audit<'a>(
        &'a self,
        actor: &'a str,
        reason: &'a str,
        detail: serde_json::Value,
    ) -> CoreFuture<'a, Option<i64>>;

    /// Re-reads the configuration; keeps the running one if the new one is invalid.
    fn reload<'a>(&'a self, actor: &'a str) -> CoreFuture<'a, Result<ReloadReport, ReloadError>>;
}

/// Why the core did not carry out a request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("no service named {0:?}")]
    UnknownService(String),
    #[error("no drill with id {0:?}")]
    UnknownDrill(String),
    #[error("{0}")]
    NotFound(String),
    /// The failover machine's answer: the command does not fit the current state.
    #[error("{0}")]
    Rejected(String),
    /// This node does not lead (cluster mode) or the daemon is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed; the detail is logged.
    #[error("{0}")]
    Store(String),
}

/// One transition a command caused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppliedTransition {
    /// Its id in the transitions table (absent if recording it failed).
    pub transition_id: Option<i64>,
    pub from: State,
    pub to: State,
    pub cause: &'static str,
    pub at: String,
}

/// What a command did: the service's state and side afterwards and the transitions recorded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Applied {
    pub service: String,
    pub state: State,
    pub side: Side,
    pub transitions: Vec<AppliedTransition>,
    /// The operator-action audit record of the command.
    pub audit_id: Option<i64>,
}

/// A drill to start.
#[derive(Clone, Debug)]
pub struct DrillRequest {
    pub service: String,
    pub live: bool,
    pub duration: Duration,
    pub actor: String,
    pub reason: String,
    pub ticket: Option<String>,
    /// Words for the audiences beyond on-call; `reason` stays internal.
    pub public_message: Option<String>,
    /// When the request arrived: the decision step is timed from here.
    pub received: Timestamp,
}

/// What a reload changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReloadReport {
    pub config_version: String,
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    /// Services whose settings or checks changed (state kept).
    pub services_changed: Vec<String>,
    /// Checks whose definition changed, were added or removed (their health starts over).
    pub checks_changed: Vec<String>,
    /// Settings that only take effect at the next start.
    pub restart_needed: Vec<String>,
}

/// A reload that kept the running configuration.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration is invalid; keeping the running one")]
    Invalid { diagnostics: Vec<String> },
    #[error("{0}")]
    Store(String),
}

/// A service as the control API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceDetail {
    pub id: String,
    pub name: String,
    pub state: State,
    pub since: String,
    pub cause: String,
    /// Which target of its routes customers are sent to now.
    pub side: Side,
    pub failback: &'static str,
    pub flapping: bool,
    pub runbook: Option<String>,
    pub checks: Vec<CheckDetail>,
    pub routes: Vec<RouteDetail>,
    pub holds: HoldsDetail,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckDetail {
    pub name: String,
    pub role: &'static str,
    pub target: String,
    pub health: &'static str,
    pub last_outcome: Option<String>,
    pub last_probe_at: Option<String>,
    /// The configured `failure_threshold`.
    pub failure_threshold: u32,
    /// The consecutive failures it needs to be down now (raised on a noisy target when adaptive).
    pub effective_failure_threshold: u32,
    pub confirmation: crate::config::Confirmation,
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteDetail {
    pub id: String,
    pub primary: String,
    pub backup: String,
    pub active: Side,
    pub active_target: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HoldsDetail {
    pub pin: Option<PinDetail>,
    pub maintenance: Option<MaintenanceDetail>,
    pub drill: Option<DrillHold>,
    /// Flap damping holds the backup: automatic failback waits until `until`.
    pub flapping: Option<HoldUntil>,
    /// Recovering: failback waits until `until`, or (`until` null) for an operator.
    pub recovery_hold: Option<HoldUntil>,
    /// Every hold that changes behaviour now (flapping, pin, maintenance, recovery hold).
    pub in_force: Vec<HoldLine>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HoldUntil {
    /// `None`: until an operator ends it.
    pub until: Option<String>,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HoldLine {
    /// `flapping`, `pin`, `maintenance` or `recovery_hold`.
    pub hold: &'static str,
    pub until: Option<String>,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PinDetail {
    pub side: Side,
    pub until: Option<String>,
    pub actor: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct MaintenanceDetail {
    /// `None`: until an operator stops it.
    pub until: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DrillHold {
    pub id: String,
    pub mode: &'static str,
    pub until: String,
}

/// What the control API shows of a service beyond its public view: settings, the machine's
/// flags and holds, and each check's thresholds (in the order of the view's checks).
#[derive(Clone, Debug)]
pub struct DetailExtras {
    pub side: Side,
    pub failback: &'static str,
    pub flapping: bool,
    pub runbook: Option<String>,
    pub checks: Vec<CheckExtras>,
    pub holds: HoldsDetail,
}

/// A check's thresholds, which the public view leaves out.
#[derive(Clone, Copy, Debug)]
pub struct CheckExtras {
    pub failure_threshold: u32,
    pub effective_failure_threshold: u32,
    pub confirmation: crate::config::Confirmation,
}

impl ServiceDetail {
    /// The control API's document of a service: the same `ServiceView` the status snapshot
    /// publishes (one projection of the core's state, so the two never disagree), with the
    /// operator's extras.
    pub fn from_view(view: ServiceView, extras: DetailExtras) -> ServiceDetail {
        ServiceDetail {
            id: view.id,
            name: view.name,
            state: view.state,
            since: view.since.rfc3339(),
            cause: view.cause,
            side: extras.side,
            failback: extras.failback,
            flapping: extras.flapping,
            runbook: extras.runbook,
            checks: view
                .checks
                .into_iter()
                .zip(extras.checks)
                .map(|(c, x)| CheckDetail {
                    name: c.name,
                    role: c.role.as_str(),
                    target: c.target,
                    health: c.health.as_str(),
                    last_outcome: c.last_outcome,
                    last_probe_at: c.last_probe_at.map(Timestamp::rfc3339),
                    failure_threshold: x.failure_threshold,
                    effective_failure_threshold: x.effective_failure_threshold,
                    confirmation: x.confirmation,
                })
                .collect(),
            routes: view
                .routes
                .into_iter()
                .map(|r| RouteDetail {
                    active_target: r.active_target().to_string(),
                    id: r.id,
                    primary: r.primary,
                    backup: r.backup,
                    active: r.active,
                })
                .collect(),
            holds: extras.holds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Confirmation, Role};
    use crate::health::Health;
    use crate::view::{CheckView, RouteView};

    fn view(at: Timestamp) -> ServiceView {
        ServiceView {
            id: "tickets".into(),
            name: "Ticket submission".into(),
            state: State::FailedOver,
            since: at,
            cause: "primary_down".into(),
            checks: vec![CheckView {
                name: "form".into(),
                role: Role::Primary,
                target: "http://127.0.0.1/form".into(),
                health: Health::Down,
                last_outcome: Some("HTTP 500".into()),
                last_probe_at: Some(at),
            }],
            routes: vec![RouteView {
                id: "submit".into(),
                service: "tickets".into(),
                primary: "http://127.0.0.1/form".into(),
                backup: "mailto:help@example.com".into(),
                active: Side::Backup,
            }],
            created_at: at,
            maintenance_until: None,
        }
    }

    fn extras() -> DetailExtras {
        DetailExtras {
            side: Side::Backup,
            failback: "auto",
            flapping: false,
            runbook: None,
            checks: vec![CheckExtras {
                failure_threshold: 2,
                effective_failure_threshold: 3,
                confirmation: Confirmation::Adaptive,
            }],
            holds: HoldsDetail {
                pin: None,
                maintenance: None,
                drill: None,
                flapping: None,
                recovery_hold: None,
                in_force: Vec::new(),
            },
        }
    }

    #[test]
    fn the_detail_shows_the_published_view_in_the_api_shape() {
        let at = Timestamp::from_millis(1_700_000_000_000);
        let v = serde_json::to_value(ServiceDetail::from_view(view(at), extras())).expect("json");
        assert_eq!(v["state"], "failed_over");
        assert_eq!(v["since"], at.rfc3339());
        let check = &v["checks"][0];
        assert_eq!(check["role"], "primary");
        assert_eq!(check["health"], "down");
        assert_eq!(check["last_outcome"], "HTTP 500");
        assert_eq!(check["last_probe_at"], at.rfc3339());
        assert_eq!(check["effective_failure_threshold"], 3);
        assert_eq!(check["confirmation"], "adaptive");
        let route = &v["routes"][0];
        assert_eq!(route["active"], "backup");
        assert_eq!(route["active_target"], "mailto:help@example.com");
        // The document's fields, in the order clients have always received them.
        let text =
            serde_json::to_string(&ServiceDetail::from_view(view(at), extras())).expect("json");
        let prefix = format!(
            r#"{{"id":"tickets","name":"Ticket submission","state":"failed_over","since":"{}","cause":"primary_down","side":"backup","failback":"auto","flapping":false,"runbook":null,"checks":[{{"name":"form","role":"primary","#,
            at.rfc3339()
        );
        assert!(text.starts_with(&prefix), "{text}");
        assert!(text.contains(r#"],"routes":[{"id":"submit","#), "{text}");
        assert!(text.ends_with(r#"}],"holds":{"pin":null,"maintenance":null,"drill":null,"flapping":null,"recovery_hold":null,"in_force":[]}}"#), "{text}");
    }
}
