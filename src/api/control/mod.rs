//! The authenticated control API under `/api/v1` (services, commands, drills, audit, reviews) and `POST /-/reload`.
//!
//! Every handler first extracts a `Caller` (401 without a valid token), checks its role
//! (403), then parses the body (400 malformed JSON, 413 too large, 415 not JSON, 422 wrong
//! types, unknown fields or a missing/empty `reason`, each naming the field). Commands go to
//! the core task through the `core::Core` trait; the failover machine's refusal becomes a 409 with its
//! reason. Nothing here changes state itself.
//!
//! This file holds what every handler shares (`Control`, the router, the role check, how a
//! core error answers); the files beside it hold the endpoint table (`endpoints.rs`), body
//! parsing and validation (`body.rs`), and the handlers by concern: services and their
//! commands, maintenance, drills, audit and reviews, incident updates, reload.

mod audit;
mod body;
mod drills;
mod endpoints;
mod heartbeats;
mod incidents;
mod maintenance;
mod reload;
mod services;

pub use body::{BODY_LIMIT, MAX_DRILL, MAX_HOLD, PUBLIC_LIMIT, TEXT_LIMIT};
pub use endpoints::{Endpoint, ENDPOINTS};

use super::auth::{Caller, Role};
use super::core::{CommandError, Core};
use super::error::ApiError;
use super::ApiState;
use crate::store::StoreHandle;
use audit::{audit, review};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use drills::{drill, drill_abort, drill_start, drills};
use heartbeats::heartbeat;
use incidents::incident_update;
use maintenance::maintenance;
use reload::reload;
use services::{failback, failover, pin, service, services, unpin};
use std::sync::Arc;

/// What the control handlers reach: the core and the store (read-only here, through the
/// handle's read-only connections).
#[derive(Clone, Debug)]
pub struct Control {
    pub core: Arc<dyn Core>,
    pub store: StoreHandle,
    /// The heartbeats jobs report (`heartbeats.rs`), which the probe loops judge.
    pub heartbeats: Arc<crate::probe::heartbeat::Heartbeats>,
}

/// The control routes, each path and method from `ENDPOINTS` (a unit test keeps them equal).
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/cluster", get(cluster))
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
        .route("/api/v1/heartbeats/{check}", post(heartbeat))
        .route("/-/reload", post(reload))
        .route("/api/v1/openapi.json", get(super::openapi::handler))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// `GET /api/v1/cluster`: answered by this node itself, leader or follower.
async fn cluster(
    axum::extract::State(state): axum::extract::State<ApiState>,
    caller: Caller,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    require(&state, &caller, Role::Viewer)?;
    let view = state
        .cluster
        .clone()
        .ok_or_else(|| ApiError::not_found("not in cluster mode: this daemon runs alone"))?;
    Ok(axum::Json(view().await))
}

/// The control state, or 404 when the control API is not enabled.
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
