//! End to end with real sockets and a real SMTP server: the `switchboard` binary probes a local
//! ticket form, fails over when it breaks, announces, shows it, fails back, and survives SIGKILL.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/smtp.rs"]
mod smtp;

use smtp::{free_port, parse_mail, SmtpServer};

/// A loopback HTTP server with a ticket form that can be broken and a backup form.
struct Target {
    addr: SocketAddr,
    form_down: Arc<AtomicBool>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
        let addr = listener.local_addr().expect("addr");
        let form_down = Arc::new(AtomicBool::new(false));
        let down = form_down.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let down = down.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, body) = match path.as_str() {
                        "/form" if down.load(Ordering::SeqCst) => {
                            ("503 Service Unavailable", "down")
                        }
                        "/form" => ("200 OK", "<form><input name=request_subject></form>"),
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
        Target { addr, form_down }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set_down(&self, down: bool) {
        self.form_down.store(down, Ordering::SeqCst);
    }
}

/// The daemon under test; killed on drop.
struct Daemon {
    child: Child,
    base: String,
}

impl Daemon {
    fn start(config: &Path, port: u16) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["run", "--config"])
            .arg(config)
            .env("SWITCHBOARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn location(&self, route: &str) -> String {
        let r = get(&self.url(&format!("/go/{route}"))).expect("GET /go");
        assert_eq!(r.status, 307, "/go/{route} answers 307: {r:?}");
        r.header("location").expect("Location header")
    }

    fn kill9(&mut self) {
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
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// A minimal HTTP/1.1 GET over a fresh loopback connection.
fn get(url: &str) -> std::io::Result<Response> {
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
    let text = String::from_utf8_lossy(&raw).to_string();
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
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Polls `cond` until it holds; panics naming `what` after `limit` (generous: never a speed test).
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn read_dir_texts(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// Writes a config with fast timings for `target` into `dir`; returns (main file, API port).
fn write_config(dir: &Path, target: &Target, email: &str) -> (PathBuf, u16) {
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
path = "var/switchboard.db"
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
    std::fs::write(
        dir.join("probes/ticket-submission.toml"),
        format!(
            r#"[service]
id = "ticket-submission"
name = "Ticket submission"
failover_when = "any"
failback = "auto"
recovery_hold = "2s"

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

fn component_status(d: &Daemon) -> String {
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

#[test]
fn failover_and_failback_end_to_end_over_real_smtp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start(&dir.path().join("maildir"));
    let target = Target::start();
    let (config, port) = write_config(
        dir.path(),
        &target,
        &format!("transport = \"smtp\"\nsmtp_url = \"{}\"", smtp.url()),
    );
    let d = Daemon::start(&config, port);
    let (primary, backup) = (target.url("/form"), target.url("/backup"));

    wait_until(
        "both checks probed healthy",
        Duration::from_secs(30),
        || {
            component_status(&d) == "operational"
                && get(&d.url("/metrics"))
                    .map(|r| r.body.contains("probe_success"))
                    .unwrap_or(false)
        },
    );
    assert_eq!(d.location("submit-ticket"), primary);

    target.set_down(true);
    wait_until("route switched to backup", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });
    assert_eq!(component_status(&d), "partial_outage");

    wait_until(
        "failover e-mails accepted by SMTP",
        Duration::from_secs(30),
        || smtp.messages().len() >= 2,
    );
    let msgs: Vec<_> = smtp.messages().iter().map(|p| parse_mail(p)).collect();
    assert_eq!(msgs.len(), 2, "one message per audience: {msgs:#?}");
    let mut to: Vec<&str> = msgs.iter().filter_map(|m| m.header("To")).collect();
    to.sort();
    assert_eq!(
        to,
        ["support-announce@example.com", "support-oncall@example.com"]
    );
    for m in &msgs {
        let subject = m.header("Subject").expect("Subject");
        assert!(
            subject.contains("Ticket submission"),
            "subject names the service: {subject}"
        );
        assert!(
            subject.contains(&backup),
            "subject names the route now in use: {subject}"
        );
        let text = m.part("text/plain").expect("a plain-text part");
        assert!(
            text.contains(&backup),
            "the message tells where to go now: {text}"
        );
    }

    let r = get(&d.url("/api/v1/routes")).expect("routes");
    let routes: serde_json::Value = serde_json::from_str(&r.body).expect("routes JSON");
    assert_eq!(routes["routes"][0]["active"], "backup");
    assert_eq!(routes["routes"][0]["active_target"], backup.as_str());

    target.set_down(false);
    wait_until(
        "route back on primary after recovery_hold",
        Duration::from_secs(30),
        || d.location("submit-ticket") == primary,
    );
    assert_eq!(component_status(&d), "operational");
    wait_until(
        "failback e-mails accepted by SMTP",
        Duration::from_secs(30),
        || smtp.messages().len() >= 4,
    );
    let msgs: Vec<_> = smtp.messages().iter().map(|p| parse_mail(p)).collect();
    assert_eq!(msgs.len(), 4, "failover + failback, two audiences each");
    let mut ids: Vec<&str> = msgs.iter().filter_map(|m| m.header("Message-ID")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each message has its own Message-ID");
    let failback = msgs
        .iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains(&primary)))
        .count();
    assert_eq!(failback, 2, "both audiences are told the primary is back");

    let metrics = get(&d.url("/metrics")).expect("metrics").body;
    assert!(
        metrics.contains("switchboard_transitions_total{")
            && metrics
                .lines()
                .any(|l| l.starts_with("switchboard_service_state{")
                    && l.contains("state=\"operational\"")
                    && l.ends_with(" 1")),
        "transitions and state exported:\n{metrics}"
    );
}

#[test]
fn sigkill_while_failed_over_keeps_backup_and_sends_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config(
        dir.path(),
        &target,
        "transport = \"file\"\ndir = \"var/mail\"",
    );
    let mail = dir.path().join("var/mail");
    let emls = || -> Vec<String> { read_dir_texts(&mail) };
    let backup = target.url("/backup");

    let mut d = Daemon::start(&config, port);
    wait_until("service operational", Duration::from_secs(30), || {
        component_status(&d) == "operational"
    });
    target.set_down(true);
    wait_until("route switched to backup", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });
    wait_until(
        "failover .eml files written",
        Duration::from_secs(30),
        || emls().len() >= 2,
    );
    assert_eq!(emls().len(), 2);
    assert!(emls()
        .iter()
        .all(|m| m.contains("Ticket submission") && m.contains(&backup)));

    d.kill9();
    let d = Daemon::start(&config, port);
    // Right after the restart, before any probe could decide anything, the state is restored.
    assert_eq!(d.location("submit-ticket"), backup);
    assert_eq!(component_status(&d), "partial_outage");
    // Let it probe for a while with the primary still down: nothing new to say.
    wait_until(
        "the primary probed again after restart",
        Duration::from_secs(30),
        || {
            get(&d.url("/metrics"))
                .map(|r| {
                    r.body.lines().any(|l| {
                        l.starts_with("probe_success{")
                            && l.contains("ticket-form")
                            && l.ends_with(" 0")
                    })
                })
                .unwrap_or(false)
        },
    );
    thread::sleep(Duration::from_secs(3));
    assert_eq!(d.location("submit-ticket"), backup);
    assert_eq!(emls().len(), 2, "no e-mail is repeated after the restart");
}
