//! Operator control in SQLite: drill rows and their reports, post-hoc reviews of automatic transitions, API-scheduled maintenance, audit queries.

use super::audit_log;
use super::{Store, StoreError};
use crate::audit::{AuditRecord, AuditRow, KIND_TRANSITION};
use crate::clock::Timestamp;
use rusqlite::{params, OptionalExtension};

/// `kind` of the audit record an operator's review writes.
pub const KIND_REVIEW: &str = "review";

/// One drill as stored. `report` is the JSON of `drill::Report`.
#[derive(Clone, Debug, PartialEq)]
pub struct DrillRow {
    pub id: String,
    pub service: String,
    /// `live` or `dry_run`.
    pub mode: String,
    pub actor: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub started_at: Timestamp,
    pub deadline: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// `running`, `pass`, `fail` or `aborted`.
    pub status: String,
    pub report: String,
}

/// A one-off maintenance window scheduled through the API.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledWindow {
    pub id: i64,
    pub service: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub reason: String,
    pub actor: String,
    /// What the status page and feeds say about it; `reason` stays internal.
    pub public_message: Option<String>,
}

/// Which audit records `Store::query_audit` returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditQuery {
    pub since: Option<Timestamp>,
    pub service: Option<String>,
    /// Only automatic transitions nobody has reviewed yet.
    pub pending_review: bool,
    /// At most this many, the newest ones (returned oldest first).
    pub limit: usize,
}

/// Why a review was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no audit record with id {0}")]
    NotFound(i64),
    #[error("audit record {0} is not an automatic health transition; only those await review")]
    NotReviewable(i64),
    #[error("audit record {id} was already reviewed by {by}")]
    AlreadyReviewed { id: i64, by: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ReviewError {
    fn from(e: rusqlite::Error) -> Self {
        ReviewError::Store(StoreError::Sqlite(e))
    }
}

/// Causes of automatic transitions that a human should look at afterwards: the ones about
/// health. Planned ends (drill deadline, maintenance windows, an expiring pin) are not.
pub const REVIEWED_CAUSES: [&str; 5] = [
    "primary_down",
    "primary_recovered",
    "recovery_hold_elapsed",
    "backup_down",
    "backup_recovered",
];

/// Pending = an automatic (`system`) health transition's audit record with no review.
const PENDING: &str = "kind = 'transition' AND actor = 'system'
     AND cause IN ('primary_down', 'primary_recovered', 'recovery_hold_elapsed', 'backup_down', 'backup_recovered')
     AND id NOT IN (SELECT audit_id FROM reviews)";

fn raw_drill(r: &rusqlite::Row<'_>) -> rusqlite::Result<DrillRow> {
    Ok(DrillRow {
        id: r.get(0)?,
        service: r.get(1)?,
        mode: r.get(2)?,
        actor: r.get(3)?,
        reason: r.get(4)?,
        ticket: r.get(5)?,
        started_at: Timestamp(r.get(6)?),
        deadline: Timestamp(r.get(7)?),
        ended_at: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        status: r.get(9)?,
        report: r.get(10)?,
    })
}

const DRILL_COLUMNS: &str = "id, service, mode, actor, reason, ticket, started_at_ms, deadline_ms,
     ended_at_ms, status, report";

impl Store {
    /// Records a drill that just started.
    pub fn insert_drill(&self, d: &DrillRow) -> Result<(), StoreError> {
        self.check_file()?;
        self.conn().execute(
            "INSERT INTO drills (id, service, mode, actor, reason, ticket, started_at_ms,
                deadline_ms, ended_at_ms, status, report)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                d.id,
                d.service,
                d.mode,
                d.actor,
                d.reason,
                d.ticket,
                d.started_at.as_millis(),
                d.deadline.as_millis(),
                d.ended_at.map(Timestamp::as_millis),
                d.status,
                d.report
            ],
        )?;
        Ok(())
    }

    /// Replaces a drill's report (and status, end) as its steps finish.
    pub fn update_drill(
        &self,
        id: &str,
        status: &str,
        ended_at: Option<Timestamp>,
        report: &str,
    ) -> Result<(), StoreError> {
        self.check_file()?;
        self.conn().execute(
            "UPDATE drills SET status = ?2, ended_at_ms = ?3, report = ?4 WHERE id = ?1",
            params![id, status, ended_at.map(Timestamp::as_millis), report],
        )?;
        Ok(())
    }

    pub fn drill(&self, id: &str) -> Result<Option<DrillRow>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {DRILL_COLUMNS} FROM drills WHERE id = ?1"),
                [id],
                raw_drill,
            )
            .optional()?)
    }

    /// The newest `limit` drills (of `service`, if given), newest first.
    pub fn drills(&self, service: Option<&str>, limit: usize) -> Result<Vec<DrillRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DRILL_COLUMNS} FROM drills WHERE ?1 IS NULL OR service = ?1
             ORDER BY started_at_ms DESC, id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![service, limit as i64], raw_drill)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Drills still marked running (after a restart: their monitors must be resumed).
    pub fn running_drills(&self) -> Result<Vec<DrillRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DRILL_COLUMNS} FROM drills WHERE status = 'running' ORDER BY started_at_ms"
        ))?;
        let rows = stmt.query_map([], raw_drill)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records `reviewer`'s acknowledgement of the automatic transition in audit record
    /// `audit_id`: a `review` audit record (built by `draft`, chained like any other) and the
    /// reviews row, in one transaction.
    pub fn review(
        &self,
        audit_id: i64,
        reviewer: &str,
        note: &str,
        draft: &AuditRecord,
    ) -> Result<AuditRecord, ReviewError> {
        self.check_file()?;
        let mut conn = self.conn();
        let tx = super::open::begin(&mut conn)?;
        let target: Option<(String, String, Option<String>)> = tx
            .query_row(
                "SELECT kind, actor, cause FROM audit WHERE id = ?1",
                [audit_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        match target {
            None => return Err(ReviewError::NotFound(audit_id)),
            Some((kind, actor, cause))
                if kind != KIND_TRANSITION
                    || actor != "system"
                    || !cause
                        .as_deref()
                        .is_some_and(|c| REVIEWED_CAUSES.contains(&c)) =>
            {
                return Err(ReviewError::NotReviewable(audit_id))
            }
            Some(_) => {}
        }
        let by: Option<String> = tx
            .query_row(
                "SELECT reviewer FROM reviews WHERE audit_id = ?1",
                [audit_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(by) = by {
            return Err(ReviewError::AlreadyReviewed { id: audit_id, by });
        }
        let rec = audit_log::append(&tx, draft)?;
        tx.execute(
            "INSERT INTO reviews (audit_id, reviewer, note, at_ms, review_audit_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![audit_id, reviewer, note, rec.at.as_millis(), rec.id],
        )?;
        tx.commit()?;
        Ok(rec)
    }

    /// How many automatic transitions await review, and when the oldest of them happened.
    pub fn pending_reviews(&self) -> Result<(u64, Option<Timestamp>), StoreError> {
        let conn = self.conn();
        let (n, oldest): (i64, Option<i64>) = conn.query_row(
            &format!("SELECT COUNT(*), MIN(at_ms) FROM audit WHERE {PENDING}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n.max(0) as u64, oldest.map(Timestamp)))
    }

    /// Audit records matching `q`, oldest first, each with its review (reviewer, note, at) if any.
    #[allow(clippy::type_complexity)]
    pub fn query_audit(
        &self,
        q: &AuditQuery,
    ) -> Result<Vec<(AuditRow, Option<(String, String, Timestamp)>)>, StoreError> {
        let conn = self.conn();
        let pending = if q.pending_review { PENDING } else { "1 = 1" };
        let sql = format!(
            "SELECT * FROM ({sel} WHERE (?1 IS NULL OR at_ms >= ?1) AND (?2 IS NULL OR service = ?2)
               AND {pending} ORDER BY id DESC LIMIT ?3) ORDER BY id",
            sel = audit_log::SELECT
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(
            params![q.since.map(Timestamp::as_millis), q.service, q.limit as i64],
            audit_log::raw,
        )?;
        let rows: Vec<AuditRow> = rows
            .map(|r| r.map(audit_log::Raw::into_row))
            .collect::<Result<_, _>>()?;
        let mut review =
            conn.prepare("SELECT reviewer, note, at_ms FROM reviews WHERE audit_id = ?1")?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id = match &row {
                Ok(r) => r.id,
                Err(u) => u.id,
            };
            let rv = review
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, Timestamp(r.get(2)?))))
                .optional()?;
            out.push((row, rv));
        }
        Ok(out)
    }

    /// Stores a one-off maintenance window scheduled through the API.
    pub fn schedule_maintenance(&self, w: &ScheduledWindow) -> Result<i64, StoreError> {
        self.check_file()?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO maintenance_schedule
               (service, starts_at_ms, ends_at_ms, reason, actor, created_at_ms, public_message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                w.service,
                w.starts_at.as_millis(),
                w.ends_at.as_millis(),
                w.reason,
                w.actor,
                Timestamp::now().as_millis(),
                w.public_message
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Scheduled windows of `service` that have not ended by `now`.
    pub fn scheduled_maintenance(
        &self,
        service: &str,
        now: Timestamp,
    ) -> Result<Vec<ScheduledWindow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, service, starts_at_ms, ends_at_ms, reason, actor, public_message
             FROM maintenance_schedule
             WHERE service = ?1 AND ends_at_ms > ?2 ORDER BY starts_at_ms",
        )?;
        let rows = stmt.query_map(params![service, now.as_millis()], |r| {
            Ok(ScheduledWindow {
                id: r.get(0)?,
                service: r.get(1)?,
                starts_at: Timestamp(r.get(2)?),
                ends_at: Timestamp(r.get(3)?),
                reason: r.get(4)?,
                actor: r.get(5)?,
                public_message: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::{Cause, State, Transition};

    fn transition(actor: &str, from: State, to: State, at: i64) -> Transition {
        Transition {
            service: "svc".into(),
            from,
            to,
            cause: Cause::PrimaryDown,
            at: Timestamp(at),
            actor: actor.into(),
            reason: "r".into(),
            evidence: vec![],
            public_message: None,
        }
    }

    fn draft(actor: &str, at: i64) -> AuditRecord {
        AuditRecord {
            id: 0,
            kind: KIND_REVIEW.into(),
            at: Timestamp(at),
            node: "n".into(),
            actor: actor.into(),
            service: Some("svc".into()),
            from: None,
            to: None,
            cause: None,
            reason: "looked at it".into(),
            evidence: vec![],
            routes_before: Default::default(),
            routes_after: Default::default(),
            config_version: "v".into(),
            transition_id: None,
            detail: serde_json::json!({}),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn automatic_transitions_await_review_until_acknowledged_once() {
        let store = Store::open_in_memory().unwrap();
        store.ensure_service("svc", Timestamp(0)).unwrap();
        store
            .commit_transition(
                &transition("system", State::Operational, State::FailedOver, 1000),
                "v",
                &[],
            )
            .unwrap();
        store
            .commit_transition(
                &transition("alice", State::FailedOver, State::Operational, 2000),
                "v",
                &[],
            )
            .unwrap();
        assert_eq!(store.pending_reviews().unwrap(), (1, Some(Timestamp(1000))));
        let pending = store
            .query_audit(&AuditQuery {
                pending_review: true,
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(pending.len(), 1);
        let id = pending[0].0.as_ref().unwrap().id;
        // The operator's own transition is not reviewable.
        assert!(matches!(
            store.review(id + 1, "bob", "n", &draft("bob", 3000)),
            Err(ReviewError::NotReviewable(_))
        ));
        assert!(matches!(
            store.review(99, "bob", "n", &draft("bob", 3000)),
            Err(ReviewError::NotFound(99))
        ));
        let rec = store
            .review(id, "bob", "flaky form, fine", &draft("bob", 3000))
            .unwrap();
        assert_eq!(rec.kind, KIND_REVIEW);
        assert_eq!(store.pending_reviews().unwrap(), (0, None));
        assert!(matches!(
            store.review(id, "carol", "again", &draft("carol", 4000)),
            Err(ReviewError::AlreadyReviewed { .. })
        ));
        let all = store
            .query_audit(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 3, "two transitions and the review");
        assert_eq!(
            all[0].1.as_ref().map(|r| r.0.as_str()),
            Some("bob"),
            "the transition carries its review"
        );
        assert!(matches!(
            store.verify_audit().unwrap(),
            crate::audit::Verdict::Intact { .. }
        ));
    }

    #[test]
    fn drills_are_stored_updated_and_listed_newest_first() {
        let store = Store::open_in_memory().unwrap();
        let row = |id: &str, at: i64| DrillRow {
            id: id.into(),
            service: "svc".into(),
            mode: "live".into(),
            actor: "alice".into(),
            reason: "quarterly".into(),
            ticket: Some("OPS-1".into()),
            started_at: Timestamp(at),
            deadline: Timestamp(at + 600_000),
            ended_at: None,
            status: "running".into(),
            report: "{}".into(),
        };
        store.insert_drill(&row("d1", 1)).unwrap();
        store.insert_drill(&row("d2", 2)).unwrap();
        assert_eq!(store.running_drills().unwrap().len(), 2);
        store
            .update_drill("d1", "pass", Some(Timestamp(5)), "{\"x\":1}")
            .unwrap();
        let d1 = store.drill("d1").unwrap().unwrap();
        assert_eq!(
            (d1.status.as_str(), d1.ended_at, d1.report.as_str()),
            ("pass", Some(Timestamp(5)), "{\"x\":1}")
        );
        let ids: Vec<String> = store
            .drills(None, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["d2", "d1"]);
        assert_eq!(store.running_drills().unwrap().len(), 1);
        assert!(store.drill("nope").unwrap().is_none());
    }
}
