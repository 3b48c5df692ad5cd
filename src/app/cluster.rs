//! Cluster mode's composition: the election, the replicated store, and a node's life as follower and leader terms on one listening socket.
//!
//! A node starts as a follower: it applies the replicated log to its own file and serves the
//! public side (`/go`, the status page, the Statuspage JSON and feeds, `/metrics`,
//! `/healthz`, `/readyz`) from that replica, and forwards control requests to the leader
//! (`api::forward`).
//! When the election makes it leader, it first applies the whole log, then runs the daemon
//! (`run_parts`) over the same file with the replicating writer and the election's
//! coordinator, until its term ends (it stepped down, was fenced, or the daemon stops); then
//! it is a follower again.
//!
//! One listening socket serves the node's whole life: each phase serves a duplicate of it,
//! so while one phase hands over to the next, clients wait in the kernel's backlog instead
//! of being refused.

use super::service::ServiceRuntime;
use super::{run_parts, AppError, CoreHandle, Parts};
use crate::api::{self, ApiState};
use crate::clock::Timestamp;
use crate::cluster::election::{Election, ElectionConfig, Role, Shared};
use crate::cluster::etcd::{Compare, Etcd, Op};
use crate::cluster::vantage::{self, VoteBoard};
use crate::config::{ClusterConfig, Config};
use crate::history::History;
use crate::store::cluster_log::{Applier, ClusterLog, Replicator};
use crate::store::{Store, StoreError, StoreHandle};
use crate::view::{Board, Snapshot};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Runs a cluster node until `shutdown` turns true.
pub(super) async fn run(
    config: Config,
    listener: Option<TcpListener>,
    mut shutdown: watch::Receiver<bool>,
    on_ready: impl FnOnce(CoreHandle),
) -> Result<(), AppError> {
    let cluster = config
        .cluster
        .clone()
        .expect("cluster::run without [cluster]");
    let config = Arc::new(config);
    let store_err = |source| AppError::Store {
        path: config.storage.path.display().to_string(),
        source,
    };
    let etcd = Arc::new(client(&cluster)?);
    let store = Store::open(&config.storage.path).map_err(store_err)?;
    store.set_message_id_domain(&config.email.message_id_domain());
    store.enable_capture().map_err(store_err)?;
    // Every node names messages with the cluster's id, so a message a new leader resends
    // carries the Message-ID the old leader gave it.
    let instance = loop {
        match shared_instance(&etcd, &cluster.prefix, &store.instance_id()).await {
            Ok(id) => break id,
            Err(e) => {
                warn!("cluster: cannot reach etcd to read the cluster's id ({e}); retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    };
    store.set_instance_id(&instance).map_err(store_err)?;
    let store = Arc::new(store);

    let election = Election::new(
        etcd.clone(),
        ElectionConfig {
            name: cluster.name.clone(),
            url: cluster.advertise_url.clone(),
            prefix: cluster.prefix.clone(),
            lease_ttl: cluster.lease_ttl,
        },
    );
    let shared = election.shared();
    let coordinator = election.coordinator();
    let fence = election.fence();
    let election_task = tokio::spawn(election.run(shutdown.clone()));

    let timeout = etcd_timeout(&cluster);
    let log = ClusterLog::new(etcd.clone(), &cluster.prefix);
    let replicator = Replicator::new(
        log.clone(),
        fence,
        cluster.name.clone(),
        tokio::runtime::Handle::current(),
        timeout * 2,
    );
    let handle = StoreHandle::around(store.clone(), Some(Arc::new(replicator)));
    let applier = Arc::new(Applier::new(log, handle.clone()));
    tokio::spawn(applier.clone().run(shutdown.clone()));

    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| AppError::Listen {
                addr: config.server.listen.to_string(),
                source,
            })?,
    };
    let socket = listener.into_std().map_err(|source| AppError::Listen {
        addr: config.server.listen.to_string(),
        source,
    })?;
    let dup = || -> Result<TcpListener, AppError> {
        socket
            .try_clone()
            .and_then(TcpListener::from_std)
            .map_err(|source| AppError::Listen {
                addr: config.server.listen.to_string(),
                source,
            })
    };
    // This node as a vantage: its verdicts published, the others' followed, for the node's
    // whole life (follower phases and leader terms alike).
    let votes = VoteBoard::new(&cluster.name);
    tokio::spawn(vantage::publish(
        etcd.clone(),
        votes.clone(),
        shared.clone(),
        cluster.prefix.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(vantage::follow(
        etcd.clone(),
        votes.clone(),
        cluster.prefix.clone(),
        shutdown.clone(),
    ));
    let metrics_text: Arc<dyn Fn() -> String + Send + Sync> = {
        let (shared, applied, name) = (shared.clone(), applier.applied(), cluster.name.clone());
        let (votes, config) = (votes.clone(), config.clone());
        Arc::new(move || {
            let mut text = crate::metrics::cluster_text(&name, &shared, *applied.borrow());
            text.push_str(&crate::metrics::votes_text(&votes, &config));
            text
        })
    };
    tokio::spawn(register(
        etcd.clone(),
        cluster.clone(),
        shared.clone(),
        applier.applied(),
        shutdown.clone(),
    ));
    let view = cluster_view(
        etcd.clone(),
        cluster.clone(),
        shared.clone(),
        votes.clone(),
        config.clone(),
    );
    info!(
        "cluster node {} (etcd {}), prefix {}, lease {:?}",
        cluster.name,
        cluster.etcd.join(","),
        cluster.prefix,
        cluster.lease_ttl
    );

    let mut on_ready = Some(on_ready);
    loop {
        if *shutdown.borrow() {
            break;
        }
        place(&etcd, &cluster, &votes).await;
        let me = Follower {
            votes: votes.clone(),
            config: &config,
            shared: &shared,
            applier: &applier,
            handle: handle.clone(),
            metrics_text: metrics_text.clone(),
            node: &cluster.name,
            view: view.clone(),
        };
        follow(&me, dup()?, shutdown.clone()).await;
        if *shutdown.borrow() {
            break;
        }
        // Leading: everything in the log first, then act.
        if let Err(e) = applier.catch_up().await {
            warn!("cluster: elected, but cannot apply the log first ({e}); not acting yet");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // The audit key bound to the replicating writer (or leading refused: a keyed chain
        // is extended only with its key) and the configuration in force recorded, through
        // the log like every write.
        let (c, node) = (config.clone(), cluster.name.clone());
        match handle
            .write(move |s| super::anchor::start(&c, s, &node))
            .await
        {
            Ok(()) => {}
            Err(source @ StoreError::AuditKey(_)) => {
                return Err(AppError::Store {
                    path: config.storage.path.display().to_string(),
                    source,
                })
            }
            // The log refused the write (fenced, etcd unreachable): as when the log cannot
            // be applied, follow again and retry rather than act.
            Err(e) => {
                warn!("cluster: elected, but cannot record the configuration in force ({e}); not acting yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        place(&etcd, &cluster, &votes).await;
        let term = term_ends(shared.clone(), shutdown.clone());
        let ready = on_ready.take();
        info!("cluster: {} leads; starting the daemon", cluster.name);
        let parts = Parts {
            store: store.clone(),
            store_handle: handle.clone(),
            coordinator: coordinator.clone(),
            extra_metrics: Some(metrics_text.clone()),
            cluster_view: Some(view.clone()),
            votes: Some(votes.clone()),
        };
        run_parts(
            config.clone(),
            Some(dup()?),
            term,
            move |h| {
                if let Some(f) = ready {
                    f(h)
                }
            },
            parts,
        )
        .await?;
        if !*shutdown.borrow() {
            info!("cluster: {} no longer leads; following", cluster.name);
        }
    }
    let _ = election_task.await;
    Ok(())
}

/// A shutdown signal for one leader term: true once this node stops leading (or the
/// daemon stops).
fn term_ends(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut role = shared.subscribe();
        loop {
            // The renew deadline passes without a role change; check it often.
            if *shutdown.borrow() || shared.acting_term().is_none() {
                break;
            }
            tokio::select! {
                _ = role.changed() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let _ = tx.send(true);
    });
    rx
}

/// This node's place among the registered nodes (by name), which offsets its probes so the
/// vantages' probes of one check spread evenly over its interval.
async fn place(etcd: &Etcd, cluster: &ClusterConfig, votes: &VoteBoard) {
    let mut names: Vec<String> = registered(etcd, &cluster.prefix)
        .await
        .into_iter()
        .map(|n| n.name)
        .collect();
    if !names.contains(&cluster.name) {
        names.push(cluster.name.clone());
    }
    names.sort();
    let index = names.iter().position(|n| *n == cluster.name).unwrap_or(0);
    votes.set_slot(index as u32, names.len() as u32);
}

/// What a follower phase serves from.
struct Follower<'a> {
    votes: Arc<VoteBoard>,
    config: &'a Arc<Config>,
    shared: &'a Arc<Shared>,
    applier: &'a Arc<Applier>,
    handle: StoreHandle,
    metrics_text: Arc<dyn Fn() -> String + Send + Sync>,
    node: &'a str,
    view: crate::api::ClusterView,
}

/// The follower phase: serves the public side from the replica until this node leads or
/// the daemon stops.
async fn follow(me: &Follower<'_>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let (config, shared, applier) = (
        Arc::clone(me.config),
        Arc::clone(me.shared),
        Arc::clone(me.applier),
    );
    let (handle, metrics_text, node) = (me.handle.clone(), me.metrics_text.clone(), me.node);
    let history = Arc::new(History::new(
        config.services.iter().map(|s| s.id.clone()).collect(),
    ));
    let board = Arc::new(Board::new(handle.clone(), history, Vec::new()));
    super::configure_windows(&board, &config);
    let first = replica_snapshot(&config, &handle).await;
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(first));
    let ready = Arc::new(AtomicBool::new(shared.etcd_reachable()));

    // The view follows the log: rebuilt after every applied entry (and every few seconds,
    // for the status page's "since").
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let refresher = {
        let (config, handle, board, ready, shared) = (
            config.clone(),
            handle.clone(),
            board.clone(),
            ready.clone(),
            shared.clone(),
        );
        let mut applied = applier.applied();
        tokio::spawn(async move {
            loop {
                ready.store(shared.etcd_reachable(), Ordering::Relaxed);
                snapshot_tx.send_replace(Arc::new(replica_snapshot(&config, &handle).await));
                if let Err(e) = board.reload_incidents().await {
                    warn!("cluster: cannot read incidents for the status page: {e}");
                }
                tokio::select! {
                    _ = applied.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop_rx.changed() => break,
                }
            }
        })
    };

    // A follower is a vantage too: it probes every check and publishes its verdicts.
    let prober = tokio::spawn(super::vantage::probe(
        config.clone(),
        me.votes.clone(),
        shutdown.clone(),
        stop_tx.subscribe(),
    ));
    let forward = {
        let shared = shared.clone();
        crate::api::forward::Forward {
            leader: Arc::new(move || match shared.role() {
                Role::Follower(Some(l)) => Some((l.name, l.url)),
                _ => None,
            }),
            node: node.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap_or_default(),
        }
    };
    let auth = crate::api::auth::Auth::new(config.auth.tokens_file.clone(), Box::new(|_| {}))
        .behind_proxies(
            config.server.trusted_proxies.clone(),
            config.server.client_ip_header.clone(),
        );
    let state = ApiState::new(snapshot_rx, move || metrics_text(), ready)
        .with_board(board)
        .with_forward(forward)
        .with_auth(Arc::new(auth))
        .with_cluster(me.view.clone());
    let nofile = api::listener::raise_nofile();
    let reserved = u64::from(config.server.max_concurrent_probes) * 2 + 256;
    let limits = api::listener::Limits::for_descriptors(nofile, reserved);
    let stop = {
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        async move {
            let mut role = shared.subscribe();
            loop {
                if *shutdown.borrow() || matches!(*role.borrow(), Role::Leader { .. }) {
                    break;
                }
                tokio::select! {
                    _ = role.changed() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    };
    if let Err(e) = api::serve_isolated(listener, state, limits, stop).await {
        error!("cluster: the follower's HTTP server failed: {e}");
    }
    let _ = stop_tx.send(true);
    let _ = refresher.await;
    let _ = prober.await;
}

/// The nodes registered under `{prefix}/nodes/` (none when etcd does not answer).
async fn registered(etcd: &Etcd, prefix: &str) -> Vec<NodeRecord> {
    match etcd.get(format!("{prefix}/nodes/").as_bytes(), true).await {
        Ok((kvs, _)) => kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What a node says about itself under `{prefix}/nodes/{name}`, attached to its lease so it
/// vanishes with the node.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct NodeRecord {
    name: String,
    url: String,
    role: String,
    applied: u64,
}

/// Keeps this node's record current: written when its lease, role or applied entry changes
/// (at most once a second), never on a timer, so etcd's write rate follows state changes.
async fn register(
    etcd: Arc<Etcd>,
    cluster: ClusterConfig,
    shared: Arc<Shared>,
    mut applied: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let key = format!("{}/nodes/{}", cluster.prefix, cluster.name).into_bytes();
    let mut role = shared.subscribe();
    let mut written: Option<(i64, NodeRecord)> = None;
    loop {
        let lease = shared.lease_id();
        let record = NodeRecord {
            name: cluster.name.clone(),
            url: cluster.advertise_url.clone(),
            role: match shared.role() {
                Role::Leader { .. } => "leader",
                Role::Follower(_) => "follower",
                Role::Unknown => "unknown",
            }
            .into(),
            applied: *applied.borrow(),
        };
        if lease != 0 && written.as_ref() != Some(&(lease, record.clone())) {
            let value = serde_json::to_vec(&record).unwrap_or_default();
            if etcd.put(&key, &value, lease).await.is_ok() {
                written = Some((lease, record));
            }
        }
        tokio::select! {
            _ = role.changed() => {}
            _ = applied.changed() => {}
            _ = shutdown.changed() => return,
            // The lease may change without a role change (a new one after expiry).
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The cluster as this node sees it: its own lease and etcd contact, the leader, and every
/// registered node with whether it has applied as much of the log as the leader.
fn cluster_view(
    etcd: Arc<Etcd>,
    cluster: ClusterConfig,
    shared: Arc<Shared>,
    votes: Arc<VoteBoard>,
    config: Arc<Config>,
) -> crate::api::ClusterView {
    Arc::new(move || {
        let (etcd, cluster, shared) = (etcd.clone(), cluster.clone(), shared.clone());
        let vantages = vantages_view(&votes, &config);
        Box::pin(async move {
            let nodes = registered(&etcd, &cluster.prefix).await;
            let leader = match shared.role() {
                Role::Leader { .. } => Some(cluster.name.clone()),
                Role::Follower(Some(l)) => Some(l.name),
                _ => None,
            };
            let head = nodes
                .iter()
                .find(|n| Some(&n.name) == leader.as_ref())
                .map(|n| n.applied);
            let nodes: Vec<serde_json::Value> = nodes
                .iter()
                .map(|n| {
                    serde_json::json!({
                        "name": n.name, "url": n.url, "role": n.role, "applied": n.applied,
                        "in_sync": head.is_some_and(|h| n.applied >= h),
                    })
                })
                .collect();
            serde_json::json!({
                "node": cluster.name,
                "leader": leader,
                "etcd_up": shared.etcd_reachable(),
                "lease_age_seconds": shared.lease_age().map(|a| a.as_secs_f64()),
                "nodes": nodes,
                "vantages": vantages["vantages"],
                "disagreements": vantages["disagreements"],
            })
        })
    })
}

/// The vantages this node hears (each with whether it is suspect) and every check on which
/// the counted vantages disagree, with each vote and what the quorum decides.
fn vantages_view(votes: &VoteBoard, config: &Config) -> serde_json::Value {
    use crate::cluster::votes::{check_key, decide};
    let reports = votes.reports();
    let vantages: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| serde_json::json!({ "name": r.node, "suspect": r.suspect }))
        .collect();
    let mut disagreements = Vec::new();
    for s in &config.services {
        for c in &s.checks {
            let d = decide(reports.iter(), &check_key(&s.id, &c.name), s.vote);
            if d.disagrees() || d.blocked.is_some() {
                disagreements.push(serde_json::json!({
                    "service": s.id,
                    "check": c.name,
                    "decided": d.health.map(|h| h.as_str()),
                    "needed": d.needed,
                    "counted": d.counted,
                    "blocked": d.blocked,
                    "votes": d.votes,
                }));
            }
        }
    }
    serde_json::json!({ "vantages": vantages, "disagreements": disagreements })
}

/// The services as the replica holds them.
async fn replica_snapshot(config: &Arc<Config>, handle: &StoreHandle) -> Snapshot {
    let specs = config.services.clone();
    let now = Timestamp::now();
    let views = handle
        .read(move |s| {
            specs
                .iter()
                .map(|spec| ServiceRuntime::from_replica(spec, s, now).map(|rt| rt.view()))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await;
    let services = views.unwrap_or_else(|e| {
        warn!("cluster: cannot read the replica: {e}");
        Vec::new()
    });
    Snapshot {
        services,
        ..super::empty_snapshot(config)
    }
}

/// The cluster's instance id: this node's proposal if it is the first to ask, else the one
/// stored.
async fn shared_instance(etcd: &Etcd, prefix: &str, mine: &str) -> Result<String, String> {
    let key = format!("{prefix}/instance").into_bytes();
    let r = etcd
        .txn(
            &[Compare::CreateRevision(key.clone(), 0)],
            &[Op::Put {
                key: key.clone(),
                value: mine.as_bytes().to_vec(),
                lease: 0,
            }],
            &[Op::Get { key }],
        )
        .await
        .map_err(|e| e.to_string())?;
    if r.succeeded {
        return Ok(mine.to_string());
    }
    r.gets
        .first()
        .and_then(|kvs| kvs.first())
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .ok_or_else(|| "the cluster's id vanished while read".to_string())
}

/// How long one etcd request may take: a fifth of the lease (between 0.5 and 2 s), so a
/// hung member costs a renewal round at most.
fn etcd_timeout(cluster: &ClusterConfig) -> Duration {
    (cluster.lease_ttl / 5).clamp(Duration::from_millis(500), Duration::from_secs(2))
}

/// The etcd client, with the password from the environment or its file (never logged).
fn client(cluster: &ClusterConfig) -> Result<Etcd, AppError> {
    let credentials = match &cluster.user {
        None => None,
        Some(user) => {
            let password = match &cluster.password_file {
                Some(f) => std::fs::read_to_string(f)
                    .map(|p| p.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| {
                        AppError::Cluster(format!("cluster.password_file {}: {e}", f.display()))
                    })?,
                None => std::env::var(&cluster.password_env).map_err(|_| {
                    AppError::Cluster(format!(
                        "cluster.user is set but {} is not (the etcd password)",
                        cluster.password_env
                    ))
                })?,
            };
            Some((user.clone(), password))
        }
    };
    let ca = match &cluster.ca_file {
        Some(f) => Some(
            std::fs::read(f)
                .map_err(|e| AppError::Cluster(format!("cluster.ca_file {}: {e}", f.display())))?,
        ),
        None => None,
    };
    Etcd::new(
        cluster.etcd.clone(),
        credentials,
        ca.as_deref(),
        etcd_timeout(cluster),
    )
    .map_err(|e| AppError::Cluster(e.to_string()))
}
