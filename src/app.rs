//! The shell around the pure core: restores state, schedules probes, feeds outcomes to `health`
//! and `failover`, executes their actions (record, switch, announce) and serves HTTP.
//!
//! One core task owns all decision state and handles messages one at a time, so decisions are
//! serialised and the order of actions is the order the core returned them. Probe tasks only
//! probe and report; the HTTP side reads published snapshots, and operator commands, drills
//! and reloads reach the core as messages through a `CoreHandle` that answers each one.

use crate::announce::chat::Chat;
use crate::announce::email::Mailer;
use crate::announce::group::{self, Hold};
use crate::announce::outbox::{self, Delivery, GroupEvent, Grouping, Transports};
use crate::announce::statuspage_push::StatuspagePush;
use crate::announce::webhook::{self, Webhooks};
use crate::announce::{self, Audience, Channels, Kind, MessageContext, Templates};
use crate::api::{self, ApiState};
use crate::audit::NewAuditRecord;
use crate::clock::Timestamp;
use crate::cluster::{Coordinator, SingleNode};
use crate::config::{CheckSpec, Config, ServiceSpec};
use crate::failover::window::{Schedule, Window};
use crate::failover::{self, Action, Command, Event, Holds, Policy, Side, State, Transition};
use crate::health::{CheckHealth, Health};
use crate::history::{self, History};
use crate::incident::{RouteWords, ServiceWords};
use crate::metrics::Metrics;
use crate::probe::{self, Outcome};
use crate::store::{DrillRow, ScheduledWindow, Store, StoreError};
use crate::view::{target_display, Board, CheckView, RouteView, ServiceView, Snapshot};
use serde::Serialize;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

mod reload;
mod spill;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("storage {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: StoreError,
    },
    #[error("e-mail transport: {0}")]
    Email(String),
    #[error("spilled transitions: {0}")]
    Spill(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until `shutdown` turns true. `listener` overrides `[server] listen`
/// (the demo binds its own port). SIGHUP handling lives in the binary; it calls
/// `CoreHandle::reload` through `run_with`.
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    run_with(config, listener, shutdown, |_| {}).await
}

/// `run`, handing the core's `CoreHandle` to `on_ready` once the daemon serves (the binary
/// uses it to reload on SIGHUP).
pub async fn run_with(
    config: Config,
    listener: Option<TcpListener>,
    mut shutdown: watch::Receiver<bool>,
    on_ready: impl FnOnce(CoreHandle),
) -> Result<(), AppError> {
    let config = Arc::new(config);
    let store_err = |source| AppError::Store {
        path: config.storage.path.display().to_string(),
        source,
    };
    let store = Store::open(&config.storage.path).map_err(store_err)?;
    store.set_message_id_domain(&config.email.message_id_domain());
    // What a previous run could not record goes in first, so services start from it.
    spill::replay_at_start(&config, &store)?;
    let store = Arc::new(store);
    let mailer = Mailer::from_config(&config.email).map_err(|e| AppError::Email(e.to_string()))?;
    let templates = match &config.email.templates {
        Some(dir) => Templates::load(dir).map_err(|e| AppError::Email(e.to_string()))?,
        None => Templates::embedded(),
    };
    let transports = Arc::new(Transports {
        mailer,
        webhooks: Webhooks::new(config.services.iter().flat_map(|s| s.on_switch.iter())),
        statuspage: config
            .statuspage_push
            .clone()
            .map(|c| StatuspagePush::new(c, store.clone())),
        chat: config.chat.clone().map(Chat::new),
    });
    let metrics = Arc::new(Metrics::new());
    metrics.config_reload_configured();
    metrics.config_reload(true);
    metrics.auth_configured();
    export_announcement_series(&config, &metrics);

    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| AppError::Listen {
                addr: config.server.listen.to_string(),
                source,
            })?,
    };

    let now = Timestamp::now();
    let mut services = Vec::new();
    for spec in &config.services {
        services.push(ServiceRuntime::load(spec, &store, now).map_err(store_err)?);
    }

    // The status page's probe history, incidents and planned windows.
    let history = History::load(
        &store,
        config.services.iter().map(|s| s.id.clone()).collect(),
        now,
    )
    .map_err(|source| AppError::Store {
        path: config.storage.path.display().to_string(),
        source,
    })?;
    let history = Arc::new(history);
    let m = metrics.clone();
    let board = Arc::new(
        Board::new(store.clone(), history.clone(), Vec::new())
            .on_reload(move |open| m.incidents_open(open)),
    );
    configure_status_page(&store, &board, &config);
    if let Err(e) = board.reload_incidents() {
        error!("could not read incidents for the status page: {e}");
    }

    let (msg_tx, msg_rx) = mpsc::channel::<Msg>(1024);
    let pending = spill::PendingCount::default();
    let outbox_wake = Arc::new(Notify::new());
    let permits = Arc::new(Semaphore::new(config.server.max_concurrent_probes as usize));
    let mut core = Core {
        config: config.clone(),
        coordinator: Arc::new(SingleNode::from_host()),
        store: store.clone(),
        metrics: metrics.clone(),
        services,
        snapshot_tx: watch::Sender::new(Arc::new(empty_snapshot(&config))),
        outbox_wake: outbox_wake.clone(),
        msg_tx: msg_tx.clone(),
        generation: 0,
        probes_stop: watch::Sender::new(false),
        permits,
        shutdown: shutdown.clone(),
        history: history.clone(),
        board: board.clone(),
        unrecorded: std::collections::VecDeque::new(),
        retry_at: std::time::Instant::now(),
        retry_delay: RETRY_MIN,
        pending: pending.clone(),
        templates: Arc::new(templates),
        reloads: reload::Reloads::default(),
    };
    for s in &core.services {
        core.metrics_for_new_service(s);
    }
    restore_stored_series(&store, &metrics, &config);
    core.show_windows();
    core.publish();
    let snapshot_rx = core.snapshot_tx.subscribe();

    let mut tasks = JoinSet::new();

    // Announcements: delivered from the durable outbox, so nothing recorded is lost. Grouped
    // e-mail is composed there too, when its group comes due.
    let (delivery_tx, delivery_rx) = mpsc::unbounded_channel();
    let (group_tx, group_rx) = mpsc::unbounded_channel();
    match store.suppressed_parts() {
        // The counter carries on from what the store has recorded, across restarts.
        Ok(rows) => {
            for (audience, reason, n) in rows {
                metrics.announcements_suppressed(&audience, &reason, n);
            }
        }
        Err(e) => warn!("cannot count suppressed announcements: {e}"),
    }
    tasks.spawn(outbox::run_grouped(
        store.clone(),
        transports,
        outbox_wake.clone(),
        delivery_tx,
        shutdown.clone(),
        config.email.give_up_after,
        Grouping {
            templates: core.templates.clone(),
            events: group_tx,
        },
    ));
    tasks.spawn(report_grouping(group_rx, metrics.clone()));
    tasks.spawn(report_deliveries(
        delivery_rx,
        metrics.clone(),
        store.clone(),
    ));
    tasks.spawn(watch_reviews(
        store.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    // Deliver whatever a previous run recorded and did not send.
    outbox_wake.notify_one();
    // Probe history: written in batches, off the probe path. Incidents: reloaded for the page
    // after transitions, off the core task.
    tasks.spawn(history::run(history, store.clone(), shutdown.clone()));
    tasks.spawn(crate::view::reload_on_change(
        board.clone(),
        shutdown.clone(),
    ));

    // Probes.
    core.start_probes();

    // Drills that were running when the daemon stopped: their reports are finished from here.
    core.resume_drills();

    // HTTP.
    let ready = Arc::new(AtomicBool::new(false));
    let m = metrics.clone();
    let handle = CoreHandle { tx: msg_tx.clone() };
    let m_auth = metrics.clone();
    let auth = crate::api::auth::Auth::new(
        config.auth.tokens_file.clone(),
        Box::new(move |reason| m_auth.auth_failure(reason)),
    )
    .behind_proxies(
        config.server.trusted_proxies.clone(),
        config.server.client_ip_header.clone(),
    );
    let control = crate::api::control::Control {
        core: handle.clone(),
        store: store.clone(),
    };
    let api_state = ApiState::new(snapshot_rx, move || m.render(), ready.clone())
        .with_control(Arc::new(auth), control)
        .with_board(board.clone())
        .with_pending_transitions(pending);
    drop(msg_tx);
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // Descriptors are kept for the probes (one or two each), the store and the outbox; the
    // public listener gets a share of the rest, so no number of clients can starve a probe.
    let nofile = api::listener::raise_nofile();
    let reserved = u64::from(config.server.max_concurrent_probes) * 2 + 256;
    let limits = api::listener::Limits::for_descriptors(nofile, reserved);
    info!(
        "open-file limit {nofile}: HTTP listener capped at {} connections",
        limits.max_connections
    );
    let mut http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let stop = async move {
            let _ = http_shutdown.wait_for(|s| *s).await;
        };
        // On its own runtime, so public traffic cannot delay probes or the core.
        if let Err(e) = api::serve_isolated(listener, api_state, limits, stop).await {
            error!("HTTP server on {addr} failed: {e}");
        }
    });
    ready.store(true, Ordering::SeqCst);
    on_ready(handle);
    info!(
        "switchboard {} watching {} services ({} checks); config {}",
        env!("CARGO_PKG_VERSION"),
        config.services.len(),
        config.checks().count(),
        &config.version[..12.min(config.version.len())]
    );

    core.run(msg_rx, shutdown.clone()).await;
    core.drain_on_shutdown(config.storage.shutdown_grace).await;
    let _ = shutdown.wait_for(|s| *s).await;
    core.probes_stop.send_replace(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// A transition the store did not take yet, with what its commit writes (spilled at shutdown).
use crate::store::spill::Pending as Unrecorded;

/// How often the core looks again at services whose deadlines have passed (`Core::safety_tick`).
const SAFETY_TICK: Duration = Duration::from_secs(5);

/// The first and the longest wait between retries of unrecorded transitions.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Messages to the core task.
enum Msg {
    Outcome {
        /// The probe generation the loop belongs to; outcomes of an older one (before a
        /// reload) are dropped, since their indices may point at other checks now.
        generation: u64,
        service: usize,
        check: usize,
        outcome: Box<Outcome>,
        /// The core answers whether the check wants a confirmation re-probe.
        reply: oneshot::Sender<bool>,
    },
    Tick {
        service: String,
    },
    /// An operator command (`actor` and `reason` travel inside `command`).
    Command {
        service: String,
        command: Command,
        /// What the request asked for, for the audit record (`failover`, `pin`, ...).
        what: String,
        params: serde_json::Value,
        /// The command's `public_message`, put on the transitions it causes.
        public_message: Option<String>,
        reply: oneshot::Sender<Result<Applied, CommandError>>,
    },
    Inspect {
        reply: oneshot::Sender<Vec<ServiceDetail>>,
    },
    DrillStart {
        request: DrillRequest,
        reply: oneshot::Sender<Result<DrillRow, CommandError>>,
    },
    DrillAbort {
        id: String,
        actor: String,
        reason: String,
        public_message: Option<String>,
        reply: oneshot::Sender<Result<Applied, CommandError>>,
    },
    ScheduleMaintenance {
        window: ScheduledWindow,
        reply: oneshot::Sender<Result<i64, CommandError>>,
    },
    Reload {
        actor: String,
        reply: oneshot::Sender<Result<ReloadReport, ReloadError>>,
    },
    /// A reload prepared off the core (`reload`), ready to swap in.
    Reloaded(Result<Box<reload::Prepared>, ReloadError>),
    Review {
        audit_id: i64,
        actor: String,
        note: String,
        reply: oneshot::Sender<Result<crate::audit::AuditRecord, CommandError>>,
    },
    Audit {
        actor: String,
        reason: String,
        detail: serde_json::Value,
        reply: oneshot::Sender<Option<i64>>,
    },
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

/// How the HTTP side (and SIGHUP) talk to the core task. Each call is one message answered
/// by the core, so a command is decided in order with outcomes and ticks.
#[derive(Clone, Debug)]
pub struct CoreHandle {
    tx: mpsc::Sender<Msg>,
}

fn stopping() -> CommandError {
    CommandError::Unavailable("the daemon is shutting down".into())
}

impl CoreHandle {
    async fn ask<T>(&self, msg: Msg, rx: oneshot::Receiver<T>) -> Option<T> {
        self.tx.send(msg).await.ok()?;
        rx.await.ok()
    }

    /// Runs an operator command on `service`. `what` and `params` describe the request for
    /// its audit record.
    pub async fn command(
        &self,
        service: &str,
        command: Command,
        what: &str,
        params: serde_json::Value,
        public_message: Option<String>,
    ) -> Result<Applied, CommandError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Command {
            service: service.to_string(),
            command,
            what: what.to_string(),
            params,
            public_message,
            reply,
        };
        self.ask(msg, rx).await.unwrap_or_else(|| Err(stopping()))
    }

    /// Every service with its state, checks and holds.
    pub async fn services(&self) -> Result<Vec<ServiceDetail>, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::Inspect { reply }, rx)
            .await
            .ok_or_else(stopping)
    }

    pub async fn start_drill(&self, request: DrillRequest) -> Result<DrillRow, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::DrillStart { request, reply }, rx)
            .await
            .unwrap_or_else(|| Err(stopping()))
    }

    pub async fn abort_drill(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
        public_message: Option<String>,
    ) -> Result<Applied, CommandError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::DrillAbort {
            id: id.to_string(),
            actor: actor.to_string(),
            reason: reason.to_string(),
            public_message,
            reply,
        };
        self.ask(msg, rx).await.unwrap_or_else(|| Err(stopping()))
    }

    pub async fn schedule_maintenance(&self, window: ScheduledWindow) -> Result<i64, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::ScheduleMaintenance { window, reply }, rx)
            .await
            .unwrap_or_else(|| Err(stopping()))
    }

    /// Records `actor`'s review of the automatic transition in audit record `audit_id`.
    pub async fn review(
        &self,
        audit_id: i64,
        actor: &str,
        note: &str,
    ) -> Result<crate::audit::AuditRecord, CommandError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Review {
            audit_id,
            actor: actor.to_string(),
            note: note.to_string(),
            reply,
        };
        self.ask(msg, rx).await.unwrap_or_else(|| Err(stopping()))
    }

    /// Appends an operator action outside any service's machine to the audit chain; `None`
    /// when it could not be written (logged and counted by the core).
    pub async fn audit(&self, actor: &str, reason: &str, detail: serde_json::Value) -> Option<i64> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Audit {
            actor: actor.to_string(),
            reason: reason.to_string(),
            detail,
            reply,
        };
        self.ask(msg, rx).await.flatten()
    }

    /// Re-reads the configuration; keeps the running one if the new one is invalid.
    pub async fn reload(&self, actor: &str) -> Result<ReloadReport, ReloadError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reload {
            actor: actor.to_string(),
            reply,
        };
        self.ask(msg, rx)
            .await
            .unwrap_or_else(|| Err(ReloadError::Store("the daemon is shutting down".into())))
    }
}

struct CheckRuntime {
    health: CheckHealth,
    /// The last outcome's one-line summary and start, for the status page; the outcome itself
    /// is not kept (at 10,000 checks it would be the daemon's largest memory cost).
    last: Option<(String, Timestamp)>,
}

impl CheckRuntime {
    fn new(now: Timestamp) -> Self {
        CheckRuntime {
            health: CheckHealth::new(now),
            last: None,
        }
    }
}

struct ServiceRuntime {
    spec: Arc<ServiceSpec>,
    /// The holds last written to the store, to write only changes.
    saved_holds: Holds,
    policy: Policy,
    machine: failover::Service,
    side: Side,
    cause: String,
    created_at: Timestamp,
    checks: Vec<CheckRuntime>,
}

impl ServiceRuntime {
    /// The service as the store remembers it (state, holds), or fresh if it is new.
    fn load(
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
    fn hold_lines(&self, now: Timestamp) -> Vec<String> {
        self.machine
            .holds_in_force(&self.policy, now)
            .iter()
            .map(failover::HoldInForce::line)
            .collect()
    }

    fn detail(&self) -> ServiceDetail {
        let m = &self.machine;
        let in_force = m.holds_in_force(&self.policy, Timestamp::now());
        let hold = |kind: failover::HoldKind| {
            in_force.iter().find(|h| h.kind == kind).map(|h| HoldUntil {
                until: h.until.map(Timestamp::rfc3339),
                detail: h.detail.clone(),
            })
        };
        ServiceDetail {
            id: self.spec.id.clone(),
            name: self.spec.name.clone(),
            state: m.state,
            since: m.since.rfc3339(),
            cause: self.cause.clone(),
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
                .map(|(c, rt)| CheckDetail {
                    name: c.name.clone(),
                    role: c.role.as_str(),
                    target: c.target(),
                    health: rt.health.health.as_str(),
                    last_outcome: rt.last.as_ref().map(|(s, _)| s.clone()),
                    last_probe_at: rt.last.as_ref().map(|(_, t)| t.rfc3339()),
                    failure_threshold: c.failure_threshold,
                    effective_failure_threshold: rt.health.failure_threshold(c.thresholds()),
                    confirmation: c.confirmation,
                })
                .collect(),
            routes: self
                .spec
                .routes
                .iter()
                .map(|r| RouteDetail {
                    id: r.id.clone(),
                    primary: r.primary.clone(),
                    backup: r.backup.clone(),
                    active: self.side,
                    active_target: side_target(r, self.side).to_string(),
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
fn policy_for(spec: &ServiceSpec, store: &Store, now: Timestamp) -> Result<Policy, StoreError> {
    let mut policy = Policy::from_spec(spec);
    for w in store.scheduled_maintenance(&spec.id, now)? {
        policy.windows.push(scheduled_window(&w));
    }
    Ok(policy)
}

fn scheduled_window(w: &ScheduledWindow) -> Window {
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

struct Core {
    config: Arc<Config>,
    coordinator: Arc<dyn Coordinator>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    services: Vec<ServiceRuntime>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    outbox_wake: Arc<Notify>,
    msg_tx: mpsc::Sender<Msg>,
    /// Bumped by every reload that restarts the probe loops.
    generation: u64,
    /// Turned true to stop the probe loops of the current generation.
    probes_stop: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    /// Probe history for the status page (summed in memory; written by `history::run`).
    history: Arc<History>,
    /// Incidents for the status page, told after each recorded transition.
    board: Arc<Board>,
    /// Transitions whose commit failed (full disk, database locked), kept in order and
    /// retried with backoff so that neither they nor their announcements are lost.
    unrecorded: std::collections::VecDeque<Unrecorded>,
    /// When the next retry of `unrecorded` is due, and the delay after that.
    retry_at: std::time::Instant,
    retry_delay: Duration,
    /// `unrecorded.len()` for `/readyz` (see `spill::pending_changed`).
    pending: spill::PendingCount,
    /// Message templates, loaded once at start.
    templates: Arc<Templates>,
    /// The reload being prepared off the core and those waiting for it (`reload`).
    reloads: reload::Reloads,
}

/// What one step of a service's machine did.
#[derive(Default)]
struct Stepped {
    rejected: Option<String>,
    transitions: Vec<AppliedTransition>,
}

impl Core {
    async fn run(&mut self, mut rx: mpsc::Receiver<Msg>, mut shutdown: watch::Receiver<bool>) {
        // Outcomes change the page often; publish at most every 250 ms unless something switched.
        let mut publish = tokio::time::interval(Duration::from_millis(250));
        let mut dirty = false;
        let mut safety = tokio::time::interval(SAFETY_TICK);
        let mut clock_offset = 0.0;
        safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A first look at every service: schedules planned windows, ends a drill whose
        // deadline passed while the daemon was down, and wakes it again at the deadlines of
        // the holds it restored (drill, pin, maintenance), so none of them runs forever.
        let now = Timestamp::now();
        for si in 0..self.services.len() {
            self.on_event(si, Event::Tick, now);
            self.wake_for_holds(si, now);
        }
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Outcome { generation, service, check, outcome, reply }) => {
                        let confirm = generation == self.generation
                            && self.on_outcome(service, check, *outcome);
                        let _ = reply.send(confirm);
                        dirty = true;
                    }
                    Some(Msg::Tick { service }) => {
                        if let Some(si) = self.index(&service) {
                            self.on_event(si, Event::Tick, Timestamp::now());
                        }
                    }
                    Some(Msg::Command { service, command, what, params, public_message, reply }) => {
                        let _ = reply.send(self.on_command(&service, command, &what, params, public_message));
                    }
                    Some(Msg::Inspect { reply }) => {
                        let _ = reply.send(self.services.iter().map(ServiceRuntime::detail).collect());
                    }
                    Some(Msg::DrillStart { request, reply }) => {
                        let _ = reply.send(self.start_drill(request));
                    }
                    Some(Msg::DrillAbort { id, actor, reason, public_message, reply }) => {
                        let _ = reply.send(self.abort_drill(&id, actor, reason, public_message));
                    }
                    Some(Msg::ScheduleMaintenance { window, reply }) => {
                        let _ = reply.send(self.schedule_maintenance(window));
                    }
                    Some(Msg::Reload { actor, reply }) => self.reload(actor, reply),
                    Some(Msg::Reloaded(prepared)) => self.reloaded(prepared),
                    Some(Msg::Review { audit_id, actor, note, reply }) => {
                        let _ = reply.send(self.review(audit_id, &actor, &note));
                    }
                    Some(Msg::Audit { actor, reason, detail, reply }) => {
                        let _ = reply.send(self.audit_other(&actor, &reason, detail));
                    }
                    None => break,
                },
                _ = publish.tick() => {
                    if !self.unrecorded.is_empty() && std::time::Instant::now() >= self.retry_at {
                        self.retry_unrecorded();
                    }
                    if dirty { self.publish(); dirty = false; }
                },
                _ = safety.tick() => clock_offset = self.safety_tick(clock_offset),
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        // A reload still being prepared is not waited for; its callers hear that the daemon
        // is stopping, and the HTTP server is not kept open by a request waiting for it.
        self.abandon_reloads();
    }

    fn index(&self, service: &str) -> Option<usize> {
        self.services.iter().position(|s| s.spec.id == service)
    }

    /// Asks for a `Tick` at every deadline of the service's restored holds (`deadlines`: drill,
    /// pin, maintenance, flap window, recovery hold, planned windows).
    fn wake_for_holds(&self, si: usize, now: Timestamp) {
        let s = &self.services[si];
        for at in s.machine.deadlines(&s.policy, now) {
            self.wake_at(si, at);
        }
    }

    /// Sends a `Tick` once the daemon's clock has reached `at`. The wait is re-armed for what
    /// is left until the clock says the deadline has really passed, so a wake-up that comes
    /// early can never leave a hold in force with nothing to end it.
    fn wake_at(&self, si: usize, at: Timestamp) {
        let tx = self.msg_tx.clone();
        let service = self.services[si].spec.id.clone();
        tokio::spawn(async move {
            loop {
                let left = at.since(Timestamp::now());
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left).await;
            }
            let _ = tx.send(Msg::Tick { service }).await;
        });
    }

    /// The safety net under the wake-ups: every service with a deadline that has passed is
    /// looked at again. It also shows how far the system clock has been stepped away from
    /// the daemon's (`switchboard_clock_offset_seconds`, and a warning when it moves), given
    /// the offset it saw last time; returns the offset it sees now.
    fn safety_tick(&mut self, last_offset: f64) -> f64 {
        let offset = Timestamp::wall_offset_secs();
        self.metrics.clock_offset(offset);
        if (offset - last_offset).abs() >= 1.0 {
            warn!(
                "the system clock was stepped: it is now {offset:+.1} s from switchboard's clock, which holds and deadlines follow (it never jumps); timestamps keep this offset until the next start"
            );
        }
        let now = Timestamp::now();
        for si in 0..self.services.len() {
            let s = &self.services[si];
            if s.machine
                .deadlines(&s.policy, now)
                .first()
                .is_some_and(|t| *t <= now)
            {
                self.on_event(si, Event::Tick, now);
            }
        }
        offset
    }

    fn metrics_for_new_service(&self, s: &ServiceRuntime) {
        let m = &self.metrics;
        m.service_state(&s.spec.id, s.machine.state);
        m.state_since(&s.spec.id, s.machine.since);
        m.flapping(&s.spec.id, s.machine.flapping);
        m.holds(
            &s.spec.id,
            &s.machine.holds_in_force(&s.policy, Timestamp::now()),
        );
        m.drill_service_configured(&s.spec.id);
        m.detection_configured(&s.spec.id);
        for c in &s.spec.checks {
            m.check_configured(&s.spec.id, c);
        }
        for r in &s.spec.routes {
            m.route_targets(&s.spec.id, &r.id, &r.primary, &r.backup, s.side);
        }
    }

    /// Starts one probe loop per configured check, as a new generation: loops of the
    /// previous one are told to stop, and their outcomes are ignored from now on.
    fn start_probes(&mut self) {
        self.probes_stop.send_replace(true);
        self.generation += 1;
        self.probes_stop = watch::Sender::new(false);
        for (si, s) in self.config.services.iter().enumerate() {
            for ci in 0..s.checks.len() {
                tokio::spawn(supervised_probe_loop(
                    ProbeLoop {
                        generation: self.generation,
                        si,
                        ci,
                        config: self.config.clone(),
                        tx: self.msg_tx.clone(),
                        metrics: self.metrics.clone(),
                        permits: self.permits.clone(),
                    },
                    self.shutdown.clone(),
                    self.probes_stop.subscribe(),
                ));
            }
        }
    }

    /// Runs one operator command, audits it with the caller's name, and answers.
    fn on_command(
        &mut self,
        service: &str,
        command: Command,
        what: &str,
        params: serde_json::Value,
        public_message: Option<String>,
    ) -> Result<Applied, CommandError> {
        let si = self
            .index(service)
            .ok_or_else(|| CommandError::UnknownService(service.to_string()))?;
        if !self.coordinator.is_leader() {
            return Err(CommandError::Unavailable(
                "this node does not lead; send commands to the leader".into(),
            ));
        }
        let (actor, reason) = command_actor(&command);
        let now = Timestamp::now();
        let stepped =
            self.on_event_with(si, Event::Command(command), now, public_message.as_deref());
        let audit_id = self.audit_command(si, &actor, &reason, what, params, &stepped, now);
        match stepped.rejected {
            Some(r) => Err(CommandError::Rejected(r)),
            None => Ok(self.applied(si, stepped.transitions, audit_id)),
        }
    }

    fn applied(
        &self,
        si: usize,
        transitions: Vec<AppliedTransition>,
        audit_id: Option<i64>,
    ) -> Applied {
        let s = &self.services[si];
        Applied {
            service: s.spec.id.clone(),
            state: s.machine.state,
            side: s.side,
            transitions,
            audit_id,
        }
    }

    /// Appends the operator-action audit record of a command, accepted or rejected.
    #[allow(clippy::too_many_arguments)]
    fn audit_command(
        &self,
        si: usize,
        actor: &str,
        reason: &str,
        what: &str,
        params: serde_json::Value,
        stepped: &Stepped,
        now: Timestamp,
    ) -> Option<i64> {
        let detail = serde_json::json!({
            "command": what,
            "params": params,
            "result": if stepped.rejected.is_some() { "rejected" } else { "accepted" },
            "rejection": stepped.rejected,
            "transition_ids": stepped.transitions.iter().filter_map(|t| t.transition_id).collect::<Vec<_>>(),
        });
        self.audit_action(Some(&self.services[si].spec.id), actor, reason, detail, now)
    }

    /// Appends an operator-action record; a failure is logged and counted, not hidden.
    fn audit_action(
        &self,
        service: Option<&str>,
        actor: &str,
        reason: &str,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Option<i64> {
        let rec = NewAuditRecord {
            kind: crate::audit::KIND_OPERATOR_ACTION.to_string(),
            at: now,
            actor: actor.to_string(),
            service: service.map(str::to_string),
            reason: reason.to_string(),
            config_version: self.config.version.clone(),
            node: self.coordinator.node().to_owned(),
            detail,
        };
        let store = self.store.clone();
        match tokio::task::block_in_place(|| store.append_audit(&rec)) {
            Ok(r) => {
                self.metrics
                    .audit_recorded(crate::audit::KIND_OPERATOR_ACTION);
                Some(r.id)
            }
            Err(e) => {
                self.metrics.store_error("append_audit");
                error!("could not audit an operator action by {actor}: {e}");
                None
            }
        }
    }

    fn review(
        &self,
        audit_id: i64,
        actor: &str,
        note: &str,
    ) -> Result<crate::audit::AuditRecord, CommandError> {
        use crate::store::ReviewError;
        let now = Timestamp::now();
        let draft = crate::audit::AuditRecord {
            id: 0,
            kind: crate::store::KIND_REVIEW.to_string(),
            at: now,
            node: self.coordinator.node().to_owned(),
            actor: actor.to_string(),
            service: None,
            from: None,
            to: None,
            cause: None,
            reason: note.to_string(),
            evidence: Vec::new(),
            routes_before: Default::default(),
            routes_after: Default::default(),
            config_version: self.config.version.clone(),
            transition_id: None,
            detail: serde_json::json!({ "reviews": audit_id }),
            prev_hash: String::new(),
            hash: String::new(),
        };
        let store = self.store.clone();
        let res = tokio::task::block_in_place(|| {
            let r = store.review(audit_id, actor, note, &draft)?;
            Ok::<_, ReviewError>((r, store.pending_reviews()?))
        });
        match res {
            Ok((rec, (n, oldest))) => {
                self.metrics.audit_recorded(crate::store::KIND_REVIEW);
                let age = oldest.map(|t| now.since(t).as_secs_f64()).unwrap_or(0.0);
                self.metrics.reviews(n, age);
                info!("audit record {audit_id} reviewed by {actor}: {note}");
                Ok(rec)
            }
            Err(ReviewError::NotFound(id)) => Err(CommandError::NotFound(format!(
                "no audit record with id {id}"
            ))),
            Err(e @ (ReviewError::NotReviewable(_) | ReviewError::AlreadyReviewed { .. })) => {
                Err(CommandError::Rejected(e.to_string()))
            }
            Err(ReviewError::Store(e)) => {
                self.metrics.store_error("review");
                Err(CommandError::Store(e.to_string()))
            }
        }
    }

    fn start_drill(&mut self, req: DrillRequest) -> Result<DrillRow, CommandError> {
        let si = self
            .index(&req.service)
            .ok_or_else(|| CommandError::UnknownService(req.service.clone()))?;
        if !self.coordinator.is_leader() {
            return Err(CommandError::Unavailable(
                "this node does not lead; send drills to the leader".into(),
            ));
        }
        let now = Timestamp::now();
        let id = crate::drill::new_id(now);
        let until = now.plus(req.duration);
        let command = Command::DrillStart {
            id: id.clone(),
            live: req.live,
            until,
            actor: req.actor.clone(),
            reason: req.reason.clone(),
        };
        let stepped = self.on_event_with(
            si,
            Event::Command(command),
            now,
            req.public_message.as_deref(),
        );
        let switched_at = Timestamp::now();
        let mode = if req.live { "live" } else { "dry_run" };
        let params = serde_json::json!({
            "drill": id, "mode": mode, "duration": humantime::format_duration(req.duration).to_string(),
            "ticket": req.ticket,
            "public_message": req.public_message,
        });
        self.audit_command(
            si,
            &req.actor,
            &req.reason,
            "drill_start",
            params,
            &stepped,
            now,
        );
        if let Some(r) = stepped.rejected {
            return Err(CommandError::Rejected(r));
        }
        let svc = &self.services[si];
        let transition_id = stepped
            .transitions
            .iter()
            .find(|t| t.to == State::Drill)
            .and_then(|t| t.transition_id);
        let report = crate::drill::Report::started(crate::drill::Started {
            id: &id,
            service: &svc.spec.id,
            live: req.live,
            actor: &req.actor,
            reason: &req.reason,
            ticket: req.ticket.as_deref(),
            received: req.received,
            decided: switched_at,
            switched: switched_at,
            deadline: until,
            targets: svc.spec.drill_targets,
            on_backup: svc.side == Side::Backup,
        });
        let row = report.row();
        let store = self.store.clone();
        if let Err(e) = tokio::task::block_in_place(|| store.insert_drill(&row)) {
            self.metrics.store_error("insert_drill");
            error!("drill {id}: could not store its report: {e}");
        }
        info!(
            "{}: {mode} drill {id} started by {} until {until}: {}",
            svc.spec.name, req.actor, req.reason
        );
        tokio::spawn(crate::drill::monitor(
            self.drill_context(si, transition_id),
            report,
        ));
        Ok(row)
    }

    fn drill_context(&self, si: usize, transition_id: Option<i64>) -> crate::drill::Context {
        crate::drill::Context {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            snapshot: self.snapshot_tx.subscribe(),
            spec: self.services[si].spec.clone(),
            transition_id,
            node: self.coordinator.node().to_owned(),
            config_version: self.config.version.clone(),
        }
    }

    /// Finishes the reports of drills that were running when the daemon last stopped.
    fn resume_drills(&self) {
        let store = self.store.clone();
        let running = match tokio::task::block_in_place(|| store.running_drills()) {
            Ok(r) => r,
            Err(e) => {
                error!("cannot read running drills: {e}");
                return;
            }
        };
        for row in running {
            let report = match crate::drill::Report::from_row(&row) {
                Some(r) => r,
                None => {
                    error!(
                        "drill {}: stored report unreadable; marking it failed",
                        row.id
                    );
                    let _ =
                        store.update_drill(&row.id, "fail", Some(Timestamp::now()), &row.report);
                    continue;
                }
            };
            match self.index(&row.service) {
                Some(si) => {
                    tokio::spawn(crate::drill::resume(self.drill_context(si, None), report));
                }
                None => {
                    let mut report = report;
                    report.interrupt("the service is no longer configured");
                    let _ = store.update_drill(
                        &row.id,
                        report.status.as_str(),
                        report.ended_at_ts(),
                        &report.json(),
                    );
                }
            }
        }
    }

    fn abort_drill(
        &mut self,
        id: &str,
        actor: String,
        reason: String,
        public_message: Option<String>,
    ) -> Result<Applied, CommandError> {
        let si = self
            .services
            .iter()
            .position(|s| s.machine.drill.as_ref().is_some_and(|d| d.id == id));
        let Some(si) = si else {
            let store = self.store.clone();
            return match tokio::task::block_in_place(|| store.drill(id)) {
                Ok(Some(row)) => Err(CommandError::Rejected(format!(
                    "drill {id} is no longer running ({})",
                    row.status
                ))),
                Ok(None) => Err(CommandError::UnknownDrill(id.to_string())),
                Err(e) => Err(CommandError::Store(e.to_string())),
            };
        };
        let service = self.services[si].spec.id.clone();
        let command = Command::DrillAbort {
            actor: actor.clone(),
            reason: reason.clone(),
        };
        self.on_command(
            &service,
            command,
            "drill_abort",
            serde_json::json!({ "drill": id, "public_message": public_message }),
            public_message,
        )
    }

    /// A service removed from the configuration is no longer watched: its open incident is
    /// resolved with an update saying so, rather than left open on the status page forever.
    fn resolve_incidents_of_removed(&self, removed: &[String], actor: &str) {
        if removed.is_empty() {
            return;
        }
        let store = self.store.clone();
        // `incidents(0)`: every unresolved incident (and no resolved ones).
        let open = match tokio::task::block_in_place(|| store.incidents(0)) {
            Ok(all) => all,
            Err(e) => {
                self.metrics.store_error("incidents");
                error!("could not read incidents of removed services: {e}");
                return;
            }
        };
        for inc in open
            .iter()
            .filter(|i| i.is_open() && removed.contains(&i.service))
        {
            let update = crate::store::NewIncidentUpdate {
                status: crate::incident::IncidentStatus::Resolved,
                body: "This channel is no longer monitored here: it was removed from the \
                       configuration."
                    .to_string(),
                actor: actor.to_string(),
                at: Timestamp::now(),
            };
            match tokio::task::block_in_place(|| store.add_incident_update(&inc.public_id, &update))
            {
                Ok(_) => info!(
                    "{}: incident {} resolved: the service was removed from the configuration",
                    inc.service, inc.public_id
                ),
                Err(e) => {
                    self.metrics.store_error("add_incident_update");
                    error!(
                        "{}: could not resolve incident {} of the removed service: {e}",
                        inc.service, inc.public_id
                    );
                }
            }
        }
        self.board.changed();
    }

    /// Shows every service's planned windows (configured and scheduled through the API) on
    /// the status page.
    fn show_windows(&self) {
        for s in &self.services {
            self.board.set_windows(&s.spec.id, s.policy.windows.clone());
        }
    }

    /// Appends an operator action that does not go through a service's machine (an incident
    /// update) to the audit chain.
    fn audit_other(&self, actor: &str, reason: &str, detail: serde_json::Value) -> Option<i64> {
        self.audit_action(None, actor, reason, detail, Timestamp::now())
    }

    fn schedule_maintenance(&mut self, w: ScheduledWindow) -> Result<i64, CommandError> {
        let si = self
            .index(&w.service)
            .ok_or_else(|| CommandError::UnknownService(w.service.clone()))?;
        let store = self.store.clone();
        let id = tokio::task::block_in_place(|| store.schedule_maintenance(&w)).map_err(|e| {
            self.metrics.store_error("schedule_maintenance");
            CommandError::Store(e.to_string())
        })?;
        let now = Timestamp::now();
        self.audit_action(
            Some(&w.service),
            &w.actor,
            &w.reason,
            serde_json::json!({
                "command": "maintenance_schedule",
                "window": id,
                "starts_at": w.starts_at.rfc3339(),
                "ends_at": w.ends_at.rfc3339(),
                "public_message": w.public_message,
            }),
            now,
        );
        self.services[si].policy.windows.push(scheduled_window(&w));
        self.reloads.maintenance_scheduled();
        self.show_windows();
        // The machine asks to be woken at the window's start (or enters it now).
        self.on_event(si, Event::Tick, now);
        Ok(id)
    }

    fn on_outcome(&mut self, si: usize, ci: usize, outcome: Outcome) -> bool {
        let now = Timestamp::now();
        let svc = &mut self.services[si];
        let spec = &svc.spec.checks[ci];
        if outcome
            .error
            .as_ref()
            .is_some_and(|e| e.class == crate::probe::ErrorClass::Local)
        {
            // Our own shortage (out of file descriptors, say) is not the target's failure:
            // the outcome counts as unknown, so it can neither confirm nor clear a failure.
            let why = outcome.error.as_ref().map_or("", |e| e.message.as_str());
            warn!(
                "{} ({} check of {}) not probed: this machine is short of resources: {why}",
                spec.name,
                spec.role.as_str(),
                svc.spec.name
            );
            self.metrics.probe_local_error(&svc.spec.id, &spec.name);
            return svc.checks[ci].health.wants_confirmation();
        }
        self.metrics.probe_finished(&svc.spec.id, spec, &outcome);
        if spec.role == crate::config::Role::Primary {
            self.history.record(
                &svc.spec.id,
                outcome.success,
                outcome.duration,
                outcome.started_at,
            );
        }
        let t = spec.thresholds();
        let rt = &mut svc.checks[ci];
        let threshold_before = rt.health.failure_threshold(t);
        let changed = rt.health.observe(t, outcome.success, now);
        let threshold = rt.health.failure_threshold(t);
        if threshold != threshold_before {
            self.metrics.check_failure_threshold(&spec.name, threshold);
            let noise = rt.health.noise().unwrap_or(0.0) * 100.0;
            info!(
                "{} ({} check of {}) now needs {threshold} failed probes in a row to be down (was {threshold_before}; failure_threshold {}, at most {}): {noise:.1} % of its recent probes failed while it was healthy (confirmation = \"adaptive\")",
                spec.name,
                spec.role.as_str(),
                svc.spec.name,
                spec.failure_threshold,
                t.max_failures()
            );
        }
        let confirm = rt.health.wants_confirmation();
        let health = rt.health.health;
        let summary = outcome.summary();
        rt.last = Some((summary.clone(), outcome.started_at));
        if let Some(prev) = changed {
            self.metrics
                .check_health(&svc.spec.id, &spec.name, health.as_str());
            let role = spec.role.as_str();
            let name = spec.name.clone();
            match health {
                Health::Suspect => warn!(
                    "{name} ({role} check of {}) is failing: {summary}; re-probing every {} to confirm",
                    svc.spec.name,
                    humantime::format_duration(spec.retry_interval)
                ),
                Health::Down => warn!(
                    "{name} ({role} check of {}) is down after {} failed probes in a row: {summary}",
                    svc.spec.name, rt.health.consecutive_failures
                ),
                Health::Healthy if prev != Health::Unknown => info!(
                    "{name} ({role} check of {}) is healthy again: {summary}",
                    svc.spec.name
                ),
                _ => {}
            }
            self.on_event(
                si,
                Event::Health {
                    check: name,
                    health,
                    detail: summary,
                },
                now,
            );
        }
        confirm
    }

    fn on_event(&mut self, si: usize, event: Event, now: Timestamp) -> Stepped {
        self.on_event_with(si, event, now, None)
    }

    /// `on_event` for an operator's command: `public_message` (theirs, if given) goes on every
    /// transition the command causes. The rules know nothing of it; it is words, not a decision.
    fn on_event_with(
        &mut self,
        si: usize,
        event: Event,
        now: Timestamp,
        public_message: Option<&str>,
    ) -> Stepped {
        let mut stepped = Stepped::default();
        let svc = &mut self.services[si];
        let mut actions = failover::step(&mut svc.machine, &svc.policy, &event, now);
        if let Some(m) = public_message {
            for a in &mut actions {
                if let Action::Record { transition, .. } = a {
                    transition.public_message = Some(m.to_owned());
                }
            }
        }
        self.metrics
            .holds(&svc.spec.id, &svc.machine.holds_in_force(&svc.policy, now));
        let holds = svc.machine.holds();
        if holds != svc.saved_holds {
            let store = self.store.clone();
            let id = svc.spec.id.clone();
            let saved = serde_json::to_string(&holds)
                .map_err(|e| e.to_string())
                .and_then(|json| {
                    tokio::task::block_in_place(|| store.set_holds(&id, &json, now))
                        .map_err(|e| e.to_string())
                });
            match saved {
                Ok(()) => svc.saved_holds = holds,
                Err(e) => error!(
                    "{}: could not save its holds (pin, maintenance, drill): {e}; a restart would lose them",
                    svc.spec.name
                ),
            }
        }
        if let Some(Action::Rejected { reason }) = actions
            .iter()
            .find(|a| matches!(a, Action::Rejected { .. }))
        {
            stepped.rejected = Some(reason.clone());
        }
        if actions.is_empty() {
            return stepped;
        }
        if !self.coordinator.is_leader() {
            // Followers keep deciding so they can take over with a warm state, but act on nothing.
            return stepped;
        }
        // The side after each record: the switch that follows it, if any.
        let sides: Vec<Side> = (0..actions.len())
            .map(|i| match actions.get(i + 1) {
                Some(Action::SwitchRoutes { to }) => *to,
                _ => self.services[si].side,
            })
            .collect();
        for (action, side_after) in actions.into_iter().zip(sides) {
            match action {
                Action::Record {
                    transition,
                    announce,
                    detected_in,
                } => {
                    let (from, to, cause, at) = (
                        transition.from,
                        transition.to,
                        transition.cause.as_str(),
                        transition.at.rfc3339(),
                    );
                    let transition_id =
                        self.record(si, transition, announce, detected_in, side_after);
                    stepped.transitions.push(AppliedTransition {
                        transition_id,
                        from,
                        to,
                        cause,
                        at,
                    });
                }
                Action::SwitchRoutes { to } => self.switch(si, to),
                Action::Flapping { on } => {
                    if on {
                        self.announce_flapping(si, now);
                    }
                    let svc = &self.services[si];
                    self.metrics.flapping(&svc.spec.id, on);
                    if on {
                        warn!(
                            "{}: failed over {} times within {}; holding the backup instead of switching back (flapping)",
                            svc.spec.name,
                            svc.policy.max_failovers,
                            humantime::format_duration(svc.policy.flap_window)
                        );
                    } else {
                        info!("{}: no longer flapping", svc.spec.name);
                    }
                }
                Action::Rejected { reason } => {
                    warn!(
                        "{}: command rejected: {reason}",
                        self.services[si].spec.name
                    );
                }
                Action::WakeAt(at) => self.wake_at(si, at),
            }
        }
        self.publish();
        stepped
    }

    /// Writes the transition and its announcements in one transaction, before any switch.
    fn record(
        &mut self,
        si: usize,
        t: Transition,
        announce: bool,
        detected_in: Option<Duration>,
        side_after: Side,
    ) -> Option<i64> {
        let svc = &mut self.services[si];
        let routes_after = route_views(&svc.spec, side_after);
        let announcements = if announce {
            let mut ctx = message_context(&self.config, &svc.spec, routes_after.clone());
            ctx.holds = svc.hold_lines(t.at);
            let channels = channels(&self.config, &svc.spec, &self.templates);
            // A drill interrupted by a real outage is also announced as the real change.
            Kind::all_of(&t)
                .into_iter()
                .flat_map(|kind| announce::plan_kind(kind, &t, &ctx, &channels))
                .collect()
        } else {
            Vec::new()
        };
        // E-mail to on-call and customers waits for its group; the rest goes at once.
        let (mut announcements, parts) = group::hold(
            announcements,
            &svc.spec.name,
            t.at,
            hold_for(&self.config, &svc.spec),
        );
        if side_after != svc.side {
            // The webhooks follow the switch, and are written in the same transaction.
            let name = &svc.spec.name;
            announcements.extend(webhook::plan(&svc.spec.on_switch, &t, name, &routes_after));
        }
        let store = self.store.clone();
        // The audit record also says where customers were sent before and after, and who decided.
        let routes_on = |side: Side| {
            svc.spec
                .routes
                .iter()
                .map(|r| (r.id.clone(), side_target(r, side).to_owned()))
                .collect()
        };
        let audit = crate::audit::AuditContext {
            config_version: self.config.version.clone(),
            node: self.coordinator.node().to_owned(),
            routes_before: routes_on(svc.side),
            routes_after: routes_on(side_after),
        };
        // While earlier transitions wait for a retry, this one queues behind them: the store
        // must see every service's transitions in order.
        let res = if self.unrecorded.is_empty() {
            tokio::task::block_in_place(|| {
                store.commit_transition_with(&t, audit.clone(), &announcements, &parts)
            })
        } else {
            Err(StoreError::Deferred)
        };
        let transition_id = match res {
            Ok(c) => {
                self.metrics.audit_recorded(crate::audit::KIND_TRANSITION);
                if !announcements.is_empty() || !parts.is_empty() {
                    self.outbox_wake.notify_one();
                }
                // The transition may have opened or moved an incident (same transaction).
                self.board.changed();
                Some(c.transition_id)
            }
            // The switch still happens (customers come first); the record and its
            // announcements are kept in memory and written as soon as the store takes them.
            Err(e) => {
                if !matches!(e, StoreError::Deferred) {
                    self.metrics.store_error("commit_transition");
                    error!(
                        "{}: could not record transition {} -> {}: {e}; keeping it and its {} announcement(s) in memory, retrying",
                        svc.spec.name, t.from, t.to, announcements.len()
                    );
                    self.retry_at = std::time::Instant::now() + RETRY_MIN;
                    self.retry_delay = RETRY_MIN;
                }
                self.unrecorded.push_back(Unrecorded {
                    t: t.clone(),
                    audit,
                    announcements,
                    parts,
                });
                spill::show_pending(&self.metrics, &self.pending, self.unrecorded.len());
                None
            }
        };
        self.metrics.transition(&t.service, t.from, t.to, t.cause);
        self.metrics.service_state(&t.service, t.to);
        self.metrics.state_since(&t.service, t.at);
        if let Some(d) = detected_in {
            self.metrics.detection_seconds(&t.service, d.as_secs_f64());
        }
        svc.cause = t.cause.as_str().to_string();
        let detected = detected_in
            .map(|d| format!(", {:.1}s after the first failing probe", d.as_secs_f64()))
            .unwrap_or_default();
        let by = if t.actor == "system" {
            String::new()
        } else {
            format!(" by {}", t.actor)
        };
        info!(
            "{}: {} -> {}{by}: {}{detected}",
            svc.spec.name, t.from, t.to, t.reason
        );
        transition_id
    }

    /// Writes the transitions whose commit failed, oldest first, stopping at the first that
    /// fails again (and backing off, doubling up to `RETRY_MAX`).
    fn retry_unrecorded(&mut self) {
        while let Some(u) = self.unrecorded.front() {
            let store = self.store.clone();
            let res = tokio::task::block_in_place(|| {
                store.commit_transition_with(&u.t, u.audit.clone(), &u.announcements, &u.parts)
            });
            match res {
                Ok(_) => {
                    info!(
                        "{}: recorded transition {} -> {} of {} on retry; its {} announcement(s) are queued",
                        u.t.service,
                        u.t.from,
                        u.t.to,
                        u.t.at.rfc3339(),
                        u.announcements.len() + u.parts.len()
                    );
                    self.metrics.audit_recorded(crate::audit::KIND_TRANSITION);
                    self.unrecorded.pop_front();
                    self.pending_changed();
                    self.outbox_wake.notify_one();
                    self.board.changed();
                }
                Err(e) => {
                    self.metrics.store_error("commit_transition");
                    self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
                    self.retry_at = std::time::Instant::now() + self.retry_delay;
                    warn!(
                        "{} transition(s) still unrecorded ({e}); retrying in {}s",
                        self.unrecorded.len(),
                        self.retry_delay.as_secs()
                    );
                    return;
                }
            }
        }
        self.retry_delay = RETRY_MIN;
    }

    /// Queues the on-call alert that the service is flapping: not a transition, so it is
    /// attached to the service's latest one (the failover it keeps repeating).
    fn announce_flapping(&mut self, si: usize, now: Timestamp) {
        let svc = &self.services[si];
        let state = svc.machine.state;
        let t = Transition {
            service: svc.spec.id.clone(),
            from: state,
            to: state,
            cause: serde_json::from_value(serde_json::Value::String(svc.cause.clone()))
                .unwrap_or(failover::Cause::PrimaryDown),
            at: now,
            actor: "system".to_owned(),
            reason: format!(
                "{} automatic failover{} within {}; holding the backup",
                svc.policy.max_failovers,
                if svc.policy.max_failovers == 1 {
                    ""
                } else {
                    "s"
                },
                humantime::format_duration(svc.policy.flap_window)
            ),
            evidence: svc
                .spec
                .checks
                .iter()
                .zip(&svc.checks)
                .filter(|(_, rt)| rt.health.health != Health::Healthy)
                .map(|(c, rt)| {
                    let last = rt
                        .last
                        .as_ref()
                        .map(|(s, _)| s.as_str())
                        .unwrap_or("not probed yet");
                    format!("{}: {} ({last})", c.name, rt.health.health.as_str())
                })
                .collect(),
            public_message: None,
        };
        let mut ctx = message_context(&self.config, &svc.spec, route_views(&svc.spec, svc.side));
        ctx.holds = svc.hold_lines(now);
        let channels = channels(&self.config, &svc.spec, &self.templates);
        let rows = announce::plan_kind(Kind::Flapping, &t, &ctx, &channels);
        if rows.is_empty() {
            return;
        }
        let (rows, parts) =
            group::hold(rows, &svc.spec.name, now, hold_for(&self.config, &svc.spec));
        let store = self.store.clone();
        let id = svc.spec.id.clone();
        match tokio::task::block_in_place(|| store.enqueue_notice_with(&id, now, &rows, &parts)) {
            Ok(_) => self.outbox_wake.notify_one(),
            Err(e) => {
                self.metrics.store_error("enqueue_notice");
                error!("{}: could not queue the flapping alert: {e}", svc.spec.name);
            }
        }
    }

    /// The only place routes change.
    fn switch(&mut self, si: usize, to: Side) {
        let svc = &mut self.services[si];
        svc.side = to;
        for r in &svc.spec.routes {
            let target = side_target(r, to);
            self.metrics.route_active(&svc.spec.id, &r.id, to, target);
            info!(
                "route {}: customers now go to the {} target {target} ({}/go/{})",
                r.id,
                to.as_str(),
                self.config.server.public_url,
                r.id
            );
        }
    }

    fn publish(&self) {
        let services = self
            .services
            .iter()
            .map(|s| ServiceView {
                id: s.spec.id.clone(),
                name: s.spec.name.clone(),
                state: s.machine.state,
                since: s.machine.since,
                cause: s.cause.clone(),
                created_at: s.created_at,
                checks: s
                    .spec
                    .checks
                    .iter()
                    .zip(&s.checks)
                    .map(|(c, rt)| CheckView {
                        name: c.name.clone(),
                        role: c.role,
                        target: c.target(),
                        health: rt.health.health,
                        last_outcome: rt.last.as_ref().map(|(s, _)| s.clone()),
                        last_probe_at: rt.last.as_ref().map(|(_, t)| *t),
                    })
                    .collect(),
                routes: route_views(&s.spec, s.side),
                maintenance_until: s.machine.maintenance_until,
            })
            .collect();
        let snap = Snapshot {
            services,
            ..empty_snapshot(&self.config)
        };
        self.snapshot_tx.send_replace(Arc::new(snap));
    }
}

/// What messages about a service may say beyond the transition.
fn message_context(config: &Config, spec: &ServiceSpec, routes: Vec<RouteView>) -> MessageContext {
    let public = &config.server.public_url;
    MessageContext {
        service_name: spec.name.clone(),
        routes,
        status_url: format!("{public}/status"),
        go_base_url: format!("{public}/go/"),
        // On-call get an absolute link; a relative path without `runbook_base_url` is named
        // as text (`switchboard check` warns about it) rather than as a link leading nowhere.
        runbook: spec.runbook.as_deref().map(|rb| {
            config
                .email
                .runbook_url(rb)
                .unwrap_or_else(|| format!("{rb} (no [email] runbook_base_url set)"))
        }),
        api_url: format!("{public}/api/v1"),
        holds: Vec::new(),
    }
}

/// How a service's e-mail waits: the group window, and its customer delay (its own, or
/// `[email] customer_delay`).
fn hold_for(config: &Config, spec: &ServiceSpec) -> Hold {
    Hold {
        window: config.email.group_window,
        customer_delay: spec.customer_delay.unwrap_or(config.email.customer_delay),
    }
}

/// The channels a service's announcements go to.
fn channels<'a>(
    config: &'a Config,
    spec: &'a ServiceSpec,
    templates: &'a Templates,
) -> Channels<'a> {
    Channels {
        audiences: &config.audiences,
        templates,
        statuspage_component: config
            .statuspage_push
            .as_ref()
            .and(spec.statuspage_component.as_deref()),
        chat: config.chat.is_some(),
    }
}

/// Exports the announcement series of every configured channel at zero.
fn export_announcement_series(config: &Config, metrics: &Metrics) {
    let pairs_for = |audience: Audience| -> Vec<(&'static str, &'static str)> {
        Kind::ALL
            .iter()
            .filter(|k| k.audiences().contains(&audience))
            .map(|k| (audience.as_str(), k.as_str()))
            .collect()
    };
    let mut email = Vec::new();
    for a in Audience::ALL {
        if !a.recipients(&config.audiences).is_empty() {
            email.extend(pairs_for(a));
            // Several changes in one message (`group_window`); drill mail is never grouped.
            if a != Audience::Drill && !config.email.group_window.is_zero() {
                email.push((a.as_str(), crate::store::KIND_GROUPED));
            }
            if a == Audience::Customers {
                metrics.announcements_suppressed(a.as_str(), group::UNDONE, 0);
                metrics.announcements_suppressed(a.as_str(), group::SUPERSEDED, 0);
            }
        }
    }
    metrics.announcement_channel("email", &email);
    if config.chat.is_some() {
        let mut chat = pairs_for(Audience::Oncall);
        chat.extend(pairs_for(Audience::Drill));
        metrics.announcement_channel("chat", &chat);
    }
    if config.statuspage_push.is_some() {
        let public: Vec<_> = pairs_for(Audience::Customers)
            .into_iter()
            .map(|(_, k)| ("public", k))
            .collect();
        metrics.announcement_channel("statuspage", &public);
    }
    if config.services.iter().any(|s| !s.on_switch.is_empty()) {
        metrics.announcement_channel("webhook", &[]);
    }
}

fn empty_snapshot(config: &Config) -> Snapshot {
    Snapshot {
        title: config.status_page.title.clone(),
        public_url: config.server.public_url.clone(),
        updated_at: Timestamp::now(),
        services: Vec::new(),
    }
}

/// Tells the status page's parts what the configuration says: the names and route targets
/// incidents are worded with, and each service's planned maintenance windows. Called at
/// start, and again after a configuration reload.
pub fn configure_status_page(store: &Store, board: &Board, config: &Config) {
    store.describe_services(service_words(config));
    for s in &config.services {
        board.set_windows(&s.id, s.maintenance.clone());
    }
}

/// What customers call each service and its routes, for the words of incidents.
fn service_words(config: &Config) -> std::collections::HashMap<String, ServiceWords> {
    config
        .services
        .iter()
        .map(|s| {
            let routes = s
                .routes
                .iter()
                .map(|r| RouteWords {
                    primary: target_display(&r.primary).to_owned(),
                    backup: target_display(&r.backup).to_owned(),
                })
                .collect();
            let words = ServiceWords {
                name: s.name.clone(),
                routes,
            };
            (s.id.clone(), words)
        })
        .collect()
}

fn side_target(r: &crate::config::RouteSpec, side: Side) -> &str {
    match side {
        Side::Primary => &r.primary,
        Side::Backup => &r.backup,
    }
}

fn route_views(spec: &ServiceSpec, side: Side) -> Vec<RouteView> {
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

/// Spreads checks over their interval so that many checks do not fire together.
fn first_delay(check: &CheckSpec) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    check.name.hash(&mut h);
    let ms = check.interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// What a probe loop needs: which check (by position in `config`, valid for its generation).
#[derive(Clone)]
struct ProbeLoop {
    generation: u64,
    si: usize,
    ci: usize,
    config: Arc<Config>,
    tx: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
}

/// Runs `probe_loop`, starting it again (after a second, counted and logged) if it panics,
/// so a bug in one probe never silently stops a check from being probed.
async fn supervised_probe_loop(
    p: ProbeLoop,
    shutdown: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    let spec = &p.config.services[p.si];
    let (service, check) = (spec.id.clone(), spec.checks[p.ci].name.clone());
    let metrics = p.metrics.clone();
    restart_on_panic(
        || probe_loop(p.clone(), shutdown.clone(), stop.clone()),
        || {
            error!(service, check, "probe loop panicked; restarting it in 1s");
            metrics.probe_loop_restarted(&service, &check);
        },
    )
    .await;
}

/// Runs the future `make` builds until it finishes without panicking; after each panic calls
/// `on_panic`, waits a second (a loop that always panics must not spin) and starts again.
async fn restart_on_panic<F, Fut>(make: F, on_panic: impl Fn())
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make()).await {
            Err(e) if e.is_panic() => {
                on_panic();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return,
        }
    }
}

/// Probes one check until shutdown or until its generation is stopped by a reload: at its
/// interval, or at `retry_interval` while the core wants confirmation. Each probe is bounded
/// by the check's timeout inside `probe::run`.
async fn probe_loop(
    p: ProbeLoop,
    mut shutdown: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let ProbeLoop {
        generation,
        si,
        ci,
        config,
        tx,
        metrics,
        permits,
    } = p;
    // Shared, not cloned: ten thousand checks would otherwise hold ten thousand copies.
    let check = &config.services[si].checks[ci];
    let mut due = tokio::time::Instant::now() + first_delay(check);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = shutdown.wait_for(|s| *s) => return,
            _ = stop.wait_for(|s| *s) => return,
        }
        // Waiting for a permit counts as schedule lag: that is what the limit costs.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = shutdown.wait_for(|s| *s) => return,
            _ = stop.wait_for(|s| *s) => return,
        };
        let started = tokio::time::Instant::now();
        metrics.schedule_lag(started.saturating_duration_since(due).as_secs_f64());
        // Boxed: the probe's state (connections, TLS, cookie jar) is allocated only while it
        // runs. Inline, every sleeping loop's task would keep room for the largest probe kind
        // all the time, which at 10,000 checks is tens of MiB of resident memory.
        let outcome = tokio::select! {
            o = Box::pin(probe::run(check)) => o,
            _ = shutdown.wait_for(|s| *s) => return,
            _ = stop.wait_for(|s| *s) => return,
        };
        drop(permit);
        let (reply, confirm) = oneshot::channel();
        let msg = Msg::Outcome {
            generation,
            service: si,
            check: ci,
            outcome: Box::new(outcome),
            reply,
        };
        if tx.send(msg).await.is_err() {
            return;
        }
        let confirm = confirm.await.unwrap_or(false);
        // Confirmation re-probes follow at `retry_interval`; otherwise keep the cadence from the
        // planned start so checks stay spread, but never schedule in the past.
        let now = tokio::time::Instant::now();
        due = if confirm {
            (started + check.retry_interval).max(now)
        } else {
            (due + check.interval).max(now)
        };
    }
}

/// Rebuilds the series that count stored facts (drills, transitions, announcements, audit
/// records) and reads the gauges the store answers (pending reviews, the outbox backlog),
/// before the first scrape: after a restart, alerts see what they saw before it.
fn restore_stored_series(store: &Store, metrics: &Metrics, config: &Config) {
    let services: Vec<&str> = config.services.iter().map(|s| s.id.as_str()).collect();
    match store.metric_facts() {
        Ok(facts) => metrics.restore(&facts, &services),
        Err(e) => {
            metrics.store_error("metric_facts");
            error!("cannot rebuild metrics from the store; counters start at zero: {e}");
        }
    }
    if let Ok((n, oldest)) = store.pending_reviews() {
        metrics.reviews(n, age_of(oldest));
    }
    if let Ok((backlog, oldest)) = store.outbox_backlog() {
        metrics.outbox(backlog, age_of(oldest));
    }
}

/// Seconds since `oldest`, 0 without one.
fn age_of(oldest: Option<Timestamp>) -> f64 {
    oldest
        .map(|t| Timestamp::now().since(t).as_secs_f64())
        .unwrap_or(0.0)
}

/// Keeps `switchboard_reviews_pending` and the oldest pending age current, and the outbox
/// backlog and its oldest age (ages grow by themselves, so they are refreshed on a timer
/// rather than on events).
async fn watch_reviews(
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.pending_reviews()).await {
            Ok(Ok((n, oldest))) => {
                let age = oldest
                    .map(|t| Timestamp::now().since(t).as_secs_f64())
                    .unwrap_or(0.0);
                metrics.reviews(n, age);
            }
            Ok(Err(e)) => {
                metrics.store_error("pending_reviews");
                warn!("cannot count pending reviews: {e}");
            }
            Err(_) => return,
        }
        // The outbox's oldest age grows by itself too, also while no delivery is attempted
        // (a row waiting out its backoff).
        let s = store.clone();
        if let Ok(Ok((backlog, oldest))) =
            tokio::task::spawn_blocking(move || s.outbox_backlog()).await
        {
            metrics.outbox(backlog, age_of(oldest));
        }
    }
}

/// Keeps the grouping metrics: suppressed customer announcements (logged, since customers
/// were deliberately told nothing) and the parts still waiting for their group.
async fn report_grouping(mut rx: mpsc::UnboundedReceiver<GroupEvent>, metrics: Arc<Metrics>) {
    while let Some(e) = rx.recv().await {
        match e {
            GroupEvent::Suppressed {
                audience,
                kind,
                reason,
            } => {
                metrics.announcements_suppressed(&audience, &reason, 1);
                info!("{kind} e-mail to {audience} not sent: the change was {reason} within its customer_delay");
            }
            GroupEvent::Waiting(by_audience) => metrics.announcements_waiting(&by_audience),
        }
    }
}

/// Logs each delivery in a plain sentence and keeps the announcement metrics.
async fn report_deliveries(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
) {
    while let Some(d) = rx.recv().await {
        let what = match d.item.channel.as_str() {
            "webhook" => format!(
                "webhook {} ({})",
                d.item.recipients.join(", "),
                d.item.subject
            ),
            "statuspage" => format!("Statuspage push ({})", d.item.subject),
            "chat" => format!("chat message \"{}\"", d.item.subject),
            _ => format!(
                "e-mail to {} ({}) \"{}\"",
                d.item.audience,
                d.item.recipients.join(", "),
                d.item.subject
            ),
        };
        // Rows from before schema version 6 carry no kind; their transition tells it.
        let kind = if d.item.kind.is_empty() {
            "unknown"
        } else {
            d.item.kind.as_str()
        };
        let (channel, audience) = (&d.item.channel, &d.item.audience);
        match &d.result {
            Ok(detail) => {
                metrics.announcement(channel, audience, kind, "success", d.at.as_secs_f64());
                info!("{what}: {detail}");
            }
            Err(e) if d.given_up => {
                metrics.announcement(channel, audience, kind, "given_up", d.at.as_secs_f64());
                error!(
                    "{what} GIVEN UP after {} attempts since {}: {e}; it will not be retried",
                    d.item.attempts + 1,
                    d.item.created_at
                );
            }
            Err(e) => {
                metrics.announcement(channel, audience, kind, "failure", d.at.as_secs_f64());
                warn!("{what} not delivered yet: {e}; will retry");
            }
        }
        if let Ok((backlog, oldest)) = store.outbox_backlog() {
            let age = oldest
                .map(|t| Timestamp::now().since(t).as_secs_f64())
                .unwrap_or(0.0);
            metrics.outbox(backlog, age);
        }
    }
}

/// The actor and reason a command carries.
fn command_actor(c: &Command) -> (String, String) {
    match c {
        Command::Failover { actor, reason, .. }
        | Command::Failback { actor, reason }
        | Command::Pin { actor, reason, .. }
        | Command::Unpin { actor, reason }
        | Command::MaintenanceStart { actor, reason, .. }
        | Command::MaintenanceStop { actor, reason }
        | Command::DrillStart { actor, reason, .. }
        | Command::DrillAbort { actor, reason } => (actor.clone(), reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_probe_loop_is_restarted_and_counted() {
        let runs = Arc::new(AtomicUsize::new(0));
        let panics = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let p = panics.clone();
        restart_on_panic(
            move || {
                let r = r.clone();
                async move {
                    // The first run panics as a probe bug would; the second ends normally.
                    if r.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("bug in a probe");
                    }
                }
            },
            move || {
                p.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "started again after the panic"
        );
        assert_eq!(panics.load(Ordering::SeqCst), 1, "the panic was counted");
    }
}
