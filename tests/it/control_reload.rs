//! Configuration reload of the real binary by `POST /-/reload` and SIGHUP: services added, changed and removed with the state of the others kept, and an invalid file kept out with its diagnostics.

use std::path::Path;
use std::time::Duration;

use crate::support::daemon;
use crate::support::{self, control};

use control::{all_healthy, json, request, service};
use daemon::{get, metric, wait_until, Daemon, Target};

fn write_service(dir: &Path, id: &str, url: &str, route: &str) {
    std::fs::write(
        dir.join(format!("probes/{id}.toml")),
        format!(
            r#"[service]
id = "{id}"

[[check]]
name = "{id}-page"
url = "{url}"
conditions = ["[STATUS] == 200"]

[[route]]
id = "{route}"
primary = "{url}"
backup = "mailto:help@example.com"
"#
        ),
    )
    .expect("write service file");
}

/// The configured service ids, sorted.
fn ids(d: &Daemon, token: &str) -> Vec<String> {
    let r = request("GET", &d.url("/api/v1/services"), Some(token), None);
    let mut ids: Vec<String> = json(&r)["services"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn reload_swaps_services_and_checks_keeps_state_and_refuses_an_invalid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    write_service(dir.path(), "portal", &target.url("/form"), "portal-home");
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission") && all_healthy(&d, &t.viewer, "portal")
    });
    // An operator holds ticket submission on its backup: the reload must not undo that.
    let r = request(
        "POST",
        &d.url("/api/v1/services/ticket-submission/pin"),
        Some(&t.operator),
        Some(r#"{"reason":"hold through the reload","side":"backup"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let backup = target.url("/backup");
    assert_eq!(d.location("submit-ticket"), backup);

    // Only admins reload.
    let r = request("POST", &d.url("/-/reload"), Some(&t.operator), None);
    assert_eq!(r.status, 403);

    // An invalid file: 422 with file:line diagnostics, the running config stays.
    std::fs::write(
        dir.path().join("probes/broken.toml"),
        "[service]\nid = \"broken\"\nfailback = \"sometimes\"\n",
    )
    .expect("write broken");
    let r = request("POST", &d.url("/-/reload"), Some(&t.admin), None);
    assert_eq!(r.status, 422, "{r:?}");
    let v = json(&r);
    assert_eq!(v["error"]["code"], "invalid_config");
    let diags: Vec<String> = v["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect();
    assert!(
        diags
            .iter()
            .any(|d| d.contains("probes/broken.toml:3:") && d.contains("failback")),
        "{diags:?}"
    );
    assert_eq!(ids(&d, &t.viewer), ["portal", "ticket-submission"]);
    assert_eq!(
        metric(&d, "switchboard_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        metric(&d, "switchboard_config_reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).expect("log");
    assert!(
        log.contains("keeping the running configuration") && log.contains("broken.toml:3"),
        "{log}"
    );

    // An admin forces the portal onto its backup (a mailto route, no backup checks): that
    // opens an incident, which must not outlive the portal's removal below.
    let r = request(
        "POST",
        &d.url("/api/v1/services/portal/failover"),
        Some(&t.admin),
        Some(r#"{"reason":"portal vendor outage","force":true}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let portal_incidents = |d: &Daemon| -> usize {
        let v = json(&get(&d.url("/api/v2/incidents/unresolved.json")).expect("get"));
        v["incidents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|i| i.to_string().contains("portal"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_until(
        "the portal's incident is open",
        Duration::from_secs(10),
        || portal_incidents(&d) == 1,
    );

    // A valid change: portal removed, booking added, the ticket form's check changed.
    std::fs::remove_file(dir.path().join("probes/broken.toml")).expect("rm");
    std::fs::remove_file(dir.path().join("probes/portal.toml")).expect("rm");
    write_service(dir.path(), "booking", &target.url("/backup"), "book-call");
    let svc = dir.path().join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&svc).expect("read");
    std::fs::write(
        &svc,
        // The ticket form's check now probes a path that answers 404: once reloaded, the new
        // definition must be what is probed (it goes down), while the pin keeps the routes.
        text.replacen(
            &format!(
                "url = \"{}\"\nconditions = [\"[STATUS] == 200\", \"[BODY] == pat(*request_subject*)\"]",
                target.url("/form")
            ),
            &format!(
                "url = \"{}\"\nconditions = [\"[STATUS] == 200\"]",
                target.url("/missing")
            ),
            1,
        ),
    )
    .expect("write");
    let r = request("POST", &d.url("/-/reload"), Some(&t.admin), None);
    assert_eq!(r.status, 200, "{r:?}");
    let v = json(&r);
    assert_eq!(v["result"], "success");
    assert_eq!(v["services_added"], serde_json::json!(["booking"]));
    assert_eq!(v["services_removed"], serde_json::json!(["portal"]));
    assert_eq!(
        v["services_changed"],
        serde_json::json!(["ticket-submission"])
    );
    let changed = v["checks_changed"].as_array().expect("checks_changed");
    assert!(changed.contains(&serde_json::json!("ticket-form")), "{v}");
    assert!(!changed.contains(&serde_json::json!("backup-form")), "{v}");

    assert_eq!(ids(&d, &t.viewer), ["booking", "ticket-submission"]);
    // State and holds of the kept service survived; the unchanged check kept its health.
    let s = service(&d, &t.viewer, "ticket-submission");
    assert_eq!(s["state"], "failed_over");
    assert_eq!(s["holds"]["pin"]["actor"], "olga");
    assert_eq!(d.location("submit-ticket"), backup);
    let health = |s: &serde_json::Value, name: &str| {
        s["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["health"].clone())
            .expect("check")
    };
    assert_eq!(health(&s, "backup-form"), "healthy");
    wait_until(
        "the changed check probes its new target",
        Duration::from_secs(30),
        || health(&service(&d, &t.viewer, "ticket-submission"), "ticket-form") == "down",
    );
    assert_eq!(d.location("submit-ticket"), backup, "still pinned");
    // The new service is probed, the removed one is gone from routes and metrics.
    wait_until("booking probed", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "booking")
    });
    let routes = get(&d.url("/api/v1/routes")).expect("routes").body;
    assert!(
        routes.contains("book-call") && !routes.contains("portal-home"),
        "{routes}"
    );
    let metrics = get(&d.url("/metrics")).expect("metrics").body;
    assert!(!metrics.contains("check=\"portal-page\""));
    // The removed portal's incident is resolved, with the reason, not left open.
    wait_until(
        "the portal's incident resolved",
        Duration::from_secs(10),
        || portal_incidents(&d) == 0,
    );
    let all = get(&d.url("/api/v2/incidents.json")).expect("get").body;
    assert!(all.contains("removed from the configuration"), "{all}");
    assert!(metrics.contains("check=\"booking-page\""));
    assert_eq!(
        metric(&d, "switchboard_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(
        metric(
            &d,
            "switchboard_config_last_reload_success_timestamp_seconds"
        ) > Some(1.7e9)
    );

    // SIGHUP reloads too: drop booking again.
    std::fs::remove_file(dir.path().join("probes/booking.toml")).expect("rm");
    let pid = d.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    wait_until("SIGHUP reload", Duration::from_secs(20), || {
        ids(&d, &t.viewer) == ["ticket-submission"]
    });
    assert!(
        metric(&d, "switchboard_config_reloads_total{result=\"success\"}") >= Some(3.0),
        "start, POST and SIGHUP"
    );
    // And the daemon is still alive and serving after the signal.
    assert_eq!(get(&d.url("/healthz")).expect("healthz").status, 200);
}

// ---- announcement transports: built at start, so a reload that adds one needs a restart ----

/// Outbox rows over `channel`, read from the daemon's database.
fn outbox_rows(db: &Path, channel: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database");
    c.query_row(
        "SELECT COUNT(*) FROM outbox WHERE channel = ?1",
        [channel],
        |r| r.get(0),
    )
    .expect("count outbox rows")
}

#[test]
fn a_reload_that_adds_chat_reports_a_restart_and_plans_no_message_it_cannot_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });

    // `[chat]` added to the running daemon: the chat transport is built at start, so the
    // reload says it needs a restart rather than leaving messages to fail.
    let text = std::fs::read_to_string(&main).expect("read main config");
    std::fs::write(
        &main,
        format!("{text}\n[chat]\nwebhook_url = \"http://127.0.0.1:9/hook\"\n"),
    )
    .expect("write main config");
    let r = request("POST", &d.url("/-/reload"), Some(&t.admin), None);
    assert_eq!(r.status, 200, "{r:?}");
    let v = json(&r);
    assert_eq!(v["restart_needed"], serde_json::json!(["[chat]"]), "{v}");
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).expect("log");
    assert!(log.contains("needs a restart to apply: [chat]"), "{log}");

    // A failover now announces by e-mail as before, and plans no chat message: the outbox row
    // is written with the transition, before the command is answered.
    let r = request(
        "POST",
        &d.url("/api/v1/services/ticket-submission/failover"),
        Some(&t.operator),
        Some(r#"{"reason":"after the chat reload"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let db = dir.path().join("var/switchboard.db");
    assert!(outbox_rows(&db, "email") > 0, "the failover is announced");
    assert_eq!(
        outbox_rows(&db, "chat"),
        0,
        "no chat message planned for a transport the daemon does not have"
    );
}

// ---- scale: a reload of thousands of checks does not stop the daemon answering ----

/// Checks in the large service file: enough that the reload used to freeze the core for
/// minutes (it compared every new check with every old one by formatting both).
const LARGE: usize = 3_000;

/// A CA certificate in PEM, for the HTTPS check whose `ca_file` the reload reads.
fn ca_pem() -> String {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("ca key");
    ca.self_signed(&key).expect("ca cert").pem()
}

/// `probes/large.toml`: `LARGE` HTTP checks of `target`, probed every 10 minutes so that
/// thousands of them barely load the machine, and one HTTPS check trusting `probes/ca.pem`.
fn write_large_service(dir: &Path, target: &daemon::Target) {
    let mut text = String::from("[service]\nid = \"large\"\nfailover_when = \"all\"\n");
    for i in 0..LARGE {
        text.push_str(&format!(
            "\n[[check]]\nname = \"large-{i}\"\nurl = \"{}\"\ninterval = \"10m\"\ntimeout = \"2s\"\nconditions = [\"[STATUS] == 200\"]\n",
            target.url(&format!("/form?{i}"))
        ));
    }
    text.push_str(
        "\n[[check]]\nname = \"large-private-ca\"\nurl = \"https://127.0.0.1:9/\"\ninterval = \"10m\"\ntimeout = \"2s\"\nca_file = \"ca.pem\"\n",
    );
    std::fs::write(dir.join("probes/large.toml"), text).expect("write large service");
}

/// Makes `path` a named pipe. A reload reading it waits until the test writes the CA, as a
/// read from a hung network mount would: the reload is provably in progress for as long as
/// the test needs, however fast or slow the machine.
fn make_fifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// Waits until the daemon has the pipe open for reading — its reload is parked reading
/// `ca_file` — and returns the writing end. Opening a pipe's writing end without blocking
/// fails while nobody reads it.
fn writer_once_read(path: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let mut writer = None;
    wait_until(
        "the reload reading probes/ca.pem",
        Duration::from_secs(60),
        || {
            writer = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .ok();
            writer.is_some()
        },
    );
    writer.expect("writer")
}

/// A request that must be answered within 5 s (generous: the daemon answers in milliseconds
/// when its core is free; a core busy with a reload used to take minutes).
fn answered_promptly(
    what: &str,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&str>,
) -> daemon::Response {
    let started = std::time::Instant::now();
    let r = request(method, url, Some(token), body);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{what} took {took:?} during a reload"
    );
    assert_eq!(r.status, 200, "{what}: {r:?}");
    r
}

#[test]
fn a_reload_of_thousands_of_checks_keeps_the_api_and_commands_answering() {
    // Heavy: a reload of 3,000 checks.
    let _turn = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });

    write_large_service(dir.path(), &target);
    let fifo = dir.path().join("probes/ca.pem");
    make_fifo(&fifo);
    let reload = {
        let (url, admin) = (d.url("/-/reload"), t.admin.clone());
        std::thread::spawn(move || request("POST", &url, Some(&admin), None))
    };
    let mut writer = writer_once_read(&fifo);

    // The reload is in progress (it is reading the pipe): the core still answers the API and
    // decides operator commands.
    let r = answered_promptly(
        "GET /api/v1/services",
        "GET",
        &d.url("/api/v1/services"),
        &t.viewer,
        None,
    );
    assert!(r.body.contains("ticket-submission"), "{}", r.body);
    answered_promptly(
        "a pin",
        "POST",
        &d.url("/api/v1/services/ticket-submission/pin"),
        &t.operator,
        Some(r#"{"reason":"held through the large reload","side":"backup"}"#),
    );
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));
    assert_eq!(get(&d.url("/healthz")).expect("healthz").status, 200);
    assert!(!reload.is_finished(), "the reload waits for its ca_file");

    // The CA arrives: the reload finishes and swaps in every check.
    use std::io::Write;
    let ca = ca_pem();
    writer.write_all(ca.as_bytes()).expect("write CA");
    drop(writer);
    let r = reload.join().expect("reload thread");
    assert_eq!(r.status, 200, "{r:?}");
    let v = json(&r);
    assert_eq!(v["services_added"], serde_json::json!(["large"]));
    let s = answered_promptly(
        "GET the large service",
        "GET",
        &d.url("/api/v1/services/large"),
        &t.viewer,
        None,
    );
    assert_eq!(
        json(&s)["checks"].as_array().map(Vec::len),
        Some(LARGE + 1),
        "every check of the large file is configured"
    );
    // The pin made during the reload survived the swap.
    let s = service(&d, &t.viewer, "ticket-submission");
    assert_eq!(s["holds"]["pin"]["actor"], "olga", "{s}");
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));

    // A second reload of the same large file, the CA now a plain file, changes nothing.
    std::fs::remove_file(&fifo).expect("rm fifo");
    std::fs::write(&fifo, &ca).expect("write CA file");
    let r = answered_promptly("a reload", "POST", &d.url("/-/reload"), &t.admin, None);
    let v = json(&r);
    assert_eq!(v["services_changed"], serde_json::json!([]), "{v}");
    assert_eq!(v["checks_changed"], serde_json::json!([]), "{v}");
}

#[test]
fn sigterm_during_a_reload_of_thousands_of_checks_exits_promptly() {
    // Heavy: a reload of 3,000 checks, and a deadline on the exit.
    let _turn = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    let mut d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });
    write_large_service(dir.path(), &target);
    let fifo = dir.path().join("probes/ca.pem");
    make_fifo(&fifo);
    let pid = d.child.id() as libc::pid_t;
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "SIGHUP sent");
    // Held open and never written: the reload stays in progress until the daemon exits.
    let _writer = writer_once_read(&fifo);

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
    let mut status = None;
    wait_until(
        "the daemon exits after SIGTERM",
        Duration::from_secs(15),
        || {
            status = d.child.try_wait().expect("try_wait");
            status.is_some()
        },
    );
    let status = status.expect("exited");
    assert!(status.success(), "a clean exit: {status:?}");
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).expect("log");
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        !log.contains("configuration reloaded by SIGHUP"),
        "the reload never finished, and was not waited for: {log}"
    );
}
