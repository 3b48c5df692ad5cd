//! The HTTP side over real loopback sockets: redirects, routes JSON, Statuspage v2 shape, /status HTML, ops endpoints.
//!
//! Each test starts the real server (`api::serve`) on 127.0.0.1:0 with a hand-built snapshot
//! and talks to it with a plain hyper HTTP/1.1 client, so what is asserted is what a browser
//! or a Statuspage widget would receive.

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchboard::api::{self, statuspage, ApiState};
use switchboard::clock::Timestamp;
use switchboard::config::Role;
use switchboard::failover::{Side, State};
use switchboard::health::Health;
use switchboard::view::{CheckView, RouteView, ServiceView, Snapshot};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const T0: i64 = 1_773_481_337_381; // 2026-03-14T09:42:17.381Z
const EVIL_NAME: &str = "Support e-mail <script>alert(1)</script>";
const METRICS_TEXT: &str = "# TYPE switchboard_up gauge\nswitchboard_up 1\n";

fn check_view(name: &str, role: Role, target: &str, health: Health) -> CheckView {
    CheckView {
        name: name.into(),
        role,
        target: target.into(),
        health,
        last_outcome: None,
        last_probe_at: Some(Timestamp(T0)),
    }
}

/// Two services: ticket submission healthy on its primary form, the e-mail intake failed over
/// to a mailto: backup and carrying a hostile name to prove escaping.
fn fixture() -> Snapshot {
    Snapshot {
        title: "Acme Support Status".into(),
        public_url: "http://127.0.0.1:9898/".into(),
        updated_at: Timestamp(T0),
        services: vec![
            ServiceView {
                id: "ticket-submission".into(),
                name: "Ticket submission".into(),
                state: State::Operational,
                since: Timestamp(T0 - 86_400_000),
                cause: "startup".into(),
                checks: vec![
                    check_view(
                        "portal-form",
                        Role::Primary,
                        "https://support.example.com/hc/en-us/requests/new",
                        Health::Healthy,
                    ),
                    check_view(
                        "backup-form",
                        Role::Backup,
                        "https://forms.example.net/support",
                        Health::Healthy,
                    ),
                ],
                routes: vec![RouteView {
                    id: "submit-ticket".into(),
                    service: "ticket-submission".into(),
                    primary: "https://support.example.com/hc/en-us/requests/new".into(),
                    backup: "https://forms.example.net/support".into(),
                    active: Side::Primary,
                }],
                created_at: Timestamp(T0 - 30 * 86_400_000),
                maintenance_until: None,
            },
            ServiceView {
                id: "email-intake".into(),
                name: EVIL_NAME.into(),
                state: State::FailedOver,
                since: Timestamp(T0 - 600_000),
                cause: "primary_down".into(),
                checks: vec![check_view(
                    "intake-form",
                    Role::Primary,
                    "https://support.example.com/contact",
                    Health::Down,
                )],
                routes: vec![RouteView {
                    id: "email-support".into(),
                    service: "email-intake".into(),
                    primary: "https://support.example.com/contact".into(),
                    backup: "mailto:help@example.net".into(),
                    active: Side::Backup,
                }],
                created_at: Timestamp(T0 - 30 * 86_400_000),
                maintenance_until: None,
            },
        ],
    }
}

struct Server {
    addr: SocketAddr,
    publish: watch::Sender<Arc<Snapshot>>,
    ready: Arc<AtomicBool>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: impl hyper::header::AsHeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn start(snapshot: Snapshot) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (publish, rx) = watch::channel(Arc::new(snapshot));
    let ready = Arc::new(AtomicBool::new(false));
    let state = ApiState::new(rx, || METRICS_TEXT.to_string(), ready.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        publish,
        ready,
        stop,
        task,
    }
}

impl Server {
    async fn request(&self, method: &str, path: &str) -> Reply {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.request("GET", path).await
    }

    /// Graceful shutdown must complete and report success.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("join")
            .expect("serve returned an error");
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// The Statuspage v2 reference example, kept in the repository's testdata (a copy of the
/// design's `data/statuspage_summary_example.json`) so the test needs nothing outside it.
fn reference() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/statuspage/summary_example.json");
    let text = std::fs::read_to_string(&path).expect("reference example");
    serde_json::from_str(&text).expect("reference JSON")
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert!(reply.header(CONTENT_TYPE).starts_with("application/json"));
    let v = reply.json();
    assert_eq!(keys(&v), BTreeSet::from(["error".to_string()]));
    assert_eq!(v["error"]["code"], code);
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn go_redirects_to_the_active_target_of_either_side() {
    let server = start(fixture()).await;
    let cases = [
        (
            "/go/submit-ticket",
            "https://support.example.com/hc/en-us/requests/new",
        ),
        ("/go/email-support", "mailto:help@example.net"),
    ];
    for (path, target) in cases {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 307, "{path}");
        assert_eq!(reply.header(LOCATION), target, "{path}");
        assert_eq!(reply.header(CACHE_CONTROL), "no-store", "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn go_follows_a_newly_published_snapshot_at_once() {
    let server = start(fixture()).await;
    server.publish.send_modify(|snapshot| {
        let s = Arc::make_mut(snapshot);
        s.services[0].state = State::FailedOver;
        s.services[0].routes[0].active = Side::Backup;
    });
    let reply = server.get("/go/submit-ticket").await;
    assert_eq!(reply.status, 307);
    assert_eq!(reply.header(LOCATION), "https://forms.example.net/support");
    server.stop().await;
}

#[tokio::test]
async fn go_unknown_route_is_a_json_404() {
    let server = start(fixture()).await;
    assert_error(&server.get("/go/nope").await, 404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn routes_lists_every_route_with_its_active_target() {
    let server = start(fixture()).await;
    let reply = server.get("/api/v1/routes").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    assert_eq!(
        reply.json(),
        json!({"routes": [
            {
                "id": "submit-ticket",
                "service": "ticket-submission",
                "primary": "https://support.example.com/hc/en-us/requests/new",
                "backup": "https://forms.example.net/support",
                "active": "primary",
                "active_target": "https://support.example.com/hc/en-us/requests/new",
                "active_kind": "url",
                "active_display": "https://support.example.com/hc/en-us/requests/new",
                "go_url": "http://127.0.0.1:9898/go/submit-ticket"
            },
            {
                "id": "email-support",
                "service": "email-intake",
                "primary": "https://support.example.com/contact",
                "backup": "mailto:help@example.net",
                "active": "backup",
                "active_target": "mailto:help@example.net",
                "active_kind": "email",
                "active_display": "help@example.net",
                "go_url": "http://127.0.0.1:9898/go/email-support"
            }
        ]})
    );
    server.stop().await;
}

#[tokio::test]
async fn summary_has_the_reference_keys_and_our_states() {
    let server = start(fixture()).await;
    let reply = server.get("/api/v2/summary.json").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header(CONTENT_TYPE).starts_with("application/json"));
    let ours = reply.json();
    let reference = reference();

    assert_eq!(keys(&ours), keys(&reference), "top-level keys");
    assert_eq!(keys(&ours["page"]), keys(&reference["page"]), "page keys");
    assert_eq!(
        keys(&ours["status"]),
        keys(&reference["status"]),
        "status keys"
    );
    // Our components are plain (non-group) components; the reference's group component has
    // one extra key, `components`, which we must not emit.
    let reference_component = reference["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["group"] == false))
        .expect("a non-group component in the reference");
    let components = ours["components"].as_array().expect("components array");
    assert_eq!(components.len(), 2);
    for c in components {
        assert_eq!(keys(c), keys(reference_component), "component keys");
        assert_eq!(c["page_id"], ours["page"]["id"]);
        assert_eq!(c["id"].as_str().map(str::len), Some(12));
    }
    assert_ne!(components[0]["id"], components[1]["id"]);

    assert_eq!(ours["page"]["name"], "Acme Support Status");
    assert_eq!(ours["page"]["url"], "http://127.0.0.1:9898");
    assert_eq!(ours["page"]["time_zone"], "Etc/UTC");
    assert_eq!(ours["page"]["updated_at"], "2026-03-14T09:42:17.381Z");

    assert_eq!(components[0]["name"], "Ticket submission");
    assert_eq!(components[0]["status"], "operational");
    assert_eq!(components[0]["position"], 1);
    assert_eq!(components[1]["name"], EVIL_NAME);
    assert_eq!(components[1]["status"], "partial_outage");
    assert_eq!(components[1]["position"], 2);
    assert_eq!(components[1]["updated_at"], "2026-03-14T09:32:17.381Z");
    assert_eq!(components[1]["start_date"], "2026-02-12");
    let description = components[1]["description"].as_str().unwrap_or("");
    assert!(
        description.contains("backup") && description.contains("mailto:help@example.net"),
        "description names the route in use: {description}"
    );

    assert_eq!(
        ours["status"],
        json!({"indicator": "minor", "description": "Minor Service Outage"})
    );
    assert_eq!(ours["incidents"], json!([]));
    assert_eq!(ours["scheduled_maintenances"], json!([]));
    server.stop().await;
}

/// Our Statuspage types accept the reference example and serialize it back unchanged, so
/// incidents and maintenances, once filled in, will have exactly Statuspage's shape.
#[test]
fn reference_example_round_trips_through_our_types() {
    let reference = reference();
    let parsed: statuspage::Summary =
        serde_json::from_value(reference.clone()).expect("reference fits our types");
    assert_eq!(serde_json::to_value(&parsed).expect("serialize"), reference);
}

#[tokio::test]
async fn every_v2_document_has_statuspage_top_level_keys() {
    let server = start(fixture()).await;
    let cases: [(&str, &[&str]); 5] = [
        ("/api/v2/status.json", &["page", "status"]),
        ("/api/v2/components.json", &["page", "components"]),
        ("/api/v2/incidents.json", &["page", "incidents"]),
        ("/api/v2/incidents/unresolved.json", &["page", "incidents"]),
        (
            "/api/v2/scheduled-maintenances.json",
            &["page", "scheduled_maintenances"],
        ),
    ];
    let summary = server.get("/api/v2/summary.json").await.json();
    for (path, want) in cases {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        let v = reply.json();
        let want: BTreeSet<String> = want.iter().map(|k| k.to_string()).collect();
        assert_eq!(keys(&v), want, "{path}");
        // Each document is a slice of the summary, never a different view of it.
        for key in &want {
            assert_eq!(v[key], summary[key], "{path} {key}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn status_json_rolls_up_to_none_when_everything_is_operational() {
    let mut snapshot = fixture();
    snapshot.services[1].state = State::Operational;
    snapshot.services[1].routes[0].active = Side::Primary;
    let server = start(snapshot).await;
    let v = server.get("/api/v2/status.json").await.json();
    assert_eq!(
        v["status"],
        json!({"indicator": "none", "description": "All Systems Operational"})
    );
    server.stop().await;
}

#[tokio::test]
async fn status_page_shows_each_service_in_plain_words_and_escapes_names() {
    let server = start(fixture()).await;
    let reply = server.get("/status").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header(CONTENT_TYPE).starts_with("text/html"));
    let html = &reply.body;
    for must in [
        "<html lang=\"en\">",
        "<meta name=\"viewport\"",
        "<meta http-equiv=\"refresh\" content=\"30\">",
        "<title>Acme Support Status</title>",
        "<header>",
        "<main>",
        "<h1>Acme Support Status</h1>",
        "Minor Service Outage",
        "Ticket submission",
        "Operational",
        "Support e-mail &lt;script&gt;alert(1)&lt;/script&gt;",
        "Using backup route",
        "href=\"https://support.example.com/hc/en-us/requests/new\"",
        "href=\"mailto:help@example.net\"",
        "href=\"http://127.0.0.1:9898/go/email-support\"",
        "2026-03-14 09:32 UTC",
    ] {
        assert!(html.contains(must), "missing {must:?} in\n{html}");
    }
    // No script at all: neither the injected one nor any of our own, and nothing external.
    assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
    assert!(!html.contains("<link"), "{html}");
    assert!(!html.contains("src="), "{html}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_serves_the_closure_text_as_prometheus_0_0_4() {
    let server = start(fixture()).await;
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header(CONTENT_TYPE),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(reply.body, METRICS_TEXT);
    server.stop().await;
}

#[tokio::test]
async fn healthz_is_always_ok_and_readyz_follows_the_flag() {
    let server = start(fixture()).await;
    let health = server.get("/healthz").await;
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    assert_eq!(server.get("/readyz").await.status, 503);
    server.ready.store(true, Ordering::Release);
    assert_eq!(server.get("/readyz").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_errors() {
    let server = start(fixture()).await;
    assert_error(&server.get("/nope").await, 404, "not_found");
    assert_error(&server.get("/go/").await, 404, "not_found");
    let wrong_method = server.request("POST", "/api/v1/routes").await;
    assert_error(&wrong_method, 405, "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), "GET,HEAD");
    server.stop().await;
}

#[tokio::test]
async fn head_on_go_redirects_without_a_body() {
    let server = start(fixture()).await;
    let reply = server.request("HEAD", "/go/email-support").await;
    assert_eq!(reply.status, 307);
    assert_eq!(reply.header(LOCATION), "mailto:help@example.net");
    assert!(reply.body.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn text_routes_show_their_instructions_and_phone_routes_redirect_to_tel() {
    let server = start(fixture()).await;
    server.publish.send_modify(|snapshot| {
        let s = Arc::make_mut(snapshot);
        s.services[0].routes[0].backup = "text:Call <reception> on +44 20 7946 0000".into();
        s.services[0].routes[0].active = Side::Backup;
        s.services[1].routes[0].backup = "tel:+44 20 7946 0000".into();
    });
    let reply = server.get("/go/submit-ticket").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header(CACHE_CONTROL), "no-store");
    assert!(
        reply
            .body
            .contains("Call &lt;reception&gt; on +44 20 7946 0000"),
        "{}",
        reply.body
    );
    let reply = server.get("/go/email-support").await;
    assert_eq!(reply.status, 307);
    assert_eq!(reply.header(LOCATION), "tel:+44 20 7946 0000");
    let routes = server.get("/api/v1/routes").await.json();
    assert_eq!(routes["routes"][0]["active_kind"], "text");
    assert_eq!(
        routes["routes"][0]["active_display"],
        "Call <reception> on +44 20 7946 0000"
    );
    assert_eq!(routes["routes"][1]["active_kind"], "phone");
    let page = server.get("/status").await.body;
    assert!(
        page.contains("Call &lt;reception&gt; on +44 20 7946 0000"),
        "{page}"
    );
    assert!(
        page.contains(r#"<a href="tel:+44 20 7946 0000">+44 20 7946 0000</a>"#),
        "{page}"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Incidents, maintenances, history and feeds: a board over a real (in-memory) store.
// ---------------------------------------------------------------------------------------

use std::time::Duration;
use switchboard::api::incidents::{add_update, UpdateRequest};
use switchboard::failover::window::{Cron, Schedule, Window};
use switchboard::failover::{Cause, Transition};
use switchboard::history::History;
use switchboard::store::Store;
use switchboard::view::Board;

fn transition(service: &str, from: State, to: State, at: i64) -> Transition {
    Transition {
        service: service.into(),
        from,
        to,
        cause: Cause::PrimaryDown,
        at: Timestamp(at),
        actor: "system".into(),
        reason: "intake-form: down (503)".into(),
        evidence: vec![],
        public_message: None,
    }
}

/// The fixture's store: ticket submission failed over and recovered (a resolved incident),
/// the e-mail intake failed over and is still on its backup (an open one); both services
/// have probe history from today; ticket submission has a planned window in progress
/// (every minute, lasting an hour) and a one-off window tomorrow.
async fn board() -> (Arc<Board>, Arc<Store>) {
    let store = Arc::new(Store::open_in_memory().expect("store"));
    for id in ["ticket-submission", "email-intake"] {
        store
            .ensure_service(id, Timestamp(T0 - 86_400_000))
            .expect("ensure");
    }
    let steps = [
        (
            "ticket-submission",
            State::Operational,
            State::FailedOver,
            T0 - 7_200_000,
        ),
        (
            "ticket-submission",
            State::FailedOver,
            State::Recovering,
            T0 - 6_000_000,
        ),
        (
            "ticket-submission",
            State::Recovering,
            State::Operational,
            T0 - 5_700_000,
        ),
        (
            "email-intake",
            State::Operational,
            State::FailedOver,
            T0 - 600_000,
        ),
    ];
    for (service, from, to, at) in steps {
        store
            .commit_transition(&transition(service, from, to, at), "cfg", &[])
            .expect("commit");
    }
    let history = Arc::new(History::new(vec![
        "ticket-submission".into(),
        "email-intake".into(),
    ]));
    let now = Timestamp::now();
    // 200 minutes of probes within one UTC day: ending now, or, in a day's first 200
    // minutes, at the end of yesterday (else the bars split them over two days and the
    // page's figures depend on the time of day the test runs).
    const DAY_MS: i64 = 86_400_000;
    let into_day = now.0.rem_euclid(DAY_MS);
    let end = if into_day >= 200 * 60_000 {
        now.0
    } else {
        now.0 - into_day - 1
    };
    for i in 0..200u64 {
        let at = Timestamp(end - i64::try_from(i).unwrap() * 60_000);
        history.record(
            "ticket-submission",
            true,
            Duration::from_millis(20 + i % 30),
            at,
        );
        history.record("email-intake", i % 4 != 0, Duration::from_millis(80), at);
    }
    history.flush(&store, now).expect("flush");
    let windows = vec![(
        "ticket-submission".to_string(),
        vec![
            Window {
                schedule: Schedule::Cron(Cron::parse("* * * * *").expect("cron")),
                duration: Duration::from_secs(3600),
                reason: "Rolling patching of the form servers".into(),
            },
            Window {
                schedule: Schedule::Once(now.plus(Duration::from_secs(86_400))),
                duration: Duration::from_secs(7200),
                reason: "Database upgrade".into(),
            },
        ],
    )];
    let board = Arc::new(Board::new(store.clone(), history, windows));
    board.reload_incidents().await.expect("incidents");
    (board, store)
}

async fn start_with_board(snapshot: Snapshot) -> (Server, Arc<Board>, ApiState) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (publish, rx) = watch::channel(Arc::new(snapshot));
    let ready = Arc::new(AtomicBool::new(true));
    let (board, _store) = board().await;
    let state =
        ApiState::new(rx, || METRICS_TEXT.to_string(), ready.clone()).with_board(board.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let server = Server {
        addr,
        publish,
        ready,
        stop,
        task,
    };
    (server, board, state)
}

const COMPONENT_STATUSES: &[&str] = &[
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
];
const INCIDENT_STATUSES: &[&str] = &[
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "postmortem",
];
const MAINTENANCE_STATUSES: &[&str] = &["scheduled", "in_progress", "verifying", "completed"];
const IMPACTS: &[&str] = &["none", "minor", "major", "critical", "maintenance"];

/// Compares `ours` with the reference value of the same role, recursively: the same keys
/// (group components aside), the same JSON types (null stands in for any type, as
/// Statuspage's optional fields do), Statuspage's enum values, and timestamp formats.
/// Returns how many objects were compared, so a caller can see the walk went deep.
fn same_shape(ours: &Value, reference: &Value, path: &str) -> usize {
    match (ours, reference) {
        (Value::Object(o), Value::Object(r)) => {
            let (ok, rk) = (keys(ours), keys(reference));
            assert_eq!(ok, rk, "keys at {path}");
            let mut n = 1;
            for (k, v) in o {
                let p = format!("{path}.{k}");
                check_value(k, v, ours, &p);
                n += same_shape(v, &r[k], &p);
            }
            n
        }
        (Value::Array(o), Value::Array(r)) => {
            // Compare each of ours with the reference element of the same kind: a plain
            // component with the reference's plain one, a group with its group.
            o.iter()
                .enumerate()
                .map(|(i, v)| {
                    let model = r
                        .iter()
                        .find(|m| m.get("group") == v.get("group"))
                        .or(r.first());
                    model.map_or(0, |m| same_shape(v, m, &format!("{path}[{i}]")))
                })
                .sum()
        }
        (Value::Null, _) | (_, Value::Null) => 0,
        (o, r) => {
            let kind = |v: &Value| match v {
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                _ => "other",
            };
            assert_eq!(kind(o), kind(r), "type at {path}: {o} vs {r}");
            0
        }
    }
}

/// Enum and format checks for one field, by its key and its parent object.
fn check_value(key: &str, v: &Value, parent: &Value, path: &str) {
    let Some(s) = v.as_str() else { return };
    let is_maintenance = parent.get("scheduled_for").is_some();
    let one_of = |allowed: &[&str]| {
        assert!(
            allowed.contains(&s),
            "{path} = {s:?} is not one of {allowed:?}"
        );
    };
    match key {
        "indicator" => one_of(&["none", "minor", "major", "critical", "maintenance"]),
        "impact" => one_of(IMPACTS),
        "old_status" | "new_status" => one_of(COMPONENT_STATUSES),
        "status" if parent.get("group").is_some() => one_of(COMPONENT_STATUSES),
        "status" if parent.get("incident_updates").is_some() => one_of(if is_maintenance {
            MAINTENANCE_STATUSES
        } else {
            INCIDENT_STATUSES
        }),
        "status" if parent.get("incident_id").is_some() => {
            let all: Vec<&str> = INCIDENT_STATUSES
                .iter()
                .chain(MAINTENANCE_STATUSES)
                .copied()
                .collect();
            one_of(&all)
        }
        "start_date" => assert!(
            s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-',
            "{path} = {s:?} is not a date"
        ),
        k if k.ends_with("_at") || k == "scheduled_for" || k == "scheduled_until" => assert!(
            s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T',
            "{path} = {s:?} is not an RFC 3339 UTC timestamp with milliseconds"
        ),
        _ => {}
    }
}

#[tokio::test]
async fn every_v2_document_has_the_reference_shape_all_the_way_down() {
    let (server, _board, _state) = start_with_board(fixture()).await;
    let reference = reference();
    let page = &reference["page"];
    let cases: [(&str, Value); 8] = [
        ("/api/v2/summary.json", reference.clone()),
        (
            "/api/v2/status.json",
            json!({"page": page, "status": reference["status"]}),
        ),
        (
            "/api/v2/components.json",
            json!({"page": page, "components": reference["components"]}),
        ),
        (
            "/api/v2/incidents.json",
            json!({"page": page, "incidents": reference["incidents"]}),
        ),
        (
            "/api/v2/incidents/unresolved.json",
            json!({"page": page, "incidents": reference["incidents"]}),
        ),
        (
            "/api/v2/scheduled-maintenances.json",
            json!({"page": page, "scheduled_maintenances": reference["scheduled_maintenances"]}),
        ),
        (
            "/api/v2/scheduled-maintenances/upcoming.json",
            json!({"page": page, "scheduled_maintenances": reference["scheduled_maintenances"]}),
        ),
        (
            "/api/v2/scheduled-maintenances/active.json",
            json!({"page": page, "scheduled_maintenances": reference["scheduled_maintenances"]}),
        ),
    ];
    for (path, model) in cases {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(reply.header(CONTENT_TYPE).starts_with("application/json"));
        let ours = reply.json();
        let compared = same_shape(&ours, &model, path);
        assert!(compared >= 2, "{path}: only {compared} objects compared");
        // The reference itself passes the enum and format checks (they are not too strict).
        same_shape(&model, &model, "reference");
    }

    // The documents are not vacuously empty: every list has entries with nested updates.
    let summary = server.get("/api/v2/summary.json").await.json();
    let all = server.get("/api/v2/incidents.json").await.json();
    let unresolved = server.get("/api/v2/incidents/unresolved.json").await.json();
    let maint = server
        .get("/api/v2/scheduled-maintenances.json")
        .await
        .json();
    let upcoming = server
        .get("/api/v2/scheduled-maintenances/upcoming.json")
        .await
        .json();
    let active = server
        .get("/api/v2/scheduled-maintenances/active.json")
        .await
        .json();
    let len = |v: &Value, k: &str| v[k].as_array().map_or(0, Vec::len);
    assert_eq!(len(&all, "incidents"), 2);
    assert_eq!(len(&unresolved, "incidents"), 1);
    assert_eq!(summary["incidents"], unresolved["incidents"]);
    // In progress (the hourly window), its next start, and the one-off tomorrow.
    assert_eq!(len(&maint, "scheduled_maintenances"), 3);
    assert_eq!(len(&active, "scheduled_maintenances"), 1);
    assert_eq!(len(&upcoming, "scheduled_maintenances"), 2);
    assert_eq!(
        summary["scheduled_maintenances"],
        maint["scheduled_maintenances"]
    );
    assert_eq!(active["scheduled_maintenances"][0]["status"], "in_progress");
    for m in upcoming["scheduled_maintenances"].as_array().unwrap() {
        assert_eq!(m["status"], "scheduled");
        assert_eq!(m["impact"], "maintenance");
    }
    server.stop().await;
}

#[tokio::test]
async fn incidents_follow_the_transitions_with_timed_updates() {
    let (server, _board, _state) = start_with_board(fixture()).await;
    let v = server.get("/api/v2/incidents.json").await.json();
    let incidents = v["incidents"].as_array().expect("incidents");
    // Newest first: the e-mail intake's open incident, then ticket submission's resolved one.
    let open = &incidents[0];
    assert_eq!(open["status"], "identified");
    assert_eq!(open["impact"], "minor");
    assert_eq!(open["resolved_at"], Value::Null);
    assert_eq!(open["started_at"], "2026-03-14T09:32:17.381Z");
    // This store was never told the services' names, so the incident names the id.
    assert_eq!(
        open["name"],
        "email-intake is failing; customers are sent to the backup route"
    );
    assert_eq!(open["components"][0]["name"], EVIL_NAME);
    assert_eq!(open["components"][0]["status"], "partial_outage");
    assert_eq!(
        open["shortlink"],
        format!(
            "http://127.0.0.1:9898/status#incident-{}",
            open["id"].as_str().unwrap()
        )
    );
    let updates = open["incident_updates"].as_array().unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["incident_id"], open["id"]);
    assert_eq!(
        updates[0]["affected_components"][0]["old_status"],
        "operational"
    );
    assert_eq!(
        updates[0]["affected_components"][0]["new_status"],
        "partial_outage"
    );

    let resolved = &incidents[1];
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["resolved_at"], "2026-03-14T08:07:17.381Z");
    assert_eq!(resolved["monitoring_at"], "2026-03-14T08:02:17.381Z");
    let trail: Vec<(&str, &str)> = resolved["incident_updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["status"].as_str().unwrap(),
                u["created_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("resolved", "2026-03-14T08:07:17.381Z"),
            ("monitoring", "2026-03-14T08:02:17.381Z"),
            ("identified", "2026-03-14T07:42:17.381Z"),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn an_operator_update_joins_the_timeline_and_can_resolve() {
    let (server, board, state) = start_with_board(fixture()).await;
    let id = board.incidents()[0].public_id.clone();
    let req = |status: &str, body: &str| UpdateRequest {
        status: status.into(),
        body: body.into(),
    };
    let answer = add_update(
        &state,
        &id,
        "alice",
        req("resolved", "The vendor fixed the form."),
    )
    .await
    .expect("update accepted");
    assert_eq!(answer.status(), 201);
    let v = server.get("/api/v2/incidents.json").await.json();
    let incident = v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .expect("the incident");
    assert_eq!(incident["status"], "resolved");
    assert_eq!(
        incident["incident_updates"][0]["body"],
        "The vendor fixed the form."
    );
    assert_eq!(incident["incident_updates"][0]["status"], "resolved");
    let unresolved = server.get("/api/v2/incidents/unresolved.json").await.json();
    assert_eq!(unresolved["incidents"], json!([]));

    let err = add_update(&state, "nope", "alice", req("resolved", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 404);
    let err = add_update(&state, &id, "alice", req("done", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 422);
    server.stop().await;
}

#[tokio::test]
async fn status_page_shows_incidents_maintenance_uptime_bars_and_sparklines() {
    let (server, board, _state) = start_with_board(fixture()).await;
    let html = server.get("/status").await.body;
    // The failed-over service's card points at its open incident, which the page holds.
    let open = board.incidents()[0].public_id.clone();
    assert!(
        html.contains(&format!("<a href=\"#incident-{open}\">")),
        "{html}"
    );
    assert!(html.contains(&format!("id=\"incident-{open}\"")), "{html}");
    for must in [
        "<h2 id=\"h-active\">Active incidents</h2>",
        "<h2 id=\"h-maint\">Scheduled maintenance</h2>",
        "<h2 id=\"h-services\">Services</h2>",
        "<h2 id=\"h-past\">Past incidents</h2>",
        "Rolling patching of the form servers",
        "Database upgrade",
        "<strong>In progress</strong>",
        "<strong>Scheduled</strong>",
        "<strong>Identified</strong>",
        "<strong>Monitoring</strong>",
        "<strong>Resolved</strong>",
        // Ticket submission: every probe today succeeded; e-mail intake: 3 of 4. Their
        // history is hours old, so the uptime says since when, not "over the last 90 days".
        "100% uptime of the primary route since ",
        "75.00% uptime of the primary route since ",
        "Response time over the last 24 hours: 80 ms on average, 80 ms at most",
        "role=\"img\"",
        "<footer>",
        "href=\"http://127.0.0.1:9898/history.atom\"",
    ] {
        assert!(html.contains(must), "missing {must:?} in\n{html}");
    }
    // 90 bars per service, drawn as one path per colour; every colour has its text
    // alternative, and days with failed probes are named in it.
    // The commonest colour is one dashed line of 90 dashes; the others are drawn over it.
    assert_eq!(html.matches("stroke-dasharray=\"8 2\"").count(), 2);
    assert_eq!(html.matches("M0 17h900").count(), 2);
    assert_eq!(
        html.matches("<path ").count(),
        html.matches("</title></path>").count()
    );
    assert!(html.contains("days: no data"), "{html}");
    assert!(html.contains(" 75.00%)</title>"), "{html}");
    // Headings: one h1, then h2 sections, then h3 items; never a skipped level.
    assert_eq!(html.matches("<h1").count(), 1);
    assert!(!html.contains("<h4"));
    let first_h3 = html.find("<h3").expect("an h3");
    assert!(html.find("<h2").expect("an h2") < first_h3);
    assert!(!html.to_ascii_lowercase().contains("<script"));
    assert!(!html.contains("src="));
    server.stop().await;
}

/// Runs Python's XML parser over `xml` with `script` (which reads the document from stdin
/// and prints a JSON verdict), so the feeds are checked by a parser we did not write.
fn python_xml(xml: &str, script: &str) -> Value {
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is required: run ./scripts/test.sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(xml.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "python3 rejected the feed: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

const ATOM_CHECK: &str = r#"
import sys, json, xml.etree.ElementTree as ET
from datetime import datetime
A = '{http://www.w3.org/2005/Atom}'
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == A + 'feed', root.tag
def text(el, name):
    child = el.find(A + name)
    assert child is not None and (child.text or '').strip(), 'missing ' + name
    return child.text
def when(s):
    return datetime.fromisoformat(s.replace('Z', '+00:00'))
for name in ('id', 'title', 'updated'):
    text(root, name)
when(text(root, 'updated'))
assert root.find(A + 'author/' + A + 'name') is not None, 'feed author'
entries = []
for e in root.findall(A + 'entry'):
    for name in ('id', 'title', 'updated'):
        text(e, name)
    when(text(e, 'updated'))
    link = e.find(A + 'link')
    assert link is not None and link.get('href'), 'entry link'
    content = e.find(A + 'content')
    assert content is not None and content.get('type') == 'html' and content.text, 'content'
    entries.append({'id': text(e, 'id'), 'title': text(e, 'title'), 'content': content.text})
ids = [e['id'] for e in entries]
assert len(ids) == len(set(ids)), 'entry ids are unique'
print(json.dumps({'entries': entries}))
"#;

const RSS_CHECK: &str = r#"
import sys, json, xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == 'rss' and root.get('version') == '2.0', root.tag
channel = root.find('channel')
assert channel is not None
for name in ('title', 'link', 'description'):
    assert (channel.findtext(name) or '').strip(), 'channel ' + name
parsedate_to_datetime(channel.findtext('lastBuildDate'))
items = []
for i in channel.findall('item'):
    assert (i.findtext('title') or i.findtext('description')), 'item title or description'
    for name in ('title', 'link', 'guid', 'pubDate', 'description'):
        assert (i.findtext(name) or '').strip(), 'item ' + name
    parsedate_to_datetime(i.findtext('pubDate'))
    items.append({'title': i.findtext('title'), 'guid': i.findtext('guid')})
print(json.dumps({'items': items}))
"#;

#[tokio::test]
async fn history_feeds_are_valid_atom_and_rss_with_every_incident() {
    let (server, board, _state) = start_with_board(fixture()).await;
    let atom = server.get("/history.atom").await;
    assert_eq!(atom.status, 200);
    assert!(atom
        .header(CONTENT_TYPE)
        .starts_with("application/atom+xml"));
    let v = python_xml(&atom.body, ATOM_CHECK);
    let entries = v["entries"].as_array().expect("entries");
    // Two incidents and three maintenances.
    assert_eq!(entries.len(), 5, "{v}");
    let open = &board.incidents()[0];
    assert_eq!(
        entries[0]["id"],
        format!("http://127.0.0.1:9898/status#incident-{}", open.public_id)
    );
    assert!(entries[0]["title"]
        .as_str()
        .unwrap()
        .ends_with("[Identified]"));
    // The content is the incident's timeline as HTML, which the parser hands back as text.
    assert!(entries[1]["content"]
        .as_str()
        .unwrap()
        .contains("<strong>Resolved</strong>"));

    let rss = server.get("/history.rss").await;
    assert_eq!(rss.status, 200);
    assert!(rss.header(CONTENT_TYPE).starts_with("application/rss+xml"));
    let v = python_xml(&rss.body, RSS_CHECK);
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 5, "{v}");
    assert_eq!(items[0]["guid"], entries[0]["id"]);
    server.stop().await;
}

/// Stands in for the control API's bearer-token `Caller` (on the `control` branch) so the
/// route's own behaviour can be tested now: `Bearer op` is operator alice, `Bearer viewer`
/// is a viewer, anything else is unauthenticated.
struct TestCaller {
    name: String,
    operator: bool,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TestCaller {
    type Rejection = api::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        match parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some("Bearer op") => Ok(TestCaller {
                name: "alice".into(),
                operator: true,
            }),
            Some("Bearer viewer") => Ok(TestCaller {
                name: "victor".into(),
                operator: false,
            }),
            _ => Err(api::ApiError::Unauthorized),
        }
    }
}

impl api::incidents::Operator for TestCaller {
    fn operator_name(self) -> Result<String, api::ApiError> {
        if self.operator {
            Ok(self.name)
        } else {
            Err(api::ApiError::Forbidden("operators only".into()))
        }
    }
}

async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8"),
    }
}

#[tokio::test]
async fn the_incident_update_route_answers_like_the_rest_of_the_control_api() {
    let (server, board, state) = start_with_board(fixture()).await;
    let id = board.incidents()[0].public_id.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .merge(api::incidents::incident_update_route::<TestCaller>())
        .with_state(state);
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let path = format!("/api/v1/incidents/{id}/updates");
    let json_type = ("content-type", "application/json");
    let good = r#"{"status": "monitoring", "body": "A fix is deployed; we are watching it."}"#;

    assert_error(
        &post(addr, &path, &[json_type], good).await,
        401,
        "unauthorized",
    );
    let viewer = ("authorization", "Bearer viewer");
    assert_error(
        &post(addr, &path, &[json_type, viewer], good).await,
        403,
        "forbidden",
    );
    let op = ("authorization", "Bearer op");
    // (path, headers, body, status, error code)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u16, &'a str);
    let cases: [Case; 5] = [
        (&path, &[json_type, op], "{not json", 400, "bad_request"),
        (&path, &[op], good, 415, "unsupported_media_type"),
        (
            &path,
            &[json_type, op],
            r#"{"status": "fixed", "body": "x"}"#,
            422,
            "unprocessable",
        ),
        (
            &path,
            &[json_type, op],
            r#"{"status": "resolved"}"#,
            422,
            "unprocessable",
        ),
        (
            "/api/v1/incidents/nope/updates",
            &[json_type, op],
            good,
            404,
            "not_found",
        ),
    ];
    for (p, headers, body, status, code) in cases {
        assert_error(&post(addr, p, headers, body).await, status, code);
    }

    let reply = post(addr, &path, &[json_type, op], good).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["incident"]["id"], id.as_str());
    assert_eq!(v["incident"]["status"], "monitoring");
    assert_eq!(
        v["incident"]["incident_updates"][0]["body"],
        "A fix is deployed; we are watching it."
    );
    // The public documents show it at once.
    let open = server.get("/api/v2/incidents/unresolved.json").await.json();
    assert_eq!(open["incidents"][0]["status"], "monitoring");
    assert_eq!(
        open["incidents"][0]["incident_updates"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    task.abort();
    server.stop().await;
}

#[tokio::test]
async fn concurrent_scrapes_share_renders_but_none_is_older_than_its_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_publish, rx) = watch::channel(Arc::new(fixture()));
    let renders = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let r = renders.clone();
    let state = ApiState::new(
        rx,
        move || {
            // Slow enough that scrapes pile up behind a render.
            std::thread::sleep(std::time::Duration::from_millis(50));
            format!("renders {}\n", r.fetch_add(1, Ordering::SeqCst) + 1)
        },
        Arc::new(AtomicBool::new(true)),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let server = Server {
        addr,
        publish: watch::channel(Arc::new(fixture())).0,
        ready: Arc::new(AtomicBool::new(true)),
        stop,
        task,
    };
    // One after another: each scrape gets a render of its own, never the previous one.
    for n in 1..=3 {
        assert_eq!(server.get("/metrics").await.body, format!("renders {n}\n"));
    }
    // Twenty at once: they share renders (the first one's, and the one after it).
    let all = scrape_concurrently(&server, 20).await;
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert!(distinct.len() <= 3, "{distinct:?}");
    assert!(renders.load(Ordering::SeqCst) <= 6);
    server.stop().await;
}

/// `n` concurrent GETs of `/metrics`; their bodies.
async fn scrape_concurrently(server: &Server, n: usize) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let addr = server.addr;
        set.spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let request = hyper::Request::builder()
                .uri("/metrics")
                .header("host", addr.to_string())
                .body(Empty::<Bytes>::new())
                .expect("request");
            let response = sender.send_request(request).await.expect("response");
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            String::from_utf8(body.to_vec()).expect("utf-8")
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.expect("task"));
    }
    out
}
