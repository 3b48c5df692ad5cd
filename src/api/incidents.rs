//! Operator updates to incidents: `POST /api/v1/incidents/{id}/updates {status, body}` (operator role).
//!
//! The control API (`control.rs`) serves the route with its bearer-token `Caller` and audits
//! each update; `incident_update_route` serves the same handler behind any extractor that
//! implements `Operator` (the tests' stand-in).
//!
//! `add_update` does the work: validates the body, appends the update in the store,
//! refreshes the page's incidents and answers `201 {"incident": ...}` in Statuspage's shape.

use super::error::ApiError;
use super::statuspage::{self, Incident};
use super::ApiState;
use crate::clock::Timestamp;
use crate::incident::IncidentStatus;
use crate::store::{NewIncidentUpdate, StoreError};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// The longest update body accepted, in characters: a status update, not a postmortem file.
pub const MAX_BODY_CHARS: usize = 5_000;

/// The request body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// `investigating | identified | monitoring | resolved | postmortem`.
    pub status: String,
    /// What customers read.
    pub body: String,
}

#[derive(Serialize)]
struct IncidentAnswer {
    incident: Incident,
}

/// What the route needs from authentication: the caller's name, once it is known that the
/// caller may act as an operator (401/403 as `ApiError` otherwise).
pub trait Operator {
    fn operator_name(self) -> Result<String, ApiError>;
}

/// `POST /api/v1/incidents/{id}/updates`, authenticated by the extractor `C`.
pub fn incident_update_route<C>() -> Router<ApiState>
where
    C: FromRequestParts<ApiState> + Operator + Send + 'static,
{
    Router::new().route("/api/v1/incidents/{id}/updates", post(post_update::<C>))
}

async fn post_update<C: Operator>(
    State(state): State<ApiState>,
    caller: C,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let actor = caller.operator_name()?;
    let Path(id) = id?;
    let Json(body) = body?;
    add_update(&state, &id, &actor, body).await
}

/// Checks a request: a known status and a body with words in it, not too long.
pub fn validate(req: &UpdateRequest) -> Result<(IncidentStatus, String), ApiError> {
    let status = IncidentStatus::parse(req.status.trim()).ok_or_else(|| {
        let known: Vec<&str> = IncidentStatus::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::Unprocessable(format!(
            "status {:?} is not one of {}",
            req.status,
            known.join(", ")
        ))
    })?;
    let body = req.body.trim();
    if body.is_empty() {
        return Err(ApiError::Unprocessable(
            "body must say something to customers".to_owned(),
        ));
    }
    // Counted as sent, before trimming, as the OpenAPI document's maxLength counts.
    let chars = req.body.chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "body has {chars} characters; at most {MAX_BODY_CHARS} are accepted"
        )));
    }
    Ok((status, body.to_owned()))
}

/// Appends `actor`'s update to incident `id` and answers `201 {"incident": ...}`.
pub async fn add_update(
    state: &ApiState,
    id: &str,
    actor: &str,
    req: UpdateRequest,
) -> Result<Response, ApiError> {
    let (status, body) = validate(&req)?;
    let board = state.board().clone();
    let store = board
        .store()
        .cloned()
        .ok_or_else(|| ApiError::not_found("this server keeps no incidents"))?;
    let update = NewIncidentUpdate {
        status,
        body,
        actor: actor.to_owned(),
        at: Timestamp::now(),
    };
    let id = id.to_owned();
    let stored = store
        .write(move |s| s.add_incident_update(&id, &update))
        .await;
    let record = match stored {
        Ok(r) => r,
        Err(StoreError::NoSuchIncident(id)) => {
            return Err(ApiError::not_found(format!("no incident with id {id:?}")))
        }
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "storing an incident update: {e}"
            )))
        }
    };
    if let Err(e) = board.reload_incidents().await {
        // The update is stored; the page catches up at the next transition or update.
        tracing::error!("incident update stored, but the page could not reload incidents: {e}");
    }
    let snapshot = state.snapshot();
    let page_id = statuspage::page(&snapshot).id;
    let incident = statuspage::incident(&snapshot, &record, &page_id);
    Ok((StatusCode::CREATED, Json(IncidentAnswer { incident })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(status: &str, body: &str) -> UpdateRequest {
        UpdateRequest {
            status: status.into(),
            body: body.into(),
        }
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let err = |r: UpdateRequest| validate(&r).unwrap_err().to_string();
        assert_eq!(
            err(req("fixed", "x")),
            "status \"fixed\" is not one of investigating, identified, monitoring, resolved, postmortem"
        );
        assert_eq!(
            err(req("resolved", "  ")),
            "body must say something to customers"
        );
        assert!(err(req("resolved", &"x".repeat(MAX_BODY_CHARS + 1))).contains("at most 5000"));
        assert_eq!(
            validate(&req(" monitoring ", " Fix deployed. ")).unwrap(),
            (IncidentStatus::Monitoring, "Fix deployed.".to_owned())
        );
    }
}
