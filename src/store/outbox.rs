//! The announcement outbox: rows written with their transition (or as a notice after it), delivery results, and the Statuspage incident ids.

use super::audit_log;
use super::groups::{self, NewPart};
use super::rows::{self, parse_json_strings, u32_from};
use super::{MessageIds, NewAnnouncement, OutboxItem, OutboxStatus, Store, StoreError};
use crate::audit::{AuditRecord, KIND_ANNOUNCEMENT_DELIVERED, KIND_ANNOUNCEMENT_GIVEN_UP};
use crate::clock::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};

impl Store {
    /// Pending outbox rows whose next attempt is due at `now`, oldest due first.
    ///
    /// Messages to one audience over one channel about one service go out in the order they
    /// were written: a row waits while an older one of the same stream is still pending, so
    /// a failback can never overtake the failover it ends (an incident is opened before it
    /// is resolved, a "switched back" mail never arrives before "switched").
    pub fn due_announcements(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "{OUTBOX_SELECT} WHERE o.status = 'pending' AND o.next_attempt_at_ms <= ?1
               AND NOT EXISTS (
                   SELECT 1 FROM outbox p JOIN transitions pt ON pt.id = p.transition_id
                   WHERE p.status = 'pending' AND p.id < o.id AND p.channel = o.channel
                     AND p.audience = o.audience AND pt.service = t.service)
             ORDER BY o.next_attempt_at_ms, o.id LIMIT ?2"
        );
        rows::all(
            &self.conn(),
            &sql,
            params![now.as_millis(), limit],
            read_outbox,
        )
    }

    /// Records a successful delivery with what the receiver said (`receipt`: a reply text is
    /// enough; e-mail's Message-ID is the row's own), and appends its proof to the audit
    /// chain (`announcement_delivered`) in the same transaction. Idempotent: marking a
    /// delivered row again changes nothing and audits nothing. Returns whether it was marked
    /// (and audited) now.
    pub fn mark_delivered(
        &self,
        id: i64,
        at: Timestamp,
        receipt: impl Into<Receipt>,
    ) -> Result<bool, StoreError> {
        let receipt = receipt.into();
        self.finish_row(
            id,
            at,
            "UPDATE outbox
             SET status = 'delivered', attempts = attempts + 1, delivered_at_ms = ?2,
                 last_attempt_at_ms = ?2, detail = ?3
             WHERE id = ?1 AND status = 'pending'",
            &receipt.reply,
            Final::Delivered(&receipt),
        )
    }

    /// Runs an `UPDATE` of pending outbox row `id`; when it changes nothing, the row must
    /// still exist (already delivered or given up is fine, unknown is an error).
    fn update_pending(
        &self,
        id: i64,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        if conn.execute(sql, params)? == 0 {
            ensure_outbox_row(&conn, id)?;
        }
        Ok(())
    }

    /// Moves pending row `id` to its final state with `sql` (`?1` the id, `?2` the time, `?3`
    /// `text`) and appends the delivery's audit record, in one IMMEDIATE transaction: the
    /// proof is in the chain exactly when the row says it was delivered or given up.
    fn finish_row(
        &self,
        id: i64,
        at: Timestamp,
        sql: &str,
        text: &str,
        outcome: Final<'_>,
    ) -> Result<bool, StoreError> {
        self.check_file()?;
        let mut conn = self.conn();
        let tx = super::open::begin(&mut conn)?;
        if tx.execute(sql, params![id, at.as_millis(), text])? == 0 {
            ensure_outbox_row(&tx, id)?;
            return Ok(false);
        }
        audit_delivery(&tx, id, at, outcome)?;
        tx.commit()?;
        Ok(true)
    }

    /// Records a failed attempt: `attempts` goes up by one and the row waits until
    /// `next_attempt_at`. The row stays pending; nothing is ever dropped here.
    pub fn mark_failed(
        &self,
        id: i64,
        at: Timestamp,
        error: &str,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.update_pending(
            id,
            "UPDATE outbox
             SET attempts = attempts + 1, last_attempt_at_ms = ?2, last_error = ?3,
                 next_attempt_at_ms = ?4
             WHERE id = ?1 AND status = 'pending'",
            params![id, at.as_millis(), error, next_attempt_at.as_millis()],
        )
    }

    /// Records a last failed attempt and stops retrying the row: it is older than the
    /// give-up age. The row is kept, with its error, for the record, and the give-up is
    /// appended to the audit chain (`announcement_given_up`, with the last error) in the same
    /// transaction. Returns whether it was given up (and audited) now.
    pub fn mark_given_up(&self, id: i64, at: Timestamp, error: &str) -> Result<bool, StoreError> {
        self.finish_row(
            id,
            at,
            "UPDATE outbox
             SET status = 'given_up', attempts = attempts + 1, last_attempt_at_ms = ?2,
                 last_error = ?3, given_up_at_ms = ?2
             WHERE id = ?1 AND status = 'pending'",
            error,
            Final::GivenUp(error),
        )
    }

    /// Queues announcements that follow no new transition (a flapping alert): they are
    /// attached to the service's latest transition, the change they are about.
    pub fn enqueue_notice(
        &self,
        service: &str,
        at: Timestamp,
        announcements: &[NewAnnouncement],
    ) -> Result<Vec<i64>, StoreError> {
        self.enqueue_notice_with(service, at, announcements, &[])
    }

    /// [`Store::enqueue_notice`], also writing `parts` that wait for their group.
    pub fn enqueue_notice_with(
        &self,
        service: &str,
        at: Timestamp,
        announcements: &[NewAnnouncement],
        parts: &[NewPart],
    ) -> Result<Vec<i64>, StoreError> {
        self.check_file()?;
        let mut conn = self.conn();
        let tx = super::open::begin(&mut conn)?;
        let latest: Option<i64> = tx.query_row(
            "SELECT MAX(id) FROM transitions WHERE service = ?1",
            [service],
            |r| r.get(0),
        )?;
        let transition_id = latest.ok_or_else(|| StoreError::NoTransition(service.to_owned()))?;
        let message_ids = self.message_ids();
        let ids = insert_outbox(&tx, &message_ids, transition_id, service, at, announcements)?;
        groups::insert_parts(&tx, transition_id, at, parts)?;
        tx.commit()?;
        Ok(ids)
    }

    /// The Statuspage incident opened for `service`'s current failover, if any.
    pub fn statuspage_incident(&self, service: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT incident_id FROM statuspage_incidents WHERE service = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Remembers (`Some`) or forgets (`None`) the open Statuspage incident of `service`.
    pub fn set_statuspage_incident(
        &self,
        service: &str,
        incident: Option<&str>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        match incident {
            Some(id) => conn.execute(
                "INSERT INTO statuspage_incidents (service, incident_id, opened_at_ms)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (service) DO UPDATE SET incident_id = ?2, opened_at_ms = ?3",
                params![service, id, at.as_millis()],
            )?,
            None => conn.execute(
                "DELETE FROM statuspage_incidents WHERE service = ?1",
                [service],
            )?,
        };
        Ok(())
    }

    /// Pending outbox rows: how many, and when the oldest was created (for the backlog metrics).
    pub fn outbox_backlog(&self) -> Result<(u64, Option<Timestamp>), StoreError> {
        let conn = self.conn();
        let (count, oldest): (i64, Option<i64>) = conn.query_row(
            "SELECT COUNT(*), MIN(created_at_ms) FROM outbox WHERE status = 'pending'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            u64::try_from(count).unwrap_or(0),
            oldest.map(Timestamp::from_millis),
        ))
    }

    /// Every outbox row of one transition, in insertion order.
    pub fn announcements(&self, transition_id: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!("{OUTBOX_SELECT} WHERE o.transition_id = ?1 ORDER BY o.id");
        rows::all(&self.conn(), &sql, [transition_id], read_outbox)
    }

    /// One outbox row by id.
    pub fn outbox_item(&self, id: i64) -> Result<Option<OutboxItem>, StoreError> {
        let sql = format!("{OUTBOX_SELECT} WHERE o.id = ?1");
        rows::one(&self.conn(), &sql, [id], read_outbox)
    }
}

/// Inserts one pending outbox row per announcement, due at `at`, inside the caller's transaction.
pub(super) fn insert_outbox(
    tx: &Connection,
    ids: &MessageIds,
    transition_id: i64,
    service: &str,
    at: Timestamp,
    announcements: &[NewAnnouncement],
) -> Result<Vec<i64>, StoreError> {
    announcements
        .iter()
        .map(|a| {
            insert_row(
                tx,
                &NewRow {
                    transition_id,
                    audience: &a.audience,
                    channel: &a.channel,
                    kind: &a.kind,
                    message_id: ids.for_transition(
                        transition_id,
                        &id_audience(&a.audience, &a.kind),
                        &a.channel,
                        service,
                        at,
                    ),
                    recipients: &a.recipients,
                    subject: &a.subject,
                    text: &a.text,
                    html: a.html.as_deref(),
                    at,
                    first_part_id: 0,
                },
            )
        })
        .collect()
}

/// The audience in a transition's Message-ID: a notice that hangs off an earlier transition
/// (flapping) gets its own; the messages of the transition itself keep the ids they always had.
pub(super) fn id_audience(audience: &str, kind: &str) -> String {
    if kind == "flapping" {
        format!("{audience}.flapping")
    } else {
        audience.to_owned()
    }
}

/// One outbox row to write: a transition's own message, or a composed group.
pub(super) struct NewRow<'a> {
    pub transition_id: i64,
    pub audience: &'a str,
    pub channel: &'a str,
    pub kind: &'a str,
    pub message_id: String,
    pub recipients: &'a [String],
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// Written, and first due, at this time.
    pub at: Timestamp,
    /// The first part a grouped row carries; 0 for a row that is no group.
    pub first_part_id: i64,
}

/// The one writer of outbox rows, inside the caller's transaction. Returns the row's id.
pub(super) fn insert_row(tx: &Connection, r: &NewRow<'_>) -> Result<i64, StoreError> {
    let recipients = serde_json::to_string(r.recipients).map_err(|source| StoreError::Json {
        what: "announcement recipients",
        source,
    })?;
    // On-call e-mail anchors the audit chain's head outside the database (`audit_log`).
    let (text, html) = audit_log::with_head_footer(tx, r.audience, r.channel, r.text, r.html)?;
    tx.execute(
        "INSERT INTO outbox
           (transition_id, audience, channel, kind, message_id, recipients, subject,
            body_text, body_html, created_at_ms, next_attempt_at_ms, first_part_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
        params![
            r.transition_id,
            r.audience,
            r.channel,
            r.kind,
            r.message_id,
            recipients,
            r.subject,
            text,
            html,
            r.at.as_millis(),
            r.first_part_id
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn ensure_outbox_row(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NoSuchOutboxItem(id))
    }
}

const OUTBOX_SELECT: &str = "SELECT o.id, o.transition_id, t.service, o.audience, o.channel,
        o.message_id, o.recipients, o.subject, o.body_text, o.body_html, o.status, o.attempts,
        o.created_at_ms, o.next_attempt_at_ms, o.last_attempt_at_ms, o.last_error,
        o.delivered_at_ms, o.detail, o.kind, o.given_up_at_ms
     FROM outbox o JOIN transitions t ON t.id = o.transition_id";

/// Reads a row of `OUTBOX_SELECT`.
fn read_outbox(r: &Row<'_>) -> Result<OutboxItem, StoreError> {
    let status: String = r.get(10)?;
    Ok(OutboxItem {
        id: r.get(0)?,
        transition_id: r.get(1)?,
        service: r.get(2)?,
        audience: r.get(3)?,
        channel: r.get(4)?,
        message_id: r.get(5)?,
        recipients: parse_json_strings("outbox recipients", &r.get::<_, String>(6)?)?,
        subject: r.get(7)?,
        text: r.get(8)?,
        html: r.get(9)?,
        status: OutboxStatus::parse(&status).ok_or(StoreError::Corrupt {
            what: "outbox status",
            value: status,
        })?,
        attempts: u32_from("outbox attempts", r.get(11)?)?,
        created_at: Timestamp::from_millis(r.get(12)?),
        next_attempt_at: Timestamp::from_millis(r.get(13)?),
        last_attempt_at: r.get::<_, Option<i64>>(14)?.map(Timestamp::from_millis),
        last_error: r.get(15)?,
        delivered_at: r.get::<_, Option<i64>>(16)?.map(Timestamp::from_millis),
        detail: r.get(17)?,
        kind: r.get(18)?,
        given_up_at: r.get::<_, Option<i64>>(19)?.map(Timestamp::from_millis),
    })
}

/// What a receiver said when it took a row: the proof of delivery the audit chain keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The receiver's reply in one line: the SMTP server's (`250 2.0.0 Ok: queued as 4F2`),
    /// or the HTTP status and request (`201 POST /pages/p1/incidents`).
    pub reply: String,
    /// The HTTP status, for the HTTP channels (webhook, chat, Statuspage).
    pub http_status: Option<u16>,
    /// The Statuspage incident the request opened, updated or resolved.
    pub incident_id: Option<String>,
}

impl Receipt {
    /// An HTTP receiver's answer.
    pub fn http(status: u16, reply: String) -> Receipt {
        Receipt {
            reply,
            http_status: Some(status),
            incident_id: None,
        }
    }
}

impl From<String> for Receipt {
    fn from(reply: String) -> Receipt {
        Receipt {
            reply,
            ..Receipt::default()
        }
    }
}

impl From<&str> for Receipt {
    fn from(reply: &str) -> Receipt {
        Receipt::from(reply.to_owned())
    }
}

/// How a row ended, for its audit record.
enum Final<'a> {
    Delivered(&'a Receipt),
    GivenUp(&'a str),
}

/// Appends the audit record of outbox row `id`'s final result, inside the caller's
/// transaction (after the row was updated). It links the delivery to its transition: the
/// `transitions` row (`detail.transition_id`), that transition's own audit record
/// (`detail.transition_record`), and for a grouped e-mail every transition it carried
/// (`detail.transitions`). Node and configuration version are the transition's, the
/// decision the message is about. The `transition_id` column stays empty: it is the
/// transition records' link, which `audit verify` cross-checks one to one.
fn audit_delivery(
    tx: &Connection,
    id: i64,
    at: Timestamp,
    outcome: Final<'_>,
) -> Result<(), StoreError> {
    let row = rows::one(
        tx,
        &format!("{OUTBOX_SELECT} WHERE o.id = ?1"),
        [id],
        read_outbox,
    )?
    .ok_or(StoreError::NoSuchOutboxItem(id))?;
    let (record_id, node, config_version): (Option<i64>, Option<String>, String) = tx.query_row(
        "SELECT (SELECT a.id FROM audit a WHERE a.transition_id = t.id ORDER BY a.id LIMIT 1),
                (SELECT a.node FROM audit a WHERE a.transition_id = t.id ORDER BY a.id LIMIT 1),
                t.config_version
         FROM transitions t WHERE t.id = ?1",
        [row.transition_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut stmt = tx.prepare(
        "SELECT DISTINCT transition_id FROM announcement_parts WHERE outbox_id = ?1
         ORDER BY transition_id",
    )?;
    let mut carried: Vec<i64> = stmt
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    drop(stmt);
    if !carried.contains(&row.transition_id) {
        carried.insert(0, row.transition_id);
    }
    let what = match row.channel.as_str() {
        "email" => format!("e-mail to {}", row.audience),
        "statuspage" => "Statuspage request".to_owned(),
        "zendesk" => format!(
            "Help Center article {}",
            row.recipients.first().map_or("", String::as_str)
        ),
        "webhook" => format!(
            "webhook {}",
            row.recipients.first().map_or("", String::as_str)
        ),
        other => format!("{other} message"),
    };
    let mut detail = serde_json::json!({
        "outbox_id": row.id,
        "transition_id": row.transition_id,
        "transition_record": record_id,
        "transitions": carried,
        "audience": row.audience,
        "channel": row.channel,
        "message_kind": row.kind,
        "message_id": row.message_id,
        "recipients": row.recipients,
        "subject": row.subject,
        "created_at": row.created_at.rfc3339(),
        "attempts": row.attempts,
    });
    let (kind, reason) = match outcome {
        Final::Delivered(r) => {
            detail["reply"] = serde_json::json!(r.reply);
            if let Some(s) = r.http_status {
                detail["http_status"] = serde_json::json!(s);
            }
            if let Some(i) = &r.incident_id {
                detail["incident_id"] = serde_json::json!(i);
            }
            let verb = if row.channel == "email" {
                "accepted"
            } else {
                "delivered"
            };
            (
                KIND_ANNOUNCEMENT_DELIVERED,
                format!("{what} {verb}: {}", r.reply),
            )
        }
        Final::GivenUp(error) => {
            detail["last_error"] = serde_json::json!(error);
            let n = row.attempts;
            (
                KIND_ANNOUNCEMENT_GIVEN_UP,
                format!("{what} given up after {n} attempt(s): {error}"),
            )
        }
    };
    audit_log::append(
        tx,
        &AuditRecord {
            id: 0,
            kind: kind.to_owned(),
            at,
            node: node.unwrap_or_default(),
            actor: "system".to_owned(),
            service: Some(row.service.clone()),
            from: None,
            to: None,
            cause: None,
            reason,
            evidence: Vec::new(),
            routes_before: Default::default(),
            routes_after: Default::default(),
            config_version,
            transition_id: None,
            detail,
            prev_hash: String::new(),
            hash: String::new(),
            key_id: None,
            mac: None,
        },
    )?;
    Ok(())
}
