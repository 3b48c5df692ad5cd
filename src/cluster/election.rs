//! Leader election on etcd, Patroni style: a leader key attached to a lease, taken with a create-if-absent transaction, renewed or given up.
//!
//! The HA loop (`Election::run`) runs on every node. Each node holds a lease of `lease_ttl`
//! and renews it every fifth of the lease. A node without a leader tries to create
//! `{prefix}/leader` attached to its lease, in a transaction that succeeds only when the key
//! does not exist; whoever succeeds leads, and the key's create revision is its **term**.
//!
//! Why a lease alone is not enough (Kubernetes' own warning): a leader paused past its lease
//! (SIGSTOP, a long GC, a frozen VM) wakes up believing it leads while another node already
//! does. Two things stop it from acting:
//! - **Self-demotion.** A leader may act only until its *renew deadline*: two thirds of the
//!   lease after the last renewal it *sent* that etcd confirmed. The deadline is measured on
//!   the monotonic clock, which keeps running while the process is stopped, so the first
//!   thing a resumed leader sees is that it no longer leads. It steps down when a renewal
//!   fails past the deadline, when etcd says the lease expired, or when the leader key is no
//!   longer its own — and says so in its log and metrics.
//! - **Fencing.** Every write the leader makes to shared state is a transaction guarded by
//!   a compare on the leader key's create revision (`Election::fenced`). A deposed leader's
//!   term no longer matches, etcd refuses the write, and the refusal is counted
//!   (`switchboard_cluster_fenced_writes_total`) and makes it step down.
//!
//! Followers read the leader key every second, so a vacated key (a leader's lease expired,
//! or a leader stepped down and deleted it) is taken within about a second.

use super::etcd::{Compare, Etcd, EtcdError, Op, TxnResult};
use super::Coordinator;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// What the leader key says: who leads and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub name: String,
    pub url: String,
    /// When it took the lead (ms since the epoch).
    pub since_ms: i64,
}

/// This node's place in the cluster, as the HA loop last established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not yet known (starting, or etcd unreachable): nobody here acts.
    Unknown,
    /// Another node leads (or nobody does yet: `None`).
    Follower(Option<LeaderInfo>),
    /// This node leads; `term` is the leader key's create revision.
    Leader { term: i64 },
}

/// Why a fenced write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// This node does not lead (or its renew deadline passed).
    #[error("this node is not the leader")]
    NotLeader,
    /// etcd refused the write: the leader key is no longer this node's.
    #[error("fenced: the leader key changed (term {term} is over)")]
    Fenced { term: i64 },
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// The election's settings.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub name: String,
    pub url: String,
    pub prefix: String,
    pub lease_ttl: Duration,
}

/// State shared between the HA loop, the coordinator and the metrics.
pub struct Shared {
    role: watch::Sender<Role>,
    /// Until when this node may act as leader (monotonic).
    deadline: Mutex<Option<Instant>>,
    /// When the lease was last renewed (monotonic), for the lease-age gauge.
    renewed: Mutex<Option<Instant>>,
    /// Whether the last etcd call of the HA loop got an answer.
    reachable: std::sync::atomic::AtomicBool,
    pub leader_changes: AtomicU64,
    pub fenced_writes: AtomicU64,
    pub demotions: AtomicU64,
    /// This node's current lease (0: none), for keys that must vanish with the node.
    lease: std::sync::atomic::AtomicI64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            role: watch::channel(Role::Unknown).0,
            deadline: Mutex::new(None),
            renewed: Mutex::new(None),
            reachable: std::sync::atomic::AtomicBool::new(false),
            leader_changes: AtomicU64::new(0),
            fenced_writes: AtomicU64::new(0),
            demotions: AtomicU64::new(0),
            lease: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The role as last established (without the deadline check).
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// A receiver that sees every role change.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// The term this node may act in now: leading, and before its renew deadline.
    pub fn acting_term(&self) -> Option<i64> {
        let Role::Leader { term } = *self.role.borrow() else {
            return None;
        };
        let deadline = *self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        deadline.filter(|d| Instant::now() < *d).map(|_| term)
    }

    /// Seconds since the lease was last renewed, if it ever was.
    pub fn lease_age(&self) -> Option<Duration> {
        self.renewed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|r| r.elapsed())
    }

    /// This node's lease id, 0 while it has none.
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// Whether etcd answered the HA loop's last call.
    pub fn etcd_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn set_role(&self, role: Role) {
        self.role.send_if_modified(|r| {
            if *r == role {
                false
            } else {
                *r = role;
                true
            }
        });
    }
}

/// The cluster's `Coordinator`: leads while the election says so and the renew deadline has
/// not passed.
pub struct EtcdCoordinator {
    name: String,
    shared: Arc<Shared>,
}

impl Coordinator for EtcdCoordinator {
    fn is_leader(&self) -> bool {
        self.shared.acting_term().is_some()
    }

    fn node(&self) -> &str {
        &self.name
    }
}

/// One node's part in the election.
pub struct Election {
    etcd: Arc<Etcd>,
    config: ElectionConfig,
    shared: Arc<Shared>,
    leader_key: Vec<u8>,
}

impl Election {
    pub fn new(etcd: Arc<Etcd>, config: ElectionConfig) -> Election {
        let leader_key = format!("{}/leader", config.prefix).into_bytes();
        Election {
            etcd,
            config,
            shared: Arc::new(Shared::new()),
            leader_key,
        }
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    pub fn coordinator(&self) -> Arc<EtcdCoordinator> {
        Arc::new(EtcdCoordinator {
            name: self.config.name.clone(),
            shared: self.shared.clone(),
        })
    }

    /// A handle that can make fenced writes from elsewhere (the replicated log).
    pub fn fence(&self) -> Fence {
        Fence {
            etcd: self.etcd.clone(),
            shared: self.shared.clone(),
            leader_key: self.leader_key.clone(),
        }
    }

    /// The HA loop, until `shutdown` turns true; a leader then hands over at once by
    /// deleting its key and revoking its lease.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let ttl = self.config.lease_ttl;
        // Renewals every fifth of the lease (Kubernetes: a 15 s lease renewed every 2 s): two
        // thirds of the lease is the renew deadline, so a leader survives several slow or
        // lost renewals before it must stop acting, and a stall on a busy machine does not
        // end a term.
        let renew_every = (ttl / 5).max(Duration::from_millis(300));
        let mut lease: Option<i64> = None;
        let mut last_renew = Instant::now() - ttl;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // 1. The lease: granted once, renewed every fifth of it.
            if lease.is_none() || last_renew.elapsed() >= renew_every {
                let sent = Instant::now();
                let renewed = match lease {
                    None => self.etcd.grant(ttl).await.map(|id| {
                        lease = Some(id);
                        self.shared.lease.store(id, Ordering::Relaxed);
                        true
                    }),
                    Some(id) => self.etcd.keep_alive(id).await.map(|ttl| ttl.is_some()),
                };
                match renewed {
                    Ok(true) => {
                        self.shared.reachable.store(true, Ordering::Relaxed);
                        last_renew = sent;
                        *self
                            .shared
                            .renewed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(sent);
                        if matches!(self.shared.role(), Role::Leader { .. }) {
                            self.set_deadline(Some(sent + ttl * 2 / 3));
                        }
                    }
                    Ok(false) => {
                        self.shared.reachable.store(true, Ordering::Relaxed);
                        lease = None;
                        self.shared.lease.store(0, Ordering::Relaxed);
                        self.step_down("the lease expired before it was renewed");
                        continue;
                    }
                    Err(e) => {
                        self.shared.reachable.store(false, Ordering::Relaxed);
                        warn!(error = %e, "cluster: cannot renew the lease");
                        self.check_deadline();
                        if !matches!(self.shared.role(), Role::Leader { .. }) {
                            self.shared.set_role(Role::Unknown);
                        }
                    }
                }
            }
            // 2. Lead, or see who does.
            if let Some(id) = lease {
                if let Err(e) = self.campaign_or_observe(id, last_renew).await {
                    self.shared.reachable.store(false, Ordering::Relaxed);
                    warn!(error = %e, "cluster: cannot read the leader key");
                    self.check_deadline();
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1).min(renew_every)) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.resign(lease).await;
    }

    async fn campaign_or_observe(&self, lease: i64, renewed: Instant) -> Result<(), EtcdError> {
        let me = LeaderInfo {
            name: self.config.name.clone(),
            url: self.config.url.clone(),
            since_ms: crate::clock::Timestamp::now().as_millis(),
        };
        let value = serde_json::to_vec(&me).unwrap_or_default();
        let r = self
            .etcd
            .txn(
                &[Compare::CreateRevision(self.leader_key.clone(), 0)],
                &[Op::Put {
                    key: self.leader_key.clone(),
                    value,
                    lease,
                }],
                &[Op::Get {
                    key: self.leader_key.clone(),
                }],
            )
            .await?;
        self.shared.reachable.store(true, Ordering::Relaxed);
        if r.succeeded {
            self.set_deadline(Some(renewed + self.config.lease_ttl * 2 / 3));
            self.shared.leader_changes.fetch_add(1, Ordering::Relaxed);
            info!(node = %self.config.name, term = r.revision, "cluster: this node leads");
            self.shared.set_role(Role::Leader { term: r.revision });
            return Ok(());
        }
        let current = r.gets.first().and_then(|kvs| kvs.first());
        match (self.shared.role(), current) {
            (Role::Leader { term }, Some(kv)) if kv.create_revision == term => {
                // Still ours.
            }
            (Role::Leader { term }, _) => {
                self.step_down(&format!(
                    "the leader key is no longer this node's (term {term})"
                ));
            }
            // The key is still ours from before etcd became unreachable (our lease outlived
            // the outage: etcd extends leases when it elects a new raft leader). Nobody else
            // can have led meanwhile, since the key existed throughout: lead again in the
            // same term.
            (_, Some(kv)) if kv.lease == lease => {
                self.set_deadline(Some(renewed + self.config.lease_ttl * 2 / 3));
                self.shared.leader_changes.fetch_add(1, Ordering::Relaxed);
                info!(node = %self.config.name, term = kv.create_revision, "cluster: this node leads again");
                self.shared.set_role(Role::Leader {
                    term: kv.create_revision,
                });
            }
            (_, kv) => {
                let info = kv.and_then(|kv| serde_json::from_slice::<LeaderInfo>(&kv.value).ok());
                if let Some(i) = &info {
                    if !matches!(self.shared.role(), Role::Follower(Some(ref old)) if old.name == i.name)
                    {
                        self.shared.leader_changes.fetch_add(1, Ordering::Relaxed);
                        info!(leader = %i.name, "cluster: following");
                    }
                }
                self.shared.set_role(Role::Follower(info));
            }
        }
        Ok(())
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        *self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = deadline;
    }

    /// A leader whose renew deadline passed without a renewal stops acting.
    fn check_deadline(&self) {
        if matches!(self.shared.role(), Role::Leader { .. }) && self.shared.acting_term().is_none()
        {
            self.step_down("could not renew the lease within the renew deadline");
        }
    }

    fn step_down(&self, why: &str) {
        step_down(&self.shared, why);
    }

    async fn resign(&self, lease: Option<i64>) {
        if let Some(term) = self.shared.acting_term() {
            let _ = self
                .etcd
                .txn(
                    &[Compare::CreateRevision(self.leader_key.clone(), term)],
                    &[Op::Delete {
                        key: self.leader_key.clone(),
                    }],
                    &[],
                )
                .await;
        }
        self.set_deadline(None);
        self.shared.set_role(Role::Unknown);
        if let Some(id) = lease {
            let _ = self.etcd.revoke(id).await;
        }
        info!(node = %self.config.name, "cluster: left the election");
    }
}

fn step_down(shared: &Shared, why: &str) {
    *shared.deadline.lock().unwrap_or_else(|p| p.into_inner()) = None;
    if matches!(shared.role(), Role::Leader { .. }) {
        shared.demotions.fetch_add(1, Ordering::Relaxed);
        warn!(why, "cluster: this node steps down and stops acting");
        shared.set_role(Role::Follower(None));
    }
}

/// The one way to write to etcd as the leader (the replicated log's writer, tests).
#[derive(Clone)]
pub struct Fence {
    etcd: Arc<Etcd>,
    shared: Arc<Shared>,
    leader_key: Vec<u8>,
}

impl Fence {
    /// Runs `ops` in one transaction only while this node's term holds (plus `compare`).
    /// A refusal because the term is over is counted and makes this node step down; a
    /// refusal because one of `compare` failed is returned as `Ok` with `succeeded: false`
    /// and the `Get`s of `failure`.
    pub async fn txn(
        &self,
        compare: &[Compare],
        ops: &[Op],
        failure: &[Op],
    ) -> Result<TxnResult, FenceError> {
        let (etcd, shared, leader_key) = (&self.etcd, &self.shared, &self.leader_key);
        let term = shared.acting_term().ok_or(FenceError::NotLeader)?;
        let mut all = vec![Compare::CreateRevision(leader_key.clone(), term)];
        all.extend_from_slice(compare);
        // The failure branch reads the leader key first, to tell "fenced" from "a compare of
        // the caller's failed".
        let mut on_failure = vec![Op::Get {
            key: leader_key.clone(),
        }];
        on_failure.extend_from_slice(failure);
        let mut r = etcd.txn(&all, ops, &on_failure).await?;
        if !r.succeeded {
            let still_ours = r
                .gets
                .first()
                .and_then(|kvs| kvs.first())
                .is_some_and(|kv| kv.create_revision == term);
            if !still_ours {
                shared.fenced_writes.fetch_add(1, Ordering::Relaxed);
                step_down(shared, "a write was fenced: another node leads now");
                return Err(FenceError::Fenced { term });
            }
            r.gets.remove(0);
        }
        Ok(r)
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Ends this node's term now (Patroni's rule: a leader that cannot write its state to
    /// the DCS demotes itself): the daemon stops acting, and the next leader, perhaps this
    /// node again, starts from the replicated log.
    pub fn resign(&self, why: &str) {
        step_down(&self.shared, why);
    }
}
