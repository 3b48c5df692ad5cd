//! A restart restores everything alerts depend on: after a drill, a failover and its
//! undeliverable announcements, every `switchboard_*` series derived from stored facts reads
//! the same after a clean restart (SIGTERM) and after a kill -9 as before it.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::support::control;
use crate::support::daemon;
use crate::support::smtp;

use control::{json, request, wait_drill};
use daemon::{get, wait_until, write_config, Daemon, Target};
use smtp::{require_aiosmtpd, SmtpServer};

/// Families rebuilt from the store at start, compared value for value.
const STORED: [&str; 18] = [
    "switchboard_service_state",
    "switchboard_service_state_since_timestamp_seconds",
    "switchboard_service_flapping",
    "switchboard_route_active_target",
    "switchboard_transitions_total",
    "switchboard_drills_total",
    "switchboard_drill_last_timestamp_seconds",
    "switchboard_drill_last_success",
    "switchboard_reviews_pending",
    "switchboard_incidents_open",
    "switchboard_outbox_backlog",
    "switchboard_outbox_given_up_total",
    "switchboard_announcements_total",
    "switchboard_announcement_last_success_timestamp_seconds",
    "switchboard_audit_records_total",
    "switchboard_service_hold",
    "switchboard_service_hold_until_timestamp_seconds",
    "switchboard_announcements_suppressed_total",
];
/// Ages of stored facts: they only grow across a restart.
const AGES: [&str; 2] = [
    "switchboard_review_oldest_pending_age_seconds",
    "switchboard_outbox_oldest_age_seconds",
];

/// Every sample of the families in `names`: series (name and labels) -> value.
fn scrape(d: &Daemon, names: &[&str]) -> BTreeMap<String, f64> {
    let body = get(&d.url("/metrics")).expect("metrics").body;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let family = series.split('{').next().unwrap_or(series);
            names.contains(&family)
        })
        .map(|(series, v)| (series.to_string(), v.parse().expect("a number")))
        .collect()
}

fn compare(what: &str, before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    println!("--- {what}: {} stored-fact series", before.len());
    let mut differ = Vec::new();
    for (series, b) in before {
        let a = after.get(series);
        println!(
            "{series} {b} -> {}",
            a.map_or("absent".into(), |a| a.to_string())
        );
        if a != Some(b) {
            differ.push(series.clone());
        }
    }
    for series in after.keys().filter(|s| !before.contains_key(*s)) {
        println!("{series} absent -> {}", after[series]);
        differ.push(series.clone());
    }
    assert!(differ.is_empty(), "{what}: changed series {differ:?}");
}

fn restart(d: &mut Daemon, config: &std::path::Path, port: u16, kill9: bool) -> Daemon {
    if kill9 {
        d.kill9();
    } else {
        let pid = d.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "SIGTERM sent");
        let exit = d.child.wait().expect("daemon exits");
        assert!(exit.success(), "a clean shutdown: {exit:?}");
    }
    Daemon::start(config, port)
}

#[test]
fn stored_fact_series_read_the_same_after_sigterm_and_after_kill_9() {
    require_aiosmtpd();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let smtp_port = crate::support::free_port();
    let (main, port) = write_config(
        dir.path(),
        &target,
        &format!("transport = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{smtp_port}\"\nconnect_timeout = \"1s\"\ngive_up_after = \"3s\""),
    );
    let tokens = control::add_tokens(&main);
    let mut d = Daemon::start(&main, port);
    wait_until("checks healthy", Duration::from_secs(30), || {
        control::all_healthy(&d, &tokens.viewer, "ticket-submission")
    });

    // A drill while the relay takes mail: its e-mail is delivered.
    let relay = SmtpServer::start_on(smtp_port, &dir.path().join("maildir"));
    let r = request(
        "POST",
        &d.url("/api/v1/drills"),
        Some(&tokens.operator),
        Some(
            r#"{"service":"ticket-submission","mode":"dry_run","duration":"2s","reason":"restart test drill"}"#,
        ),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let id = json(&r)["id"].as_str().expect("drill id").to_string();
    let report = wait_drill(&d, &tokens.operator, &id);
    println!("drill {id}: {}", report["status"]);
    drop(relay);

    // A real failover while the relay is gone: its e-mails fail and are given up.
    target.set_down(true);
    wait_until("failed over", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/backup")
    });
    let mut outbox = BTreeMap::new();
    let since = std::time::Instant::now();
    while !(outbox.get(r#"switchboard_outbox_given_up_total{channel="email"}"#) >= Some(&2.0)
        && outbox.get("switchboard_outbox_backlog") == Some(&0.0))
    {
        assert!(
            since.elapsed() < Duration::from_secs(90),
            "failover e-mails not given up: {outbox:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
        let families = [
            "switchboard_outbox_given_up_total",
            "switchboard_outbox_backlog",
        ];
        outbox = scrape(&d, &families);
    }

    let before = scrape(&d, &STORED);
    let ages = scrape(&d, &AGES);
    // What the alerts read is really there, not zeros compared with zeros.
    for (series, at_least) in [
        (
            r#"switchboard_drill_last_timestamp_seconds{service="ticket-submission"}"#,
            1.0,
        ),
        (
            r#"switchboard_service_state{service="ticket-submission",state="failed_over"}"#,
            1.0,
        ),
        ("switchboard_reviews_pending", 1.0),
        ("switchboard_incidents_open", 1.0),
        (r#"switchboard_outbox_given_up_total{channel="email"}"#, 2.0),
        (
            r#"switchboard_announcement_last_success_timestamp_seconds{channel="email"}"#,
            1.0,
        ),
    ] {
        let v = before.get(series).copied().unwrap_or(0.0);
        assert!(v >= at_least, "{series} is {v} before the restart");
    }
    assert!(
        before
            .iter()
            .any(|(s, v)| s.starts_with("switchboard_drills_total{") && *v == 1.0),
        "the drill is counted"
    );

    for (what, kill9) in [("SIGTERM", false), ("kill -9", true)] {
        d = restart(&mut d, &main, port, kill9);
        let after = scrape(&d, &STORED);
        compare(&format!("after {what}"), &before, &after);
        let aged = scrape(&d, &AGES);
        for (series, b) in &ages {
            let a = aged.get(series).copied().unwrap_or(0.0);
            println!("{series} {b} -> {a}");
            assert!(a >= *b, "{series} went back from {b} to {a} after {what}");
        }
    }
}
