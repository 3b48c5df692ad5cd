//! Heartbeat checks through the real daemon: a job that stops reporting fails its service over,
//! a job that reports again fails it back; the endpoint's answers to a wrong token, an unknown
//! check, a check of another kind and a bad body; a reload keeps what arrived.

use crate::support::control::{assert_error, json, request};
use crate::support::daemon::{wait_until, write_main_config, Daemon, Target};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "hb-7f3c1e9a2b4d";

/// A service whose primary check is the heartbeat of the ticket-sync job (deadline 2 s), with
/// the target's backup form as its backup and an HTTP check of another kind beside it.
fn write_service(dir: &Path, target: &Target) {
    std::fs::write(dir.join("probes/sync-token"), format!("{TOKEN}\n")).expect("write token");
    std::fs::write(
        dir.join("probes/ticket-sync.toml"),
        format!(
            r#"[service]
id = "ticket-sync"
name = "Ticket sync"
failover_when = "any"
failback = "auto"
recovery_hold = "1s"

[[check]]
name = "ticket-sync-job"
kind = "heartbeat"
deadline = "2s"
token_file = "sync-token"
interval = "250ms"
failure_threshold = 1
success_threshold = 1

[[check]]
name = "backup-form"
role = "backup"
url = "{backup}"
conditions = ["[STATUS] == 200"]

[[route]]
id = "sync-status"
primary = "{form}"
backup = "{backup}"
"#,
            form = target.url("/form"),
            backup = target.url("/backup"),
        ),
    )
    .expect("write service");
}

fn beat(
    d: &Daemon,
    check: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> crate::support::daemon::Response {
    request(
        "POST",
        &d.url(&format!("/api/v1/heartbeats/{check}")),
        token,
        body,
    )
}

/// Sends a heartbeat every 300 ms while `on` is set, until `stop`.
fn job(base: String, on: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if on.load(Ordering::SeqCst) {
                let r = request(
                    "POST",
                    &format!("{base}/api/v1/heartbeats/ticket-sync-job"),
                    Some(TOKEN),
                    Some(r#"{"message": "synced 12 tickets"}"#),
                );
                assert_eq!(r.status, 200, "{r:?}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

#[test]
fn a_job_that_stops_reporting_fails_its_service_over_and_back_when_it_reports_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let email = format!(
        "transport = \"file\"\ndir = \"{}\"",
        dir.path().join("mail").display()
    );
    let (main, port) = write_main_config(dir.path(), "var/switchboard.db", &email);
    write_service(dir.path(), &target);
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let primary = target.url("/form");
    let backup = target.url("/backup");

    let (on, stop) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
    );
    let sender = job(d.base.clone(), on.clone(), stop.clone());
    let healthy = || {
        d.metrics().lines().any(|l| {
            l.starts_with("probe_success{")
                && l.contains("check=\"ticket-sync-job\"")
                && l.ends_with(" 1")
        })
    };
    wait_until(
        "the heartbeat check succeeding",
        Duration::from_secs(10),
        healthy,
    );
    assert_eq!(d.location("sync-status"), primary);

    // The job stops: past its 2 s deadline the check fails like any other, and the service
    // fails over to the backup.
    on.store(false, Ordering::SeqCst);
    wait_until(
        "failover after the missed deadline",
        Duration::from_secs(10),
        || d.location("sync-status") == backup,
    );
    let text = d.metrics();
    assert!(
        text.lines().any(|l| l.starts_with("probe_success{")
            && l.contains("check=\"ticket-sync-job\"")
            && l.contains("instance=\"/api/v1/heartbeats/ticket-sync-job\"")
            && l.ends_with(" 0")),
        "{}",
        log()
    );

    // It reports again: the check succeeds and the service fails back after its hold.
    on.store(true, Ordering::SeqCst);
    wait_until(
        "failback once heartbeats resume",
        Duration::from_secs(10),
        || d.location("sync-status") == primary,
    );
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("job thread");
}

#[test]
fn the_heartbeat_endpoint_answers_wrong_tokens_unknown_checks_other_kinds_and_bad_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port) = write_main_config(
        dir.path(),
        "var/switchboard.db",
        crate::support::daemon::FILE_MAIL,
    );
    write_service(dir.path(), &target);
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));

    let r = beat(&d, "ticket-sync-job", Some(TOKEN), None);
    assert_eq!(r.status, 200, "{r:?}");
    let body = json(&r);
    assert_eq!(body["check"], "ticket-sync-job");
    assert_eq!(body["status"], "up");
    assert!(
        body["received_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );

    assert_error(
        &beat(&d, "ticket-sync-job", Some("not-the-token"), None),
        401,
        "bearer token",
    );
    assert_error(
        &beat(&d, "ticket-sync-job", None, None),
        401,
        "bearer token",
    );
    assert_error(
        &beat(&d, "no-such-check", Some(TOKEN), None),
        404,
        "no check named \"no-such-check\"",
    );
    assert_error(
        &beat(&d, "backup-form", Some(TOKEN), None),
        409,
        "not a heartbeat check",
    );
    assert_error(
        &beat(
            &d,
            "ticket-sync-job",
            Some(TOKEN),
            Some(r#"{"status": "maybe"}"#),
        ),
        422,
        "status: \"maybe\" is not \"up\" or \"down\"",
    );
    assert_error(
        &beat(
            &d,
            "ticket-sync-job",
            Some(TOKEN),
            Some(r#"{"mood": "fine"}"#),
        ),
        422,
        "unknown field `mood`",
    );
    assert_error(
        &beat(&d, "ticket-sync-job", Some(TOKEN), Some("{")),
        400,
        "",
    );
    let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(501));
    assert_error(
        &beat(&d, "ticket-sync-job", Some(TOKEN), Some(&long)),
        422,
        "message: longer than 500",
    );

    // A job that ran and failed says so, here through `switchboard heartbeat` as a cron job
    // would: the check fails with its words.
    let cli = |token: Option<&str>, args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("heartbeat")
            .args(args)
            .env("SWITCHBOARD_URL", &d.base);
        cmd.env_remove("SWITCHBOARD_HEARTBEAT_TOKEN");
        if let Some(t) = token {
            cmd.env("SWITCHBOARD_HEARTBEAT_TOKEN", t);
        }
        cmd.output().expect("run switchboard heartbeat")
    };
    let out = cli(None, &["ticket-sync-job"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SWITCHBOARD_HEARTBEAT_TOKEN"),
        "{out:?}"
    );
    let out = cli(Some("not-the-token"), &["ticket-sync-job"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = cli(
        Some(TOKEN),
        &[
            "ticket-sync-job",
            "--down",
            "--message",
            "Zendesk API 503 for 10 minutes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("heartbeat for ticket-sync-job recorded at 20"),
        "{out:?}"
    );
    wait_until(
        "the reported failure failing the check",
        Duration::from_secs(10),
        || {
            d.metrics().lines().any(|l| {
                l.starts_with("probe_success{")
                    && l.contains("check=\"ticket-sync-job\"")
                    && l.ends_with(" 0")
            })
        },
    );

    // Guessing is throttled per client like the API's tokens: past five wrong tokens a client
    // is answered 429, while the right token is still taken from it and other clients are
    // not slowed.
    let from = |token: &str| {
        crate::support::control::request_with(
            "POST",
            &d.url("/api/v1/heartbeats/ticket-sync-job"),
            Some(token),
            None,
            Some("application/json"),
            Some("127.0.0.3".parse().expect("ip")),
        )
    };
    for n in 1..=5 {
        assert_eq!(from(&format!("guess-{n}")).status, 401, "guess {n}");
    }
    let r = from("guess-6");
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert_eq!(from(TOKEN).status, 200);
    assert_eq!(beat(&d, "ticket-sync-job", Some(TOKEN), None).status, 200);

    // The token never appears in what the daemon logged.
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert!(!log.contains(TOKEN), "{log}");
}

#[test]
fn a_reload_keeps_the_heartbeats_that_arrived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port) = write_main_config(
        dir.path(),
        "var/switchboard.db",
        crate::support::daemon::FILE_MAIL,
    );
    write_service(dir.path(), &target);
    // A long deadline: watched from start-up, the check succeeds for 2 minutes without any
    // heartbeat, and a reload that forgot a "down" report would make it succeed again.
    let text = std::fs::read_to_string(dir.path().join("probes/ticket-sync.toml")).expect("read");
    std::fs::write(
        dir.path().join("probes/ticket-sync.toml"),
        text.replace("deadline = \"2s\"", "deadline = \"2m\""),
    )
    .expect("write");
    let tokens = crate::support::control::add_tokens(&main);
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    let r = beat(
        &d,
        "ticket-sync-job",
        Some(TOKEN),
        Some(r#"{"status": "down"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let failing = || {
        d.metrics().lines().any(|l| {
            l.starts_with("probe_success{")
                && l.contains("check=\"ticket-sync-job\"")
                && l.ends_with(" 0")
        })
    };
    wait_until(
        "the down report failing the check",
        Duration::from_secs(10),
        failing,
    );

    // A reload that changes the service (its hold) keeps the check and what it was told.
    let text = std::fs::read_to_string(dir.path().join("probes/ticket-sync.toml")).expect("read");
    std::fs::write(
        dir.path().join("probes/ticket-sync.toml"),
        text.replace("recovery_hold = \"1s\"", "recovery_hold = \"2s\""),
    )
    .expect("write");
    let r = request("POST", &d.url("/-/reload"), Some(&tokens.admin), None);
    assert_eq!(r.status, 200, "{r:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        failing(),
        "after the reload the check still knows the job reported itself down"
    );
}
