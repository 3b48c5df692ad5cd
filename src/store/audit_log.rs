//! SQL for the `audit` table: append a chained record under the caller's write lock, read records back, cross-check `transitions`.
//!
//! Every function takes a plain `&Connection` so that it runs inside whatever transaction
//! the caller holds: `append` must run in the same IMMEDIATE transaction as the transition
//! it audits, so the record, the transition and its outbox rows commit (or vanish) together
//! and no other writer can chain onto the same predecessor.

use super::StoreError;
use crate::audit::{AuditRecord, AuditRow, TransitionMismatch, UnreadableRecord, GENESIS_HASH};
use crate::clock::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Appends `draft` (its `id`, `prev_hash` and `hash` are ignored and set here) at the end of
/// the chain and returns the record as stored.
pub(super) fn append(conn: &Connection, draft: &AuditRecord) -> Result<AuditRecord, StoreError> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    // The id is part of the hashed fields, so it is chosen here rather than by the insert:
    // one past the highest id ever issued (AUTOINCREMENT's own rule), so ids are never reused.
    let issued = highest_id_issued(conn)?;
    let id = issued.max(last.as_ref().map_or(0, |(id, _)| *id)) + 1;
    let mut rec = AuditRecord {
        id,
        prev_hash: last.map_or_else(|| GENESIS_HASH.to_owned(), |(_, h)| h),
        hash: String::new(),
        ..draft.clone()
    };
    rec.hash = rec.compute_hash();
    let (key_id, mac): (Option<String>, Option<String>) =
        conn.query_row("SELECT audit_key_id(), audit_mac(?1)", [&rec.hash], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    rec.key_id = key_id;
    rec.mac = mac;
    let json = |what: &'static str, r: Result<String, serde_json::Error>| {
        r.map_err(|source| StoreError::Json { what, source })
    };
    let values = params![
        rec.id,
        rec.kind,
        rec.at.as_millis(),
        rec.node,
        rec.actor,
        rec.service,
        rec.from,
        rec.to,
        rec.cause,
        rec.reason,
        json("audit evidence", serde_json::to_string(&rec.evidence))?,
        json(
            "audit routes_before",
            serde_json::to_string(&rec.routes_before)
        )?,
        json(
            "audit routes_after",
            serde_json::to_string(&rec.routes_after)
        )?,
        rec.config_version,
        rec.transition_id,
        crate::audit::canonical(&rec.detail),
        rec.prev_hash,
        rec.hash,
        rec.key_id,
        rec.mac,
    ];
    // An unkeyed record leaves the key columns out: migration 2 backfills records before
    // migration 11 has added them.
    let (columns, n) = if rec.mac.is_some() {
        (", key_id, mac", 20)
    } else {
        ("", 18)
    };
    let placeholders: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    conn.execute(
        &format!(
            "INSERT INTO audit
               (id, kind, at_ms, node, actor, service, from_state, to_state, cause, reason,
                evidence, routes_before, routes_after, config_version, transition_id, detail,
                prev_hash, hash{columns})
             VALUES ({})",
            placeholders.join(", ")
        ),
        &values[..n],
    )?;
    Ok(rec)
}

/// Binds `key` (or none) to `conn` as the functions `append` seals records with:
/// `audit_key_id()` (the key's id, NULL without a key) and `audit_mac(hash)` (the MAC, NULL
/// without a key). Called once when the write connection opens (no key) and again when the
/// daemon hands the store its key.
pub(super) fn bind_key(
    conn: &Connection,
    key: Option<crate::config::AuditKey>,
) -> Result<(), StoreError> {
    use rusqlite::functions::FunctionFlags;
    let id = key.as_ref().map(|k| crate::audit::key_id(k.bytes()));
    conn.create_scalar_function("audit_key_id", 0, FunctionFlags::SQLITE_UTF8, move |_| {
        Ok(id.clone())
    })?;
    conn.create_scalar_function("audit_mac", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
        let hash: String = ctx.get(0)?;
        Ok(key.as_ref().map(|k| crate::audit::mac(k.bytes(), &hash)))
    })?;
    Ok(())
}

/// The chain's head: the newest record's id and hash, or `None` for an empty log.
pub(super) fn head(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// The key id of the newest keyed record, and whether the head itself is keyed: what the
/// daemon compares its key with at start.
pub(super) fn newest_key(conn: &Connection) -> Result<(Option<(i64, String)>, bool), StoreError> {
    let newest: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, key_id FROM audit WHERE key_id IS NOT NULL ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let head = head(conn)?.map(|(id, _)| id);
    let head_keyed = match (&newest, head) {
        (Some((k, _)), Some(h)) => *k == h,
        _ => false,
    };
    Ok((newest, head_keyed))
}

/// The highest audit id SQLite ever issued (0 if none), from `sqlite_sequence`: it outlives
/// deleted rows, which is how a deleted tail of the log is noticed.
pub(super) fn highest_id_issued(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0))
}

pub(super) const SELECT: &str =
    "SELECT id, kind, at_ms, node, actor, service, from_state, to_state, cause,
        reason, evidence, routes_before, routes_after, config_version, transition_id, detail,
        prev_hash, hash, key_id, mac
     FROM audit";

/// Every record at or after `since` (all when `None`), in id order. A row whose JSON columns
/// no longer parse comes back as `Err(UnreadableRecord)` instead of failing the whole read,
/// so `verify` can name it.
pub(super) fn read(
    conn: &Connection,
    since: Option<Timestamp>,
) -> Result<Vec<AuditRow>, StoreError> {
    // A database from before migration 11 (read by `switchboard audit`, which never
    // migrates) has no key columns: its records read as unkeyed.
    let keyed: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'mac'",
        [],
        |r| r.get(0),
    )?;
    let select = if keyed {
        SELECT.to_owned()
    } else {
        SELECT.replace("key_id, mac", "NULL, NULL")
    };
    let sql = format!("{select} WHERE ?1 IS NULL OR at_ms >= ?1 ORDER BY id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([since.map(Timestamp::as_millis)], raw)?;
    rows.map(|r| Ok(r?.into_row())).collect()
}

pub(super) struct Raw {
    id: i64,
    kind: String,
    at_ms: i64,
    node: String,
    actor: String,
    service: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cause: Option<String>,
    reason: String,
    evidence: String,
    routes_before: String,
    routes_after: String,
    config_version: String,
    transition_id: Option<i64>,
    detail: String,
    prev_hash: String,
    hash: String,
    key_id: Option<String>,
    mac: Option<String>,
}

pub(super) fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        id: r.get(0)?,
        kind: r.get(1)?,
        at_ms: r.get(2)?,
        node: r.get(3)?,
        actor: r.get(4)?,
        service: r.get(5)?,
        from: r.get(6)?,
        to: r.get(7)?,
        cause: r.get(8)?,
        reason: r.get(9)?,
        evidence: r.get(10)?,
        routes_before: r.get(11)?,
        routes_after: r.get(12)?,
        config_version: r.get(13)?,
        transition_id: r.get(14)?,
        detail: r.get(15)?,
        prev_hash: r.get(16)?,
        hash: r.get(17)?,
        key_id: r.get(18)?,
        mac: r.get(19)?,
    })
}

impl Raw {
    pub(super) fn into_row(self) -> AuditRow {
        let unreadable = |column: &str, e: serde_json::Error| UnreadableRecord {
            id: self.id,
            service: self.service.clone(),
            at: Timestamp::from_millis(self.at_ms),
            problem: format!("stored {column} is not valid JSON ({e})"),
        };
        let evidence =
            serde_json::from_str(&self.evidence).map_err(|e| unreadable("evidence", e))?;
        let routes_before = serde_json::from_str(&self.routes_before)
            .map_err(|e| unreadable("routes_before", e))?;
        let routes_after =
            serde_json::from_str(&self.routes_after).map_err(|e| unreadable("routes_after", e))?;
        let detail = serde_json::from_str(&self.detail).map_err(|e| unreadable("detail", e))?;
        Ok(AuditRecord {
            id: self.id,
            kind: self.kind,
            at: Timestamp::from_millis(self.at_ms),
            node: self.node,
            actor: self.actor,
            service: self.service,
            from: self.from,
            to: self.to,
            cause: self.cause,
            reason: self.reason,
            evidence,
            routes_before,
            routes_after,
            config_version: self.config_version,
            transition_id: self.transition_id,
            detail,
            prev_hash: self.prev_hash,
            hash: self.hash,
            key_id: self.key_id,
            mac: self.mac,
        })
    }
}

/// The first `transitions` row that disagrees with the ledger: one without an audit record,
/// one whose fields differ from its record's, or (after those) an audit record whose
/// transition row is gone. `None` when both tables agree.
pub(super) fn cross_check(conn: &Connection) -> Result<Option<TransitionMismatch>, StoreError> {
    type Fields = (
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
        String,
        String,
    );
    let mut stmt = conn.prepare(
        "SELECT t.id, t.service, t.from_state, t.to_state, t.cause, t.actor, t.reason, t.at_ms,
                t.evidence, t.config_version,
                a.id, a.service, a.from_state, a.to_state, a.cause, a.actor, a.reason, a.at_ms,
                a.evidence, a.config_version
         FROM transitions t LEFT JOIN audit a ON a.transition_id = t.id
         ORDER BY t.id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let tid: i64 = r.get(0)?;
        let t: Fields = (
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        );
        let mismatch = |problem: String| TransitionMismatch {
            transition_id: tid,
            service: t.0.clone(),
            at: Timestamp::from_millis(t.6),
            problem,
        };
        let Some(aid) = r.get::<_, Option<i64>>(10)? else {
            return Ok(Some(mismatch(
                "has no audit record: it was inserted into the transitions table directly".into(),
            )));
        };
        // Audit columns that a transition record always fills; NULL reads as a difference.
        let a: (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = (r.get(11)?, r.get(12)?, r.get(13)?, r.get(14)?);
        let (a_actor, a_reason, a_at, a_evidence, a_cfg): (String, String, i64, String, String) =
            (r.get(15)?, r.get(16)?, r.get(17)?, r.get(18)?, r.get(19)?);
        let differing: Vec<&str> = [
            ("service", a.0.as_deref() != Some(t.0.as_str())),
            ("from", a.1.as_deref() != Some(t.1.as_str())),
            ("to", a.2.as_deref() != Some(t.2.as_str())),
            ("cause", a.3.as_deref() != Some(t.3.as_str())),
            ("actor", a_actor != t.4),
            ("reason", a_reason != t.5),
            ("at", a_at != t.6),
            ("evidence", a_evidence != t.7),
            ("config_version", a_cfg != t.8),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect();
        if !differing.is_empty() {
            return Ok(Some(mismatch(format!(
                "{} differ(s) from audit record {aid}: the transitions table was edited",
                differing.join(", ")
            ))));
        }
    }
    drop(rows);
    let orphan = conn
        .query_row(
            "SELECT a.transition_id, COALESCE(a.service, ''), a.at_ms, a.id
             FROM audit a LEFT JOIN transitions t ON t.id = a.transition_id
             WHERE a.transition_id IS NOT NULL AND t.id IS NULL
             ORDER BY a.id LIMIT 1",
            [],
            |r| {
                Ok(TransitionMismatch {
                    transition_id: r.get(0)?,
                    service: r.get(1)?,
                    at: Timestamp::from_millis(r.get(2)?),
                    problem: format!(
                        "is missing from the transitions table but audit record {} holds it: it was deleted",
                        r.get::<_, i64>(3)?
                    ),
                })
            },
        )
        .optional()?;
    Ok(orphan)
}

/// Migration 2's Rust step: one audit record per transition recorded before the audit log
/// existed, in id order, so the ledger covers the whole history. What was not recorded then
/// (node, routes) is marked as such rather than invented.
pub(super) fn backfill(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, service, from_state, to_state, cause, actor, reason, at_ms, evidence,
                config_version
         FROM transitions ORDER BY id",
    )?;
    // Read every row first (evidence still as text), then append: `append` needs the
    // connection while this statement would otherwise still be stepping.
    let drafts: Vec<(AuditRecord, String)> = stmt
        .query_map([], |r| {
            let draft = AuditRecord {
                id: 0,
                kind: crate::audit::KIND_TRANSITION.to_owned(),
                at: Timestamp::from_millis(r.get(7)?),
                node: "unknown (recorded before the audit log)".to_owned(),
                actor: r.get(5)?,
                service: Some(r.get(1)?),
                from: Some(r.get(2)?),
                to: Some(r.get(3)?),
                cause: Some(r.get(4)?),
                reason: r.get(6)?,
                evidence: Vec::new(),
                routes_before: Default::default(),
                routes_after: Default::default(),
                config_version: r.get(9)?,
                transition_id: Some(r.get(0)?),
                detail: serde_json::json!({ "backfilled": true }),
                prev_hash: String::new(),
                hash: String::new(),
                key_id: None,
                mac: None,
            };
            Ok((draft, r.get::<_, String>(8)?))
        })?
        .collect::<Result<_, _>>()?;
    for (mut draft, evidence) in drafts {
        draft.evidence = serde_json::from_str(&evidence).map_err(|source| StoreError::Json {
            what: "transition evidence",
            source,
        })?;
        append(conn, &draft)?;
    }
    Ok(())
}

/// An on-call e-mail's text and HTML with the chain's head as a footer line (`Audit chain
/// head: record 42, hash 3f2a9c1b04de`), read in the transaction that queues the message, so
/// it names the newest record at that moment (for a transition's own message: its record).
/// Every other row, or an empty log, is left as it is.
pub(super) fn with_head_footer(
    conn: &Connection,
    audience: &str,
    channel: &str,
    text: &str,
    html: Option<&str>,
) -> Result<(String, Option<String>), StoreError> {
    let head = if audience == "oncall" && channel == "email" {
        head(conn)?
    } else {
        None
    };
    let Some((seq, hash)) = head else {
        return Ok((text.to_owned(), html.map(str::to_owned)));
    };
    let line = format!("Audit chain head: {}", crate::audit::head_text(seq, &hash));
    let mut text = text.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    let html = html.map(|h| {
        let p = format!("<p>{line}</p>\n");
        match h.rfind("</body>") {
            Some(i) => format!("{}{p}{}", &h[..i], &h[i..]),
            None => format!("{h}{p}"),
        }
    });
    Ok((text, html))
}
