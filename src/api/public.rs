//! Unauthenticated read-only endpoints for customers and widgets: `/go/{route}`, `/api/v1/routes`, `/api/v2/*.json`, `/status`, `/history.atom|rss`.
//!
//! Every handler reads one `Snapshot` (taken once, so a response never mixes two versions)
//! and answers from it; none of them can change a route.

use super::cache::{next_maintenance_change, UsesHistory};
use super::error::ApiError;
use super::{feeds, page, statuspage, ApiState};
use crate::clock::Timestamp;
use crate::view::TargetKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use page::escape;
use serde::Serialize;

/// The redirect must be re-evaluated on every click: a cached redirect would keep sending
/// customers to a broken form after failover.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// JSON that pages on other origins (the support site's widgets) may read, never cached for
/// long because it changes exactly when people look at it.
fn public_json<T: Serialize>(body: T) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /go/{route}`: 307 to the active target. A temporary redirect, never 301/308, because
/// browsers cache permanent ones and would keep customers on a route after it switches back.
pub async fn go(
    State(state): State<ApiState>,
    route: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(route) = route?;
    let snapshot = state.snapshot();
    let route = snapshot
        .route(&route)
        .ok_or_else(|| ApiError::not_found(format!("no route named {route:?}")))?;
    if route.active_kind() == TargetKind::Text {
        // Instructions in words have nowhere to redirect to: show them.
        let text = escape(route.active_display());
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>How to reach support now</title></head><body><main><h1>How to reach support now</h1><p>{text}</p></main></body></html>"
        );
        return Ok((
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, NO_STORE),
            ],
            body,
        )
            .into_response());
    }
    let location = HeaderValue::from_str(route.active_target()).map_err(|e| {
        ApiError::Internal(format!(
            "route {} target is not a valid header value: {e}",
            route.id
        ))
    })?;
    Ok((
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, NO_STORE),
        ],
    )
        .into_response())
}

/// `GET /go/{route}` answered before the router, for the common case: a plain route id (no
/// percent-encoding, no further `/`) naming a route whose active target is an address. The
/// answer is exactly the router's (`go`, then the security headers); anything else (HEAD, an
/// unknown route, a text route, an odd path) returns `None` and goes through the router.
///
/// `/go` is the endpoint customers click, and under load the router's per-request work
/// (cloning the matched route's service stack and the state it holds, the middleware's boxed
/// futures, the path extractor's allocation) was a measurable share of serving a redirect
/// next to nginx.
pub fn go_direct(
    state: &ApiState,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
) -> Option<Response> {
    if method != axum::http::Method::GET {
        return None;
    }
    let id = uri.path().strip_prefix("/go/")?;
    if id.is_empty() || id.contains(['/', '%']) {
        return None;
    }
    let snapshot = state.snapshot();
    let route = snapshot.route(id)?;
    if route.active_kind() == TargetKind::Text {
        return None;
    }
    let location = HeaderValue::from_str(route.active_target()).ok()?;
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    super::headers::apply(headers);
    // What the router adds for an empty body.
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Some(response)
}

#[derive(Serialize)]
struct RoutesDoc<'a> {
    routes: Vec<RouteDoc<'a>>,
}

#[derive(Serialize)]
struct RouteDoc<'a> {
    id: &'a str,
    service: &'a str,
    primary: &'a str,
    backup: &'a str,
    active: &'static str,
    active_target: &'a str,
    /// `url`, `email`, `phone` or `text`.
    active_kind: &'static str,
    /// What a person reads: the URL, address, number or instructions.
    active_display: &'a str,
    go_url: String,
}

/// `GET /api/v1/routes`: every route with the target customers are sent to now.
pub async fn routes(State(state): State<ApiState>) -> Response {
    let snapshot = state.snapshot();
    let base = snapshot.public_url.trim_end_matches('/');
    let routes = snapshot
        .routes()
        .map(|r| RouteDoc {
            id: &r.id,
            service: &r.service,
            primary: &r.primary,
            backup: &r.backup,
            active: r.active.as_str(),
            active_target: r.active_target(),
            active_kind: r.active_kind().as_str(),
            active_display: r.active_display(),
            go_url: format!("{base}/go/{}", r.id),
        })
        .collect();
    public_json(RoutesDoc { routes })
}

/// Never, for documents whose words do not age.
const NEVER: Timestamp = Timestamp(i64::MAX);

/// How long the page's own words about time ("5 minutes ago") may stand.
const PAGE_WORDS_LAST_MS: i64 = 30_000;

/// JSON of a document that is plain data; serialising it into memory cannot fail.
fn json_bytes<T: Serialize>(doc: &T) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap_or_default()
}

/// Builds a Statuspage document handler from a pure `(Snapshot, Extras) -> document` function:
/// rendered once per change and served from memory (`cache`). Widgets on other origins may
/// read it (CORS).
macro_rules! statuspage_handler {
    ($name:ident, $build:path) => {
        pub async fn $name(State(state): State<ApiState>, headers: HeaderMap) -> Response {
            state
                .docs
                .$name
                .get(
                    &state,
                    UsesHistory::No,
                    |snapshot, extras| {
                        let body = json_bytes(&$build(snapshot, extras));
                        (body, next_maintenance_change(extras, NEVER))
                    },
                    "application/json",
                    true,
                )
                .respond(&headers)
        }
    };
}

statuspage_handler!(summary, statuspage::summary);
statuspage_handler!(status_json, statuspage::status_doc);
statuspage_handler!(components, statuspage::components_doc);
statuspage_handler!(incidents, statuspage::incidents_doc);
statuspage_handler!(unresolved, statuspage::unresolved_doc);
statuspage_handler!(maintenances, statuspage::maintenances_doc);
statuspage_handler!(upcoming_maintenances, statuspage::upcoming_maintenances_doc);
statuspage_handler!(active_maintenances, statuspage::active_maintenances_doc);

/// `GET /history.atom`: incidents and maintenances as an Atom 1.0 feed.
pub async fn history_atom(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    state
        .docs
        .atom
        .get(
            &state,
            UsesHistory::No,
            |snapshot, extras| {
                let body = feeds::atom(snapshot, extras).into_bytes();
                (body, next_maintenance_change(extras, NEVER))
            },
            "application/atom+xml; charset=utf-8",
            false,
        )
        .respond(&headers)
}

/// `GET /history.rss`: the same entries as RSS 2.0.
pub async fn history_rss(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    state
        .docs
        .rss
        .get(
            &state,
            UsesHistory::No,
            |snapshot, extras| {
                let body = feeds::rss(snapshot, extras).into_bytes();
                (body, next_maintenance_change(extras, NEVER))
            },
            "application/rss+xml; charset=utf-8",
            false,
        )
        .respond(&headers)
}

/// `GET /status`: the human page, rendered once per change (and at most every 30 seconds
/// for its "minutes ago") and served from memory.
pub async fn status_page(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    state
        .docs
        .status_page
        .get(
            &state,
            UsesHistory::Yes,
            |snapshot, extras| {
                let body = page::render(snapshot, extras).into_bytes();
                let words_age = Timestamp(extras.now.0 + PAGE_WORDS_LAST_MS);
                (body, next_maintenance_change(extras, words_age))
            },
            "text/html; charset=utf-8",
            false,
        )
        .respond(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Side;
    use crate::failover::State as ServiceState;
    use crate::view::{RouteView, ServiceView, Snapshot};
    use axum::http::{Method, Request, Uri};
    use std::sync::Arc;
    use tower::ServiceExt;

    fn state() -> ApiState {
        let route = |id: &str, backup: &str| RouteView {
            id: id.into(),
            service: "support".into(),
            primary: "https://help.example.com/new".into(),
            backup: backup.into(),
            active: Side::Backup,
        };
        let snapshot = Snapshot {
            title: "Status".into(),
            public_url: "http://127.0.0.1:9898".into(),
            updated_at: Timestamp(0),
            services: vec![ServiceView {
                id: "support".into(),
                name: "Support".into(),
                state: ServiceState::FailedOver,
                since: Timestamp(0),
                cause: "startup".into(),
                checks: vec![],
                routes: vec![
                    route("submit-ticket", "mailto:help@example.net"),
                    route("desk", "text:Call reception"),
                ],
                created_at: Timestamp(0),
                maintenance_until: None,
            }],
        };
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(snapshot));
        ApiState::new(
            rx,
            String::new,
            Arc::new(std::sync::atomic::AtomicBool::new(true)),
        )
    }

    #[tokio::test]
    async fn the_direct_redirect_is_exactly_the_routers() {
        let state = state();
        let uri: Uri = "/go/submit-ticket?from=mail".parse().expect("uri");
        let direct = go_direct(&state, &Method::GET, &uri).expect("answered directly");
        let routed = super::super::router(state)
            .oneshot(
                Request::get(uri)
                    .body(axum::body::Body::empty())
                    .expect("req"),
            )
            .await
            .expect("infallible");
        assert_eq!(direct.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(direct.status(), routed.status());
        assert_eq!(direct.headers(), routed.headers());
        assert_eq!(
            direct.headers()[header::LOCATION],
            "mailto:help@example.net"
        );
        for body in [direct.into_body(), routed.into_body()] {
            let bytes = axum::body::to_bytes(body, 1024).await.expect("body");
            assert!(bytes.is_empty());
        }
    }

    #[test]
    fn everything_else_is_left_to_the_router() {
        let state = state();
        for (method, path) in [
            (Method::HEAD, "/go/submit-ticket"),
            (Method::POST, "/go/submit-ticket"),
            (Method::GET, "/go/nope"),
            (Method::GET, "/go/desk"),
            (Method::GET, "/go/"),
            (Method::GET, "/go/submit%2Dticket"),
            (Method::GET, "/go/submit-ticket/more"),
            (Method::GET, "/status"),
        ] {
            let uri: Uri = path.parse().expect("uri");
            assert!(
                go_direct(&state, &method, &uri).is_none(),
                "{method} {path}"
            );
        }
    }
}
