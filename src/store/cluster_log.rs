//! The replicated log in etcd: the leader's fenced appends (`Replicator`, the writer's `Around`) and every node's in-order applying (`Applier`).
//!
//! Entry `n` lives at `{prefix}/log/{n:020}` (zero-padded, so key order is log order) as the
//! JSON of `replica::Entry`. The leader appends with one etcd transaction that holds only
//! while its term does and while entry `n` does not exist yet, so two writers can never
//! both append `n`, and a deposed leader cannot append at all.
//!
//! What is not here yet (argued in ARCHITECTURE.md): truncating the log once every node
//! has applied a prefix of it, and a snapshot for a node that joins after a truncation. An
//! entry is a few kilobytes (a transition with its audit record, incident change and
//! outbox rows), so a year of state changes is far below etcd's default 2 GiB quota.

use super::replica::Entry;
use super::{Store, StoreError, StoreHandle};
use crate::clock::Timestamp;
use crate::cluster::election::{Fence, FenceError};
use crate::cluster::etcd::{Compare, Etcd, Event, Op, WatchItem};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// etcd refuses requests over 1.5 MiB by default; an entry stays well below.
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// The log's keys in etcd.
#[derive(Clone)]
pub struct ClusterLog {
    etcd: Arc<Etcd>,
    dir: String,
}

impl ClusterLog {
    pub fn new(etcd: Arc<Etcd>, prefix: &str) -> ClusterLog {
        ClusterLog {
            etcd,
            dir: format!("{prefix}/log/"),
        }
    }

    fn key(&self, seq: u64) -> Vec<u8> {
        format!("{}{seq:020}", self.dir).into_bytes()
    }

    /// The entries from `seq` on, and the revision they were read at.
    pub async fn read_from(&self, seq: u64) -> Result<(Vec<Entry>, i64), StoreError> {
        let (kvs, rev) = self
            .etcd
            .get(self.dir.as_bytes(), true)
            .await
            .map_err(|e| StoreError::Replica(e.to_string()))?;
        let first = self.key(seq);
        let mut entries = Vec::new();
        for kv in kvs.into_iter().filter(|kv| kv.key >= first) {
            entries.push(parse(&kv.value)?);
        }
        entries.sort_by_key(|e| e.seq);
        Ok((entries, rev))
    }
}

fn parse(value: &[u8]) -> Result<Entry, StoreError> {
    serde_json::from_slice(value)
        .map_err(|e| StoreError::Replica(format!("a log entry is not one: {e}")))
}

/// The leader's side: wraps each write job in an outer transaction and appends its rows to
/// the log before committing them (see `replica.rs`).
pub struct Replicator {
    log: ClusterLog,
    fence: Fence,
    node: String,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl Replicator {
    /// `runtime` runs the etcd calls the writer thread waits for.
    pub fn new(
        log: ClusterLog,
        fence: Fence,
        node: String,
        runtime: tokio::runtime::Handle,
        timeout: Duration,
    ) -> Replicator {
        Replicator {
            log,
            fence,
            node,
            runtime,
            timeout,
        }
    }

    fn append(&self, store: &Store) -> Result<Option<(u64, i64)>, StoreError> {
        let changes = store.capture_changes()?;
        if changes.is_empty() {
            return Ok(Some((0, 0)));
        }
        let Some(term) = self.fence.shared().acting_term() else {
            return Err(StoreError::Replica(
                "this node is not the cluster's leader; nothing was written".into(),
            ));
        };
        let (applied, _) = store.applied_seq()?;
        let entry = Entry {
            seq: applied + 1,
            term,
            node: self.node.clone(),
            at_ms: Timestamp::now().as_millis(),
            changes,
        };
        let value = serde_json::to_vec(&entry)
            .map_err(|e| StoreError::Replica(format!("encoding a log entry: {e}")))?;
        if value.len() > MAX_ENTRY_BYTES {
            return Err(StoreError::Replica(format!(
                "one write changed {} rows ({} bytes), more than a log entry holds; nothing was written",
                entry.changes.len(),
                value.len()
            )));
        }
        let key = self.log.key(entry.seq);
        let compare = [Compare::CreateRevision(key.clone(), 0)];
        let ops = [Op::Put {
            key,
            value,
            lease: 0,
        }];
        let put = self.fence.txn(&compare, &ops, &[]);
        let done = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, put).await });
        match done {
            Ok(Ok(r)) if r.succeeded => Ok(Some((entry.seq, term))),
            Ok(Ok(_)) => Err(StoreError::Replica(format!(
                "log entry {} exists already: this node was behind the log; nothing was written",
                entry.seq
            ))),
            Ok(Err(FenceError::Fenced { term })) => Err(StoreError::Replica(format!(
                "fenced: this node's term {term} is over, another node leads; nothing was written"
            ))),
            Ok(Err(e)) => Err(StoreError::Replica(format!("{e}; nothing was written"))),
            Err(_) => Err(StoreError::Replica(format!(
                "etcd did not confirm the write within {:?}; nothing was written here",
                self.timeout
            ))),
        }
    }
}

impl super::handle::Around for Replicator {
    fn before(&self, store: &Store) -> Result<(), StoreError> {
        store.capture_begin()
    }

    fn after(&self, store: &Store) -> Result<(), StoreError> {
        match self.append(store) {
            Ok(applied) => store.capture_end(applied),
            Err(e) => {
                let _ = store.capture_end(None);
                // A leader whose decision did not reach the log must not go on acting on it:
                // its memory is now ahead of the cluster's state. It steps down; whoever leads
                // next (this node too) starts again from the log.
                if self.fence.shared().acting_term().is_some() {
                    self.fence
                        .resign(&format!("a write did not reach the replicated log: {e}"));
                }
                Err(e)
            }
        }
    }

    fn abort(&self, store: &Store) {
        let _ = store.capture_end(None);
    }
}

/// Every node's side: applies the log in order to the local file, and says how far it got.
pub struct Applier {
    log: ClusterLog,
    store: StoreHandle,
    applied: watch::Sender<u64>,
}

impl Applier {
    pub fn new(log: ClusterLog, store: StoreHandle) -> Applier {
        Applier {
            log,
            store,
            applied: watch::channel(0).0,
        }
    }

    /// The last applied sequence number, as it changes.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Applies every entry in the log now; the last sequence number applied.
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        let mut applied = self.local_applied().await?;
        let (entries, _) = self.log.read_from(applied + 1).await?;
        for e in entries {
            applied = self.apply(e).await?;
        }
        Ok(applied)
    }

    async fn local_applied(&self) -> Result<u64, StoreError> {
        let seq = self
            .store
            .write_local(|s| s.applied_seq().map(|(seq, _)| seq))
            .await?;
        self.applied.send_replace(seq);
        Ok(seq)
    }

    async fn apply(&self, e: Entry) -> Result<u64, StoreError> {
        let seq = e.seq;
        self.store.write_local(move |s| s.apply_entry(&e)).await?;
        self.applied.send_if_modified(|a| {
            let moved = *a < seq;
            *a = (*a).max(seq);
            moved
        });
        Ok(seq)
    }

    /// Follows the log until `shutdown`: reads what is there, then watches for more; starts
    /// over from the local file's position after any error.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut failing = false;
        while !*shutdown.borrow() {
            let round = async {
                let applied = self.local_applied().await?;
                let (entries, rev) = self.log.read_from(applied + 1).await?;
                let mut next = applied + 1;
                for e in entries {
                    next = self.apply(e).await? + 1;
                }
                let mut events = self.log.etcd.watch(self.log.dir.as_bytes(), true, rev + 1);
                while let Some(item) = events.recv().await {
                    match item {
                        WatchItem::Events(es) => {
                            for ev in es {
                                let Event::Put(kv) = ev else { continue };
                                let e = parse(&kv.value)?;
                                if e.seq < next {
                                    continue;
                                }
                                if e.seq > next {
                                    // A gap: read the log again from where this file is.
                                    return Ok::<_, StoreError>(());
                                }
                                next = self.apply(e).await? + 1;
                            }
                        }
                        WatchItem::Ended(why) => {
                            return Err(StoreError::Replica(format!("log watch ended: {why}")))
                        }
                    }
                }
                Ok(())
            };
            let result = tokio::select! {
                r = round => r,
                _ = shutdown.changed() => break,
            };
            match result {
                Ok(()) => failing = false,
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "cluster: following the replicated log failed; retrying");
                    }
                    failing = true;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
        }
        info!("cluster: stopped following the replicated log");
    }
}
