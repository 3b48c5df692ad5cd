//! Pushes to an Atlassian Statuspage page through its management API, from the outbox.
//!
//! Each transition that concerns customers becomes ONE outbox row (channel `statuspage`)
//! holding a small plan, written with the transition; at send time the plan becomes one
//! request, the fewest the API allows:
//!
//! - failover / outage: `POST /pages/{page}/incidents` with `component_ids` and the
//!   component's new status (the incident sets the component too); if an incident is
//!   already open for the service (failover, then outage), `PATCH` that one instead.
//! - failback / outage resolved: `PATCH /pages/{page}/incidents/{id}` to `resolved` with
//!   the component `operational`; without a known incident, `PATCH` the component.
//! - maintenance start/end: `PATCH /pages/{page}/components/{component}`.
//!
//! Requests are paced to one per second (the API's documented rate limit), and a 420/429
//! answer's `Retry-After` is honoured both by the pacer and by the row's next attempt.
//! The API key is read from the environment at send time and sent as
//! `Authorization: OAuth <key>`; it never appears in a row, a log line or an error.

use super::http;
use super::render::Kind;
use super::transport::{Failure, Receipt};
use crate::clock::Timestamp;
use crate::config::StatuspagePushConfig;
use crate::failover::{State, Transition};
use crate::store::{NewAnnouncement, OutboxItem, StoreError, StoreHandle};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most one request per this interval.
pub const PACE: Duration = Duration::from_secs(1);
/// Each request's timeout.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// What one row asks of the API, stored as JSON in the row's text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Plan {
    /// Open (or update the open) incident, setting the component's status.
    OpenIncident {
        component_id: String,
        component_status: String,
        name: String,
        body: String,
    },
    /// Resolve the open incident and set the component's status.
    ResolveIncident {
        component_id: String,
        component_status: String,
        body: String,
    },
    /// Only set the component's status.
    Component {
        component_id: String,
        component_status: String,
    },
}

/// The Statuspage component status for a service in `state` (design.md's table).
pub fn component_status(state: State) -> &'static str {
    match state {
        State::Operational | State::Drill => "operational",
        State::Degraded => "degraded_performance",
        State::FailedOver | State::Recovering => "partial_outage",
        State::Outage => "major_outage",
        State::Maintenance => "under_maintenance",
    }
}

/// The row for `t` (of `kind`), or none when this kind does not change the public page.
/// `text` is the customers' message body, used as the incident update.
pub fn plan(
    kind: Kind,
    t: &Transition,
    component_id: &str,
    service_name: &str,
    text: &str,
) -> Option<NewAnnouncement> {
    let component_id = component_id.to_owned();
    let component_status = component_status(t.to).to_owned();
    // The first paragraph: the plain-words sentence, without links to our own status page.
    let mut body = text.split("\n\n").next().unwrap_or("").trim().to_owned();
    // An operator's public words follow it; their internal `reason` never goes out.
    if let Some(m) = t.public_message.as_deref().map(str::trim) {
        if !m.is_empty() {
            body = format!("{body} {m}");
        }
    }
    let plan = match kind {
        Kind::Failover | Kind::Outage => Plan::OpenIncident {
            component_id: component_id.clone(),
            component_status,
            name: match kind {
                Kind::Outage => format!("{service_name} is unavailable"),
                _ => format!("{service_name}: switched to a backup"),
            },
            body,
        },
        Kind::Failback | Kind::OutageResolved => Plan::ResolveIncident {
            component_id: component_id.clone(),
            component_status,
            body,
        },
        Kind::MaintenanceStart | Kind::MaintenanceEnd => Plan::Component {
            component_id: component_id.clone(),
            component_status,
        },
        _ => return None,
    };
    Some(NewAnnouncement {
        audience: "public".to_owned(),
        channel: "statuspage".to_owned(),
        kind: kind.as_str().to_owned(),
        recipients: vec![component_id],
        subject: match &plan {
            Plan::OpenIncident { .. } => "open or update the incident".to_owned(),
            Plan::ResolveIncident { .. } => "resolve the incident".to_owned(),
            Plan::Component { .. } => "set the component status".to_owned(),
        },
        // Serialising a plain enum of strings cannot fail.
        text: serde_json::to_string(&plan).unwrap_or_default(),
        html: None,
    })
}

/// Sends `statuspage` rows. Shared by the outbox loop; paced across all rows.
pub struct StatuspagePush {
    cfg: StatuspagePushConfig,
    store: StoreHandle,
    /// When the next request may start.
    next_slot: Mutex<Instant>,
}

impl std::fmt::Debug for StatuspagePush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatuspagePush")
            .field("page_id", &self.cfg.page_id)
            .field("api_base", &self.cfg.api_base)
            .finish()
    }
}

impl StatuspagePush {
    pub fn new(cfg: StatuspagePushConfig, store: StoreHandle) -> StatuspagePush {
        StatuspagePush {
            cfg,
            store,
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Sends one row's plan: one API request.
    pub async fn send(&self, item: &OutboxItem) -> Result<Receipt, Failure> {
        let plan: Plan = serde_json::from_str(&item.text)
            .map_err(|e| Failure::from(format!("unreadable statuspage row: {e}")))?;
        let key = std::env::var(&self.cfg.api_key_env).map_err(|_| {
            Failure::from(format!(
                "environment variable {} (the Statuspage API key) is not set",
                self.cfg.api_key_env
            ))
        })?;
        let service = item.service.clone();
        let incident = {
            let s = service.clone();
            self.store
                .read(move |store| store.statuspage_incident(&s))
                .await
                .map_err(|e: StoreError| Failure::from(e.to_string()))?
        };
        let page = &self.cfg.page_id;
        let base = &self.cfg.api_base;
        let (method, url, body) = match &plan {
            Plan::OpenIncident {
                component_id,
                component_status,
                name,
                body,
            } => {
                let components = serde_json::json!({ component_id: component_status });
                match &incident {
                    Some(id) => (
                        Method::PATCH,
                        format!("{base}/pages/{page}/incidents/{id}"),
                        serde_json::json!({"incident": {
                            "status": "identified",
                            "body": body,
                            "component_ids": [component_id],
                            "components": components,
                        }}),
                    ),
                    None => (
                        Method::POST,
                        format!("{base}/pages/{page}/incidents"),
                        serde_json::json!({"incident": {
                            "name": name,
                            "status": "identified",
                            "body": body,
                            "component_ids": [component_id],
                            "components": components,
                        }}),
                    ),
                }
            }
            Plan::ResolveIncident {
                component_id,
                component_status,
                body,
            } => match &incident {
                Some(id) => (
                    Method::PATCH,
                    format!("{base}/pages/{page}/incidents/{id}"),
                    serde_json::json!({"incident": {
                        "status": "resolved",
                        "body": body,
                        "component_ids": [component_id],
                        "components": { component_id: component_status },
                    }}),
                ),
                None => component_patch(base, page, component_id, component_status),
            },
            Plan::Component {
                component_id,
                component_status,
            } => component_patch(base, page, component_id, component_status),
        };
        let path = url.strip_prefix(base.as_str()).unwrap_or(&url).to_owned();
        let response = {
            let mut slot = self.next_slot.lock().await;
            tokio::time::sleep_until(*slot).await;
            let r = http::request(
                method.clone(),
                &url,
                &[("Authorization", format!("OAuth {key}"))],
                Some(body.to_string()),
                TIMEOUT,
            )
            .await;
            let wait = match &r {
                Ok(r) if matches!(r.status, 420 | 429) => r.retry_after.unwrap_or(PACE).max(PACE),
                _ => PACE,
            };
            *slot = Instant::now() + wait;
            r
        }
        .map_err(|e| Failure::from(e.to_string()))?;
        match response.status {
            200..=299 => {
                let now = Timestamp::now();
                let update = match (&plan, method == Method::POST) {
                    (Plan::OpenIncident { .. }, true) => {
                        #[derive(Deserialize)]
                        struct Created {
                            id: String,
                        }
                        match serde_json::from_str::<Created>(&response.body) {
                            Ok(c) => Some(Some(c.id)),
                            Err(_) => {
                                tracing::warn!(
                                    "statuspage: the incident was created but its id could not be read; the recovery will set the component instead"
                                );
                                None
                            }
                        }
                    }
                    (Plan::ResolveIncident { .. }, _) => Some(None),
                    _ => None,
                };
                // The incident this request opened, updated or resolved: part of the proof.
                let incident_id = match &update {
                    Some(Some(created)) => Some(created.clone()),
                    _ if matches!(plan, Plan::Component { .. }) => None,
                    _ => incident.clone(),
                };
                if let Some(update) = update {
                    let res = self
                        .store
                        .write(move |store| {
                            store.set_statuspage_incident(&service, update.as_deref(), now)
                        })
                        .await;
                    if res.is_err() {
                        tracing::error!("statuspage: could not record the incident id");
                    }
                }
                Ok(Receipt {
                    incident_id,
                    ..Receipt::http(
                        response.status,
                        format!("{} {method} {path}", response.status),
                    )
                })
            }
            420 | 429 => Err(Failure {
                message: format!(
                    "{} rate limited on {method} {path}; retrying after {}s",
                    response.status,
                    response.retry_after.unwrap_or(PACE).as_secs()
                ),
                retry_after: Some(response.retry_after.unwrap_or(PACE)),
            }),
            status => Err(Failure::from(format!(
                "{status} on {method} {path}: {}",
                response.body.chars().take(200).collect::<String>()
            ))),
        }
    }
}

fn component_patch(
    base: &str,
    page: &str,
    component_id: &str,
    status: &str,
) -> (Method, String, serde_json::Value) {
    (
        Method::PATCH,
        format!("{base}/pages/{page}/components/{component_id}"),
        serde_json::json!({"component": {"status": status}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::Cause;

    fn t(from: State, to: State) -> Transition {
        Transition {
            service: "ticket-submission".into(),
            from,
            to,
            cause: Cause::PrimaryDown,
            at: Timestamp(0),
            actor: "system".into(),
            reason: "r".into(),
            evidence: vec![],
            public_message: None,
        }
    }

    fn plan_of(from: State, to: State) -> Option<Plan> {
        let tr = t(from, to);
        plan(
            Kind::of(&tr),
            &tr,
            "cmp1",
            "Tickets",
            "Tickets is down.\n\nmore",
        )
        .map(|a| serde_json::from_str(&a.text).unwrap())
    }

    #[test]
    fn each_kind_maps_to_one_request_plan() {
        assert_eq!(
            plan_of(State::Operational, State::FailedOver),
            Some(Plan::OpenIncident {
                component_id: "cmp1".into(),
                component_status: "partial_outage".into(),
                name: "Tickets: switched to a backup".into(),
                body: "Tickets is down.".into(),
            })
        );
        assert!(matches!(
            plan_of(State::FailedOver, State::Outage),
            Some(Plan::OpenIncident { component_status, .. }) if component_status == "major_outage"
        ));
        assert!(matches!(
            plan_of(State::Recovering, State::Operational),
            Some(Plan::ResolveIncident { component_status, .. }) if component_status == "operational"
        ));
        assert!(matches!(
            plan_of(State::Operational, State::Maintenance),
            Some(Plan::Component { component_status, .. }) if component_status == "under_maintenance"
        ));
        // Internal news never reaches the public page.
        assert_eq!(plan_of(State::FailedOver, State::Recovering), None);
        assert_eq!(plan_of(State::Operational, State::Drill), None);
    }
}
