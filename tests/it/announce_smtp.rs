//! Announcements end to end against a real SMTP server (aiosmtpd) and the file transport.
//!
//! Each test commits a failover with its announcements into a SQLite file, runs the real
//! outbox, and reads what arrived with an independent MIME parser. aiosmtpd must be
//! installed: without it these tests fail with instructions, they never skip.

use crate::support::smtp;

use smtp::{maildir_messages, parse_mail, require_aiosmtpd, SmtpServer};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use switchboard::announce::{self, outbox, Delivery, Mailer, MessageContext};
use switchboard::clock::Timestamp;
use switchboard::config::{Audiences, EmailConfig, EmailTransport};
use switchboard::failover::{Cause, Side, State, Transition};
use switchboard::store::{OutboxItem, OutboxStatus, Store, StoreHandle};
use switchboard::view::RouteView;
use tokio::sync::{mpsc, watch, Notify};

const BACKUP: &str = "https://forms.example.net/support";
const SUBJECT: &str =
    "[Switchboard] Ticket submission: switched to backup — use https://forms.example.net/support";

fn audiences() -> Audiences {
    Audiences {
        oncall: vec!["support-oncall@example.com".into()],
        customers: vec![
            "support-announce@example.com".into(),
            "Key Accounts <key-accounts@example.com>".into(),
        ],
        drill: vec!["support-ops@example.com".into()],
    }
}

fn ctx() -> MessageContext {
    MessageContext {
        service_name: "Ticket submission".into(),
        routes: vec![RouteView {
            id: "submit-ticket".into(),
            service: "ticket-submission".into(),
            primary: "https://support.example.com/hc/en-us/requests/new".into(),
            backup: BACKUP.into(),
            active: Side::Backup,
        }],
        status_url: "http://127.0.0.1:9898/status".into(),
        go_base_url: "http://127.0.0.1:9898/go/".into(),
        runbook: Some("runbooks/ticket-submission.md".into()),
        api_url: "http://127.0.0.1:9898/api/v1".into(),
        holds: Vec::new(),
    }
}

/// Commits a failover of `ticket-submission` with its planned announcements; returns the
/// stored outbox rows (oncall first, then customers).
fn commit_failover(store: &Store) -> Vec<OutboxItem> {
    let now = Timestamp::now();
    store.ensure_service("ticket-submission", now).unwrap();
    let t = Transition {
        service: "ticket-submission".into(),
        from: State::Operational,
        to: State::FailedOver,
        cause: Cause::PrimaryDown,
        at: now,
        actor: "system".into(),
        reason: "failover_when = any: 1 of 1 primary checks down".into(),
        evidence: vec!["portal-form: down (HTTP 500)".into()],
        public_message: None,
    };
    let anns = announce::plan(&t, &ctx(), &audiences());
    assert_eq!(anns.len(), 2, "oncall and customers");
    let c = store.commit_transition(&t, "cfg-test", &anns).unwrap();
    store.announcements(c.transition_id).unwrap()
}

fn smtp_mailer(url: &str) -> Mailer {
    let cfg = EmailConfig::new(
        "Support Status <status@example.com>",
        EmailTransport::Smtp { url: url.into() },
    );
    Mailer::with_password(&cfg, None).unwrap()
}

/// The outbox loop running in the background, as the daemon runs it.
struct Loop {
    wake: Arc<Notify>,
    events: mpsc::UnboundedReceiver<Delivery>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Loop {
    fn start(store: &Arc<Store>, mailer: Mailer) -> Loop {
        let wake = Arc::new(Notify::new());
        let (tx, events) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(outbox::run(
            StoreHandle::shared(Arc::clone(store)),
            Arc::new(mailer),
            Arc::clone(&wake),
            tx,
            stop_rx,
        ));
        Loop {
            wake,
            events,
            stop,
            task,
        }
    }

    /// Waits for `n` successful deliveries; failures along the way are collected too.
    async fn successes(&mut self, n: usize) -> (Vec<Delivery>, Vec<Delivery>) {
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        let wait = async {
            while ok.len() < n {
                let d = self.events.recv().await.expect("outbox loop alive");
                if d.result.is_ok() {
                    ok.push(d);
                } else {
                    failed.push(d);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("deliveries within 30 s");
        (ok, failed)
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("outbox loop stops on shutdown")
            .unwrap();
    }
}

/// Every message in `maildir`, checked against its stored outbox row: recipients, subject,
/// stable Message-ID, both MIME parts, and the backup URL in the body.
fn assert_arrived_once_each(maildir: &std::path::Path, rows: &[OutboxItem]) {
    let files = maildir_messages(maildir);
    assert_eq!(
        files.len(),
        rows.len(),
        "one message per outbox row: {files:?}"
    );
    let mut seen = BTreeSet::new();
    for f in &files {
        let m = parse_mail(f);
        let id = m.header("Message-ID").expect("Message-ID").to_owned();
        assert!(seen.insert(id.clone()), "{id} arrived twice");
        let row = rows
            .iter()
            .find(|r| r.message_id == id)
            .unwrap_or_else(|| panic!("{id} matches no stored row"));
        assert_eq!(m.header("Subject"), Some(SUBJECT));
        assert_eq!(
            m.header("From"),
            Some("Support Status <status@example.com>")
        );
        assert_eq!(m.header("To"), Some(row.recipients.join(", ").as_str()));
        let envelope: BTreeSet<&str> = m
            .header("X-RcptTo")
            .expect("aiosmtpd records the envelope")
            .split(", ")
            .collect();
        let expected: BTreeSet<&str> = if row.audience == "oncall" {
            ["support-oncall@example.com"].into()
        } else {
            ["support-announce@example.com", "key-accounts@example.com"].into()
        };
        assert_eq!(envelope, expected);
        assert_eq!(m.content_type, "multipart/alternative");
        let text = m.part("text/plain").expect("text part");
        assert!(text.contains(BACKUP), "{text}");
        assert!(text.contains("http://127.0.0.1:9898/go/submit-ticket"));
        assert_eq!(text.contains("portal-form: down"), row.audience == "oncall");
        assert!(m.part("text/html").expect("html part").contains(BACKUP));
    }
}

#[tokio::test]
async fn failover_mail_arrives_over_smtp_once_with_the_stored_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(&dir.path().join("maildir"));
    let store = Arc::new(Store::open(&dir.path().join("var/switchboard.db")).unwrap());
    let rows = commit_failover(&store);

    let mut lp = Loop::start(&store, smtp_mailer(&server.url()));
    lp.wake.notify_one();
    let (ok, failed) = lp.successes(2).await;
    lp.stop().await;
    assert!(failed.is_empty(), "{failed:?}");
    for d in &ok {
        let reply = d.result.as_ref().unwrap();
        assert!(reply.starts_with("250"), "server reply: {reply}");
    }

    assert_arrived_once_each(&server.maildir, &rows);
    for r in &rows {
        let row = store.outbox_item(r.id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Delivered);
        assert_eq!(row.attempts, 1);
        assert!(row.detail.as_deref().unwrap_or("").starts_with("250"));
    }
    assert_eq!(store.outbox_backlog().unwrap(), (0, None));

    // A second pass, even far in the future, sends nothing again.
    let mailer = smtp_mailer(&server.url());
    let again = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &mailer,
        Timestamp(i64::MAX),
        100,
    )
    .await
    .unwrap();
    assert!(again.is_empty());
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn mail_queued_while_smtp_is_down_arrives_exactly_once_when_it_returns() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let store = Arc::new(Store::open(&dir.path().join("switchboard.db")).unwrap());
    let rows = commit_failover(&store);

    // Nobody listens yet: every attempt fails, and every row stays pending for a retry.
    let before = Timestamp::now();
    let first = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &smtp_mailer(&url),
        Timestamp::now(),
        100,
    )
    .await
    .unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|d| d.result.is_err()), "{first:?}");
    for r in &rows {
        let row = store.outbox_item(r.id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Pending);
        assert_eq!(row.attempts, 1);
        assert!(row.last_error.is_some());
        assert!(
            row.next_attempt_at >= before.plus(Duration::from_secs(1)),
            "retry is scheduled later, not at once"
        );
        // Not due a moment before its retry time.
        let just_before = Timestamp(row.next_attempt_at.as_millis() - 1);
        assert!(store
            .due_announcements(just_before, 100)
            .unwrap()
            .iter()
            .all(|i| i.id != r.id));
    }
    assert_eq!(store.outbox_backlog().unwrap().0, 2);

    // The relay comes back; the running loop retries on its own.
    let server = SmtpServer::start_on(port, &dir.path().join("maildir"));
    let mut lp = Loop::start(&store, smtp_mailer(&url));
    lp.successes(2).await;
    lp.stop().await;

    assert_arrived_once_each(&server.maildir, &rows);
    for r in &rows {
        let row = store.outbox_item(r.id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Delivered);
        assert_eq!(row.attempts, 2);
    }
    let again = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &smtp_mailer(&url),
        Timestamp(i64::MAX),
        100,
    )
    .await
    .unwrap();
    assert!(again.is_empty());
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn file_transport_writes_an_eml_with_the_right_headers() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: the mailer creates it.
    let mail_dir = dir.path().join("var/mail");
    let store = Arc::new(Store::open_in_memory().unwrap());
    let rows = commit_failover(&store);
    let cfg = EmailConfig::new(
        "Support Status <status@example.com>",
        EmailTransport::File {
            dir: mail_dir.clone(),
        },
    );
    let mailer = Mailer::with_password(&cfg, None).unwrap();

    let done = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &mailer,
        Timestamp::now(),
        100,
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 2);
    for d in &done {
        let path = std::path::PathBuf::from(d.result.as_ref().expect("written"));
        assert_eq!(path.parent(), Some(mail_dir.as_path()));
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("eml"));
        let m = parse_mail(&path);
        assert_eq!(m.header("Message-ID"), Some(d.item.message_id.as_str()));
        assert_eq!(m.header("Subject"), Some(SUBJECT));
        assert_eq!(
            m.header("From"),
            Some("Support Status <status@example.com>")
        );
        assert_eq!(m.header("To"), Some(d.item.recipients.join(", ").as_str()));
        assert_eq!(m.header("Auto-Submitted"), Some("auto-generated"));
        assert!(m.header("Date").is_some());
        assert_eq!(m.content_type, "multipart/alternative");
        assert!(m.part("text/plain").unwrap().contains(BACKUP));
        assert!(m.part("text/html").unwrap().contains(BACKUP));

        let row = store.outbox_item(d.item.id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Delivered);
        assert_eq!(row.detail.as_deref(), Some(path.to_str().unwrap()));
    }
    let files: Vec<_> = std::fs::read_dir(&mail_dir).unwrap().collect();
    assert_eq!(files.len(), rows.len());
}

#[tokio::test]
async fn a_crash_between_send_and_mark_resends_once_with_the_same_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(&dir.path().join("maildir"));
    let db = dir.path().join("switchboard.db");
    let rows = {
        let store = Store::open(&db).unwrap();
        let rows = commit_failover(&store);
        // The server accepts the first message, then the process "dies" before
        // `mark_delivered`: the store is dropped without recording anything.
        let reply = smtp_mailer(&server.url()).send(&rows[0]).await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        rows
    };

    // Restart: the same file, a fresh outbox pass.
    let store = Arc::new(Store::open(&db).unwrap());
    let done = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &smtp_mailer(&server.url()),
        Timestamp::now(),
        100,
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|d| d.result.is_ok()), "{done:?}");
    let again = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &smtp_mailer(&server.url()),
        Timestamp(i64::MAX),
        100,
    )
    .await
    .unwrap();
    assert!(again.is_empty(), "nothing is sent a third time");

    // Three messages: the repeat carries the same Message-ID, so it is recognisable.
    let ids: Vec<String> = server
        .messages()
        .iter()
        .map(|f| parse_mail(f).header("Message-ID").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        ids.iter().filter(|id| **id == rows[0].message_id).count(),
        2
    );
    assert_eq!(
        ids.iter().filter(|id| **id == rows[1].message_id).count(),
        1
    );
}

fn mailer_with_backup(primary: &str, backup: &str) -> Mailer {
    let mut cfg = EmailConfig::new(
        "Support Status <status@example.com>",
        EmailTransport::Smtp {
            url: primary.into(),
        },
    );
    cfg.backup_smtp_url = Some(backup.into());
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.command_timeout = Duration::from_secs(5);
    Mailer::with_password(&cfg, None).unwrap()
}

/// Delivers the failover's two rows with `mailer` and checks they came through the backup.
async fn delivered_by_backup(mailer: Mailer, dir: &std::path::Path, backup: &SmtpServer) {
    let store = Arc::new(Store::open(&dir.join("switchboard.db")).unwrap());
    let rows = commit_failover(&store);
    let done = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &mailer,
        Timestamp::now(),
        100,
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 2);
    for d in &done {
        let reply = d.result.as_ref().expect("the backup relay took it");
        assert!(reply.starts_with("250"), "{reply}");
        assert!(
            reply.ends_with(&format!("(backup relay smtp://127.0.0.1:{})", backup.port)),
            "{reply}"
        );
    }
    assert_arrived_once_each(&backup.maildir, &rows);
    assert_eq!(store.outbox_backlog().unwrap(), (0, None));
}

#[tokio::test]
async fn a_closed_primary_relay_falls_back_to_the_backup_relay() {
    let dir = tempfile::tempdir().unwrap();
    let backup = SmtpServer::start(&dir.path().join("backup-maildir"));
    let closed = format!("smtp://127.0.0.1:{}", crate::support::free_port());
    delivered_by_backup(
        mailer_with_backup(&closed, &backup.url()),
        dir.path(),
        &backup,
    )
    .await;
}

#[tokio::test]
async fn a_primary_relay_answering_554_to_rcpt_falls_back_to_the_backup_relay() {
    let dir = tempfile::tempdir().unwrap();
    let primary = smtp::RefusingServer::start(dir.path(), "rcpt");
    let backup = SmtpServer::start(&dir.path().join("backup-maildir"));
    let url = format!("smtp://127.0.0.1:{}", primary.port);
    delivered_by_backup(mailer_with_backup(&url, &backup.url()), dir.path(), &backup).await;
    // The primary really was asked, and refused.
    assert!(
        primary
            .log_text()
            .contains("refused RCPT support-oncall@example.com"),
        "{}",
        primary.log_text()
    );
}

#[tokio::test]
async fn a_tls_failure_on_the_primary_relay_falls_back_to_the_backup_relay() {
    let dir = tempfile::tempdir().unwrap();
    // smtps:// to a server whose certificate no public root signed: the handshake fails.
    let primary = smtp::RefusingServer::start(dir.path(), "tls");
    let backup = SmtpServer::start(&dir.path().join("backup-maildir"));
    let url = format!("smtps://127.0.0.1:{}", primary.port);
    delivered_by_backup(mailer_with_backup(&url, &backup.url()), dir.path(), &backup).await;
}

#[tokio::test]
async fn when_both_relays_fail_the_row_stays_pending_and_the_error_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let primary = smtp::RefusingServer::start(dir.path(), "rcpt");
    let url = format!("smtp://127.0.0.1:{}", primary.port);
    let closed = format!("smtp://127.0.0.1:{}", crate::support::free_port());
    let store = Arc::new(Store::open_in_memory().unwrap());
    let rows = commit_failover(&store);
    let done = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &mailer_with_backup(&url, &closed),
        Timestamp::now(),
        100,
    )
    .await
    .unwrap();
    let err = done[0].result.as_ref().unwrap_err();
    assert!(
        err.contains(&format!("smtp://127.0.0.1:{}", primary.port)),
        "{err}"
    );
    assert!(err.contains("554"), "{err}");
    assert!(err.contains("backup relay: SMTP delivery via"), "{err}");
    for r in &rows {
        let row = store.outbox_item(r.id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Pending);
    }
}

/// Runs `switchboard email test` against `config`; returns (exit code, stdout, stderr).
fn email_test_cli(
    config: &std::path::Path,
    to: &str,
    password: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["email", "test", "--to", to, "--config"])
        .arg(config);
    cmd.env_remove("SWITCHBOARD_SMTP_PASSWORD");
    if let Some(p) = password {
        cmd.env("SWITCHBOARD_SMTP_PASSWORD", p);
    }
    let out = cmd.output().expect("run switchboard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_email_config(dir: &std::path::Path, smtp_url: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("probes")).unwrap();
    std::fs::write(
        dir.join("probes/svc.toml"),
        "[service]\nid = \"svc\"\n[[check]]\nname = \"c\"\nurl = \"http://127.0.0.1:9/\"\n",
    )
    .unwrap();
    let path = dir.join("switchboard.toml");
    std::fs::write(
        &path,
        format!(
            "[email]\nfrom = \"Support Status <status@example.com>\"\ntransport = \"smtp\"\nsmtp_url = \"{smtp_url}\"\nconnect_timeout = \"3s\"\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn email_test_prints_the_servers_reply_and_the_message_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(&dir.path().join("maildir"));
    let config = write_email_config(dir.path(), &server.url());
    let (code, out, err) = email_test_cli(&config, "ops@example.com", None);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    // aiosmtpd's Mailbox handler answers the message with "250 OK".
    assert_eq!(out.trim(), "250 OK");
    let files = server.messages();
    assert_eq!(files.len(), 1);
    let m = parse_mail(&files[0]);
    assert_eq!(m.header("To"), Some("ops@example.com"));
    assert_eq!(m.header("Subject"), Some("[Switchboard] Test message"));
}

#[test]
fn email_test_fails_with_exit_1_and_a_clear_error_that_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    // Nobody listens.
    let config = write_email_config(dir.path(), &format!("smtp://127.0.0.1:{port}"));
    let (code, out, err) = email_test_cli(&config, "ops@example.com", None);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("email test to ops@example.com via smtp://127.0.0.1:{port} failed: SMTP delivery via smtp://127.0.0.1:{port} failed:")),
        "{err}"
    );

    // With a user and password against a server that offers no AUTH: refused, password unseen.
    let server = SmtpServer::start(&dir.path().join("maildir"));
    let config = write_email_config(
        dir.path(),
        &format!("smtp://alerts@127.0.0.1:{}", server.port),
    );
    let (code, _, err) = email_test_cli(&config, "ops@example.com", Some("hunter2-secret"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    assert!(server.messages().is_empty());
}

fn tls_mailer(url: &str, ca: &std::path::Path, password: &str) -> Mailer {
    let mut cfg = EmailConfig::new(
        "Support Status <status@example.com>",
        EmailTransport::Smtp { url: url.into() },
    );
    cfg.tls_ca_file = Some(ca.to_path_buf());
    Mailer::with_password(&cfg, Some(password.into())).unwrap()
}

#[tokio::test]
async fn starttls_and_implicit_tls_with_auth_deliver_to_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, scheme, query) in [
        ("starttls", "smtp", "?tls=starttls"),
        ("smtps", "smtps", ""),
    ] {
        let server = smtp::TlsSmtpServer::start(dir.path(), mode, "alerts", "pw-right");
        let url = format!("{scheme}://alerts@127.0.0.1:{}{query}", server.port);
        let store = Arc::new(Store::open_in_memory().unwrap());
        let rows = commit_failover(&store);
        let done = outbox::deliver_due(
            &StoreHandle::shared(store.clone()),
            &tls_mailer(&url, &server.ca_pem, "pw-right"),
            Timestamp::now(),
            100,
        )
        .await
        .unwrap();
        for d in &done {
            let reply = d
                .result
                .as_ref()
                .unwrap_or_else(|e| panic!("{mode}: {e}\n{}", server.log_text()));
            assert!(reply.starts_with("250"), "{mode}: {reply}");
        }
        assert_arrived_once_each(&server.maildir, &rows);
        assert!(
            server.log_text().contains("auth ok alerts"),
            "{mode}: {}",
            server.log_text()
        );

        // A wrong password is refused; the error says so without the password.
        let store = Arc::new(Store::open_in_memory().unwrap());
        commit_failover(&store);
        let done = outbox::deliver_due(
            &StoreHandle::shared(store.clone()),
            &tls_mailer(&url, &server.ca_pem, "pw-wrong-secret"),
            Timestamp::now(),
            100,
        )
        .await
        .unwrap();
        let err = done[0].result.as_ref().unwrap_err();
        assert!(err.contains("535"), "{mode}: {err}\n{}", server.log_text());
        assert!(!err.contains("pw-wrong-secret"), "{mode}: {err}");
        assert_eq!(server.messages().len(), 2, "{mode}: nothing more arrived");
    }
}

#[test]
fn email_test_authenticates_over_starttls_with_the_password_from_env_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = smtp::TlsSmtpServer::start(dir.path(), "starttls", "alerts", "pw-from-outside");
    let url = format!("smtp://alerts@127.0.0.1:{}?tls=starttls", server.port);
    let config = write_email_config(dir.path(), &url);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("tls_ca_file = \"{}\"\n", server.ca_pem.display()));
    std::fs::write(&config, &text).unwrap();

    let (code, out, err) = email_test_cli(&config, "ops@example.com", Some("pw-from-outside"));
    assert_eq!(code, 0, "{out}{err}\n{}", server.log_text());
    assert_eq!(out.trim(), "250 OK");

    // The same from password_file, with the environment variable unset.
    std::fs::write(dir.path().join("smtp-password"), "pw-from-outside\n").unwrap();
    text.push_str("password_file = \"smtp-password\"\n");
    std::fs::write(&config, &text).unwrap();
    let (code, out, err) = email_test_cli(&config, "ops@example.com", None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(server.messages().len(), 2);
    assert_eq!(server.log_text().matches("auth ok alerts").count(), 2);

    // Without the CA, the relay's certificate is not trusted: a clear TLS error, exit 1.
    let config = write_email_config(&dir.path().join("untrusted"), &url);
    let (code, _, err) = email_test_cli(&config, "ops@example.com", Some("pw-from-outside"));
    assert_eq!(code, 1);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(!err.contains("pw-from-outside"), "{err}");
}

/// A peer that accepts SMTP connections and then goes silent at `stage`: "banner" (never
/// greets) or "mail" (greets, answers EHLO, then never answers MAIL FROM).
async fn silent_peer(stage: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if stage == "mail" {
                    let _ = s.write_all(b"220 slow.example ESMTP\r\n").await;
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await; // EHLO
                    let _ = s.write_all(b"250 slow.example\r\n").await;
                }
                // Hold the connection open, saying nothing more.
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    port
}

#[tokio::test]
async fn connect_and_command_timeouts_bound_a_relay_that_goes_silent() {
    for (stage, want) in [
        (
            "banner",
            "no ready SMTP session within the connect timeout (1s)",
        ),
        (
            "mail",
            "no reply within the command timeout (1s per command)",
        ),
    ] {
        let port = silent_peer(stage).await;
        let mut cfg = EmailConfig::new(
            "Support Status <status@example.com>",
            EmailTransport::Smtp {
                url: format!("smtp://127.0.0.1:{port}"),
            },
        );
        cfg.connect_timeout = Duration::from_secs(1);
        cfg.command_timeout = Duration::from_secs(1);
        let mailer = Mailer::with_password(&cfg, None).unwrap();
        let store = Arc::new(Store::open_in_memory().unwrap());
        commit_failover(&store);
        // Generous bound: without the timeouts this would wait forever.
        let done = tokio::time::timeout(
            Duration::from_secs(20),
            outbox::deliver_due(
                &StoreHandle::shared(store.clone()),
                &mailer,
                Timestamp::now(),
                1,
            ),
        )
        .await
        .expect("the send gives up on its own")
        .unwrap();
        let err = done[0].result.as_ref().unwrap_err();
        assert!(err.ends_with(want), "{stage}: {err}");
    }
}
