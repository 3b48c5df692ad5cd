//! Cluster mode at scale on one machine: three `switchboard run` nodes on a real three-member etcd, 1,000 HTTP checks at 10 s and again at 5 s; etcd's write rate, the leader's CPU and the followers' lag p99, and whether etcd's writes follow the probe rate or only state changes.
//!
//! What runs, all on loopback:
//!
//! - **etcd**: Debian's `etcd` as three members (the integration tests' harness,
//!   `tests/it/support/etcd.rs`), fresh for each phase.
//! - **targets**: a small HTTP server in this process, one path per check, each service's
//!   primary switchable to 503 (its CPU is this process's and is never counted).
//! - **nodes**: three `switchboard run` child processes (the release binary under
//!   `cargo bench`), each with the same 500 services (a primary and a backup check each, 1,000
//!   checks, one route each) and a `[cluster]` table; lease 10 s (the default).
//!
//! Each phase (probe interval 10 s, then 5 s; everything else equal) waits until the leader
//! has probed every check and the followers have applied the whole log, then measures one
//! window of a fixed length:
//!
//! 1. a quiet part: nothing changes, so etcd should see no write at all;
//! 2. `--flip` services' primaries answer 503 for a while and then 200 again: each fails over,
//!    recovers and fails back (transitions, audit records, incidents and e-mail through the
//!    outbox: the state changes etcd is meant to carry). The window is long enough for all of
//!    it to settle at either interval; the bench checks that it did, on every node.
//!
//! Figures:
//!
//! - **etcd writes**: the store's revision (the header of a range request through the JSON
//!   gateway) at the window's start, after the quiet part and at the end: every put, delete
//!   or transaction that wrote is one revision. Beside it, raft proposals committed
//!   (`etcd_server_proposals_committed_total` on a member's `/metrics`): everything the
//!   members replicate, including the nodes' election transactions (a create-if-absent
//!   every second per node, which writes nothing when the key exists) and lease grants.
//!   Lease keep-alives are answered by etcd's leader without a proposal or a revision.
//! - **leader CPU**: utime + stime of the leading node's process from `/proc/<pid>/stat` over
//!   the window, as a percentage of one core; followers' and etcd's beside it.
//! - **follower lag**: this process watches the log prefix in etcd like the followers do;
//!   when entry `n` arrives (the leader's fenced append has committed: etcd sends a watch
//!   event only for a committed revision) it notes the time and polls each follower's
//!   `switchboard_cluster_applied_entry` gauge every 2 ms until it reaches `n`. The lag of
//!   (entry, follower) is the time from the watch event to the first poll that shows the
//!   entry applied: the follower's own watch delivery, its SQLite transaction and the
//!   gauge's update, with the poll interval as the resolution (it can only overstate). A
//!   second figure starts from the leader's timestamp in the entry (`at_ms`, taken before
//!   the append) and so includes etcd's commit too; it compares two processes' wall clocks
//!   on one machine.
//!
//! A window in which the leader changes, a probe fails outside the flipped primaries, or a
//! flipped service has not failed back on every node at the end is an error, not a figure.
//!
//! Usage: `cluster [--checks N] [--intervals 10,5] [--flip K] [--quiet S] [--down S]
//! [--settle S]` (defaults: 1,000 checks, 10 and 5 s, 10 services flipped, a 20 s quiet part,
//! primaries down for 25 s, 45 s to settle). `scripts/bench.sh cluster` installs etcd and
//! runs it; `cargo bench --bench cluster` passes `--bench`. Without it (as under
//! `cargo test --all-targets`) it is a smoke run of the harness: 20 checks, one phase at
//! 1 s, short parts.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard::cluster::etcd::{Etcd, Event, WatchItem};

// The integration tests' harnesses: the daemon as a child process with a minimal HTTP
// client, and a real etcd cluster on loopback ports.
#[allow(dead_code)]
#[path = "../tests/it/support/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "../tests/it/support/etcd.rs"]
mod etcd;

// CPU accounting and the revision, shared by the benches.
mod support;

use daemon::{free_port, get, series, series_sum, Daemon};
use etcd::EtcdCluster;
use support::{cpu_ticks, git_rev, stat_path};

/// The key prefix of the benchmarked cluster in etcd.
const PREFIX: &str = "/bench";
/// How often a follower's applied entry is polled while it is behind.
const POLL: Duration = Duration::from_millis(2);
/// The acceptance bar: etcd writes at the faster probe rate over those at the slower one.
const MAX_WRITE_RATIO: f64 = 1.25;

fn main() {
    support::main("cluster", |args| Options::parse(args).and_then(run));
}

struct Options {
    checks: usize,
    intervals: Vec<Duration>,
    flip: usize,
    quiet: Duration,
    down: Duration,
    settle: Duration,
    recovery_hold: Duration,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let bench = args.iter().any(|a| a == "--bench");
        let mut opts = if bench {
            Options {
                checks: 1000,
                intervals: vec![Duration::from_secs(10), Duration::from_secs(5)],
                flip: 10,
                quiet: Duration::from_secs(20),
                down: Duration::from_secs(25),
                settle: Duration::from_secs(45),
                recovery_hold: Duration::from_secs(5),
            }
        } else {
            // `cargo test --all-targets` runs benches without `--bench`: a short smoke run.
            Options {
                checks: 20,
                intervals: vec![Duration::from_secs(1)],
                flip: 2,
                quiet: Duration::from_secs(2),
                down: Duration::from_secs(5),
                settle: Duration::from_secs(10),
                recovery_hold: Duration::from_secs(1),
            }
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| anyhow!("{arg} needs a value"))
            };
            let secs = |v: String| -> Result<Duration> {
                Ok(Duration::from_secs(
                    v.parse().with_context(|| format!("{v:?}"))?,
                ))
            };
            match arg.as_str() {
                "--checks" => opts.checks = value()?.parse()?,
                "--intervals" => {
                    opts.intervals = value()?
                        .split(',')
                        .map(|s| secs(s.trim().to_string()))
                        .collect::<Result<_>>()?
                }
                "--flip" => opts.flip = value()?.parse()?,
                "--quiet" => opts.quiet = secs(value()?)?,
                "--down" => opts.down = secs(value()?)?,
                "--settle" => opts.settle = secs(value()?)?,
                // `cargo bench` passes `--bench`; other harness flags are ignored as well.
                _ => {}
            }
        }
        if opts.checks < 2 || opts.checks % 2 != 0 || opts.flip > opts.checks / 2 {
            bail!("--checks must be an even number of at least 2, --flip at most half of it");
        }
        if opts.intervals.is_empty() || opts.intervals.iter().any(Duration::is_zero) {
            bail!("--intervals needs at least one interval of at least 1 s");
        }
        Ok(opts)
    }

    fn services(&self) -> usize {
        self.checks / 2
    }

    /// The window's length: the same in every phase.
    fn window(&self) -> Duration {
        self.quiet + self.down + self.settle
    }

    /// The services whose primaries are flipped, spread over the list.
    fn flipped(&self) -> Vec<usize> {
        let step = self.services() / self.flip.max(1);
        (0..self.flip).map(|i| i * step).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The targets

/// One HTTP/1.1 server for every check: `GET /s/{n}/primary` and `/s/{n}/backup` answer 200,
/// a primary switched down answers 503. One response per connection, as a support site's
/// front door closing idle connections would; a few threads serve them in turn.
struct Targets {
    port: u16,
    down: Arc<Vec<AtomicBool>>,
}

impl Targets {
    fn start(services: usize) -> Result<Targets> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let down: Arc<Vec<AtomicBool>> =
            Arc::new((0..services).map(|_| AtomicBool::new(false)).collect());
        for _ in 0..4 {
            let (listener, down) = (listener.try_clone()?, down.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut s) = stream else { continue };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 2048];
                    let mut n = 0;
                    while n < buf.len() {
                        match s.read(&mut buf[n..]) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let up = match path.strip_prefix("/s/").and_then(|p| p.split_once('/')) {
                        Some((i, "primary")) => i
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| down.get(i))
                            .map(|d| !d.load(Ordering::SeqCst)),
                        Some((_, "backup")) => Some(true),
                        _ => None,
                    };
                    let (status, body) = match up {
                        Some(true) => ("200 OK", "<form><input name=request_subject></form>"),
                        Some(false) => ("503 Service Unavailable", "down"),
                        None => ("404 Not Found", "no"),
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
        Ok(Targets { port, down })
    }

    fn url(&self, service: usize, side: &str) -> String {
        format!("http://127.0.0.1:{}/s/{service}/{side}", self.port)
    }

    fn set_down(&self, services: &[usize], down: bool) {
        for &s in services {
            self.down[s].store(down, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The nodes

struct Node {
    name: String,
    dir: tempfile::TempDir,
    port: u16,
    daemon: Option<Daemon>,
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn metrics(&self) -> String {
        get(&self.url("/metrics"))
            .map(|r| r.body)
            .unwrap_or_default()
    }

    fn leads(&self) -> bool {
        self.metrics().contains(&format!(
            "switchboard_cluster_leader{{node=\"{}\"}} 1",
            self.name
        ))
    }

    fn applied(&self) -> Option<u64> {
        series(&self.metrics(), "switchboard_cluster_applied_entry").map(|v| v as u64)
    }

    fn pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, |d| d.child.id())
    }

    /// Where `/go/route-{service}` sends customers now.
    fn go(&self, service: usize) -> Option<String> {
        let r = get(&self.url(&format!("/go/route-{service}"))).ok()?;
        (r.status == 307).then(|| r.header("location")).flatten()
    }
}

/// Writes one node's configuration: the same services on every node, its own port,
/// database and mail directory, and `[cluster]`.
fn write_node(
    name: &str,
    opts: &Options,
    interval: Duration,
    targets: &Targets,
    etcd: &EtcdCluster,
) -> Result<Node> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("probes"))?;
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // Confirmation re-probes every 2 s (a fifth of the 10 s interval at most); e-mail neither
    // grouped nor delayed, so every state change's writes fall inside the window.
    let retry = (interval / 5).max(Duration::from_millis(200));
    // A probe's timeout is shorter than its interval (the smoke run probes every second).
    let timeout = (interval / 2).min(Duration::from_secs(2));
    std::fs::write(
        dir.path().join("switchboard.toml"),
        format!(
            r#"probes = "probes"
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "var/switchboard.db"
[email]
from = "Support Status <status@example.com>"
group_window = "0s"
customer_delay = "0s"
transport = "file"
dir = "var/mail"
[audiences]
oncall = ["support-oncall@example.com"]
customers = ["support-announce@example.com"]
[status_page]
title = "Cluster bench"
[defaults]
interval = "{interval}ms"
timeout = "{timeout}ms"
retry_interval = "{retry}ms"
failure_threshold = 2
success_threshold = 2
[cluster]
name = "{name}"
etcd = [{endpoints}]
prefix = "{PREFIX}"
lease_ttl = "10s"
advertise_url = "http://127.0.0.1:{port}"
"#,
            interval = interval.as_millis(),
            retry = retry.as_millis(),
            timeout = timeout.as_millis(),
        ),
    )?;
    for s in 0..opts.services() {
        let (primary, backup) = (targets.url(s, "primary"), targets.url(s, "backup"));
        std::fs::write(
            dir.path().join(format!("probes/svc-{s:04}.toml")),
            format!(
                r#"[service]
id = "svc-{s:04}"
name = "Support channel {s:04}"
failover_when = "any"
failback = "auto"
recovery_hold = "{hold}ms"

[[check]]
name = "primary-{s:04}"
url = "{primary}"
conditions = ["[STATUS] == 200", "[BODY] == pat(*request_subject*)"]

[[check]]
name = "backup-{s:04}"
role = "backup"
url = "{backup}"
conditions = ["[STATUS] == 200"]

[[route]]
id = "route-{s}"
primary = "{primary}"
backup = "{backup}"
"#,
                hold = opts.recovery_hold.as_millis()
            ),
        )?;
    }
    Ok(Node {
        name: name.to_string(),
        dir,
        port,
        daemon: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Follower lag

/// One log entry as this process saw it committed.
struct Commit {
    seen: Instant,
    /// This process's wall clock when it saw it, and the leader's stamp in the entry (ms).
    seen_wall_ms: i64,
    leader_ms: i64,
}

/// What the watch and the pollers share.
#[derive(Default)]
struct Lag {
    commits: Mutex<BTreeMap<u64, Commit>>,
    /// The highest entry seen committed.
    head: AtomicU64,
    /// (follower, entry) -> when a poll first showed it applied.
    applied: Mutex<BTreeMap<(usize, u64), Instant>>,
    stop: AtomicBool,
    watch_error: Mutex<Option<String>>,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Watches the log from `revision` on, noting when each entry arrives.
async fn watch_log(etcd: Arc<Etcd>, revision: i64, lag: Arc<Lag>) {
    let key = format!("{PREFIX}/log/");
    let mut events = etcd.watch(key.as_bytes(), true, revision);
    while let Some(item) = events.recv().await {
        let seen = Instant::now();
        match item {
            WatchItem::Events(es) => {
                for e in es {
                    let Event::Put(kv) = e else { continue };
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&kv.value) else {
                        continue;
                    };
                    let (Some(seq), Some(at)) = (v["seq"].as_u64(), v["at_ms"].as_i64()) else {
                        continue;
                    };
                    lag.commits.lock().unwrap().insert(
                        seq,
                        Commit {
                            seen,
                            seen_wall_ms: wall_ms(),
                            leader_ms: at,
                        },
                    );
                    lag.head.fetch_max(seq, Ordering::SeqCst);
                }
            }
            WatchItem::Ended(why) => {
                if !lag.stop.load(Ordering::SeqCst) {
                    *lag.watch_error.lock().unwrap() = Some(why);
                }
                return;
            }
        }
    }
}

/// Polls follower `index` while it is behind the head seen committed; notes when each entry
/// up to the head known before the poll is first seen applied.
fn poll_follower(index: usize, url: String, start: u64, lag: Arc<Lag>) {
    let mut applied = start;
    while !lag.stop.load(Ordering::SeqCst) {
        let head = lag.head.load(Ordering::SeqCst);
        if head <= applied {
            std::thread::sleep(POLL);
            continue;
        }
        let now_applied = get(&url)
            .ok()
            .and_then(|r| series(&r.body, "switchboard_cluster_applied_entry"))
            .map(|v| v as u64);
        let at = Instant::now();
        if let Some(a) = now_applied {
            // Only entries already known committed: a later one is noted by a later poll,
            // which can only overstate its lag.
            let upto = a.min(head);
            if upto > applied {
                let mut map = lag.applied.lock().unwrap();
                for seq in applied + 1..=upto {
                    map.insert((index, seq), at);
                }
                applied = upto;
            }
        }
        std::thread::sleep(POLL);
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------------------------
// One phase

struct Phase {
    interval: Duration,
    window: Duration,
    quiet: Duration,
    probes: f64,
    transitions: f64,
    entries: u64,
    revisions_quiet: i64,
    revisions: i64,
    proposals_quiet: f64,
    proposals: f64,
    leader_cpu: Duration,
    follower_cpu: Vec<Duration>,
    etcd_cpu: Duration,
    /// Watch event to applied, every (entry, follower).
    lag: Vec<Duration>,
    /// Leader's stamp to applied, every (entry, follower).
    lag_from_stamp: Vec<Duration>,
    /// Leader's stamp to the commit seen.
    commit: Vec<Duration>,
}

fn etcd_revision(rt: &tokio::runtime::Runtime, etcd: &Etcd) -> Result<i64> {
    let key = format!("{PREFIX}/instance");
    let (_, revision) = rt
        .block_on(etcd.get(key.as_bytes(), false))
        .map_err(|e| anyhow!("etcd range: {e}"))?;
    Ok(revision)
}

/// etcd's raft proposals committed, from a member's `/metrics`. Asked over HTTP/1.0: etcd
/// answers HTTP/1.1 with chunked encoding, which the tests' small client does not decode.
fn etcd_proposals(port: u16) -> Result<f64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    series(&text, "etcd_server_proposals_committed_total ")
        .context("no etcd_server_proposals_committed_total on etcd's /metrics")
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

fn phase(opts: &Options, interval: Duration, tick: Duration) -> Result<Phase> {
    eprintln!(
        "phase: {} checks at {interval:?}; starting etcd and three nodes",
        opts.checks
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let cluster = EtcdCluster::start(3);
    let etcd_pids: Vec<u32> = cluster.pids();
    let targets = Targets::start(opts.services())?;
    let mut nodes = ["a", "b", "c"]
        .iter()
        .map(|n| write_node(n, opts, interval, &targets, &cluster))
        .collect::<Result<Vec<_>>>()?;
    for n in &mut nodes {
        let config = n.dir.path().join("switchboard.toml");
        let log = n.dir.path().join("switchboard.log");
        n.daemon = Some(Daemon::start_with(&config, n.port, &[], Some(&log)));
    }
    wait_for("one leader", Duration::from_secs(30), || {
        nodes.iter().filter(|n| n.leads()).count() == 1
    })?;
    let leader = nodes
        .iter()
        .position(Node::leads)
        .context("the leader went")?;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    eprintln!(
        "leader {} (pid {}); followers {} and {}",
        nodes[leader].name,
        nodes[leader].pid(),
        nodes[followers[0]].name,
        nodes[followers[1]].name
    );

    // Warm-up: every check probed and passing, every follower at the leader's entry.
    let checks = opts.checks as f64;
    wait_for(
        "every check probed and passing on the leader",
        interval * 3 + Duration::from_secs(30),
        || {
            let m = nodes[leader].metrics();
            series_sum(&m, "switchboard_probes_total{") >= checks
                && m.lines()
                    .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 1"))
                    .count()
                    >= opts.checks
        },
    )?;
    wait_for(
        "the followers at the leader's entry",
        Duration::from_secs(30),
        || {
            let head = nodes[leader].applied();
            head.is_some() && followers.iter().all(|&f| nodes[f].applied() == head)
        },
    )?;
    // And every vantage's verdicts published: the leader holds three healthy votes on every
    // check (the start-up burst of publishing is warm-up, not steady state).
    wait_for(
        "every vantage's votes published",
        Duration::from_secs(60),
        || {
            let m = nodes[leader].metrics();
            let healthy: f64 = m
                .lines()
                .filter(|l| {
                    l.starts_with("switchboard_check_votes{") && l.contains("verdict=\"healthy\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            healthy >= 3.0 * checks
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));

    // The watch and the pollers, from here on.
    let client = Arc::new(
        Etcd::new(cluster.endpoints(), None, None, Duration::from_secs(2))
            .map_err(|e| anyhow!("etcd client: {e}"))?,
    );
    let lag = Arc::new(Lag::default());
    let start_rev = etcd_revision(&rt, &client)?;
    rt.spawn(watch_log(client.clone(), start_rev + 1, lag.clone()));
    let start_entry = nodes[leader].applied().unwrap_or(0);
    lag.head.store(start_entry, Ordering::SeqCst);
    let pollers: Vec<_> = followers
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            let (url, lag) = (nodes[f].url("/metrics"), lag.clone());
            std::thread::spawn(move || poll_follower(i, url, start_entry, lag))
        })
        .collect();

    // The window.
    let cpu = |pid: u32| cpu_ticks(&stat_path(pid));
    let leader_metrics = nodes[leader].metrics();
    let probes0 = series_sum(&leader_metrics, "switchboard_probes_total{");
    let transitions0 = series_sum(&leader_metrics, "switchboard_transitions_total{");
    let proposals0 = etcd_proposals(cluster.client_port(0))?;
    let rev0 = etcd_revision(&rt, &client)?;
    let t0 = Instant::now();
    let node_cpu0: Vec<u64> = nodes.iter().map(|n| cpu(n.pid())).collect::<Result<_>>()?;
    let etcd_cpu0: Vec<u64> = etcd_pids.iter().map(|&p| cpu(p)).collect::<Result<_>>()?;

    std::thread::sleep(opts.quiet);
    let rev_quiet = etcd_revision(&rt, &client)?;
    let proposals_quiet = etcd_proposals(cluster.client_port(0))?;
    let flipped = opts.flipped();
    targets.set_down(&flipped, true);
    eprintln!("{} primaries down", flipped.len());
    std::thread::sleep(opts.down);
    targets.set_down(&flipped, false);
    eprintln!("{} primaries up again", flipped.len());
    std::thread::sleep((t0 + opts.window()).saturating_duration_since(Instant::now()));

    let node_cpu1: Vec<u64> = nodes.iter().map(|n| cpu(n.pid())).collect::<Result<_>>()?;
    let etcd_cpu1: Vec<u64> = etcd_pids.iter().map(|&p| cpu(p)).collect::<Result<_>>()?;
    let window = t0.elapsed();
    let rev1 = etcd_revision(&rt, &client)?;
    let proposals1 = etcd_proposals(cluster.client_port(0))?;
    let leader_metrics = nodes[leader].metrics();
    let probes1 = series_sum(&leader_metrics, "switchboard_probes_total{");
    let transitions1 = series_sum(&leader_metrics, "switchboard_transitions_total{");

    // Everything settled: the same leader, every flipped route back on its primary on every
    // node, every follower at the head, no failed probe outside the flipped primaries.
    if !nodes[leader].leads() || nodes.iter().filter(|n| n.leads()).count() != 1 {
        bail!("the leader changed during the window: the figures would mix two terms");
    }
    for &s in &flipped {
        for n in &nodes {
            let at = n.go(s);
            if at.as_deref() != Some(targets.url(s, "primary").as_str()) {
                bail!(
                    "route-{s} on node {} sends customers to {at:?} at the window's end: the flipped services did not settle; give --settle more time",
                    n.name
                );
            }
        }
    }
    let head = lag.head.load(Ordering::SeqCst);
    wait_for(
        "the followers applying the last entry",
        Duration::from_secs(10),
        || {
            let map = lag.applied.lock().unwrap();
            (0..followers.len()).all(|i| head == start_entry || map.contains_key(&(i, head)))
        },
    )?;
    lag.stop.store(true, Ordering::SeqCst);
    for p in pollers {
        let _ = p.join();
    }
    if let Some(why) = lag.watch_error.lock().unwrap().take() {
        bail!("the bench's own watch of the log ended: {why}");
    }
    let failed_elsewhere: usize = leader_metrics
        .lines()
        .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 0"))
        .count();
    if failed_elsewhere > 0 {
        bail!("{failed_elsewhere} checks fail at the window's end against loopback targets");
    }

    // The figures.
    let commits = lag.commits.lock().unwrap();
    let applied = lag.applied.lock().unwrap();
    let (mut lag_watch, mut lag_stamp, mut commit) = (Vec::new(), Vec::new(), Vec::new());
    let t1 = t0 + window;
    let entries = commits
        .range(start_entry + 1..)
        .filter(|(_, c)| c.seen <= t1)
        .count() as u64;
    for (&seq, c) in commits.range(start_entry + 1..) {
        commit.push(Duration::from_millis(
            (c.seen_wall_ms - c.leader_ms).max(0) as u64
        ));
        for f in 0..followers.len() {
            let at = applied
                .get(&(f, seq))
                .with_context(|| format!("follower {f} never applied entry {seq}"))?;
            let after = at.saturating_duration_since(c.seen);
            lag_watch.push(after);
            lag_stamp
                .push(after + Duration::from_millis((c.seen_wall_ms - c.leader_ms).max(0) as u64));
        }
    }
    for v in [&mut lag_watch, &mut lag_stamp, &mut commit] {
        v.sort();
    }
    let ticks = |a: &[u64], b: &[u64], i: usize| tick * (b[i] - a[i]) as u32;
    let phase = Phase {
        interval,
        window,
        quiet: opts.quiet,
        probes: probes1 - probes0,
        transitions: transitions1 - transitions0,
        entries,
        revisions_quiet: rev_quiet - rev0,
        revisions: rev1 - rev0,
        proposals_quiet: proposals_quiet - proposals0,
        proposals: proposals1 - proposals0,
        leader_cpu: ticks(&node_cpu0, &node_cpu1, leader),
        follower_cpu: followers
            .iter()
            .map(|&f| ticks(&node_cpu0, &node_cpu1, f))
            .collect(),
        etcd_cpu: (0..etcd_pids.len())
            .map(|i| ticks(&etcd_cpu0, &etcd_cpu1, i))
            .sum(),
        lag: lag_watch,
        lag_from_stamp: lag_stamp,
        commit,
    };
    drop((commits, applied));
    for n in &mut nodes {
        if let Some(d) = n.daemon.take() {
            let pid = d.child.id();
            drop(d);
            eprintln!("stopped node {} (pid {pid})", n.name);
        }
    }
    drop(cluster);
    eprintln!("stopped etcd (pids {etcd_pids:?})");
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(phase)
}

// ---------------------------------------------------------------------------------------------
// The run

fn etcd_version() -> String {
    std::process::Command::new(etcd::EtcdCluster::binary())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "etcd (version unknown)".into())
}

fn run(opts: Options) -> Result<()> {
    if !etcd::EtcdCluster::binary().exists() {
        bail!(
            "{} not found: scripts/bench.sh cluster installs Debian's etcd-server",
            etcd::EtcdCluster::binary().display()
        );
    }
    let tick = support::tick();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "cluster: 3 switchboard nodes x {} HTTP checks ({} services, a route each), a 3-member etcd, one machine",
        opts.checks,
        opts.services()
    );
    println!(
        "  switchboard {} (git {}), {}, {cpus} CPUs; lease 10 s; window {} s per phase: {} s quiet, {} primaries down {} s, {} s to settle",
        env!("CARGO_PKG_VERSION"),
        git_rev(),
        etcd_version(),
        opts.window().as_secs(),
        opts.quiet.as_secs(),
        opts.flip,
        opts.down.as_secs(),
        opts.settle.as_secs()
    );
    let mut phases = Vec::new();
    for &interval in &opts.intervals {
        phases.push(phase(&opts, interval, tick)?);
    }
    print_table(&phases);
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn pct(cpu: Duration, window: Duration) -> String {
    format!("{:.1} %", 100.0 * cpu.as_secs_f64() / window.as_secs_f64())
}

fn print_table(phases: &[Phase]) {
    let row = |label: &str, f: &dyn Fn(&Phase) -> String| {
        let mut line = format!("{label:<46}");
        for p in phases {
            line.push_str(&format!(" {:>18}", f(p)));
        }
        println!("{line}");
    };
    println!();
    row("probe interval", &|p| format!("{} s", p.interval.as_secs()));
    row("window", &|p| format!("{:.1} s", p.window.as_secs_f64()));
    row("probes/s on the leader", &|p| {
        format!("{:.1}", p.probes / p.window.as_secs_f64())
    });
    row("state changes (transitions) in the window", &|p| {
        format!("{:.0}", p.transitions)
    });
    row("log entries appended", &|p| p.entries.to_string());
    row("etcd writes (revisions) in the window", &|p| {
        p.revisions.to_string()
    });
    row("etcd write rate (revisions/s)", &|p| {
        format!("{:.2}", p.revisions as f64 / p.window.as_secs_f64())
    });
    row("  of which in the quiet part", &|p| {
        p.revisions_quiet.to_string()
    });
    row("  per state change", &|p| {
        if p.transitions > 0.0 {
            format!("{:.1}", p.revisions as f64 / p.transitions)
        } else {
            "-".into()
        }
    });
    row("etcd raft proposals/s (incl. election txns)", &|p| {
        format!("{:.2}", p.proposals / p.window.as_secs_f64())
    });
    row("  in the quiet part (/s)", &|p| {
        format!("{:.2}", p.proposals_quiet / p.quiet.as_secs_f64())
    });
    row("leader CPU (% of one core)", &|p| {
        pct(p.leader_cpu, p.window)
    });
    row("follower CPU (% of one core, each)", &|p| {
        p.follower_cpu
            .iter()
            .map(|c| pct(*c, p.window))
            .collect::<Vec<_>>()
            .join(" / ")
    });
    row("etcd CPU (% of one core, 3 members)", &|p| {
        pct(p.etcd_cpu, p.window)
    });
    row("follower lag samples (entries x followers)", &|p| {
        p.lag.len().to_string()
    });
    row("follower lag p50 (commit seen -> applied)", &|p| {
        ms(percentile(&p.lag, 0.50))
    });
    row("follower lag p99 (commit seen -> applied)", &|p| {
        ms(percentile(&p.lag, 0.99))
    });
    row("follower lag max", &|p| ms(percentile(&p.lag, 1.0)));
    row("follower lag p99 (leader's stamp -> applied)", &|p| {
        ms(percentile(&p.lag_from_stamp, 0.99))
    });
    row("leader's stamp -> commit seen, p99", &|p| {
        ms(percentile(&p.commit, 0.99))
    });
    println!(
        "  lag resolution: a follower is polled every {} ms while behind; lag can only be overstated by it",
        POLL.as_millis()
    );
    if let (Some(slow), Some(fast)) = (phases.first(), phases.last()) {
        if phases.len() > 1 && slow.revisions > 0 {
            let rate = |p: &Phase| p.revisions as f64 / p.window.as_secs_f64();
            let probe_ratio = (fast.probes / fast.window.as_secs_f64())
                / (slow.probes / slow.window.as_secs_f64());
            let ratio = rate(fast) / rate(slow);
            println!();
            println!(
                "etcd writes at {} s / at {} s probes: {ratio:.2} (probe rate x{probe_ratio:.2}); writes grow with the probe rate: {}",
                fast.interval.as_secs(),
                slow.interval.as_secs(),
                if ratio <= MAX_WRITE_RATIO {
                    format!("no (<= {MAX_WRITE_RATIO})")
                } else {
                    "YES".into()
                }
            );
        }
    }
}
