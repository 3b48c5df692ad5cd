//! Cluster mode's replication: every committed write of the leader, as the rows it changed, is an entry of an ordered log in etcd that every node applies to its own SQLite file.
//!
//! Why rows and not operations: the store is written by a few dozen `Store` methods, each a
//! transaction of its own, some computing what they write from what they read (the audit
//! chain's hashes, outbox ids, group plans). Shipping the *rows* a write left behind makes a
//! follower's file the same as the leader's without running any of that logic twice, so the
//! audit chain on every node is the leader's chain, byte for byte, and a new kind of write
//! needs nothing here. SQLite's update hook names each row a statement changed (table and
//! rowid); the changed rows are read back before the commit.
//!
//! How a leader writes (`Replicator`, run by the store's writer thread around each job):
//! 1. `BEGIN IMMEDIATE` (the job's own transactions become savepoints inside it: `open::begin`);
//! 2. the job runs; the update hook collects the rows it touched;
//! 3. the rows are read back and put in etcd as log entry `seq` by a *fenced* transaction:
//!    only while this node's leader term holds, and only if entry `seq` does not exist yet;
//! 4. the applied sequence number is written in the same SQLite transaction, which then
//!    commits. If etcd refuses (fenced, unreachable), the transaction rolls back and the
//!    caller gets the error, exactly as when the disk refuses a write on a single node: the
//!    transition waits in memory and is retried, nothing is sent before it is recorded.
//!
//! How every node follows (`Applier`): entries are read in order (a range from the next
//! sequence number, then a watch), and each is applied in one SQLite transaction together
//! with its sequence number, so an entry is applied exactly once even across crashes. A new
//! leader first applies everything in the log before it acts.
//!
//! Local tables are not replicated: probe history (each node's own probes), the instance row
//! (set from the cluster's id) and the applied sequence number itself.

use super::{Store, StoreError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rusqlite::types::Value;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Tables each node keeps for itself.
pub const LOCAL_TABLES: &[&str] = &["probe_history", "instance", "cluster_applied"];

/// The rows touched since the outer transaction began, in the order first touched.
#[derive(Default)]
pub struct Touched {
    order: Vec<(String, i64)>,
    seen: HashSet<(String, i64)>,
    /// Off while an entry from the log is applied: those rows are already in the log.
    paused: bool,
}

/// One column value, as SQLite stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SqlValue {
    #[serde(rename = "n")]
    Null,
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "r")]
    Real(f64),
    #[serde(rename = "t")]
    Text(String),
    /// Base64.
    #[serde(rename = "b")]
    Blob(String),
}

impl SqlValue {
    fn from_sql(v: Value) -> SqlValue {
        match v {
            Value::Null => SqlValue::Null,
            Value::Integer(i) => SqlValue::Int(i),
            Value::Real(r) => SqlValue::Real(r),
            Value::Text(t) => SqlValue::Text(t),
            Value::Blob(b) => SqlValue::Blob(B64.encode(b)),
        }
    }

    fn to_sql(&self) -> Result<Value, StoreError> {
        Ok(match self {
            SqlValue::Null => Value::Null,
            SqlValue::Int(i) => Value::Integer(*i),
            SqlValue::Real(r) => Value::Real(*r),
            SqlValue::Text(t) => Value::Text(t.clone()),
            SqlValue::Blob(b) => Value::Blob(B64.decode(b).map_err(|e| bad(format!("blob: {e}")))?),
        })
    }
}

/// A row as a write left it: its columns, or `None` when it was deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    pub table: String,
    pub rowid: i64,
    pub row: Option<Vec<(String, SqlValue)>>,
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// The leader term (leader key create revision) it was written in.
    pub term: i64,
    pub node: String,
    pub at_ms: i64,
    pub changes: Vec<RowChange>,
}

fn bad(why: String) -> StoreError {
    StoreError::Replica(why)
}

/// A table or column name as SQLite names ours; anything else in a log entry is refused
/// rather than spliced into SQL.
fn ident(name: &str) -> Result<&str, StoreError> {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(name)
    } else {
        Err(bad(format!("not a table or column name: {name:?}")))
    }
}

impl Store {
    /// Starts noting every row a write changes (cluster mode). Idempotent.
    pub fn enable_capture(&self) -> Result<(), StoreError> {
        self.conn().execute_batch(
            "CREATE TABLE IF NOT EXISTS cluster_applied (
                 id   INTEGER PRIMARY KEY CHECK (id = 1),
                 seq  INTEGER NOT NULL,
                 term INTEGER NOT NULL
             ) STRICT",
        )?;
        if self.touched.get().is_some() {
            return Ok(());
        }
        let touched = Arc::new(Mutex::new(Touched::default()));
        let noted = touched.clone();
        self.conn().update_hook(Some(
            move |_: rusqlite::hooks::Action, _: &str, table: &str, rowid: i64| {
                if LOCAL_TABLES.contains(&table) {
                    return;
                }
                let mut t = noted.lock().unwrap_or_else(|p| p.into_inner());
                if t.paused {
                    return;
                }
                let key = (table.to_string(), rowid);
                if t.seen.insert(key.clone()) {
                    t.order.push(key);
                }
            },
        ));
        let _ = self.touched.set(touched);
        Ok(())
    }

    fn touched(&self) -> Option<std::sync::MutexGuard<'_, Touched>> {
        self.touched
            .get()
            .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Opens the writer's outer transaction and forgets earlier touches.
    pub(crate) fn capture_begin(&self) -> Result<(), StoreError> {
        self.check_file()?;
        self.conn().execute_batch("BEGIN IMMEDIATE")?;
        if let Some(mut t) = self.touched() {
            t.order.clear();
            t.seen.clear();
        }
        Ok(())
    }

    /// The rows touched since `capture_begin`, as they are now (inside the open transaction).
    pub(crate) fn capture_changes(&self) -> Result<Vec<RowChange>, StoreError> {
        let order = match self.touched() {
            Some(mut t) => {
                t.seen.clear();
                std::mem::take(&mut t.order)
            }
            None => return Ok(Vec::new()),
        };
        let conn = self.conn();
        let mut changes = Vec::with_capacity(order.len());
        for (table, rowid) in order {
            let sql = format!("SELECT * FROM \"{}\" WHERE rowid = ?1", ident(&table)?);
            let mut stmt = conn.prepare_cached(&sql)?;
            let names: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
            let mut rows = stmt.query([rowid])?;
            let row = match rows.next()? {
                Some(r) => {
                    let mut cols = Vec::with_capacity(names.len());
                    for (i, name) in names.iter().enumerate() {
                        cols.push((name.clone(), SqlValue::from_sql(r.get::<_, Value>(i)?)));
                    }
                    Some(cols)
                }
                None => None,
            };
            changes.push(RowChange { table, rowid, row });
        }
        Ok(changes)
    }

    /// Ends the outer transaction: commits after writing `applied` (seq, term) in it, or
    /// rolls back (`applied` is `None`).
    pub(crate) fn capture_end(&self, applied: Option<(u64, i64)>) -> Result<(), StoreError> {
        let conn = self.conn();
        if conn.is_autocommit() {
            return Ok(());
        }
        match applied {
            Some((seq, term)) => {
                if seq > 0 {
                    set_applied(&conn, seq, term)?;
                }
                conn.execute_batch("COMMIT")?;
            }
            None => conn.execute_batch("ROLLBACK")?,
        }
        Ok(())
    }

    /// The last log entry applied to this file (0: none), and its term.
    pub fn applied_seq(&self) -> Result<(u64, i64), StoreError> {
        let conn = self.conn();
        let r = conn
            .query_row(
                "SELECT seq, term FROM cluster_applied WHERE id = 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?)),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok((0, 0)),
                rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                    Ok((0, 0))
                }
                e => Err(e),
            })?;
        Ok(r)
    }

    /// Applies one log entry in one transaction with its sequence number. An entry at or
    /// below the applied one is skipped (applied already); one further ahead is refused, as
    /// applying it would skip the entries between.
    pub fn apply_entry(&self, entry: &Entry) -> Result<bool, StoreError> {
        let (applied, _) = self.applied_seq()?;
        if entry.seq <= applied {
            return Ok(false);
        }
        if entry.seq != applied + 1 {
            return Err(bad(format!(
                "log entry {} follows {applied}: entries between are missing",
                entry.seq
            )));
        }
        self.check_file()?;
        if let Some(mut t) = self.touched() {
            t.paused = true;
        }
        let result = self.apply_rows(entry);
        if let Some(mut t) = self.touched() {
            t.paused = false;
        }
        result.map(|()| true)
    }

    fn apply_rows(&self, entry: &Entry) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = super::open::begin(&mut conn)?;
        tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        for change in &entry.changes {
            let table = ident(&change.table)?;
            if LOCAL_TABLES.contains(&table) {
                continue;
            }
            let Some(row) = &change.row else {
                tx.execute(
                    &format!("DELETE FROM \"{table}\" WHERE rowid = ?1"),
                    [change.rowid],
                )?;
                continue;
            };
            let mut names = Vec::with_capacity(row.len());
            let mut values = Vec::with_capacity(row.len());
            for (name, value) in row {
                names.push(format!("\"{}\"", ident(name)?));
                values.push(value.to_sql()?);
            }
            // The row as it is here now, to skip one that is already the same (an entry
            // re-applied after a crash; append-only tables refuse an UPDATE even to equal
            // values).
            let current: Option<Vec<Value>> = {
                let sql = format!(
                    "SELECT {} FROM \"{table}\" WHERE rowid = ?1",
                    names.join(", ")
                );
                let mut stmt = tx.prepare_cached(&sql)?;
                let mut rows = stmt.query([change.rowid])?;
                match rows.next()? {
                    Some(r) => Some(
                        (0..names.len())
                            .map(|i| r.get::<_, Value>(i))
                            .collect::<Result<_, _>>()?,
                    ),
                    None => None,
                }
            };
            match current {
                Some(cur) if cur == values => {}
                Some(_) => {
                    let sets: Vec<String> = names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| format!("{n} = ?{}", i + 2))
                        .collect();
                    let sql = format!(
                        "UPDATE \"{table}\" SET {} WHERE rowid = ?1",
                        sets.join(", ")
                    );
                    let mut params: Vec<Value> = vec![Value::Integer(change.rowid)];
                    params.extend(values);
                    tx.execute(&sql, rusqlite::params_from_iter(params))?;
                }
                None => {
                    let marks: Vec<String> =
                        (0..=names.len()).map(|i| format!("?{}", i + 1)).collect();
                    let sql = format!(
                        "INSERT INTO \"{table}\" (rowid, {}) VALUES ({})",
                        names.join(", "),
                        marks.join(", ")
                    );
                    let mut params: Vec<Value> = vec![Value::Integer(change.rowid)];
                    params.extend(values);
                    tx.execute(&sql, rusqlite::params_from_iter(params))?;
                }
            }
        }
        set_applied(&tx, entry.seq, entry.term)?;
        tx.commit()?;
        Ok(())
    }
}

impl Store {
    /// Every replicated row of this file, one line per row (`table rowid values`), in table
    /// and rowid order: two nodes that applied the same log give the same lines.
    pub fn replicated_rows(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let tables: Vec<String> = {
            let mut stmt = conn.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )?;
            let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
            names.collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for table in tables
            .iter()
            .filter(|t| !LOCAL_TABLES.contains(&t.as_str()))
        {
            let sql = format!("SELECT rowid, * FROM \"{}\" ORDER BY rowid", ident(table)?);
            let Ok(mut stmt) = conn.prepare(&sql) else {
                // WITHOUT ROWID tables have no rowid to replicate by; none is replicated.
                continue;
            };
            let n = stmt.column_count();
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let values: Vec<Value> = (0..n).map(|i| r.get(i)).collect::<Result<_, _>>()?;
                out.push(format!("{table} {values:?}"));
            }
        }
        Ok(out)
    }
}

fn set_applied(conn: &rusqlite::Connection, seq: u64, term: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO cluster_applied (id, seq, term) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, term = excluded.term",
        rusqlite::params![seq as i64, term],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::NewAuditRecord;
    use crate::clock::Timestamp;
    use crate::failover::{Cause, State, Transition};
    use crate::store::NewAnnouncement;

    fn transition(from: State, to: State, at: i64) -> Transition {
        Transition {
            service: "portal".into(),
            from,
            to,
            cause: Cause::PrimaryDown,
            at: Timestamp(at),
            actor: "system".into(),
            reason: "form failing".into(),
            evidence: vec!["portal-form: down".into()],
            public_message: None,
        }
    }

    fn mail() -> NewAnnouncement {
        NewAnnouncement {
            audience: "oncall".into(),
            channel: "email".into(),
            kind: "failover".into(),
            recipients: vec!["oncall@example.com".into()],
            subject: "s".into(),
            text: "t".into(),
            html: None,
        }
    }

    /// One write on `leader`, captured as the writer does it, as entry `seq`.
    fn captured(leader: &Store, seq: u64, write: impl FnOnce(&Store)) -> Entry {
        leader.capture_begin().unwrap();
        write(leader);
        let changes = leader.capture_changes().unwrap();
        leader.capture_end(Some((seq, 7))).unwrap();
        Entry {
            seq,
            term: 7,
            node: "a".into(),
            at_ms: 0,
            changes,
        }
    }

    #[test]
    fn a_follower_that_applies_the_leaders_entries_has_the_same_rows_and_audit_chain() {
        let (a, b) = (
            Store::open_in_memory().unwrap(),
            Store::open_in_memory().unwrap(),
        );
        a.enable_capture().unwrap();
        b.enable_capture().unwrap();
        let mut log = Vec::new();
        log.push(captured(&a, 1, |s| {
            s.ensure_service("portal", Timestamp(1)).unwrap();
        }));
        log.push(captured(&a, 2, |s| {
            s.commit_transition(
                &transition(State::Operational, State::FailedOver, 10),
                "v1",
                &[mail()],
            )
            .unwrap();
        }));
        log.push(captured(&a, 3, |s| {
            let id = s.due_announcements(Timestamp(20), 10).unwrap()[0].id;
            s.mark_delivered(id, Timestamp(21), "250 ok").unwrap();
        }));
        log.push(captured(&a, 4, |s| {
            s.append_audit(&NewAuditRecord {
                kind: "operator_action".into(),
                at: Timestamp(25),
                actor: "ops".into(),
                service: Some("portal".into()),
                reason: "testing".into(),
                config_version: "v1".into(),
                node: "a".into(),
                detail: serde_json::json!({"command": "pin"}),
            })
            .unwrap();
        }));
        log.push(captured(&a, 5, |s| {
            s.commit_transition(
                &transition(State::FailedOver, State::Operational, 30),
                "v1",
                &[],
            )
            .unwrap();
        }));
        assert!(
            log.iter().all(|e| !e.changes.is_empty()),
            "every write changed rows"
        );
        for e in &log {
            assert!(b.apply_entry(e).unwrap());
        }
        assert_eq!(a.replicated_rows().unwrap(), b.replicated_rows().unwrap());
        assert!(b
            .replicated_rows()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("audit ")));
        let verdict = b.verify_audit().unwrap();
        assert!(
            // Two transitions, the delivery's proof (issue 16) and the operator action.
            matches!(verdict, crate::audit::Verdict::Intact { records: 4, .. }),
            "the follower's chain verifies: {verdict}"
        );
        assert_eq!(b.applied_seq().unwrap(), (5, 7));
        // Applying an entry again changes nothing; one out of order is refused.
        assert!(!b.apply_entry(&log[2]).unwrap());
        let mut gap = log[4].clone();
        gap.seq = 9;
        assert!(b.apply_entry(&gap).is_err());
        assert_eq!(a.replicated_rows().unwrap(), b.replicated_rows().unwrap());
        // What a follower applies is not captured as its own write.
        b.capture_begin().unwrap();
        assert!(b.capture_changes().unwrap().is_empty());
        b.capture_end(None).unwrap();
    }

    #[test]
    fn a_rolled_back_capture_leaves_nothing() {
        let a = Store::open_in_memory().unwrap();
        a.enable_capture().unwrap();
        let before = a.replicated_rows().unwrap();
        a.capture_begin().unwrap();
        a.ensure_service("portal", Timestamp(1)).unwrap();
        a.commit_transition(
            &transition(State::Operational, State::FailedOver, 10),
            "v1",
            &[mail()],
        )
        .unwrap();
        assert!(!a.capture_changes().unwrap().is_empty());
        a.capture_end(None).unwrap();
        assert_eq!(a.replicated_rows().unwrap(), before);
        assert_eq!(a.applied_seq().unwrap(), (0, 0));
    }

    #[test]
    fn names_from_the_log_are_checked_before_they_reach_sql() {
        assert!(ident("outbox_v7").is_ok());
        assert!(ident("x\"; DROP TABLE audit; --").is_err());
        assert!(ident("").is_err());
    }
}
