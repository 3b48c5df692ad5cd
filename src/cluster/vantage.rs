//! This node as a vantage: the board of votes it holds (its own report and the live peers'), and the tasks that publish its report to etcd and follow the others' under `{prefix}/votes/`.
//!
//! A report is written only when one of this node's verdicts (or its suspect flag, or its
//! lease) changes, never per probe, so etcd's write rate follows state changes and not the
//! probe rate. Each report is attached to its node's lease: a node that dies takes its votes
//! with it once the lease expires, and the leader's quorum is recomputed from the live ones.

use super::election::Shared;
use super::etcd::{Etcd, Event, Op, WatchItem};
use super::votes::{decide, Decision, Report, Rule, Verdict};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// The votes this node knows: its own and those of the other live vantages.
pub struct VoteBoard {
    own: Mutex<Report>,
    /// What this node publishes: per check its last verdict that was not merely `suspect`
    /// (one failed probe, not confirmed). A failure confirmed or cleared is news to the other
    /// vantages; a single failed probe that the next one contradicts is not, and publishing
    /// it would make etcd's write rate follow the probe rate on a noisy network.
    published: Mutex<BTreeMap<String, Verdict>>,
    own_changed: watch::Sender<u64>,
    remote: Mutex<BTreeMap<String, Report>>,
    remote_changed: watch::Sender<u64>,
    /// This node's place among the vantages (index, count), which offsets its probes so that
    /// the vantages' probes of one check spread evenly over the interval.
    slot: Mutex<(u32, u32)>,
}

impl VoteBoard {
    pub fn new(node: &str) -> Arc<VoteBoard> {
        Arc::new(VoteBoard {
            own: Mutex::new(Report {
                node: node.to_string(),
                ..Report::default()
            }),
            own_changed: watch::Sender::new(0),
            published: Mutex::new(BTreeMap::new()),
            remote: Mutex::new(BTreeMap::new()),
            remote_changed: watch::Sender::new(0),
            slot: Mutex::new((0, 1)),
        })
    }

    fn own_lock(&self) -> std::sync::MutexGuard<'_, Report> {
        self.own.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remote_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Report>> {
        self.remote.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn node(&self) -> String {
        self.own_lock().node.clone()
    }

    fn published_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Verdict>> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records this node's verdict on a check. It is published only when the health it
    /// publishes changes: `suspect` (failing, not confirmed) is kept for this node's own
    /// decisions and not published at all.
    pub fn set_own(&self, key: &str, verdict: Verdict) {
        let health = verdict.health;
        self.own_lock()
            .checks
            .insert(key.to_string(), verdict.clone());
        if health == crate::health::Health::Suspect {
            return;
        }
        let mut published = self.published_lock();
        if published.get(key).map(|v| v.health) != Some(health) {
            published.insert(key.to_string(), verdict);
            drop(published);
            self.own_changed.send_modify(|n| *n += 1);
        }
    }

    /// This node's report as the other vantages read it (`set_own`).
    pub fn published(&self) -> Report {
        let own = self.own_lock();
        Report {
            node: own.node.clone(),
            suspect: own.suspect,
            checks: self.published_lock().clone(),
        }
    }

    /// Whether this node distrusts its own network (its votes are then not counted).
    pub fn set_suspect(&self, suspect: bool) {
        let mut own = self.own_lock();
        if own.suspect != suspect {
            own.suspect = suspect;
            drop(own);
            self.own_changed.send_modify(|n| *n += 1);
        }
    }

    /// Forgets this node's verdicts on checks no longer configured.
    pub fn retain_own(&self, keep: impl Fn(&str) -> bool) {
        let mut own = self.own_lock();
        own.checks.retain(|k, _| keep(k));
        drop(own);
        let mut published = self.published_lock();
        let before = published.len();
        published.retain(|k, _| keep(k));
        let changed = published.len() != before;
        drop(published);
        if changed {
            self.own_changed.send_modify(|n| *n += 1);
        }
    }

    pub fn own(&self) -> Report {
        self.own_lock().clone()
    }

    /// The reports of the other live vantages.
    pub fn remote(&self) -> BTreeMap<String, Report> {
        self.remote_lock().clone()
    }

    #[cfg(test)]
    fn set_remote(&self, node: &str, report: Option<Report>) {
        let mut remote = self.remote_lock();
        let changed = match report {
            Some(r) => remote.insert(node.to_string(), r.clone()).as_ref() != Some(&r),
            None => remote.remove(node).is_some(),
        };
        drop(remote);
        if changed {
            self.remote_changed.send_modify(|n| *n += 1);
        }
    }

    fn replace_remote(&self, reports: BTreeMap<String, Report>) {
        let mut remote = self.remote_lock();
        let changed = *remote != reports;
        *remote = reports;
        drop(remote);
        if changed {
            self.remote_changed.send_modify(|n| *n += 1);
        }
    }

    /// Every live vantage's report, this node's first.
    pub fn reports(&self) -> Vec<Report> {
        let mut all = vec![self.own()];
        all.extend(self.remote_lock().values().cloned());
        all
    }

    /// Every live vantage's report reduced to its verdict on `key`: what a decision on that
    /// one check reads, without copying every other verdict.
    pub fn slice(&self, key: &str) -> Vec<Report> {
        let one = |r: &Report| Report {
            node: r.node.clone(),
            suspect: r.suspect,
            checks: r
                .checks
                .get(key)
                .map(|v| (key.to_string(), v.clone()))
                .into_iter()
                .collect(),
        };
        let mut all = vec![one(&self.own_lock())];
        all.extend(self.remote_lock().values().map(one));
        all
    }

    /// What the live vantages decide about the check `key`.
    pub fn decide(&self, key: &str, rule: Rule) -> Decision {
        decide(self.slice(key).iter(), key, rule)
    }

    pub fn subscribe_remote(&self) -> watch::Receiver<u64> {
        self.remote_changed.subscribe()
    }

    pub fn subscribe_own(&self) -> watch::Receiver<u64> {
        self.own_changed.subscribe()
    }

    pub fn slot(&self) -> (u32, u32) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_slot(&self, index: u32, count: u32) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = (index, count.max(1));
    }
}

/// The key under which `node` publishes its verdicts on the checks of `service`.
fn key(prefix: &str, node: &str, service: &str) -> String {
    format!("{prefix}/votes/{node}/{service}")
}

/// A report cut into one document per service (keys are `service/check`), so a change of
/// verdict rewrites one service's document and no value grows with the whole configuration.
fn by_service(report: &Report) -> BTreeMap<String, Report> {
    let mut docs: BTreeMap<String, Report> = BTreeMap::new();
    for (k, v) in &report.checks {
        let service = k.split_once('/').map_or(k.as_str(), |(s, _)| s);
        docs.entry(service.to_string())
            .or_insert_with(|| Report {
                node: report.node.clone(),
                suspect: report.suspect,
                checks: BTreeMap::new(),
            })
            .checks
            .insert(k.clone(), v.clone());
    }
    docs
}

/// Keeps this node's verdicts in etcd: each service's document written when it changes (at
/// most every 200 ms) and all of them when the lease changes, attached to the lease; a
/// service no longer configured has its document deleted.
pub async fn publish(
    etcd: Arc<Etcd>,
    board: Arc<VoteBoard>,
    shared: Arc<Shared>,
    prefix: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let node = board.node();
    let mut changed = board.subscribe_own();
    let mut written: BTreeMap<String, (i64, Report)> = BTreeMap::new();
    loop {
        let lease = shared.lease_id();
        let mut failed = lease == 0;
        if lease != 0 {
            let docs = by_service(&board.published());
            // The changed documents, written together: one transaction (one revision) per
            // batch, so a change touching many services costs a few writes, not one each.
            let changed: Vec<(&String, &Report)> = docs
                .iter()
                .filter(|(service, doc)| written.get(*service) != Some(&(lease, (*doc).clone())))
                .collect();
            for batch in changed.chunks(64) {
                let ops: Vec<Op> = batch
                    .iter()
                    .map(|(service, doc)| Op::Put {
                        key: key(&prefix, &node, service).into_bytes(),
                        value: serde_json::to_vec(doc).unwrap_or_default(),
                        lease,
                    })
                    .collect();
                match etcd.txn(&[], &ops, &[]).await {
                    Ok(_) => {
                        for (service, doc) in batch {
                            written.insert((*service).clone(), (lease, (*doc).clone()));
                        }
                    }
                    Err(e) => {
                        if !failed {
                            warn!("cluster: cannot publish this vantage's votes ({e}); retrying");
                        }
                        failed = true;
                        break;
                    }
                }
            }
            let gone: Vec<String> = written
                .keys()
                .filter(|s| !docs.contains_key(*s))
                .cloned()
                .collect();
            for service in gone {
                let k = key(&prefix, &node, &service).into_bytes();
                if etcd.delete(&k).await.is_ok() {
                    written.remove(&service);
                } else {
                    failed = true;
                }
            }
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = shutdown.changed() => return,
            // The lease may change without a verdict changing (a new one after expiry), and
            // a failed write is tried again.
            _ = tokio::time::sleep(if failed { Duration::from_millis(500) } else { Duration::from_secs(2) }) => {}
        }
        // Verdicts of many checks changing together are written together.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Follows the other vantages' verdicts: reads them all, then watches for changes; a
/// document deleted (its node's lease expired or revoked) takes its votes away, and a node
/// with no document left is a vantage gone.
pub async fn follow(
    etcd: Arc<Etcd>,
    board: Arc<VoteBoard>,
    prefix: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let dir = format!("{prefix}/votes/");
    let me = board.node();
    // (node, service) of a document's key.
    let parse_key = |k: &[u8]| {
        let k = String::from_utf8_lossy(k);
        let rest = k.strip_prefix(dir.as_str())?;
        let (node, service) = rest.split_once('/')?;
        Some((node.to_string(), service.to_string()))
    };
    let mut failing = false;
    while !*shutdown.borrow() {
        let round = async {
            let (kvs, rev) = etcd
                .get(dir.as_bytes(), true)
                .await
                .map_err(|e| e.to_string())?;
            let mut docs: BTreeMap<(String, String), Report> = BTreeMap::new();
            for kv in &kvs {
                let Some((node, service)) = parse_key(&kv.key) else {
                    continue;
                };
                if node == me {
                    continue;
                }
                if let Ok(doc) = serde_json::from_slice::<Report>(&kv.value) {
                    docs.insert((node, service), doc);
                }
            }
            board.replace_remote(merge(&docs));
            let mut events = etcd.watch(dir.as_bytes(), true, rev + 1);
            while let Some(item) = events.recv().await {
                match item {
                    WatchItem::Events(es) => {
                        for ev in es {
                            match ev {
                                Event::Put(kv) => {
                                    let Some((node, service)) = parse_key(&kv.key) else {
                                        continue;
                                    };
                                    if node == me {
                                        continue;
                                    }
                                    match serde_json::from_slice::<Report>(&kv.value) {
                                        Ok(doc) => {
                                            docs.insert((node, service), doc);
                                        }
                                        Err(e) => warn!("cluster: vantage {node} published votes this node cannot read ({e}); ignored"),
                                    }
                                }
                                Event::Delete { key, .. } => {
                                    let Some((node, service)) = parse_key(&key) else {
                                        continue;
                                    };
                                    if docs.remove(&(node.clone(), service)).is_some()
                                        && !docs.keys().any(|(n, _)| *n == node)
                                    {
                                        info!("cluster: vantage {node} is gone (its lease ended); its votes no longer count");
                                    }
                                }
                            }
                        }
                        board.replace_remote(merge(&docs));
                    }
                    WatchItem::Ended(why) => return Err(why),
                }
            }
            Ok::<(), String>(())
        };
        let result = tokio::select! {
            r = round => r,
            _ = shutdown.changed() => break,
        };
        if let Err(e) = result {
            if !failing {
                warn!("cluster: following the vantages' votes failed ({e}); retrying");
            }
            failing = true;
        } else {
            failing = false;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// Each node's report, from its per-service documents.
fn merge(docs: &BTreeMap<(String, String), Report>) -> BTreeMap<String, Report> {
    let mut all: BTreeMap<String, Report> = BTreeMap::new();
    for ((node, _), doc) in docs {
        let r = all.entry(node.clone()).or_insert_with(|| Report {
            node: node.clone(),
            ..Report::default()
        });
        r.suspect |= doc.suspect;
        r.checks
            .extend(doc.checks.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::health::Health;

    fn verdict(health: Health, outcome: &str) -> Verdict {
        Verdict {
            health,
            outcome: outcome.into(),
            at: Timestamp::from_millis(5),
            streak: 1,
            threshold: 1,
        }
    }

    #[test]
    fn only_a_change_of_verdict_is_published_not_a_new_outcome() {
        let b = VoteBoard::new("a");
        let rx = b.subscribe_own();
        b.set_own("s/c", verdict(Health::Healthy, "200 in 3 ms"));
        assert!(rx.has_changed().unwrap());
        let mut rx = b.subscribe_own();
        rx.mark_unchanged();
        b.set_own("s/c", verdict(Health::Healthy, "200 in 4 ms"));
        assert!(!rx.has_changed().unwrap(), "same verdict, new outcome");
        rx.mark_unchanged();
        // One failed probe (suspect) is not published; confirmed down is.
        b.set_own("s/c", verdict(Health::Suspect, "503"));
        assert!(!rx.has_changed().unwrap(), "suspect is not news");
        assert_eq!(b.published().checks["s/c"].health, Health::Healthy);
        assert_eq!(b.own().checks["s/c"].health, Health::Suspect);
        b.set_own("s/c", verdict(Health::Healthy, "200 in 5 ms"));
        assert!(
            !rx.has_changed().unwrap(),
            "a failure the next probe contradicts"
        );
        assert_eq!(b.published().checks["s/c"].outcome, "200 in 3 ms");
        b.set_own("s/c", verdict(Health::Down, "refused"));
        assert!(rx.has_changed().unwrap());
        b.set_suspect(true);
        assert!(b.own().suspect);
    }

    #[test]
    fn remote_reports_join_and_leave_the_decision() {
        let b = VoteBoard::new("a");
        b.set_own("s/c", verdict(Health::Down, "refused"));
        let mut peer = Report {
            node: "b".into(),
            ..Report::default()
        };
        peer.checks
            .insert("s/c".into(), verdict(Health::Healthy, "200"));
        b.set_remote("b", Some(peer.clone()));
        peer.node = "c".into();
        b.set_remote("c", Some(peer));
        assert_eq!(
            b.decide("s/c", Rule::default()).health,
            Some(Health::Healthy)
        );
        b.set_remote("c", None);
        assert_eq!(b.decide("s/c", Rule::default()).health, None);
        b.set_remote("b", None);
        assert_eq!(b.decide("s/c", Rule::default()).health, Some(Health::Down));
    }
}
