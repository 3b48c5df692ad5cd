//! Drills through the API: start one, list them, read one's report, abort it.

use super::body::{duration, limit, optional_json, public_text, service_id, text, MAX_DRILL};
use super::{control, require};
use crate::api::auth::{Caller, Role};
use crate::api::core::DrillRequest;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::clock::Timestamp;
use crate::store::{DrillRow, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum DrillMode {
    Live,
    DryRun,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrillBody {
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
pub(super) async fn drill_start(
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
pub(super) struct DrillsParams {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/drills`.
pub(super) async fn drills(
    State(state): State<ApiState>,
    caller: Caller,
    q: Result<Query<DrillsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let Query(q) = q?;
    let limit = limit(q.limit, 50, 1000)?;
    let store = control(&state)?.store.clone();
    let rows = store
        .read(move |s| s.drills(q.service.as_deref(), limit))
        .await
        .map_err(|e: StoreError| ApiError::Internal(e.to_string()))?;
    let drills = rows.iter().map(drill_doc).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "drills": drills })).into_response())
}

/// `GET /api/v1/drills/{id}`.
pub(super) async fn drill(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Operator)?;
    let id = service_id(id)?;
    let store = control(&state)?.store.clone();
    let key = id.clone();
    let row = store
        .read(move |s| s.drill(&key))
        .await
        .map_err(|e: StoreError| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("no drill with id {id:?}")))?;
    Ok(Json(drill_doc(&row)?).into_response())
}

/// `POST /api/v1/drills/{id}/abort` (body optional: `{"reason": "..."}`).
pub(super) async fn drill_abort(
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
