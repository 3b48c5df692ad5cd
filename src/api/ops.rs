//! Endpoints for machines that watch Switchboard itself: `/metrics`, `/healthz`, `/readyz`.

use super::error::ApiError;
use super::ApiState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;

/// Prometheus text exposition format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the text the daemon's metrics closure renders.
pub async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let render = state.metrics.clone();
    // Encoding ten thousand series is CPU work; doing it on the blocking pool keeps a scrape
    // from stalling redirects that share the runtime's worker threads.
    let text = tokio::task::spawn_blocking(move || render())
        .await
        .map_err(|e| ApiError::Internal(format!("metrics rendering failed: {e}")))?;
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
