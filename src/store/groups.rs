//! Announcement parts waiting for their group, and the one transaction that turns a group into an outbox row.
//!
//! A part is one e-mail's worth of news about one transition for one audience. It is written
//! in the transition's own transaction (`Store::commit_transition_with`), so nothing is lost
//! between deciding and grouping. Which parts form a group, and which are suppressed, is
//! decided by a pure planner the caller hands to [`Store::compose_groups`] (the store knows
//! nothing of audiences or wording); the store applies the decisions in ONE transaction:
//! the group's outbox row, with its Message-ID fixed from then on, and every part marked
//! `sent` or `suppressed`. A crash therefore composes a group once or not at all, and the
//! delivery loop's usual guarantees (at least once, same Message-ID) take over from there.

use super::outbox::{self, NewRow};
use super::rows::{self, parse_json_strings, parse_state};
use super::{NewAnnouncement, Store, StoreError};
use crate::clock::Timestamp;
use crate::failover::State;
use rusqlite::{params, Row};
use std::collections::HashMap;
use std::time::Duration;

/// A part to write with its transition: the rendered message for one audience, and when it
/// may join a group.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewPart {
    /// The rendered e-mail (channel `email`), exactly as it would be sent on its own.
    pub announcement: NewAnnouncement,
    /// The service's display name, for the grouped message's subject.
    pub service_name: String,
    /// When the part may join a group: the transition's time, plus `customer_delay` for
    /// customers.
    pub ready_at: Timestamp,
    /// `group_window` in force when the part was written; zero sends it alone, at once.
    pub window: Duration,
}

/// A part still waiting, with the facts of its transition that grouping decides on.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitingPart {
    pub id: i64,
    pub transition_id: i64,
    pub service: String,
    pub service_name: String,
    /// The transition's states and time (`at`); for a flapping notice, those of the
    /// transition it hangs off.
    pub from: State,
    pub to: State,
    pub at: Timestamp,
    pub audience: String,
    pub kind: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub created_at: Timestamp,
    pub ready_at: Timestamp,
    pub window: Duration,
}

/// What to do with waiting parts, as the planner decided.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupDecision {
    /// One outbox row (one e-mail) carrying `part_ids`, in that order.
    Compose {
        part_ids: Vec<i64>,
        audience: String,
        /// The part's kind when the group holds one part, else `grouped`.
        kind: String,
        recipients: Vec<String>,
        subject: String,
        text: String,
        html: Option<String>,
    },
    /// The part is not sent; `reason` (`undone`, `superseded`) is kept with it.
    Suppress { part_id: i64, reason: String },
}

/// What one `compose_groups` call wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Composed {
    /// New outbox rows, one per composed group.
    pub outbox_ids: Vec<i64>,
    /// Parts suppressed: (audience, kind, reason).
    pub suppressed: Vec<(String, String, String)>,
}

/// The kind of an outbox row carrying several parts.
pub const KIND_GROUPED: &str = "grouped";

impl Store {
    /// Runs `plan` over every waiting part (oldest first) and the time each audience's last
    /// group was composed, and applies its decisions in one transaction. A decision naming
    /// a part that is no longer waiting is a planner bug and rolls the whole call back.
    pub fn compose_groups(
        &self,
        now: Timestamp,
        plan: impl FnOnce(&[WaitingPart], &HashMap<String, Timestamp>) -> Vec<GroupDecision>,
    ) -> Result<Composed, StoreError> {
        self.check_file()?;
        let mut conn = self.conn();
        let tx = super::open::begin(&mut conn)?;
        let sql = format!("{PART_SELECT} WHERE p.status = 'waiting' ORDER BY p.id");
        let waiting = rows::all(&tx, &sql, [], read_part)?;
        if waiting.is_empty() {
            return Ok(Composed::default());
        }
        let last: HashMap<String, Timestamp> = {
            let mut stmt = tx.prepare(
                "SELECT audience, MAX(created_at_ms) FROM outbox
                 WHERE channel = 'email' AND first_part_id > 0 GROUP BY audience",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, Timestamp::from_millis(r.get(1)?)))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let by_id: HashMap<i64, &WaitingPart> = waiting.iter().map(|p| (p.id, p)).collect();
        let mut out = Composed::default();
        for decision in plan(&waiting, &last) {
            match decision {
                GroupDecision::Compose {
                    part_ids,
                    audience,
                    kind,
                    recipients,
                    subject,
                    text,
                    html,
                } => {
                    let parts: Vec<&WaitingPart> = part_ids
                        .iter()
                        .map(|id| by_id.get(id).copied().ok_or(StoreError::NoSuchPart(*id)))
                        .collect::<Result<_, _>>()?;
                    let Some(first) = parts.first() else { continue };
                    let message_id = if parts.len() == 1 {
                        // A part alone keeps the per-transition form it always had.
                        self.message_ids().for_transition(
                            first.transition_id,
                            &outbox::id_audience(&audience, &first.kind),
                            "email",
                            &first.service,
                            now,
                        )
                    } else {
                        self.message_ids().for_group(first.id, &audience, now)
                    };
                    let outbox_id = outbox::insert_row(
                        &tx,
                        &NewRow {
                            transition_id: first.transition_id,
                            audience: &audience,
                            channel: "email",
                            kind: &kind,
                            message_id,
                            recipients: &recipients,
                            subject: &subject,
                            text: &text,
                            html: html.as_deref(),
                            at: now,
                            first_part_id: first.id,
                        },
                    )?;
                    for p in &parts {
                        let n = tx.execute(
                            "UPDATE announcement_parts SET status = 'sent', outbox_id = ?2,
                                    decided_at_ms = ?3
                             WHERE id = ?1 AND status = 'waiting'",
                            params![p.id, outbox_id, now.as_millis()],
                        )?;
                        if n == 0 {
                            return Err(StoreError::NoSuchPart(p.id));
                        }
                    }
                    out.outbox_ids.push(outbox_id);
                }
                GroupDecision::Suppress { part_id, reason } => {
                    let p = by_id.get(&part_id).ok_or(StoreError::NoSuchPart(part_id))?;
                    let n = tx.execute(
                        "UPDATE announcement_parts SET status = 'suppressed',
                                suppressed_reason = ?2, decided_at_ms = ?3
                         WHERE id = ?1 AND status = 'waiting'",
                        params![part_id, reason, now.as_millis()],
                    )?;
                    if n == 0 {
                        return Err(StoreError::NoSuchPart(part_id));
                    }
                    out.suppressed
                        .push((p.audience.clone(), p.kind.clone(), reason));
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Parts waiting for their group, by audience (for `switchboard_announcements_waiting`).
    pub fn waiting_parts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT audience, COUNT(*) FROM announcement_parts WHERE status = 'waiting'
             GROUP BY audience ORDER BY audience",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            let (a, n) = r?;
            Ok((a, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
    }

    /// Parts ever suppressed, by audience and reason: what
    /// `switchboard_announcements_suppressed_total` starts from after a restart.
    pub fn suppressed_parts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT audience, suppressed_reason, COUNT(*) FROM announcement_parts
             WHERE status = 'suppressed' GROUP BY audience, suppressed_reason
             ORDER BY audience, suppressed_reason",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                r.get::<_, i64>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (a, reason, n) = r?;
            Ok((a, reason, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
    }

    /// Every part of one transition with its status (`waiting`, `sent`, `suppressed`), in
    /// insertion order: (audience, kind, status).
    pub fn parts_of(
        &self,
        transition_id: i64,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT audience, kind, status FROM announcement_parts WHERE transition_id = ?1
             ORDER BY id",
        )?;
        let rows = stmt.query_map([transition_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Inserts the parts of transition `transition_id` inside the caller's transaction.
pub(super) fn insert_parts(
    tx: &rusqlite::Connection,
    transition_id: i64,
    at: Timestamp,
    parts: &[NewPart],
) -> Result<(), StoreError> {
    for p in parts {
        let a = &p.announcement;
        let recipients =
            serde_json::to_string(&a.recipients).map_err(|source| StoreError::Json {
                what: "announcement recipients",
                source,
            })?;
        tx.execute(
            "INSERT INTO announcement_parts
               (transition_id, audience, kind, service_name, recipients, subject, body_text,
                body_html, created_at_ms, ready_at_ms, window_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                transition_id,
                a.audience,
                a.kind,
                p.service_name,
                recipients,
                a.subject,
                a.text,
                a.html,
                at.as_millis(),
                p.ready_at.as_millis(),
                i64::try_from(p.window.as_millis()).unwrap_or(i64::MAX)
            ],
        )?;
    }
    Ok(())
}

const PART_SELECT: &str = "SELECT p.id, p.transition_id, t.service, p.service_name,
        t.from_state, t.to_state, t.at_ms, p.audience, p.kind, p.recipients, p.subject,
        p.body_text, p.body_html, p.created_at_ms, p.ready_at_ms, p.window_ms
     FROM announcement_parts p JOIN transitions t ON t.id = p.transition_id";

/// Reads a row of `PART_SELECT`.
fn read_part(r: &Row<'_>) -> Result<WaitingPart, StoreError> {
    Ok(WaitingPart {
        id: r.get(0)?,
        transition_id: r.get(1)?,
        service: r.get(2)?,
        service_name: r.get(3)?,
        from: parse_state(&r.get::<_, String>(4)?)?,
        to: parse_state(&r.get::<_, String>(5)?)?,
        at: Timestamp::from_millis(r.get(6)?),
        audience: r.get(7)?,
        kind: r.get(8)?,
        recipients: parse_json_strings("part recipients", &r.get::<_, String>(9)?)?,
        subject: r.get(10)?,
        text: r.get(11)?,
        html: r.get(12)?,
        created_at: Timestamp::from_millis(r.get(13)?),
        ready_at: Timestamp::from_millis(r.get(14)?),
        window: Duration::from_millis(u64::try_from(r.get::<_, i64>(15)?).unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::{Cause, Transition};

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn part(audience: &str, ready_at: Timestamp) -> NewPart {
        NewPart {
            announcement: NewAnnouncement {
                audience: audience.to_owned(),
                channel: "email".to_owned(),
                kind: "failover".to_owned(),
                recipients: vec![format!("{audience}@example.com")],
                subject: format!("subject for {audience}"),
                text: "text".to_owned(),
                html: None,
            },
            service_name: "Ticket submission".to_owned(),
            ready_at,
            window: Duration::from_secs(30),
        }
    }

    fn failover(store: &Store, service: &str) -> i64 {
        let t = Transition {
            service: service.to_owned(),
            from: State::Operational,
            to: State::FailedOver,
            cause: Cause::PrimaryDown,
            at: T0,
            actor: "system".to_owned(),
            reason: "r".to_owned(),
            evidence: vec![],
            public_message: None,
        };
        let parts = [
            part("oncall", T0),
            part("customers", T0.plus(Duration::from_secs(120))),
        ];
        store
            .commit_transition_with(&t, "v", &[], &parts)
            .unwrap()
            .transition_id
    }

    fn compose_all(
        audience: &str,
    ) -> impl FnOnce(&[WaitingPart], &HashMap<String, Timestamp>) -> Vec<GroupDecision> + '_ {
        move |waiting, _| {
            let ids: Vec<i64> = waiting
                .iter()
                .filter(|p| p.audience == audience)
                .map(|p| p.id)
                .collect();
            vec![GroupDecision::Compose {
                part_ids: ids,
                audience: audience.to_owned(),
                kind: KIND_GROUPED.to_owned(),
                recipients: vec![format!("{audience}@example.com")],
                subject: "grouped".to_owned(),
                text: "both".to_owned(),
                html: None,
            }]
        }
    }

    #[test]
    fn parts_wait_with_their_transition_and_a_group_becomes_one_row_once() {
        let store = Store::open_in_memory().unwrap();
        let a = failover(&store, "a");
        let b = failover(&store, "b");
        // Written with the transition, nothing in the outbox yet.
        assert_eq!(store.announcements(a).unwrap(), vec![]);
        assert_eq!(
            store.waiting_parts().unwrap(),
            vec![("customers".to_owned(), 2), ("oncall".to_owned(), 2)]
        );
        let now = T0.plus(Duration::from_secs(30));
        let seen = std::cell::RefCell::new(Vec::new());
        let c = store
            .compose_groups(now, |waiting, last| {
                seen.borrow_mut().extend(
                    waiting
                        .iter()
                        .map(|p| (p.service.clone(), p.audience.clone())),
                );
                assert!(last.is_empty());
                compose_all("oncall")(waiting, last)
            })
            .unwrap();
        assert_eq!(seen.borrow().len(), 4);
        assert_eq!(c.outbox_ids.len(), 1);
        let row = store.outbox_item(c.outbox_ids[0]).unwrap().unwrap();
        assert_eq!(
            row.transition_id, a,
            "filed under its first part's transition"
        );
        assert_eq!(
            (row.kind.as_str(), row.subject.as_str()),
            ("grouped", "grouped")
        );
        assert!(
            row.message_id.starts_with("<g1.oncall."),
            "{}",
            row.message_id
        );
        assert!(row
            .message_id
            .ends_with(&format!(".{}@switchboard.invalid>", store.instance_id())));
        assert_eq!(row.created_at, now);
        assert_eq!(
            store.parts_of(b).unwrap(),
            vec![
                (
                    "oncall".to_owned(),
                    "failover".to_owned(),
                    "sent".to_owned()
                ),
                (
                    "customers".to_owned(),
                    "failover".to_owned(),
                    "waiting".to_owned()
                )
            ]
        );
        // The next call sees only what still waits, and when on-call's group went.
        store
            .compose_groups(now, |waiting, last| {
                assert!(waiting.iter().all(|p| p.audience == "customers"));
                assert_eq!(last.get("oncall"), Some(&now));
                vec![GroupDecision::Suppress {
                    part_id: waiting[0].id,
                    reason: "undone".to_owned(),
                }]
            })
            .unwrap();
        assert_eq!(
            store.suppressed_parts().unwrap(),
            vec![("customers".to_owned(), "undone".to_owned(), 1)]
        );
        assert_eq!(
            store.waiting_parts().unwrap(),
            vec![("customers".to_owned(), 1)]
        );
    }

    #[test]
    fn a_decision_about_a_part_no_longer_waiting_rolls_the_whole_call_back() {
        let store = Store::open_in_memory().unwrap();
        failover(&store, "a");
        let err = store
            .compose_groups(T0, |waiting, _| {
                vec![
                    GroupDecision::Suppress {
                        part_id: waiting[1].id,
                        reason: "undone".to_owned(),
                    },
                    GroupDecision::Suppress {
                        part_id: 99,
                        reason: "undone".to_owned(),
                    },
                ]
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSuchPart(99)), "{err}");
        // Nothing of it happened: both parts still wait.
        assert!(store.suppressed_parts().unwrap().is_empty());
        assert_eq!(
            store.waiting_parts().unwrap(),
            vec![("customers".to_owned(), 1), ("oncall".to_owned(), 1)]
        );
    }

    #[test]
    fn waiting_parts_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        failover(&store, "a");
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.waiting_parts().unwrap(),
            vec![("customers".to_owned(), 1), ("oncall".to_owned(), 1)]
        );
    }
}
