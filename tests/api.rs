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

/// The Statuspage reference lives in `shared/` beside the repository (`../shared/data/...`).
/// A git worktree may sit deeper than the main checkout, so nearer ancestors are tried first
/// and the first one holding the file wins.
fn reference() -> Value {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/data/statuspage_summary_example.json"))
        .find(|p| p.is_file())
        .expect("shared/data/statuspage_summary_example.json beside the repository");
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
