//! The Grafana dashboards as Grafana 10 loads them: one fixed datasource uid, unique uids and
//! panel ids, panels inside the 24-column grid, every query a PromQL expression that uses only
//! the dashboard's own variables, and the views on-call needs (service and check variables,
//! the overview's state timeline, stacked HTTP phases). Whether each query returns data is
//! tests/oncall_prometheus_e2e.rs's job, against a real Prometheus.

use crate::support::oncall;

use oncall::{dashboards, metric_names, panel_queries, panels};
use std::collections::HashSet;

#[test]
fn dashboards_are_well_formed_for_grafana_10() {
    let all = dashboards();
    assert_eq!(all.len(), 4, "overview, probes, announcements, drills");
    let mut uids = HashSet::new();
    for (file, d) in &all {
        let uid = d["uid"].as_str().expect("uid");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} is unique");
        assert_eq!(format!("{uid}.json"), *file, "file named after its uid");
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{file}: schemaVersion of Grafana 10"
        );
        assert!(d["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "switchboard")));
        assert!(d["id"].is_null(), "{file}: no database id (provisioned)");
        let mut ids = HashSet::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap_or("");
            assert!(!title.is_empty(), "{file}: every panel has a title");
            let id = p["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "{file}: panel id {id} unique");
            let g = &p["gridPos"];
            let (x, w, h) = (
                g["x"].as_u64().expect("x"),
                g["w"].as_u64().expect("w"),
                g["h"].as_u64().expect("h"),
            );
            assert!(
                x + w <= 24 && w > 0 && h > 0,
                "{file}: {title} fits the grid"
            );
            match p["type"].as_str().unwrap_or("") {
                "row" => {}
                "text" => assert!(p["options"]["content"].as_str().is_some()),
                kind => {
                    assert!(
                        [
                            "timeseries",
                            "state-timeline",
                            "table",
                            "stat",
                            "bargauge",
                            "gauge"
                        ]
                        .contains(&kind),
                        "{file}: {title}: panel type {kind} is a core Grafana 10 panel"
                    );
                    assert_eq!(p["datasource"]["uid"], "prometheus", "{file}: {title}");
                    assert!(
                        !p["description"].as_str().unwrap_or("").is_empty(),
                        "{file}: {title} says what it shows"
                    );
                    let targets = p["targets"].as_array().expect("targets");
                    assert!(!targets.is_empty(), "{file}: {title} queries something");
                    let mut refs = HashSet::new();
                    for t in targets {
                        assert_eq!(t["datasource"]["uid"], "prometheus");
                        let r = t["refId"].as_str().expect("refId");
                        assert!(refs.insert(r.to_string()), "{file}: {title}: refId {r}");
                    }
                }
            }
        }
    }
}

#[test]
fn queries_use_only_defined_variables_and_switchboard_metrics() {
    let var_re = regex::Regex::new(r"\$\{?([A-Za-z_]+)").expect("regex");
    for (file, d) in dashboards() {
        let defined: Vec<String> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect();
        assert!(defined.contains(&"service".to_string()), "{file}: $service");
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            assert_eq!(v["datasource"]["uid"], "prometheus");
            assert_eq!(v["includeAll"], true, "{file}: {} offers All", v["name"]);
            assert_eq!(v["allValue"], ".*", "{file}: All matches every value");
        }
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or("");
                for c in var_re.captures_iter(expr) {
                    let name = &c[1];
                    assert!(
                        name.starts_with("__") || defined.iter().any(|d| d == name),
                        "{file}: {}: ${name} is not a variable of the dashboard",
                        p["title"]
                    );
                }
                // Every selector of a per-service metric follows the service variable.
                if expr.contains("switchboard_service_state{") {
                    assert!(expr.contains("$service"), "{file}: {expr}");
                }
            }
        }
    }
    let probes = dashboards()
        .into_iter()
        .find(|(f, _)| f == "switchboard-probes.json")
        .expect("probes dashboard")
        .1;
    assert!(probes["templating"]["list"]
        .as_array()
        .expect("list")
        .iter()
        .any(|v| v["name"] == "check"));
    for q in panel_queries() {
        assert!(
            !metric_names(&q.expr).is_empty()
                || q.expr.contains("ALERTS")
                || q.expr.contains("up{"),
            "{} / {}: {} queries no Switchboard metric",
            q.dashboard,
            q.panel,
            q.expr
        );
    }
}

#[test]
fn the_views_on_call_asked_for_are_there() {
    let queries = panel_queries();
    let find = |dashboard: &str, metric: &str| {
        queries
            .iter()
            .any(|q| q.dashboard == dashboard && q.expr.contains(metric))
    };
    for (dashboard, metrics) in [
        (
            "switchboard-overview.json",
            &[
                "switchboard_service_state",
                "switchboard_route_active_target",
                "switchboard_service_state_since_timestamp_seconds",
                "switchboard_transitions_total",
                "switchboard_detection_seconds",
            ][..],
        ),
        (
            "switchboard-probes.json",
            &[
                "probe_success",
                "probe_http_duration_seconds",
                "probe_http_status_code",
                "probe_ssl_earliest_cert_expiry",
                "probe_tls_version_info",
            ][..],
        ),
        (
            "switchboard-announcements.json",
            &[
                "switchboard_outbox_backlog",
                "switchboard_outbox_oldest_age_seconds",
                "switchboard_announcements_total",
                "switchboard_announcement_last_success_timestamp_seconds",
            ][..],
        ),
        (
            "switchboard-drills.json",
            &[
                "switchboard_drill_last_timestamp_seconds",
                "switchboard_drill_last_success",
                "switchboard_drills_total",
            ][..],
        ),
    ] {
        for m in metrics {
            assert!(find(dashboard, m), "{dashboard} shows {m}");
        }
    }
    // The state timeline covers every failover state, and HTTP phases are stacked.
    let all = dashboards();
    let overview = &all
        .iter()
        .find(|(f, _)| f == "switchboard-overview.json")
        .expect("overview")
        .1;
    let timeline = panels(overview)
        .into_iter()
        .find(|p| p["type"] == "state-timeline")
        .expect("a state timeline");
    let expr = timeline["targets"][0]["expr"].as_str().expect("expr");
    let mapped = timeline["fieldConfig"]["defaults"]["mappings"].to_string();
    for state in [
        "operational",
        "degraded",
        "failed_over",
        "recovering",
        "outage",
        "maintenance",
        "drill",
    ] {
        assert!(
            expr.contains(&format!("state=\"{state}\"")),
            "{state} in {expr}"
        );
        assert!(mapped.contains(&format!("\"{state}\"")), "{state} mapped");
    }
    let probes = &all
        .iter()
        .find(|(f, _)| f == "switchboard-probes.json")
        .expect("probes")
        .1;
    let phases = panels(probes)
        .into_iter()
        .find(|p| {
            p["targets"][0]["expr"]
                .as_str()
                .is_some_and(|e| e.contains("probe_http_duration_seconds"))
        })
        .expect("phases panel");
    assert_eq!(
        phases["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"],
        "normal"
    );
    assert!(phases["targets"][0]["expr"]
        .as_str()
        .expect("expr")
        .contains("by (phase)"));
}
