//! Endpoints for machines that watch Switchboard itself: `/metrics`, `/healthz`, `/readyz`.

use super::error::ApiError;
use super::ApiState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// Prometheus text exposition format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrapes share renders: a scrape is answered with a render that started after it arrived
/// (so it is never older than the request), and every scrape waiting while one render runs
/// is answered by the next one. A hundred clients on `/metrics` then cost a render at a
/// time, not a hundred at once on the threads the HTTP server has.
#[derive(Default)]
pub struct SharedRender {
    last: tokio::sync::Mutex<Option<(Instant, Bytes)>>,
}

/// `GET /metrics`: the text the daemon's metrics closure renders.
pub async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let mut last = state.metrics_render.last.lock().await;
    let text = match last.as_ref() {
        Some((started, text)) if *started >= arrived => text.clone(),
        _ => {
            let render = state.metrics.clone();
            let started = Instant::now();
            // Encoding ten thousand series is CPU work; doing it on the blocking pool keeps a
            // scrape from stalling redirects that share the server's worker thread.
            let text = tokio::task::spawn_blocking(move || Bytes::from(render()))
                .await
                .map_err(|e| ApiError::Internal(format!("metrics rendering failed: {e}")))?;
            *last = Some((started, text.clone()));
            text
        }
    };
    drop(last);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// `GET /healthz`: the process answers HTTP. Deliberately checks nothing else, so an
/// orchestrator never restarts the daemon for a problem a restart cannot fix.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 once the daemon has loaded its state and started probing, else 503, so
/// a load balancer does not send customers to a node that would redirect from stale state.
/// Also 503, with the reason, while transitions wait in memory for a store that refuses them:
/// that node holds work a restart would put at risk, and an orchestrator should know.
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let pending = state.pending_transitions.load(Ordering::Acquire);
    if pending > 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {pending} transition(s) waiting for the store (disk full or database locked); see switchboard_store_pending_transitions\n"),
        )
            .into_response()
    } else if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
