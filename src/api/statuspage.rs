//! Atlassian Statuspage v2 documents (`summary.json`, `status.json`, ...) built purely from a `Snapshot` and its `Extras`.
//!
//! Widgets and scripts written for Statuspage read these, so the keys, nesting and enums must
//! match `shared/data/statuspage_summary_example.json` exactly; the types here both serialize
//! our answers and deserialize that reference, which a test round-trips to prove the shape.
//! Nothing here does I/O or reads a clock: the snapshot and the extras carry every timestamp.

use crate::clock::Timestamp;
use crate::failover::{Side, State};
use crate::store::IncidentRecord;
use crate::view::{Extras, MaintenanceStatus, MaintenanceView, ServiceView, Snapshot};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

/// Statuspage has no configurable zone for us to honour; every timestamp we emit is UTC.
const TIME_ZONE: &str = "Etc/UTC";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub id: String,
    pub name: String,
    pub url: String,
    pub time_zone: String,
    pub updated_at: String,
}

/// The overall rollup. Statuspage documents `none | minor | major | critical`; pages under
/// maintenance also report `maintenance`, which widgets already handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    None,
    Maintenance,
    Minor,
    Major,
    Critical,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub indicator: Indicator,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub id: String,
    pub name: String,
    /// `operational | degraded_performance | partial_outage | major_outage | under_maintenance`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub position: u32,
    pub description: Option<String>,
    pub showcase: bool,
    /// A date (`YYYY-MM-DD`), not a timestamp.
    pub start_date: Option<String>,
    pub group_id: Option<String>,
    pub page_id: String,
    pub group: bool,
    pub only_show_if_degraded: bool,
    /// Member ids; present only on group components, as in Statuspage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
}

/// An incident or a scheduled maintenance (the latter fills `scheduled_for`/`scheduled_until`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    pub id: String,
    pub name: String,
    /// Incidents: `investigating | identified | monitoring | resolved | postmortem`;
    /// maintenances: `scheduled | in_progress | verifying | completed`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub monitoring_at: Option<String>,
    pub resolved_at: Option<String>,
    /// `none | minor | major | critical | maintenance`.
    pub impact: String,
    pub shortlink: String,
    pub started_at: String,
    pub page_id: String,
    /// Present (possibly `null`) on maintenances only: the outer `Option` says whether the
    /// key is there at all.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_for: Option<Option<String>>,
    /// `null` for a maintenance that lasts until an operator ends it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_until: Option<Option<String>>,
    pub incident_updates: Vec<IncidentUpdate>,
    pub components: Vec<Component>,
}

/// A key that is present deserializes to `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentUpdate {
    pub id: String,
    pub status: String,
    pub body: String,
    pub incident_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub display_at: String,
    pub affected_components: Vec<AffectedComponent>,
    pub deliver_notifications: bool,
    pub custom_tweet: Option<String>,
    pub tweet_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffectedComponent {
    pub code: String,
    pub name: String,
    pub old_status: String,
    pub new_status: String,
}

/// `GET /api/v2/summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub page: Page,
    pub status: Status,
    pub components: Vec<Component>,
    pub incidents: Vec<Incident>,
    pub scheduled_maintenances: Vec<Incident>,
}

/// `GET /api/v2/status.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusDoc {
    pub page: Page,
    pub status: Status,
}

/// `GET /api/v2/components.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentsDoc {
    pub page: Page,
    pub components: Vec<Component>,
}

/// `GET /api/v2/incidents.json` and `/api/v2/incidents/unresolved.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentsDoc {
    pub page: Page,
    pub incidents: Vec<Incident>,
}

/// `GET /api/v2/scheduled-maintenances.json`, `.../upcoming.json` and `.../active.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenancesDoc {
    pub page: Page,
    pub scheduled_maintenances: Vec<Incident>,
}

/// A stable 12-character id in Statuspage's style, derived from a name so it survives restarts
/// and is the same on every node without being stored. The `kind` prefix keeps a page and a
/// component that happen to share a name from sharing an id.
pub fn stable_id(kind: &str, name: &str) -> String {
    let digest = Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0u8])
        .chain_update(name.as_bytes())
        .finalize();
    let mut id = hex::encode(digest);
    id.truncate(12);
    id
}

pub fn page(snapshot: &Snapshot) -> Page {
    let url = snapshot.public_url.trim_end_matches('/').to_string();
    Page {
        // The page is identified by where it is published; the title may be reworded freely.
        id: stable_id("page", &url),
        name: snapshot.title.clone(),
        url,
        time_zone: TIME_ZONE.to_string(),
        updated_at: snapshot.updated_at.rfc3339(),
    }
}

/// The rollup over component statuses, with Statuspage's own wording for each level.
pub fn overall<'a>(statuses: impl IntoIterator<Item = &'a str>) -> Status {
    let statuses: Vec<&str> = statuses.into_iter().collect();
    let any = |s: &str| statuses.contains(&s);
    let (indicator, description) =
        if !statuses.is_empty() && statuses.iter().all(|s| *s == "major_outage") {
            (Indicator::Critical, "Major System Outage")
        } else if any("major_outage") {
            (Indicator::Major, "Partial System Outage")
        } else if any("partial_outage") {
            (Indicator::Minor, "Minor Service Outage")
        } else if any("degraded_performance") {
            (Indicator::Minor, "Partially Degraded Service")
        } else if any("under_maintenance") {
            (Indicator::Maintenance, "Service Under Maintenance")
        } else {
            (Indicator::None, "All Systems Operational")
        };
    Status {
        indicator,
        description: description.to_string(),
    }
}

pub fn status(snapshot: &Snapshot) -> Status {
    overall(snapshot.services.iter().map(|s| s.state.component_status()))
}

/// One component per service, in configuration order.
pub fn components(snapshot: &Snapshot) -> Vec<Component> {
    let page_id = page(snapshot).id;
    snapshot
        .services
        .iter()
        .enumerate()
        .map(|(i, service)| component(service, i, &page_id))
        .collect()
}

fn component(service: &ServiceView, index: usize, page_id: &str) -> Component {
    let created_at = service.created_at.rfc3339();
    Component {
        id: stable_id("component", &service.id),
        name: service.name.clone(),
        status: service.state.component_status().to_string(),
        created_at: created_at.clone(),
        updated_at: service.since.rfc3339(),
        position: u32::try_from(index + 1).unwrap_or(u32::MAX),
        description: Some(route_description(service)),
        // The status page shows 90-day uptime bars for every service.
        showcase: true,
        start_date: Some(date_of(service.created_at)),
        group_id: None,
        page_id: page_id.to_string(),
        group: false,
        only_show_if_degraded: false,
        components: None,
    }
}

/// A sentence naming the route customers are sent to now; the part a status reader acts on.
pub fn route_description(service: &ServiceView) -> String {
    if service.routes.is_empty() {
        return format!(
            "{}: no contact route configured.",
            state_words(service.state)
        );
    }
    let targets: Vec<String> = service
        .routes
        .iter()
        .map(|r| format!("{} ({})", r.active_target(), r.active.as_str()))
        .collect();
    let uses_backup = service.routes.iter().any(|r| r.active == Side::Backup);
    let lead = if uses_backup {
        "Customers are using the backup route"
    } else {
        "Customers are using the primary route"
    };
    format!("{lead}: {}", targets.join(", "))
}

/// The state in plain words for people, shared by the HTML page and component descriptions.
pub fn state_words(state: State) -> &'static str {
    match state {
        State::Operational => "Operational",
        State::Degraded => "Degraded performance",
        State::FailedOver => "Using backup route",
        State::Recovering => "Recovering, still using backup route",
        State::Outage => "Outage, no working route",
        State::Maintenance => "Under maintenance",
        State::Drill => "Operational (failover drill in progress)",
    }
}

fn date_of(t: Timestamp) -> String {
    let mut s = t.rfc3339();
    s.truncate(10);
    s
}

/// Links to one incident on the status page: Statuspage's `shortlink`.
pub fn incident_link(snapshot: &Snapshot, public_id: &str) -> String {
    format!(
        "{}/status#incident-{public_id}",
        snapshot.public_url.trim_end_matches('/')
    )
}

/// The component of `service` (by id), if it is still configured.
fn component_of(snapshot: &Snapshot, service: &str, page_id: &str) -> Option<Component> {
    snapshot
        .services
        .iter()
        .enumerate()
        .find(|(_, s)| s.id == service)
        .map(|(i, s)| component(s, i, page_id))
}

fn service_name<'a>(snapshot: &'a Snapshot, service: &'a str) -> &'a str {
    snapshot
        .services
        .iter()
        .find(|s| s.id == service)
        .map_or(service, |s| s.name.as_str())
}

/// One stored incident in Statuspage's shape, updates newest first.
pub fn incident(snapshot: &Snapshot, i: &IncidentRecord, page_id: &str) -> Incident {
    let code = stable_id("component", &i.service);
    let name = service_name(snapshot, &i.service).to_owned();
    let incident_updates = i
        .updates
        .iter()
        .map(|u| {
            let at = u.created_at.rfc3339();
            IncidentUpdate {
                id: stable_id("incident_update", &format!("{}/{}", i.public_id, u.id)),
                status: u.status.as_str().to_owned(),
                body: u.body.clone(),
                incident_id: i.public_id.clone(),
                created_at: at.clone(),
                updated_at: at.clone(),
                display_at: at,
                affected_components: vec![AffectedComponent {
                    code: code.clone(),
                    name: name.clone(),
                    old_status: u.old_component_status.clone(),
                    new_status: u.new_component_status.clone(),
                }],
                // Every automatic update is announced (e-mail, feeds); so are operators'.
                deliver_notifications: true,
                custom_tweet: None,
                tweet_id: None,
            }
        })
        .collect();
    Incident {
        id: i.public_id.clone(),
        name: i.name.clone(),
        status: i.status.as_str().to_owned(),
        created_at: i.created_at.rfc3339(),
        updated_at: i.updated_at.rfc3339(),
        monitoring_at: i.monitoring_at.map(Timestamp::rfc3339),
        resolved_at: i.resolved_at.map(Timestamp::rfc3339),
        impact: i.impact.as_str().to_owned(),
        shortlink: incident_link(snapshot, &i.public_id),
        started_at: i.started_at.rfc3339(),
        page_id: page_id.to_owned(),
        scheduled_for: None,
        scheduled_until: None,
        incident_updates,
        components: component_of(snapshot, &i.service, page_id)
            .into_iter()
            .collect(),
    }
}

/// The stable id of a maintenance: its service and start, so each occurrence has its own.
pub fn maintenance_id(m: &MaintenanceView) -> String {
    stable_id(
        "maintenance",
        &format!("{}/{}", m.service, m.starts_at.as_millis()),
    )
}

/// One maintenance in Statuspage's shape, with one update saying what it is for.
pub fn maintenance(snapshot: &Snapshot, m: &MaintenanceView, page_id: &str) -> Incident {
    let id = maintenance_id(m);
    let status = m.status.as_str().to_owned();
    let created = m.created_at.rfc3339();
    let (old, new) = match m.status {
        MaintenanceStatus::Scheduled => ("operational", "operational"),
        MaintenanceStatus::InProgress => ("operational", "under_maintenance"),
    };
    let until = m.ends_at.map_or_else(
        || "until it is declared finished".to_owned(),
        |t| format!("until {}", t.rfc3339()),
    );
    Incident {
        id: id.clone(),
        name: format!("{}: planned maintenance", m.service_name),
        status: status.clone(),
        created_at: created.clone(),
        updated_at: created.clone(),
        monitoring_at: None,
        resolved_at: None,
        impact: "maintenance".to_owned(),
        shortlink: format!(
            "{}/status#maintenance-{id}",
            snapshot.public_url.trim_end_matches('/')
        ),
        started_at: m.starts_at.rfc3339(),
        page_id: page_id.to_owned(),
        scheduled_for: Some(Some(m.starts_at.rfc3339())),
        scheduled_until: Some(m.ends_at.map(Timestamp::rfc3339)),
        incident_updates: vec![IncidentUpdate {
            id: stable_id("maintenance_update", &id),
            status,
            body: format!(
                "{} ({until}). Customers are kept on a working contact route throughout.",
                m.reason
            ),
            incident_id: id.clone(),
            created_at: created.clone(),
            updated_at: created.clone(),
            display_at: created,
            affected_components: vec![AffectedComponent {
                code: stable_id("component", &m.service),
                name: m.service_name.clone(),
                old_status: old.to_owned(),
                new_status: new.to_owned(),
            }],
            deliver_notifications: true,
            custom_tweet: None,
            tweet_id: None,
        }],
        components: component_of(snapshot, &m.service, page_id)
            .into_iter()
            .collect(),
    }
}

/// Incidents, newest first: all of them, or only the unresolved ones.
pub fn incidents(snapshot: &Snapshot, extras: &Extras, unresolved_only: bool) -> Vec<Incident> {
    let page_id = page(snapshot).id;
    extras
        .incidents
        .iter()
        .filter(|i| !unresolved_only || i.is_open())
        .map(|i| incident(snapshot, i, &page_id))
        .collect()
}

/// Maintenances in progress and upcoming, optionally only those of one status.
pub fn maintenances(
    snapshot: &Snapshot,
    extras: &Extras,
    only: Option<MaintenanceStatus>,
) -> Vec<Incident> {
    let page_id = page(snapshot).id;
    extras
        .maintenances
        .iter()
        .filter(|m| only.is_none_or(|s| m.status == s))
        .map(|m| maintenance(snapshot, m, &page_id))
        .collect()
}

pub fn summary(snapshot: &Snapshot, extras: &Extras) -> Summary {
    Summary {
        page: page(snapshot),
        status: status(snapshot),
        components: components(snapshot),
        // As on Statuspage: the summary lists unresolved incidents and the maintenances
        // that are upcoming or in progress.
        incidents: incidents(snapshot, extras, true),
        scheduled_maintenances: maintenances(snapshot, extras, None),
    }
}

pub fn status_doc(snapshot: &Snapshot, _extras: &Extras) -> StatusDoc {
    StatusDoc {
        page: page(snapshot),
        status: status(snapshot),
    }
}

pub fn components_doc(snapshot: &Snapshot, _extras: &Extras) -> ComponentsDoc {
    ComponentsDoc {
        page: page(snapshot),
        components: components(snapshot),
    }
}

pub fn incidents_doc(snapshot: &Snapshot, extras: &Extras) -> IncidentsDoc {
    IncidentsDoc {
        page: page(snapshot),
        incidents: incidents(snapshot, extras, false),
    }
}

pub fn unresolved_doc(snapshot: &Snapshot, extras: &Extras) -> IncidentsDoc {
    IncidentsDoc {
        page: page(snapshot),
        incidents: incidents(snapshot, extras, true),
    }
}

pub fn maintenances_doc(snapshot: &Snapshot, extras: &Extras) -> MaintenancesDoc {
    MaintenancesDoc {
        page: page(snapshot),
        scheduled_maintenances: maintenances(snapshot, extras, None),
    }
}

pub fn upcoming_maintenances_doc(snapshot: &Snapshot, extras: &Extras) -> MaintenancesDoc {
    MaintenancesDoc {
        page: page(snapshot),
        scheduled_maintenances: maintenances(snapshot, extras, Some(MaintenanceStatus::Scheduled)),
    }
}

pub fn active_maintenances_doc(snapshot: &Snapshot, extras: &Extras) -> MaintenancesDoc {
    MaintenancesDoc {
        page: page(snapshot),
        scheduled_maintenances: maintenances(snapshot, extras, Some(MaintenanceStatus::InProgress)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(statuses: &[&str], indicator: Indicator, description: &str) {
        let got = overall(statuses.iter().copied());
        assert_eq!(got.indicator, indicator, "for {statuses:?}");
        assert_eq!(got.description, description, "for {statuses:?}");
    }

    #[test]
    fn overall_indicator_follows_the_worst_component() {
        check(&[], Indicator::None, "All Systems Operational");
        check(
            &["operational", "operational"],
            Indicator::None,
            "All Systems Operational",
        );
        check(
            &["operational", "degraded_performance"],
            Indicator::Minor,
            "Partially Degraded Service",
        );
        check(
            &["partial_outage", "degraded_performance"],
            Indicator::Minor,
            "Minor Service Outage",
        );
        check(
            &["operational", "under_maintenance"],
            Indicator::Maintenance,
            "Service Under Maintenance",
        );
        // An outage matters more to a reader than a maintenance window elsewhere.
        check(
            &["under_maintenance", "partial_outage"],
            Indicator::Minor,
            "Minor Service Outage",
        );
        check(
            &["major_outage", "operational"],
            Indicator::Major,
            "Partial System Outage",
        );
        check(
            &["major_outage", "major_outage"],
            Indicator::Critical,
            "Major System Outage",
        );
    }

    #[test]
    fn stable_ids_are_short_distinct_and_repeatable() {
        let a = stable_id("component", "ticket-submission");
        assert_eq!(a.len(), 12);
        assert_eq!(a, stable_id("component", "ticket-submission"));
        assert_ne!(a, stable_id("component", "support-portal"));
        assert_ne!(a, stable_id("page", "ticket-submission"));
    }

    #[test]
    fn start_date_is_a_date() {
        assert_eq!(date_of(Timestamp(1_773_481_337_381)), "2026-03-14");
    }
}
