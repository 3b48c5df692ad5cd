//! The services and the commands on one: `GET /api/v1/services[/{id}]`, and failover,
//! failback, pin and unpin, each sent to the core, which decides and audits it.

use super::body::{instant, public_text, service_id, text};
use super::{control, require};
use crate::api::auth::{Caller, Role};
use crate::api::core::ServiceDetail;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::clock::Timestamp;
use crate::failover::{Command, Side};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct ServicesDoc {
    services: Vec<ServiceDetail>,
}

/// `GET /api/v1/services`.
pub(super) async fn services(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    require(&state, &caller, Role::Viewer)?;
    let services = control(&state)?.core.services().await?;
    Ok(Json(ServicesDoc { services }).into_response())
}

/// `GET /api/v1/services/{id}`.
pub(super) async fn service(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FailoverBody {
    reason: String,
    #[serde(default)]
    public_message: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    reason: String,
    #[serde(default)]
    public_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PinBody {
    reason: String,
    #[serde(default)]
    public_message: Option<String>,
    side: Side,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    force: bool,
}

pub(super) async fn run(
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
pub(super) async fn failover(
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
pub(super) async fn failback(
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
pub(super) async fn pin(
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
pub(super) async fn unpin(
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
