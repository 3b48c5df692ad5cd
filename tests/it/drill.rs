//! Drills with the real binary: a live drill over real SMTP (aiosmtpd) and a real webhook receiver with every step of its report checked, a dry run and an abort, the refusals, and a drill whose deadline outlives a SIGKILL.

use std::time::Duration;

use crate::support::http::Receiver;
use crate::support::{control, daemon, smtp};

use control::{all_healthy, assert_error, audit, json, request, step, wait_drill};
use daemon::{component_status, metric, wait_until, Daemon, Target};
use smtp::{parse_mail, SmtpServer};

const SERVICE: &str = "ticket-submission";

fn start_drill(d: &Daemon, token: &str, mode: &str, duration: &str) -> daemon::Response {
    request(
        "POST",
        &d.url("/api/v1/drills"),
        Some(token),
        Some(&format!(
            r#"{{"service":"{SERVICE}","mode":"{mode}","duration":"{duration}","reason":"quarterly failover drill","ticket":"OPS-1234"}}"#
        )),
    )
}

#[test]
fn a_live_drill_switches_verifies_announces_and_reverts_with_every_step_timed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start(&dir.path().join("maildir"));
    let target = Target::start();
    let hooks = Receiver::start(0);
    let hook = &hooks.url;
    let email = format!("transport = \"smtp\"\nsmtp_url = \"{}\"", smtp.url());
    let (main, port, t) = control::prepare(dir.path(), &target, Some(&email));
    let svc = dir.path().join("probes/ticket-submission.toml");
    let mut text = std::fs::read_to_string(&svc).expect("service file");
    text = text.replacen(
        "recovery_hold",
        "drill_targets = { switch = \"5s\", notify = \"30s\" }\nrecovery_hold",
        1,
    );
    text.push_str(&format!(
        "\n[[on_switch]]\nid = \"banner\"\nurl = \"{hook}\"\n"
    ));
    std::fs::write(&svc, text).expect("write service");
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    let (primary, backup) = (target.url("/form"), target.url("/backup"));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, SERVICE)
    });
    // Exported before any drill, at zero.
    assert_eq!(
        metric(
            &d,
            "switchboard_drills_total{result=\"pass\",service=\"ticket-submission\"}"
        ),
        Some(0.0)
    );

    let r = start_drill(&d, &t.operator, "live", "4s");
    assert_eq!(r.status, 201, "{r:?}");
    let started = json(&r);
    let id = started["id"].as_str().expect("drill id").to_string();
    assert_eq!(started["status"], "running");
    assert_eq!(started["mode"], "live");
    assert_eq!(started["ticket"], "OPS-1234");
    assert_eq!(step(&started, "decision")["status"], "pass");
    assert_eq!(step(&started, "routes_switched")["status"], "pass");

    // Customers really go to the backup during a live drill; the service shows the hold.
    assert_eq!(d.location("submit-ticket"), backup);
    let s = control::service(&d, &t.viewer, SERVICE);
    assert_eq!(s["state"], "drill");
    assert_eq!(s["holds"]["drill"]["id"], id.as_str());
    // One drill per service at a time.
    let again = start_drill(&d, &t.operator, "dry_run", "1m");
    assert_error(&again, 409, "already running");

    let report = wait_drill(&d, &t.operator, &id);
    assert_eq!(report["status"], "pass", "{report:#}");
    for name in [
        "decision",
        "routes_switched",
        "backup_verified",
        "email_accepted",
        "status_page_updated",
        "webhooks_acknowledged",
        "reverted",
    ] {
        let s = step(&report, name);
        assert_eq!(s["status"], "pass", "{name}: {report:#}");
        assert!(s["duration_seconds"].as_f64().is_some(), "{name} timed");
        assert!(
            s["target_seconds"].as_f64().is_some(),
            "{name} has a target"
        );
        assert!(s["at"].is_string(), "{name} has a time");
    }
    assert_eq!(step(&report, "decision")["target_seconds"], 5.0);
    assert_eq!(step(&report, "email_accepted")["target_seconds"], 30.0);
    // The e-mail step quotes the SMTP server's acceptance, not an assumption.
    let email_detail = step(&report, "email_accepted")["detail"]
        .as_str()
        .unwrap_or("");
    assert!(email_detail.contains("250"), "{email_detail}");
    assert!(
        email_detail.contains("support-ops@example.com"),
        "{email_detail}"
    );
    assert!(step(&report, "backup_verified")["detail"]
        .as_str()
        .is_some_and(|d| d.contains("backup-form: ok")));
    assert!(report["ended_at"].is_string());

    // Reverted: customers are back on the primary.
    assert_eq!(d.location("submit-ticket"), primary);
    assert_eq!(component_status(&d), "operational");
    // Only the drill audience heard of it (start and end).
    wait_until("drill e-mails arrived", Duration::from_secs(30), || {
        smtp.messages().len() >= 2
    });
    for m in smtp.messages().iter().map(|p| parse_mail(p)) {
        assert_eq!(m.header("To"), Some("support-ops@example.com"), "{m:#?}");
    }
    // The webhook followed the switch and the switch back.
    wait_until("webhook calls", Duration::from_secs(30), || {
        hooks.requests().len() >= 2
    });

    // Listed, counted, audited.
    let r = request("GET", &d.url("/api/v1/drills"), Some(&t.operator), None);
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["drills"][0]["id"], id.as_str());
    assert_eq!(
        metric(
            &d,
            "switchboard_drills_total{result=\"pass\",service=\"ticket-submission\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &d,
            "switchboard_drill_last_success{service=\"ticket-submission\"}"
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &d,
            "switchboard_drill_last_timestamp_seconds{service=\"ticket-submission\"}"
        ) > Some(1.7e9)
    );
    let records = audit(&d, &t.viewer, "?limit=1000");
    let rep = records
        .iter()
        .find(|r| r["detail"]["command"] == "drill_report")
        .expect("drill report audited");
    assert_eq!(rep["detail"]["drill"], id.as_str());
    assert_eq!(rep["detail"]["result"], "pass");
    assert_eq!(rep["actor"], "olga");
    // The drill's own transitions are not waiting for review.
    assert!(audit(&d, &t.viewer, "?pending_review=true").is_empty());
}

#[test]
fn a_dry_run_keeps_the_routes_and_an_abort_ends_it_and_real_failovers_refuse_drills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let primary = target.url("/form");
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, SERVICE)
    });
    let viewer = request(
        "POST",
        &d.url("/api/v1/drills"),
        Some(&t.viewer),
        Some(r#"{"service":"ticket-submission","mode":"dry_run","duration":"1m","reason":"x"}"#),
    );
    assert_error(&viewer, 403, "operator");
    let r = request(
        "POST",
        &d.url("/api/v1/drills"),
        Some(&t.operator),
        Some(r#"{"service":"nope","mode":"dry_run","duration":"1m","reason":"x"}"#),
    );
    assert_error(&r, 404, "nope");

    let r = start_drill(&d, &t.operator, "dry_run", "1h");
    assert_eq!(r.status, 201, "{r:?}");
    let id = json(&r)["id"].as_str().expect("id").to_string();
    assert_eq!(
        d.location("submit-ticket"),
        primary,
        "a dry run never switches"
    );
    // Steps appear as they happen: wait for the e-mail (file transport) to be accepted.
    wait_until("e-mail step done", Duration::from_secs(30), || {
        let r = request(
            "GET",
            &d.url(&format!("/api/v1/drills/{id}")),
            Some(&t.operator),
            None,
        );
        step(&json(&r), "email_accepted")["status"] != "pending"
    });
    let r = request(
        "POST",
        &d.url(&format!("/api/v1/drills/{id}/abort")),
        Some(&t.operator),
        Some(r#"{"reason":"seen enough"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let report = wait_drill(&d, &t.operator, &id);
    assert_eq!(report["status"], "aborted", "{report:#}");
    assert_eq!(step(&report, "routes_switched")["status"], "skipped");
    assert_eq!(step(&report, "webhooks_acknowledged")["status"], "skipped");
    assert_eq!(step(&report, "email_accepted")["status"], "pass");
    assert!(step(&report, "email_accepted")["detail"]
        .as_str()
        .is_some_and(|d| d.contains(".eml")));
    assert_eq!(step(&report, "reverted")["status"], "pass");
    assert_eq!(
        metric(
            &d,
            "switchboard_drills_total{result=\"aborted\",service=\"ticket-submission\"}"
        ),
        Some(1.0)
    );
    // Aborting again: no longer running.
    let r = request(
        "POST",
        &d.url(&format!("/api/v1/drills/{id}/abort")),
        Some(&t.operator),
        None,
    );
    assert_error(&r, 409, "no longer running");

    // While really failed over, no drill: 409 with the reason.
    target.set_down(true);
    wait_until("failed over", Duration::from_secs(30), || {
        control::service(&d, &t.viewer, SERVICE)["state"] == "failed_over"
    });
    let r = start_drill(&d, &t.operator, "live", "1m");
    assert_error(&r, 409, "really failed_over");
}

#[test]
fn a_drill_deadline_survives_a_sigkill_and_its_report_says_what_was_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    let mut d = Daemon::start(&main, port);
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, SERVICE)
    });
    // Long enough that the restart (well under a second here) lands inside the drill.
    let r = start_drill(&d, &t.operator, "live", "8s");
    assert_eq!(r.status, 201, "{r:?}");
    let id = json(&r)["id"].as_str().expect("id").to_string();
    d.kill9();
    let d = Daemon::start(&main, port);
    // Restarted inside the drill: still in it, still on the backup.
    assert_eq!(control::service(&d, &t.viewer, SERVICE)["state"], "drill");
    let report = wait_drill(&d, &t.operator, &id);
    assert_eq!(report["status"], "fail", "{report:#}");
    assert!(
        report["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["detail"]
                .as_str()
                .is_some_and(|d| d.contains("restarted")))),
        "{report:#}"
    );
    assert_eq!(step(&report, "reverted")["status"], "pass", "{report:#}");
    assert_eq!(d.location("submit-ticket"), target.url("/form"));
    assert_ne!(control::service(&d, &t.viewer, SERVICE)["state"], "drill");
}

/// (To, Subject) of every message the SMTP server accepted so far.
fn mails(smtp: &SmtpServer) -> Vec<(String, String)> {
    smtp.messages()
        .iter()
        .map(|p| parse_mail(p))
        .map(|m| {
            (
                m.header("To").unwrap_or("").to_string(),
                m.header("Subject").unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A daemon over aiosmtpd with a drill of `mode` running on healthy checks; returns what the
/// tests below need, the drill id last.
fn drilling(
    dir: &std::path::Path,
    target: &Target,
    mode: &str,
) -> (SmtpServer, Daemon, control::Tokens, String) {
    let smtp = SmtpServer::start(&dir.join("maildir"));
    let email = format!("transport = \"smtp\"\nsmtp_url = \"{}\"", smtp.url());
    let (d, _, t) = control::start(dir, target, Some(&email));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, SERVICE)
    });
    // Far beyond the test: only a real outage can end this drill in time.
    let r = start_drill(&d, &t.operator, mode, "10m");
    assert_eq!(r.status, 201, "{r:?}");
    let id = json(&r)["id"].as_str().expect("id").to_string();
    wait_until("the drill e-mail", Duration::from_secs(30), || {
        !smtp.messages().is_empty()
    });
    (smtp, d, t, id)
}

#[test]
fn a_real_outage_during_a_dry_run_drill_interrupts_it_and_is_handled_and_announced_as_real() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (smtp, d, t, id) = drilling(dir.path(), &target, "dry_run");
    assert_eq!(d.location("submit-ticket"), target.url("/form"));

    target.set_down(true);
    // The route follows the real state within the usual confirmation time (generous here).
    wait_until(
        "customers sent to the backup",
        Duration::from_secs(30),
        || d.location("submit-ticket") == target.url("/backup"),
    );
    let s = control::service(&d, &t.viewer, SERVICE);
    assert_eq!(s["state"], "failed_over", "{s:#}");
    assert!(s["holds"]["drill"].is_null(), "{s:#}");
    assert_eq!(component_status(&d), "partial_outage");

    let report = wait_drill(&d, &t.operator, &id);
    assert_eq!(report["status"], "interrupted", "{report:#}");
    let why = report["interruption"].as_str().unwrap_or_default();
    assert!(why.contains("ticket-form (primary check) down"), "{why}");
    assert!(why.contains("failed_over"), "{why}");
    assert_eq!(step(&report, "reverted")["status"], "skipped", "{report:#}");

    // Real audiences get the real announcement; the drill audience hears the drill ended.
    wait_until(
        "on-call and customers told",
        Duration::from_secs(30),
        || {
            let m = mails(&smtp);
            ["support-oncall@example.com", "support-announce@example.com"]
                .iter()
                .all(|to| m.iter().any(|(t, _)| t == to))
                && m.iter()
                    .filter(|(t, _)| t == "support-ops@example.com")
                    .count()
                    >= 2
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let m = mails(&smtp);
    let to = |who: &str| -> Vec<&String> {
        m.iter().filter(|(t, _)| t == who).map(|(_, s)| s).collect()
    };
    let oncall = to("support-oncall@example.com");
    let customers = to("support-announce@example.com");
    let drill = to("support-ops@example.com");
    println!(
        "mail: {} on-call, {} customer, {} drill audience",
        oncall.len(),
        customers.len(),
        drill.len()
    );
    assert_eq!(oncall.len(), 1, "{m:?}");
    assert!(oncall[0].contains("switched to backup"), "{m:?}");
    assert_eq!(customers.len(), 1, "{m:?}");
    assert!(customers[0].contains("switched to backup"), "{m:?}");
    assert_eq!(drill.len(), 2, "{m:?}");
    assert!(drill.iter().any(|s| s.contains("drill ended")), "{m:?}");

    // The audit chain shows the real transition out of the drill and the interrupted report.
    let records = audit(&d, &t.viewer, "?limit=1000");
    let real = records
        .iter()
        .find(|r| r["kind"] == "transition" && r["from"] == "drill")
        .expect("the transition out of the drill");
    assert_eq!(real["to"], "failed_over", "{real:#}");
    assert_eq!(real["cause"], "primary_down", "{real:#}");
    // The reason is the real one (it may reach the status page); the interruption is evidence.
    assert_eq!(real["reason"], "ticket-form down", "{real:#}");
    assert!(
        real["evidence"][0]
            .as_str()
            .is_some_and(|e| e.starts_with(&format!("drill {id} interrupted"))),
        "{real:#}"
    );
    let rep = records
        .iter()
        .find(|r| r["detail"]["command"] == "drill_report")
        .expect("drill report audited");
    assert_eq!(rep["detail"]["result"], "interrupted", "{rep:#}");
    assert_eq!(
        metric(
            &d,
            "switchboard_drills_total{result=\"interrupted\",service=\"ticket-submission\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn a_real_outage_during_a_live_drill_keeps_customers_on_the_backup_and_tells_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (smtp, d, t, id) = drilling(dir.path(), &target, "live");
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));

    target.set_down(true);
    let report = wait_drill(&d, &t.operator, &id);
    assert_eq!(report["status"], "interrupted", "{report:#}");
    assert!(report["interruption"]
        .as_str()
        .is_some_and(|w| w.contains("ticket-form (primary check) down")));
    assert_eq!(
        control::service(&d, &t.viewer, SERVICE)["state"],
        "failed_over"
    );
    // Never sent back to the broken primary in between.
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));
    wait_until("customers told", Duration::from_secs(30), || {
        mails(&smtp)
            .iter()
            .any(|(to, s)| to == "support-announce@example.com" && s.contains("switched to backup"))
    });
}

#[test]
fn a_live_drill_whose_backup_fails_reverts_to_the_healthy_primary_as_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (smtp, d, t, id) = drilling(dir.path(), &target, "live");
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));

    target.set_backup_down(true);
    wait_until(
        "customers back on the primary",
        Duration::from_secs(30),
        || d.location("submit-ticket") == target.url("/form"),
    );
    let report = wait_drill(&d, &t.operator, &id);
    assert_eq!(report["status"], "interrupted", "{report:#}");
    assert!(report["interruption"]
        .as_str()
        .is_some_and(|w| w.contains("backup-form (backup check) down")));
    assert_eq!(
        control::service(&d, &t.viewer, SERVICE)["state"],
        "operational"
    );
    // The real state is operational: customers never heard of the drill, nor of its end.
    wait_until("the drill end e-mail", Duration::from_secs(30), || {
        mails(&smtp).iter().any(|(_, s)| s.contains("drill ended"))
    });
    assert!(
        mails(&smtp)
            .iter()
            .all(|(to, _)| to == "support-ops@example.com"),
        "{:?}",
        mails(&smtp)
    );
}
