//! The control API of the real binary over loopback: tokens and roles, operator commands with their audit records, holds, reviews, and bad input answered one case at a time.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::support::control;
use crate::support::daemon;

use control::{
    all_healthy, assert_error, audit, json, request, request_headers, request_with, service,
};
use daemon::{get, metric, wait_until, Target};

const SVC: &str = "/api/v1/services/ticket-submission";

#[test]
fn tokens_and_roles_decide_who_may_do_what() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);

    // Public as before.
    assert_eq!(get(&d.url("/api/v1/routes")).expect("routes").status, 200);
    assert_eq!(
        get(&d.url("/api/v1/openapi.json")).expect("doc").status,
        200
    );

    // No token, a wrong one, a malformed header: 401 in the one error shape.
    let r = request("GET", &d.url("/api/v1/services"), None, None);
    assert_error(&r, 401, "bearer token");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    let r = request("GET", &d.url("/api/v1/services"), Some("sbt_nope"), None);
    assert_error(&r, 401, "bearer token");

    // A viewer reads everything the design says, and nothing more.
    let r = request("GET", &d.url("/api/v1/services"), Some(&t.viewer), None);
    assert_eq!(r.status, 200, "{r:?}");
    let v = json(&r);
    let s = &v["services"][0];
    assert_eq!(s["id"], "ticket-submission");
    for field in [
        "state", "since", "cause", "side", "checks", "routes", "holds",
    ] {
        assert!(!s[field].is_null(), "service detail has {field}: {s}");
    }
    assert_eq!(s["checks"].as_array().map(Vec::len), Some(2));
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failover")),
        Some(&t.viewer),
        Some(r#"{"reason":"viewer tries"}"#),
    );
    assert_error(&r, 403, "operator");
    // An operator may not force; an admin may.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failover")),
        Some(&t.operator),
        Some(r#"{"reason":"force it","force":true}"#),
    );
    assert_error(&r, 403, "admin");
    let r = request("POST", &d.url("/-/reload"), Some(&t.operator), None);
    assert_error(&r, 403, "admin");

    assert!(
        metric(
            &d,
            "switchboard_api_auth_failures_total{reason=\"missing\"}"
        ) >= Some(1.0)
    );
    assert!(
        metric(
            &d,
            "switchboard_api_auth_failures_total{reason=\"invalid\"}"
        ) >= Some(1.0)
    );
    assert!(
        metric(
            &d,
            "switchboard_api_auth_failures_total{reason=\"forbidden\"}"
        ) >= Some(3.0)
    );
    // The tokens themselves appear nowhere the daemon writes.
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let metrics = get(&d.url("/metrics")).expect("metrics").body;
    for tok in [&t.viewer, &t.operator, &t.admin] {
        assert!(!log.contains(tok.as_str()) && !metrics.contains(tok.as_str()));
    }
}

#[test]
fn repeated_wrong_tokens_slow_down_that_client_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let url = d.url("/api/v1/services");
    let attacker = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66)));
    let other = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = request_with(
            "GET",
            &url,
            Some(&format!("sbt_guess{i}")),
            None,
            None,
            attacker,
        );
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // In backoff a wrong token from that client waits, told for how long in whole seconds...
    let r = request_with("GET", &url, Some("sbt_guess9"), None, None, attacker);
    assert_error(&r, 429, "retry");
    let wait: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(wait >= 1, "{r:?}");
    // ...but a valid token from the same address (an operator behind the same NAT as the
    // guesser) is served: wrong tokens cannot lock out a valid operator...
    let r = request_with("GET", &url, Some(&t.viewer), None, None, attacker);
    assert_eq!(r.status, 200, "{r:?}");
    // ...without lifting the guesser's backoff...
    let r = request_with("GET", &url, Some("sbt_guess10"), None, None, attacker);
    assert_eq!(r.status, 429, "{r:?}");
    // ...and another client is served at once.
    let r = request_with("GET", &url, Some(&t.viewer), None, None, other);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        metric(
            &d,
            "switchboard_api_auth_failures_total{reason=\"throttled\"}"
        ) >= Some(1.0)
    );
}

#[test]
fn operator_failover_and_failback_switch_routes_and_are_audited_with_the_token_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let (primary, backup) = (target.url("/form"), target.url("/backup"));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });

    // Failback from operational does not fit: 409 with the machine's reason.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failback")),
        Some(&t.operator),
        Some(r#"{"reason":"nothing to fail back"}"#),
    );
    assert_eq!(r.status, 409, "{r:?}");

    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failover")),
        Some(&t.operator),
        Some(r#"{"reason":"vendor maintenance on the form"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = json(&r);
    assert_eq!(v["state"], "failed_over");
    assert_eq!(v["side"], "backup");
    assert_eq!(v["transitions"][0]["to"], "failed_over");
    assert_eq!(d.location("submit-ticket"), backup);
    assert_eq!(
        service(&d, &t.viewer, "ticket-submission")["side"],
        "backup"
    );

    // Failing over again is refused with the reason, and changes nothing.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failover")),
        Some(&t.operator),
        Some(r#"{"reason":"again"}"#),
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert!(json(&r)["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));

    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failback")),
        Some(&t.operator),
        Some(r#"{"reason":"vendor done"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Operator failback: back on primary (the automatic rules may already have settled it).
    assert_eq!(d.location("submit-ticket"), primary);

    let records = audit(&d, &t.viewer, "");
    let by_olga: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "transition" && r["actor"] == "olga")
        .collect();
    assert!(by_olga.len() >= 2, "{records:#?}");
    assert_eq!(by_olga[0]["reason"], "vendor maintenance on the form");
    assert_eq!(by_olga[0]["to"], "failed_over");
    let actions: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "operator_action")
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("").to_string(),
                r["detail"]["command"].as_str().unwrap_or("").to_string(),
                r["detail"]["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for expected in [
        ("olga", "failback", "rejected"),
        ("olga", "failover", "accepted"),
        ("olga", "failover", "rejected"),
        ("olga", "failback", "accepted"),
    ] {
        let e = (expected.0.into(), expected.1.into(), expected.2.into());
        assert!(actions.contains(&e), "{e:?} in {actions:?}");
    }
    // The chain still verifies with the operator records in it.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["audit", "verify", "--config"])
        .arg(dir.path().join("switchboard.toml"))
        .output()
        .expect("audit verify");
    assert!(verify.status.success(), "{verify:?}");
}

#[test]
fn admin_force_switches_to_a_backup_whose_checks_are_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, main, t) = control::start(dir.path(), &target, None);
    drop(d);
    // The backup check points at a path that answers 404: its check goes down.
    let svc = dir.path().join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&svc).expect("service file");
    let text = text.replacen(
        &format!("url = \"{}\"", target.url("/backup")),
        &format!("url = \"{}\"", target.url("/missing")),
        1,
    );
    std::fs::write(&svc, text).expect("write");
    let port: u16 = std::fs::read_to_string(&main)
        .expect("main")
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .and_then(|p| p.trim_end_matches('"').parse().ok())
        .expect("port");
    let d = daemon::Daemon::start(&main, port);
    wait_until("backup check down", Duration::from_secs(30), || {
        service(&d, &t.viewer, "ticket-submission")["checks"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["name"] == "backup-form" && c["health"] == "down")
            })
    });
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failover")),
        Some(&t.operator),
        Some(r#"{"reason":"try without force"}"#),
    );
    assert_eq!(r.status, 409, "the backup is down: {r:?}");
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failover")),
        Some(&t.admin),
        Some(r#"{"reason":"primary is worse","force":true}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(json(&r)["side"], "backup");
}

#[test]
fn pins_maintenance_and_reviews() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let backup = target.url("/backup");
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });

    // A pin with expiry holds the backup, then lapses by itself.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/pin")),
        Some(&t.operator),
        Some(r#"{"reason":"test the backup form","side":"backup","until":"2s"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.location("submit-ticket"), backup);
    let s = service(&d, &t.viewer, "ticket-submission");
    assert_eq!(s["holds"]["pin"]["side"], "backup");
    assert_eq!(s["holds"]["pin"]["actor"], "olga");
    assert!(s["holds"]["pin"]["until"].is_string());
    wait_until("pin expired", Duration::from_secs(20), || {
        service(&d, &t.viewer, "ticket-submission")["holds"]["pin"].is_null()
    });
    assert_eq!(d.location("submit-ticket"), target.url("/form"));

    // Pin without expiry, then unpin.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/pin")),
        Some(&t.operator),
        Some(r#"{"reason":"hold","side":"backup"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/unpin")),
        Some(&t.operator),
        Some(r#"{"reason":"release"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/unpin")),
        Some(&t.operator),
        Some(r#"{"reason":"again"}"#),
    );
    assert_error(&r, 409, "not pinned");

    // Maintenance start / stop; a stop outside maintenance is refused.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/maintenance")),
        Some(&t.operator),
        Some(r#"{"reason":"form upgrade","action":"start","duration":"1h"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(json(&r)["state"], "maintenance");
    let s = service(&d, &t.viewer, "ticket-submission");
    assert!(s["holds"]["maintenance"]["until"].is_string(), "{s}");
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/maintenance")),
        Some(&t.operator),
        Some(r#"{"reason":"done","action":"stop"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(json(&r)["state"], "maintenance");
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/maintenance")),
        Some(&t.operator),
        Some(r#"{"reason":"done","action":"stop"}"#),
    );
    assert_error(&r, 409, "not in maintenance");

    // A scheduled window starts by itself.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/maintenance")),
        Some(&t.operator),
        Some(
            r#"{"reason":"planned DB work","action":"schedule","starts_at":"2s","duration":"2s"}"#,
        ),
    );
    assert_eq!(r.status, 201, "{r:?}");
    wait_until(
        "scheduled maintenance began",
        Duration::from_secs(20),
        || service(&d, &t.viewer, "ticket-submission")["state"] == "maintenance",
    );
    wait_until(
        "scheduled maintenance ended",
        Duration::from_secs(20),
        || service(&d, &t.viewer, "ticket-submission")["state"] != "maintenance",
    );

    // An outage and recovery: automatic transitions await review.
    target.set_down(true);
    wait_until("failed over", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });
    let pending = audit(&d, &t.viewer, "?pending_review=true");
    assert!(!pending.is_empty());
    assert!(pending
        .iter()
        .all(|r| r["actor"] == "system" && r["pending_review"] == true));
    wait_until("pending reviews counted", Duration::from_secs(10), || {
        metric(&d, "switchboard_reviews_pending ").unwrap_or(0.0) >= pending.len() as f64
    });
    assert!(metric(&d, "switchboard_review_oldest_pending_age_seconds").unwrap_or(0.0) >= 0.0);

    let id = pending[0]["id"].as_i64().expect("id");
    let url = d.url(&format!("/api/v1/audit/{id}/review"));
    assert_error(
        &request("POST", &url, Some(&t.viewer), Some(r#"{"note":"x"}"#)),
        403,
        "operator",
    );
    assert_error(
        &request("POST", &url, Some(&t.operator), Some(r#"{"note":"  "}"#)),
        422,
        "note",
    );
    let r = request(
        "POST",
        &url,
        Some(&t.operator),
        Some(r#"{"note":"form vendor outage, INC-42"}"#),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let review = json(&r);
    assert_eq!(review["kind"], "review");
    assert_eq!(review["actor"], "olga");
    assert_eq!(review["detail"]["reviews"], id);
    assert_error(
        &request("POST", &url, Some(&t.operator), Some(r#"{"note":"again"}"#)),
        409,
        "already reviewed",
    );
    assert_error(
        &request(
            "POST",
            &d.url("/api/v1/audit/999999/review"),
            Some(&t.operator),
            Some(r#"{"note":"x"}"#),
        ),
        404,
        "999999",
    );
    let after = audit(&d, &t.viewer, "?pending_review=true");
    assert!(after.iter().all(|r| r["id"] != id));
    let reviewed = audit(&d, &t.viewer, "?service=ticket-submission&limit=1000");
    let rec = reviewed.iter().find(|r| r["id"] == id).expect("record");
    assert_eq!(rec["review"]["reviewer"], "olga");
    assert_eq!(rec["pending_review"], false);
    // `since` filters by time.
    assert!(audit(&d, &t.viewer, "?since=2099-01-01T00:00:00Z").is_empty());
}

#[test]
fn bad_input_is_answered_case_by_case_never_with_a_500() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    let op = Some(t.operator.as_str());
    let failover = d.url(&format!("{SVC}/failover"));

    // 413: body over the limit.
    let big = format!(r#"{{"reason":"{}"}}"#, "x".repeat(65 * 1024));
    let r = request("POST", &failover, op, Some(&big));
    assert_error(&r, 413, "too large");
    // Also where the body is optional (regression: it was axum's plain-text 413).
    let r = request("POST", &d.url("/api/v1/drills/x/abort"), op, Some(&big));
    assert_error(&r, 413, "too large");
    // 400: malformed JSON.
    let r = request("POST", &failover, op, Some(r#"{"reason": "#));
    assert_error(&r, 400, "");
    // 415: not JSON.
    let r = request_with(
        "POST",
        &failover,
        op,
        Some("reason=x"),
        Some("text/plain"),
        None,
    );
    assert_error(&r, 415, "");
    // 422: missing reason, naming it.
    let r = request("POST", &failover, op, Some(r#"{"force":false}"#));
    assert_error(&r, 422, "reason");
    // 422: empty reason.
    let r = request("POST", &failover, op, Some(r#"{"reason":"   "}"#));
    assert_error(&r, 422, "reason");
    // 422: wrong type, naming the field.
    let r = request(
        "POST",
        &failover,
        op,
        Some(r#"{"reason":"x","force":"yes"}"#),
    );
    assert_error(&r, 422, "force");
    let r = request("POST", &failover, op, Some(r#"{"reason":12}"#));
    assert_error(&r, 422, "reason");
    // 422: unknown field, naming it.
    let r = request(
        "POST",
        &failover,
        op,
        Some(r#"{"reason":"x","forse":true}"#),
    );
    assert_error(&r, 422, "forse");
    // 422: invalid values.
    let pin = d.url(&format!("{SVC}/pin"));
    let r = request(
        "POST",
        &pin,
        op,
        Some(r#"{"reason":"x","side":"sideways"}"#),
    );
    assert_error(&r, 422, "side");
    let r = request(
        "POST",
        &pin,
        op,
        Some(r#"{"reason":"x","side":"backup","until":"yesterday"}"#),
    );
    assert_error(&r, 422, "until");
    let r = request(
        "POST",
        &d.url("/api/v1/drills"),
        op,
        Some(r#"{"service":"ticket-submission","mode":"live","duration":"forever","reason":"x"}"#),
    );
    assert_error(&r, 422, "duration");
    let r = request(
        "POST",
        &d.url("/api/v1/drills"),
        op,
        Some(r#"{"service":"ticket-submission","mode":"live","duration":"48h","reason":"x"}"#),
    );
    assert_error(&r, 422, "duration");
    // 404: unknown service, drill, path.
    let r = request(
        "POST",
        &d.url("/api/v1/services/no-such-service/failover"),
        op,
        Some(r#"{"reason":"x"}"#),
    );
    assert_error(&r, 404, "no-such-service");
    let r = request("GET", &d.url("/api/v1/drills/drill-nope"), op, None);
    assert_error(&r, 404, "drill-nope");
    let r = request("POST", &d.url("/api/v1/drills/drill-nope/abort"), op, None);
    assert_error(&r, 404, "drill-nope");
    // 405: wrong method.
    let r = request("DELETE", &failover, op, None);
    assert_error(&r, 405, "method");
    let r = request("GET", &failover, op, None);
    assert_error(&r, 405, "method");
    // 400: a bad query and a non-numeric audit id.
    let r = request(
        "GET",
        &d.url("/api/v1/audit?limit=lots"),
        Some(&t.viewer),
        None,
    );
    assert_error(&r, 400, "");
    let r = request(
        "POST",
        &d.url("/api/v1/audit/abc/review"),
        op,
        Some(r#"{"note":"x"}"#),
    );
    assert_error(&r, 400, "");
    // 409: wrong state.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/unpin")),
        op,
        Some(r#"{"reason":"x"}"#),
    );
    assert_error(&r, 409, "not pinned");
    // Nothing above was a server error, and the daemon still serves.
    assert_eq!(get(&d.url("/healthz")).expect("healthz").status, 200);
}

/// Operators' incident updates go through the control API: token and role checked, the update
/// shown on the public incident documents, and the action in the audit chain under the
/// token's name.
#[test]
fn incident_updates_need_an_operator_token_and_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/failover")),
        Some(&t.operator),
        Some(r#"{"reason":"form vendor outage"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");

    // The failover opened an incident; the page's copy is reloaded off the core task.
    let mut id = String::new();
    wait_until("an unresolved incident", Duration::from_secs(10), || {
        let r = get(&d.url("/api/v2/incidents/unresolved.json")).expect("get");
        match json(&r)["incidents"][0]["id"].as_str() {
            Some(i) => {
                id = i.to_string();
                true
            }
            None => false,
        }
    });
    let path = format!("/api/v1/incidents/{id}/updates");
    let body = r#"{"status":"monitoring","body":"Customers are on the backup form; the vendor is fixing the portal."}"#;

    let r = request("POST", &d.url(&path), None, Some(body));
    assert_error(&r, 401, "");
    let r = request("POST", &d.url(&path), Some(&t.viewer), Some(body));
    assert_error(&r, 403, "");
    let r = request(
        "POST",
        &d.url("/api/v1/incidents/no-such-incident/updates"),
        Some(&t.operator),
        Some(body),
    );
    assert_error(&r, 404, "");
    let r = request(
        "POST",
        &d.url(&path),
        Some(&t.operator),
        Some(r#"{"status":"fixed","body":"x"}"#),
    );
    assert_error(&r, 422, "status");

    let r = request("POST", &d.url(&path), Some(&t.operator), Some(body));
    assert_eq!(r.status, 201, "{r:?}");
    let v = json(&r);
    assert_eq!(v["incident"]["status"], "monitoring", "{v:#}");
    assert!(
        v["incident"]["incident_updates"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["body"]
                .as_str()
                .is_some_and(|b| b.contains("vendor is fixing")))),
        "{v:#}"
    );
    let public = json(&get(&d.url("/api/v2/incidents.json")).expect("get"));
    assert!(
        public.to_string().contains("vendor is fixing"),
        "{public:#}"
    );

    let records = audit(&d, &t.viewer, "");
    assert!(
        records.iter().any(|r| r["kind"] == "operator_action"
            && r["actor"] == "olga"
            && r["detail"]["command"] == "incident_update"
            && r["detail"]["incident"] == id.as_str()),
        "{records:#?}"
    );
}

#[test]
fn behind_a_trusted_proxy_the_backoff_follows_the_forwarded_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    // The daemon sits behind a reverse proxy on 127.0.0.1: every request comes from it.
    let text = std::fs::read_to_string(&main).expect("config");
    let text = text.replacen(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nclient_ip_header = \"X-Forwarded-For\"\n",
        1,
    );
    std::fs::write(&main, text).expect("write config");
    let d = daemon::Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    let url = d.url("/api/v1/services");
    let via_proxy = |token: &str, client: &str| {
        request_headers(
            "GET",
            &url,
            Some(token),
            None,
            None,
            None,
            &[("X-Forwarded-For", &format!("{client}, 127.0.0.1"))],
        )
    };
    let statuses: Vec<u16> = (0..7)
        .map(|i| via_proxy(&format!("sbt_guess{i}"), "203.0.113.66").status)
        .collect();
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another client behind the same proxy is judged on its own: 401 for a wrong token, not
    // 429, and 200 for a right one.
    assert_eq!(via_proxy("sbt_typo", "198.51.100.7").status, 401);
    assert_eq!(via_proxy(&t.viewer, "198.51.100.7").status, 200);
    // A client that is not a trusted proxy cannot pick its address by sending the header.
    let spoofed = request_headers(
        "GET",
        &url,
        Some("sbt_guess_x"),
        None,
        None,
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))),
        &[("X-Forwarded-For", "198.51.100.99")],
    );
    assert_eq!(spoofed.status, 401, "{spoofed:?}");
}

#[test]
fn every_response_carries_the_security_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    for (path, token) in [
        ("/status", None),
        ("/api/v2/summary.json", None),
        ("/api/v2/incidents.json", None),
        ("/history.atom", None),
        ("/go/submit-ticket", None),
        ("/api/v1/routes", None),
        ("/api/v1/openapi.json", None),
        ("/api/v1/services", Some(t.viewer.as_str())),
        ("/api/v1/services", None),
        ("/no/such/page", None),
    ] {
        let r = request("GET", &d.url(path), token, None);
        assert!(r.status > 0, "{path}: {r:?}");
        let csp = r
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP: {r:?}"));
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            !csp.contains("script-src") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            r.header("x-frame-options").as_deref(),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            r.header("referrer-policy").as_deref(),
            Some("no-referrer"),
            "{path}"
        );
    }
    // The page's one stylesheet is the one the policy allows, by hash: no inline script.
    let page = request("GET", &d.url("/status"), None, None);
    assert!(
        !page.body.contains("<script"),
        "the status page has no script"
    );
}
