//! The shell around the pure core: restores state, schedules probes, feeds outcomes to `health`
//! and `failover`, executes their actions (record, switch, announce) and serves HTTP.
//!
//! One core task owns all decision state and handles messages one at a time, so decisions are
//! serialised and the order of actions is the order the core returned them. Probe tasks only
//! probe and report; the HTTP side only reads published snapshots.

use crate::announce::chat::Chat;
use crate::announce::email::Mailer;
use crate::announce::outbox::{self, Delivery, Transports};
use crate::announce::statuspage_push::StatuspagePush;
use crate::announce::webhook::{self, Webhooks};
use crate::announce::{self, Audience, Channels, Kind, MessageContext, Templates};
use crate::api::{self, ApiState};
use crate::clock::Timestamp;
use crate::cluster::{Coordinator, SingleNode};
use crate::config::{CheckSpec, Config, ServiceSpec};
use crate::failover::{self, Action, Event, Holds, Policy, Side, State, Transition};
use crate::health::{CheckHealth, Health, Thresholds};
use crate::metrics::Metrics;
use crate::probe::{self, Outcome};
use crate::store::{Store, StoreError};
use crate::view::{CheckView, RouteView, ServiceView, Snapshot};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

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
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until `shutdown` turns true. `listener` overrides `[server] listen`
/// (the demo binds its own port).
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    let config = Arc::new(config);
    let store = Store::open(&config.storage.path).map_err(|source| AppError::Store {
        path: config.storage.path.display().to_string(),
        source,
    })?;
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
        let rec = store
            .ensure_service(&spec.id, now)
            .map_err(|source| AppError::Store {
                path: config.storage.path.display().to_string(),
                source,
            })?;
        if rec.state != State::Operational {
            info!(
                "{}: restored state {} (since {}); routes stay on {}",
                spec.name,
                rec.state,
                rec.since,
                rec.state.routes_side().as_str()
            );
        }
        let policy = Policy::from_spec(spec);
        let mut machine = failover::Service::new(&spec.id, rec.state, rec.since);
        let stored_holds = store.holds(&spec.id).map_err(|source| AppError::Store {
            path: config.storage.path.display().to_string(),
            source,
        })?;
        if let Some(json) = stored_holds {
            match serde_json::from_str::<Holds>(&json) {
                Ok(holds) => machine.restore(&policy, holds),
                // Unreadable holds are dropped loudly rather than stopping the daemon.
                Err(e) => error!(
                    "{}: stored holds are unreadable and dropped: {e}",
                    spec.name
                ),
            }
        }
        services.push(ServiceRuntime {
            saved_holds: machine.holds(),
            side: machine.side,
            policy,
            machine,
            cause: rec.cause.clone(),
            created_at: rec.created_at,
            checks: spec.checks.iter().map(|_| CheckRuntime::new(now)).collect(),
            spec: spec.clone(),
        });
    }

    let (msg_tx, msg_rx) = mpsc::channel::<Msg>(1024);
    let outbox_wake = Arc::new(Notify::new());
    let mut core = Core {
        config: config.clone(),
        coordinator: Arc::new(SingleNode::from_host()),
        store: store.clone(),
        metrics: metrics.clone(),
        services,
        snapshot_tx: watch::Sender::new(Arc::new(empty_snapshot(&config))),
        outbox_wake: outbox_wake.clone(),
        msg_tx: msg_tx.clone(),
        templates: Arc::new(templates),
    };
    for s in &core.services {
        metrics.service_state(&s.spec.id, s.machine.state);
        metrics.state_since(&s.spec.id, s.machine.since);
        metrics.flapping(&s.spec.id, false);
        for c in &s.spec.checks {
            metrics.check_configured(&s.spec.id, c);
        }
        for r in &s.spec.routes {
            metrics.route_targets(&s.spec.id, &r.id, &r.primary, &r.backup, s.side);
        }
    }
    core.publish();
    let snapshot_rx = core.snapshot_tx.subscribe();

    let mut tasks = JoinSet::new();

    // Announcements: delivered from the durable outbox, so nothing recorded is lost.
    let (delivery_tx, delivery_rx) = mpsc::unbounded_channel();
    tasks.spawn(outbox::run_with(
        store.clone(),
        transports,
        outbox_wake.clone(),
        delivery_tx,
        shutdown.clone(),
        config.email.give_up_after,
    ));
    tasks.spawn(report_deliveries(
        delivery_rx,
        metrics.clone(),
        store.clone(),
    ));
    // Deliver whatever a previous run recorded and did not send.
    outbox_wake.notify_one();

    // Probes.
    let permits = Arc::new(Semaphore::new(config.server.max_concurrent_probes as usize));
    for (si, s) in config.services.iter().enumerate() {
        for ci in 0..s.checks.len() {
            tasks.spawn(probe_loop(
                si,
                ci,
                config.clone(),
                msg_tx.clone(),
                metrics.clone(),
                permits.clone(),
                shutdown.clone(),
            ));
        }
    }
    drop(msg_tx);

    // HTTP.
    let ready = Arc::new(AtomicBool::new(false));
    let m = metrics.clone();
    let api_state = ApiState::new(snapshot_rx, move || m.render(), ready.clone());
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let stop = async move {
            let _ = http_shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = api::serve(listener, api_state, stop).await {
            error!("HTTP server on {addr} failed: {e}");
        }
    });
    ready.store(true, Ordering::SeqCst);
    info!(
        "switchboard {} watching {} services ({} checks); config {}",
        env!("CARGO_PKG_VERSION"),
        config.services.len(),
        config.checks().count(),
        &config.version[..12.min(config.version.len())]
    );

    core.run(msg_rx, shutdown.clone()).await;
    let _ = shutdown.wait_for(|s| *s).await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Messages to the core task.
enum Msg {
    Outcome {
        service: usize,
        check: usize,
        outcome: Box<Outcome>,
        /// The core answers whether the check wants a confirmation re-probe.
        reply: oneshot::Sender<bool>,
    },
    Tick {
        service: usize,
    },
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

struct Core {
    config: Arc<Config>,
    coordinator: Arc<dyn Coordinator>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    services: Vec<ServiceRuntime>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    outbox_wake: Arc<Notify>,
    msg_tx: mpsc::Sender<Msg>,
    /// Message templates, loaded once at start.
    templates: Arc<Templates>,
}

impl Core {
    async fn run(&mut self, mut rx: mpsc::Receiver<Msg>, mut shutdown: watch::Receiver<bool>) {
        // Outcomes change the page often; publish at most every 250 ms unless something switched.
        let mut publish = tokio::time::interval(Duration::from_millis(250));
        let mut dirty = false;
        // A first look at every service: schedules planned windows and ends a drill whose
        // deadline was lost in a restart.
        let now = Timestamp::now();
        for si in 0..self.services.len() {
            self.on_event(si, Event::Tick, now);
        }
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Outcome { service, check, outcome, reply }) => {
                        let confirm = self.on_outcome(service, check, *outcome);
                        let _ = reply.send(confirm);
                        dirty = true;
                    }
                    Some(Msg::Tick { service }) => self.on_event(service, Event::Tick, Timestamp::now()),
                    None => break,
                },
                _ = publish.tick() => if dirty { self.publish(); dirty = false; },
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    }

    fn on_outcome(&mut self, si: usize, ci: usize, outcome: Outcome) -> bool {
        let now = Timestamp::now();
        let svc = &mut self.services[si];
        let spec = &svc.spec.checks[ci];
        self.metrics.probe_finished(&svc.spec.id, spec, &outcome);
        let t = Thresholds::new(spec.failure_threshold, spec.success_threshold);
        let rt = &mut svc.checks[ci];
        let changed = rt.health.observe(t, outcome.success, now);
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

    fn on_event(&mut self, si: usize, event: Event, now: Timestamp) {
        let svc = &mut self.services[si];
        let actions = failover::step(&mut svc.machine, &svc.policy, &event, now);
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
        if actions.is_empty() {
            return;
        }
        if !self.coordinator.is_leader() {
            // Followers keep deciding so they can take over with a warm state, but act on nothing.
            return;
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
                } => self.record(si, transition, announce, detected_in, side_after),
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
                Action::WakeAt(at) => {
                    let tx = self.msg_tx.clone();
                    let delay = at.since(now);
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(Msg::Tick { service: si }).await;
                    });
                }
            }
        }
        self.publish();
    }

    /// Writes the transition and its announcements in one transaction, before any switch.
    fn record(
        &mut self,
        si: usize,
        t: Transition,
        announce: bool,
        detected_in: Option<Duration>,
        side_after: Side,
    ) {
        let svc = &mut self.services[si];
        let routes_after = route_views(&svc.spec, side_after);
        let mut announcements = if announce {
            let ctx = message_context(&self.config, &svc.spec, routes_after.clone());
            let channels = channels(&self.config, &svc.spec, &self.templates);
            announce::plan_kind(Kind::of(&t), &t, &ctx, &channels)
        } else {
            Vec::new()
        };
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
        let res =
            tokio::task::block_in_place(|| store.commit_transition(&t, audit, &announcements));
        match res {
            Ok(_) => {
                self.metrics.audit_recorded(crate::audit::KIND_TRANSITION);
                if !announcements.is_empty() {
                    self.outbox_wake.notify_one();
                }
            }
            // The switch still happens (customers come first), but loudly: the record is missing.
            Err(e) => {
                self.metrics.store_error("commit_transition");
                error!(
                    "{}: could not record transition {} -> {}: {e}; announcements for it are NOT queued",
                    svc.spec.name, t.from, t.to
                )
            }
        }
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
        };
        let ctx = message_context(&self.config, &svc.spec, route_views(&svc.spec, svc.side));
        let channels = channels(&self.config, &svc.spec, &self.templates);
        let rows = announce::plan_kind(Kind::Flapping, &t, &ctx, &channels);
        if rows.is_empty() {
            return;
        }
        let store = self.store.clone();
        let id = svc.spec.id.clone();
        match tokio::task::block_in_place(|| store.enqueue_notice(&id, now, &rows)) {
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
        runbook: spec.runbook.clone(),
        api_url: format!("{public}/api/v1"),
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

/// Probes one check forever: at its interval, or at `retry_interval` while the core wants
/// confirmation. Each probe is bounded by the check's timeout inside `probe::run`.
async fn probe_loop(
    si: usize,
    ci: usize,
    config: Arc<Config>,
    tx: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Shared, not cloned: ten thousand checks would otherwise hold ten thousand copies.
    let check = &config.services[si].checks[ci];
    let mut due = tokio::time::Instant::now() + first_delay(check);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // Waiting for a permit counts as schedule lag: that is what the limit costs.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let started = tokio::time::Instant::now();
        metrics.schedule_lag(started.saturating_duration_since(due).as_secs_f64());
        let outcome = tokio::select! {
            o = probe::run(check) => o,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        drop(permit);
        let (reply, confirm) = oneshot::channel();
        let msg = Msg::Outcome {
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
