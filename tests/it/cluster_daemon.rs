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
            let t: Vec<_> = nodes
                .iter()
                .map(|n| crate::support::daemon::stored_transitions(&n.db()))
                .collect();
            eprintln!("transitions: {t:?}");
            t.iter().all(|t| t.len() == 1)
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

/// Sends a control request to a node; (status, body, the leader that answered).
fn control(
    n: &Node,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String, Option<String>) {
    let r = crate::support::control::request(
        method,
        &format!("http://127.0.0.1:{}{path}", n.port),
        Some(token),
        Some(body),
    );
    (r.status, r.body.clone(), r.header("x-switchboard-leader"))
}

fn signal(n: &Node, sig: &str) {
    let pid = n.daemon.as_ref().unwrap().child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn commands_on_a_follower_run_on_the_leader_a_drill_outlives_its_leader_and_a_paused_leader_changes_nothing(
) {
    let _turn = crate::support::heavy();
    let etcd = EtcdCluster::start(3);
    let target = Target::start();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| node(n, &etcd, &target, "/sb-ops"))
        .collect();
    // One token file for the cluster, as an operator deploys it.
    let tokens = crate::support::control::add_tokens(&nodes[0].config);
    for n in &nodes[1..] {
        std::fs::copy(
            nodes[0].dir.path().join("tokens.toml"),
            n.dir.path().join("tokens.toml"),
        )
        .unwrap();
        let mut text = std::fs::read_to_string(&n.config).unwrap();
        text.push_str("\n[auth]\ntokens_file = \"tokens.toml\"\n");
        std::fs::write(&n.config, text).unwrap();
    }
    for n in &mut nodes {
        n.start();
    }
    wait_until("one leader", Duration::from_secs(20), || {
        nodes.iter().filter(|n| n.leads()).count() == 1
    });
    let (primary, backup) = (target.url("/form"), target.url("/backup"));
    let leader = nodes.iter().position(Node::leads).unwrap();
    let follower = (leader + 1) % 3;

    // An operator's failover sent to a follower: the leader executes it and answers.
    let (status, body, answered_by) = control(
        &nodes[follower],
        "POST",
        "/api/v1/services/ticket-submission/failover",
        &tokens.operator,
        r#"{"reason":"cluster test: move customers to the backup"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(answered_by.as_deref(), Some(nodes[leader].name.as_str()));
    wait_until(
        "every node sends customers to the backup",
        Duration::from_secs(5),
        || {
            nodes
                .iter()
                .all(|n| n.go().as_deref() == Some(backup.as_str()))
        },
    );
    let (status, body, _) = control(
        &nodes[follower],
        "POST",
        "/api/v1/services/ticket-submission/failback",
        &tokens.operator,
        r#"{"reason":"cluster test: back"}"#,
    );
    assert_eq!(status, 200, "{body}");
    wait_until("back on the primary", Duration::from_secs(5), || {
        nodes
            .iter()
            .all(|n| n.go().as_deref() == Some(primary.as_str()))
    });
    // `switchboard status` on a follower shows the cluster: the leader and every node in sync.
    wait_until(
        "every node registered and in sync",
        Duration::from_secs(10),
        || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .arg("status")
                .env(
                    "SWITCHBOARD_URL",
                    format!("http://127.0.0.1:{}", nodes[follower].port),
                )
                .env("SWITCHBOARD_TOKEN", &tokens.viewer)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            out.status.success()
                && text.contains(&format!("leader {}", nodes[leader].name))
                && text.matches("in sync").count() == 3
        },
    );
    // A wrong token is refused by the leader, through the follower.
    let (status, _, _) = control(
        &nodes[follower],
        "POST",
        "/api/v1/services/ticket-submission/failover",
        "not-a-token",
        r#"{"reason":"x"}"#,
    );
    assert_eq!(status, 401);

    // A live drill started through a follower; its leader is killed; the drill still ends at
    // its deadline under the new leader.
    let (status, body, _) = control(
        &nodes[follower],
        "POST",
        "/api/v1/drills",
        &tokens.operator,
        r#"{"service":"ticket-submission","mode":"live","duration":"8s","reason":"cluster drill"}"#,
    );
    assert!(
        status == 200 || status == 201 || status == 202,
        "{status} {body}"
    );
    wait_until("the drill moved customers", Duration::from_secs(5), || {
        nodes
            .iter()
            .all(|n| n.go().as_deref() == Some(backup.as_str()))
    });
    let started = Instant::now();
    nodes[leader].daemon.as_mut().unwrap().kill9();
    let dead = nodes.remove(leader);
    println!("killed leader {} during the drill", dead.name);
    wait_until(
        "the drill ends under the new leader",
        Duration::from_secs(30),
        || {
            nodes
                .iter()
                .all(|n| n.go().as_deref() == Some(primary.as_str()))
        },
    );
    println!(
        "drill reverted {:?} after it started (duration 8 s, leader killed at once)",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "the drill ended early"
    );

    // The new leader is paused past its lease; the other node takes over and handles an
    // outage; the paused one resumes and changes nothing.
    wait_until("a new leader", Duration::from_secs(10), || {
        nodes.iter().any(Node::leads)
    });
    let paused = nodes.iter().position(Node::leads).unwrap();
    let other = 1 - paused;
    let mail_before = nodes[paused].mail().len();
    signal(&nodes[paused], "-STOP");
    wait_until("the other node leads", Duration::from_secs(15), || {
        nodes[other].leads()
    });
    target.set_down(true);
    wait_until("the other node fails over", Duration::from_secs(15), || {
        nodes[other].go().as_deref() == Some(backup.as_str())
    });
    let transitions = crate::support::daemon::stored_transitions(&nodes[other].db());
    signal(&nodes[paused], "-CONT");
    std::thread::sleep(LEASE);
    assert!(!nodes[paused].leads(), "the resumed node does not lead");
    let mail_after = nodes[paused].mail();
    assert_eq!(
        mail_after.len(),
        mail_before,
        "the resumed node sent nothing; its last message:\n{}",
        mail_after.last().map(String::as_str).unwrap_or("")
    );
    let metrics = nodes[paused].daemon.as_ref().unwrap().metrics();
    let demotions = crate::support::daemon::series(&metrics, "switchboard_cluster_demotions_total")
        .unwrap_or(0.0);
    let fenced =
        crate::support::daemon::series(&metrics, "switchboard_cluster_fenced_writes_total")
            .unwrap_or(0.0);
    println!("paused leader after resuming: demotions {demotions}, fenced writes {fenced}");
    assert!(demotions >= 1.0);
    assert_eq!(
        crate::support::daemon::stored_transitions(&nodes[other].db()),
        transitions,
        "nothing recorded after the resume"
    );
    wait_until(
        "the resumed node applied the new leader's log",
        Duration::from_secs(5),
        || crate::support::daemon::stored_transitions(&nodes[paused].db()) == transitions,
    );
    assert_eq!(
        nodes[paused].go().as_deref(),
        Some(backup.as_str()),
        "the resumed node serves the new leader's route"
    );
    for n in &nodes {
        let (ok, out) = audit_verify(&n.db());
        assert!(ok, "audit verify on {}: {out}", n.name);
    }
}

#[test]
fn without_an_etcd_majority_nodes_serve_act_on_nothing_and_alert_and_decide_the_outage_when_it_returns(
) {
    let _turn = crate::support::heavy();
    let mut etcd = EtcdCluster::start(3);
    let target = Target::start();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| node(n, &etcd, &target, "/sb-quorum"))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    wait_until("one leader", Duration::from_secs(20), || {
        nodes.iter().filter(|n| n.leads()).count() == 1
    });
    let prom_dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let prom = crate::support::prometheus::Prometheus::start(prom_dir.path(), &ports);
    let (primary, backup) = (target.url("/form"), target.url("/backup"));

    // etcd loses its majority, then the primary breaks.
    etcd.stop_member(0);
    etcd.stop_member(1);
    let lost = Instant::now();
    wait_until("no node acts", LEASE + Duration::from_secs(3), || {
        !nodes.iter().any(Node::leads)
    });
    println!(
        "no leader {:?} after etcd lost its majority (lease {LEASE:?})",
        lost.elapsed()
    );
    target.set_down(true);
    let mail_before: usize = nodes.iter().map(|n| n.mail().len()).sum();
    // Meanwhile every node keeps answering customers, from its last state.
    let mut answered = 0;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        for n in &nodes {
            assert_eq!(
                n.go().as_deref(),
                Some(primary.as_str()),
                "{} keeps the routes",
                n.name
            );
            let page = get(&format!("http://127.0.0.1:{}/status", n.port)).expect("/status");
            assert_eq!(page.status, 200);
            answered += 2;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("{answered} /go and /status requests answered while etcd had no majority");
    for n in &nodes {
        assert!(
            crate::support::daemon::stored_transitions(&n.db()).is_empty(),
            "{} recorded nothing",
            n.name
        );
    }
    assert_eq!(
        nodes.iter().map(|n| n.mail().len()).sum::<usize>(),
        mail_before,
        "nothing announced"
    );
    // The alerts fire in a real Prometheus.
    wait_until(
        "SwitchboardClusterNoLeader and SwitchboardEtcdUnreachable fire",
        Duration::from_secs(60),
        || {
            let firing: Vec<String> = prom.firing().into_iter().map(|(name, _)| name).collect();
            firing.contains(&"SwitchboardClusterNoLeader".to_string())
                && firing.contains(&"SwitchboardEtcdUnreachable".to_string())
        },
    );

    // etcd is back: a leader is elected and decides the outage that began meanwhile.
    etcd.start_member(0);
    etcd.start_member(1);
    let back = Instant::now();
    wait_until("the outage is decided", Duration::from_secs(30), || {
        nodes
            .iter()
            .all(|n| n.go().as_deref() == Some(backup.as_str()))
    });
    println!(
        "failed over {:?} after etcd's majority returned",
        back.elapsed()
    );
    let leader = nodes.iter().find(|n| n.leads()).expect("a leader");
    wait_until("the failover is announced", Duration::from_secs(10), || {
        leader
            .mail()
            .iter()
            .any(|m| m.contains("support-oncall@example.com"))
    });
    for n in &nodes {
        wait_until(
            "every node recorded the failover once",
            Duration::from_secs(5),
            || crate::support::daemon::stored_transitions(&n.db()).len() == 1,
        );
    }
}

/// Message-ID of every message in a Maildir -> copies.
fn stored_ids(maildir: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for path in crate::support::smtp::maildir_messages(maildir) {
        let text = std::fs::read_to_string(&path).unwrap();
        let id = text
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("message-id")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("{} has no Message-ID", path.display()));
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// (Message-ID, status) of every outbox row of the database at `db`.
fn outbox(db: &std::path::Path) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT message_id, status FROM outbox WHERE channel = 'email' ORDER BY id")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

#[test]
fn twenty_cycles_with_the_leader_killed_at_random_points_lose_no_announcement() {
    let _turn = crate::support::heavy();
    crate::support::smtp::require_aiosmtpd();
    let etcd = EtcdCluster::start(3);
    let target = Target::start();
    let mail_dir = tempfile::tempdir().unwrap();
    let maildir = mail_dir.path().join("maildir");
    let smtp = crate::support::smtp::SmtpServer::start(&maildir);
    let email = format!(
        "transport = \"smtp\"\nsmtp_url = \"{}\"\nconnect_timeout = \"2s\"",
        smtp.url()
    );
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let n = node(name, &etcd, &target, "/sb-cycles");
            // SMTP to the one real server, quick failbacks, and no flap damping: twenty
            // failovers in a row are the point here.
            let text = std::fs::read_to_string(&n.config)
                .unwrap()
                .replace(FILE_MAIL, &email);
            std::fs::write(&n.config, text).unwrap();
            let service = n.dir.path().join("probes/ticket-submission.toml");
            let text = std::fs::read_to_string(&service).unwrap().replace(
                "recovery_hold = \"2s\"",
                "recovery_hold = \"1s\"\nmax_failovers = 0",
            );
            std::fs::write(&service, text).unwrap();
            n
        })
        .collect();
    for n in &mut nodes {
        n.start();
    }
    let (primary, backup) = (target.url("/form"), target.url("/backup"));
    // A small generator with its seed printed, so a failing run can be replayed.
    let mut seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut next = move |below: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % below
    };
    let everyone_on =
        |nodes: &[Node], url: &str| nodes.iter().all(|n| n.go().as_deref() == Some(url));
    let mut kills = 0;
    for cycle in 0..20 {
        wait_until("one leader", Duration::from_secs(20), || {
            nodes.iter().filter(|n| n.leads()).count() == 1
        });
        // Kill in the failover half or the failback half, after 0 to 2.5 s.
        let kill_in_failover = next(2) == 0;
        let delay = Duration::from_millis(next(2500));
        for (down, url) in [(true, &backup), (false, &primary)] {
            target.set_down(down);
            if kill_in_failover == down {
                std::thread::sleep(delay);
                if let Some(i) = nodes.iter().position(Node::leads) {
                    nodes[i].daemon.as_mut().unwrap().kill9();
                    kills += 1;
                    nodes[i].start();
                }
            }
            wait_until(
                &format!("cycle {cycle}: every node on {url}"),
                Duration::from_secs(40),
                || everyone_on(&nodes, url),
            );
        }
    }
    // Every announcement recorded is delivered; the leader's outbox drains.
    let db = nodes[0].db();
    wait_until("the outbox drains", Duration::from_secs(60), || {
        let rows = outbox(&db);
        !rows.is_empty() && rows.iter().all(|(_, s)| s == "delivered")
    });
    let rows = outbox(&db);
    let stored = stored_ids(&maildir);
    let lost: Vec<&String> = rows
        .iter()
        .map(|(id, _)| id)
        .filter(|id| !stored.contains_key(*id))
        .collect();
    let strays: Vec<&String> = stored
        .keys()
        .filter(|id| !rows.iter().any(|(r, _)| r == *id))
        .collect();
    let duplicates: usize = stored.values().map(|n| n - 1).sum();
    let transitions = crate::support::daemon::stored_transitions(&db).len();
    println!(
        "20 cycles, {kills} leaders killed: {transitions} transitions, {} announcements recorded, {} delivered messages, {} lost, {duplicates} duplicate(s) (same Message-ID)",
        rows.len(),
        stored.values().sum::<usize>(),
        lost.len()
    );
    assert!(
        transitions >= 40,
        "every cycle failed over and back: {transitions}"
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(strays.is_empty(), "messages nobody recorded: {strays:?}");
    assert!(
        duplicates <= kills,
        "{duplicates} duplicates for {kills} leader changes"
    );
    for n in &nodes {
        let (ok, out) = audit_verify(&n.db());
        assert!(ok, "audit verify on {}: {out}", n.name);
    }
}

/// The count of counted vantages voting `verdict` on the ticket form, in `metrics`.
fn votes(metrics: &str, verdict: &str) -> Option<f64> {
    crate::support::daemon::series(
        metrics,
        &format!(
            "switchboard_check_votes{{service=\"ticket-submission\",check=\"ticket-form\",verdict=\"{verdict}\"}}"
        ),
    )
}

/// `switchboard status` against a node, as the viewer.
fn status_text(n: &Node, token: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("status")
        .env("SWITCHBOARD_URL", format!("http://127.0.0.1:{}", n.port))
        .env("SWITCHBOARD_TOKEN", token)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_vantages_outvote_one_broken_path_fail_over_on_two_and_stop_deciding_below_min_vantages() {
    let _turn = crate::support::heavy();
    let etcd = EtcdCluster::start(3);
    let target = Target::start();
    let names = ["a", "b", "c"];
    let mut nodes: Vec<Node> = names
        .iter()
        .map(|n| node(n, &etcd, &target, "/sb-votes"))
        .collect();
    let tokens = crate::support::control::add_tokens(&nodes[0].config);
    // Each node probes from its own source address; the service needs three vantages to
    // decide anything.
    for (i, n) in nodes.iter().enumerate() {
        let source = format!("127.0.0.{}", i + 2);
        let mut text = std::fs::read_to_string(&n.config).unwrap();
        text = text.replace(
            "[defaults]\n",
            &format!("[defaults]\nsource_address = \"{source}\"\n"),
        );
        if i > 0 {
            text.push_str("\n[auth]\ntokens_file = \"tokens.toml\"\n");
        }
        std::fs::write(&n.config, text).unwrap();
        if i > 0 {
            std::fs::copy(
                nodes[0].dir.path().join("tokens.toml"),
                n.dir.path().join("tokens.toml"),
            )
            .unwrap();
        }
        let service = n.dir.path().join("probes/ticket-submission.toml");
        let text = std::fs::read_to_string(&service).unwrap().replace(
            "failover_when = \"any\"\n",
            "failover_when = \"any\"\nquorum = \"majority\"\nmin_vantages = 3\n",
        );
        std::fs::write(&service, text).unwrap();
    }
    for n in &mut nodes {
        n.start();
    }
    wait_until("one leader", Duration::from_secs(20), || {
        nodes.iter().filter(|n| n.leads()).count() == 1
    });
    let leader = nodes.iter().position(Node::leads).unwrap();
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    let source = |i: usize| format!("127.0.0.{}", i + 2);
    let lead_port = nodes[leader].port;
    wait_until(
        "three vantages vote healthy",
        Duration::from_secs(20),
        || votes(&crate::support::daemon::scrape(lead_port), "healthy") == Some(3.0),
    );
    let (primary, backup) = (target.url("/form"), target.url("/backup"));

    // One vantage's path to the form is broken: it says down, the others outvote it.
    target.refuse_form_from(&[&source(f1)]);
    wait_until(
        "the broken vantage votes down",
        Duration::from_secs(15),
        || votes(&crate::support::daemon::scrape(lead_port), "down") == Some(1.0),
    );
    // Ten more probe intervals: still no failover anywhere, and the disagreement is visible.
    std::thread::sleep(Duration::from_secs(10));
    for n in &nodes {
        assert_eq!(n.go().as_deref(), Some(primary.as_str()), "{}", n.name);
    }
    assert_eq!(
        crate::support::daemon::stored_transitions(&nodes[leader].db()),
        vec![],
        "one vantage out of three moved nothing"
    );
    let m = crate::support::daemon::scrape(lead_port);
    println!(
        "one source refused: votes healthy={:?} down={:?}",
        votes(&m, "healthy"),
        votes(&m, "down")
    );
    assert_eq!(votes(&m, "healthy"), Some(2.0));
    let status = status_text(&nodes[f2], &tokens.viewer);
    println!("{status}");
    assert!(
        status.contains(&format!(
            "vantages disagree on ticket-submission/ticket-form: {}",
            ""
        )) && status.contains(&format!("{} down", names[f1]))
            && status.contains("decided healthy"),
        "{status}"
    );

    // Two of three: the form is down as customers' networks see it. Failover.
    let refused_two = Instant::now();
    target.refuse_form_from(&[&source(f1), &source(f2)]);
    wait_until("failover on two votes", Duration::from_secs(20), || {
        nodes
            .iter()
            .all(|n| n.go().as_deref() == Some(backup.as_str()))
    });
    println!(
        "two sources refused to the route switched on every node: {:?}",
        refused_two.elapsed()
    );
    // The evidence names every vantage's vote.
    let export = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["audit", "export", "--format", "jsonl", "--db"])
        .arg(nodes[leader].db())
        .output()
        .unwrap();
    let export = String::from_utf8_lossy(&export.stdout).into_owned();
    let failover = export
        .lines()
        .find(|l| l.contains("\"to\":\"failed_over\""))
        .unwrap_or_else(|| panic!("the failover in the audit export: {export}"));
    for n in names {
        assert!(
            failover.contains(&format!("\"vantage\":\"{n}\"")),
            "vote of {n} in {failover}"
        );
    }
    // The on-call e-mail shows the votes too.
    wait_until("the on-call e-mail", Duration::from_secs(10), || {
        nodes[leader]
            .mail()
            .iter()
            .any(|m| m.contains("support-oncall@example.com") && m.contains("vantages:"))
    });

    // A vantage killed mid-outage: the leader hears it gone within a lease and, with two
    // vantages left and min_vantages = 3, decides nothing more.
    let killed = Instant::now();
    nodes[f2].daemon.as_mut().unwrap().kill9();
    wait_until(
        "the killed vantage's votes vanish",
        LEASE + Duration::from_secs(5),
        || {
            let m = crate::support::daemon::scrape(lead_port);
            !m.contains(&format!("switchboard_vantage_up{{vantage=\"{}\"}}", names[f2]))
                && m.contains(
                    "switchboard_check_quorum_blocked{service=\"ticket-submission\",check=\"ticket-form\"} 1",
                )
        },
    );
    let gone = killed.elapsed();
    println!(
        "kill -9 of a vantage to its votes gone and the quorum blocked: {gone:?} (lease {LEASE:?})"
    );
    assert!(gone <= LEASE + Duration::from_secs(3), "{gone:?}");
    // The primary is healthy again from every live vantage, but no automatic failback
    // happens while too few vantages can vote.
    target.refuse_form_from(&[]);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        nodes[leader].go().as_deref(),
        Some(backup.as_str()),
        "no automatic decision below min_vantages"
    );
    assert_eq!(
        crate::support::daemon::stored_transitions(&nodes[leader].db()),
        vec![("operational".to_string(), "failed_over".to_string())]
    );
    let status = status_text(&nodes[leader], &tokens.viewer);
    assert!(status.contains("min_vantages = 3"), "{status}");
}
