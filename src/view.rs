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

    pub fn active_kind(&self) -> TargetKind {
        TargetKind::of(self.active_target())
    }

    /// The active target as a person reads it: the URL, address, number or instructions.
    pub fn active_display(&self) -> &str {
        target_display(self.active_target())
    }
}

/// What a route target is. Config writes them as `https://…`, `mailto:…` (or a bare
/// address), `tel:…` and `text:…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A page: `/go/{route}` redirects to it.
    Url,
    /// An e-mail address: `/go/{route}` redirects to `mailto:`.
    Email,
    /// A phone number: `/go/{route}` redirects to `tel:`.
    Phone,
    /// Instructions in words: `/go/{route}` shows them.
    Text,
}

impl TargetKind {
    pub fn of(target: &str) -> TargetKind {
        let lower = target.get(..7).unwrap_or(target).to_ascii_lowercase();
        if lower.starts_with("mailto:") {
            TargetKind::Email
        } else if lower.starts_with("tel:") {
            TargetKind::Phone
        } else if lower.starts_with("text:") {
            TargetKind::Text
        } else {
            TargetKind::Url
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Url => "url",
            TargetKind::Email => "email",
            TargetKind::Phone => "phone",
            TargetKind::Text => "text",
        }
    }
}

/// `target` without its `mailto:`, `tel:` or `text:` prefix.
pub fn target_display(target: &str) -> &str {
    let prefix = match TargetKind::of(target) {
        TargetKind::Url => 0,
        TargetKind::Email => "mailto:".len(),
        TargetKind::Phone => "tel:".len(),
        TargetKind::Text => "text:".len(),
    };
    target[prefix..].trim()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_kinds_and_what_people_read() {
        let cases = [
            (
                "https://forms.example.net/support",
                TargetKind::Url,
                "https://forms.example.net/support",
            ),
            (
                "mailto:help@example.net",
                TargetKind::Email,
                "help@example.net",
            ),
            (
                "tel:+44 20 7946 0000",
                TargetKind::Phone,
                "+44 20 7946 0000",
            ),
            (
                "text: Call the front desk",
                TargetKind::Text,
                "Call the front desk",
            ),
            (
                "TEXT:Ask at reception",
                TargetKind::Text,
                "Ask at reception",
            ),
        ];
        for (target, kind, display) in cases {
            assert_eq!(TargetKind::of(target), kind, "{target}");
            assert_eq!(target_display(target), display, "{target}");
        }
    }
}
