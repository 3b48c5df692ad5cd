//! What operators' commands and on-call messages say, and to whom, through the real daemon: an operator's `reason` reaches the audit chain and on-call only while customers read templates or the command's `public_message` (real aiosmtpd, a Statuspage stand-in); on-call e-mails link runbooks absolutely.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::control;
use crate::support::daemon;
use crate::support::smtp;

use control::{all_healthy, json, request};
use daemon::{get, wait_until, Daemon, Target};

/// Unique strings: a reason's and a public message's, so any leak is found by a plain search.
const REASON: &str = "flap-held; customers on broken form, INC-43 rsn-7f3a9c";
const REASON_MARK: &str = "rsn-7f3a9c";
const PUBLIC: &str = "We have moved you to our backup form while we fix the usual one. pub-91c2e4";
const PUBLIC_MARK: &str = "pub-91c2e4";
const BACK_REASON: &str = "INC-43 mitigated by a rollback rsn-back-55d1";
const BACK_MARK: &str = "rsn-back-55d1";
const BACK_PUBLIC: &str = "The usual form works again. pub-back-0a7f";
const BACK_PUBLIC_MARK: &str = "pub-back-0a7f";
const WINDOW_REASON: &str = "db failover drill for INC-43 rsn-win-3b8e";
const WINDOW_MARK: &str = "rsn-win-3b8e";

/// A Statuspage management API stand-in on loopback: records each request body, answers
/// `201 {"id":"inc1"}`.
struct FakeStatuspage {
    base: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl FakeStatuspage {
    fn start() -> FakeStatuspage {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", l.local_addr().expect("addr"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then as much body as Content-Length says.
                let body = loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break Some(body.to_string());
                        }
                    }
                };
                if let Some(b) = body {
                    seen.lock().expect("lock").push(b);
                }
                let reply = r#"{"id":"inc1"}"#;
                let _ = write!(
                    s,
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        FakeStatuspage { base, bodies }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("lock").clone()
    }
}

/// Every document the public side serves, by path.
fn public_outputs(d: &Daemon) -> Vec<(String, String)> {
    [
        "/status",
        "/api/v2/summary.json",
        "/api/v2/status.json",
        "/api/v2/components.json",
        "/api/v2/incidents.json",
        "/api/v2/incidents/unresolved.json",
        "/api/v2/scheduled-maintenances.json",
        "/api/v2/scheduled-maintenances/upcoming.json",
        "/api/v2/scheduled-maintenances/active.json",
        "/history.atom",
        "/history.rss",
        "/api/v1/routes",
    ]
    .iter()
    .map(|p| {
        let r = get(&d.url(p)).unwrap_or_else(|e| panic!("GET {p}: {e}"));
        assert_eq!(r.status, 200, "GET {p}: {r:?}");
        (p.to_string(), r.body)
    })
    .collect()
}

/// (recipient, whole decoded text of every part) of each delivered message.
fn mails(server: &smtp::SmtpServer) -> Vec<(String, String)> {
    server
        .messages()
        .iter()
        .map(|p| {
            let m = smtp::parse_mail(p);
            let to = m.header("To").unwrap_or("").to_owned();
            let mut text = m
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect::<String>();
            for (_, content) in &m.parts {
                text.push_str(content);
            }
            (to, text)
        })
        .collect()
}

#[test]
fn an_operators_reason_never_reaches_customers_and_their_public_message_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("maildir");
    let server = smtp::SmtpServer::start(&maildir);
    let statuspage = FakeStatuspage::start();
    let target = Target::start();
    let email = format!(
        "transport = \"smtp\"\nsmtp_url = \"{}\"\n\n[statuspage_push]\npage_id = \"pgWords\"\napi_base = \"{}/v1\"\napi_key_env = \"WORDS_STATUSPAGE_KEY\"\n",
        server.url(),
        statuspage.base
    );
    let (main, port, t) = control::prepare(dir.path(), &target, Some(&email));
    let svc = dir.path().join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&svc).expect("service file");
    std::fs::write(
        &svc,
        text.replace(
            "name = \"Ticket submission\"",
            "name = \"Ticket submission\"\nstatuspage_component = \"cmpWords\"",
        ),
    )
    .expect("write service file");
    let d = Daemon::start_with(
        &main,
        port,
        &[("WORDS_STATUSPAGE_KEY", "k-words")],
        Some(&dir.path().join("daemon.log")),
    );
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });

    // A maintenance window scheduled with only an internal reason: the page says something neutral.
    let r = request(
        "POST",
        &d.url("/api/v1/services/ticket-submission/maintenance"),
        Some(&t.operator),
        Some(
            &serde_json::json!({ "action": "schedule", "starts_at": "2h", "duration": "1h",
                "reason": WINDOW_REASON })
            .to_string(),
        ),
    );
    assert_eq!(r.status, 201, "{r:?}");

    // A pinned failover (the machine keeps the backup while the primary is fine) with both words.
    let r = request(
        "POST",
        &d.url("/api/v1/services/ticket-submission/pin"),
        Some(&t.operator),
        Some(
            &serde_json::json!({ "side": "backup", "reason": REASON, "public_message": PUBLIC })
                .to_string(),
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(json(&r)["side"], "backup", "{r:?}");
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));
    wait_until(
        "failover mails (on-call and customers) and the Statuspage incident",
        Duration::from_secs(30),
        || server.messages().len() >= 2 && !statuspage.bodies().is_empty(),
    );
    // Mid-incident, while it is unresolved, every public document is checked too.
    let during = public_outputs(&d);

    // Back: pinned to the primary (a direct failback the customers hear of), then released.
    let r = request(
        "POST",
        &d.url("/api/v1/services/ticket-submission/pin"),
        Some(&t.operator),
        Some(
            &serde_json::json!({ "side": "primary", "reason": BACK_REASON,
                "public_message": BACK_PUBLIC })
            .to_string(),
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(
        "POST",
        &d.url("/api/v1/services/ticket-submission/unpin"),
        Some(&t.operator),
        Some(&serde_json::json!({ "reason": BACK_REASON }).to_string()),
    );
    assert_eq!(r.status, 200, "{r:?}");
    wait_until(
        "routes back on the primary",
        Duration::from_secs(30),
        || d.location("submit-ticket") == target.url("/form"),
    );
    wait_until(
        "failback mails and the Statuspage resolution",
        Duration::from_secs(30),
        || server.messages().len() >= 4 && statuspage.bodies().len() >= 2,
    );
    let after = public_outputs(&d);

    // Public: no reason, ever; the public messages where customers read about the change.
    let secrets = [REASON_MARK, BACK_MARK, WINDOW_MARK, "INC-43", "flap-held"];
    let mut public: Vec<(String, String)> = during
        .iter()
        .map(|(p, b)| (format!("{p} (during)"), b.clone()))
        .chain(
            after
                .iter()
                .map(|(p, b)| (format!("{p} (after)"), b.clone())),
        )
        .collect();
    let all_mail = mails(&server);
    let (mut customer, mut oncall): (Vec<_>, Vec<_>) = all_mail
        .into_iter()
        .partition(|(to, _)| to.contains("support-announce@example.com"));
    // Maildir file names do not keep the delivery order: the failover message (its subject
    // says so) first, then the failback.
    customer.sort_by_key(|(_, m)| !m.contains("switched to backup"));
    oncall.sort_by_key(|(_, m)| !m.contains("switched to backup"));
    assert_eq!(customer.len(), 2, "one customer e-mail each way");
    assert_eq!(oncall.len(), 2, "one on-call e-mail each way");
    for (i, (_, m)) in customer.iter().enumerate() {
        public.push((format!("customer e-mail {i}"), m.clone()));
    }
    for (i, b) in statuspage.bodies().iter().enumerate() {
        public.push((format!("Statuspage request {i}"), b.clone()));
    }
    for (what, body) in &public {
        for s in secrets {
            assert!(
                !body.contains(s),
                "{what} shows the internal {s:?}:\n{body}"
            );
        }
    }
    let has = |what: &str, needle: &str| {
        let (_, body) = public
            .iter()
            .find(|(w, _)| w == what)
            .unwrap_or_else(|| panic!("no {what}"));
        assert!(body.contains(needle), "{what} lacks {needle:?}:\n{body}");
    };
    for page in [
        "/status (during)",
        "/api/v2/incidents.json (during)",
        "/api/v2/incidents/unresolved.json (during)",
        "/api/v2/summary.json (during)",
        "/history.atom (after)",
        "/history.rss (after)",
        "customer e-mail 0",
        "Statuspage request 0",
    ] {
        has(page, PUBLIC_MARK);
    }
    for page in [
        "/api/v2/incidents.json (after)",
        "/history.atom (after)",
        "customer e-mail 1",
        "Statuspage request 1",
    ] {
        has(page, BACK_PUBLIC_MARK);
    }
    has(
        "/api/v2/scheduled-maintenances/upcoming.json (after)",
        "Scheduled maintenance",
    );

    // Internal: on-call mail carries the reason (and the public text beside it) ...
    assert!(oncall[0].1.contains(REASON_MARK), "{}", oncall[0].1);
    assert!(oncall[0].1.contains(PUBLIC_MARK), "{}", oncall[0].1);
    assert!(oncall[1].1.contains(BACK_MARK), "{}", oncall[1].1);
    // ... and so does the audit chain, which still verifies.
    let o = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["audit", "export", "--format", "jsonl", "--config"])
        .arg(&main)
        .output()
        .expect("audit export");
    assert!(o.status.success(), "{o:?}");
    let exported = String::from_utf8_lossy(&o.stdout);
    for m in [
        REASON_MARK,
        BACK_MARK,
        WINDOW_MARK,
        PUBLIC_MARK,
        BACK_PUBLIC_MARK,
    ] {
        assert!(exported.contains(m), "audit export lacks {m:?}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["audit", "verify", "--config"])
        .arg(&main)
        .output()
        .expect("audit verify");
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn a_bad_public_message_is_refused_with_422_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let url = d.url("/api/v1/services/ticket-submission/failover");
    let long = "x".repeat(1001);
    for body in [
        serde_json::json!({ "reason": "r", "public_message": "   " }),
        serde_json::json!({ "reason": "r", "public_message": long }),
        serde_json::json!({ "reason": "r", "public_message": 7 }),
    ] {
        let r = request("POST", &url, Some(&t.operator), Some(&body.to_string()));
        control::assert_error(&r, 422, "public_message");
    }
    // Nothing happened: the refusals changed no state.
    assert_eq!(d.location("submit-ticket"), target.url("/form"));
}

/// On-call e-mails link the runbook as an absolute URL under `[email] runbook_base_url`, and
/// `switchboard check` warns when a relative runbook could not become a link.
#[test]
fn on_call_mail_links_the_runbook_absolutely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let mail = dir.path().join("mail");
    let (main, port) = daemon::write_config(
        dir.path(),
        &target,
        &format!("transport = \"file\"\ndir = \"{}\"", mail.display()),
    );
    let svc = dir.path().join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&svc).expect("service file");
    std::fs::write(
        &svc,
        text.replace(
            "name = \"Ticket submission\"",
            "name = \"Ticket submission\"\nrunbook = \"runbooks/ticket-submission.md\"",
        ),
    )
    .expect("write service file");
    let check = |main: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["check", "--config"])
            .arg(main)
            .output()
            .expect("switchboard check")
    };
    // Without a base: valid, with a warning naming the setting.
    let o = check(&main);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning:") && err.contains("runbook_base_url"),
        "{err}"
    );
    let config = std::fs::read_to_string(&main).expect("config");
    std::fs::write(
        &main,
        config.replace(
            "[email]\n",
            "[email]\nrunbook_base_url = \"https://runbooks.example.com/ops\"\n",
        ),
    )
    .expect("write config");
    let o = check(&main);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("warning"),
        "{o:?}"
    );

    let d = Daemon::start(&main, port);
    wait_until("primary in use", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/form")
    });
    target.set_down(true);
    let want = "https://runbooks.example.com/ops/runbooks/ticket-submission.md";
    // The on-call failover message, once the file transport has written it.
    let oncall_eml = || {
        std::fs::read_dir(&mail)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                std::fs::read_to_string(p).is_ok_and(|m| m.contains("support-oncall@example.com"))
            })
    };
    wait_until("on-call failover e-mail", Duration::from_secs(30), || {
        oncall_eml().is_some()
    });
    let eml = oncall_eml().expect("on-call .eml");
    let parsed = smtp::parse_mail(&eml);
    let text = parsed.part("text/plain").expect("text part");
    assert!(text.contains(&format!("Runbook: {want}")), "{text}");
    let html = parsed.part("text/html").expect("html part");
    assert!(html.contains(&format!("<a href=\"{want}\">")), "{html}");
    assert!(!html.contains("href=\"runbooks/"), "{html}");
    target.set_down(false);
}
