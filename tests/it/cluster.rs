//! Cluster mode against a real three-member etcd cluster on loopback: one leader, takeover after a leader dies, fencing of a deposed leader, and no leader while etcd has no quorum.

use crate::support::etcd::EtcdCluster;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::cluster::election::{Election, ElectionConfig, FenceError, Role, Shared};
use switchboard::cluster::etcd::{Etcd, Op};
use switchboard::cluster::Coordinator;
use tokio::sync::watch;

const TTL: Duration = Duration::from_secs(3);

/// One node's election, running on the test's runtime.
struct Node {
    shared: Arc<Shared>,
    fence: switchboard::cluster::election::Fence,
    coordinator: Arc<dyn Coordinator>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn client(cluster: &EtcdCluster) -> Arc<Etcd> {
    Arc::new(Etcd::new(cluster.endpoints(), None, None, Duration::from_millis(800)).unwrap())
}

fn node(cluster: &EtcdCluster, name: &str, prefix: &str) -> Node {
    node_with(cluster, name, prefix, TTL)
}

fn node_with(cluster: &EtcdCluster, name: &str, prefix: &str, ttl: Duration) -> Node {
    let election = Election::new(
        client(cluster),
        ElectionConfig {
            name: name.into(),
            url: format!("http://{name}.invalid"),
            prefix: prefix.into(),
            lease_ttl: ttl,
        },
    );
    let (stop, rx) = watch::channel(false);
    let shared = election.shared();
    let fence = election.fence();
    let coordinator: Arc<dyn Coordinator> = election.coordinator();
    let task = tokio::spawn(election.run(rx));
    Node {
        shared,
        fence,
        coordinator,
        stop,
        task,
    }
}

async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn leaders(nodes: &[&Node]) -> usize {
    nodes.iter().filter(|n| n.coordinator.is_leader()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_a_takeover_within_the_lease_after_the_leader_dies() {
    let etcd = EtcdCluster::start(3);
    let a = node(&etcd, "a", "/t1");
    let b = node(&etcd, "b", "/t1");
    let c = node(&etcd, "c", "/t1");
    wait_for("a leader", Duration::from_secs(10), || {
        leaders(&[&a, &b, &c]) == 1
    })
    .await;
    // Several rounds of the HA loop later there is still exactly one.
    tokio::time::sleep(TTL).await;
    assert_eq!(leaders(&[&a, &b, &c]), 1, "exactly one leader");
    let all = [a, b, c];
    let (dead, alive): (Vec<_>, Vec<_>) = all.into_iter().partition(|n| n.coordinator.is_leader());
    let dead = &dead[0];
    let followers_saw = alive.iter().map(|n| n.shared.role()).collect::<Vec<_>>();
    assert!(
        followers_saw
            .iter()
            .all(|r| matches!(r, Role::Follower(Some(l)) if l.name == dead.coordinator.node())),
        "followers name the leader: {followers_saw:?}"
    );
    // Death without a goodbye: the loop stops, nothing revokes the lease.
    dead.task.abort();
    let killed = Instant::now();
    wait_for("a new leader", TTL + Duration::from_secs(3), || {
        alive.iter().filter(|n| n.coordinator.is_leader()).count() == 1
    })
    .await;
    let took = killed.elapsed();
    println!("takeover after the leader died: {took:?} (lease {TTL:?})");
    assert!(took <= TTL + Duration::from_secs(2), "took {took:?}");
    for n in &alive {
        let _ = n.stop.send(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_writes_are_fenced_and_it_steps_down() {
    let etcd = EtcdCluster::start(3);
    // A long lease, so that the deposed leader's own renew deadline (two thirds of it) has
    // not passed yet when it writes: the refusal must come from etcd.
    let ttl = Duration::from_secs(9);
    let a = node_with(&etcd, "a", "/t2", ttl);
    wait_for("a leads", Duration::from_secs(10), || {
        a.coordinator.is_leader()
    })
    .await;
    let put = |v: &[u8]| Op::Put {
        key: b"/t2/state".to_vec(),
        value: v.to_vec(),
        lease: 0,
    };
    let ok = a
        .fence
        .txn(&[], &[put(b"1")], &[])
        .await
        .expect("the leader writes");
    assert!(ok.succeeded);
    // a freezes (its HA loop stops, as under SIGSTOP) and loses the key: as after its lease
    // expired, another node takes it.
    a.task.abort();
    let raw = client(&etcd);
    let _ = raw
        .txn(
            &[],
            &[Op::Delete {
                key: b"/t2/leader".to_vec(),
            }],
            &[],
        )
        .await
        .unwrap();
    let b = node_with(&etcd, "b", "/t2", ttl);
    wait_for("b leads", Duration::from_secs(5), || {
        b.coordinator.is_leader()
    })
    .await;
    // a still believes it leads (its deadline has not passed); the write it makes is refused.
    assert!(
        a.coordinator.is_leader(),
        "a's renew deadline passed too early for this test"
    );
    match a.fence.txn(&[], &[put(b"stale")], &[]).await {
        Err(FenceError::Fenced { .. }) => {}
        other => panic!("a deposed leader's write was not fenced: {other:?}"),
    }
    let (kvs, _) = raw.get(b"/t2/state", false).await.unwrap();
    assert_eq!(kvs[0].value, b"1", "the fenced write changed nothing");
    assert!(
        !a.coordinator.is_leader(),
        "a fenced leader steps down at once"
    );
    assert!(b.coordinator.is_leader());
    let fenced = a
        .shared
        .fenced_writes
        .load(std::sync::atomic::Ordering::Relaxed);
    let demoted = a
        .shared
        .demotions
        .load(std::sync::atomic::Ordering::Relaxed);
    println!("deposed leader: fenced writes {fenced}, demotions {demoted}");
    assert_eq!((fenced, demoted), (1, 1));
    let _ = a.stop.send(true);
    let _ = b.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_etcd_majority_nobody_acts_and_leading_resumes_after() {
    let mut etcd = EtcdCluster::start(3);
    let a = node(&etcd, "a", "/t3");
    let b = node(&etcd, "b", "/t3");
    wait_for("a leader", Duration::from_secs(10), || {
        leaders(&[&a, &b]) == 1
    })
    .await;
    etcd.stop_member(0);
    etcd.stop_member(1);
    let lost = Instant::now();
    let took = wait_for(
        "the leader stops acting",
        TTL + Duration::from_secs(3),
        || leaders(&[&a, &b]) == 0,
    )
    .await;
    println!("leader stopped acting {took:?} after etcd lost its majority (lease {TTL:?})");
    assert!(took <= TTL, "a leader acted past its lease: {took:?}");
    // And nobody takes over while etcd has no quorum.
    tokio::time::sleep(TTL).await;
    assert_eq!(leaders(&[&a, &b]), 0, "a leader without an etcd majority");
    assert!(!a.shared.etcd_reachable() && !b.shared.etcd_reachable());
    etcd.start_member(0);
    etcd.start_member(1);
    let back = wait_for("a leader again", Duration::from_secs(20), || {
        leaders(&[&a, &b]) == 1
    })
    .await;
    println!(
        "leading resumed {back:?} after etcd's majority returned ({:?} since it was lost)",
        lost.elapsed()
    );
    let _ = a.stop.send(true);
    let _ = b.stop.send(true);
}

/// A node's store in cluster mode: its file, the replicating writer and the applier.
struct Replica {
    store: Arc<switchboard::store::Store>,
    handle: switchboard::store::StoreHandle,
    applier: Arc<switchboard::store::cluster_log::Applier>,
    stop: watch::Sender<bool>,
}

fn replica(
    etcd: &EtcdCluster,
    dir: &std::path::Path,
    node: &Node,
    name: &str,
    prefix: &str,
) -> Replica {
    use switchboard::store::cluster_log::{Applier, ClusterLog, Replicator};
    use switchboard::store::{Store, StoreHandle};
    let store = Arc::new(Store::open(&dir.join(format!("{name}.db"))).unwrap());
    store.enable_capture().unwrap();
    let log = ClusterLog::new(client(etcd), prefix);
    let replicator = Replicator::new(
        log.clone(),
        node.fence.clone(),
        name.into(),
        tokio::runtime::Handle::current(),
        Duration::from_secs(2),
    );
    let handle = StoreHandle::around(store.clone(), Some(Arc::new(replicator)));
    let applier = Arc::new(Applier::new(log, handle.clone()));
    let (stop, rx) = watch::channel(false);
    tokio::spawn(applier.clone().run(rx));
    Replica {
        store,
        handle,
        applier,
        stop,
    }
}

fn transition(
    from: switchboard::failover::State,
    to: switchboard::failover::State,
    at: i64,
) -> switchboard::failover::Transition {
    switchboard::failover::Transition {
        service: "portal".into(),
        from,
        to,
        cause: switchboard::failover::Cause::PrimaryDown,
        at: switchboard::clock::Timestamp(at),
        actor: "system".into(),
        reason: "form failing".into(),
        evidence: vec!["portal-form: down".into()],
        public_message: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_writes_reach_every_node_in_order_and_a_deposed_leader_writes_nothing() {
    use switchboard::clock::Timestamp;
    use switchboard::failover::State;
    let etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(9);
    let a = node_with(&etcd, "a", "/t4", ttl);
    wait_for("a leads", Duration::from_secs(10), || {
        a.coordinator.is_leader()
    })
    .await;
    let b = node_with(&etcd, "b", "/t4", ttl);
    wait_for("b follows", Duration::from_secs(10), || {
        matches!(b.shared.role(), Role::Follower(Some(_)))
    })
    .await;
    let ra = replica(&etcd, dir.path(), &a, "a", "/t4");
    let rb = replica(&etcd, dir.path(), &b, "b", "/t4");

    // The leader writes: a service, a failover with its on-call e-mail, an operator's
    // audit record, a failback.
    ra.handle
        .write(|s| s.ensure_service("portal", Timestamp(1)).map(|_| ()))
        .await
        .unwrap();
    let started = Instant::now();
    ra.handle
        .commit_transition(
            transition(State::Operational, State::FailedOver, 10),
            "v1".into(),
            Vec::new(),
        )
        .await
        .unwrap();
    let one_write = started.elapsed();
    ra.handle
        .commit_transition(
            transition(State::FailedOver, State::Operational, 20),
            "v1".into(),
            Vec::new(),
        )
        .await
        .unwrap();
    let mut applied = rb.applier.applied();
    let lag = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), applied.wait_for(|s| *s >= 3))
        .await
        .expect("the follower applies the leader's three entries")
        .unwrap();
    println!(
        "replicated write {one_write:?}; follower caught up {:?} after the last",
        lag.elapsed()
    );
    assert_eq!(
        ra.store.replicated_rows().unwrap(),
        rb.store.replicated_rows().unwrap()
    );
    let verdict = rb.store.verify_audit().unwrap();
    assert!(
        matches!(
            verdict,
            switchboard::audit::Verdict::Intact { records: 2, .. }
        ),
        "the follower's audit chain is the leader's: {verdict}"
    );

    // A follower cannot write shared state behind the log's back.
    let refused = rb
        .handle
        .write(|s| s.ensure_service("other", Timestamp(2)).map(|_| ()))
        .await;
    assert!(
        matches!(refused, Err(switchboard::store::StoreError::Replica(_))),
        "{refused:?}"
    );
    assert!(!rb
        .store
        .replicated_rows()
        .unwrap()
        .iter()
        .any(|l| l.contains("\"other\"")));

    // a is deposed (its loop frozen, its key taken by b): its next write is fenced, rolled
    // back here, and never reaches the log.
    a.task.abort();
    let raw = client(&etcd);
    raw.txn(
        &[],
        &[Op::Delete {
            key: b"/t4/leader".to_vec(),
        }],
        &[],
    )
    .await
    .unwrap();
    wait_for("b leads", Duration::from_secs(5), || {
        b.coordinator.is_leader()
    })
    .await;
    let before = ra.store.replicated_rows().unwrap();
    let fenced = ra
        .handle
        .commit_transition(
            transition(State::Operational, State::FailedOver, 30),
            "v1".into(),
            Vec::new(),
        )
        .await;
    assert!(
        matches!(fenced, Err(switchboard::store::StoreError::Replica(ref m)) if m.contains("fenced")),
        "{fenced:?}"
    );
    assert_eq!(
        ra.store.replicated_rows().unwrap(),
        before,
        "the fenced write was rolled back"
    );
    // The new leader carries on from the same log: its write is entry 4 on both nodes.
    rb.handle
        .commit_transition(
            transition(State::Operational, State::FailedOver, 40),
            "v1".into(),
            Vec::new(),
        )
        .await
        .unwrap();
    let mut applied_a = ra.applier.applied();
    tokio::time::timeout(Duration::from_secs(5), applied_a.wait_for(|s| *s >= 4))
        .await
        .expect("the old leader applies the new leader's entry")
        .unwrap();
    assert_eq!(
        ra.store.replicated_rows().unwrap(),
        rb.store.replicated_rows().unwrap()
    );
    assert_eq!(rb.store.applied_seq().unwrap().0, 4);
    for r in [&ra, &rb] {
        let _ = r.stop.send(true);
    }
    let _ = b.stop.send(true);
}
