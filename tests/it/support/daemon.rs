//! Shared by the end-to-end tests: a breakable loopback target, the real daemon as a child
//! process, a minimal HTTP client and a config writer with fast timings.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A loopback port free right now (the daemon binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A loopback HTTP server with a ticket form that can be broken and a backup form.
pub struct Target {
    pub addr: SocketAddr,
    pub form_down: Arc<AtomicBool>,
    /// 0: clean; n: every n-th request to `/form` fails (a noisy target).
    pub form_fail_every: Arc<AtomicU64>,
    /// Breaks the backup form too (`set_backup_down`).
    pub backup_down: Arc<AtomicBool>,
    /// Source addresses whose requests to `/form` fail (`refuse_form_from`): the form as one
    /// vantage's network sees it.
    pub form_refused: Arc<std::sync::Mutex<Vec<std::net::IpAddr>>>,
}

impl Target {
    pub fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
        let addr = listener.local_addr().expect("addr");
        let form_down = Arc::new(AtomicBool::new(false));
        let form_fail_every = Arc::new(AtomicU64::new(0));
        let down = form_down.clone();
        let every = form_fail_every.clone();
        let form_requests = Arc::new(AtomicU64::new(0));
        let backup_down = Arc::new(AtomicBool::new(false));
        let b_down = backup_down.clone();
        let form_refused = Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = form_refused.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let peer = s.peer_addr().map(|a| a.ip()).ok();
                let refused_here = peer.is_some_and(|ip| refused.lock().unwrap().contains(&ip));
                let down = down.clone();
                let (every, form_requests) = (every.clone(), form_requests.clone());
                let b_down = b_down.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let noise = || {
                        let n = every.load(Ordering::SeqCst);
                        n > 0 && (form_requests.fetch_add(1, Ordering::SeqCst) + 1) % n == 0
                    };
                    let (status, body) = match path.as_str() {
                        "/form" if down.load(Ordering::SeqCst) => {
                            ("503 Service Unavailable", "down")
                        }
                        "/form" if refused_here => ("503 Service Unavailable", "refused"),
                        "/form" if noise() => ("503 Service Unavailable", "noise"),
                        "/form" => ("200 OK", "<form><input name=request_subject></form>"),
                        "/backup" if b_down.load(Ordering::SeqCst) => {
                            ("503 Service Unavailable", "down")
                        }
                        "/backup" => ("200 OK", "<form><input name=request_subject></form>"),
                        _ => ("404 Not Found", "no"),
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Target {
            addr,
            form_down,
            form_fail_every,
            backup_down,
            form_refused,
        }
    }

    /// Makes `/form` fail for requests from these source addresses (and only them).
    pub fn refuse_form_from(&self, sources: &[&str]) {
        *self.form_refused.lock().unwrap() = sources
            .iter()
            .map(|s| s.parse().expect("an IP address"))
            .collect();
    }

    /// Makes every `n`-th request to `/form` fail (0: none), as a noisy target does.
    pub fn set_fail_every(&self, n: u64) {
        self.form_fail_every.store(n, Ordering::SeqCst);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_down(&self, down: bool) {
        self.form_down.store(down, Ordering::SeqCst);
    }

    pub fn set_backup_down(&self, down: bool) {
        self.backup_down.store(down, Ordering::SeqCst);
    }
}

/// The daemon under test; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub base: String,
}

impl Daemon {
    pub fn start(config: &Path, port: u16) -> Daemon {
        Daemon::start_with(config, port, &[], None)
    }

    /// Starts with extra environment variables, logging to `log` when given.
    pub fn start_with(
        config: &Path,
        port: u16,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Daemon {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["run", "--config"])
            .arg(config)
            .env("SWITCHBOARD_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start switchboard");
        let d = Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_until("switchboard /readyz", Duration::from_secs(30), || {
            get(&d.url("/readyz"))
                .map(|r| r.status == 200)
                .unwrap_or(false)
        });
        d
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Its `/metrics` text (empty while it does not answer).
    pub fn metrics(&self) -> String {
        get(&self.url("/metrics"))
            .map(|r| r.body)
            .unwrap_or_default()
    }

    pub fn location(&self, route: &str) -> String {
        let r = get(&self.url(&format!("/go/{route}"))).expect("GET /go");
        assert_eq!(r.status, 307, "/go/{route} answers 307: {r:?}");
        r.header("location").expect("Location header")
    }

    pub fn kill9(&mut self) {
        // Child::kill sends SIGKILL on Unix: no chance to flush or say goodbye.
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// Parses a whole response as read to the end of a `Connection: close` exchange (status
    /// 0 when there is none).
    pub fn parse(raw: &[u8]) -> Response {
        let text = String::from_utf8_lossy(raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// A minimal HTTP/1.1 GET over a fresh loopback connection.
pub fn get(url: &str) -> std::io::Result<Response> {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(Response::parse(&raw))
}

/// Polls `cond` until it holds; panics naming `what` after `limit` (generous: never a speed test).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn read_dir_texts(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// The `[email]` lines for e-mail written as `.eml` files under `var/mail` of the config's
/// directory, for tests that do not read the mail or read it there.
pub const FILE_MAIL: &str = "transport = \"file\"\ndir = \"var/mail\"";

/// Writes a config with fast timings for `target` into `dir`; returns (main file, API port).
pub fn write_config(dir: &Path, target: &Target, email: &str) -> (PathBuf, u16) {
    write_config_with(dir, target, email, "var/switchboard.db", "2s")
}

/// Writes the main config file with fast probe timings into `dir` (and creates `probes/`
/// beside it): the API on a free port, the database at `storage`, the audiences (on-call
/// `support-oncall@`, customers `support-announce@`, drill `support-ops@example.com`), and
/// `email`, the `[email]` table after its `from`. Returns (main file, API port).
pub fn write_main_config(dir: &Path, storage: &str, email: &str) -> (PathBuf, u16) {
    let port = free_port();
    std::fs::create_dir_all(dir.join("probes")).expect("mkdir");
    let main = dir.join("switchboard.toml");
    std::fs::write(
        &main,
        format!(
            r#"probes = "probes"
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "{storage}"
[email]
from = "Support Status <status@example.com>"
{email}
[audiences]
oncall = ["support-oncall@example.com"]
customers = ["support-announce@example.com"]
drill = ["support-ops@example.com"]
[status_page]
title = "E2E Support Status"
[defaults]
interval = "1s"
timeout = "1s"
retry_interval = "200ms"
failure_threshold = 2
success_threshold = 2
"#
        ),
    )
    .expect("write main config");
    (main, port)
}

/// `write_config` with the SQLite path and the recovery hold chosen by the caller.
///
/// E-mail is neither grouped nor delayed (`group_window` and `customer_delay` at `0s`):
/// the tests using this helper are about something else, and each change's own e-mail at
/// once is what they count. `tests/announce_groups.rs` tests grouping with its own config.
pub fn write_config_with(
    dir: &Path,
    target: &Target,
    email: &str,
    storage: &str,
    hold: &str,
) -> (PathBuf, u16) {
    let email = format!("group_window = \"0s\"\ncustomer_delay = \"0s\"\n{email}");
    let (main, port) = write_main_config(dir, storage, &email);
    std::fs::write(
        dir.join("probes/ticket-submission.toml"),
        format!(
            r#"[service]
id = "ticket-submission"
name = "Ticket submission"
failover_when = "any"
failback = "auto"
recovery_hold = "{hold}"

[[check]]
name = "ticket-form"
url = "{form}"
conditions = ["[STATUS] == 200", "[BODY] == pat(*request_subject*)"]

[[check]]
name = "backup-form"
role = "backup"
url = "{backup}"
conditions = ["[STATUS] == 200"]

[[route]]
id = "submit-ticket"
primary = "{form}"
backup = "{backup}"
"#,
            form = target.url("/form"),
            backup = target.url("/backup"),
        ),
    )
    .expect("write service config");
    (main, port)
}

/// (from, to) of every transition recorded in the database at `db`, in order, read through a
/// read-only connection beside the daemon's.
pub fn stored_transitions(db: &Path) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database read-only");
    let mut stmt = conn
        .prepare("SELECT from_state, to_state FROM transitions ORDER BY id")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

pub fn component_status(d: &Daemon) -> String {
    let r = get(&d.url("/api/v2/summary.json")).expect("summary.json");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("summary.json is JSON");
    v["components"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "Ticket submission"))
        .and_then(|c| c["status"].as_str())
        .expect("a component for the service")
        .to_string()
}

/// The `/metrics` text served on `port` of 127.0.0.1 (empty while it does not answer).
pub fn scrape(port: u16) -> String {
    get(&format!("http://127.0.0.1:{port}/metrics"))
        .map(|r| r.body)
        .unwrap_or_default()
}

/// The value of the first series in `text` whose line starts with `prefix` (name and labels,
/// in the order the daemon writes them), if it is there.
pub fn series(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of every series in `text` whose line starts with `prefix` (all label values).
pub fn series_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of the daemon's first series whose line starts with `prefix`, if it is there.
pub fn metric(d: &Daemon, prefix: &str) -> Option<f64> {
    series(&d.metrics(), prefix)
}

/// Adds services `svc-01` to `svc-{n-1}` beside `write_config`'s `ticket-submission` (so `n`
/// in all), each with a primary and a backup check on `target` and a route `route-NN`.
pub fn add_services(dir: &Path, target: &Target, n: usize) {
    for i in 1..n {
        let service = ServiceFile {
            id: &format!("svc-{i:02}"),
            name: &format!("Support channel {i:02}"),
            recovery_hold: "2s",
            primary: &format!("form-{i:02}"),
            backup: &format!("backup-{i:02}"),
            route: &format!("route-{i:02}"),
        };
        service.write(dir, target);
    }
}

/// One service file: a primary check on `target`'s `/form`, a backup check on its `/backup`,
/// and a route between them; automatic failover and failback.
pub struct ServiceFile<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub recovery_hold: &'a str,
    pub primary: &'a str,
    pub backup: &'a str,
    pub route: &'a str,
}

impl ServiceFile<'_> {
    /// Writes it as `probes/{id}.toml` under `dir`.
    pub fn write(&self, dir: &Path, target: &Target) {
        let ServiceFile {
            id,
            name,
            recovery_hold,
            primary,
            backup,
            route,
        } = self;
        std::fs::write(
            dir.join(format!("probes/{id}.toml")),
            format!(
                r#"[service]
id = "{id}"
name = "{name}"
failover_when = "any"
failback = "auto"
recovery_hold = "{recovery_hold}"

[[check]]
name = "{primary}"
url = "{form}"
conditions = ["[STATUS] == 200"]

[[check]]
name = "{backup}"
role = "backup"
url = "{backup_url}"
conditions = ["[STATUS] == 200"]

[[route]]
id = "{route}"
primary = "{form}"
backup = "{backup_url}"
"#,
                form = target.url("/form"),
                backup_url = target.url("/backup"),
            ),
        )
        .expect("write service file");
    }
}

/// The cumulative buckets of the schedule-lag histogram: (upper bound, count).
pub fn lag_buckets(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("switchboard_probe_schedule_lag_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.parse().ok()?))
        })
        .collect()
}

/// The upper bound of the bucket holding the 99th percentile of the probes started between
/// two scrapes, and how many started.
pub fn lag_p99(before: &[(f64, f64)], after: &[(f64, f64)]) -> (f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    let p99 = delta
        .iter()
        .find(|(_, n)| *n >= total * 0.99)
        .map_or(f64::INFINITY, |(le, _)| *le);
    (p99, total)
}
