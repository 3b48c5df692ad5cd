//! The authenticated control API under `/api/v1` (services, commands, drills, audit, reviews) and `POST /-/reload`.
//!
//! Every handler first extracts a `Caller` (401 without a valid token), checks its role
//! (403), then parses the body (400 malformed JSON, 413 too large, 415 not JSON, 422 wrong
//! types, unknown fields or a missing/empty `reason`, each naming the field). Commands go to
//! the core task through the `core::Core` trait; the failover machine's refusal becomes a 409 with its
//! reason. Nothing here changes state itself.

use super::auth::{Caller, Role};
use super::core::{CommandError, Core, DrillRequest, ReloadError, ServiceDetail};
use super::error::ApiError;
use super::ApiState;
use crate::audit::AuditRow;
use crate::clock::Timestamp;
use crate::failover::{Command, Side};
use crate::store::{AuditQuery, DrillRow, ScheduledWindow, Store};
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Request bodies larger than this are refused with 413: every control body is a few short
/// fields, and a small limit keeps a misbehaving client from making the daemon buffer much.
/// Large enough for the longest valid body (two texts of `TEXT_LIMIT` characters and a
/// `public_message` of `PUBLIC_LIMIT`, each character up to 12 bytes when JSON-escaped), so a
/// valid request is never refused for its size.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longest `reason`, `note` or `ticket` accepted.
pub const TEXT_LIMIT: usize = 2000;
/// Longest `public_message` accepted: a few sentences for a status page, not a report.
pub const PUBLIC_LIMIT: usize = 1000;
/// The longest drill (a drill can never be left running forever).
pub const MAX_DRILL: Duration = Duration::from_secs(24 * 3600);
/// The longest pin or maintenance an operator may set through the API.
pub const MAX_HOLD: Duration = Duration::from_secs(366 * 24 * 3600);

/// What the control handlers reach: the core and the store (read-only here).
#[derive(Clone, Debug)]
pub struct Control {
    pub core: Arc<dyn Core>,
    pub store: Arc<Store>,
}

/// One row of the route table the router and the OpenAPI document are both built from.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    /// `None`: public.
    pub role: Option<Role>,
    pub summary: &'static str,
}

/// Every control endpoint, in the order the OpenAPI document lists them.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "get",
        path: "/api/v1/services",
        role: Some(Role::Viewer),
        summary: "Every service: state, since, cause, side, checks with health, holds",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/services/{id}",
        role: Some(Role::Viewer),
        summary: "One service",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/failover",
        role: Some(Role::Operator),
        summary: "Switch to the backup now (force: admin only)",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/failback",
        role: Some(Role::Operator),
        summary: "Switch back to the primary now",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/pin",
        role: Some(Role::Operator),
        summary: "Hold the routes on one side, optionally until a time",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/unpin",
        role: Some(Role::Operator),
        summary: "Release a pin",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/maintenance",
        role: Some(Role::Operator),
        summary: "Start, stop or schedule maintenance",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/drills",
        role: Some(Role::Operator),
        summary: "Start a drill (live or dry run)",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/drills",
        role: Some(Role::Operator),
        summary: "Drills, newest first, with their reports",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/drills/{id}",
        role: Some(Role::Operator),
        summary: "One drill's report, steps as they happen",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/drills/{id}/abort",
        role: Some(Role::Operator),
        summary: "Abort a running drill",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/audit",
        role: Some(Role::Viewer),
        summary: "Audit records as JSON lines",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/audit/{id}/review",
        role: Some(Role::Operator),
        summary: "Acknowledge an automatic transition with a note",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/incidents/{id}/updates",
        role: Some(Role::Operator),
        summary: "Add an update (status and words for customers) to an incident",
    },
    Endpoint {
        method: "post",
        path: "/-/reload",
        role: Some(Role::Admin),
        summary: "Reload the configuration (keeps the running one if invalid)",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/openapi.json",
        role: None,
        summary: "This document",
    },
];

/// The control routes, each path and method from `ENDPOINTS` (a unit test keeps them equal).
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{id}", get(service))
        .route("/api/v1/services/{id}/failover", post(failover))
        .route("/api/v1/services/{id}/failback", post(failback))
        .route("/api/v1/services/{id}/pin", post(pin))
        .route("/api/v1/services/{id}/unpin", post(unpin))
        .route("/api/v1/services/{id}/maintenance", post(maintenance))
        .route("/api/v1/drills", post(drill_start).get(drills))
        .route("/api/v1/drills/{id}", get(drill))
        .route("/api/v1/drills/{id}/abort", post(drill_abort))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/{id}/review", post(review))
        .route("/api/v1/incidents/{id}/updates", post(incident_update))
        .route("/-/reload", post(reload))
        .route("/api/v1/openapi.json", get(super::openapi::handler))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

fn control(state: &ApiState) -> Result<&Control, ApiError> {
    state
        .control
        .as_ref()
        .ok_or_else(|| ApiError::not_found("the control API is not enabled"))
}

/// `caller.require(role)` (the router's response layer counts a 403 in the metrics).
fn require(_state: &ApiState, caller: &Caller, role: Role) -> Result<(), ApiError> {
    caller.require(role)
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::UnknownService(_) | CommandError::UnknownDrill(_) => {
                ApiError::NotFound(e.to_string())
            }
            CommandError::NotFound(m) => ApiError::NotFound(m),
            CommandError::Rejected(r) => ApiError::Conflict(r),
            CommandError::Unavailable(r) => ApiError::Conflict(r),
            CommandError::Store(detail) => ApiError::Internal(detail),
        }
    }
}

/// A `reason` or `note`: required, not blank, bounded.
fn text(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "{field}: must not be empty"
        )));
    }
    // The limit counts what was sent (as JSON Schema's maxLength does), before trimming.
    if value.chars().count() > TEXT_LIMIT {
        return Err(ApiError::Unprocessable(format!(
            "{field}: longer than {TEXT_LIMIT} characters"
        )));
    }
    Ok(v.to_string())
}

/// An optional `public_message`: what customers may read (status page, feeds, Statuspage,
/// customer e-mail). When given it must say something, within `PUBLIC_LIMIT` characters.
fn public_text(value: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Err(ApiError::Unprocessable(
            "public_message: must not be empty (leave it out to use the templates' words)".into(),
        ));
    }
    if value.chars().count() > PUBLIC_LIMIT {
        return Err(ApiError::Unprocessable(format!(
            "public_message: longer than {PUBLIC_LIMIT} characters"
        )));
    }
    Ok(Some(value.trim().to_string()))
}

fn duration(field: &str, value: &str, max: Duration) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        ApiError::Unprocessable(format!(
            "{field}: invalid duration {value:?} ({e}); write e.g. \"30s\", \"10m\", \"2h\""
        ))
    })?;
    if d < Duration::from_secs(1) {
        return Err(ApiError::Unprocessable(format!(
            "{field}: must be at least 1s"
        )));
    }
    if d > max {
        return Err(ApiError::Unprocessable(format!(
            "{field}: must be at most {}",
            humantime::format_duration(max)
        )));
    }
    Ok(d)
}

/// An instant given as RFC 3339 (`2026-11-29T10:00:00Z`) or as a duration from now (`30m`);
/// it must lie in the future, within `MAX_HOLD`.
fn instant(field: &str, value: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    let v = value.trim();
    let at = match humantime::parse_rfc3339_weak(v) {
        Ok(t) => {
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            Timestamp(ms)
        }
        Err(_) => match humantime::parse_duration(v) {
            Ok(d) if d <= MAX_HOLD => now.plus(d),
            _ => {
                return Err(ApiError::Unprocessable(format!(
                    "{field}: {value:?} is neither an RFC 3339 time nor a duration such as \"30m\""
                )))
            }
        },
    };
    if at <= now {
        return Err(ApiError::Unprocessable(format!(
            "{field}: {value:?} is not in the future"
        )));
    }
    if at > now.plus(MAX_HOLD) {
        return Err(ApiError::Unprocessable(format!(
            "{field}: more than {} ahead",
            humantime::format_duration(MAX_HOLD)
        )));
    }
    Ok(at)
}

/// A `limit` query parameter: `default` when absent, else 1 to `max` (400 outside).
fn limit(given: Option<u32>, default: u32, max: u32) -> Result<usize, ApiError> {
    match given {
        None => Ok(default as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit: {n} is outside 1 to {max}"
        ))),
    }
}

fn service_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    Ok(p?.0)
}

// ---- services ----

#[derive(Serialize)]
struct ServicesDoc {
    services: Vec<ServiceDetail>,
}

/// `GET /api/v1/services`.
async fn services(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Viewer)?;
    let services = control(&state)?.core.services().await?;
    Ok(Json(ServicesDoc { services }).into_response())
}

/// `GET /api/v1/services/{id}`.
async fn service(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Viewer)?;
    let id = service_id(id)?;
    let services = control(&state)?.core.services().await?;
    let s = services
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no service named {id:?}")))?;
    Ok(Json(s).into_response())
}

// ---- commands ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverBody {
    reason: String,
    #[serde(default)]
    public_message: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
    #[serde(default)]
    public_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    reason: String,
    #[serde(default)]
    public_message: Option<String>,
    side: Side,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum MaintenanceAction {
    Start,
    Stop,
    Schedule,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    reason: String,
    #[serde(default)]
    public_message: Option<String>,
    action: MaintenanceAction,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    starts_at: Option<String>,
}

async fn run(
    state: &ApiState,
    id: &str,
    command: Command,
    what: &str,
    mut params: serde_json::Value,
    public_message: Option<String>,
) -> Result<Response, ApiError> {
    // The public words are audited with the command (the reason is the record's own field).
    if let (Some(m), Some(p)) = (&public_message, params.as_object_mut()) {
        p.insert(
            "public_message".into(),
            serde_json::Value::String(m.clone()),
        );
    }
    let applied = control(state)?
        .core
        .command(id, command, what, params, public_message)
        .await?;
    Ok(Json(applied).into_response())
}

/// `POST /api/v1/services/{id}/failover`.
async fn failover(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<FailoverBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let id = service_id(id)?;
    let Json(b) = body?;
    let reason = text("reason", &b.reason)?;
    let public = public_text(b.public_message.as_deref())?;
    if b.force {
        require(&state, &caller, Role::Admin)?;
    }
    let params = serde_json::json!({ "force": b.force });
    let command = Command::Failover {
        actor: caller.name,
        reason,
        force: b.force,
    };
    run(&state, &id, command, "failover", params, public).await
}

/// `POST /api/v1/services/{id}/failback`.
async fn failback(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let id = service_id(id)?;
    let Json(b) = body?;
    let reason = text("reason", &b.reason)?;
    let public = public_text(b.public_message.as_deref())?;
    let command = Command::Failback {
        actor: caller.name,
        reason,
    };
    run(
        &state,
        &id,
        command,
        "failback",
        serde_json::json!({}),
        public,
    )
    .await
}

/// `POST /api/v1/services/{id}/pin`.
async fn pin(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<PinBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let id = service_id(id)?;
    let Json(b) = body?;
    let reason = text("reason", &b.reason)?;
    let public = public_text(b.public_message.as_deref())?;
    if b.force {
        require(&state, &caller, Role::Admin)?;
    }
    let now = Timestamp::now();
    let until = b
        .until
        .as_deref()
        .map(|u| instant("until", u, now))
        .transpose()?;
    let params = serde_json::json!({
        "side": b.side.as_str(),
        "until": until.map(Timestamp::rfc3339),
        "force": b.force,
    });
    let command = Command::Pin {
        side: b.side,
        until,
        actor: caller.name,
        reason,
        force: b.force,
    };
    run(&state, &id, command, "pin", params, public).await
}

/// `POST /api/v1/services/{id}/unpin`.
async fn unpin(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let id = service_id(id)?;
    let Json(b) = body?;
    let reason = text("reason", &b.reason)?;
    let public = public_text(b.public_message.as_deref())?;
    let command = Command::Unpin {
        actor: caller.name,
        reason,
    };
    run(&state, &id, command, "unpin", serde_json::json!({}), public).await
}

#[derive(Serialize)]
struct ScheduledDoc {
    service: String,
    window_id: i64,
    starts_at: String,
    ends_at: String,
}

/// `POST /api/v1/services/{id}/maintenance`.
async fn maintenance(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<MaintenanceBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let id = service_id(id)?;
    let Json(b) = body?;
    let reason = text("reason", &b.reason)?;
    let public = public_text(b.public_message.as_deref())?;
    let now = Timestamp::now();
    let length = b
        .duration
        .as_deref()
        .map(|d| duration("duration", d, MAX_HOLD))
        .transpose()?;
    match b.action {
        MaintenanceAction::Start => {
            if b.starts_at.is_some() {
                return Err(ApiError::Unprocessable(
                    "starts_at: only for action \"schedule\"".into(),
                ));
            }
            let until = length.map(|d| now.plus(d));
            let params = serde_json::json!({ "until": until.map(Timestamp::rfc3339) });
            let command = Command::MaintenanceStart {
                until,
                actor: caller.name,
                reason,
            };
            run(&state, &id, command, "maintenance_start", params, public).await
        }
        MaintenanceAction::Stop => {
            if b.starts_at.is_some() || b.duration.is_some() {
                return Err(ApiError::Unprocessable(
                    "duration, starts_at: not taken by action \"stop\"".into(),
                ));
            }
            let command = Command::MaintenanceStop {
                actor: caller.name,
                reason,
            };
            run(
                &state,
                &id,
                command,
                "maintenance_stop",
                serde_json::json!({}),
                public,
            )
            .await
        }
        MaintenanceAction::Schedule => {
            let starts = b.starts_at.as_deref().ok_or_else(|| {
                ApiError::Unprocessable("starts_at: required for action \"schedule\"".into())
            })?;
            let length = length.ok_or_else(|| {
                ApiError::Unprocessable("duration: required for action \"schedule\"".into())
            })?;
            let starts_at = instant("starts_at", starts, now)?;
            let window = ScheduledWindow {
                id: 0,
                service: id.clone(),
                starts_at,
                ends_at: starts_at.plus(length),
                reason,
                actor: caller.name,
                public_message: public,
            };
            let window_id = control(&state)?
                .core
                .schedule_maintenance(window.clone())
                .await?;
            let doc = ScheduledDoc {
                service: id,
                window_id,
                starts_at: window.starts_at.rfc3339(),
                ends_at: window.ends_at.rfc3339(),
            };
            Ok((StatusCode::CREATED, Json(doc)).into_response())
        }
    }
}

// ---- drills ----

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum DrillMode {
    Live,
    DryRun,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillBody {
    service: String,
    mode: DrillMode,
    duration: String,
    reason: String,
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    public_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbortBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    public_message: Option<String>,
}

/// The stored report as the API shows it.
fn drill_doc(row: &DrillRow) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(&row.report)
        .map_err(|e| ApiError::Internal(format!("drill {} report unreadable: {e}", row.id)))
}

/// `POST /api/v1/drills`.
async fn drill_start(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<DrillBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let received = Timestamp::now();
    require(&state, &caller, Role::Operator)?;
    let Json(b) = body?;
    let reason = text("reason", &b.reason)?;
    let ticket = b.ticket.as_deref().map(|t| text("ticket", t)).transpose()?;
    let public_message = public_text(b.public_message.as_deref())?;
    let length = duration("duration", &b.duration, MAX_DRILL)?;
    let row = control(&state)?
        .core
        .start_drill(DrillRequest {
            service: b.service,
            live: b.mode == DrillMode::Live,
            duration: length,
            actor: caller.name,
            reason,
            ticket,
            public_message,
            received,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(drill_doc(&row)?)).into_response())
}

#[derive(Deserialize)]
struct DrillsParams {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/drills`.
async fn drills(
    State(state): State<ApiState>,
    caller: Caller,
    q: Result<Query<DrillsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let Query(q) = q?;
    let limit = limit(q.limit, 50, 1000)?;
    let store = control(&state)?.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.drills(q.service.as_deref(), limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let drills = rows.iter().map(drill_doc).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "drills": drills })).into_response())
}

/// `GET /api/v1/drills/{id}`.
async fn drill(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let id = service_id(id)?;
    let store = control(&state)?.store.clone();
    let key = id.clone();
    let row = tokio::task::spawn_blocking(move || store.drill(&key))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("no drill with id {id:?}")))?;
    Ok(Json(drill_doc(&row)?).into_response())
}

/// Parses an optional JSON body the way `Json` does (415, 400, 422 naming the field).
fn optional_json<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    bytes: &Bytes,
) -> Result<Option<T>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.split(';').next().unwrap_or("").trim();
            ct.eq_ignore_ascii_case("application/json")
                || (ct.starts_with("application/") && ct.ends_with("+json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "Expected request with `Content-Type: application/json`".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            };
            match inner.classify() {
                serde_json::error::Category::Data => Err(ApiError::Unprocessable(msg)),
                _ => Err(ApiError::BadRequest(msg)),
            }
        }
    }
}

/// `POST /api/v1/drills/{id}/abort` (body optional: `{"reason": "..."}`).
async fn drill_abort(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let id = service_id(id)?;
    // A body over the limit is a JSON 413 like everywhere else, not axum's plain text.
    let body = body?;
    let b: Option<AbortBody> = optional_json(&headers, &body)?;
    let (reason, public) = match b {
        Some(b) => (b.reason, public_text(b.public_message.as_deref())?),
        None => (None, None),
    };
    let reason = match reason {
        Some(r) => text("reason", &r)?,
        None => "drill aborted".to_string(),
    };
    let applied = control(&state)?
        .core
        .abort_drill(&id, &caller.name, &reason, public)
        .await?;
    Ok(Json(applied).into_response())
}

// ---- audit and reviews ----

#[derive(Deserialize)]
struct AuditParams {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    pending_review: Option<bool>,
}

#[derive(Serialize)]
struct ReviewDoc {
    reviewer: String,
    note: String,
    at: String,
}

#[derive(Serialize)]
struct AuditLine<'a> {
    #[serde(flatten)]
    record: &'a crate::audit::AuditRecord,
    /// For automatic health transitions: whether an operator still has to review it.
    pending_review: bool,
    review: Option<ReviewDoc>,
}

/// `GET /api/v1/audit`: JSON lines, oldest first.
async fn audit(
    State(state): State<ApiState>,
    caller: Caller,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Viewer)?;
    let Query(q) = q?;
    let now = Timestamp::now();
    let since = q
        .since
        .as_deref()
        .map(|s| crate::audit::parse_since(s, now))
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("since: {e}")))?;
    let query = AuditQuery {
        since,
        service: q.service,
        pending_review: q.pending_review.unwrap_or(false),
        limit: limit(q.limit, 100, 10_000)?,
    };
    let store = control(&state)?.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.query_audit(&query))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut out = String::new();
    for (row, review) in rows {
        let line = match &row {
            Ok(record) => {
                let reviewable = record.kind == crate::audit::KIND_TRANSITION
                    && record.actor == "system"
                    && record
                        .cause
                        .as_deref()
                        .is_some_and(|c| crate::store::REVIEWED_CAUSES.contains(&c));
                serde_json::to_string(&AuditLine {
                    record,
                    pending_review: reviewable && review.is_none(),
                    review: review.map(|(reviewer, note, at)| ReviewDoc {
                        reviewer,
                        note,
                        at: at.rfc3339(),
                    }),
                })
            }
            Err(u) => serde_json::to_string(&unreadable(&row, u)),
        }
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        out,
    )
        .into_response())
}

fn unreadable(_row: &AuditRow, u: &crate::audit::UnreadableRecord) -> serde_json::Value {
    serde_json::json!({
        "id": u.id,
        "service": u.service,
        "at": u.at.rfc3339(),
        "unreadable": u.problem,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    note: String,
}

/// `POST /api/v1/audit/{id}/review`.
async fn review(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<ReviewBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let Path(id) = id?;
    let Json(b) = body?;
    let note = text("note", &b.note)?;
    let rec = control(&state)?
        .core
        .review(id, &caller.name, &note)
        .await?;
    Ok((StatusCode::CREATED, Json(rec)).into_response())
}

// ---- incidents ----

/// `POST /api/v1/incidents/{id}/updates`: the update is stored and shown first, then audited
/// with the token's name.
async fn incident_update(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<super::incidents::UpdateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let core = control(&state)?.core.clone();
    let Path(id) = id?;
    let Json(b) = body?;
    let detail = serde_json::json!({
        "command": "incident_update",
        "incident": id,
        "status": b.status.trim(),
    });
    let reason = b.body.trim().to_owned();
    let response = super::incidents::add_update(&state, &id, &caller.name, b).await?;
    core.audit(&caller.name, &reason, detail).await;
    Ok(response)
}

// ---- reload ----

/// `POST /-/reload`: 200 with what changed, or 422 with every `file:line: message` and the
/// running configuration kept.
async fn reload(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Admin)?;
    match control(&state)?.core.reload(&caller.name).await {
        Ok(report) => Ok(Json(serde_json::json!({
            "result": "success",
            "config_version": report.config_version,
            "services_added": report.services_added,
            "services_removed": report.services_removed,
            "services_changed": report.services_changed,
            "checks_changed": report.checks_changed,
            "restart_needed": report.restart_needed,
        }))
        .into_response()),
        Err(ReloadError::Invalid { diagnostics }) => {
            let message = ReloadError::Invalid {
                diagnostics: Vec::new(),
            }
            .to_string();
            let body = serde_json::json!({
                "error": { "code": "invalid_config", "message": message },
                "diagnostics": diagnostics,
            });
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response())
        }
        Err(ReloadError::Store(detail)) => Err(ApiError::Internal(detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_or_durations_in_the_future() {
        let now = Timestamp(1_800_000_000_000);
        assert_eq!(
            instant("until", "30m", now).unwrap(),
            now.plus(Duration::from_secs(1800))
        );
        assert_eq!(
            instant("until", "2027-01-15T10:00:00Z", now)
                .unwrap()
                .rfc3339(),
            "2027-01-15T10:00:00.000Z"
        );
        let past = instant("until", "2020-01-01T00:00:00Z", now).unwrap_err();
        assert!(past.to_string().starts_with("until:"), "{past}");
        assert!(instant("until", "soon", now).is_err());
    }

    #[test]
    fn texts_must_not_be_blank() {
        assert!(text("reason", "  ")
            .unwrap_err()
            .to_string()
            .contains("reason"));
        assert_eq!(text("reason", " ok ").unwrap(), "ok");
    }
}
