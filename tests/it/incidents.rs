//! Incidents through the real daemon: a failover opens one, a SIGKILL does not lose it, and the
//! recovery after the restart resolves that same incident (never a second one), with the
//! `switchboard_incidents_open` gauge following.

use crate::support::daemon;

use daemon::{get, wait_until, write_config, Daemon, Target, FILE_MAIL};
use serde_json::Value;
use std::time::Duration;

fn json(d: &Daemon, path: &str) -> Value {
    let r = get(&d.url(path)).expect("GET");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).expect("JSON")
}

fn incidents_open(d: &Daemon) -> String {
    let r = get(&d.url("/metrics")).expect("GET /metrics");
    r.body
        .lines()
        .find(|l| l.starts_with("switchboard_incidents_open "))
        .expect("switchboard_incidents_open is exported")
        .to_string()
}

#[test]
fn an_incident_survives_a_crash_and_is_resolved_by_the_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config(dir.path(), &target, FILE_MAIL);
    let mut d = Daemon::start(&config, port);
    assert_eq!(incidents_open(&d), "switchboard_incidents_open 0");
    assert_eq!(
        json(&d, "/api/v2/incidents.json")["incidents"],
        Value::Array(vec![])
    );

    target.set_down(true);
    let backup = target.url("/backup");
    wait_until("failed over", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });
    // The page reloads incidents right after the transition, off the core task.
    wait_until("the incident on the page", Duration::from_secs(10), || {
        json(&d, "/api/v2/incidents/unresolved.json")["incidents"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let open = json(&d, "/api/v2/incidents/unresolved.json");
    let incidents = open["incidents"].as_array().expect("incidents");
    assert_eq!(incidents.len(), 1, "{open}");
    let id = incidents[0]["id"].as_str().expect("id").to_string();
    assert_eq!(incidents[0]["status"], "identified");
    assert_eq!(incidents[0]["components"][0]["name"], "Ticket submission");
    assert_eq!(incidents_open(&d), "switchboard_incidents_open 1");

    // The daemon dies without a chance to write anything more.
    d.kill9();
    let d = Daemon::start(&config, port);
    let open = json(&d, "/api/v2/incidents/unresolved.json");
    assert_eq!(open["incidents"][0]["id"], id.as_str(), "{open}");
    assert_eq!(incidents_open(&d), "switchboard_incidents_open 1");

    target.set_down(false);
    let primary = target.url("/form");
    wait_until("switched back", Duration::from_secs(30), || {
        d.location("submit-ticket") == primary
    });
    // The page reloads incidents just after the transition is recorded, off the core task.
    wait_until("the incident resolved", Duration::from_secs(10), || {
        json(&d, "/api/v2/incidents.json")["incidents"][0]["status"] == "resolved"
    });
    let all = json(&d, "/api/v2/incidents.json");
    let incidents = all["incidents"].as_array().expect("incidents");
    assert_eq!(
        incidents.len(),
        1,
        "one incident, moved on, not a second: {all}"
    );
    let i = &incidents[0];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["status"], "resolved");
    assert!(
        i["resolved_at"].is_string() && i["monitoring_at"].is_string(),
        "{i}"
    );
    let statuses: Vec<&str> = i["incident_updates"]
        .as_array()
        .expect("updates")
        .iter()
        .map(|u| u["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["resolved", "monitoring", "identified"]);
    assert_eq!(
        json(&d, "/api/v2/incidents/unresolved.json")["incidents"],
        Value::Array(vec![])
    );
    assert_eq!(incidents_open(&d), "switchboard_incidents_open 0");
}
