//! Announcements through the real daemon when the mail relay is down: every message arrives
//! exactly once after it returns, and a give-up age turns into `given_up` rows and metrics.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::control;
use crate::support::daemon;
use crate::support::smtp;

use daemon::{metric, wait_until, write_config, Daemon, Target};
use smtp::{parse_mail, require_aiosmtpd, SmtpServer};

fn fail_over(target: &Target, d: &Daemon) {
    wait_until("primary probed healthy", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/form") && d.metrics().contains("probe_success")
    });
    target.set_down(true);
    wait_until("route switched to backup", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/backup")
    });
}

#[test]
fn mail_for_a_failover_while_smtp_is_down_arrives_exactly_once_when_it_returns() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = crate::support::free_port();
    let target = Target::start();
    let (config, port) = write_config(
        dir.path(),
        &target,
        &format!("transport = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{smtp_port}\"\nconnect_timeout = \"2s\""),
    );
    let d = Daemon::start(&config, port);
    // Exported before any message, so alerts can watch them from the start.
    wait_until("zero series exported", Duration::from_secs(10), || {
        metric(&d, r#"switchboard_outbox_given_up_total{channel="email"}"#) == Some(0.0)
    });
    fail_over(&target, &d);

    // The relay is down: the messages wait in the outbox, failing and retrying.
    wait_until("failed attempts counted", Duration::from_secs(30), || {
        metric(
            &d,
            r#"switchboard_announcements_total{audience="oncall",channel="email",kind="failover",result="failure"}"#,
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    assert_eq!(metric(&d, "switchboard_outbox_backlog "), Some(2.0));
    assert!(metric(&d, "switchboard_outbox_oldest_age_seconds ").unwrap_or(0.0) > 0.0);

    // It comes back on the same port; the outbox delivers on its next retry.
    let server = SmtpServer::start_on(smtp_port, &dir.path().join("maildir"));
    wait_until("both messages delivered", Duration::from_secs(60), || {
        server.messages().len() >= 2
    });
    // Several more retry periods: nothing is sent twice.
    std::thread::sleep(Duration::from_secs(3));
    let msgs: Vec<_> = server.messages().iter().map(|p| parse_mail(p)).collect();
    assert_eq!(msgs.len(), 2, "exactly one per audience");
    let ids: BTreeSet<&str> = msgs.iter().filter_map(|m| m.header("Message-ID")).collect();
    assert_eq!(ids.len(), 2);
    let to: BTreeSet<&str> = msgs.iter().filter_map(|m| m.header("To")).collect();
    assert_eq!(
        to,
        ["support-announce@example.com", "support-oncall@example.com"].into()
    );
    for m in &msgs {
        assert_eq!(m.content_type, "multipart/alternative");
        assert!(m
            .part("text/plain")
            .unwrap()
            .contains(&target.url("/backup")));
        assert!(m
            .part("text/html")
            .unwrap()
            .contains(&target.url("/backup")));
    }
    wait_until("backlog drained", Duration::from_secs(10), || {
        metric(&d, "switchboard_outbox_backlog ") == Some(0.0)
    });
    assert_eq!(
        metric(
            &d,
            r#"switchboard_announcements_total{audience="customers",channel="email",kind="failover",result="success"}"#
        ),
        Some(1.0)
    );
    let last = metric(
        &d,
        r#"switchboard_announcement_last_success_timestamp_seconds{channel="email"}"#,
    )
    .unwrap_or(0.0);
    assert!(last > 1_700_000_000.0, "last success time set: {last}");
}

#[test]
fn messages_still_failing_at_the_give_up_age_are_given_up_counted_and_not_sent_later() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = crate::support::free_port();
    let target = Target::start();
    let (config, port) = write_config(
        dir.path(),
        &target,
        &format!(
            "transport = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{smtp_port}\"\ngive_up_after = \"3s\""
        ),
    );
    let log = dir.path().join("daemon.log");
    let d = Daemon::start_with(&config, port, &[], Some(&log));
    fail_over(&target, &d);
    wait_until("both messages given up", Duration::from_secs(30), || {
        metric(&d, r#"switchboard_outbox_given_up_total{channel="email"}"#) == Some(2.0)
    });
    assert_eq!(
        metric(
            &d,
            r#"switchboard_announcements_total{audience="oncall",channel="email",kind="failover",result="given_up"}"#
        ),
        Some(1.0)
    );
    assert_eq!(metric(&d, "switchboard_outbox_backlog "), Some(0.0));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains("GIVEN UP"),
        "a loud log line:\n{log_text}"
    );

    // The relay returning later does not resurrect them.
    let server = SmtpServer::start_on(smtp_port, &dir.path().join("maildir"));
    std::thread::sleep(Duration::from_secs(4));
    assert!(server.messages().is_empty());
    // They are kept, with their error, for the record.
    let db = rusqlite_rows(&dir.path().join("var/switchboard.db"));
    assert_eq!(db, vec!["given_up".to_string(), "given_up".to_string()]);
}

fn rusqlite_rows(path: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print('\\n'.join(r[0] for r in c.execute('SELECT status FROM outbox WHERE last_error IS NOT NULL ORDER BY id')))",
        ])
        .arg(path)
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_flapping_service_sends_oncall_one_flapping_alert() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(&dir.path().join("maildir"));
    let target = Target::start();
    let (config, port) = write_config(
        dir.path(),
        &target,
        &format!("transport = \"smtp\"\nsmtp_url = \"{}\"", server.url()),
    );
    // One automatic failover per hour is the limit: the first failback is already held.
    let svc = dir.path().join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&svc).unwrap();
    std::fs::write(
        &svc,
        text.replace(
            "recovery_hold = \"2s\"",
            "recovery_hold = \"2s\"\nmax_failovers = 1\nflap_window = \"1h\"",
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, port);
    fail_over(&target, &d);
    target.set_down(false);
    let subjects = || -> Vec<String> {
        server
            .messages()
            .iter()
            .map(|p| parse_mail(p).header("Subject").unwrap_or("").to_owned())
            .collect()
    };
    wait_until("the flapping alert", Duration::from_secs(40), || {
        subjects().iter().any(|s| s.contains("flapping"))
    });
    std::thread::sleep(Duration::from_secs(1));
    let flapping: Vec<_> = server
        .messages()
        .iter()
        .map(|p| parse_mail(p))
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains("flapping")))
        .collect();
    assert_eq!(flapping.len(), 1, "{:?}", subjects());
    let m = &flapping[0];
    assert_eq!(
        m.header("Subject"),
        Some(
            format!(
                "[Switchboard] Ticket submission: flapping, holding the backup — use {}",
                target.url("/backup")
            )
            .as_str()
        )
    );
    assert_eq!(m.header("To"), Some("support-oncall@example.com"));
    let text = m.part("text/plain").unwrap();
    assert!(
        text.contains("Reason: 1 automatic failover within 1h; holding the backup"),
        "{text}"
    );
    // Still on the backup.
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));
}

#[test]
fn flap_damping_never_holds_customers_on_a_broken_primary_after_a_manual_failback() {
    // Issue 11, as reproduced: max_failovers = 2, two automatic failovers, a manual failback,
    // then a new primary outage used to give "failover held back: flapping" with /go on the
    // broken form and nothing announced. Damping now only delays failback.
    require_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(&dir.path().join("maildir"));
    let target = Target::start();
    let (config, port) = write_config(
        dir.path(),
        &target,
        &format!("transport = \"smtp\"\nsmtp_url = \"{}\"", server.url()),
    );
    let tokens = control::add_tokens(&config);
    let svc = dir.path().join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&svc).unwrap();
    std::fs::write(
        &svc,
        text.replace(
            "recovery_hold = \"2s\"",
            "recovery_hold = \"2s\"\nmax_failovers = 2\nflap_window = \"1h\"",
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, port);
    let (primary, backup) = (target.url("/form"), target.url("/backup"));
    let service = || control::service(&d, &tokens.viewer, "ticket-submission");

    // Two automatic failovers; the first failback is automatic, the second is held.
    fail_over(&target, &d);
    target.set_down(false);
    wait_until("automatic failback", Duration::from_secs(30), || {
        d.location("submit-ticket") == primary
    });
    target.set_down(true);
    wait_until("second failover", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });
    target.set_down(false);
    wait_until("failback held: flapping", Duration::from_secs(40), || {
        service()["holds"]["flapping"].is_object()
    });
    assert_eq!(d.location("submit-ticket"), backup);

    // An operator fails back by hand.
    let r = control::request(
        "POST",
        &d.url("/api/v1/services/ticket-submission/failback"),
        Some(&tokens.operator),
        Some(r#"{"reason":"primary fixed, verified by hand"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.location("submit-ticket"), primary);

    // The primary breaks again: customers go to the healthy backup, flapping or not.
    target.set_down(true);
    wait_until(
        "third failover, not held back",
        Duration::from_secs(30),
        || d.location("submit-ticket") == backup,
    );
    let s = service();
    assert_eq!(s["state"], "failed_over", "{s:#}");
    assert_eq!(s["flapping"], true, "{s:#}");
    let until = s["holds"]["flapping"]["until"]
        .as_str()
        .unwrap_or_else(|| panic!("the hold's end: {s:#}"))
        .to_string();
    assert!(
        s["holds"]["in_force"].as_array().is_some_and(|h| h
            .iter()
            .any(|h| h["hold"] == "flapping" && h["until"] == until.as_str())),
        "{s:#}"
    );
    assert_eq!(daemon::component_status(&d), "partial_outage");

    // `switchboard status` shows the hold and its end.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("status")
        .env("SWITCHBOARD_URL", &d.base)
        .env("SWITCHBOARD_TOKEN", &tokens.viewer)
        .output()
        .expect("switchboard status");
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{status}");
    assert!(
        status.contains(&format!("flapping until {until}")),
        "{status}"
    );
    // And a metric, with the end as a timestamp.
    assert_eq!(
        metric(
            &d,
            r#"switchboard_service_hold{hold="flapping",service="ticket-submission"}"#
        ),
        Some(1.0)
    );
    let end = metric(
        &d,
        r#"switchboard_service_hold_until_timestamp_seconds{hold="flapping",service="ticket-submission"}"#,
    )
    .unwrap_or(0.0);
    assert!(end > 1_700_000_000.0, "{end}");

    // On-call heard of all three failovers; the third names the hold and until when.
    let failovers = || -> Vec<smtp::ParsedMail> {
        server
            .messages()
            .iter()
            .map(|p| parse_mail(p))
            .filter(|m| {
                m.header("To") == Some("support-oncall@example.com")
                    && m.header("Subject")
                        .is_some_and(|s| s.contains("switched to backup"))
            })
            .collect()
    };
    wait_until(
        "three failover e-mails to on-call",
        Duration::from_secs(30),
        || failovers().len() >= 3,
    );
    let held: Vec<String> = failovers()
        .iter()
        .filter_map(|m| m.part("text/plain").map(str::to_owned))
        .filter(|t| t.contains("Hold: flapping"))
        .collect();
    println!(
        "on-call failover e-mails: {}, naming the flapping hold: {}",
        failovers().len(),
        held.len()
    );
    assert_eq!(
        held.len(),
        1,
        "only the third failover happened under the hold"
    );
    assert!(
        held[0].contains(&format!(
            "Hold: flapping: automatic failback held: 3 automatic failovers within 1h until {until}"
        )),
        "{}",
        held[0]
    );
    // Customers were told of the third failover too.
    wait_until(
        "customers told three times",
        Duration::from_secs(30),
        || {
            server
                .messages()
                .iter()
                .map(|p| parse_mail(p))
                .filter(|m| {
                    m.header("To") == Some("support-announce@example.com")
                        && m.header("Subject")
                            .is_some_and(|s| s.contains("switched to backup"))
                })
                .count()
                >= 3
        },
    );
}
