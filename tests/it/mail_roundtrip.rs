//! The mail round trip against real servers on loopback: aiosmtpd delivering into the Maildir
//! a real Dovecot serves over IMAP (arrives, never arrives, SMTP refuses, bad login), an HTTP
//! search API over the same Maildir, and hostile IMAP peers (garbage, silence, a flood).

use crate::support::check::{self, class, message, run, SLACK};
use crate::support::imap::{Dovecot, PASSWORD, USER};
use crate::support::smtp::{parse_mail, RefusingServer, SmtpServer};
use std::time::{Duration, Instant};
use switchboard::config::{CheckKind, MailConfirm, OnArrival};
use switchboard::probe::{ErrorClass, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn step<'o>(o: &'o Outcome, name: &str) -> &'o switchboard::probe::StepResult {
    o.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {o:?}"))
}

fn keep(c: check::Check) -> check::Check {
    c.with_mail(|m| {
        if let MailConfirm::Imap(i) = &mut m.confirm {
            i.on_arrival = OnArrival::Keep;
        }
    })
}

#[tokio::test]
async fn a_canary_sent_through_aiosmtpd_arrives_in_dovecot_and_both_phases_are_timed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot = Dovecot::start(dir.path());
    let smtp = SmtpServer::start(&dovecot.maildir);
    let c = check::mail_roundtrip(smtp.port, dovecot.port, USER, &dovecot.password_file);

    // Kept: the canary as the intake received it, marked so rules can close it.
    let o = run(&keep(c.clone()).spec()).await;
    assert!(o.success, "{o:?}\n{}", dovecot.log());
    let (accepted, arrived) = (step(&o, "accepted"), step(&o, "arrived"));
    assert!(accepted.success && arrived.success, "{o:?}");
    assert!(
        accepted.duration > Duration::ZERO && arrived.duration > Duration::ZERO,
        "{o:?}"
    );
    assert!(accepted.duration + arrived.duration <= o.duration, "{o:?}");
    let kept = dovecot.messages();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let mail = parse_mail(&kept[0]);
    let token = mail
        .header("X-Switchboard-Canary")
        .expect("canary header")
        .to_string();
    assert_eq!(token.len(), 32, "{token}");
    assert_eq!(
        mail.header("Subject"),
        Some(format!("[Switchboard canary] {token}").as_str())
    );

    // Deleted once seen (the default): the new canary goes, the kept one stays, because only
    // the canary's own UID is expunged.
    let spec = c.spec();
    let o = run(&spec).await;
    assert!(o.success, "{o:?}\n{}", dovecot.log());
    let left = dovecot.messages();
    assert_eq!(
        left.len(),
        1,
        "only the kept canary should remain: {left:?}"
    );
    assert_eq!(
        parse_mail(&left[0]).header("X-Switchboard-Canary"),
        Some(token.as_str())
    );

    // Exported as its own phase series, as the DNS kind exports its phases.
    let metrics = switchboard::metrics::Metrics::new();
    metrics.probe_finished("test-service", &spec, &o);
    let text = metrics.render();
    for phase in ["accepted", "arrived"] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("probe_mail_roundtrip_duration_seconds{")
                    && l.contains(&format!("phase=\"{phase}\""))
            })
            .unwrap_or_else(|| panic!("no {phase} series in\n{text}"));
        assert!(
            line.contains("instance=\"mailto:support@example.com\""),
            "{line}"
        );
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v > 0.0, "{line}");
    }
}

#[tokio::test]
async fn a_canary_that_never_arrives_fails_at_the_deadline_naming_its_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot = Dovecot::start(&dir.path().join("imap"));
    // aiosmtpd takes the canary but delivers it elsewhere: accepted, never arrives.
    let elsewhere = dir.path().join("elsewhere");
    let smtp = SmtpServer::start(&elsewhere);
    let deadline = Duration::from_secs(2);
    let c = check::mail_roundtrip(smtp.port, dovecot.port, USER, &dovecot.password_file)
        .timeout(deadline);
    let started = Instant::now();
    let o = run(&c.spec()).await;
    let took = started.elapsed();
    assert_eq!(class(&o), Some(ErrorClass::Timeout), "{o:?}");
    assert!(took >= deadline && took < deadline + SLACK, "{took:?}");
    assert!(
        message(&o).starts_with("the canary (token ")
            && message(&o).contains(") did not arrive within 2s (looked "),
        "{}",
        message(&o)
    );
    assert!(step(&o, "accepted").success, "{o:?}");
    let arrived = step(&o, "arrived");
    assert!(!arrived.success && arrived.error.is_some(), "{o:?}");
    assert_eq!(smtp.messages().len(), 1, "the canary was handed over");
}

#[tokio::test]
async fn an_smtp_server_that_refuses_the_canary_fails_the_accepted_phase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot = Dovecot::start(&dir.path().join("imap"));
    let refusing = RefusingServer::start(dir.path(), "rcpt");
    let c = check::mail_roundtrip(refusing.port, dovecot.port, USER, &dovecot.password_file);
    let o = run(&c.spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
    assert!(
        message(&o).starts_with("smtp: RCPT TO refused: 554"),
        "{}",
        message(&o)
    );
    let accepted = step(&o, "accepted");
    assert!(!accepted.success, "{o:?}");
    assert!(o.steps.iter().all(|s| s.name != "arrived"), "{o:?}");
}

#[tokio::test]
async fn a_wrong_imap_password_is_a_clear_error_that_never_shows_it_and_sends_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot = Dovecot::start(&dir.path().join("imap"));
    let smtp = SmtpServer::start(&dovecot.maildir);
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-Pa55word\n").expect("write");
    let c = check::mail_roundtrip(smtp.port, dovecot.port, USER, &wrong);
    let o = run(&c.spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
    assert!(
        message(&o).starts_with("imap: login refused for user \"canary\": NO"),
        "{}",
        message(&o)
    );
    let json = serde_json::to_string(&o).expect("json");
    assert!(
        !json.contains("not-the-Pa55word") && !json.contains(PASSWORD),
        "{json}"
    );
    // The mailbox could not be read, so no canary was sent to pile up unseen.
    assert!(smtp.messages().is_empty() && o.steps.is_empty(), "{o:?}");
}

/// A peer on a loopback port that answers every connection with `greeting` and then, when
/// `then` is set, with `then` repeated forever (a flood); otherwise it holds the connection.
async fn hostile_imap(greeting: &'static [u8], then: Option<&'static [u8]>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(greeting).await;
                match then {
                    Some(chunk) => while s.write_all(chunk).await.is_ok() {},
                    None => {
                        let mut buf = [0u8; 1024];
                        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    }
                }
            });
        }
    });
    port
}

/// A hostile peer's greeting, what follows it, and the class and message it must cause.
type Hostile = (
    &'static [u8],
    Option<&'static [u8]>,
    Option<ErrorClass>,
    &'static str,
);

#[tokio::test]
async fn hostile_imap_servers_fail_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start(&dir.path().join("Maildir"));
    let password = dir.path().join("pw");
    std::fs::write(&password, "pw\n").expect("write");
    let timeout = Duration::from_secs(2);
    let cases: [Hostile; 4] = [
        (
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            None,
            Some(ErrorClass::Protocol),
            "imap: not an IMAP greeting",
        ),
        (
            b"",
            None,
            Some(ErrorClass::Timeout),
            "timed out after 2s while connecting to the IMAP server",
        ),
        (
            b"* OK ready\r\n",
            Some(b"* FLOOD without end "),
            Some(ErrorClass::Protocol),
            "imap: response line longer than",
        ),
        (
            b"* OK ready\r\n",
            None,
            Some(ErrorClass::Timeout),
            "timed out after 2s while logging in to the IMAP server",
        ),
    ];
    for (greeting, then, want, text) in cases {
        let port = hostile_imap(greeting, then).await;
        let c = check::mail_roundtrip(smtp.port, port, "u", &password).timeout(timeout);
        let started = Instant::now();
        let o = run(&c.spec()).await;
        assert!(started.elapsed() < timeout + SLACK, "{o:?}");
        assert_eq!(class(&o), want, "{o:?}");
        assert!(message(&o).starts_with(text), "{text}: {}", message(&o));
    }
    assert!(
        smtp.messages().is_empty(),
        "no canary is sent while the mailbox cannot be read"
    );
}

/// A helpdesk search API over aiosmtpd's Maildir: `GET /search?query=TOKEN` answers
/// `{"count": n}`, n being the delivered messages that contain the token.
async fn search_api(maildir: std::path::PathBuf) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let maildir = maildir.clone();
            tokio::spawn(async move {
                let Some(req) = crate::support::http::read_async(&mut s).await else {
                    return;
                };
                let token = req.path.rsplit('=').next().unwrap_or_default().to_string();
                let auth = req.header("authorization") == Some("Bearer helpdesk-key");
                let count = crate::support::smtp::maildir_messages(&maildir)
                    .iter()
                    .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&token)))
                    .count();
                let broken = req.header("authorization") == Some("Bearer broken-key");
                let (status, body) = if auth {
                    ("200 OK", format!("{{\"count\": {count}}}"))
                } else if broken {
                    ("500 Internal Server Error", "{}".to_string())
                } else {
                    ("401 Unauthorized", "{}".to_string())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn arrival_can_be_confirmed_by_a_helpdesk_search_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("Maildir");
    let smtp = SmtpServer::start(&maildir);
    let api = search_api(maildir).await;
    let service = |key: &str| {
        format!(
            r#"
[[check]]
name = "intake-roundtrip"
kind = "mail_roundtrip"
from = "canary@example.com"
to = "support@example.com"
poll_interval = "100ms"
timeout = "3s"
smtp = {{ host = "127.0.0.1", port = {smtp}, tls = "none" }}
[check.search]
url = "http://127.0.0.1:{api}/search?query=${{token}}"
headers = {{ Authorization = "Bearer {key}" }}
conditions = ["[STATUS] == 200", "[BODY].count > 0"]
"#,
            smtp = smtp.port
        )
    };
    let (_dir, checks) = check::load(&service("helpdesk-key"), &[]);
    let spec = &checks[0];
    assert!(matches!(spec.kind, CheckKind::MailRoundtrip(_)));
    let o = run(spec).await;
    assert!(o.success, "{o:?}");
    assert!(step(&o, "arrived").success, "{o:?}");

    // A refused search is reported at once, not waited out.
    let (_dir, checks) = check::load(&service("wrong-key"), &[]);
    let started = Instant::now();
    let o = run(&checks[0]).await;
    assert_eq!(class(&o), Some(ErrorClass::Conditions), "{o:?}");
    assert_eq!(message(&o), "search: the search API answered 401");
    assert!(started.elapsed() < Duration::from_secs(2), "{o:?}");

    // A search API that keeps failing is named at the deadline, not mistaken for lost mail.
    let (_dir, checks) = check::load(&service("broken-key"), &[]);
    let o = run(&checks[0]).await;
    assert_eq!(class(&o), Some(ErrorClass::Timeout), "{o:?}");
    assert!(
        message(&o).ends_with("; last search: condition failed: [STATUS] (500) == 200)"),
        "{}",
        message(&o)
    );
}

#[tokio::test]
async fn starttls_and_auth_to_smtp_and_imaps_or_starttls_to_dovecot_verify_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    // aiosmtpd requiring STARTTLS and AUTH, delivering into the Maildir Dovecot serves with
    // the same certificate (signed by a test CA for 127.0.0.1).
    let smtp = crate::support::smtp::TlsSmtpServer::start(
        dir.path(),
        "starttls",
        "relay-user",
        "smtp-Pa55",
    );
    let (cert, key) = (
        dir.path().join("starttls-cert.pem"),
        dir.path().join("starttls-key.pem"),
    );
    let dovecot = Dovecot::start_with(
        &dir.path().join("imap"),
        Some(&smtp.maildir),
        Some((&cert, &key)),
    );
    let smtp_pw = dir.path().join("smtp-password");
    std::fs::write(&smtp_pw, "smtp-Pa55\n").expect("write");
    let service = |imap_tls: &str, imap_port: u16, ca: &str| {
        format!(
            r#"
[[check]]
name = "intake-roundtrip"
kind = "mail_roundtrip"
from = "canary@example.com"
to = "support@example.com"
poll_interval = "100ms"
timeout = "5s"
[check.smtp]
host = "127.0.0.1"
port = {smtp}
tls = "starttls"
user = "relay-user"
password_file = "{smtp_pw}"
{ca}
[check.imap]
host = "127.0.0.1"
port = {imap_port}
tls = "{imap_tls}"
user = "{USER}"
password_file = "{imap_pw}"
{ca}
"#,
            smtp = smtp.port,
            smtp_pw = smtp_pw.display(),
            imap_pw = dovecot.password_file.display(),
        )
    };
    let ca = format!("ca_file = \"{}\"", smtp.ca_pem.display());
    let imaps = dovecot.imaps_port.expect("imaps port");
    for (mode, port) in [("implicit", imaps), ("starttls", dovecot.port)] {
        let (_d, checks) = check::load(&service(mode, port, &ca), &[]);
        let o = run(&checks[0]).await;
        assert!(
            o.success,
            "{mode}: {o:?}\n{}\n{}",
            smtp.log_text(),
            dovecot.log()
        );
        assert!(o.tls.is_some(), "the SMTP session's TLS is reported: {o:?}");
        assert!(step(&o, "arrived").success, "{o:?}");
    }
    assert!(
        smtp.log_text().contains("auth ok relay-user"),
        "{}",
        smtp.log_text()
    );
    assert!(
        dovecot.messages().is_empty(),
        "both canaries were deleted once seen"
    );

    // Without the private CA the SMTP server's certificate is not trusted: a TLS failure,
    // before any password is sent.
    let (_d, checks) = check::load(&service("implicit", imaps, ""), &[]);
    let o = run(&checks[0]).await;
    assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
    assert!(
        !smtp.log_text().contains("auth failed"),
        "{}",
        smtp.log_text()
    );
}
