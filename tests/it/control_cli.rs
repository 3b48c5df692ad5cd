//! The operator command line against the real daemon: `token new`, `status`, `failover`/`failback`, `drill start|status|abort|list`, and their documented exit codes (0 ok, 1 refused or failed drill, 2 usage, 3 unreachable or auth).

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::control;
use crate::support::{daemon, tls};

use control::all_healthy;
use daemon::{wait_until, Target};

fn sb(args: &[&str], url: &str, token: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.args(args)
        .env("SWITCHBOARD_URL", url)
        .env_remove("SWITCHBOARD_TOKEN");
    if let Some(t) = token {
        c.env("SWITCHBOARD_TOKEN", t);
    }
    c.output().expect("run switchboard")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn token_new_prints_once_stores_the_hash_and_refuses_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, _) =
        daemon::write_config(dir.path(), &target, "transport = \"file\"\ndir = \"mail\"");
    let cfg = main.to_str().expect("utf-8 path");
    // Without [auth] tokens_file: a usage error that says what to add.
    let o = sb(
        &[
            "token", "new", "alice", "--role", "operator", "--config", cfg,
        ],
        "",
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("tokens_file"));

    let mut t = std::fs::read_to_string(&main).expect("read");
    t.push_str("\n[auth]\ntokens_file = \"secrets/tokens.toml\"\n");
    std::fs::write(&main, t).expect("write");
    let o = sb(
        &[
            "token", "new", "alice", "--role", "operator", "--config", cfg,
        ],
        "",
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        token.starts_with("sbt_") && !token.contains(char::is_whitespace),
        "{token}"
    );
    let stored = std::fs::read_to_string(dir.path().join("secrets/tokens.toml")).expect("tokens");
    assert!(!stored.contains(&token), "the token itself is never stored");
    assert!(stored.contains(&switchboard::api::auth::hash_token(&token)));
    assert!(stored.contains("role = \"operator\""));

    // The creation is in the audit chain: name and role, never the token.
    let o = sb(
        &["audit", "export", "--format", "jsonl", "--config", cfg],
        "",
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let exported = String::from_utf8_lossy(&o.stdout).to_string();
    let rec: serde_json::Value = exported
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("jsonl"))
        .find(|r| r["detail"]["command"] == "token_new")
        .expect("token creation audited");
    assert_eq!(rec["detail"]["token"], "alice");
    assert_eq!(rec["detail"]["role"], "operator");
    assert!(rec["actor"].as_str().is_some_and(|a| a.starts_with("cli:")));
    assert!(!exported.contains(&token));

    let o = sb(
        &["token", "new", "alice", "--role", "admin", "--config", cfg],
        "",
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    let o = sb(
        &["token", "new", "bob", "--role", "root", "--config", cfg],
        "",
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn clients_drive_the_daemon_with_meaningful_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let url = d.base.clone();
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });

    // 3: unreachable, or no/invalid token.
    let dead = format!("http://127.0.0.1:{}", daemon::free_port());
    let o = sb(&["status"], &dead, Some(&t.viewer));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = sb(&["status"], &url, None);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SWITCHBOARD_TOKEN"));
    // 2: usage (a URL that is neither http nor https, an unknown service).
    let o = sb(&["status"], "ftp://127.0.0.1:1", Some(&t.viewer));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = sb(
        &["failover", "nope", "--reason", "x"],
        &url,
        Some(&t.operator),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = sb(&["failover", "ticket-submission"], &url, Some(&t.operator));
    assert_eq!(
        o.status.code(),
        Some(2),
        "--reason is required: {}",
        text(&o)
    );

    let o = sb(&["status"], &url, Some(&t.viewer));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ticket-submission") && out.contains("operational"),
        "{out}"
    );

    // A viewer may not fail over: 3 (auth).
    let o = sb(
        &["failover", "ticket-submission", "--reason", "x"],
        &url,
        Some(&t.viewer),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = sb(
        &["failover", "ticket-submission", "--reason", "drill by hand"],
        &url,
        Some(&t.operator),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("failed_over"),
        "{}",
        text(&o)
    );
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));
    // 1: refused (already failed over).
    let o = sb(
        &["failover", "ticket-submission", "--reason", "again"],
        &url,
        Some(&t.operator),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = sb(
        &["failback", "ticket-submission", "--reason", "done"],
        &url,
        Some(&t.operator),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(d.location("submit-ticket"), target.url("/form"));

    // A dry-run drill followed to its report: exit 0 on pass, steps printed.
    let o = sb(
        &[
            "drill",
            "start",
            "ticket-submission",
            "--duration",
            "3s",
            "--reason",
            "CLI drill",
            "--dry-run",
            "--wait",
        ],
        &url,
        Some(&t.operator),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for step in [
        "decision",
        "backup_verified",
        "email_accepted",
        "status_page_updated",
        "reverted",
    ] {
        assert!(out.contains(step), "{step} shown: {out}");
    }
    let o = sb(&["drill", "list"], &url, Some(&t.operator));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    let id = listed
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .next()
                .filter(|w| w.starts_with("drill-"))
        })
        .expect("a drill listed")
        .to_string();
    assert!(listed.contains("pass"), "{listed}");
    let o = sb(&["drill", "status", &id], &url, Some(&t.operator));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pass"));
    // Aborting a finished drill is refused (1); an unknown one is a usage error (2).
    let o = sb(&["drill", "abort", &id], &url, Some(&t.operator));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = sb(&["drill", "abort", "drill-nope"], &url, Some(&t.operator));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // A live drill started without waiting, then aborted from the CLI.
    let o = sb(
        &[
            "drill",
            "start",
            "ticket-submission",
            "--duration",
            "10m",
            "--reason",
            "abort me",
        ],
        &url,
        Some(&t.operator),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let started = String::from_utf8_lossy(&o.stdout).to_string();
    let live_id = started
        .split_whitespace()
        .find(|w| w.starts_with("drill-"))
        .expect("id printed")
        .to_string();
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));
    let o = sb(
        &["drill", "abort", &live_id, "--reason", "enough"],
        &url,
        Some(&t.operator),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(d.location("submit-ticket"), target.url("/form"));
    // Following an aborted drill ends with 1 (not a pass).
    let o = sb(
        &["drill", "status", &live_id, "--wait"],
        &url,
        Some(&t.operator),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("aborted"));
}

/// A TLS-terminating proxy in front of the daemon (as a deployment would put one), its
/// certificate for `localhost` signed by a CA made here. Returns the proxy's port and the CA
/// in PEM; the proxy runs on its own thread until the test process ends.
fn tls_proxy(daemon: std::net::SocketAddr) -> (u16, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("leaf");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("signed leaf");
    let acceptor = tls::acceptor(tls::Identity::from_rcgen(&leaf_cert, &leaf_key));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(daemon).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    });
    (port, ca_cert.pem())
}

/// `https://` is verified: against a private CA given by SWITCHBOARD_CA_FILE it works, and
/// without it the certificate is refused (exit 3) and the token never leaves in clear text.
#[test]
fn status_over_https_verifies_the_daemon_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let daemon: std::net::SocketAddr = d
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("daemon address");
    let (port, ca_pem) = tls_proxy(daemon);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("write ca");
    let url = format!("https://localhost:{port}");

    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.arg("status")
        .env("SWITCHBOARD_URL", &url)
        .env("SWITCHBOARD_TOKEN", &t.viewer)
        .env("SWITCHBOARD_CA_FILE", &ca);
    let o = c.output().expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ticket-submission"),
        "{}",
        text(&o)
    );

    // The public roots do not know the private CA: refused before any request is sent.
    let o = sb(&["status"], &url, Some(&t.viewer));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("TLS") && err.contains("UnknownIssuer"),
        "{}",
        text(&o)
    );
    assert!(!err.contains(&t.viewer), "the token must not be printed");

    // A CA file that holds no certificate is a usage error that names the file.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.arg("status")
        .env("SWITCHBOARD_URL", &url)
        .env("SWITCHBOARD_TOKEN", &t.viewer)
        .env("SWITCHBOARD_CA_FILE", &junk);
    let o = c.output().expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("junk.pem"),
        "{}",
        text(&o)
    );
}

/// `pin`, `unpin`, `maintenance start|stop|schedule`, `review` and `audit list` through the
/// real binary: 0 done, 1 refused (409), 2 usage (bad flags, unknown service or record,
/// invalid values), 3 no token or the wrong role.
#[test]
fn pin_unpin_maintenance_review_and_audit_list_have_the_documented_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let url = d.base.clone();
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });
    let op = Some(t.operator.as_str());
    let code = |args: &[&str], token: Option<&str>| {
        let o = sb(args, &url, token);
        (o.status.code(), text(&o))
    };

    // Usage: --side is required and has two values; --reason is required.
    for args in [
        &["pin", "ticket-submission", "--reason", "x"][..],
        &[
            "pin",
            "ticket-submission",
            "--side",
            "sideways",
            "--reason",
            "x",
        ],
        &["pin", "ticket-submission", "--side", "backup"],
        &[
            "maintenance",
            "schedule",
            "ticket-submission",
            "--duration",
            "1h",
            "--reason",
            "x",
        ],
    ] {
        let (c, out) = code(args, op);
        assert_eq!(c, Some(2), "{args:?}: {out}");
    }
    // Auth: no token, or a viewer's.
    let pin = [
        "pin",
        "ticket-submission",
        "--side",
        "backup",
        "--until",
        "1h",
        "--reason",
        "INC-7 form broken for EU customers",
        "--public-message",
        "You are on our backup form for now.",
    ];
    assert_eq!(code(&pin, None).0, Some(3));
    assert_eq!(code(&pin, Some(&t.viewer)).0, Some(3));
    // Unknown service (404) and an invalid --until (422) are usage errors.
    let (c, out) = code(&["pin", "nope", "--side", "backup", "--reason", "x"], op);
    assert_eq!(c, Some(2), "{out}");
    let (c, out) = code(
        &[
            "pin",
            "ticket-submission",
            "--side",
            "backup",
            "--until",
            "2001-01-01T00:00:00Z",
            "--reason",
            "x",
        ],
        op,
    );
    assert_eq!(c, Some(2), "{out}");
    assert!(out.contains("until"), "{out}");

    let (c, out) = code(&pin, op);
    assert_eq!(c, Some(0), "{out}");
    assert!(out.contains("failed_over"), "{out}");
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));
    let (c, out) = code(&["status"], Some(&t.viewer));
    assert_eq!(c, Some(0), "{out}");
    assert!(out.contains("pinned to backup by olga"), "{out}");
    // Refused while pinned: a failback (409 -> 1).
    let (c, out) = code(&["failback", "ticket-submission", "--reason", "x"], op);
    assert_eq!(c, Some(1), "{out}");
    assert!(out.contains("pinned"), "{out}");
    let (c, out) = code(
        &["unpin", "ticket-submission", "--reason", "INC-7 fixed"],
        op,
    );
    assert_eq!(c, Some(0), "{out}");
    let (c, out) = code(&["unpin", "ticket-submission", "--reason", "again"], op);
    assert_eq!(c, Some(1), "{out}");
    assert!(out.contains("not pinned"), "{out}");
    wait_until("back on the primary", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/form")
    });

    // Maintenance: start, stop, stop again (refused), schedule (and a bad duration).
    let (c, out) = code(
        &[
            "maintenance",
            "start",
            "ticket-submission",
            "--duration",
            "10m",
            "--reason",
            "vendor upgrade",
            "--public-message",
            "Planned work on the ticket form.",
        ],
        op,
    );
    assert_eq!(c, Some(0), "{out}");
    assert!(out.contains("maintenance"), "{out}");
    let (c, out) = code(
        &[
            "maintenance",
            "stop",
            "ticket-submission",
            "--reason",
            "done",
        ],
        op,
    );
    assert_eq!(c, Some(0), "{out}");
    let (c, out) = code(
        &[
            "maintenance",
            "stop",
            "ticket-submission",
            "--reason",
            "done",
        ],
        op,
    );
    assert_eq!(c, Some(1), "{out}");
    let (c, out) = code(
        &[
            "maintenance",
            "schedule",
            "ticket-submission",
            "--starts-at",
            "2h",
            "--duration",
            "1h",
            "--reason",
            "db upgrade",
            "--public-message",
            "Tickets may be slow.",
        ],
        op,
    );
    assert_eq!(c, Some(0), "{out}");
    assert!(out.contains("scheduled from"), "{out}");
    let (c, out) = code(
        &[
            "maintenance",
            "schedule",
            "ticket-submission",
            "--starts-at",
            "2h",
            "--duration",
            "soon",
            "--reason",
            "x",
        ],
        op,
    );
    assert_eq!(c, Some(2), "{out}");

    // An automatic failover leaves a record pending review.
    target.set_down(true);
    wait_until("automatic failover", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/backup")
    });
    let (c, out) = code(&["audit", "list", "--pending-review"], Some(&t.viewer));
    assert_eq!(c, Some(0), "{out}");
    assert!(out.contains("-> failed_over"), "{out}");
    let o = sb(
        &["audit", "list", "--pending-review", "--json"],
        &url,
        Some(&t.viewer),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pending: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let id = pending
        .iter()
        .find(|r| r["to"] == "failed_over")
        .and_then(|r| r["id"].as_i64())
        .expect("the failover is pending review")
        .to_string();
    assert!(pending.iter().all(|r| r["pending_review"] == true));
    assert_eq!(code(&["audit", "list"], None).0, Some(3));

    assert_eq!(
        code(&["review", &id, "--note", "seen"], Some(&t.viewer)).0,
        Some(3)
    );
    let (c, out) = code(&["review", &id], op);
    assert_eq!(c, Some(2), "--note is required: {out}");
    let (c, out) = code(&["review", "abc", "--note", "x"], op);
    assert_eq!(c, Some(2), "{out}");
    let (c, out) = code(&["review", "999999", "--note", "x"], op);
    assert_eq!(c, Some(2), "{out}");
    let (c, out) = code(
        &["review", &id, "--note", "real outage, vendor confirmed"],
        op,
    );
    assert_eq!(c, Some(0), "{out}");
    assert!(
        out.contains(&format!("audit record {id} reviewed")),
        "{out}"
    );
    let (c, out) = code(&["review", &id, "--note", "twice"], op);
    assert_eq!(c, Some(1), "{out}");
    let (c, out) = code(
        &["audit", "list", "--pending-review", "--json"],
        Some(&t.viewer),
    );
    assert_eq!(c, Some(0), "{out}");
    assert!(
        !out.lines().any(|l| l.contains(&format!("\"id\":{id},"))),
        "reviewed record still pending: {out}"
    );
    target.set_down(false);
}
