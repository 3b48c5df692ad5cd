//! Cluster mode through real processes: three `switchboard run` nodes on a real three-member etcd cluster, the leader killed with SIGKILL while a primary is down.

use crate::support::daemon::{get, wait_until, write_config_with, Daemon, Target, FILE_MAIL};
use crate::support::etcd::EtcdCluster;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(3);

struct Node {
    name: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    daemon: Option<Daemon>,
}

fn node(name: &str, etcd: &EtcdCluster, target: &Target, prefix: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (config, port) =
        write_config_with(dir.path(), target, FILE_MAIL, "var/switchboard.db", "2s");
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[cluster]\nname = \"{name}\"\netcd = [{endpoints}]\nprefix = \"{prefix}\"\nlease_ttl = \"{}s\"\n",
        LEASE.as_secs()
    ));
    std::fs::write(&config, text).unwrap();
    Node {
        name: name.into(),
        dir,
        config,
        port,
        daemon: None,
    }
}

impl Node {
    fn start(&mut self) {
        let log = self.dir.path().join("switchboard.log");
        self.daemon = Some(Daemon::start_with(&self.config, self.port, &[], Some(&log)));
    }

    fn leads(&self) -> bool {
        self.daemon.as_ref().is_some_and(|d| {
            d.metrics().contains(&format!(
                "switchboard_cluster_leader{{node=\"{}\"}} 1",
                self.name
            ))
        })
    }

    fn go(&self) -> Option<String> {
        let r = get(&format!("http://127.0.0.1:{}/go/submit-ticket", self.port)).ok()?;
        (r.status == 307).then(|| r.header("location")).flatten()
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("var/switchboard.db")
    }

    fn mail(&self) -> Vec<String> {
        crate::support::daemon::read_dir_texts(&self.dir.path().join("var/mail"))
    }
}

fn audit_verify(db: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["audit", "verify", "--db"])
        .arg(db)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_new_leader_fails_over_after_the_leader_is_killed_during_an_outage() {
    let _turn = crate::support::heavy();
    let etcd = EtcdCluster::start(3);
    let target = Target::start();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| node(n, &etcd, &target, "/sb-kill"))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    wait_until("one leader", Duration::from_secs(20), || {
        nodes.iter().filter(|n| n.leads()).count() == 1
    });
    let backup = target.url("/backup");
    let primary = target.url("/form");
    for n in &nodes {
        assert_eq!(
            n.go().as_deref(),
            Some(primary.as_str()),
            "{} sends customers to the primary",
            n.name
        );
    }

    // The primary goes down, and the leader dies before it can act.
    target.set_down(true);
    let leader = nodes.iter().position(Node::leads).unwrap();
    let killed = Instant::now();
    nodes[leader].daemon.as_mut().unwrap().kill9();
    let dead = nodes.remove(leader);
    println!("killed leader {}", dead.name);

    // Customers' links keep working on the other nodes throughout, and switch.
    let mut refused = 0;
    let mut switched = None;
    while killed.elapsed() < Duration::from_secs(30) {
        let mut all_backup = true;
        for n in &nodes {
            match n.go() {
                Some(l) => all_backup &= l == backup,
                None => {
                    refused += 1;
                    all_backup = false;
                }
            }
        }
        if all_backup {
            switched = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let switched = switched.expect("a surviving node fails over within 30 s");
    println!("kill -9 of the leader to the route switched on every surviving node: {switched:?} (lease {LEASE:?}); refused /go requests: {refused}");
    assert_eq!(refused, 0, "followers answered /go throughout");
    // Lease + confirmation (two failed probes at 1 s, adaptive confirmation may add up to three) + 2 s.
    assert!(
        switched <= LEASE + Duration::from_secs(5) + Duration::from_secs(2),
        "{switched:?}"
    );

    // The new leader announced it: its on-call mail names the failover.
    let new_leader = nodes.iter().find(|n| n.leads()).expect("a new leader");
    wait_until("the failover e-mail", Duration::from_secs(10), || {
        new_leader
            .mail()
            .iter()
            .any(|m| m.contains("support-oncall@example.com"))
    });

    // One transition, once, in every node's audit chain, and each chain verifies.
    wait_until(
        "the followers applied the failover",
        Duration::from_secs(5),
        || {
            nodes
                .iter()
                .all(|n| crate::support::daemon::stored_transitions(&n.db()).len() == 1)
        },
    );
    for n in &nodes {
        let t = crate::support::daemon::stored_transitions(&n.db());
        assert_eq!(
            t,
            vec![("operational".to_string(), "failed_over".to_string())],
            "{}",
            n.name
        );
        let (ok, out) = audit_verify(&n.db());
        assert!(ok, "audit verify on {}: {out}", n.name);
    }
}
