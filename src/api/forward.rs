//! A cluster follower's control API: every control request is forwarded to the leader and its answer relayed, so an operator may call any node.
//!
//! The leader authenticates the caller (the `Authorization` header goes with the request)
//! and decides, exactly as if it had been called directly; the follower adds nothing but
//! `X-Switchboard-Forwarded-By` and relays status, body, `Content-Type` and `Retry-After`.
//! Without a leader (an election under way, etcd unreachable) the answer is a 503 that says
//! so, and a client can retry.

use super::error::ApiError;
use super::ApiState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// The largest control request body forwarded (the API's own limits are far below).
const MAX_BODY: usize = 1 << 20;

/// Where control requests go: the leader's base URL, when there is one.
#[derive(Clone)]
pub struct Forward {
    pub leader: Arc<dyn Fn() -> Option<(String, String)> + Send + Sync>,
    pub node: String,
    pub client: reqwest::Client,
}

/// Whether `path` is a control endpoint (everything under `/api/v1/` but the public route
/// list and the cluster view, which every node answers itself, and the reload).
fn is_control(path: &str) -> bool {
    (path.starts_with("/api/v1/") && path != "/api/v1/routes" && path != "/api/v1/cluster")
        || path == "/-/reload"
}

/// The middleware: forwards control requests when this state forwards, else passes through.
pub async fn forward(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(fw) = state.forward.clone() else {
        return next.run(req).await;
    };
    if !is_control(req.uri().path()) {
        return next.run(req).await;
    }
    match relay(&fw, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn relay(fw: &Forward, req: Request) -> Result<Response, ApiError> {
    let Some((leader, base)) = (fw.leader)() else {
        return Err(ApiError::Unavailable(
            "this node follows and the cluster has no leader right now; retry shortly".into(),
        ));
    };
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|_| ApiError::MethodNotAllowed)?;
    let mut out = fw
        .client
        .request(method, format!("{base}{path}"))
        .timeout(Duration::from_secs(30))
        .header("X-Switchboard-Forwarded-By", fw.node.as_str())
        .body(body.to_vec());
    for name in ["authorization", "content-type", "accept"] {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v.as_bytes());
        }
    }
    let resp = out.send().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "the leader {leader} did not answer ({}); retry shortly",
            if e.is_timeout() {
                "timed out"
            } else {
                "connection failed"
            }
        ))
    })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get("content-type").cloned();
    let retry_after = resp.headers().get("retry-after").cloned();
    let bytes = resp.bytes().await.map_err(|_| {
        ApiError::Unavailable(format!("the leader {leader} broke off its answer; retry"))
    })?;
    let mut answer = Response::new(Body::from(bytes));
    *answer.status_mut() = status;
    let h = answer.headers_mut();
    if let Some(ct) = content_type.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        h.insert("content-type", ct);
    }
    if let Some(ra) = retry_after.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        h.insert("retry-after", ra);
    }
    if let Ok(v) = HeaderValue::from_str(&leader) {
        h.insert("x-switchboard-leader", v);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::is_control;

    #[test]
    fn control_paths_are_forwarded_and_public_ones_are_not() {
        assert!(is_control("/api/v1/services/portal/failover"));
        assert!(is_control("/api/v1/drills"));
        assert!(is_control("/-/reload"));
        assert!(!is_control("/api/v1/routes"));
        assert!(!is_control("/api/v1/cluster"));
        assert!(!is_control("/go/submit-ticket"));
        assert!(!is_control("/api/v2/summary.json"));
    }
}
