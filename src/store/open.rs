//! Opening the SQLite store: WAL, synchronous=FULL, numbered migrations, and the guard against a database file deleted underneath.
//!
//! Why these settings: WAL lets readers (the HTTP side, inspection) run beside the single
//! writer, and `synchronous=FULL` makes a committed transition survive power loss, not just
//! a process crash: a failover decision that was announced must still be on disk after reboot.

use super::audit_log;
use super::{MessageIds, StoreError};
use crate::incident::ServiceWords;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Numbered migrations, applied in order; `PRAGMA user_version` records the last one applied.
/// Append only: an applied migration is never edited, a change is a new file.
pub(super) const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_audit.sql")),
    (3, include_str!("migrations/0003_holds.sql")),
    (4, include_str!("migrations/0004_control.sql")),
    (5, include_str!("migrations/0005_incidents_history.sql")),
    (6, include_str!("migrations/0006_outbox.sql")),
    (7, include_str!("migrations/0007_announce_groups.sql")),
    (8, include_str!("migrations/0008_public_message.sql")),
    (9, include_str!("migrations/0009_drill_interrupted.sql")),
    // 10 is left to work landing beside this one: versions need only grow.
    (
        11,
        include_str!("migrations/0011_audit_keys_config_history.sql"),
    ),
    (12, include_str!("migrations/0012_chat_threads.sql")),
    (13, include_str!("migrations/0013_zendesk_articles.sql")),
];

/// The first schema version with the audit log; `audit verify` refuses older files.
pub(super) const AUDIT_SCHEMA: u32 = 2;

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
    /// This database's random instance id (migration 7), read once at open; in cluster mode
    /// replaced by the cluster's (`set_instance_id`), so every node names a message alike.
    instance: RwLock<String>,
    /// Rows changed since the writer's outer transaction began (cluster mode, `replica.rs`).
    pub(super) touched: std::sync::OnceLock<Arc<Mutex<super::replica::Touched>>>,
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
            // Kept so a long-lived reader can tell that the file was replaced (`check_file`);
            // a read-only store never writes, so the guard's main use does not arise.
            file: FileIdentity::of(path).ok(),
            words: RwLock::default(),
            instance: RwLock::new(instance),
            touched: std::sync::OnceLock::new(),
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
        // The sealing functions exist before any record can be appended (migration 2's
        // backfill appends); without a key they seal nothing.
        audit_log::bind_key(&conn, None)?;
        migrate(&mut conn)?;
        let instance = read_instance(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            file,
            words: RwLock::default(),
            instance: RwLock::new(instance),
            touched: std::sync::OnceLock::new(),
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
    pub fn instance_id(&self) -> String {
        self.instance
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Names this database's messages with `id` from now on (cluster mode: the cluster's id,
    /// the same on every node, so a message resent by a new leader keeps its Message-ID).
    pub fn set_instance_id(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("UPDATE instance SET instance_id = ?1 WHERE id = 1", [id])?;
        *self
            .instance
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = id.to_owned();
        Ok(())
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
            instance: self.instance_id(),
            domain: self
                .id_domain
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }

    /// Seals every audit record appended from now on with `key` (`[audit] key_file`).
    pub fn set_audit_key(&self, key: Option<crate::config::AuditKey>) -> Result<(), StoreError> {
        audit_log::bind_key(&self.conn(), key)
    }

    /// The schema version in force (the last migration applied).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(user_version(&self.conn())?)
    }
}

/// The random instance id migration 7 created.
fn read_instance(conn: &Connection) -> Result<String, rusqlite::Error> {
    conn.query_row("SELECT instance_id FROM instance WHERE id = 1", [], |r| {
        r.get(0)
    })
}

pub(super) fn user_version(conn: &Connection) -> Result<u32, rusqlite::Error> {
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

/// A write transaction: `BEGIN IMMEDIATE` when none is open, else a savepoint inside the one
/// that is. In cluster mode the store's writer opens an outer transaction around each job so
/// that the job's changes reach etcd before they are committed here (`replica.rs`); every
/// `Store` method that writes starts its transaction through `begin`, so it works both ways.
pub(crate) enum Tx<'c> {
    Top(rusqlite::Transaction<'c>),
    Nested(rusqlite::Savepoint<'c>),
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Tx::Top(t) => t,
            Tx::Nested(s) => s,
        }
    }
}

impl Tx<'_> {
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        match self {
            Tx::Top(t) => t.commit(),
            Tx::Nested(s) => s.commit(),
        }
    }
}

/// Starts a write transaction (see `Tx`). IMMEDIATE takes the write lock up front, so a
/// check-then-write inside it cannot race another writer.
pub(crate) fn begin(conn: &mut Connection) -> rusqlite::Result<Tx<'_>> {
    if conn.is_autocommit() {
        conn.transaction_with_behavior(TransactionBehavior::Immediate)
            .map(Tx::Top)
    } else {
        conn.savepoint().map(Tx::Nested)
    }
}
