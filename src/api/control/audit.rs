//! The audit records as JSON lines (`GET /api/v1/audit`) and an operator's review of an
//! automatic transition (`POST /api/v1/audit/{id}/review`).

use super::body::{limit, text};
use super::{control, require};
use crate::api::auth::{Caller, Role};
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::audit::AuditRow;
use crate::clock::Timestamp;
use crate::store::{AuditQuery, StoreError};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub(super) struct AuditParams {
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
pub(super) async fn audit(
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
    let rows = store
        .read(move |s| s.query_audit(&query))
        .await
        .map_err(|e: StoreError| ApiError::Internal(e.to_string()))?;
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
pub(super) struct ReviewBody {
    note: String,
}

/// `POST /api/v1/audit/{id}/review`.
pub(super) async fn review(
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
