//! A fake Zendesk on loopback (axum on a runtime of its own, so sync and async tests share it):
//! the OAuth refresh-token grant (`POST /oauth/tokens`, rotating the refresh token at each
//! refresh as Zendesk does) and one Help Center article with its translation. Every request
//! is checked as Zendesk would: the method and path (404 otherwise), `Authorization: Bearer`
//! with a live access token (401 otherwise), and the JSON body's shape (400 otherwise).
//! Answers can be made to fail once (500, 429 with `Retry-After`, 401 revoking the tokens).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "switchboard-notices";
pub const CLIENT_SECRET: &str = "cs-9f8e7d-s3cr3t";
/// The refresh token granted first (what the configuration holds).
pub const FIRST_REFRESH: &str = "rt-0-first-grant";
pub const ARTICLE: u64 = 360_001_234;
pub const LOCALE: &str = "en-us";
pub const ORIGINAL_TITLE: &str = "Contact support";
pub const ORIGINAL_BODY: &str =
    "<p>Write to us through the <a href=\"/hc/requests/new\">form</a>.</p>";

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// What the fake answered.
    pub status: u16,
}

#[derive(Debug)]
struct Inner {
    seen: Vec<Seen>,
    /// The refresh token that works now; every refresh replaces it.
    refresh: String,
    refreshes: u32,
    /// The access tokens that work now.
    live: Vec<String>,
    /// `expires_in` of the next grant.
    expires_in: u64,
    title: String,
    body: String,
    promoted: bool,
    /// (method, path) answered once with (status, Retry-After) instead of being done.
    failures: VecDeque<(String, String, u16, Option<u64>)>,
}

#[derive(Clone)]
pub struct FakeZendesk {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    stop: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

impl FakeZendesk {
    /// Starts the fake with the article's original translation, not promoted.
    pub fn start() -> FakeZendesk {
        let inner = Arc::new(Mutex::new(Inner {
            seen: Vec::new(),
            refresh: FIRST_REFRESH.to_owned(),
            refreshes: 0,
            live: Vec::new(),
            expires_in: 7200,
            title: ORIGINAL_TITLE.to_owned(),
            body: ORIGINAL_BODY.to_owned(),
            promoted: false,
            failures: VecDeque::new(),
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/oauth/tokens", post(token))
            .route(
                "/api/v2/help_center/articles/{id}/translations/{locale}",
                get(translation).put(translation),
            )
            .route(
                "/api/v2/help_center/articles/{id}",
                get(article).put(article),
            )
            .fallback(not_found)
            .with_state(inner.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        FakeZendesk {
            base,
            inner,
            stop: Arc::new(Mutex::new(Some(tx))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("lock"))
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.with(|i| i.seen.clone())
    }

    /// The requests other than the token endpoint's, as `METHOD /path -> status`.
    pub fn api_calls(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter(|s| s.path != "/oauth/tokens")
            .map(|s| format!("{} {} -> {}", s.method, s.path, s.status))
            .collect()
    }

    /// (title, body, promoted) of the article now.
    pub fn article(&self) -> (String, String, bool) {
        self.with(|i| (i.title.clone(), i.body.clone(), i.promoted))
    }

    pub fn refreshes(&self) -> u32 {
        self.with(|i| i.refreshes)
    }

    /// The refresh token that works now.
    pub fn current_refresh(&self) -> String {
        self.with(|i| i.refresh.clone())
    }

    /// `expires_in` of the grants from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.with(|i| i.expires_in = secs);
    }

    /// The next `method path` is answered `status` (with `Retry-After` when given), once; a
    /// 401 also revokes every access token handed out, as when one is revoked or expires.
    pub fn fail_once(&self, method: &str, path: &str, status: u16, retry_after: Option<u64>) {
        self.with(|i| {
            i.failures
                .push_back((method.to_owned(), path.to_owned(), status, retry_after))
        });
    }
}

impl Drop for FakeZendesk {
    fn drop(&mut self) {
        // The last clone stops the server.
        if Arc::strong_count(&self.stop) == 1 {
            if let Some(tx) = self.stop.lock().expect("lock").take() {
                let _ = tx.send(());
            }
        }
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

fn answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Records the request; answers a scripted failure when one is due for it.
fn record(
    inner: &mut Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        status: 0,
    };
    inner.seen.push(seen);
    let due = inner
        .failures
        .iter()
        .position(|(m, p, _, _)| m == method.as_str() && p == uri.path())?;
    let (_, _, status, retry_after) = inner.failures.remove(due)?;
    if status == 401 {
        inner.live.clear();
    }
    let mut r = answer(status, json!({"error": "scripted failure"}));
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().expect("header"));
    }
    Some(r)
}

fn done(inner: &mut Inner, r: Response) -> Response {
    if let Some(last) = inner.seen.last_mut() {
        last.status = r.status().as_u16();
    }
    r
}

/// Whether the request carries a bearer token that works now.
fn authorised(inner: &Inner, headers: &HeaderMap) -> bool {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    token.is_some_and(|t| inner.live.iter().any(|l| l == t))
}

async fn token(
    State(inner): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().expect("lock");
    if let Some(r) = record(&mut inner, &method, &uri, &headers, &body) {
        return done(&mut inner, r);
    }
    let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let valid = b["grant_type"] == "refresh_token"
        && b["client_id"] == CLIENT_ID
        && b["client_secret"] == CLIENT_SECRET
        && b["refresh_token"] == inner.refresh.as_str();
    let r = if valid {
        inner.refreshes += 1;
        let n = inner.refreshes;
        let access = format!("at-{n}-live");
        inner.live = vec![access.clone()];
        inner.refresh = format!("rt-{n}-rotated");
        answer(
            200,
            json!({
                "access_token": access,
                "refresh_token": inner.refresh,
                "token_type": "bearer",
                "scope": "hc:write",
                "expires_in": inner.expires_in,
                "refresh_token_expires_in": 2_592_000,
            }),
        )
    } else {
        answer(
            400,
            json!({"error": "invalid_grant", "error_description": "The provided authorization grant is invalid"}),
        )
    };
    done(&mut inner, r)
}

/// An API request: recorded; a scripted failure or a 401 if due, else `handle`'s answer to
/// the method and the JSON body.
fn api(
    inner: &Mutex<Inner>,
    request: (Method, Uri, HeaderMap, Bytes),
    handle: impl FnOnce(&mut Inner, &Method, &Value) -> Response,
) -> Response {
    let (method, uri, headers, body) = request;
    let mut inner = inner.lock().expect("lock");
    let r = match record(&mut inner, &method, &uri, &headers, &body) {
        Some(scripted) => scripted,
        None if !authorised(&inner, &headers) => answer(401, json!({"error": "invalid_token"})),
        None => {
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            handle(&mut inner, &method, &json)
        }
    };
    done(&mut inner, r)
}

fn fields(v: &Value) -> usize {
    v.as_object().map_or(0, |o| o.len())
}

async fn translation(
    State(inner): Shared,
    Path((id, locale)): Path<(u64, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api(&inner, (method, uri, headers, body), |inner, method, b| {
        if id != ARTICLE || locale != LOCALE {
            return answer(404, json!({"error": "RecordNotFound"}));
        }
        if method == Method::PUT {
            let t = &b["translation"];
            let (Some(title), Some(text)) = (t["title"].as_str(), t["body"].as_str()) else {
                return answer(400, json!({"error": "RecordInvalid"}));
            };
            if fields(b) != 1 || fields(t) != 2 {
                return answer(400, json!({"error": "unexpected fields"}));
            }
            inner.title = title.to_owned();
            inner.body = text.to_owned();
        }
        answer(
            200,
            json!({"translation": {
                "id": 1_500_001,
                "source_id": ARTICLE,
                "source_type": "Article",
                "locale": LOCALE,
                "title": inner.title,
                "body": inner.body,
                "draft": false,
                "outdated": false,
            }}),
        )
    })
}

async fn article(
    State(inner): Shared,
    Path(id): Path<u64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api(&inner, (method, uri, headers, body), |inner, method, b| {
        if id != ARTICLE {
            return answer(404, json!({"error": "RecordNotFound"}));
        }
        if method == Method::PUT {
            let promoted = b["article"]["promoted"].as_bool();
            let Some(promoted) = promoted.filter(|_| fields(&b["article"]) == 1) else {
                return answer(400, json!({"error": "RecordInvalid"}));
            };
            inner.promoted = promoted;
        }
        answer(
            200,
            json!({"article": {
                "id": ARTICLE,
                "title": inner.title,
                "locale": LOCALE,
                "promoted": inner.promoted,
                "draft": false,
            }}),
        )
    })
}

async fn not_found(
    State(inner): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().expect("lock");
    let _ = record(&mut inner, &method, &uri, &headers, &body);
    done(&mut inner, answer(404, json!({"error": "InvalidEndpoint"})))
}
