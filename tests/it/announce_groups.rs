//! Grouped and delayed announcements through the real daemon and a real aiosmtpd: a short blip of three services on one host reaches no customer and on-call once; an outage reaches customers once and its recovery once; Message-IDs differ between databases and survive a restart.
//!
//! Every count is taken once the daemon says nothing more is waiting
//! (`switchboard_announcements_waiting` at 0 and an empty outbox), never after a sleep.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::daemon;
use crate::support::smtp;

use daemon::{get, metric, wait_until, write_config, Daemon, Target};
use smtp::{parse_mail, require_aiosmtpd, ParsedMail, SmtpServer};

/// Generous: these are behaviour tests, never speed tests.
const LIMIT: Duration = Duration::from_secs(90);

const SERVICES: [(&str, &str); 3] = [
    ("ticket-submission", "Ticket submission"),
    ("support-portal", "Support portal"),
    ("scheduling", "Scheduling"),
];

/// The audiences `daemon::write_main_config` writes.
const ONCALL: &str = "support-oncall@example.com";
const CUSTOMERS: &str = "support-announce@example.com";

/// Three services whose primary checks all sit on `target`'s `/form` (one host, as in the
/// issue), each with its own route to `/backup`, fast probes and a 1 s recovery hold.
/// `email` is the rest of the `[email]` table. Returns (main file, API port).
fn write_three_services(dir: &Path, target: &Target, email: &str) -> (PathBuf, u16) {
    let (main, port) = daemon::write_main_config(dir, "var/switchboard.db", email);
    for (id, name) in SERVICES {
        let service = daemon::ServiceFile {
            id,
            name,
            recovery_hold: "1s",
            primary: &format!("{id}-primary"),
            backup: &format!("{id}-backup"),
            route: &format!("{id}-route"),
        };
        service.write(dir, target);
    }
    (main, port)
}

fn all_on(d: &Daemon, target: &Target, path: &str) -> bool {
    SERVICES
        .iter()
        .all(|(id, _)| d.location(&format!("{id}-route")) == target.url(path))
}

/// Status page components by name, from the Statuspage-shaped summary.
fn components(d: &Daemon) -> BTreeMap<String, String> {
    let r = get(&d.url("/api/v2/summary.json")).expect("summary.json");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    v["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until nothing waits for a group and the outbox is empty: every decision about
/// every change has been taken and carried out.
fn settled(d: &Daemon) {
    wait_until("no announcement waiting or pending", LIMIT, || {
        metric(
            d,
            r#"switchboard_announcements_waiting{audience="customers"}"#,
        ) == Some(0.0)
            && metric(d, r#"switchboard_announcements_waiting{audience="oncall"}"#) == Some(0.0)
            && metric(d, "switchboard_outbox_backlog ") == Some(0.0)
    });
}

/// Every stored message, parsed, by envelope recipient.
fn mail_by_recipient(smtp: &SmtpServer) -> BTreeMap<String, Vec<ParsedMail>> {
    let mut by: BTreeMap<String, Vec<ParsedMail>> = BTreeMap::new();
    for path in smtp.messages() {
        let m = parse_mail(&path);
        let to = m
            .header("X-RcptTo")
            .expect("envelope recipients")
            .to_owned();
        // One recipient per message here (each audience has one address).
        by.entry(to).or_default().push(m);
    }
    by
}

fn count(by: &BTreeMap<String, Vec<ParsedMail>>, recipient: &str) -> usize {
    by.get(recipient).map_or(0, Vec::len)
}

fn text(m: &ParsedMail) -> &str {
    m.part("text/plain").expect("a text part")
}

/// Waits until the three services are probed healthy on their primaries.
fn all_operational(d: &Daemon, target: &Target) {
    wait_until("all three services operational", LIMIT, || {
        all_on(d, target, "/form")
            && components(d).values().all(|s| s == "operational")
            && components(d).len() == 3
    });
}

#[test]
fn a_nine_second_blip_of_three_services_on_one_host_reaches_no_customer_and_oncall_once() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start(&dir.path().join("maildir"));
    let target = Target::start();
    // Windows long enough to hold the whole blip (9 s, then 2 good probes and a 1 s hold).
    let (config, port) = write_three_services(
        dir.path(),
        &target,
        &format!(
            "transport = \"smtp\"\nsmtp_url = \"{}\"\ngroup_window = \"25s\"\ncustomer_delay = \"25s\"",
            smtp.url()
        ),
    );
    let d = Daemon::start(&config, port);
    all_operational(&d, &target);

    // The host stops answering for 9 s.
    target.set_down(true);
    let blip = Instant::now();
    // Routes switch at once, and the status page shows it at once.
    wait_until("all three routes on the backup", LIMIT, || {
        all_on(&d, &target, "/backup")
    });
    assert!(
        components(&d).values().all(|s| s == "partial_outage"),
        "{:?}",
        components(&d)
    );
    assert!(
        smtp.messages().is_empty(),
        "nothing is mailed the moment routes switch"
    );
    thread::sleep(Duration::from_secs(9).saturating_sub(blip.elapsed()));
    target.set_down(false);
    wait_until("all three routes back on the primary", LIMIT, || {
        all_on(&d, &target, "/form")
    });

    // Customers' parts are decided once their delay has run: all six undone.
    wait_until("customer announcements suppressed as undone", LIMIT, || {
        metric(
            &d,
            r#"switchboard_announcements_suppressed_total{audience="customers",reason="undone"}"#,
        ) == Some(6.0)
    });
    settled(&d);
    let by = mail_by_recipient(&smtp);
    let (customers, oncall) = (count(&by, CUSTOMERS), count(&by, ONCALL));
    println!("blip: {customers} customer e-mails, {oncall} on-call e-mails");
    assert_eq!(customers, 0, "customers hear nothing of a blip");
    assert_eq!(oncall, 1, "on-call gets one grouped record");
    let m = &by[ONCALL][0];
    let subject = m.header("Subject").expect("subject");
    for (_, name) in SERVICES {
        assert!(subject.contains(name), "{subject}");
        // Each service's failover and failback are in the record.
        assert!(
            text(m).contains(&format!("== {name}: switched to backup")),
            "{}",
            text(m)
        );
        assert!(
            text(m).contains(&format!("== {name}: back on primary")),
            "{}",
            text(m)
        );
    }
    assert_eq!(
        metric(
            &d,
            r#"switchboard_announcements_total{audience="oncall",channel="email",kind="grouped",result="success"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn an_outage_of_three_services_reaches_customers_once_and_its_recovery_once() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start(&dir.path().join("maildir"));
    let target = Target::start();
    let (config, port) = write_three_services(
        dir.path(),
        &target,
        &format!(
            "transport = \"smtp\"\nsmtp_url = \"{}\"\ngroup_window = \"5s\"\ncustomer_delay = \"3s\"",
            smtp.url()
        ),
    );
    let d = Daemon::start(&config, port);
    all_operational(&d, &target);

    target.set_down(true);
    wait_until("all three routes on the backup", LIMIT, || {
        all_on(&d, &target, "/backup")
    });
    // The outage lasts: customers hear of it once, all three services in one message.
    wait_until("the customers' e-mail", LIMIT, || {
        count(&mail_by_recipient(&smtp), CUSTOMERS) == 1
    });
    target.set_down(false);
    wait_until("all three routes back on the primary", LIMIT, || {
        all_on(&d, &target, "/form")
    });
    wait_until("the customers' recovery e-mail", LIMIT, || {
        count(&mail_by_recipient(&smtp), CUSTOMERS) >= 2
    });
    settled(&d);

    let by = mail_by_recipient(&smtp);
    println!(
        "outage: {} customer e-mails, {} on-call e-mails",
        count(&by, CUSTOMERS),
        count(&by, ONCALL)
    );
    assert_eq!(
        count(&by, CUSTOMERS),
        2,
        "one for the outage, one for the recovery"
    );
    let mut mails: Vec<&ParsedMail> = by[CUSTOMERS].iter().collect();
    mails.sort_by_key(|m| text(m).contains("switched to backup"));
    let (recovery, outage) = (mails[0], mails[1]);
    for (_, name) in SERVICES {
        assert!(
            outage.header("Subject").unwrap_or("").contains(name),
            "{:?}",
            outage.header("Subject")
        );
        assert!(text(outage).contains(&format!("== {name}: switched to backup")));
        assert!(
            recovery.header("Subject").unwrap_or("").contains(name),
            "{:?}",
            recovery.header("Subject")
        );
        assert!(text(recovery).contains(&format!("== {name}: back on primary")));
    }
    // Customers never see on-call's evidence, grouped or not.
    assert!(!text(outage).contains("For on-call"), "{}", text(outage));
    assert_eq!(
        metric(
            &d,
            r#"switchboard_announcements_suppressed_total{audience="customers",reason="undone"}"#
        ),
        Some(0.0)
    );
}

/// The Message-IDs of the mail in `smtp`, in file order.
fn message_ids(smtp: &SmtpServer) -> Vec<String> {
    smtp.messages()
        .iter()
        .map(|p| {
            parse_mail(p)
                .header("Message-ID")
                .expect("Message-ID")
                .to_owned()
        })
        .collect()
}

/// A fresh database behind the usual single-service config; fails over and returns the
/// Message-IDs of the failover's two e-mails, sorted.
fn first_failover_ids(dir: &Path) -> Vec<String> {
    let smtp = SmtpServer::start(&dir.join("maildir"));
    let target = Target::start();
    let (config, port) = write_config(
        dir,
        &target,
        &format!("transport = \"smtp\"\nsmtp_url = \"{}\"", smtp.url()),
    );
    let d = Daemon::start(&config, port);
    wait_until("primary in use", LIMIT, || {
        d.location("submit-ticket") == target.url("/form")
    });
    target.set_down(true);
    wait_until("the failover's two e-mails", LIMIT, || {
        smtp.messages().len() == 2
    });
    let mut ids = message_ids(&smtp);
    ids.sort();
    ids
}

#[test]
fn two_fresh_databases_give_the_same_first_transition_different_message_ids() {
    require_aiosmtpd();
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let (ids_a, ids_b) = (first_failover_ids(a.path()), first_failover_ids(b.path()));
    println!("first database: {ids_a:?}\nsecond database: {ids_b:?}");
    for ids in [&ids_a, &ids_b] {
        // Both describe transition 1, under the domain of `[email] from`.
        assert!(ids.iter().all(|id| id.starts_with("<t1.")), "{ids:?}");
        assert!(
            ids.iter().all(|id| id.ends_with("@example.com>")),
            "{ids:?}"
        );
    }
    for id in &ids_a {
        assert!(!ids_b.contains(id), "{id} repeats in another database");
    }
}

#[test]
fn a_grouped_message_keeps_its_message_id_through_retries_and_a_sigkill() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp_port = crate::support::free_port();
    let target = Target::start();
    // The relay is down at first: the composed groups fail and are retried.
    let (config, port) = write_three_services(
        dir.path(),
        &target,
        &format!(
            "transport = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{smtp_port}\"\nconnect_timeout = \"2s\"\ngroup_window = \"5s\"\ncustomer_delay = \"0s\""
        ),
    );
    let db = dir.path().join("var/switchboard.db");
    // (message_id, attempts) of every outbox row.
    let outbox = || -> Vec<(String, i64)> {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open read-only");
        let mut stmt = conn
            .prepare("SELECT message_id, attempts FROM outbox WHERE kind = 'grouped' ORDER BY id")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    };
    let mut d = Daemon::start(&config, port);
    all_operational(&d, &target);
    target.set_down(true);
    wait_until("both audiences' groups composed and retried", LIMIT, || {
        let rows = outbox();
        rows.len() == 2 && rows.iter().all(|(_, attempts)| *attempts >= 2)
    });
    let before: Vec<String> = outbox().into_iter().map(|(id, _)| id).collect();
    assert!(before.iter().all(|id| id.starts_with("<g")), "{before:?}");
    d.kill9();

    let smtp = SmtpServer::start_on(smtp_port, &dir.path().join("maildir"));
    let d = Daemon::start(&config, port);
    wait_until("the two grouped e-mails delivered", LIMIT, || {
        smtp.messages().len() >= 2
    });
    settled(&d);
    let mut got = message_ids(&smtp);
    got.sort();
    let mut want = before.clone();
    want.sort();
    println!("before the kill: {want:?}\ndelivered after it: {got:?}");
    assert_eq!(got, want, "the same ids, each once");
}
