//! The shell around the pure core: restores state, schedules probes, feeds outcomes to `health`
//! and `failover`, executes their actions (record, switch, announce) and serves HTTP.
//!
//! One core task owns all decision state and handles messages one at a time, so decisions are
//! serialised and the order of actions is the order the core returned them. Probe tasks only
//! probe and report; the HTTP side reads published snapshots, and operator commands, drills
//! and reloads reach the core as messages through a `CoreHandle` that answers each one.
//!
//! This file composes the daemon (`run_with`): it opens the store, builds the transports,
//! restores the services, spawns the tasks and starts the HTTP server, handing it the core as
//! `api::core::Core`. Each concern has its own file: `core` (the loop, outcomes, events,
//! switching, publishing), `service` (a service's runtime state and its one projection),
//! `commands` and `drills` (operator requests), `record` (the store's transaction per
//! transition and the retry queue) with `spill` (the queue at shutdown and start), `reload`
//! (prepared off the core, applied as a plan), `tasks` (probe loops and metric keepers) and
//! `handle` (`CoreHandle` and its messages).

use crate::announce::chat::Chat;
use crate::announce::email::Mailer;
use crate::announce::group;
use crate::announce::outbox::{self, Grouping, Transports};
use crate::announce::statuspage_push::StatuspagePush;
use crate::announce::webhook::Webhooks;
use crate::announce::zendesk::ZendeskArticles;
use crate::announce::{Audience, Kind, Templates};
use crate::api::{self, ApiState};
use crate::clock::Timestamp;
use crate::cluster::SingleNode;
use crate::config::Config;
use crate::history::{self, History};
use crate::incident::{RouteWords, ServiceWords};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreHandle};
use crate::view::{target_display, Board, Snapshot};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

mod anchor;
mod cluster;
mod commands;
mod core;
mod drills;
mod handle;
mod record;
mod reload;
mod service;
mod spill;
mod tasks;
mod vantage;

pub use self::handle::CoreHandle;
pub use self::service::SCHEDULED_MAINTENANCE_TEXT;
// The data the control API and the core exchange is the API's vocabulary (`api::core`); it is
// named here too for callers that know the daemon rather than its server.
pub use crate::api::core::{
    Applied, AppliedTransition, CommandError, DrillRequest, ReloadError, ReloadReport,
    ServiceDetail,
};

use self::core::Core;
use self::handle::Msg;
use self::service::ServiceRuntime;

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
    #[error("{0}")]
    Cluster(String),
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
    shutdown: watch::Receiver<bool>,
    on_ready: impl FnOnce(CoreHandle),
) -> Result<(), AppError> {
    if config.cluster.is_some() {
        return cluster::run(config, listener, shutdown, on_ready).await;
    }
    let config = Arc::new(config);
    let store_err = |source| AppError::Store {
        path: config.storage.path.display().to_string(),
        source,
    };
    let store = Store::open(&config.storage.path).map_err(store_err)?;
    store.set_message_id_domain(&config.email.message_id_domain());
    // The audit key and the configuration in force, before anything else is recorded (the
    // spilled transitions below included: their records are sealed with the key too).
    {
        use crate::cluster::Coordinator;
        anchor::start(&config, &store, SingleNode::from_host().node()).map_err(store_err)?;
    }
    // What a previous run could not record goes in first, so services start from it.
    spill::replay_at_start(&config, &store)?;
    let store = Arc::new(store);
    // Start-up reads the store directly, before any task runs; everything started from here
    // (the core, its tasks, drill monitors, history, the status page, the outbox, the
    // Statuspage push, the control API) reaches it only through this handle: one writer
    // thread and read-only connections.
    let store_handle = StoreHandle::shared(store.clone());
    let parts = Parts {
        store,
        store_handle,
        coordinator: Arc::new(SingleNode::from_host()),
        extra_metrics: None,
        cluster_view: None,
        votes: None,
    };
    run_parts(config, listener, shutdown, on_ready, parts).await
}

/// What `run_parts` runs on: the store (read directly at start), the handle everything
/// else writes through, who may act, and metrics rendered beside the daemon's own.
pub(crate) struct Parts {
    pub store: Arc<Store>,
    pub store_handle: StoreHandle,
    pub coordinator: Arc<dyn crate::cluster::Coordinator>,
    pub extra_metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// `GET /api/v1/cluster` (cluster mode).
    pub cluster_view: Option<crate::api::ClusterView>,
    /// The vantages' votes (cluster mode: published and followed through etcd); `None`: a
    /// board of this node alone.
    pub votes: Option<Arc<crate::cluster::vantage::VoteBoard>>,
}

/// The daemon over `parts`: a single node's whole life, or a cluster leader's term.
pub(crate) async fn run_parts(
    config: Arc<Config>,
    listener: Option<TcpListener>,
    mut shutdown: watch::Receiver<bool>,
    on_ready: impl FnOnce(CoreHandle),
    parts: Parts,
) -> Result<(), AppError> {
    let Parts {
        store,
        store_handle,
        coordinator,
        extra_metrics,
        cluster_view,
        votes,
    } = parts;
    let votes =
        votes.unwrap_or_else(|| crate::cluster::vantage::VoteBoard::new(coordinator.node()));
    let store_err = |source| AppError::Store {
        path: config.storage.path.display().to_string(),
        source,
    };
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
            .map(|c| StatuspagePush::new(c, store_handle.clone())),
        chat: config
            .chat
            .clone()
            .map(|c| Chat::with_store(c, store_handle.clone())),
        zendesk: config
            .services
            .iter()
            .any(|s| !s.zendesk_articles.is_empty())
            .then(|| {
                ZendeskArticles::new(
                    config
                        .services
                        .iter()
                        .flat_map(|s| s.zendesk_articles.iter()),
                    store_handle.clone(),
                )
            }),
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
    // Through the writer: loading a service stores it when it is new, and in cluster mode
    // that write must reach the replicated log like any other.
    let specs = config.services.clone();
    let services = store_handle
        .write(move |s| {
            specs
                .iter()
                .map(|spec| ServiceRuntime::load(spec, s, now))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
        .map_err(store_err)?;

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
    store.describe_services(service_words(&config));

    let m = metrics.clone();
    let board = Arc::new(
        Board::new(store_handle.clone(), history.clone(), Vec::new())
            .on_reload(move |open| m.incidents_open(open)),
    );
    configure_windows(&board, &config);
    if let Err(e) = board.reload_incidents().await {
        error!("could not read incidents for the status page: {e}");
    }

    let (msg_tx, msg_rx) = mpsc::channel::<Msg>(1024);
    let pending = spill::PendingCount::default();
    let outbox_wake = Arc::new(Notify::new());
    let permits = Arc::new(Semaphore::new(config.server.max_concurrent_probes as usize));
    let mut core = Core {
        config: config.clone(),
        coordinator: coordinator.clone(),
        store: store_handle.clone(),
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
        queue: record::RetryQueue::new(pending.clone()),
        templates: Arc::new(templates),
        in_use: record::TransportsInUse::of(&config),
        reloads: reload::Reloads::default(),
        vendors: Default::default(),
        transports: transports.clone(),
        // Heartbeats live for the daemon's life: a reload keeps them (`start_probes`).
        heartbeats: Arc::new(crate::probe::heartbeat::Heartbeats::new()),
        votes,
    };
    for s in &core.services {
        core.metrics_for_new_service(s);
    }
    tasks::restore_stored_series(&store, &metrics, &config);
    core.show_windows();
    core.publish();
    let snapshot_rx = core.snapshot_tx.subscribe();

    let mut background = JoinSet::new();

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
    background.spawn(outbox::run_grouped(
        store_handle.clone(),
        Arc::new(crate::announce::transport::WhileLeader {
            inner: transports,
            coordinator: coordinator.clone(),
        }),
        outbox_wake.clone(),
        delivery_tx,
        shutdown.clone(),
        config.email.give_up_after,
        Grouping {
            templates: core.templates.clone(),
            events: group_tx,
        },
    ));
    background.spawn(tasks::report_grouping(group_rx, metrics.clone()));
    background.spawn(tasks::report_deliveries(
        delivery_rx,
        metrics.clone(),
        store_handle.clone(),
    ));
    background.spawn(tasks::watch_reviews(
        store_handle.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    background.spawn(anchor::run(
        store_handle.clone(),
        metrics.clone(),
        config.audit.clone(),
        shutdown.clone(),
    ));
    // Deliver whatever a previous run recorded and did not send.
    outbox_wake.notify_one();
    // Probe history: written in batches, off the probe path. Incidents: reloaded for the page
    // after transitions, off the core task.
    background.spawn(history::run(
        history,
        store_handle.clone(),
        shutdown.clone(),
    ));
    background.spawn(crate::view::reload_on_change(
        board.clone(),
        shutdown.clone(),
    ));

    // Probes.
    core.start_probes();

    // Drills that were running when the daemon stopped: their reports are finished from here.
    core.resume_drills().await;

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
        core: Arc::new(handle.clone()),
        store: store_handle.clone(),
        heartbeats: core.heartbeats.clone(),
    };
    let api_state = ApiState::new(
        snapshot_rx,
        move || {
            let mut text = m.render();
            if let Some(extra) = &extra_metrics {
                text.push_str(&extra());
            }
            text
        },
        ready.clone(),
    )
    .with_control(Arc::new(auth), control)
    .with_board(board.clone())
    .with_pending_transitions(pending);
    let api_state = match cluster_view {
        Some(view) => api_state.with_cluster(view),
        None => api_state,
    };
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
    background.spawn(async move {
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
    anchor::at_shutdown(&store_handle, &metrics, &config.audit).await;
    let _ = shutdown.wait_for(|s| *s).await;
    core.probes_stop.send_replace(true);
    while background.join_next().await.is_some() {}
    Ok(())
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
    if config
        .services
        .iter()
        .any(|s| !s.zendesk_articles.is_empty())
    {
        metrics.announcement_channel("zendesk", &[]);
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

/// Shows each configured service's planned maintenance windows on the status page. Called at
/// start, and again after a configuration reload (which also tells the store the names and
/// route targets incidents are worded with, `service_words`).
fn configure_windows(board: &Board, config: &Config) {
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
