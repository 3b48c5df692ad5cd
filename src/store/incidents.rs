//! Stored incidents and their updates: applied inside a transition's transaction, read for the status page.
//!
//! `apply_transition` runs inside `Store::commit_transition`'s transaction and applies
//! `incident::plan`, so the transition row and the incident it opens or moves on are committed
//! together. Operators add updates with `Store::add_incident_update`.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::failover::Transition;
use crate::incident::{self, Change, Impact, IncidentStatus, OpenIncident, ServiceWords};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;

/// One incident with its updates, newest update first (as Statuspage lists them).
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRecord {
    pub id: i64,
    /// The 12-character id of the JSON documents and of `/api/v1/incidents/{id}/updates`.
    pub public_id: String,
    pub service: String,
    pub name: String,
    pub status: IncidentStatus,
    pub impact: Impact,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub started_at: Timestamp,
    pub monitoring_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub updates: Vec<IncidentUpdateRecord>,
}

impl IncidentRecord {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct IncidentUpdateRecord {
    pub id: i64,
    pub status: IncidentStatus,
    pub body: String,
    /// `system` or the operator's token name.
    pub actor: String,
    /// Statuspage component statuses before and after the change this update reports.
    pub old_component_status: String,
    pub new_component_status: String,
    pub created_at: Timestamp,
}

/// An operator's update to an incident.
#[derive(Clone, Debug, PartialEq)]
pub struct NewIncidentUpdate {
    pub status: IncidentStatus,
    pub body: String,
    pub actor: String,
    pub at: Timestamp,
}

/// Opens or moves on the service's incident as `incident::plan` says, in `tx`.
pub(super) fn apply_transition(
    tx: &Connection,
    t: &Transition,
    transition_id: i64,
    words: &ServiceWords,
) -> Result<(), StoreError> {
    let open: Option<(i64, String, String)> = tx
        .query_row(
            "SELECT id, status, impact FROM incidents
             WHERE service = ?1 AND resolved_at_ms IS NULL ORDER BY id DESC LIMIT 1",
            [&t.service],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let open = open
        .map(|(id, status, impact)| -> Result<_, StoreError> {
            Ok((
                id,
                OpenIncident {
                    status: parse_status(&status)?,
                    impact: parse_impact(&impact)?,
                },
            ))
        })
        .transpose()?;
    let at = t.at.as_millis();
    let old = t.from.component_status();
    let new = t.to.component_status();
    match incident::plan(open.map(|(_, o)| o), t, words) {
        Change::Nothing => {}
        Change::Open {
            name,
            status,
            impact,
            body,
        } => {
            let public_id = incident::public_id(&t.service, transition_id);
            tx.execute(
                "INSERT INTO incidents (public_id, service, name, status, impact, transition_id,
                    created_at_ms, updated_at_ms, started_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7)",
                params![
                    public_id,
                    t.service,
                    name,
                    status.as_str(),
                    impact.as_str(),
                    transition_id,
                    at
                ],
            )?;
            let id = tx.last_insert_rowid();
            insert_update(
                tx,
                id,
                status,
                &body,
                &t.actor,
                Some(transition_id),
                old,
                new,
                at,
            )?;
        }
        Change::Update {
            status,
            impact,
            body,
        } => {
            let Some((id, _)) = open else {
                // `plan` only updates an incident it was given; nothing to do otherwise.
                return Ok(());
            };
            set_status(tx, id, status, Some(impact), at)?;
            insert_update(
                tx,
                id,
                status,
                &body,
                &t.actor,
                Some(transition_id),
                old,
                new,
                at,
            )?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_update(
    tx: &Connection,
    incident: i64,
    status: IncidentStatus,
    body: &str,
    actor: &str,
    transition_id: Option<i64>,
    old: &str,
    new: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO incident_updates (incident_id, status, body, actor, transition_id,
            old_component_status, new_component_status, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            incident,
            status.as_str(),
            body,
            actor,
            transition_id,
            old,
            new,
            at
        ],
    )?;
    Ok(())
}

/// Moves the incident to `status`: `monitoring_at` is set the first time it is monitored,
/// `resolved_at` when it is resolved (and kept through a postmortem).
fn set_status(
    tx: &Connection,
    id: i64,
    status: IncidentStatus,
    impact: Option<Impact>,
    at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE incidents SET
            status = ?2,
            impact = COALESCE(?3, impact),
            updated_at_ms = ?4,
            monitoring_at_ms = CASE WHEN ?2 = 'monitoring' AND monitoring_at_ms IS NULL
                                    THEN ?4 ELSE monitoring_at_ms END,
            resolved_at_ms = CASE WHEN ?2 IN ('resolved', 'postmortem')
                                  THEN COALESCE(resolved_at_ms, ?4)
                                  ELSE NULL END
         WHERE id = ?1",
        params![id, status.as_str(), impact.map(Impact::as_str), at],
    )?;
    Ok(())
}

fn parse_status(s: &str) -> Result<IncidentStatus, StoreError> {
    IncidentStatus::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "incident status",
        value: s.to_owned(),
    })
}

fn parse_impact(s: &str) -> Result<Impact, StoreError> {
    Impact::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "incident impact",
        value: s.to_owned(),
    })
}

const INCIDENT_SELECT: &str = "SELECT id, public_id, service, name, status, impact, created_at_ms,
        updated_at_ms, started_at_ms, monitoring_at_ms, resolved_at_ms FROM incidents";

type RawIncident = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

fn raw_incident(r: &Row<'_>) -> rusqlite::Result<RawIncident> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn into_record(conn: &Connection, raw: RawIncident) -> Result<IncidentRecord, StoreError> {
    let (id, public_id, service, name, status, impact, created, updated, started, mon, res) = raw;
    let mut stmt = conn.prepare_cached(
        "SELECT id, status, body, actor, old_component_status, new_component_status, created_at_ms
         FROM incident_updates WHERE incident_id = ?1 ORDER BY id DESC",
    )?;
    let updates = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?
        .map(|row| {
            let (id, status, body, actor, old, new, at) = row?;
            Ok(IncidentUpdateRecord {
                id,
                status: parse_status(&status)?,
                body,
                actor,
                old_component_status: old,
                new_component_status: new,
                created_at: Timestamp::from_millis(at),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(IncidentRecord {
        id,
        public_id,
        service,
        name,
        status: parse_status(&status)?,
        impact: parse_impact(&impact)?,
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
        started_at: Timestamp::from_millis(started),
        monitoring_at: mon.map(Timestamp::from_millis),
        resolved_at: res.map(Timestamp::from_millis),
        updates,
    })
}

impl Store {
    /// Registers what customers call each service and its routes, for the words of the
    /// incidents transitions open. Services not described are named by their id.
    pub fn describe_services(&self, words: HashMap<String, ServiceWords>) {
        let mut w = self
            .words
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *w = words;
    }

    pub(super) fn words_for(&self, service: &str) -> ServiceWords {
        let w = self
            .words
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        w.get(service)
            .cloned()
            .unwrap_or_else(|| ServiceWords::bare(service))
    }

    /// Every open incident and the `recent` newest ones besides, newest first.
    pub fn incidents(&self, recent: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        let conn = self.conn();
        let recent = i64::try_from(recent).unwrap_or(i64::MAX);
        let sql = format!(
            "{INCIDENT_SELECT} WHERE resolved_at_ms IS NULL
                OR id IN (SELECT id FROM incidents ORDER BY id DESC LIMIT ?1)
             ORDER BY id DESC"
        );
        let mut stmt = conn.prepare(&sql)?;
        let raws = stmt
            .query_map([recent], raw_incident)?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter().map(|r| into_record(&conn, r)).collect()
    }

    /// One incident by its public id.
    pub fn incident(&self, public_id: &str) -> Result<Option<IncidentRecord>, StoreError> {
        let conn = self.conn();
        let sql = format!("{INCIDENT_SELECT} WHERE public_id = ?1");
        let raw = conn.query_row(&sql, [public_id], raw_incident).optional()?;
        raw.map(|r| into_record(&conn, r)).transpose()
    }

    /// How many incidents are open (not resolved).
    pub fn open_incidents(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM incidents WHERE resolved_at_ms IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// An operator's update: appended to the incident's timeline, and the incident moves to
    /// its status (a `resolved` update closes it, any open status reopens it). Returns the
    /// incident as stored afterwards.
    pub fn add_incident_update(
        &self,
        public_id: &str,
        update: &NewIncidentUpdate,
    ) -> Result<IncidentRecord, StoreError> {
        self.check_file()?;
        {
            let mut conn = self.conn();
            let tx = super::open::begin(&mut conn)?;
            let found: Option<(i64, String)> = tx
                .query_row(
                    "SELECT i.id, COALESCE(
                        (SELECT new_component_status FROM incident_updates u
                         WHERE u.incident_id = i.id ORDER BY u.id DESC LIMIT 1), 'operational')
                     FROM incidents i WHERE i.public_id = ?1",
                    [public_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((id, component)) = found else {
                return Err(StoreError::NoSuchIncident(public_id.to_owned()));
            };
            let at = update.at.as_millis();
            set_status(&tx, id, update.status, None, at)?;
            // An operator's words do not change the component: it shows what the probes see.
            insert_update(
                &tx,
                id,
                update.status,
                &update.body,
                &update.actor,
                None,
                &component,
                &component,
                at,
            )?;
            tx.commit()?;
        }
        self.incident(public_id)?
            .ok_or_else(|| StoreError::NoSuchIncident(public_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::{Cause, State};
    use crate::incident::RouteWords;

    const T0: Timestamp = Timestamp(1_773_481_337_381);

    fn t(from: State, to: State, secs: i64) -> Transition {
        Transition {
            service: "ticket-submission".into(),
            from,
            to,
            cause: Cause::PrimaryDown,
            at: Timestamp(T0.0 + secs * 1000),
            actor: "system".into(),
            reason: "ticket-form: down (503)".into(),
            evidence: Vec::new(),
            public_message: None,
        }
    }

    fn store() -> Store {
        let store = Store::open_in_memory().unwrap();
        store.ensure_service("ticket-submission", T0).unwrap();
        store.describe_services(HashMap::from([(
            "ticket-submission".to_owned(),
            ServiceWords {
                name: "Ticket submission".into(),
                routes: vec![RouteWords {
                    primary: "https://support.example.com/new".into(),
                    backup: "https://forms.example.net/support".into(),
                }],
            },
        )]));
        store
    }

    #[test]
    fn a_failover_and_its_recovery_write_one_incident_with_three_updates() {
        let store = store();
        store
            .commit_transition(&t(State::Operational, State::FailedOver, 0), "v", &[])
            .unwrap();
        assert_eq!(store.open_incidents().unwrap(), 1);
        store
            .commit_transition(&t(State::FailedOver, State::Recovering, 60), "v", &[])
            .unwrap();
        store
            .commit_transition(&t(State::Recovering, State::Operational, 120), "v", &[])
            .unwrap();
        assert_eq!(store.open_incidents().unwrap(), 0);

        let all = store.incidents(10).unwrap();
        assert_eq!(all.len(), 1);
        let i = &all[0];
        assert_eq!(i.service, "ticket-submission");
        assert!(
            i.name.starts_with("Ticket submission is failing"),
            "{}",
            i.name
        );
        assert_eq!(i.public_id.len(), 12);
        assert_eq!(i.status, IncidentStatus::Resolved);
        assert_eq!(i.impact, Impact::Minor);
        assert_eq!(i.started_at, T0);
        assert_eq!(i.monitoring_at, Some(Timestamp(T0.0 + 60_000)));
        assert_eq!(i.resolved_at, Some(Timestamp(T0.0 + 120_000)));
        assert_eq!(i.updated_at, Timestamp(T0.0 + 120_000));
        let trail: Vec<(IncidentStatus, &str, &str)> = i
            .updates
            .iter()
            .map(|u| {
                (
                    u.status,
                    u.old_component_status.as_str(),
                    u.new_component_status.as_str(),
                )
            })
            .collect();
        assert_eq!(
            trail,
            [
                (IncidentStatus::Resolved, "partial_outage", "operational"),
                (
                    IncidentStatus::Monitoring,
                    "partial_outage",
                    "partial_outage"
                ),
                (IncidentStatus::Identified, "operational", "partial_outage"),
            ]
        );
        assert!(i.updates[2]
            .body
            .contains("https://forms.example.net/support"));

        // The next failover opens a new incident rather than reviving the resolved one.
        store
            .commit_transition(&t(State::Operational, State::FailedOver, 300), "v", &[])
            .unwrap();
        let all = store.incidents(10).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].is_open() && !all[1].is_open());
        assert_ne!(all[0].public_id, all[1].public_id);
    }

    #[test]
    fn a_rolled_back_transition_leaves_no_incident() {
        let store = store();
        // The stored state is operational, so a transition from failed_over is refused.
        store
            .commit_transition(&t(State::FailedOver, State::Outage, 0), "v", &[])
            .unwrap_err();
        assert!(store.incidents(10).unwrap().is_empty());
    }

    #[test]
    fn operators_add_updates_and_can_resolve() {
        let store = store();
        store
            .commit_transition(&t(State::Operational, State::FailedOver, 0), "v", &[])
            .unwrap();
        let id = store.incidents(1).unwrap()[0].public_id.clone();
        let update = |status, body: &str, secs: i64| NewIncidentUpdate {
            status,
            body: body.into(),
            actor: "alice".into(),
            at: Timestamp(T0.0 + secs * 1000),
        };
        let i = store
            .add_incident_update(
                &id,
                &update(
                    IncidentStatus::Identified,
                    "Vendor confirmed the fault.",
                    30,
                ),
            )
            .unwrap();
        assert_eq!(i.updates.len(), 2);
        assert_eq!(i.updates[0].actor, "alice");
        assert_eq!(i.updates[0].body, "Vendor confirmed the fault.");
        assert_eq!(i.updates[0].new_component_status, "partial_outage");
        assert!(i.is_open());
        let i = store
            .add_incident_update(&id, &update(IncidentStatus::Resolved, "Fixed.", 90))
            .unwrap();
        assert_eq!(i.resolved_at, Some(Timestamp(T0.0 + 90_000)));
        assert_eq!(store.open_incidents().unwrap(), 0);
        let i = store
            .add_incident_update(&id, &update(IncidentStatus::Postmortem, "Report.", 900))
            .unwrap();
        assert_eq!(i.status, IncidentStatus::Postmortem);
        assert_eq!(i.resolved_at, Some(Timestamp(T0.0 + 90_000)), "kept");
        assert!(matches!(
            store.add_incident_update("nope", &update(IncidentStatus::Resolved, "x", 1)),
            Err(StoreError::NoSuchIncident(_))
        ));
    }

    #[test]
    fn incidents_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).unwrap();
            store.ensure_service("ticket-submission", T0).unwrap();
            store
                .commit_transition(&t(State::Operational, State::Outage, 0), "v", &[])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let all = store.incidents(10).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].status, IncidentStatus::Investigating);
        assert_eq!(all[0].impact, Impact::Major);
        assert_eq!(all[0].name, "ticket-submission is unavailable");
    }
}
