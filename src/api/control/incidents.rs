//! `POST /api/v1/incidents/{id}/updates`: an operator's update to an incident, audited.

use super::{control, require};
use crate::api::auth::{Caller, Role};
use crate::api::error::ApiError;
use crate::api::ApiState;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;

/// `POST /api/v1/incidents/{id}/updates`: the update is stored and shown first, then audited
/// with the token's name.
pub(super) async fn incident_update(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<crate::api::incidents::UpdateRequest>, JsonRejection>,
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
    let response = crate::api::incidents::add_update(&state, &id, &caller.name, b).await?;
    core.audit(&caller.name, &reason, detail).await;
    Ok(response)
}
