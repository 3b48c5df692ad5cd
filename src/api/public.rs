//! Unauthenticated read-only endpoints for customers and widgets: `/go/{route}`, `/api/v1/routes`, `/api/v2/*.json`, `/status`, `/history.atom|rss`.
//!
//! Every handler reads one `Snapshot` (taken once, so a response never mixes two versions)
//! and answers from it; none of them can change a route.

use super::error::ApiError;
use super::{feeds, page, statuspage, ApiState};
use crate::clock::Timestamp;
use crate::view::{Snapshot, TargetKind};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
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

/// Builds a Statuspage document handler from a pure `(Snapshot, Extras) -> document` function.
macro_rules! statuspage_handler {
    ($name:ident, $build:path) => {
        pub async fn $name(State(state): State<ApiState>) -> Response {
            let snapshot: std::sync::Arc<Snapshot> = state.snapshot();
            let extras = state.board().extras(&snapshot, Timestamp::now());
            public_json($build(&snapshot, &extras))
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

/// A feed document with its media type; readers poll, so it may be cached briefly.
fn feed(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /history.atom`: incidents and maintenances as an Atom 1.0 feed.
pub async fn history_atom(State(state): State<ApiState>) -> Response {
    let snapshot = state.snapshot();
    let extras = state.board().extras(&snapshot, Timestamp::now());
    feed(
        "application/atom+xml; charset=utf-8",
        feeds::atom(&snapshot, &extras),
    )
}

/// `GET /history.rss`: the same entries as RSS 2.0.
pub async fn history_rss(State(state): State<ApiState>) -> Response {
    let snapshot = state.snapshot();
    let extras = state.board().extras(&snapshot, Timestamp::now());
    feed(
        "application/rss+xml; charset=utf-8",
        feeds::rss(&snapshot, &extras),
    )
}

/// `GET /status`: the human page.
pub async fn status_page(State(state): State<ApiState>) -> Response {
    let snapshot = state.snapshot();
    let extras = state.board().extras(&snapshot, Timestamp::now());
    let mut response = Html(page::render(&snapshot, &extras)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
