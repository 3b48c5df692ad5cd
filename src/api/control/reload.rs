//! `POST /-/reload`: reload the configuration, or keep the running one and list why not.

use super::{control, require};
use crate::api::auth::{Caller, Role};
use crate::api::core::ReloadError;
use crate::api::error::ApiError;
use crate::api::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `POST /-/reload`: 200 with what changed, or 422 with every `file:line: message` and the
/// running configuration kept.
pub(super) async fn reload(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Response, ApiError> {
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
