//! Shared by the control-API tests: raw HTTP requests with a method, token and body, and a daemon set up with tokens of each role.

use super::daemon::{write_config, Daemon, Response, Target};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A request over a fresh loopback connection. `body` is sent as JSON unless
/// `content_type` says otherwise.
pub fn request(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> Response {
    request_with(method, url, token, body, Some("application/json"), None)
}

/// `request` with a chosen content type and source address (to act as another client).
pub fn request_with(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    content_type: Option<&str>,
    from: Option<IpAddr>,
) -> Response {
    request_headers(method, url, token, body, content_type, from, &[])
}

/// `request_with` plus extra header lines (`name`, `value`), such as a proxy's
/// `X-Forwarded-For`.
pub fn request_headers(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    content_type: Option<&str>,
    from: Option<IpAddr>,
    extra: &[(&str, &str)],
) -> Response {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let addr: SocketAddr = host.parse().expect("host:port");
    let mut s = match from {
        None => TcpStream::connect(addr).expect("connect"),
        Some(ip) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let sock = tokio::net::TcpSocket::new_v4().expect("socket");
                sock.bind(SocketAddr::new(ip, 0)).expect("bind source");
                let s = sock.connect(addr).await.expect("connect");
                let s = s.into_std().expect("std stream");
                s.set_nonblocking(false).expect("blocking");
                s
            })
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    // A large body may be refused before it is all sent; that is the point of some tests.
    let _ = s.write_all(body.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    Response::parse(&raw)
}

pub fn json(r: &Response) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

/// Asserts the one error shape, a status and that the message mentions `needle`.
pub fn assert_error(r: &Response, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{r:?}");
    let v = json(r);
    assert!(v["error"]["code"].is_string(), "{r:?}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

/// Tokens of each role, created through the library the CLI uses.
pub struct Tokens {
    pub viewer: String,
    pub operator: String,
    pub admin: String,
}

/// Adds `[auth] tokens_file` to the main config file and creates one token per role.
pub fn add_tokens(main: &Path) -> Tokens {
    let dir = main.parent().expect("config dir");
    let mut text = std::fs::read_to_string(main).expect("read config");
    text.push_str("\n[auth]\ntokens_file = \"tokens.toml\"\n");
    std::fs::write(main, text).expect("write config");
    let file = dir.join("tokens.toml");
    use switchboard::api::auth::{new_token, Role};
    Tokens {
        viewer: new_token(&file, "vera", Role::Viewer).expect("viewer token"),
        operator: new_token(&file, "olga", Role::Operator).expect("operator token"),
        admin: new_token(&file, "adam", Role::Admin).expect("admin token"),
    }
}

/// A running daemon against `target` with tokens, e-mail as `.eml` files unless `email` says
/// otherwise; returns it with its config path and tokens.
pub fn start(dir: &Path, target: &Target, email: Option<&str>) -> (Daemon, PathBuf, Tokens) {
    let (main, port, tokens) = prepare(dir, target, email);
    let d = Daemon::start_with(&main, port, &[], Some(&dir.join("daemon.log")));
    (d, main, tokens)
}

/// `start` without starting: the config (main file, port) and tokens, for tests that edit
/// the service file first.
pub fn prepare(dir: &Path, target: &Target, email: Option<&str>) -> (PathBuf, u16, Tokens) {
    let file_email = format!(
        "transport = \"file\"\ndir = \"{}\"",
        dir.join("mail").display()
    );
    let (main, port) = write_config(dir, target, email.unwrap_or(&file_email));
    let tokens = add_tokens(&main);
    (main, port, tokens)
}

/// Polls a drill until its report is complete; returns the report.
pub fn wait_drill(d: &Daemon, token: &str, id: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    super::daemon::wait_until("drill report complete", Duration::from_secs(90), || {
        let r = request(
            "GET",
            &d.url(&format!("/api/v1/drills/{id}")),
            Some(token),
            None,
        );
        assert_eq!(r.status, 200, "{r:?}");
        last = json(&r);
        last["status"] != "running"
    });
    last
}

/// The step named `name` of a report.
pub fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

/// The service detail from `GET /api/v1/services/{id}`.
pub fn service(d: &Daemon, token: &str, id: &str) -> serde_json::Value {
    let r = request(
        "GET",
        &d.url(&format!("/api/v1/services/{id}")),
        Some(token),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    json(&r)
}

/// Whether every check of the service has been probed healthy.
pub fn all_healthy(d: &Daemon, token: &str, id: &str) -> bool {
    service(d, token, id)["checks"]
        .as_array()
        .is_some_and(|c| c.iter().all(|c| c["health"] == "healthy"))
}

/// The audit log as parsed JSON lines.
pub fn audit(d: &Daemon, token: &str, query: &str) -> Vec<serde_json::Value> {
    let r = request(
        "GET",
        &d.url(&format!("/api/v1/audit{query}")),
        Some(token),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    r.body
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}
