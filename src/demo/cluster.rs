//! `switchboard demo --cluster`: three `switchboard run` nodes on a local three-member etcd, against the demo's simulated site; the leader is killed mid-outage and a follower takes over.
//!
//! Everything is real but the support site: the etcd members are Debian's `etcd`
//! (`super::etcd`), each node is this executable as a child process (`switchboard run` on
//! the demo's configuration plus a `[cluster]` table), and what the narration says is read
//! from outside, as a newcomer would check it: who leads from each node's `/metrics`
//! (`switchboard_cluster_leader`), where customers go from each node's `/go/submit-ticket`.
//! A poller asks every live node's `/go` every 100 ms throughout and counts the requests no
//! node answered with a redirect.
//!
//! A cycle: a leader is elected; the ticket form breaks; the leader fails over; the demo
//! kills it with SIGKILL; a follower takes over once the lease has run out and carries on
//! from the replicated log; the form is fixed; the new leader fails back; the killed node
//! is restarted and rejoins as a follower. Cycles repeat until Ctrl-C, SIGTERM or SIGHUP
//! (or `--cycles`); then every node is stopped (SIGTERM, then SIGKILL after 10 s), etcd
//! after them, and the temporary directory is removed. A child that exits by itself stops
//! the demo, with the end of its log.

use super::etcd::{etcd_binary, free_port, LocalEtcd};
use super::{say, start_site, write_config, DemoError, Site};
use crate::announce::http::{client, Roots};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::watch;

/// What `--cluster` may be told.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Stop after this many cycles (default: repeat until stopped).
    pub cycles: Option<u32>,
    /// The etcd server binary (default: `etcd` on the PATH, else `/usr/bin/etcd`).
    pub etcd: Option<PathBuf>,
}

/// The nodes' names.
const NODES: [&str; 3] = ["a", "b", "c"];
/// The leader key's lease: short, so the takeover is quick to watch (3 s is the minimum).
const LEASE: Duration = Duration::from_secs(4);
/// How long a step may take before the demo gives up: far more than any needs.
const STEP: Duration = Duration::from_secs(60);
/// The route the narration follows, and the two places it sends customers.
const GO: &str = "/go/submit-ticket";
const PRIMARY: &str = "/hc/en-us/requests/new";
const BACKUP: &str = "/forms/support";

/// A node as the poller sees it: its URL and whether it should be answering.
struct Watched {
    url: String,
    live: AtomicBool,
}

/// One `switchboard run` child.
struct Node {
    name: &'static str,
    config: PathBuf,
    log: PathBuf,
    watched: Arc<Watched>,
    child: Option<Child>,
    pid: u32,
}

/// The `/go` requests of the current cycle.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    refused: AtomicU64,
}

struct Cluster {
    dir: PathBuf,
    site: Arc<Site>,
    etcd: Option<LocalEtcd>,
    nodes: Vec<Node>,
    tally: Arc<Tally>,
    http: reqwest::Client,
    start: Instant,
}

/// Says `text` with the seconds since the demo started.
fn say_at(start: Instant, text: &str) {
    say(&format!("{:6.1}s  {text}", start.elapsed().as_secs_f64()));
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Runs the cluster demo until its cycles are done or `shutdown` turns true.
pub async fn run(options: Options, shutdown: watch::Receiver<bool>) -> Result<(), DemoError> {
    let binary = match &options.etcd {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => {
            return Err(DemoError::EtcdMissing(format!(
                "etcd binary {} not found",
                path.display()
            )))
        }
        None => etcd_binary().ok_or_else(|| {
            DemoError::EtcdMissing(
                "etcd is not installed (no `etcd` on the PATH, no /usr/bin/etcd)".to_string(),
            )
        })?,
    };
    let start = Instant::now();
    let http = client(&Roots::Webpki)?;
    let (site, site_url) = start_site(shutdown.clone()).await?;
    let dir = std::env::temp_dir().join(format!("switchboard-demo-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    say_at(start, &format!("A simulated support site runs at {site_url} (portal, ticket form, backup form, booking page)."));
    say_at(
        start,
        &format!(
            "Starting 3 etcd members and 3 Switchboard nodes ({}), lease {}, in {}",
            NODES.join(", "),
            secs(LEASE),
            dir.display()
        ),
    );
    let mut cluster = Cluster {
        dir,
        site,
        etcd: None,
        nodes: Vec::new(),
        tally: Arc::new(Tally::default()),
        http,
        start,
    };
    let (poll_stop, poll_stopped) = watch::channel(false);
    let outcome = {
        let mut stop = shutdown.clone();
        // A closed terminal must not leave the children running.
        let hangup = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(mut h) => {
                    h.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        let script = cluster.script(&binary, &site_url, &options, poll_stopped);
        tokio::select! {
            r = script => r,
            _ = stop.wait_for(|s| *s) => Ok(()),
            _ = hangup => Ok(()),
        }
    };
    let _ = poll_stop.send(true);
    cluster.stop().await;
    outcome
}

impl Cluster {
    /// The demo's story, cycle after cycle.
    async fn script(
        &mut self,
        binary: &Path,
        site_url: &str,
        options: &Options,
        poll_stop: watch::Receiver<bool>,
    ) -> Result<(), DemoError> {
        let etcd_dir = self.dir.join("etcd");
        let etcd = LocalEtcd::spawn_isolated(binary, 3, &etcd_dir)?;
        let members = etcd
            .members
            .iter()
            .map(|m| {
                format!(
                    "{} (pid {}) http://127.0.0.1:{}",
                    m.name,
                    m.pid().unwrap_or(0),
                    m.client_port
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let endpoints = etcd.endpoints();
        self.etcd = Some(etcd);
        self.wait("etcd to accept writes", Duration::from_secs(30), |c| {
            let ready = c.etcd.as_ref().is_some_and(LocalEtcd::ready);
            async move { ready.then_some(()) }
        })
        .await?;
        say_at(self.start, &format!("etcd is up: {members}"));

        self.write_nodes(site_url, &endpoints)?;
        for i in 0..self.nodes.len() {
            self.spawn_node(i)?;
        }
        for n in &self.nodes {
            say_at(
                self.start,
                &format!(
                    "node {} (pid {}): {url}/status   {url}{GO}   log: {}",
                    n.name,
                    n.pid,
                    n.log.display(),
                    url = n.watched.url
                ),
            );
        }
        tokio::spawn(poll_go(
            self.http.clone(),
            self.nodes.iter().map(|n| n.watched.clone()).collect(),
            self.tally.clone(),
            poll_stop,
        ));

        let started = Instant::now();
        let leader = self.wait_leader(STEP).await?;
        self.wait_all_go(PRIMARY).await?;
        for n in &self.nodes {
            n.watched.live.store(true, Ordering::SeqCst);
        }
        say_at(
            self.start,
            &format!(
                "Node {} leads (elected {} after the nodes started); {} follow: they apply the replicated log, serve {GO} and /status from it, and forward control requests to {}.",
                self.nodes[leader].name,
                secs(started.elapsed()),
                self.others(leader),
                self.nodes[leader].name
            ),
        );

        let mut cycle = 1;
        loop {
            self.cycle(cycle).await?;
            if options.cycles.is_some_and(|n| cycle >= n) {
                say_at(
                    self.start,
                    &format!(
                        "Done after {cycle} cycle{}.",
                        if cycle == 1 { "" } else { "s" }
                    ),
                );
                return Ok(());
            }
            say_at(self.start, "The cycle repeats in 8 s (Ctrl-C to stop).");
            self.pause(Duration::from_secs(8)).await?;
            cycle += 1;
        }
    }

    /// One cycle: outage, failover, the leader killed, takeover, failback, rejoin.
    async fn cycle(&mut self, cycle: u32) -> Result<(), DemoError> {
        self.tally.answered.store(0, Ordering::SeqCst);
        self.tally.refused.store(0, Ordering::SeqCst);
        say_at(self.start, &format!("Cycle {cycle}: in 5 s the ticket form breaks. Every live node's {GO} is asked every 100 ms from now on."));
        self.pause(Duration::from_secs(5)).await?;

        self.site.ticket_form_down.store(true, Ordering::SeqCst);
        let broke = Instant::now();
        say_at(
            self.start,
            "The ticket form now answers 503: customers cannot submit requests.",
        );
        let leader = self
            .switched(
                BACKUP,
                broke,
                "failed over",
                "every node sends customers to the backup form",
            )
            .await?;

        let killed_name = self.nodes[leader].name;
        let killed_pid = self.nodes[leader].pid;
        say_at(self.start, &format!("kill -9 node {killed_name} (pid {killed_pid}), the leader. Its lease ({}) has to run out before another node may lead.", secs(LEASE)));
        let killed = Instant::now();
        self.kill9(leader).await;
        let new = self
            .wait_leader(LEASE * 3 + Duration::from_secs(10))
            .await?;
        let took = killed.elapsed();
        self.wait_all_go(BACKUP).await?;
        say_at(
            self.start,
            &format!(
                "Node {} took over {} after the kill (lease {}) and carries on from the same log: customers are still sent to the backup form.",
                self.nodes[new].name,
                secs(took),
                secs(LEASE)
            ),
        );

        self.pause(Duration::from_secs(2)).await?;
        self.site.ticket_form_down.store(false, Ordering::SeqCst);
        let fixed = Instant::now();
        say_at(self.start, &format!("The ticket form is fixed. Leader {} switches back once it has been healthy for the 10 s recovery hold.", self.nodes[new].name));
        self.switched(
            PRIMARY,
            fixed,
            "failed back",
            "every live node sends customers to the ticket form again",
        )
        .await?;

        let back = leader;
        self.spawn_node(back)?;
        say_at(
            self.start,
            &format!(
                "Restarting node {killed_name} (pid {}) on its own database.",
                self.nodes[back].pid
            ),
        );
        self.wait("the restarted node to rejoin", STEP, |c| {
            let (http, url, name) = (
                c.http.clone(),
                c.nodes[back].watched.url.clone(),
                c.nodes[back].name,
            );
            async move {
                let go = location(&http, &url).await?;
                let follows = !leads(&http, &url, name).await?;
                (go.ends_with(PRIMARY) && follows).then_some(())
            }
        })
        .await?;
        self.nodes[back].watched.live.store(true, Ordering::SeqCst);
        let leader = self.wait_leader(STEP).await?;
        say_at(
            self.start,
            &format!(
                "Node {killed_name} rejoined as a follower and sends customers to the ticket form; {} still leads.",
                self.nodes[leader].name
            ),
        );
        say_at(
            self.start,
            &format!(
                "Cycle {cycle}: {GO} asked of every live node every 100 ms: {} answered with a redirect, {} refused.",
                self.tally.answered.load(Ordering::SeqCst),
                self.tally.refused.load(Ordering::SeqCst)
            ),
        );
        Ok(())
    }

    /// Writes each node's configuration: the demo's, its own port and database, `[cluster]`,
    /// and one operator token file for all (a follower forwards control requests with the
    /// caller's token to the leader, which checks it against its own file).
    fn write_nodes(&mut self, site_url: &str, endpoints: &[String]) -> Result<(), DemoError> {
        let etcd = endpoints
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut tokens: Option<PathBuf> = None;
        for name in NODES {
            let dir = self.dir.join(format!("node-{name}"));
            let port = free_port()?;
            let listen = format!("127.0.0.1:{port}");
            let config = write_config(&dir, site_url, &listen)?;
            let mut text = std::fs::read_to_string(&config)?;
            text.push_str(&format!(
                "\n[cluster]\nname = \"{name}\"\netcd = [{etcd}]\nprefix = \"/switchboard-demo\"\nlease_ttl = \"{}s\"\n",
                LEASE.as_secs()
            ));
            std::fs::write(&config, text)?;
            let here = dir.join("tokens.toml");
            match &tokens {
                None => {
                    crate::api::auth::new_token(
                        &here,
                        "demo-operator",
                        crate::api::auth::Role::Operator,
                    )
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                    tokens = Some(here);
                }
                Some(first) => {
                    std::fs::copy(first, &here)?;
                }
            }
            self.nodes.push(Node {
                name,
                config,
                log: dir.join("switchboard.log"),
                watched: Arc::new(Watched {
                    url: format!("http://{listen}"),
                    live: AtomicBool::new(false),
                }),
                child: None,
                pid: 0,
            });
        }
        Ok(())
    }

    /// Starts node `i` (`switchboard run` of this executable), its output to its log. The
    /// poller counts it once it has answered.
    fn spawn_node(&mut self, i: usize) -> Result<(), DemoError> {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("run")
            .arg("--config")
            .arg(&n.config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // The log is a file to read, not a terminal.
            .env("NO_COLOR", "1")
            // Its own process group: a Ctrl-C reaches the demo, which stops it in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        n.pid = child.id().unwrap_or(0);
        n.child = Some(child);
        Ok(())
    }

    /// SIGKILL to node `i`, taken out of the poll first so the requests it can no longer
    /// answer are not counted as refused.
    async fn kill9(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.watched.live.store(false, Ordering::SeqCst);
        if let Some(mut child) = n.child.take() {
            let _ = child.kill().await;
        }
    }

    /// The names of the nodes other than `i`, for the narration.
    fn others(&self, i: usize) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.name)
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// Waits until one running node says it leads; its index.
    async fn wait_leader(&mut self, within: Duration) -> Result<usize, DemoError> {
        self.wait("a node to lead", within, |c| {
            let asks = c
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.child.is_some())
                .map(|(i, n)| (i, n.watched.url.clone(), n.name))
                .collect::<Vec<_>>();
            let http = c.http.clone();
            async move {
                for (i, url, name) in asks {
                    if leads(&http, &url, name).await == Some(true) {
                        return Some(i);
                    }
                }
                None
            }
        })
        .await
    }

    /// Waits until every live node's `/go` sends customers to `path`, then says that the
    /// leader `did` it, how long after `since`, and `what` follows; the leader's index.
    async fn switched(
        &mut self,
        path: &'static str,
        since: Instant,
        did: &str,
        what: &str,
    ) -> Result<usize, DemoError> {
        self.wait_all_go(path).await?;
        let took = since.elapsed();
        let leader = self.wait_leader(STEP).await?;
        say_at(
            self.start,
            &format!(
                "Leader {} {did} {} later: {what}.",
                self.nodes[leader].name,
                secs(took)
            ),
        );
        Ok(leader)
    }

    /// Waits until every live node's `/go` sends customers to `path`.
    async fn wait_all_go(&mut self, path: &'static str) -> Result<(), DemoError> {
        let what = format!("every live node's {GO} to send customers to {path}");
        self.wait(&what, STEP, |c| {
            let urls = c
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| n.watched.url.clone())
                .collect::<Vec<_>>();
            let http = c.http.clone();
            async move {
                for url in urls {
                    if !location(&http, &url).await?.ends_with(path) {
                        return None;
                    }
                }
                Some(())
            }
        })
        .await
    }

    /// Waits `d`, still watching the children.
    async fn pause(&mut self, d: Duration) -> Result<(), DemoError> {
        let until = Instant::now() + d;
        self.wait("the end of a pause", d + STEP, |_| {
            let over = Instant::now() >= until;
            async move { over.then_some(()) }
        })
        .await
    }

    /// Asks `probe` every 100 ms until it answers, checking between asks that no child
    /// exited by itself.
    async fn wait<T, F, Fut>(
        &mut self,
        what: &str,
        within: Duration,
        mut probe: F,
    ) -> Result<T, DemoError>
    where
        F: FnMut(&Cluster) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let begun = Instant::now();
        loop {
            self.check_children()?;
            if let Some(v) = probe(self).await {
                return Ok(v);
            }
            if begun.elapsed() > within {
                return Err(DemoError::Timeout {
                    what: what.to_string(),
                    within,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An error naming the first child that exited without being told to.
    fn check_children(&mut self) -> Result<(), DemoError> {
        for n in &mut self.nodes {
            let Some(child) = n.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                n.child = None;
                n.watched.live.store(false, Ordering::SeqCst);
                return Err(DemoError::ChildDied {
                    what: format!("node {} (pid {})", n.name, n.pid),
                    status: status.to_string(),
                    log_tail: tail(&n.log),
                });
            }
        }
        if let Some(etcd) = self.etcd.as_mut() {
            if let Some((name, pid, status)) = etcd.exited() {
                return Err(DemoError::ChildDied {
                    what: format!("etcd member {name} (pid {pid})"),
                    status: status.to_string(),
                    log_tail: tail(&etcd.dir().join(format!("{name}.log"))),
                });
            }
        }
        Ok(())
    }

    /// Stops every node (SIGTERM, SIGKILL after 10 s), then etcd, then removes the
    /// temporary directory.
    async fn stop(&mut self) {
        let mut children = Vec::new();
        for n in &mut self.nodes {
            n.watched.live.store(false, Ordering::SeqCst);
            if let Some(child) = n.child.take() {
                if let Some(pid) = child.id() {
                    // SAFETY: a plain syscall on our own unreaped child, whose pid cannot
                    // have been reused.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGTERM);
                    }
                }
                children.push(child);
            }
        }
        let nodes = children.len();
        for mut child in children {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        let members = self.etcd.as_ref().map_or(0, |e| e.members.len());
        // Dropping it kills and reaps every member.
        drop(self.etcd.take());
        let removed = std::fs::remove_dir_all(&self.dir);
        say_at(
            self.start,
            &match removed {
                Ok(()) => format!(
                    "Stopped {nodes} Switchboard node(s) and {members} etcd member(s); removed {}",
                    self.dir.display()
                ),
                Err(e) => format!(
                    "Stopped {nodes} Switchboard node(s) and {members} etcd member(s); could not remove {}: {e}",
                    self.dir.display()
                ),
            },
        );
    }
}

/// Whether the node at `url` says (in its metrics) that it leads; `None` when it does not
/// answer.
async fn leads(http: &reqwest::Client, url: &str, name: &str) -> Option<bool> {
    let text = http
        .get(format!("{url}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(text.contains(&format!("switchboard_cluster_leader{{node=\"{name}\"}} 1")))
}

/// Where the node at `url` sends customers of the followed route: the `Location` of its
/// redirect; `None` without one.
async fn location(http: &reqwest::Client, url: &str) -> Option<String> {
    let r = http
        .get(format!("{url}{GO}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 307 {
        return None;
    }
    r.headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()
        .map(str::to_string)
}

/// Asks every live node's `/go` every 100 ms until `stop`, counting answers and refusals.
/// A node taken out while a request to it was under way is not counted against.
async fn poll_go(
    http: reqwest::Client,
    nodes: Vec<Arc<Watched>>,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for n in &nodes {
            if !n.live.load(Ordering::SeqCst) {
                continue;
            }
            if location(&http, &n.url).await.is_some() {
                tally.answered.fetch_add(1, Ordering::SeqCst);
            } else if n.live.load(Ordering::SeqCst) {
                tally.refused.fetch_add(1, Ordering::SeqCst);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The last lines of a log file, for the message of a child that died.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
