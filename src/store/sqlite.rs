//! The SQLite store: one connection behind a mutex, WAL, synchronous=FULL, numbered migrations.
//!
//! Why these settings: WAL lets readers (the HTTP side, inspection) run beside the single
//! writer, and `synchronous=FULL` makes a committed transition survive power loss, not just
//! a process crash: a failover decision that was announced must still be on disk after reboot.

use super::audit_log;
use super::groups::{self, NewPart};
use super::incidents;
use super::{
    CommittedTransition, MessageIds, NewAnnouncement, OutboxItem, OutboxStatus, ServiceRecord,
    StoreError, TransitionRecord,
};
use crate::audit::{self, AuditContext, AuditRecord, AuditRow, NewAuditRecord, Verdict};
use crate::clock::Timestamp;
use crate::failover::{Cause, State, Transition};
use crate::incident::ServiceWords;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Numbered migrations, applied in order; `PRAGMA user_version` records the last one applied.
/// Append only: an applied migration is never edited, a change is a new file.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_audit.sql")),
    (3, include_str!("migrations/0003_holds.sql")),
    (4, include_str!("migrations/0004_control.sql")),
    (5, include_str!("migrations/0005_incidents_history.sql")),
    (6, include_str!("migrations/0006_outbox.sql")),
    (7, include_str!("migrations/0007_announce_groups.sql")),
    (8, include_str!("migrations/0008_public_message.sql")),
    (9, include_str!("migrations/0009_drill_interrupted.sql")),
];

/// The first schema version with the audit log; `audit verify` refuses older files.
const AUDIT_SCHEMA: u32 = 2;

/// How long a call waits for a lock held by another connection (e.g. an inspection tool)
/// before failing loudly instead of hanging the caller.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The durable store. `Send + Sync`; every method takes the connection for one short call.
pub struct Store {
    conn: Mutex<Connection>,
    /// The file this store opened, to notice it being deleted or replaced underneath us.
    file: Option<FileIdentity>,
    /// Service names and route targets for the words of incidents (`describe_services`).
    pub(super) words: RwLock<HashMap<String, ServiceWords>>,
    /// This database's random instance id (migration 7), read once at open.
    instance: String,
    /// The domain of Message-IDs (`set_message_id_domain`).
    id_domain: RwLock<String>,
}

/// Which file a path named when the store opened it (device and inode).
///
/// Why: SQLite keeps writing through its open descriptor after the database file or its
/// directory is removed, and every later "committed" transition goes into a file nobody
/// will ever open again: a silent loss. Comparing the path's identity before each write that
/// records history turns that into a loud `StoreError::FileGone`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileIdentity {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let m = std::fs::metadata(path)?;
        Ok(FileIdentity {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        match FileIdentity::of(&self.path) {
            Ok(now) if now == *self => Ok(()),
            Ok(_) => Err(StoreError::FileGone {
                path: self.path.clone(),
                why: "was replaced by another file".to_owned(),
            }),
            Err(e) => Err(StoreError::FileGone {
                path: self.path.clone(),
                why: format!("is gone ({e})"),
            }),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, its parent directory included,
    /// and brings the schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // `journal_mode` answers with the mode actually in force; anything but WAL means the
        // file system refused it, and the durability reasoning above would not hold.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                what: "journal_mode (WAL refused by the file system)",
                value: mode,
            });
        }
        let file = FileIdentity::of(path).map_err(|source| StoreError::CreateDir {
            path: path.to_path_buf(),
            source,
        })?;
        Store::setup(conn, Some(file))
    }

    /// Opens an existing database read-only, without migrating it: for `switchboard audit`,
    /// which must never change the file it examines (and can run beside the daemon).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::NoDatabase {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let found = user_version(&conn)?;
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        if found < AUDIT_SCHEMA {
            return Err(StoreError::NoAuditLog { found });
        }
        let instance = read_instance(&conn).unwrap_or_default();
        Ok(Store {
            conn: Mutex::new(conn),
            file: None,
            words: RwLock::default(),
            instance,
            id_domain: RwLock::new(super::DEFAULT_MESSAGE_ID_DOMAIN.to_owned()),
        })
    }

    /// A private in-memory database, for tests and dry runs.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: ":memory:".into(),
            source,
        })?;
        Store::setup(conn, None)
    }

    fn setup(mut conn: Connection, file: Option<FileIdentity>) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        migrate(&mut conn)?;
        let instance = read_instance(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            file,
            words: RwLock::default(),
            instance,
            id_domain: RwLock::new(super::DEFAULT_MESSAGE_ID_DOMAIN.to_owned()),
        })
    }

    /// Fails loudly when the database file this store writes to is no longer the one at its
    /// path (see `FileIdentity`).
    pub(super) fn check_file(&self) -> Result<(), StoreError> {
        self.file.as_ref().map_or(Ok(()), FileIdentity::check)
    }

    /// The connection. A panic while it was held cannot leave a half-written transaction
    /// behind (a dropped `Transaction` rolls back), so a poisoned lock is safe to reuse.
    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The database file this store opened (`None` in memory), for read-only companions.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// This database's random instance id, created once with it.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Names the domain of every Message-ID written from now on (`[email] message_id_domain`,
    /// or the domain of `[email] from`). Rows already written keep theirs.
    pub fn set_message_id_domain(&self, domain: &str) {
        let mut d = self
            .id_domain
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *d = domain.to_owned();
    }

    /// How this database names its messages now.
    pub fn message_ids(&self) -> MessageIds {
        MessageIds {
            instance: self.instance.clone(),
            domain: self
                .id_domain
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }

    /// The schema version in force (the last migration applied).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(user_version(&self.conn())?)
    }

    /// Every stored service, ordered by id.
    pub fn load_services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, state, since_ms, cause, created_at_ms FROM services ORDER BY id",
        )?;
        let rows = stmt.query_map([], raw_service)?;
        rows.map(|r| r?.into_record()).collect()
    }

    /// One stored service, if known.
    pub fn service(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT id, state, since_ms, cause, created_at_ms FROM services WHERE id = ?1",
            [id],
            raw_service,
        )
        .optional()?
        .map(RawService::into_record)
        .transpose()
    }

    /// The service's saved holds (JSON of `failover::Holds`), if any were saved.
    pub fn holds(&self, service: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT holds FROM service_holds WHERE service = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Saves the service's holds, replacing the previous ones.
    pub fn set_holds(&self, service: &str, holds: &str, at: Timestamp) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO service_holds (service, holds, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (service) DO UPDATE SET holds = excluded.holds, updated_at_ms = excluded.updated_at_ms",
            rusqlite::params![service, holds, at.as_millis()],
        )?;
        Ok(())
    }

    /// Returns the stored service, first inserting it as `operational` since `now` (cause
    /// `startup`) if this store has never seen it. A restart therefore resumes the stored
    /// state instead of announcing anything again.
    pub fn ensure_service(&self, id: &str, now: Timestamp) -> Result<ServiceRecord, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO services (id, state, since_ms, cause, created_at_ms)
             VALUES (?1, ?2, ?3, 'startup', ?3)
             ON CONFLICT (id) DO NOTHING",
            params![id, State::Operational.as_str(), now.as_millis()],
        )?;
        conn.query_row(
            "SELECT id, state, since_ms, cause, created_at_ms FROM services WHERE id = ?1",
            [id],
            raw_service,
        )?
        .into_record()
    }

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
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;

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
                // The public text is audited beside the reason; an empty detail (as every
                // record before it had) when there is none.
                detail: match &t.public_message {
                    Some(m) => serde_json::json!({ "public_message": m }),
                    None => serde_json::json!({}),
                },
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
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare(
            "SELECT id, service, from_state, to_state, cause, actor, reason, at_ms, evidence,
                    config_version, public_message
             FROM transitions
             WHERE ?1 IS NULL OR service = ?1
             ORDER BY id DESC
             LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![service, limit], raw_transition)?;
        let mut out = rows
            .map(|r| r?.into_record())
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

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
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "{OUTBOX_SELECT} WHERE o.status = 'pending' AND o.next_attempt_at_ms <= ?1
               AND NOT EXISTS (
                   SELECT 1 FROM outbox p JOIN transitions pt ON pt.id = p.transition_id
                   WHERE p.status = 'pending' AND p.id < o.id AND p.channel = o.channel
                     AND p.audience = o.audience AND pt.service = t.service)
             ORDER BY o.next_attempt_at_ms, o.id LIMIT ?2"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![now.as_millis(), limit], raw_outbox)?;
        rows.map(|r| r?.into_item()).collect()
    }

    /// Records a successful delivery. Idempotent: marking a delivered row again changes nothing.
    pub fn mark_delivered(&self, id: i64, at: Timestamp, detail: &str) -> Result<(), StoreError> {
        self.update_pending(
            id,
            "UPDATE outbox
             SET status = 'delivered', attempts = attempts + 1, delivered_at_ms = ?2,
                 last_attempt_at_ms = ?2, detail = ?3
             WHERE id = ?1 AND status = 'pending'",
            params![id, at.as_millis(), detail],
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
    /// give-up age. The row is kept, with its error, for the record.
    pub fn mark_given_up(&self, id: i64, at: Timestamp, error: &str) -> Result<(), StoreError> {
        self.update_pending(
            id,
            "UPDATE outbox
             SET status = 'given_up', attempts = attempts + 1, last_attempt_at_ms = ?2,
                 last_error = ?3, given_up_at_ms = ?2
             WHERE id = ?1 AND status = 'pending'",
            params![id, at.as_millis(), error],
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
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
        let conn = self.conn();
        let sql = format!("{OUTBOX_SELECT} WHERE o.transition_id = ?1 ORDER BY o.id");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([transition_id], raw_outbox)?;
        rows.map(|r| r?.into_item()).collect()
    }

    /// One outbox row by id.
    pub fn outbox_item(&self, id: i64) -> Result<Option<OutboxItem>, StoreError> {
        let conn = self.conn();
        let sql = format!("{OUTBOX_SELECT} WHERE o.id = ?1");
        conn.query_row(&sql, [id], raw_outbox)
            .optional()?
            .map(RawOutbox::into_item)
            .transpose()
    }
}

/// Inserts one pending outbox row per announcement, due at `at`, inside the caller's transaction.
fn insert_outbox(
    tx: &rusqlite::Transaction<'_>,
    ids: &MessageIds,
    transition_id: i64,
    service: &str,
    at: Timestamp,
    announcements: &[NewAnnouncement],
) -> Result<Vec<i64>, StoreError> {
    let mut outbox_ids = Vec::with_capacity(announcements.len());
    for a in announcements {
        let recipients =
            serde_json::to_string(&a.recipients).map_err(|source| StoreError::Json {
                what: "announcement recipients",
                source,
            })?;
        // A notice that hangs off an earlier transition (flapping) gets its own Message-ID;
        // the messages of the transition itself keep the ids they always had.
        let id_audience = if a.kind == "flapping" {
            format!("{}.flapping", a.audience)
        } else {
            a.audience.clone()
        };
        tx.execute(
            "INSERT INTO outbox
               (transition_id, audience, channel, kind, message_id, recipients, subject,
                body_text, body_html, created_at_ms, next_attempt_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            params![
                transition_id,
                a.audience,
                a.channel,
                a.kind,
                ids.for_transition(transition_id, &id_audience, &a.channel, service, at),
                recipients,
                a.subject,
                a.text,
                a.html,
                at.as_millis()
            ],
        )?;
        outbox_ids.push(tx.last_insert_rowid());
    }
    Ok(outbox_ids)
}

/// The random instance id migration 7 created.
fn read_instance(conn: &Connection) -> Result<String, rusqlite::Error> {
    conn.query_row("SELECT instance_id FROM instance WHERE id = 1", [], |r| {
        r.get(0)
    })
}

fn user_version(conn: &Connection) -> Result<u32, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies every migration newer than the stored `user_version`, each in its own
/// transaction together with the version bump, so a crash mid-migration leaves the previous
/// version intact and the next start retries it.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    let current = user_version(conn)?;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let apply = |conn: &mut Connection| -> Result<(), StoreError> {
            let sqlite = |source| StoreError::Migration { version, source };
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Exclusive)
                .map_err(sqlite)?;
            tx.execute_batch(sql).map_err(sqlite)?;
            // Steps SQL cannot do (hashing) run in the same transaction as the schema change.
            if version == AUDIT_SCHEMA {
                audit_log::backfill(&tx)?;
            }
            // PRAGMA takes no bound parameters; `version` is a compile-time constant.
            tx.execute_batch(&format!("PRAGMA user_version = {version}"))
                .map_err(sqlite)?;
            tx.commit().map_err(sqlite)
        };
        apply(conn)?;
    }
    Ok(())
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

pub(super) fn parse_state(s: &str) -> Result<State, StoreError> {
    State::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "state",
        value: s.to_owned(),
    })
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

pub(super) fn parse_json_strings(what: &'static str, s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|source| StoreError::Json { what, source })
}

fn u32_from(what: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        value: v.to_string(),
    })
}

/// Raw column values, read inside rusqlite's row callback (which can only return
/// `rusqlite::Error`) and converted to domain types afterwards with our own errors.
struct RawService {
    id: String,
    state: String,
    since_ms: i64,
    cause: String,
    created_at_ms: i64,
}

fn raw_service(r: &Row<'_>) -> rusqlite::Result<RawService> {
    Ok(RawService {
        id: r.get(0)?,
        state: r.get(1)?,
        since_ms: r.get(2)?,
        cause: r.get(3)?,
        created_at_ms: r.get(4)?,
    })
}

impl RawService {
    fn into_record(self) -> Result<ServiceRecord, StoreError> {
        Ok(ServiceRecord {
            state: parse_state(&self.state)?,
            id: self.id,
            since: Timestamp::from_millis(self.since_ms),
            cause: self.cause,
            created_at: Timestamp::from_millis(self.created_at_ms),
        })
    }
}

struct RawTransition {
    id: i64,
    service: String,
    from: String,
    to: String,
    cause: String,
    actor: String,
    reason: String,
    at_ms: i64,
    evidence: String,
    config_version: String,
    public_message: Option<String>,
}

fn raw_transition(r: &Row<'_>) -> rusqlite::Result<RawTransition> {
    Ok(RawTransition {
        id: r.get(0)?,
        service: r.get(1)?,
        from: r.get(2)?,
        to: r.get(3)?,
        cause: r.get(4)?,
        actor: r.get(5)?,
        reason: r.get(6)?,
        at_ms: r.get(7)?,
        evidence: r.get(8)?,
        config_version: r.get(9)?,
        public_message: r.get(10)?,
    })
}

impl RawTransition {
    fn into_record(self) -> Result<TransitionRecord, StoreError> {
        Ok(TransitionRecord {
            id: self.id,
            transition: Transition {
                service: self.service,
                from: parse_state(&self.from)?,
                to: parse_state(&self.to)?,
                cause: parse_cause(&self.cause)?,
                at: Timestamp::from_millis(self.at_ms),
                actor: self.actor,
                reason: self.reason,
                evidence: parse_json_strings("transition evidence", &self.evidence)?,
                public_message: self.public_message,
            },
            config_version: self.config_version,
        })
    }
}

const OUTBOX_SELECT: &str = "SELECT o.id, o.transition_id, t.service, o.audience, o.channel,
        o.message_id, o.recipients, o.subject, o.body_text, o.body_html, o.status, o.attempts,
        o.created_at_ms, o.next_attempt_at_ms, o.last_attempt_at_ms, o.last_error,
        o.delivered_at_ms, o.detail, o.kind, o.given_up_at_ms
     FROM outbox o JOIN transitions t ON t.id = o.transition_id";

struct RawOutbox {
    id: i64,
    transition_id: i64,
    service: String,
    audience: String,
    channel: String,
    message_id: String,
    recipients: String,
    subject: String,
    text: String,
    html: Option<String>,
    status: String,
    attempts: i64,
    created_at_ms: i64,
    next_attempt_at_ms: i64,
    last_attempt_at_ms: Option<i64>,
    last_error: Option<String>,
    delivered_at_ms: Option<i64>,
    detail: Option<String>,
    kind: String,
    given_up_at_ms: Option<i64>,
}

fn raw_outbox(r: &Row<'_>) -> rusqlite::Result<RawOutbox> {
    Ok(RawOutbox {
        id: r.get(0)?,
        transition_id: r.get(1)?,
        service: r.get(2)?,
        audience: r.get(3)?,
        channel: r.get(4)?,
        message_id: r.get(5)?,
        recipients: r.get(6)?,
        subject: r.get(7)?,
        text: r.get(8)?,
        html: r.get(9)?,
        status: r.get(10)?,
        attempts: r.get(11)?,
        created_at_ms: r.get(12)?,
        next_attempt_at_ms: r.get(13)?,
        last_attempt_at_ms: r.get(14)?,
        last_error: r.get(15)?,
        delivered_at_ms: r.get(16)?,
        detail: r.get(17)?,
        kind: r.get(18)?,
        given_up_at_ms: r.get(19)?,
    })
}

impl RawOutbox {
    fn into_item(self) -> Result<OutboxItem, StoreError> {
        Ok(OutboxItem {
            status: OutboxStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
                what: "outbox status",
                value: self.status.clone(),
            })?,
            recipients: parse_json_strings("outbox recipients", &self.recipients)?,
            attempts: u32_from("outbox attempts", self.attempts)?,
            id: self.id,
            transition_id: self.transition_id,
            service: self.service,
            audience: self.audience,
            channel: self.channel,
            message_id: self.message_id,
            subject: self.subject,
            text: self.text,
            html: self.html,
            created_at: Timestamp::from_millis(self.created_at_ms),
            next_attempt_at: Timestamp::from_millis(self.next_attempt_at_ms),
            last_attempt_at: self.last_attempt_at_ms.map(Timestamp::from_millis),
            last_error: self.last_error,
            delivered_at: self.delivered_at_ms.map(Timestamp::from_millis),
            detail: self.detail,
            kind: self.kind,
            given_up_at: self.given_up_at_ms.map(Timestamp::from_millis),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn transition(service: &str, from: State, to: State, at: Timestamp) -> Transition {
        Transition {
            service: service.to_owned(),
            from,
            to,
            cause: if to == State::FailedOver {
                Cause::PrimaryDown
            } else {
                Cause::RecoveryHoldElapsed
            },
            at,
            actor: "system".to_owned(),
            reason: "portal form failing".to_owned(),
            evidence: vec!["portal-form: down (connect: connection refused)".to_owned()],
            public_message: None,
        }
    }

    fn announcement(audience: &str) -> NewAnnouncement {
        NewAnnouncement {
            audience: audience.to_owned(),
            channel: "email".to_owned(),
            kind: "failover".to_owned(),
            recipients: vec![format!("{audience}@example.com")],
            subject: format!("subject for {audience}"),
            text: "text".to_owned(),
            html: Some("<p>html</p>".to_owned()),
        }
    }

    fn failover(store: &Store, at: Timestamp) -> CommittedTransition {
        let t = transition(
            "ticket-submission",
            State::Operational,
            State::FailedOver,
            at,
        );
        store
            .commit_transition(
                &t,
                "cfg-v1",
                &[announcement("oncall"), announcement("customers")],
            )
            .expect("commit")
    }

    #[test]
    fn migrations_set_the_schema_version_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/switchboard.db");
        // The newest migration, whichever it is: every one applies on a fresh file.
        let newest = MIGRATIONS.last().map(|(v, _)| *v).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), newest);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), newest);
    }

    #[test]
    fn refuses_a_schema_newer_than_this_build() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err();
        let newest = MIGRATIONS.last().map(|(v, _)| *v).unwrap();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 99,
                    known
                } if known == newest
            ),
            "{err}"
        );
    }

    #[test]
    fn a_version_3_outbox_is_rebuilt_with_its_rows_and_learns_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            // A database as version 3 left it, with one pending row.
            let mut conn = Connection::open(&path).unwrap();
            for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 3) {
                conn.execute_batch(sql).unwrap();
                if *v == AUDIT_SCHEMA {
                    let tx = conn.transaction().unwrap();
                    audit_log::backfill(&tx).unwrap();
                    tx.commit().unwrap();
                }
            }
            conn.execute_batch(
                "PRAGMA user_version = 3;
                 INSERT INTO transitions (service, from_state, to_state, cause, actor, reason,
                   at_ms, evidence, config_version)
                 VALUES ('svc', 'operational', 'failed_over', 'primary_down', 'system', 'r', 5, '[]', 'v');
                 INSERT INTO outbox (transition_id, audience, channel, message_id, recipients,
                   subject, body_text, created_at_ms, next_attempt_at_ms)
                 VALUES (1, 'oncall', 'email', '<t1.oncall.svc@switchboard>', '[\"a@example.com\"]',
                   's', 't', 5, 5);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let newest = MIGRATIONS.last().map(|(v, _)| *v).unwrap();
        assert_eq!(store.schema_version().unwrap(), newest);
        // Migration 7 gave the old file an instance id, and the pending row kept its
        // Message-ID through both rebuilds: a retry after the upgrade is still recognisable.
        assert_eq!(store.instance_id().len(), 16);
        let rows = store.announcements(1).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].message_id, "<t1.oncall.svc@switchboard>");
        assert_eq!(rows[0].kind, "");
        store.mark_given_up(rows[0].id, T0, "relay gone").unwrap();
        let row = store.outbox_item(rows[0].id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::GivenUp);
        assert_eq!(row.given_up_at, Some(T0));
        assert_eq!(store.outbox_backlog().unwrap(), (0, None));
    }

    #[test]
    fn a_later_message_to_the_same_audience_and_channel_waits_for_the_earlier_one() {
        let store = Store::open_in_memory().unwrap();
        let first = failover(&store, T0);
        let back = transition(
            "ticket-submission",
            State::FailedOver,
            State::Operational,
            Timestamp(T0.0 + 1000),
        );
        let second = store
            .commit_transition(&back, "v", &[announcement("customers")])
            .unwrap();
        // The failover's customers mail failed and waits for its retry.
        let retry_at = Timestamp(T0.0 + 60_000);
        store
            .mark_failed(first.outbox_ids[1], T0, "down", retry_at)
            .unwrap();
        let due = |now| -> Vec<i64> {
            store
                .due_announcements(now, 10)
                .unwrap()
                .iter()
                .map(|i| i.id)
                .collect()
        };
        // The failback mail is due by time, but must not overtake the failover mail.
        assert_eq!(due(Timestamp(T0.0 + 2000)), vec![first.outbox_ids[0]]);
        assert_eq!(
            due(retry_at),
            vec![first.outbox_ids[0], first.outbox_ids[1]]
        );
        store
            .mark_delivered(first.outbox_ids[1], retry_at, "250")
            .unwrap();
        store
            .mark_delivered(first.outbox_ids[0], retry_at, "250")
            .unwrap();
        assert_eq!(due(retry_at), vec![second.outbox_ids[0]]);
        // A given-up row no longer holds the stream up.
        store
            .mark_given_up(second.outbox_ids[0], retry_at, "gone")
            .unwrap();
        assert!(due(Timestamp(i64::MAX)).is_empty());
    }

    #[test]
    fn a_notice_hangs_off_the_latest_transition_with_its_own_message_id() {
        let store = Store::open_in_memory().unwrap();
        let mut notice = announcement("oncall");
        notice.kind = "flapping".into();
        assert!(matches!(
            store.enqueue_notice("ticket-submission", T0, std::slice::from_ref(&notice)),
            Err(StoreError::NoTransition(_))
        ));
        let c = failover(&store, T0);
        let ids = store
            .enqueue_notice("ticket-submission", T0, &[notice])
            .unwrap();
        let rows = store.announcements(c.transition_id).unwrap();
        assert_eq!(rows.len(), 3);
        let flap = rows.iter().find(|r| r.id == ids[0]).unwrap();
        assert_eq!(flap.kind, "flapping");
        assert_eq!(
            flap.message_id,
            store.message_ids().for_transition(
                c.transition_id,
                "oncall.flapping",
                "email",
                "ticket-submission",
                T0
            )
        );
        assert!(flap
            .message_id
            .starts_with(&format!("<t{}.oncall_flapping.", c.transition_id)));
    }

    #[test]
    fn the_open_statuspage_incident_is_remembered_and_forgotten() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.statuspage_incident("svc").unwrap(), None);
        store
            .set_statuspage_incident("svc", Some("inc1"), T0)
            .unwrap();
        store
            .set_statuspage_incident("svc", Some("inc2"), T0)
            .unwrap();
        assert_eq!(
            store.statuspage_incident("svc").unwrap().as_deref(),
            Some("inc2")
        );
        store.set_statuspage_incident("svc", None, T0).unwrap();
        assert_eq!(store.statuspage_incident("svc").unwrap(), None);
    }

    #[test]
    fn ensure_service_inserts_operational_once_then_returns_the_stored_one() {
        let store = Store::open_in_memory().unwrap();
        let first = store.ensure_service("ticket-submission", T0).unwrap();
        assert_eq!(
            first,
            ServiceRecord {
                id: "ticket-submission".into(),
                state: State::Operational,
                since: T0,
                cause: "startup".into(),
                created_at: T0,
            }
        );
        let later = Timestamp(T0.0 + 60_000);
        assert_eq!(
            store.ensure_service("ticket-submission", later).unwrap(),
            first
        );
        assert_eq!(store.load_services().unwrap(), vec![first]);
    }

    #[test]
    fn holds_are_saved_replaced_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).expect("open");
            assert_eq!(store.holds("tickets").expect("read"), None);
            store
                .set_holds("tickets", "{\"flapping\":false}", T0)
                .expect("save");
            store
                .set_holds("tickets", "{\"flapping\":true}", T0)
                .expect("replace");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(
            store.holds("tickets").expect("read").as_deref(),
            Some("{\"flapping\":true}")
        );
    }

    #[test]
    fn state_and_outbox_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.db");
        let committed = {
            let store = Store::open(&path).unwrap();
            store.ensure_service("ticket-submission", T0).unwrap();
            failover(&store, Timestamp(T0.0 + 5_000))
        };

        let store = Store::open(&path).unwrap();
        let services = store.load_services().unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].state, State::FailedOver);
        assert_eq!(services[0].since, Timestamp(T0.0 + 5_000));
        assert_eq!(services[0].cause, "primary_down");
        assert_eq!(services[0].created_at, T0);
        // ensure_service after a restart keeps the stored state: nothing is re-announced.
        assert_eq!(
            store
                .ensure_service("ticket-submission", Timestamp(T0.0 + 9_000))
                .unwrap()
                .state,
            State::FailedOver
        );

        let history = store.transitions(Some("ticket-submission"), 10).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].id, committed.transition_id);
        assert_eq!(history[0].config_version, "cfg-v1");
        assert_eq!(
            history[0].transition,
            transition(
                "ticket-submission",
                State::Operational,
                State::FailedOver,
                Timestamp(T0.0 + 5_000)
            )
        );
        assert_eq!(
            store.outbox_backlog().unwrap(),
            (2, Some(Timestamp(T0.0 + 5_000)))
        );
    }

    #[test]
    fn a_failing_announcement_insert_rolls_back_the_whole_transition() {
        let store = Store::open_in_memory().unwrap();
        store.ensure_service("ticket-submission", T0).unwrap();
        let t = transition(
            "ticket-submission",
            State::Operational,
            State::FailedOver,
            Timestamp(T0.0 + 1),
        );
        // Two announcements to the same audience and channel violate the outbox's
        // uniqueness rule on the second insert, after the transition row was written.
        let err = store
            .commit_transition(
                &t,
                "cfg",
                &[announcement("customers"), announcement("customers")],
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)), "{err}");

        assert!(store.transitions(None, 10).unwrap().is_empty());
        assert_eq!(store.outbox_backlog().unwrap(), (0, None));
        let svc = store.service("ticket-submission").unwrap().unwrap();
        assert_eq!(svc.state, State::Operational);
        assert_eq!(svc.cause, "startup");
    }

    #[test]
    fn a_transition_from_a_state_the_service_is_not_in_is_refused() {
        let store = Store::open_in_memory().unwrap();
        store.ensure_service("ticket-submission", T0).unwrap();
        let t = transition(
            "ticket-submission",
            State::FailedOver,
            State::Operational,
            Timestamp(T0.0 + 1),
        );
        let err = store.commit_transition(&t, "cfg", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::StateMismatch {
                    stored: State::Operational,
                    from: State::FailedOver,
                    ..
                }
            ),
            "{err}"
        );
        assert!(store.transitions(None, 10).unwrap().is_empty());
    }

    #[test]
    fn a_drill_may_end_interrupted_and_older_drills_survive_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let row = crate::store::DrillRow {
            id: "d1".into(),
            service: "svc".into(),
            mode: "dry_run".into(),
            actor: "olga".into(),
            reason: "r".into(),
            ticket: None,
            started_at: T0,
            deadline: T0,
            ended_at: None,
            status: "running".into(),
            report: "{}".into(),
        };
        store.insert_drill(&row).unwrap();
        store
            .update_drill("d1", "interrupted", Some(T0), "{}")
            .unwrap();
        assert_eq!(store.drill("d1").unwrap().unwrap().status, "interrupted");
        assert!(store.update_drill("d1", "nonsense", None, "{}").is_err());
    }

    #[test]
    fn a_transition_for_an_unknown_service_creates_it() {
        let store = Store::open_in_memory().unwrap();
        failover(&store, T0);
        let svc = store.service("ticket-submission").unwrap().unwrap();
        assert_eq!(svc.state, State::FailedOver);
        assert_eq!(svc.created_at, T0);
    }

    #[test]
    fn message_ids_are_stable_and_unique_per_transition_and_audience() {
        let store = Store::open_in_memory().unwrap();
        let first = failover(&store, T0);
        let back = transition(
            "ticket-submission",
            State::FailedOver,
            State::Operational,
            Timestamp(T0.0 + 1_000),
        );
        let second = store
            .commit_transition(&back, "cfg-v1", &[announcement("customers")])
            .unwrap();

        let a = store.announcements(first.transition_id).unwrap();
        let b = store.announcements(second.transition_id).unwrap();
        let tid = first.transition_id;
        let inst = store.instance_id().to_owned();
        assert_eq!(inst.len(), 16, "a random 64-bit id in hex: {inst}");
        // T0 in base 36.
        let t0 = "loyw3v28";
        assert_eq!(
            a.iter().map(|i| i.message_id.as_str()).collect::<Vec<_>>(),
            vec![
                format!("<t{tid}.oncall.ticket-submission.{t0}.{inst}@switchboard.invalid>"),
                format!("<t{tid}.customers.ticket-submission.{t0}.{inst}@switchboard.invalid>"),
            ]
        );
        assert_ne!(a[1].message_id, b[0].message_id);
        // The id is a function of stored values: recomputing it gives the same value.
        assert_eq!(
            a[1].message_id,
            store
                .message_ids()
                .for_transition(tid, "customers", "email", "ticket-submission", T0)
        );
        store.set_message_id_domain("example.com");
        assert_eq!(
            store
                .message_ids()
                .for_transition(7, "oncall", "webhook", "a b", Timestamp(35)),
            format!("<t7.oncall.webhook.a_b.z.{inst}@example.com>")
        );
        // Another database: another instance id, so the same first transition gets another id.
        let other = Store::open_in_memory().unwrap();
        assert_ne!(other.instance_id(), inst);
        assert_eq!(a.iter().map(|i| i.id).collect::<Vec<_>>(), first.outbox_ids);
    }

    #[test]
    fn outbox_items_come_due_fail_with_backoff_and_deliver_once() {
        let store = Store::open_in_memory().unwrap();
        let c = failover(&store, T0);
        let due = store.due_announcements(T0, 10).unwrap();
        assert_eq!(due.len(), 2);
        let item = &due[0];
        assert_eq!(item.status, OutboxStatus::Pending);
        assert_eq!(item.attempts, 0);
        assert_eq!(item.service, "ticket-submission");
        assert_eq!(item.recipients, vec!["oncall@example.com".to_string()]);
        assert_eq!(item.html.as_deref(), Some("<p>html</p>"));
        assert_eq!(
            store.due_announcements(Timestamp(T0.0 - 1), 10).unwrap(),
            vec![]
        );
        assert_eq!(store.due_announcements(T0, 1).unwrap().len(), 1);

        let retry_at = Timestamp(T0.0 + 1_000);
        store
            .mark_failed(item.id, T0, "connection refused", retry_at)
            .unwrap();
        let failed = store.outbox_item(item.id).unwrap().unwrap();
        assert_eq!(failed.attempts, 1);
        assert_eq!(failed.status, OutboxStatus::Pending);
        assert_eq!(failed.next_attempt_at, retry_at);
        assert_eq!(failed.last_error.as_deref(), Some("connection refused"));
        // Not due again until its retry time.
        let due_ids = |now| -> Vec<i64> {
            store
                .due_announcements(now, 10)
                .unwrap()
                .iter()
                .map(|i| i.id)
                .collect()
        };
        assert_eq!(due_ids(T0), vec![c.outbox_ids[1]]);
        assert_eq!(due_ids(retry_at), vec![c.outbox_ids[1], c.outbox_ids[0]]);

        store.mark_delivered(item.id, retry_at, "250 OK").unwrap();
        // Marking again is harmless and changes nothing.
        store
            .mark_delivered(item.id, Timestamp(retry_at.0 + 5), "again")
            .unwrap();
        let done = store.outbox_item(item.id).unwrap().unwrap();
        assert_eq!(done.status, OutboxStatus::Delivered);
        assert_eq!(done.attempts, 2);
        assert_eq!(done.delivered_at, Some(retry_at));
        assert_eq!(done.detail.as_deref(), Some("250 OK"));
        assert_eq!(due_ids(Timestamp(i64::MAX)), vec![c.outbox_ids[1]]);
        assert_eq!(store.outbox_backlog().unwrap(), (1, Some(T0)));

        assert!(matches!(
            store.mark_delivered(9_999, T0, "x"),
            Err(StoreError::NoSuchOutboxItem(9_999))
        ));
        assert!(matches!(
            store.mark_failed(9_999, T0, "x", T0),
            Err(StoreError::NoSuchOutboxItem(9_999))
        ));
    }

    #[test]
    fn transitions_are_listed_newest_last_and_filtered_by_service() {
        let store = Store::open_in_memory().unwrap();
        for i in 0..3 {
            let (from, to) = if i % 2 == 0 {
                (State::Operational, State::FailedOver)
            } else {
                (State::FailedOver, State::Operational)
            };
            store
                .commit_transition(&transition("a", from, to, Timestamp(i)), "v", &[])
                .unwrap();
        }
        store
            .commit_transition(
                &transition("b", State::Operational, State::FailedOver, Timestamp(10)),
                "v",
                &[],
            )
            .unwrap();
        let all = store.transitions(None, 10).unwrap();
        assert_eq!(
            all.iter()
                .map(|r| r.transition.service.as_str())
                .collect::<Vec<_>>(),
            ["a", "a", "a", "b"]
        );
        let last_two_of_a = store.transitions(Some("a"), 2).unwrap();
        assert_eq!(
            last_two_of_a
                .iter()
                .map(|r| r.transition.at)
                .collect::<Vec<_>>(),
            [Timestamp(1), Timestamp(2)]
        );
    }

    fn audit_ctx() -> AuditContext {
        AuditContext {
            config_version: "cfg-v2".into(),
            node: "node-a".into(),
            routes_before: [("submit-ticket".to_owned(), "https://p".to_owned())].into(),
            routes_after: [("submit-ticket".to_owned(), "https://b".to_owned())].into(),
        }
    }

    fn records(store: &Store) -> Vec<AuditRecord> {
        store
            .audit_rows(None)
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn a_transition_writes_one_chained_audit_record_with_its_context() {
        let store = Store::open_in_memory().unwrap();
        let t = transition(
            "ticket-submission",
            State::Operational,
            State::FailedOver,
            T0,
        );
        let c = store
            .commit_transition(&t, audit_ctx(), &[announcement("oncall")])
            .unwrap();
        let back = transition(
            "ticket-submission",
            State::FailedOver,
            State::Operational,
            T0.plus(Duration::from_secs(60)),
        );
        store.commit_transition(&back, "cfg-v2", &[]).unwrap();

        let recs = records(&store);
        assert_eq!(recs.len(), 2);
        let r = &recs[0];
        assert_eq!(
            (r.id, r.kind.as_str(), r.transition_id, r.at),
            (1, "transition", Some(c.transition_id), T0)
        );
        assert_eq!(r.node, "node-a");
        assert_eq!(r.actor, "system");
        assert_eq!(r.service.as_deref(), Some("ticket-submission"));
        assert_eq!(
            (r.from.as_deref(), r.to.as_deref()),
            (Some("operational"), Some("failed_over"))
        );
        assert_eq!(r.cause.as_deref(), Some("primary_down"));
        assert_eq!(r.evidence, t.evidence);
        assert_eq!(r.routes_before, audit_ctx().routes_before);
        assert_eq!(r.routes_after, audit_ctx().routes_after);
        assert_eq!(r.config_version, "cfg-v2");
        assert_eq!(r.prev_hash, audit::GENESIS_HASH);
        assert_eq!(r.hash, r.compute_hash());
        assert_eq!(recs[1].prev_hash, r.hash);
        assert!(
            recs[1].routes_after.is_empty(),
            "a bare config version records no routes"
        );
        assert!(matches!(
            store.verify_audit().unwrap(),
            Verdict::Intact { records: 2, last_hash: Some(ref h) } if *h == recs[1].hash
        ));
    }

    #[test]
    fn a_rolled_back_transition_leaves_no_audit_record() {
        let store = Store::open_in_memory().unwrap();
        let t = transition(
            "ticket-submission",
            State::Operational,
            State::FailedOver,
            T0,
        );
        store
            .commit_transition(
                &t,
                audit_ctx(),
                &[announcement("customers"), announcement("customers")],
            )
            .unwrap_err();
        assert!(records(&store).is_empty());
        // The id of the rolled-back record is not "issued": the next one is still 1.
        store.commit_transition(&t, audit_ctx(), &[]).unwrap();
        assert_eq!(records(&store)[0].id, 1);
        assert!(matches!(
            store.verify_audit().unwrap(),
            Verdict::Intact { records: 1, .. }
        ));
    }

    #[test]
    fn operator_actions_join_the_same_chain() {
        let store = Store::open_in_memory().unwrap();
        failover(&store, T0);
        let rec = store
            .append_audit(&NewAuditRecord {
                kind: audit::KIND_OPERATOR_ACTION.into(),
                at: T0.plus(Duration::from_secs(1)),
                actor: "alice".into(),
                service: Some("ticket-submission".into()),
                reason: "pin to backup during vendor maintenance".into(),
                config_version: "cfg-v1".into(),
                node: "node-a".into(),
                detail: serde_json::json!({"command": "pin", "side": "backup"}),
            })
            .unwrap();
        assert_eq!(rec.id, 2);
        assert_eq!(rec.prev_hash, records(&store)[0].hash);
        assert_eq!(records(&store)[1], rec);
        assert!(matches!(
            store.verify_audit().unwrap(),
            Verdict::Intact { records: 2, .. }
        ));
    }

    #[test]
    fn audit_rows_cannot_be_updated_or_deleted_through_sql_by_accident() {
        let store = Store::open_in_memory().unwrap();
        failover(&store, T0);
        let conn = store.conn();
        for sql in ["UPDATE audit SET reason = 'x'", "DELETE FROM audit"] {
            let err = conn.execute(sql, []).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
    }

    #[test]
    fn migrating_a_version_1_database_backfills_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            // A database as the previous release left it: schema 1 with one transition.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0].1).unwrap();
            conn.execute_batch("PRAGMA user_version = 1").unwrap();
            conn.execute(
                "INSERT INTO transitions (service, from_state, to_state, cause, actor, reason, at_ms, evidence, config_version)
                 VALUES ('s', 'operational', 'failed_over', 'primary_down', 'system', 'r', 5, '[\"e\"]', 'v1')",
                [],
            )
            .unwrap();
        }
        assert!(matches!(
            Store::open_read_only(&path).unwrap_err(),
            StoreError::NoAuditLog { found: 1 }
        ));
        let store = Store::open(&path).unwrap();
        let recs = records(&store);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].transition_id, Some(1));
        assert_eq!(recs[0].evidence, vec!["e".to_string()]);
        assert_eq!(recs[0].detail, serde_json::json!({"backfilled": true}));
        assert!(matches!(
            store.verify_audit().unwrap(),
            Verdict::Intact { records: 1, .. }
        ));
        drop(store);
        let ro = Store::open_read_only(&path).unwrap();
        assert!(matches!(
            ro.verify_audit().unwrap(),
            Verdict::Intact { records: 1, .. }
        ));
    }

    #[test]
    fn a_removed_database_file_fails_the_commit_instead_of_writing_into_the_void() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/switchboard.db");
        let store = Store::open(&path).unwrap();
        store.ensure_service("ticket-submission", T0).unwrap();
        std::fs::remove_dir_all(dir.path().join("var")).unwrap();
        let t = transition(
            "ticket-submission",
            State::Operational,
            State::FailedOver,
            T0,
        );
        let err = store.commit_transition(&t, audit_ctx(), &[]).unwrap_err();
        assert!(matches!(err, StoreError::FileGone { .. }), "{err}");
        assert!(err.to_string().contains("is gone"), "{err}");
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }
}
