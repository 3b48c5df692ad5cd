//! `POST /api/v1/services/{id}/maintenance`: start or stop maintenance now, or schedule a
//! planned window.

use super::body::{duration, instant, public_text, service_id, text, MAX_HOLD};
use super::services::run;
use super::{control, require};
use crate::api::auth::{Caller, Role};
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::clock::Timestamp;
use crate::failover::Command;
use crate::store::ScheduledWindow;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum MaintenanceAction {
    Start,
    Stop,
    Schedule,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MaintenanceBody {
    reason: String,
    #[serde(default)]
    public_message: Option<String>,
    action: MaintenanceAction,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    starts_at: Option<String>,
}
#[derive(Serialize)]
struct ScheduledDoc {
    service: String,
    window_id: i64,
    starts_at: String,
    ends_at: String,
}

/// `POST /api/v1/services/{id}/maintenance`.
pub(super) async fn maintenance(
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
