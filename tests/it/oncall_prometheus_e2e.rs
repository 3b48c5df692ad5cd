//! On-call views end to end: the real daemon probes loopback targets (plain HTTP and HTTPS),
//! a real Prometheus scrapes it every second with the shipped alert rules, a failover is
//! scripted, and then every query of every Grafana panel must return data, `promtool check
//! metrics` must find nothing, and the failed-over alert must fire.
//!
//! The alert rules are the shipped file with every `for:` shortened to 2s (a test-only copy
//! written next to the Prometheus config), so the test waits seconds instead of minutes.

use crate::support::oncall;
use crate::support::{self, daemon, tls};

use crate::support::prometheus::Prometheus;
use daemon::{get, wait_until, write_config, Daemon, Target, FILE_MAIL};
use oncall::{metric_names, panel_queries, promtool, PanelQuery};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Counters that have no label values to start from: exported from their first event on.
/// A panel may query them before that (with `or vector(0)`); they must still be declared.
const EXPORTED_ON_FIRST_EVENT: &[&str] = &["switchboard_store_errors_total"];

/// A loopback HTTPS server with a self-signed certificate, answering every request with 200.
fn https_server() -> u16 {
    let identity = tls::self_signed(&["127.0.0.1", "localhost"]);
    let config = Arc::new(tls::server_config(identity, rustls::DEFAULT_VERSIONS));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind https");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let config = config.clone();
            thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 4096];
                if tls.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                let body = "<h1>Help Center</h1>";
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Grafana's variables as a real Grafana would fill them for "All" on this setup.
fn substitute(expr: &str, range_secs: u64) -> String {
    let e = expr
        .replace("$__rate_interval", "10s")
        .replace("$__interval", "1s")
        .replace("$__range", &format!("{range_secs}s"))
        .replace("$service", ".*")
        .replace("$check", ".*");
    assert!(!e.contains('$'), "a variable left unsubstituted: {e}");
    e
}

/// Sample values of a query result, instant (vector) or range (matrix).
fn values(result: &serde_json::Value) -> Vec<f64> {
    let mut out = Vec::new();
    for series in result.as_array().into_iter().flatten() {
        let points: Vec<&serde_json::Value> = match series.get("values") {
            Some(vs) => vs.as_array().into_iter().flatten().collect(),
            None => series.get("value").into_iter().collect(),
        };
        for p in points {
            if let Some(v) = p[1].as_str().and_then(|s| s.parse::<f64>().ok()) {
                out.push(v);
            }
        }
    }
    out
}

/// Exported metric names: the name of every sample line.
fn exported(metrics: &str) -> Vec<String> {
    let mut names: Vec<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn firing(p: &Prometheus) -> Vec<(String, String, String)> {
    let v = p.api("/api/v1/alerts", &[]);
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"]["service"].as_str().unwrap_or("").to_string(),
                a["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn dashboards_and_alerts_work_against_real_prometheus_after_a_failover() {
    // Heavy: a real Prometheus beside the daemon, with deadlines on its scrapes and rules.
    let _turn = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let https = https_server();
    let (config, port) = write_config(dir.path(), &target, FILE_MAIL);
    // A second service whose primary is HTTPS, for the certificate and TLS panels.
    std::fs::write(
        dir.path().join("probes/support-portal.toml"),
        format!(
            r#"[service]
id = "support-portal"
name = "Support portal"
failover_when = "all"
failback = "manual"

[[check]]
name = "help-center-home"
url = "https://127.0.0.1:{https}/hc/en-us"
insecure = true
conditions = ["[STATUS] == 200", "[BODY] == pat(*Help Center*)"]

[[check]]
name = "help-center-mirror"
role = "backup"
url = "{backup}"
conditions = ["[STATUS] == 200"]

[[route]]
id = "help-center"
primary = "https://127.0.0.1:{https}/hc/en-us"
backup = "{backup}"
"#,
            backup = target.url("/backup"),
        ),
    )
    .expect("write support-portal.toml");
    let d = Daemon::start(&config, port);
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("mkdir");
    let started = Instant::now();
    let prom = Prometheus::start(&prom_dir, &[port]);

    wait_until(
        "prometheus scrapes switchboard",
        Duration::from_secs(30),
        || {
            let v = prom.api(
                "/api/v1/query",
                &[("query", "up{job=\"switchboard\"} == 1")],
            );
            !values(&v["data"]["result"]).is_empty()
        },
    );
    // A few healthy scrapes before the outage, so rates have something to compare with.
    thread::sleep(Duration::from_secs(3));

    target.set_down(true);
    let backup = target.url("/backup");
    wait_until("failed over", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });

    wait_until(
        "SwitchboardServiceFailedOver firing for ticket-submission",
        Duration::from_secs(45),
        || {
            firing(&prom).iter().any(|(name, service, state)| {
                name == "SwitchboardServiceFailedOver"
                    && service == "ticket-submission"
                    && state == "firing"
            })
        },
    );
    // The backup is healthy and Switchboard is up: these must stay quiet.
    let alerts = firing(&prom);
    for quiet in [
        "SwitchboardOutageNoHealthyBackup",
        "SwitchboardDown",
        "SwitchboardNotScraped",
    ] {
        assert!(
            alerts.iter().all(|(name, ..)| name != quiet),
            "{quiet} fired: {alerts:?}"
        );
    }
    assert!(
        alerts
            .iter()
            .filter(|(name, ..)| name == "SwitchboardServiceFailedOver")
            .all(|(_, service, _)| service == "ticket-submission"),
        "only the broken service failed over: {alerts:?}"
    );

    // The firing alert carries its runbook, and every shipped rule evaluates without error
    // against the real series (a many-to-many match, say, only shows up here).
    let v = prom.api("/api/v1/alerts", &[]);
    let failed_over = v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == "SwitchboardServiceFailedOver")
        .expect("the failed-over alert");
    assert_eq!(failed_over["labels"]["severity"], "page");
    assert!(
        failed_over["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/runbooks/service-failed-over.md")),
        "{failed_over}"
    );
    assert!(
        failed_over["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("ticket-submission")),
        "{failed_over}"
    );
    let rules = prom.api("/api/v1/rules", &[]);
    let mut evaluated = 0;
    for group in rules["data"]["groups"].as_array().expect("rule groups") {
        for rule in group["rules"].as_array().into_iter().flatten() {
            evaluated += 1;
            assert_eq!(
                rule["health"], "ok",
                "rule {} does not evaluate: {}",
                rule["name"], rule["lastError"]
            );
        }
    }
    assert!(evaluated >= 17, "every shipped rule is loaded: {evaluated}");

    // A few more scrapes after the failover, then every panel query.
    thread::sleep(Duration::from_secs(3));
    let metrics = get(&d.url("/metrics")).expect("GET /metrics").body;
    let names = exported(&metrics);
    let declared = include_str!("../../src/metrics/mod.rs");

    let range = started.elapsed().as_secs() + 5;
    let end = now();
    let start = end - range as f64;
    let queries = panel_queries();
    assert!(queries.len() > 30, "dashboards have their queries");
    let mut problems = Vec::new();
    for PanelQuery {
        dashboard,
        panel,
        ref_id,
        expr,
        instant,
    } in &queries
    {
        let what = format!("{dashboard} / {panel} / {ref_id}");
        for name in metric_names(expr) {
            // Sample names, so a histogram counts by its _bucket, _sum and _count series.
            let known = names.iter().any(|n| n == &name)
                || (EXPORTED_ON_FIRST_EVENT.contains(&name.as_str())
                    && declared.contains(&format!("\"{name}\"")));
            if !known {
                problems.push(format!(
                    "{what}: queries {name}, which Switchboard does not export"
                ));
            }
        }
        let q = substitute(expr, range);
        let v = if *instant {
            prom.api(
                "/api/v1/query",
                &[("query", &q), ("time", &format!("{end}"))],
            )
        } else {
            prom.api(
                "/api/v1/query_range",
                &[
                    ("query", &q),
                    ("start", &format!("{start}")),
                    ("end", &format!("{end}")),
                    ("step", "1"),
                ],
            )
        };
        let vals = values(&v["data"]["result"]);
        if vals.is_empty() {
            problems.push(format!("{what}: no data for {q}"));
        } else if !vals.iter().any(|x| x.is_finite()) {
            problems.push(format!("{what}: only NaN/Inf for {q}"));
        }
    }
    // The template variables' own queries (label_values) list the configured values.
    let lv = regex::Regex::new(r"^label_values\((.+),\s*(\w+)\)$").expect("regex");
    for (file, dash) in oncall::dashboards() {
        for var in dash["templating"]["list"].as_array().into_iter().flatten() {
            let q = var["query"]["query"].as_str().expect("variable query");
            let c = lv
                .captures(q)
                .unwrap_or_else(|| panic!("{file}: {q} is label_values(…)"));
            let query = format!("count by ({}) ({})", &c[2], substitute(&c[1], range));
            let v = prom.api("/api/v1/query", &[("query", &query)]);
            let got: Vec<&str> = v["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["metric"][&c[2]].as_str())
                .collect();
            let want = match &c[2] {
                "service" => ["ticket-submission", "support-portal"],
                "check" => ["ticket-form", "help-center-home"],
                other => panic!("{file}: unexpected variable label {other}"),
            };
            for w in want {
                if !got.contains(&w) {
                    problems.push(format!(
                        "{file}: variable {} lists {got:?}, not {w}",
                        var["name"]
                    ));
                }
            }
        }
    }
    let (ok, said) = promtool(&["check", "metrics"], dir.path(), &metrics);
    if !ok || !said.trim().is_empty() {
        problems.push(format!("promtool check metrics on /metrics:\n{said}"));
    }
    assert!(
        problems.is_empty(),
        "{} problems with the {} panel queries (or /metrics):\n{}\n\nprometheus log tail:\n{}",
        problems.len(),
        queries.len(),
        problems.join("\n"),
        prom.log()
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
