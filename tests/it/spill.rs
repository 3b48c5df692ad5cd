//! A full disk at shutdown, with the real binary on a real small tmpfs: what waits in memory is retried, spilled and replayed, never silently lost.
//!
//! Each test mounts its own tmpfs (we run as root; a failing mount fails the test, it never
//! skips), puts the database on it, fills it so commits fail, breaks the primary so the daemon
//! fails over, and then stops the daemon with SIGTERM. The guard unmounts the tmpfs when the
//! test ends, after the daemon is gone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::daemon;
use crate::support::smtp;

use daemon::{get, metric, wait_until, write_config_with, Daemon, Target};
use smtp::{parse_mail, require_aiosmtpd, SmtpServer};

/// Generous: these are correctness tests, never speed tests.
const LIMIT: Duration = Duration::from_secs(60);

/// A tmpfs of a few MiB, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "these tests need a real small tmpfs and so root (mount -t tmpfs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills the file system until it refuses more, after making SQLite's write-ahead log
    /// empty: otherwise a commit could reuse log pages already allocated and succeed.
    fn fill(&self, db: &Path) {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1], timeout=30)\n\
                 r = c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()\n\
                 assert r[0] == 0, r\n",
            ])
            .arg(db)
            .output()
            .expect("python3");
        assert!(out.status.success(), "checkpoint: {out:?}");
        let mut f = std::fs::File::create(self.filler()).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = std::io::Write::write_all(&mut f, &chunk) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                break;
            }
        }
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove filler");
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let out = Command::new("umount").arg(&self.dir).output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            // Still unmount rather than leave a mount behind; a busy mount goes when free.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        }
    }
}

/// A daemon with its database on a tmpfs, a real SMTP server, and a target to break.
struct World {
    // Field order is drop order: the daemon goes before the tmpfs is unmounted.
    daemon: Option<Daemon>,
    smtp: SmtpServer,
    target: Target,
    tmpfs: Tmpfs,
    config: PathBuf,
    port: u16,
    db: PathBuf,
    spill_dir: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl World {
    /// `grace` is `[storage] shutdown_grace`; `spill_dir` is set unless `None` is asked for.
    fn new(grace: &str, with_spill_dir: bool) -> World {
        require_aiosmtpd();
        let dir = tempfile::tempdir().expect("tempdir");
        let tmpfs = Tmpfs::mount(&dir.path().join("disk"));
        let db = tmpfs.dir.join("switchboard.db");
        let spill_dir = dir.path().join("spill");
        let smtp = SmtpServer::start(&dir.path().join("maildir"));
        let target = Target::start();
        let (config, port) = write_config_with(
            dir.path(),
            &target,
            &format!("transport = \"smtp\"\nsmtp_url = \"{}\"", smtp.url()),
            &db.display().to_string(),
            "2s",
        );
        let text = std::fs::read_to_string(&config).expect("config");
        let extra = if with_spill_dir {
            format!("spill_dir = \"{}\"\n", spill_dir.display())
        } else {
            String::new()
        };
        let text = text.replacen(
            "[storage]\n",
            &format!("[storage]\n{extra}shutdown_grace = \"{grace}\"\n"),
            1,
        );
        std::fs::write(&config, text).expect("config");
        let log = dir.path().join("switchboard.log");
        World {
            daemon: None,
            smtp,
            target,
            tmpfs,
            config,
            port,
            db,
            spill_dir,
            log,
            dir,
        }
    }

    fn start(&mut self, env: &[(&str, &str)]) -> &Daemon {
        // A new log file per run: the previous one is kept beside it for failure messages.
        if self.log.exists() {
            let _ = std::fs::rename(&self.log, self.log.with_extension("log.1"));
        }
        self.daemon = Some(Daemon::start_with(
            &self.config,
            self.port,
            env,
            Some(&self.log),
        ));
        self.daemon.as_ref().expect("started")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs to a failover the store cannot record: the route switched, the transition
    /// waiting in memory, the gauge above zero and `/readyz` not ready with its reason.
    fn fail_over_on_a_full_disk(&mut self, env: &[(&str, &str)]) {
        let d = self.start(env);
        wait_until("service operational", LIMIT, || {
            metric(
                d,
                "switchboard_service_state{service=\"ticket-submission\",state=\"operational\"}",
            ) == Some(1.0)
        });
        assert_eq!(
            metric(d, "switchboard_store_pending_transitions"),
            Some(0.0)
        );
        self.tmpfs.fill(&self.db);
        self.target.set_down(true);
        let d = self.daemon.as_ref().expect("running");
        wait_until("route switched to the backup", LIMIT, || {
            d.location("submit-ticket") == self.target.url("/backup")
        });
        wait_until("the failed commit is logged", LIMIT, || {
            self.log_text().contains("could not record transition")
        });
        let pending = metric(d, "switchboard_store_pending_transitions");
        assert!(pending.is_some_and(|n| n > 0.0), "gauge: {pending:?}");
        let ready = get(&d.url("/readyz")).expect("/readyz");
        assert_eq!(ready.status, 503, "{ready:?}");
        assert!(
            ready.body.contains("waiting for the store"),
            "/readyz gives its reason: {}",
            ready.body
        );
        assert!(
            self.smtp.messages().is_empty(),
            "nothing is sent that is not recorded"
        );
    }

    /// SIGTERM, and the daemon's exit within its grace and a margin.
    fn sigterm_and_wait(&mut self) {
        let mut d = self.daemon.take().expect("running");
        let pid = i32::try_from(d.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let mut status = None;
        wait_until("the daemon exits after SIGTERM", LIMIT, || {
            status = d.child.try_wait().expect("try_wait");
            status.is_some()
        });
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            self.log_text()
        );
    }

    fn spill_files(&self, dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|r| {
                r.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().contains(".spill.jsonl"))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn transitions(&self) -> Vec<(String, String)> {
        daemon::stored_transitions(&self.db)
    }

    /// Message-IDs of the outbox rows and whether each is delivered.
    fn outbox(&self) -> Vec<(String, bool)> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open read-only");
        let mut stmt = conn
            .prepare("SELECT message_id, status FROM outbox ORDER BY id")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get::<_, String>(1)? == "delivered"))
            })
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    }

    /// After the restart: one failover recorded, in the audit chain, every announcement
    /// delivered exactly once.
    fn assert_recorded_and_delivered_once(&self) {
        assert_eq!(
            self.transitions(),
            vec![("operational".to_owned(), "failed_over".to_owned())]
        );
        wait_until("every announcement delivered", LIMIT, || {
            let outbox = self.outbox();
            !outbox.is_empty()
                && outbox.iter().all(|(_, delivered)| *delivered)
                && self.smtp.messages().len() >= outbox.len()
        });
        let outbox = self.outbox();
        assert_eq!(outbox.len(), 2, "on-call and customers: {outbox:?}");
        let mut sent: Vec<String> = self
            .smtp
            .messages()
            .iter()
            .map(|m| {
                parse_mail(m)
                    .header("Message-ID")
                    .expect("Message-ID")
                    .to_owned()
            })
            .collect();
        sent.sort();
        let mut recorded: Vec<String> = outbox.into_iter().map(|(id, _)| id).collect();
        recorded.sort();
        assert_eq!(sent, recorded, "each recorded announcement sent once");

        let verify = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["audit", "verify", "--config"])
            .arg(&self.config)
            .output()
            .expect("audit verify");
        assert!(verify.status.success(), "{verify:?}");
        let export = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["audit", "export", "--format", "jsonl", "--config"])
            .arg(&self.config)
            .output()
            .expect("audit export");
        let text = String::from_utf8_lossy(&export.stdout);
        let failovers = text
            .lines()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                v.to_string().contains("failed_over") && v["kind"] == "transition"
            })
            .count();
        assert_eq!(failovers, 1, "{text}");
    }
}

/// The regression: a failover waiting for a full disk vanished on SIGTERM. Now it is spilled
/// (beside the database refuses: the disk is full, so into `spill_dir`), and the next start
/// records it with its announcements before anything else and sends each once.
#[test]
fn a_transition_waiting_for_a_full_disk_survives_sigterm_through_the_spill_file() {
    let mut w = World::new("2s", true);
    w.fail_over_on_a_full_disk(&[]);
    w.sigterm_and_wait();
    assert!(
        w.log_text().contains("spilled 1 unrecorded transition(s)"),
        "{}",
        w.log_text()
    );
    let spilled = w.spill_files(&w.spill_dir);
    assert_eq!(spilled.len(), 1, "one spill file in spill_dir");
    assert!(
        w.spill_files(&w.tmpfs.dir).is_empty(),
        "nothing half-written left beside the database"
    );
    let line = std::fs::read_to_string(&spilled[0]).expect("spill file");
    let v: serde_json::Value =
        serde_json::from_str(line.lines().next().expect("a line")).expect("JSON line");
    assert_eq!(v["t"]["to"], "failed_over");
    assert_eq!(v["announcements"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(w.smtp.messages().is_empty(), "nothing sent before recorded");

    w.tmpfs.free();
    w.start(&[]);
    assert!(
        w.log_text().contains("replayed the spill file"),
        "{}",
        w.log_text()
    );
    assert!(
        w.spill_files(&w.spill_dir).is_empty(),
        "deleted once recorded"
    );
    let d = w.daemon.as_ref().expect("running");
    assert_eq!(d.location("submit-ticket"), w.target.url("/backup"));
    assert_eq!(
        metric(d, "switchboard_store_pending_transitions"),
        Some(0.0)
    );
    w.assert_recorded_and_delivered_once();
}

/// Space that comes back during the grace period: the stopping daemon's retries record the
/// transition itself, and no spill file is written.
#[test]
fn space_freed_during_the_shutdown_grace_is_used_without_a_spill_file() {
    let mut w = World::new("60s", true);
    w.fail_over_on_a_full_disk(&[]);
    let d = w.daemon.as_ref().expect("running");
    let pid = i32::try_from(d.child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_until("the stopping daemon says it retries", LIMIT, || {
        w.log_text().contains("not yet recorded at shutdown")
    });
    w.tmpfs.free();
    w.sigterm_and_wait();
    assert!(
        w.log_text()
            .contains("every waiting transition was recorded before shutdown"),
        "{}",
        w.log_text()
    );
    assert!(w.spill_files(&w.spill_dir).is_empty());
    assert!(w.spill_files(&w.tmpfs.dir).is_empty());
    w.start(&[]);
    w.assert_recorded_and_delivered_once();
}

/// No place takes the spill file (the disk full, no `spill_dir`, the temp directory not a
/// directory): the daemon logs, at error level, every lost transition whole.
#[test]
fn a_spill_nobody_can_write_is_logged_as_lost_with_the_whole_transition() {
    let mut w = World::new("1s", false);
    let not_a_dir = w.dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").expect("file");
    let tmpdir = not_a_dir.display().to_string();
    w.fail_over_on_a_full_disk(&[("TMPDIR", &tmpdir)]);
    w.sigterm_and_wait();
    let log = w.log_text();
    let lost = log
        .lines()
        .find(|l| l.contains("LOST transition ticket-submission operational -> failed_over"))
        .unwrap_or_else(|| panic!("no LOST line:\n{log}"));
    assert!(lost.contains("ERROR"), "{lost}");
    assert!(
        lost.contains("\"announcements\""),
        "the whole record: {lost}"
    );
    assert!(
        log.contains("cannot write the spill file"),
        "each refused place is named: {log}"
    );
}
