//! What the HTTP side reads: a snapshot of every service, check and route, replaced whole on each change.
//!
//! The shell (`app`) builds a new `Snapshot` after every outcome or transition and publishes it;
//! handlers only read. No handler can change a route.

use crate::clock::Timestamp;
use crate::config::Role;
use crate::failover::{Side, State};
use crate::health::Health;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// Status page title.
    pub title: String,
    /// Base URL for links, e.g. `http://127.0.0.1:9898`.
    pub public_url: String,
    pub updated_at: Timestamp,
    pub services: Vec<ServiceView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub state: State,
    /// When the current state was entered.
    pub since: Timestamp,
    /// Cause of the last transition, e.g. `primary_down`; `startup` before any.
    pub cause: String,
    pub checks: Vec<CheckView>,
    pub routes: Vec<RouteView>,
    /// When the service first appeared in this daemon's store (for component `created_at`).
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckView {
    pub name: String,
    pub role: Role,
    pub target: String,
    pub health: Health,
    /// `Outcome::summary()` of the last outcome, if any.
    pub last_outcome: Option<String>,
    pub last_probe_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteView {
    pub id: String,
    pub service: String,
    pub primary: String,
    pub backup: String,
    pub active: Side,
}

impl RouteView {
    pub fn active_target(&self) -> &str {
        match self.active {
            Side::Primary => &self.primary,
            Side::Backup => &self.backup,
        }
    }
}

impl Snapshot {
    pub fn route(&self, id: &str) -> Option<&RouteView> {
        self.services
            .iter()
            .flat_map(|s| s.routes.iter())
            .find(|r| r.id == id)
    }

    pub fn routes(&self) -> impl Iterator<Item = &RouteView> {
        self.services.iter().flat_map(|s| s.routes.iter())
    }
}
