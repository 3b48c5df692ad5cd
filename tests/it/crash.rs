//! Crash safety with a real process: the `switchboard` binary is SIGKILLed at several points of a failover and restarted.
//!
//! No failpoints, no in-process simulation: the kill is timed from the outside, by watching
//! the daemon's HTTP side and a deliberately slow real SMTP server (aiosmtpd,
//! `support/slow_smtp.py`) that records when DATA begins and when a message is stored.
//! After every restart the tests check the state (`/go`, `/api/v1/routes`, `summary.json`),
//! that every announcement the store recorded reaches the Maildir, none twice unless the
//! server had already stored it when the process died (then with the same Message-ID), and
//! that `switchboard audit verify` passes. The last tests make the database unwritable and
//! expect a loud error, never a silent loss.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::support::daemon;
use crate::support::smtp;

use crate::support::free_port;
use daemon::{get, wait_until, write_config_with, Target};
use smtp::{maildir_messages, require_aiosmtpd};

/// Generous: these are correctness tests, never speed tests.
const LIMIT: Duration = Duration::from_secs(60);

/// When the slow SMTP server pauses relative to storing a message.
#[derive(Clone, Copy)]
enum Slowness {
    /// Pause, then store: a kill during the pause means the message was never accepted.
    BeforeStoring,
    /// Store, then pause before answering 250: a kill during the pause leaves a stored
    /// message the daemon never heard accepted.
    AfterStoring,
}

/// `support/slow_smtp.py`: aiosmtpd writing a Maildir, pausing inside DATA. Killed on drop.
struct SlowSmtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
    events: PathBuf,
}

impl SlowSmtp {
    fn start(dir: &Path, slowness: Slowness, delay: Duration) -> SlowSmtp {
        require_aiosmtpd();
        let port = free_port();
        let maildir = dir.join("maildir");
        let events = dir.join("smtp-events.log");
        File::create(&events).expect("create events file");
        let log = File::create(dir.join("smtp.log")).expect("smtp log");
        let mode = match slowness {
            Slowness::BeforeStoring => "before",
            Slowness::AfterStoring => "after",
        };
        let script = crate::support::script("slow_smtp.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&maildir)
            .arg(&events)
            .arg(mode)
            .arg(delay.as_secs_f64().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start slow_smtp.py");
        let mut s = SlowSmtp {
            child,
            port,
            maildir,
            events,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("slow SMTP server listening", LIMIT, || {
            if let Ok(Some(status)) = s.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("smtp.log")).unwrap_or_default();
                panic!("slow_smtp.py exited ({status}):\n{log}");
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        s
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Lines like `begin <t1.oncall.ticket-submission@switchboard>`, in order.
    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Message-ID -> how many stored copies the Maildir holds.
    fn stored_ids(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for path in maildir_messages(&self.maildir) {
            let text = std::fs::read_to_string(&path).expect("read message");
            let id = text
                .lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("message-id")
                        .then(|| v.trim().to_owned())
                })
                .unwrap_or_else(|| panic!("{} has no Message-ID:\n{text}", path.display()));
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }
}

impl Drop for SlowSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon under test, its output appended to `log` across restarts; killed on drop.
struct Daemon {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, port: u16) -> Daemon {
        let log = config.with_file_name("switchboard.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["run", "--config"])
            .arg(config)
            .env("SWITCHBOARD_LOG", "info")
            .stdout(out.try_clone().expect("clone log"))
            .stderr(out)
            .spawn()
            .expect("start switchboard");
        let mut d = Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        wait_until("switchboard /readyz", LIMIT, || {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("switchboard exited ({status}):\n{}", d.log_text());
            }
            get(&d.url("/readyz"))
                .map(|r| r.status == 200)
                .unwrap_or(false)
        });
        d
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn location(&self, route: &str) -> String {
        let r = get(&self.url(&format!("/go/{route}"))).expect("GET /go");
        assert_eq!(r.status, 307, "/go/{route} answers 307: {r:?}");
        r.header("location").expect("Location header")
    }

    fn metrics(&self) -> String {
        get(&self.url("/metrics"))
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// The value of the first series whose line starts with `prefix` (name and labels).
    fn metric(&self, prefix: &str) -> Option<f64> {
        daemon::series(&self.metrics(), prefix)
    }

    fn state_is(&self, state: &str) -> bool {
        self.metric(&format!(
            "switchboard_service_state{{service=\"ticket-submission\",state=\"{state}\"}}"
        )) == Some(1.0)
    }

    fn component_status(&self) -> String {
        let r = get(&self.url("/api/v2/summary.json")).expect("summary.json");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("summary.json is JSON");
        v["components"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "Ticket submission"))
            .and_then(|c| c["status"].as_str())
            .expect("a component for the service")
            .to_string()
    }

    fn active_side(&self) -> String {
        let r = get(&self.url("/api/v1/routes")).expect("routes");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("routes JSON");
        v["routes"][0]["active"]
            .as_str()
            .expect("active")
            .to_owned()
    }

    /// SIGKILL (Child::kill on Unix): no chance to flush, finish a send or say goodbye.
    fn kill9(mut self) {
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

/// One scenario's world: target, slow SMTP server, config; the daemon is started by the test.
struct World {
    dir: tempfile::TempDir,
    target: Target,
    smtp: SlowSmtp,
    config: PathBuf,
    port: u16,
}

impl World {
    fn new(slowness: Slowness, delay: Duration, hold: &str) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = Target::start();
        let smtp = SlowSmtp::start(dir.path(), slowness, delay);
        let (config, port) = write_config_with(
            dir.path(),
            &target,
            &format!("transport = \"smtp\"\nsmtp_url = \"{}\"", smtp.url()),
            "var/switchboard.db",
            hold,
        );
        World {
            dir,
            target,
            smtp,
            config,
            port,
        }
    }

    fn start(&self) -> Daemon {
        Daemon::start(&self.config, self.port)
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("var/switchboard.db")
    }

    fn primary(&self) -> String {
        self.target.url("/form")
    }

    fn backup(&self) -> String {
        self.target.url("/backup")
    }

    /// Starts the daemon, waits until it is operational, breaks the primary and waits for
    /// the route switch.
    fn run_until_failed_over(&self) -> Daemon {
        let d = self.start();
        wait_until("service operational", LIMIT, || d.state_is("operational"));
        assert_eq!(d.location("submit-ticket"), self.primary());
        self.target.set_down(true);
        wait_until("route switched to backup", LIMIT, || {
            d.location("submit-ticket") == self.backup()
        });
        d
    }

    /// The outbox as the daemon recorded it: Message-ID -> delivered?
    fn outbox(&self) -> BTreeMap<String, bool> {
        let conn = rusqlite::Connection::open_with_flags(
            self.db(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the database read-only");
        let mut stmt = conn
            .prepare("SELECT message_id, status FROM outbox ORDER BY id")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)? == "delivered",
                ))
            })
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    }

    /// (from, to) of every recorded transition, in order.
    fn transitions(&self) -> Vec<(String, String)> {
        daemon::stored_transitions(&self.db())
    }

    /// Waits until every recorded announcement is marked delivered and stored by the SMTP
    /// server; returns the stored copies per Message-ID. Nothing may arrive that the store
    /// did not record.
    fn all_delivered(&self) -> BTreeMap<String, usize> {
        wait_until("every recorded announcement delivered", LIMIT, || {
            let outbox = self.outbox();
            let stored = self.smtp.stored_ids();
            !outbox.is_empty()
                && outbox.values().all(|d| *d)
                && outbox.keys().all(|id| stored.contains_key(id))
        });
        let outbox = self.outbox();
        let stored = self.smtp.stored_ids();
        let unknown: Vec<&String> = stored
            .keys()
            .filter(|id| !outbox.contains_key(*id))
            .collect();
        assert!(unknown.is_empty(), "messages nobody recorded: {unknown:?}");
        stored
    }

    /// `switchboard audit verify` must pass: the chain survived the crash.
    fn assert_audit_intact(&self) {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["audit", "verify", "--config"])
            .arg(&self.config)
            .output()
            .expect("run audit verify");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("chain intact"),
            "audit verify after a crash: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl World {
    /// `switchboard audit export --format jsonl`, parsed.
    fn audit_records(&self) -> Vec<serde_json::Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["audit", "export", "--format", "jsonl", "--config"])
            .arg(&self.config)
            .output()
            .expect("run audit export");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }
}

/// Every Message-ID stored exactly once.
fn assert_each_once(stored: &BTreeMap<String, usize>) {
    let repeated: Vec<_> = stored.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "sent more than once: {repeated:?}");
}

#[test]
fn sigkill_while_the_failover_mail_is_in_flight_loses_nothing_and_sends_nothing_twice() {
    let w = World::new(Slowness::BeforeStoring, Duration::from_secs(3), "2s");
    let d = w.run_until_failed_over();
    // Kill while the SMTP server holds the first message of the failover, not yet stored.
    wait_until("first failover mail in flight", LIMIT, || {
        w.smtp.events().iter().any(|e| e.starts_with("begin "))
    });
    d.kill9();
    assert!(
        w.smtp.stored_ids().is_empty(),
        "the kill was meant to land before the server stored anything: {:?}",
        w.smtp.events()
    );
    let recorded_before_restart = w.outbox();
    assert_eq!(
        recorded_before_restart.len(),
        2,
        "the failover's two announcements were recorded before anything was sent"
    );
    assert!(recorded_before_restart.values().all(|d| !d));

    let d = w.start();
    // The state comes from the store, before any probe could decide anything.
    assert_eq!(d.location("submit-ticket"), w.backup());
    assert_eq!(d.active_side(), "backup");
    assert_eq!(d.component_status(), "partial_outage");
    w.assert_audit_intact();

    let stored = w.all_delivered();
    assert_eq!(
        stored.keys().collect::<BTreeSet<_>>(),
        recorded_before_restart.keys().collect::<BTreeSet<_>>()
    );
    // The message cut off mid-DATA was never stored, so the re-send is its only copy. (Had
    // the server stored it, the re-send would carry the same Message-ID: see the next test.)
    assert_each_once(&stored);
    assert_eq!(
        w.transitions()
            .iter()
            .filter(|(_, to)| to == "failed_over")
            .count(),
        1,
        "the restart resumed the failover instead of deciding it again"
    );
    w.assert_audit_intact();
}

#[test]
fn sigkill_after_the_server_stored_a_mail_but_before_the_reply_resends_it_with_the_same_message_id()
{
    let w = World::new(Slowness::AfterStoring, Duration::from_secs(3), "2s");
    let d = w.run_until_failed_over();
    wait_until("first failover mail stored, reply pending", LIMIT, || {
        w.smtp.events().iter().any(|e| e.starts_with("stored "))
    });
    d.kill9();
    let stored_at_kill = w.smtp.stored_ids();
    assert_eq!(stored_at_kill.len(), 1, "{:?}", w.smtp.events());
    let (in_flight, _) = stored_at_kill.iter().next().expect("one stored");
    let in_flight = in_flight.clone();
    assert!(
        w.outbox().values().all(|d| !d),
        "nothing was marked delivered: the daemon died before the 250"
    );

    let d = w.start();
    assert_eq!(d.location("submit-ticket"), w.backup());
    w.assert_audit_intact();
    let stored = w.all_delivered();
    // At least once, recognisably: the one message the server had stored arrives again with
    // the same Message-ID; every other message exactly once; none missing.
    for (id, n) in &stored {
        let expected = if *id == in_flight { 2 } else { 1 };
        assert_eq!(*n, expected, "copies of {id}: {stored:?}");
    }
    assert_eq!(stored.len(), 2);
    drop(d);
    w.assert_audit_intact();
}

#[test]
fn sigkill_after_delivery_sends_nothing_again() {
    let w = World::new(Slowness::BeforeStoring, Duration::ZERO, "2s");
    let d = w.run_until_failed_over();
    let stored = w.all_delivered();
    wait_until("both deliveries counted as sent", LIMIT, || {
        d.metrics()
            .lines()
            .filter(|l| {
                l.starts_with("switchboard_announcements_total{")
                    && l.contains("result=\"success\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            == 2.0
    });
    d.kill9();

    let d = w.start();
    assert_eq!(d.location("submit-ticket"), w.backup());
    assert_eq!(d.component_status(), "partial_outage");
    w.assert_audit_intact();
    // Let it probe and deliver for a while with the primary still down: nothing new to say.
    wait_until("primary probed again after restart", LIMIT, || {
        d.metrics().lines().any(|l| {
            l.starts_with("probe_success{") && l.contains("ticket-form") && l.ends_with(" 0")
        })
    });
    thread::sleep(Duration::from_secs(3));
    assert_eq!(w.smtp.stored_ids(), stored);
    assert_each_once(&stored);
    assert_eq!(w.outbox().len(), 2);
    w.assert_audit_intact();
}

#[test]
fn sigkill_during_the_recovery_hold_still_fails_back_once_and_announces_it_once() {
    let w = World::new(Slowness::BeforeStoring, Duration::ZERO, "4s");
    let d = w.run_until_failed_over();
    w.all_delivered();
    w.target.set_down(false);
    wait_until("primary healthy, holding in recovering", LIMIT, || {
        d.state_is("recovering")
    });
    d.kill9();

    let d = w.start();
    // Still in the hold: customers stay on the backup until it has run its course.
    assert!(d.state_is("recovering"), "restored state:\n{}", d.metrics());
    assert_eq!(d.location("submit-ticket"), w.backup());
    assert_eq!(d.active_side(), "backup");
    w.assert_audit_intact();

    wait_until("failed back to the primary after the hold", LIMIT, || {
        d.location("submit-ticket") == w.primary()
    });
    assert_eq!(d.component_status(), "operational");
    let stored = w.all_delivered();
    assert_each_once(&stored);
    let t = w.transitions();
    assert_eq!(
        t.iter().filter(|(_, to)| to == "operational").count(),
        1,
        "exactly one failback: {t:?}"
    );
    assert_eq!(
        t.first().map(|(_, to)| to.as_str()),
        Some("failed_over"),
        "{t:?}"
    );
    assert_eq!(
        t.last().map(|(_, to)| to.as_str()),
        Some("operational"),
        "{t:?}"
    );
    assert!(
        d.metric("switchboard_audit_records_total{kind=\"transition\"}")
            .is_some_and(|n| n >= 1.0),
        "the failback's audit record is counted: {}",
        d.metrics()
    );
    // What the real daemon wrote into the ledger: who, why, evidence, routes on both sides.
    let all = w.audit_records();
    let recs: Vec<&serde_json::Value> = all.iter().filter(|r| r["kind"] == "transition").collect();
    assert_eq!(
        recs.len(),
        t.len(),
        "one audit record per transition: {recs:#?}"
    );
    // Each delivered row's proof is in the chain once, even for a row the crash made the
    // daemon send again (it is marked delivered, and audited, once).
    let mut proven: Vec<i64> = all
        .iter()
        .filter(|r| r["kind"] == "announcement_delivered")
        .filter_map(|r| r["detail"]["outbox_id"].as_i64())
        .collect();
    let n = proven.len();
    proven.sort_unstable();
    proven.dedup();
    assert_eq!(proven.len(), n, "a delivery proven twice: {all:#?}");
    assert_eq!(n, stored.len(), "one proof per message delivered: {all:#?}");
    let failover = &recs[0];
    assert_eq!(failover["kind"], "transition");
    assert_eq!(failover["actor"], "system");
    assert_eq!(failover["to"], "failed_over");
    assert_eq!(failover["cause"], "primary_down");
    assert_eq!(
        failover["routes_before"]["submit-ticket"],
        w.primary().as_str()
    );
    assert_eq!(
        failover["routes_after"]["submit-ticket"],
        w.backup().as_str()
    );
    assert!(
        failover["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|l| l
                .as_str()
                .is_some_and(|l| l.contains("ticket-form") && l.contains("503")))),
        "evidence names the failing check and its error: {failover}"
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert_eq!(failover["node"], hostname.trim());
    assert_eq!(
        failover["config_version"].as_str().map(str::len),
        Some(64),
        "{failover}"
    );
    let last = recs.last().expect("records");
    assert_eq!(last["to"], "operational");
    assert_eq!(last["routes_before"]["submit-ticket"], w.backup().as_str());
    assert_eq!(last["routes_after"]["submit-ticket"], w.primary().as_str());
    // Restarting once more changes nothing: no repeat of anything already said.
    d.kill9();
    let d = w.start();
    assert_eq!(d.location("submit-ticket"), w.primary());
    thread::sleep(Duration::from_secs(3));
    assert_eq!(w.smtp.stored_ids(), stored);
    w.assert_audit_intact();
}

#[test]
fn an_unwritable_storage_path_stops_the_daemon_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    // A regular file where the database's directory should be: no directory can be made
    // there, whatever the user's privileges (the tests may run as root).
    std::fs::write(dir.path().join("blocker"), "not a directory").expect("write blocker");
    let (config, _) = write_config_with(
        dir.path(),
        &target,
        "transport = \"file\"\ndir = \"var/mail\"",
        "blocker/switchboard.db",
        "2s",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run switchboard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("storage")
            && stderr.contains("blocker")
            && stderr.contains("cannot create the directory"),
        "the error names the storage path and the reason: {stderr}"
    );
}

#[test]
fn a_database_removed_under_the_running_daemon_is_reported_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config_with(
        dir.path(),
        &target,
        "transport = \"file\"\ndir = \"var/mail\"",
        "db/switchboard.db",
        "2s",
    );
    let d = Daemon::start(&config, port);
    wait_until("service operational", LIMIT, || d.state_is("operational"));
    std::fs::remove_dir_all(dir.path().join("db")).expect("remove the database directory");

    target.set_down(true);
    // Customers come first: the route still switches...
    wait_until("route switched to backup", LIMIT, || {
        d.location("submit-ticket") == target.url("/backup")
    });
    // ...but the lost record is loud: an error line naming the cause, and a metric to alert on.
    wait_until("the store error is logged", LIMIT, || {
        d.log_text().contains("could not record transition")
    });
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("could not record transition"))
        .expect("error line");
    assert!(
        line.contains("ERROR") && line.contains("is gone") && line.contains("retrying"),
        "{line}"
    );
    let errors = d.metric("switchboard_store_errors_total{operation=\"commit_transition\"}");
    assert!(errors.is_some_and(|n| n >= 1.0), "{}", d.metrics());
}

/// A database another process holds locked (a backup tool, an operator's sqlite3 shell) when
/// a failover happens: the route still switches at once, the transition and its announcements
/// wait in memory, and once the lock is released they are written in order and every e-mail
/// goes out exactly once.
#[test]
fn a_locked_database_delays_the_record_but_loses_no_transition_and_no_announcement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config_with(
        dir.path(),
        &target,
        "transport = \"file\"\ndir = \"var/mail\"",
        "var/switchboard.db",
        "2s",
    );
    let d = Daemon::start(&config, port);
    wait_until("service operational", LIMIT, || d.state_is("operational"));
    let db = dir.path().join("var/switchboard.db");
    let mail = dir.path().join("var/mail");
    let emls = || {
        std::fs::read_dir(&mail)
            .map(|r| r.filter_map(Result::ok).count())
            .unwrap_or(0)
    };
    assert_eq!(emls(), 0);

    // A real second writer: Python's sqlite3 takes the write lock and holds it until told.
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             sys.stdin.readline()\n\
             c.execute('COMMIT')\n",
        ])
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "locked");

    target.set_down(true);
    wait_until("route switched to backup", LIMIT, || {
        d.location("submit-ticket") == target.url("/backup")
    });
    wait_until("the failed commit is logged", LIMIT, || {
        d.log_text().contains("could not record transition")
    });
    assert!(
        d.log_text()
            .contains("keeping it and its 2 announcement(s) in memory"),
        "{}",
        d.log_text()
    );
    assert_eq!(emls(), 0, "nothing can be sent that is not recorded");

    // Release the lock: the retry writes the transition and the outbox sends both e-mails.
    drop(locker.stdin.take());
    let _ = locker.wait();
    wait_until("both failover e-mails written", LIMIT, || emls() >= 2);
    assert!(
        d.log_text().contains("on retry"),
        "the retry is logged: {}",
        d.log_text()
    );
    // Nothing more arrives: one message per audience, not one per attempt.
    thread::sleep(Duration::from_secs(2));
    assert_eq!(emls(), 2);
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
    let to: String = conn
        .query_row(
            "SELECT to_state FROM transitions ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("the transition is recorded");
    assert_eq!(to, "failed_over");
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .expect("audit verify");
    assert!(out.status.success(), "{out:?}");
}
