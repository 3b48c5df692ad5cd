//! The spill file: transitions the store refused (disk full, database locked) written out at
//! shutdown, and replayed into the store at the next start before anything else runs.
//!
//! While the daemon runs, a transition whose commit fails waits in memory with everything its
//! commit writes (`Pending`) and is retried. A stopping daemon retries for `[storage]
//! shutdown_grace`; what still waits then is written here as JSON lines, one `Pending` per
//! line, in the order the store must see them. The file is written to a temporary name,
//! fsynced, renamed into place and its directory fsynced, so a reader finds either the whole
//! file or none.
//!
//! Where: beside the database first (the place the daemon is known to own, that survives a
//! reboot and that backups and operators already look at). That is the file system that just
//! ran out of space, though, so when it refuses, `[storage] spill_dir` is tried (an operator
//! points it at another file system) and then the system temp directory, the one place a
//! process can nearly always write. Under systemd's `PrivateTmp` the temp directory goes away
//! with the service, so it is a last resort, not a plan: the runbook says to set `spill_dir`.
//! Outside the database's directory the file name carries a hash of the database's path, so
//! two daemons sharing a temp directory never read each other's spill.
//!
//! Replay is idempotent: a transition already in the store (same service, time, states and
//! reason) is skipped, so a replay interrupted half-way, or a file left behind because it
//! could not be deleted, never records a transition twice.

use super::{NewAnnouncement, NewPart, Store, StoreError};
use crate::audit::AuditContext;
use crate::failover::Transition;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A transition the store has not taken yet, with everything its commit writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub t: Transition,
    pub audit: AuditContext,
    pub announcements: Vec<NewAnnouncement>,
    /// E-mail waiting for its group (`announce::group`), written in the same transaction.
    pub parts: Vec<NewPart>,
}

/// Why spilled transitions could not be replayed; the daemon does not start, because
/// anything it recorded first would reach the store out of order.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("cannot read the spill file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a spilled transition: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}:{line}: the store refused the spilled transition ({source}); it stays in the file, free space (or see runbooks/store-pending-transitions.md) and start again")]
    Store {
        path: PathBuf,
        line: usize,
        #[source]
        source: StoreError,
    },
    #[error("recorded the spilled transitions but cannot delete {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the spill file of the database at `db` may be, in the order they are tried:
/// beside the database, in `spill_dir`, in the system temp directory.
pub fn spill_paths(db: &Path, spill_dir: Option<&Path>) -> Vec<PathBuf> {
    let name = db.file_name().map_or_else(
        || "switchboard.db".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
    // The database's absolute path names it among other daemons' spills in a shared directory.
    let absolute = dir
        .and_then(|d| d.canonicalize().ok())
        .map_or_else(|| db.to_path_buf(), |d| d.join(&name));
    let hash = Sha256::digest(absolute.to_string_lossy().as_bytes());
    let tag: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let elsewhere = format!("{name}-{tag}.spill.jsonl");
    let mut paths = vec![dir
        .unwrap_or_else(|| Path::new("."))
        .join(format!("{name}.spill.jsonl"))];
    if let Some(d) = spill_dir {
        paths.push(d.join(&elsewhere));
    }
    paths.push(std::env::temp_dir().join(elsewhere));
    paths.dedup();
    paths
}

/// Writes `pending` to the first of `paths` that takes it whole (after whatever an earlier
/// spill left there, so nothing is overwritten). Returns the path written, or every place
/// tried with its error.
pub fn write_spill(
    paths: &[PathBuf],
    pending: &[Pending],
) -> Result<PathBuf, Vec<(PathBuf, std::io::Error)>> {
    let mut body = String::new();
    for p in pending {
        // A `Pending` is plain data (strings, numbers, maps with string keys): it always encodes.
        body.push_str(&serde_json::to_string(p).unwrap_or_default());
        body.push('\n');
    }
    let mut failures = Vec::new();
    for path in paths {
        match write_atomically(path, &body) {
            Ok(()) => return Ok(path.clone()),
            Err(e) => failures.push((path.clone(), e)),
        }
    }
    Err(failures)
}

/// Temporary name, write, fsync, rename, fsync the directory; the temporary file is removed
/// when any step fails, so a full disk is not left fuller.
fn write_atomically(path: &Path, body: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let previous = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let tmp = path.with_extension("jsonl.tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(previous.as_bytes())?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Reads a spill file; `Ok(None)` when there is none.
pub fn read_spill(path: &Path) -> Result<Option<Vec<Pending>>, SpillError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // No file, or no directory to hold one (a `TMPDIR` that is not a directory).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(source) => {
            return Err(SpillError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line).map_err(|source| SpillError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?,
        );
    }
    Ok(Some(out))
}

/// What a replay did with one spill file.
#[derive(Clone, Debug, PartialEq)]
pub struct Replayed {
    pub path: PathBuf,
    /// Transitions recorded now.
    pub recorded: usize,
    /// Transitions the store already had (an earlier replay got that far).
    pub already: usize,
    /// Announcements (outbox rows and waiting parts) recorded with them.
    pub announcements: usize,
}

impl Store {
    /// Records every spilled transition found at `paths`, in file order, each with its
    /// announcements in its own transaction, then deletes the file. Stops at the first error,
    /// leaving the file for the next start.
    pub fn replay_spills(&self, paths: &[PathBuf]) -> Result<Vec<Replayed>, SpillError> {
        let mut done = Vec::new();
        for path in paths {
            let Some(pending) = read_spill(path)? else {
                continue;
            };
            let mut r = Replayed {
                path: path.clone(),
                recorded: 0,
                already: 0,
                announcements: 0,
            };
            for (i, p) in pending.iter().enumerate() {
                let err = |source| SpillError::Store {
                    path: path.clone(),
                    line: i + 1,
                    source,
                };
                if self.has_transition(&p.t).map_err(err)? {
                    r.already += 1;
                    continue;
                }
                self.commit_transition_with(&p.t, p.audit.clone(), &p.announcements, &p.parts)
                    .map_err(err)?;
                r.recorded += 1;
                r.announcements += p.announcements.len() + p.parts.len();
            }
            std::fs::remove_file(path).map_err(|source| SpillError::Remove {
                path: path.clone(),
                source,
            })?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            done.push(r);
        }
        Ok(done)
    }

    /// Whether this very transition (service, time, states, reason) is already recorded.
    fn has_transition(&self, t: &Transition) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT id FROM transitions
                 WHERE service = ?1 AND at_ms = ?2 AND from_state = ?3 AND to_state = ?4
                   AND reason = ?5
                 LIMIT 1",
                params![
                    t.service,
                    t.at.as_millis(),
                    t.from.as_str(),
                    t.to.as_str(),
                    t.reason
                ],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::failover::{Cause, State};

    fn pending(at: i64) -> Pending {
        Pending {
            t: Transition {
                service: "ticket-submission".into(),
                from: State::Operational,
                to: State::FailedOver,
                cause: Cause::PrimaryDown,
                at: Timestamp::from_millis(at),
                actor: "system".into(),
                reason: "portal-form down".into(),
                evidence: vec!["portal-form: down".into()],
                public_message: None,
            },
            audit: AuditContext::from("v1"),
            announcements: vec![NewAnnouncement {
                audience: "oncall".into(),
                channel: "email".into(),
                kind: "failover".into(),
                recipients: vec!["oncall@example.com".into()],
                subject: "failed over".into(),
                text: "body".into(),
                html: None,
            }],
            parts: Vec::new(),
        }
    }

    #[test]
    fn a_spill_is_replayed_once_and_then_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("switchboard.db");
        let store = Store::open(&db).expect("open");
        store
            .ensure_service("ticket-submission", Timestamp::from_millis(1))
            .expect("ensure");
        let paths = spill_paths(&db, None);
        let written = write_spill(&paths, &[pending(1_000)]).expect("spill");
        assert_eq!(written, dir.path().join("switchboard.db.spill.jsonl"));

        let replayed = store.replay_spills(&paths).expect("replay");
        assert_eq!(replayed.len(), 1);
        assert_eq!((replayed[0].recorded, replayed[0].announcements), (1, 1));
        assert!(!written.exists(), "the file is deleted once recorded");
        // A file that reappears (deletion lost in a crash) records nothing twice.
        write_spill(&paths, &[pending(1_000)]).expect("spill again");
        let again = store.replay_spills(&paths).expect("replay again");
        assert_eq!((again[0].recorded, again[0].already), (0, 1));
        assert!(store.replay_spills(&paths).expect("nothing").is_empty());
    }

    #[test]
    fn a_spill_falls_back_when_the_database_directory_refuses_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A regular file where the directory should be: nothing can be created under it.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, "").expect("file");
        let spill_dir = dir.path().join("spill");
        let paths = spill_paths(&blocked.join("switchboard.db"), Some(&spill_dir));
        assert_eq!(paths.len(), 3);
        let written = write_spill(&paths, &[pending(1), pending(2)]).expect("spill");
        assert_eq!(written, paths[1]);
        assert!(written.starts_with(&spill_dir));
        let back = read_spill(&written).expect("read").expect("present");
        assert_eq!(back, vec![pending(1), pending(2)]);
    }

    #[test]
    fn every_refused_place_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, "").expect("file");
        let paths = vec![blocked.join("a.spill.jsonl"), blocked.join("b.spill.jsonl")];
        let failures = write_spill(&paths, &[pending(1)]).expect_err("nowhere to write");
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0].0, paths[0]);
    }
}
