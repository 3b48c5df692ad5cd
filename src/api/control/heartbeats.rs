//! `POST /api/v1/heartbeats/{check}`: a job reports that it ran, with the check's own token.
//!
//! Not a role of the token file: each heartbeat check has its own token (`token_env`,
//! `token_file` or `token_sha256`, kept as SHA-256), so a job's credential can report that
//! job and nothing else, and leaking it never opens the control API. The order of the answers:
//! 401 without a bearer token at all, 404 for a check that does not exist, 409 for a check
//! of another kind, 401 for a token that is not the check's (compared in constant time), then
//! the body (415, 400, 422 naming the field). Check names are not secret (they are in
//! `/metrics`), so saying which exist gives nothing away. Wrong and missing tokens count
//! toward the same per-client backoff as the API's (`auth::Auth::judge_other`): past a few,
//! the client is answered 429 until its backoff ends, so a weak token cannot be guessed at
//! speed; a right token is accepted even then.

use super::body::optional_json;
use super::control;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::probe::heartbeat::{Beat, Refused, MESSAGE_LIMIT};
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The optional body: how the job's run went.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    /// `"up"` (the default) or `"down"` (the job ran and failed).
    status: Option<String>,
    /// Shown with the check's outcome; at most `MESSAGE_LIMIT` characters.
    message: Option<String>,
}

/// The client a request comes from, as the API's authentication sees it (behind a trusted
/// proxy, the address it reports).
pub(super) struct ClientIp(IpAddr);

impl FromRequestParts<ApiState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(ClientIp(crate::api::auth::client_ip(
            peer,
            &parts.headers,
            &state.auth.trusted_proxies,
            &state.auth.client_ip_header,
        )))
    }
}

/// The bearer token of the request, or 401.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)
}

fn beat(body: Option<HeartbeatBody>) -> Result<Beat, ApiError> {
    let body = body.unwrap_or_default();
    let up = match body.status.as_deref().map(str::trim) {
        None | Some("up") => true,
        Some("down") => false,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "status: {other:?} is not \"up\" or \"down\""
            )))
        }
    };
    let message = match body.message {
        None => None,
        Some(m) if m.chars().count() > MESSAGE_LIMIT => {
            return Err(ApiError::Unprocessable(format!(
                "message: longer than {MESSAGE_LIMIT} characters"
            )))
        }
        // One line, so it reads as one in logs and e-mail.
        Some(m) => {
            Some(m.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|m| !m.is_empty())
        }
    };
    Ok(Beat { up, message })
}

/// `POST /api/v1/heartbeats/{check}`: records the heartbeat; 200 with what was recorded.
pub(super) async fn heartbeat(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    check: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(_) => {
            state.auth.judge_other(ip, false)?;
            return Err(ApiError::Unauthorized);
        }
    };
    let heartbeats = control(&state)?.heartbeats.clone();
    let Path(check) = check?;
    // The body is read before the token is judged only for its shape; nothing is recorded
    // unless both are right.
    let body = optional_json::<HeartbeatBody>(&headers, &bytes);
    match heartbeats.check_token(&check, token) {
        Ok(()) => state.auth.judge_other(ip, true)?,
        Err(Refused::UnknownCheck(_)) => {
            return Err(ApiError::NotFound(format!("no check named {check:?}")))
        }
        Err(Refused::NotHeartbeat(_)) => {
            return Err(ApiError::Conflict(format!(
                "check {check:?} is not a heartbeat check (kind = \"heartbeat\"), so it takes no heartbeats"
            )))
        }
        Err(Refused::BadToken) => {
            state.auth.judge_other(ip, false)?;
            return Err(ApiError::Unauthorized);
        }
    }
    let beat = beat(body?)?;
    let up = beat.up;
    let at = heartbeats
        .report(&check, token, beat)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(Json(json!({
        "check": check,
        "status": if up { "up" } else { "down" },
        "received_at": at.rfc3339(),
    })))
}
