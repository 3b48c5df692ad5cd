//! The configuration history: every configuration version loaded, with its files byte for byte, and each load's result (migration 11).
//!
//! A version's content is kept once (`config_versions`), its loads as rows beside it
//! (`config_loads`: applied at start, applied by a reload, or rejected with the loader's
//! diagnostics). The rows are not chained themselves; they are tamper-evident because the
//! version *is* the SHA-256 of the files in load order (`config::ConfigFiles`) and the chained
//! audit records name the version in force: `check` recomputes every stored version from its
//! files, so an edited file no longer matches the version the ledger names.
//!
//! Secrets are not in configuration files by design (they are environment variables or files
//! named by the configuration, kept as references). The one exception the configuration
//! allows, `[chat] webhook_url`, is blanked out before storing, and the version says so
//! (`redacted`); such a version cannot be recomputed, which `check` reports as a limit, not as
//! tampering.

use super::{Store, StoreError};
use crate::audit::{Problem, Tamper};
use crate::clock::Timestamp;
use crate::config::ConfigFiles;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Whether a load put the configuration in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadResult {
    Applied,
    Rejected,
}

impl LoadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadResult::Applied => "applied",
            LoadResult::Rejected => "rejected",
        }
    }
}

/// One load to record: which files, when, why, by whom, and what came of it.
#[derive(Clone, Debug)]
pub struct ConfigLoad<'a> {
    pub files: &'a ConfigFiles,
    /// `Config::version` (or, for a rejected load, the SHA-256 of the files it read).
    pub version: &'a str,
    pub at: Timestamp,
    /// `start` or `reload`.
    pub trigger: &'a str,
    pub actor: &'a str,
    pub result: LoadResult,
    /// The loader's diagnostics when rejected; warnings when applied.
    pub diagnostics: &'a [String],
    /// The audit record of this load, if one was written.
    pub audit_id: Option<i64>,
    /// Secret values that appear in the files, each with what it is (`[chat] webhook_url`):
    /// blanked out before storing.
    pub secrets: &'a [(String, &'static str)],
}

/// A stored load of a version.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredLoad {
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
    pub trigger: String,
    pub actor: String,
    pub result: String,
    pub diagnostics: Vec<String>,
    pub audit_id: Option<i64>,
}

/// A stored configuration version: its files in load order and its loads.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredConfig {
    pub version: String,
    #[serde(serialize_with = "rfc3339")]
    pub first_seen_at: Timestamp,
    /// Each distinct file, in the order first read: path, SHA-256 of the bytes read, text as
    /// stored.
    pub files: Vec<StoredFile>,
    pub redacted: Vec<String>,
    pub loads: Vec<StoredLoad>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredFile {
    pub path: PathBuf,
    pub sha256: String,
    pub text: String,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.rfc3339())
}

/// Why `config_version` found nothing to print.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLookupError {
    #[error("no configuration version {0} is stored")]
    NotFound(String),
    #[error("{prefix} names {n} stored versions; give more of it")]
    Ambiguous { prefix: String, n: usize },
    #[error(
        "the database predates the configuration history (schema version {0}); nothing is stored"
    )]
    NoHistory(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn json_err(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |source| StoreError::Json { what, source }
}

/// The table's text of one file: UTF-8 as text, other bytes as `{"base64": ...}`.
fn stored_text(bytes: &[u8], secrets: &[(String, &'static str)]) -> (serde_json::Value, bool) {
    use base64::Engine;
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let mut out = text.to_owned();
            let mut redacted = false;
            for (secret, what) in secrets.iter().filter(|(s, _)| !s.is_empty()) {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), &format!("<redacted: {what}>"));
                    redacted = true;
                }
            }
            (serde_json::Value::String(out), redacted)
        }
        Err(_) => (
            serde_json::json!({
                "base64": base64::engine::general_purpose::STANDARD.encode(bytes)
            }),
            false,
        ),
    }
}

impl From<rusqlite::Error> for ConfigLookupError {
    fn from(e: rusqlite::Error) -> Self {
        ConfigLookupError::Store(e.into())
    }
}

impl Store {
    /// Records one load: the version's files (once per version) and the load's result.
    pub fn record_config_load(&self, load: &ConfigLoad<'_>) -> Result<(), StoreError> {
        self.check_file()?;
        let mut conn = self.conn();
        // `begin`: a savepoint inside the cluster writer's outer transaction, else IMMEDIATE.
        let tx = super::open::begin(&mut conn)?;
        let known: bool = tx
            .query_row(
                "SELECT 1 FROM config_versions WHERE version = ?1",
                [load.version],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if !known {
            let reads: Vec<serde_json::Value> = load
                .files
                .reads
                .iter()
                .map(|r| serde_json::json!({"path": r.path, "sha256": r.sha256}))
                .collect();
            let mut contents = serde_json::Map::new();
            let mut redacted = Vec::new();
            for (sha, bytes) in &load.files.contents {
                let (text, blanked) = stored_text(bytes, load.secrets);
                if blanked {
                    for r in load.files.reads.iter().filter(|r| &r.sha256 == sha) {
                        for (s, what) in load.secrets {
                            if std::str::from_utf8(bytes).is_ok_and(|t| t.contains(s.as_str())) {
                                redacted.push(format!("{what} in {}", r.path.display()));
                            }
                        }
                    }
                }
                contents.insert(sha.clone(), text);
            }
            redacted.dedup();
            tx.execute(
                "INSERT INTO config_versions (version, first_seen_at_ms, files, contents, redacted)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    load.version,
                    load.at.as_millis(),
                    serde_json::to_string(&reads).map_err(json_err("config files"))?,
                    serde_json::to_string(&contents).map_err(json_err("config contents"))?,
                    serde_json::to_string(&redacted).map_err(json_err("config redacted"))?,
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO config_loads (version, at_ms, trigger, actor, result, diagnostics, audit_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                load.version,
                load.at.as_millis(),
                load.trigger,
                load.actor,
                load.result.as_str(),
                serde_json::to_string(load.diagnostics).map_err(json_err("config diagnostics"))?,
                load.audit_id,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every stored version, oldest first (files included).
    pub fn config_versions(&self) -> Result<Vec<StoredConfig>, ConfigLookupError> {
        let conn = self.conn();
        has_history(&conn)?;
        let versions: Vec<String> = {
            let mut stmt = conn.prepare(
                "SELECT version FROM config_versions ORDER BY first_seen_at_ms, version",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        versions
            .iter()
            .map(|v| read_version(&conn, v).map_err(ConfigLookupError::from))
            .collect()
    }

    /// The stored version named by `prefix` (at least 4 hex characters of it).
    pub fn config_version(&self, prefix: &str) -> Result<StoredConfig, ConfigLookupError> {
        let conn = self.conn();
        has_history(&conn)?;
        let like = format!("{}%", prefix.replace(['%', '_'], ""));
        let matches: Vec<String> = {
            let mut stmt =
                conn.prepare("SELECT version FROM config_versions WHERE version LIKE ?1")?;
            let rows = stmt.query_map([&like], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        match matches.as_slice() {
            [one] if prefix.len() >= 4 => Ok(read_version(&conn, one)?),
            [] | [_] => Err(ConfigLookupError::NotFound(prefix.to_owned())),
            many => Err(ConfigLookupError::Ambiguous {
                prefix: prefix.to_owned(),
                n: many.len(),
            }),
        }
    }
}

/// Refuses a database without the configuration history (schema before 11).
fn has_history(conn: &Connection) -> Result<(), ConfigLookupError> {
    let exists: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'config_versions'",
            [],
            |r| r.get(0),
        )
        .map_err(StoreError::from)?;
    if exists {
        Ok(())
    } else {
        let v = super::open::user_version(conn).map_err(StoreError::from)?;
        Err(ConfigLookupError::NoHistory(v))
    }
}

struct Raw {
    version: String,
    first_seen: i64,
    files: String,
    contents: String,
    redacted: String,
}

fn raw_version(conn: &Connection, version: &str) -> Result<Raw, StoreError> {
    Ok(conn.query_row(
        "SELECT version, first_seen_at_ms, files, contents, redacted FROM config_versions
         WHERE version = ?1",
        [version],
        |r| {
            Ok(Raw {
                version: r.get(0)?,
                first_seen: r.get(1)?,
                files: r.get(2)?,
                contents: r.get(3)?,
                redacted: r.get(4)?,
            })
        },
    )?)
}

#[derive(serde::Deserialize)]
struct Read {
    path: PathBuf,
    sha256: String,
}

/// A stored file's bytes from its `contents` entry.
fn bytes_of(v: &serde_json::Value) -> Option<Vec<u8>> {
    use base64::Engine;
    match v {
        serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
        serde_json::Value::Object(m) => base64::engine::general_purpose::STANDARD
            .decode(m.get("base64")?.as_str()?)
            .ok(),
        _ => None,
    }
}

fn read_version(conn: &Connection, version: &str) -> Result<StoredConfig, StoreError> {
    let raw = raw_version(conn, version)?;
    let reads: Vec<Read> = serde_json::from_str(&raw.files).map_err(json_err("config files"))?;
    let contents: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&raw.contents).map_err(json_err("config contents"))?;
    let redacted: Vec<String> =
        serde_json::from_str(&raw.redacted).map_err(json_err("config redacted"))?;
    let mut seen = std::collections::HashSet::new();
    let files = reads
        .into_iter()
        .filter(|r| seen.insert((r.path.clone(), r.sha256.clone())))
        .map(|r| {
            let text = contents
                .get(&r.sha256)
                .and_then(bytes_of)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            StoredFile {
                path: r.path,
                sha256: r.sha256,
                text,
            }
        })
        .collect();
    let mut stmt = conn.prepare(
        "SELECT at_ms, trigger, actor, result, diagnostics, audit_id FROM config_loads
         WHERE version = ?1 ORDER BY id",
    )?;
    let loads = stmt
        .query_map([version], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(at, trigger, actor, result, diagnostics, audit_id)| {
            Ok(StoredLoad {
                at: Timestamp::from_millis(at),
                trigger,
                actor,
                result,
                diagnostics: serde_json::from_str(&diagnostics)
                    .map_err(json_err("config diagnostics"))?,
                audit_id,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(StoredConfig {
        version: raw.version,
        first_seen_at: Timestamp::from_millis(raw.first_seen),
        files,
        redacted,
        loads,
    })
}

/// The first stored version whose files no longer hash to it (`audit verify`), skipping
/// versions stored with a secret blanked out. `None` when all agree or the database has no
/// configuration history.
pub(super) fn check(conn: &Connection) -> Result<Option<Problem>, StoreError> {
    if has_history(conn).is_err() {
        return Ok(None);
    }
    let versions: Vec<String> = {
        let mut stmt =
            conn.prepare("SELECT version FROM config_versions ORDER BY first_seen_at_ms")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for v in versions {
        let raw = raw_version(conn, &v)?;
        let problem = |message: String| {
            Some(Problem {
                tamper: Tamper::ConfigEdited,
                id: 0,
                message: format!("configuration version {v}: {message}"),
            })
        };
        let redacted: Vec<String> = serde_json::from_str(&raw.redacted).unwrap_or_default();
        if !redacted.is_empty() {
            continue;
        }
        let (Ok(reads), Ok(contents)) = (
            serde_json::from_str::<Vec<Read>>(&raw.files),
            serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&raw.contents),
        ) else {
            return Ok(problem(
                "its stored files are not valid JSON: the row was edited".into(),
            ));
        };
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        for r in &reads {
            let Some(bytes) = contents.get(&r.sha256).and_then(bytes_of) else {
                return Ok(problem(format!(
                    "the content of {} is missing: the row was edited",
                    r.path.display()
                )));
            };
            sha2::Digest::update(&mut h, &bytes);
        }
        let computed = hex::encode(sha2::Digest::finalize(h));
        if computed != v {
            return Ok(problem(format!(
                "its stored files hash to {}…, not to the version: a stored file was edited",
                &computed[..12]
            )));
        }
    }
    // Once the history starts, every version a transition names must be stored: the daemon
    // records the configuration it runs before it decides anything, so a version missing
    // was removed or renamed. (Other records may name a version that was never in force:
    // `switchboard token new` audits with the files as they are on disk.)
    let orphan: Option<(i64, String)> = conn
        .query_row(
            "SELECT a.id, a.config_version FROM audit a
             WHERE a.kind = 'transition'
               AND a.at_ms >= (SELECT MIN(first_seen_at_ms) FROM config_versions)
               AND a.config_version NOT IN (SELECT version FROM config_versions)
             ORDER BY a.id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(orphan.map(|(id, v)| Problem {
        tamper: Tamper::ConfigEdited,
        id,
        message: format!(
            "record {id} names configuration version {v}, which is not in the configuration history: the stored version was removed or renamed"
        ),
    }))
}
