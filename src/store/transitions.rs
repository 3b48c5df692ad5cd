//! Recording transitions (with their audit record, incident change, outbox rows and waiting parts, in one transaction), other audit records, and reading transitions back.

use super::audit_log;
use super::groups::{self, NewPart};
use super::incidents;
use super::outbox::insert_outbox;
use super::rows::{self, parse_json_strings, parse_state};
use super::{CommittedTransition, NewAnnouncement, Store, StoreError, TransitionRecord};
use crate::audit::{self, AuditContext, AuditRecord, AuditRow, NewAuditRecord, Verdict};
use crate::clock::Timestamp;
use crate::failover::{Cause, Transition};
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

impl Store {
    /// Records `t` and everything it causes in ONE transaction: the transition row, its
    /// hash-chained audit record, the service's new current state, and one pending outbox row
    /// per announcement. Either all of it is on disk when this returns `Ok`, or none of it is.
    ///
    /// `audit` is what the shell knows beyond the transition (config version, node, routes
    /// before and after). A bare config version (`&str`) is accepted too, for callers that
    /// predate the audit log; their records carry no node and no routes.
    ///
    /// Fails with `StateMismatch` if the service is stored in a state other than `t.from`:
    /// that means two deciders disagree (or a transition is being replayed), and recording
    /// it would corrupt the history. Fails with `FileGone` if the database file was removed
    /// or replaced since it was opened: writing on would lose the transition silently.
    pub fn commit_transition(
        &self,
        t: &Transition,
        audit: impl Into<AuditContext>,
        announcements: &[NewAnnouncement],
    ) -> Result<CommittedTransition, StoreError> {
        self.commit_transition_with(t, audit, announcements, &[])
    }

    /// [`Store::commit_transition`], also writing `parts`: e-mails that wait for their group
    /// (`announce::group`) instead of going straight to the outbox. Same transaction.
    pub fn commit_transition_with(
        &self,
        t: &Transition,
        audit: impl Into<AuditContext>,
        announcements: &[NewAnnouncement],
        parts: &[NewPart],
    ) -> Result<CommittedTransition, StoreError> {
        let audit: AuditContext = audit.into();
        let config_version = audit.config_version.as_str();
        self.check_file()?;
        let evidence = serde_json::to_string(&t.evidence).map_err(|source| StoreError::Json {
            what: "transition evidence",
            source,
        })?;
        let mut conn = self.conn();
        // IMMEDIATE takes the write lock up front, so the state check below cannot race
        // another writer between the read and the update.
        let tx = super::open::begin(&mut conn)?;

        let stored: Option<String> = tx
            .query_row(
                "SELECT state FROM services WHERE id = ?1",
                [&t.service],
                |r| r.get(0),
            )
            .optional()?;
        match stored {
            Some(s) => {
                let stored = parse_state(&s)?;
                if stored != t.from {
                    return Err(StoreError::StateMismatch {
                        service: t.service.clone(),
                        stored,
                        from: t.from,
                    });
                }
                tx.execute(
                    "UPDATE services SET state = ?2, since_ms = ?3, cause = ?4 WHERE id = ?1",
                    params![t.service, t.to.as_str(), t.at.as_millis(), t.cause.as_str()],
                )?;
            }
            // A transition for a service never ensured is still recorded rather than lost.
            None => {
                tx.execute(
                    "INSERT INTO services (id, state, since_ms, cause, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?3)",
                    params![t.service, t.to.as_str(), t.at.as_millis(), t.cause.as_str()],
                )?;
            }
        }

        tx.execute(
            "INSERT INTO transitions
               (service, from_state, to_state, cause, actor, reason, at_ms, evidence, config_version,
                public_message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                t.service,
                t.from.as_str(),
                t.to.as_str(),
                t.cause.as_str(),
                t.actor,
                t.reason,
                t.at.as_millis(),
                evidence,
                config_version,
                t.public_message
            ],
        )?;
        let transition_id = tx.last_insert_rowid();
        // The incident this transition opens or moves on commits (or rolls back) with it.
        incidents::apply_transition(&tx, t, transition_id, &self.words_for(&t.service))?;

        audit_log::append(
            &tx,
            &AuditRecord {
                id: 0,
                kind: audit::KIND_TRANSITION.to_owned(),
                at: t.at,
                node: audit.node.clone(),
                actor: t.actor.clone(),
                service: Some(t.service.clone()),
                from: Some(t.from.as_str().to_owned()),
                to: Some(t.to.as_str().to_owned()),
                cause: Some(t.cause.as_str().to_owned()),
                reason: t.reason.clone(),
                evidence: t.evidence.clone(),
                routes_before: audit.routes_before.clone(),
                routes_after: audit.routes_after.clone(),
                config_version: config_version.to_owned(),
                transition_id: Some(transition_id),
                detail: transition_detail(t, &audit)?,
                prev_hash: String::new(),
                hash: String::new(),
            },
        )?;

        let ids = self.message_ids();
        let outbox_ids = insert_outbox(&tx, &ids, transition_id, &t.service, t.at, announcements)?;
        groups::insert_parts(&tx, transition_id, t.at, parts)?;

        tx.commit()?;
        Ok(CommittedTransition {
            transition_id,
            outbox_ids,
        })
    }

    /// Appends a record that is not a transition (an operator action, issue 6) to the audit
    /// chain, in its own transaction. Returns the record as stored, hash included.
    pub fn append_audit(&self, r: &NewAuditRecord) -> Result<AuditRecord, StoreError> {
        self.check_file()?;
        let mut conn = self.conn();
        let tx = super::open::begin(&mut conn)?;
        let rec = audit_log::append(
            &tx,
            &AuditRecord {
                id: 0,
                kind: r.kind.clone(),
                at: r.at,
                node: r.node.clone(),
                actor: r.actor.clone(),
                service: r.service.clone(),
                from: None,
                to: None,
                cause: None,
                reason: r.reason.clone(),
                evidence: Vec::new(),
                routes_before: Default::default(),
                routes_after: Default::default(),
                config_version: r.config_version.clone(),
                transition_id: None,
                detail: r.detail.clone(),
                prev_hash: String::new(),
                hash: String::new(),
            },
        )?;
        tx.commit()?;
        Ok(rec)
    }

    /// Audit records at or after `since` (all when `None`), in id order; rows that cannot be
    /// read back (tampered JSON) come back as `Err` entries, not as a failed call.
    pub fn audit_rows(&self, since: Option<Timestamp>) -> Result<Vec<AuditRow>, StoreError> {
        audit_log::read(&self.conn(), since)
    }

    /// Walks the whole audit chain and cross-checks the transitions table against it, in one
    /// read transaction so a concurrent commit cannot make a consistent log look broken.
    pub fn verify_audit(&self) -> Result<Verdict, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let rows = audit_log::read(&tx, None)?;
        let issued = audit_log::highest_id_issued(&tx)?;
        let mismatch = audit_log::cross_check(&tx)?;
        Ok(audit::verify(&rows, issued, mismatch))
    }

    /// The last `limit` transitions, of one service or of all, oldest first (newest last).
    pub fn transitions(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TransitionRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = rows::all(
            &self.conn(),
            "SELECT id, service, from_state, to_state, cause, actor, reason, at_ms, evidence,
                    config_version, public_message
             FROM transitions
             WHERE ?1 IS NULL OR service = ?1
             ORDER BY id DESC
             LIMIT ?2",
            params![service, limit],
            read_transition,
        )?;
        out.reverse();
        Ok(out)
    }
}

/// Reads a row of the `transitions` query above.
fn read_transition(r: &Row<'_>) -> Result<TransitionRecord, StoreError> {
    Ok(TransitionRecord {
        id: r.get(0)?,
        transition: Transition {
            service: r.get(1)?,
            from: parse_state(&r.get::<_, String>(2)?)?,
            to: parse_state(&r.get::<_, String>(3)?)?,
            cause: parse_cause(&r.get::<_, String>(4)?)?,
            actor: r.get(5)?,
            reason: r.get(6)?,
            at: Timestamp::from_millis(r.get(7)?),
            evidence: parse_json_strings("transition evidence", &r.get::<_, String>(8)?)?,
            public_message: r.get(10)?,
        },
        config_version: r.get(9)?,
    })
}

/// The `detail` of a transition's audit record: the public text beside the reason, and the
/// grounds of the decision (`AuditContext::grounds`). Each key is absent when there is
/// nothing to say, so a record without them is `{}`, as every record before them was.
fn transition_detail(
    t: &Transition,
    audit: &AuditContext,
) -> Result<serde_json::Value, StoreError> {
    let mut detail = serde_json::Map::new();
    if let Some(m) = &t.public_message {
        detail.insert("public_message".to_owned(), serde_json::json!(m));
    }
    if !audit.grounds.is_empty() {
        let grounds = serde_json::to_value(&audit.grounds).map_err(|source| StoreError::Json {
            what: "transition grounds",
            source,
        })?;
        detail.insert("grounds".to_owned(), grounds);
    }
    Ok(serde_json::Value::Object(detail))
}

fn parse_cause(s: &str) -> Result<Cause, StoreError> {
    // `Cause` serialises as its `as_str` form; going through serde keeps this in step with
    // any cause added later without a second list to maintain.
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        StoreError::Corrupt {
            what: "cause",
            value: s.to_owned(),
        }
    })
}
