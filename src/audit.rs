//! The tamper-evident audit log: record shape, hash chain, verification and export (pure; the store persists it).
//!
//! # Why a separate, general `audit` table
//!
//! Every change of state is written twice in the same SQLite transaction: once to
//! `transitions` (the operational history that the status page, the outbox and the API read)
//! and once to `audit`, the append-only ledger for auditors. The ledger is general: each
//! record has a `kind` (`transition` today; operator actions such as pins, tokens and drill
//! commands follow in issue 6 as kind `operator_action` through `Store::append_audit`), so
//! one chain covers everything an auditor asks about, whether or not it changed a state.
//! Keeping the ledger self-contained (it copies the transition's fields instead of pointing
//! at them) means it can be verified and exported on its own; `verify` additionally checks
//! that every `transitions` row still equals its audit record, so editing either table is
//! caught.
//!
//! # How the chain is computed
//!
//! Each record's `hash` is the lowercase hex SHA-256 of its *canonical JSON*: the record as
//! `audit export --format jsonl` prints it, without the `hash` field, with object keys sorted
//! at every level, no whitespace, non-ASCII characters unescaped — exactly what Python's
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` produces, so
//! an auditor can re-check an export with a few lines of their own code. `prev_hash` (part of
//! the hashed fields) is the previous record's `hash`, or 64 zeros for the first record. The
//! record's `id` is hashed too, so a record moved to another position no longer verifies.
//! The store computes the hash inside the transaction that inserts the record, after taking
//! the write lock, so two writers can never chain onto the same predecessor.
//!
//! A chain alone cannot tell that its newest records were cut off; SQLite's
//! `sqlite_sequence` (the highest id ever handed out) catches a truncated tail, and the last
//! hash that `verify` prints is the anchor to keep outside the database against an attacker
//! who rewrites the whole file.
//!
//! # Keys and anchors
//!
//! Hashes alone do not stop someone with the database file: they can rewrite every row and
//! recompute every hash (the recipe above is public). With `[audit] key_file`, each record
//! also carries `mac` = HMAC-SHA-256(key, `hash`) and `key_id` (which key), outside the hashed
//! fields so unkeyed chains hash as before. The hash covers `prev_hash`, so a valid MAC on a
//! record vouches for the chain up to it; a recomputation without the key fails at the first
//! rewritten record. Records written before a key was configured stay unkeyed; the first
//! keyed record (an `audit_key` record the daemon writes when it starts with a new key) is
//! where `verify_with` says the keyed part starts, and from there on a record without a MAC
//! is reported as stripped. What a key cannot show (a cut-off tail, a rewrite of the unkeyed
//! part) the anchors show: the head's id and hash written outside the database (log lines,
//! on-call e-mail, metrics, an anchor file), which `verify_with` compares with the chain.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

pub mod diff;
mod export;
pub mod tar;

pub use export::{
    bundle, export, parse_since, Bundle, BundleConfig, Format, SinceError, BUNDLE_DIR, CSV_COLUMNS,
    RECORD_SCHEMA,
};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `kind` of a record written for a failover state transition.
pub const KIND_TRANSITION: &str = "transition";
/// `kind` of a record written for an operator action that is not itself a transition.
pub const KIND_OPERATOR_ACTION: &str = "operator_action";
/// `kind` of a record proving an announcement was taken by its receiver (issue 16): the
/// SMTP server's reply and the Message-ID, the HTTP status, the Statuspage incident id.
/// Written in the transaction that marks the outbox row delivered.
pub const KIND_ANNOUNCEMENT_DELIVERED: &str = "announcement_delivered";
/// `kind` of a record saying an announcement was given up, with its last error. Written in
/// the transaction that marks the outbox row given up.
pub const KIND_ANNOUNCEMENT_GIVEN_UP: &str = "announcement_given_up";
/// `kind` of the record a daemon with a new `[audit] key_file` writes first: the keyed part
/// of the chain starts with it.
pub const KIND_AUDIT_KEY: &str = "audit_key";
/// `kind` of a configuration reload that was refused (SIGHUP or `POST /-/reload` with an
/// invalid configuration), with the loader's diagnostics.
pub const KIND_CONFIG_REJECTED: &str = "config_rejected";

/// What the shell knows about a transition that the pure core does not: passed to
/// `Store::commit_transition` and written into the audit record.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditContext {
    /// Hash of the configuration in force (`Config::version`).
    pub config_version: String,
    /// Which node decided it (`cluster::Coordinator::node`).
    pub node: String,
    /// Route id -> the target customers were sent to before the transition.
    pub routes_before: BTreeMap<String, String>,
    /// Route id -> the target customers are sent to after it.
    pub routes_after: BTreeMap<String, String>,
    /// What the decision rests on (`failover::Action::Record`'s grounds): the checks'
    /// verdicts with outcome, vantage, time and streak, the window or hold that ended. Written
    /// as the record's `detail.grounds`; absent when empty, so records without it read and
    /// hash as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grounds: Vec<crate::failover::Ground>,
}

/// Only the config version is known (callers that predate the audit log, and store tests):
/// node and routes stay empty in the record rather than being guessed.
impl From<&str> for AuditContext {
    fn from(config_version: &str) -> AuditContext {
        AuditContext {
            config_version: config_version.to_owned(),
            ..AuditContext::default()
        }
    }
}

impl From<&String> for AuditContext {
    fn from(config_version: &String) -> AuditContext {
        AuditContext::from(config_version.as_str())
    }
}

impl From<&AuditContext> for AuditContext {
    fn from(ctx: &AuditContext) -> AuditContext {
        ctx.clone()
    }
}

/// An audit record that is not a transition (issue 6: operator actions), for `Store::append_audit`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditRecord {
    pub kind: String,
    pub at: Timestamp,
    pub actor: String,
    pub service: Option<String>,
    pub reason: String,
    pub config_version: String,
    pub node: String,
    /// Kind-specific fields (e.g. the command and its parameters), as a JSON object.
    pub detail: serde_json::Value,
}

/// One record of the log, field for field as exported. The declaration order is the export
/// order; the hash does not depend on it (keys are sorted for hashing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    pub kind: String,
    /// RFC 3339, UTC, milliseconds (stored as milliseconds since the epoch).
    #[serde(with = "rfc3339")]
    pub at: Timestamp,
    pub node: String,
    /// `system` for automatic transitions, else the operator's token name.
    pub actor: String,
    pub service: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub cause: Option<String>,
    pub reason: String,
    /// The outcome lines that caused it, with their errors.
    pub evidence: Vec<String>,
    pub routes_before: BTreeMap<String, String>,
    pub routes_after: BTreeMap<String, String>,
    pub config_version: String,
    /// The `transitions` row this record audits (kind `transition` only).
    pub transition_id: Option<i64>,
    /// Kind-specific fields; `{}` for transitions.
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
    /// Which key authenticated the record (`key_id`), absent on records written without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// HMAC-SHA-256 (hex) of `hash` under the audit key; absent without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl AuditRecord {
    /// The canonical JSON that `hash` is the SHA-256 of: every field but `hash`, `key_id`
    /// and `mac` (which are computed from the hash), keys sorted.
    pub fn canonical_json(&self) -> String {
        // Serialising a struct of strings, integers, maps and JSON values cannot fail; should
        // it ever, the record hashes as `null` and verification fails loudly, never silently.
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(m) = &mut v {
            m.remove("hash");
            m.remove("key_id");
            m.remove("mac");
        }
        let mut out = String::new();
        write_canonical(&v, &mut out);
        out
    }

    /// The hash this record should carry, from its other fields.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// Authenticates the record under `key`: its `key_id` and the MAC of its (final) hash.
    pub fn seal(&mut self, key: &[u8]) {
        self.key_id = Some(key_id(key));
        self.mac = Some(mac(key, &self.hash));
    }

    /// `record 5 (ticket-submission, 2026-11-28T17:38:41.123Z)`: how reports name a record.
    pub fn label(&self) -> String {
        label(self.id, self.service.as_deref(), Some(self.at))
    }
}

/// The MAC of a record: HMAC-SHA-256 under the audit key of its hash (the 64 lowercase hex
/// characters as ASCII), in lowercase hex. The hash covers `prev_hash`, so a record's MAC
/// vouches for every record before it; recomputing the chain without the key cannot produce
/// MACs that verify. Python: `hmac.new(key, hash.encode(), hashlib.sha256).hexdigest()`.
pub fn mac(key: &[u8], hash: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex::encode(ring::hmac::sign(&k, hash.as_bytes()).as_ref())
}

/// Whether `mac` is the MAC of `hash` under `key` (compared in constant time).
pub fn mac_matches(key: &[u8], hash: &str, mac: &str) -> bool {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex::decode(mac).is_ok_and(|tag| ring::hmac::verify(&k, hash.as_bytes(), &tag).is_ok())
}

/// A key's public name: the first 16 hex characters of HMAC-SHA-256 under the key of the
/// text `switchboard audit key id`. It tells which key authenticated a record and reveals
/// nothing of the key.
pub fn key_id(key: &[u8]) -> String {
    mac(key, "switchboard audit key id")[..16].to_owned()
}

fn label(id: i64, service: Option<&str>, at: Option<Timestamp>) -> String {
    let mut parts = Vec::new();
    if let Some(s) = service {
        parts.push(s.to_owned());
    }
    if let Some(at) = at {
        parts.push(at.rfc3339());
    }
    if parts.is_empty() {
        format!("record {id}")
    } else {
        format!("record {id} ({})", parts.join(", "))
    }
}

/// Sorted keys at every level, no whitespace; strings and numbers as serde_json writes them
/// (which is also how Python's `json.dumps(..., ensure_ascii=False)` writes them). Sorting is
/// done here rather than relied on from `serde_json::Map`, whose order depends on a feature flag.
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Canonical JSON of any value (used for the `detail` column, so it is stored as it is hashed).
pub fn canonical(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

mod rfc3339 {
    use crate::clock::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        let t = humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)?;
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(serde::de::Error::custom)?
            .as_millis();
        Ok(Timestamp(
            i64::try_from(ms).map_err(serde::de::Error::custom)?,
        ))
    }
}

/// A stored row that cannot even be read back as a record (a JSON column no longer parses):
/// only tampering produces one, so verification reports it as such.
#[derive(Clone, Debug, PartialEq)]
pub struct UnreadableRecord {
    pub id: i64,
    pub service: Option<String>,
    pub at: Timestamp,
    pub problem: String,
}

/// One row of the `audit` table as read back: a record, or why it could not be read.
pub type AuditRow = Result<AuditRecord, UnreadableRecord>;

/// A `transitions` row that no longer matches the ledger (found by `Store::audit_cross_check`).
#[derive(Clone, Debug, PartialEq)]
pub struct TransitionMismatch {
    pub transition_id: i64,
    pub service: String,
    pub at: Timestamp,
    pub problem: String,
}

/// What tampering a problem points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The record's fields no longer hash to its stored hash.
    Edited,
    /// Ids are missing: records were deleted.
    Deleted,
    /// The record does not chain onto its predecessor: something was deleted, inserted or
    /// reordered before it.
    Relinked,
    /// A stored JSON column no longer parses.
    Unreadable,
    /// The `transitions` table disagrees with the ledger.
    TransitionsEdited,
    /// A MAC is missing or does not verify with the key: the record was rewritten by someone
    /// without the key.
    Unauthenticated,
    /// The key given is not the one that authenticated the chain.
    WrongKey,
    /// The chain disagrees with a head anchored outside the database.
    AnchorMismatch,
    /// A stored configuration's content does not hash to its version.
    ConfigEdited,
}

/// The first thing found wrong, naming the record.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub tamper: Tamper,
    /// The audit record id (or, for `TransitionsEdited`, the transition id).
    pub id: i64,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of walking the chain.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Intact {
        records: u64,
        last_hash: Option<String>,
        /// What the walk could and could not vouch for.
        scope: Scope,
    },
    Broken(Problem),
}

/// What an intact verdict covers: which records are authenticated by a key, whether the MACs
/// were checked, and how many anchors were compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    /// The head's id (0 for an empty log).
    pub last_id: i64,
    /// The first record carrying a MAC: the keyed part runs from it to the head.
    pub keyed_from: Option<i64>,
    /// The key id of the keyed part.
    pub key_id: Option<String>,
    /// Whether the MACs were checked (a key was given).
    pub key_checked: bool,
    /// Anchors compared with the chain.
    pub anchors_checked: usize,
}

impl Scope {
    /// Plain sentences saying what was checked and what could not be, for `audit verify`.
    pub fn explain(&self) -> Vec<String> {
        let mut out = vec![
            "checked: every record's hash against its fields, the links between records, gaps in the ids, a deleted tail, and the transitions table against the ledger".to_owned(),
        ];
        match (self.keyed_from, self.key_checked) {
            (Some(from), true) => {
                out.push(format!(
                    "authenticated: records {from}..{} carry MACs that verify with key {}",
                    self.last_id,
                    self.key_id.as_deref().unwrap_or("?")
                ));
                if from > 1 {
                    out.push(format!(
                        "not authenticated: records 1..{} were written before the key was configured; a recomputation of them is detected only against an anchor",
                        from - 1
                    ));
                }
            }
            (Some(from), false) => out.push(format!(
                "NOT checked: records {from}..{} carry MACs (key {}), but no key was given (--key-file), so a wholesale recomputation of the chain would not be detected here",
                self.last_id,
                self.key_id.as_deref().unwrap_or("?")
            )),
            (None, _) if self.last_id > 0 => out.push(
                "not authenticated: no record carries a MAC (no [audit] key_file was configured), so a wholesale recomputation of the chain would not be detected except against an anchor".to_owned(),
            ),
            (None, _) => {}
        }
        out.push(if self.anchors_checked == 0 {
            "anchors: none given (--anchor-file, --anchor SEQ:HASH), so a truncated or rewritten head is not compared with any copy kept outside the database".to_owned()
        } else {
            format!(
                "anchors: {} compared, each matches the chain",
                self.anchors_checked
            )
        });
        out
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Intact {
                records,
                last_hash: Some(h),
                ..
            } => write!(f, "audit: {records} records, chain intact, last hash {h}"),
            Verdict::Intact {
                records,
                last_hash: None,
                ..
            } => write!(f, "audit: {records} records, chain intact"),
            Verdict::Broken(p) => write!(f, "audit: chain BROKEN at {p}"),
        }
    }
}

/// A chain head written down outside the database (a log line, an e-mail footer, the
/// anchor file): the record's id and its hash, or the first characters of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Anchor {
    pub sequence: i64,
    /// The hash or a prefix of it (at least 8 hex characters).
    pub hash: String,
    /// Where it was read, for the report (`anchors.jsonl:3`, `--anchor`).
    pub source: String,
}

/// What `verify` checks the rows with besides their own hashes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checks<'a> {
    /// The audit key: every MAC is checked with it.
    pub key: Option<&'a [u8]>,
    pub anchors: &'a [Anchor],
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// The first 12 hex characters of a hash: how the head is anchored in log lines, e-mail
/// footers and the metric (48 bits: enough that a rewritten chain matching it by chance is
/// out of reach, short enough to read aloud).
pub fn short_hash(h: &str) -> &str {
    short(h)
}

/// How the head is written in log lines and e-mail footers: `record 42, hash 3f2a9c1b04de`
/// (`audit verify --anchor 42:3f2a9c1b04de` checks it).
pub fn head_text(sequence: i64, hash: &str) -> String {
    format!("record {sequence}, hash {}", short(hash))
}

fn missing(from: i64, to: i64) -> String {
    if from == to {
        format!("record {from} was deleted")
    } else {
        format!("records {from}..{to} were deleted")
    }
}

/// Walks `rows` (in id order) and returns the first problem, or a summary.
///
/// `highest_id_issued` is the largest id the database ever handed out (SQLite's
/// `sqlite_sequence`): a higher value than the last row's id means the newest records were
/// deleted. `transitions` is the result of the cross-check of the `transitions` table, which
/// is reported only when the chain itself is intact (the chain is the primary evidence).
///
/// Checks per record, in this order, so each kind of tampering gets its own name: a gap in
/// the ids (deleted), a `prev_hash` that is not the previous record's hash (deleted,
/// inserted or reordered), a hash that does not match the fields (edited).
pub fn verify(
    rows: &[AuditRow],
    highest_id_issued: i64,
    transitions: Option<TransitionMismatch>,
) -> Verdict {
    verify_with(rows, highest_id_issued, transitions, Checks::default())
}

/// `verify`, checking every MAC with `checks.key` and comparing the chain with
/// `checks.anchors` as well.
///
/// With a key: once a record carries a MAC, every later one must carry a valid MAC under that
/// key (a daemon with a key writes a keyed `audit_key` record as soon as it starts, so a
/// chain with no MAC at all while a key is given had its MACs stripped or never had the key).
/// Without a key the MACs cannot be checked and the scope says so.
pub fn verify_with(
    rows: &[AuditRow],
    highest_id_issued: i64,
    transitions: Option<TransitionMismatch>,
    checks: Checks<'_>,
) -> Verdict {
    let given_key_id = checks.key.map(key_id);
    let mut keyed_from: Option<(i64, String)> = None;
    let mut prev: Option<&AuditRecord> = None;
    for row in rows {
        let rec = match row {
            Ok(r) => r,
            Err(u) => {
                return Verdict::Broken(Problem {
                    tamper: Tamper::Unreadable,
                    id: u.id,
                    message: format!(
                        "{}: {}: the record was edited after it was written",
                        label(u.id, u.service.as_deref(), Some(u.at)),
                        u.problem
                    ),
                })
            }
        };
        let expected_id = prev.map_or(1, |p| p.id + 1);
        if rec.id != expected_id {
            let message = if rec.id > expected_id {
                format!(
                    "{}: ids jump from {} to {}: {}",
                    rec.label(),
                    expected_id - 1,
                    rec.id,
                    missing(expected_id, rec.id - 1)
                )
            } else {
                format!(
                    "{}: id is not after the previous record's id {}: records were reordered or inserted",
                    rec.label(),
                    expected_id - 1
                )
            };
            return Verdict::Broken(Problem {
                tamper: Tamper::Deleted,
                id: rec.id,
                message,
            });
        }
        let expected_prev = prev.map_or(GENESIS_HASH, |p| p.hash.as_str());
        if rec.prev_hash != expected_prev {
            let before = match prev {
                Some(p) => format!("the hash of record {}", p.id),
                None => "the genesis hash (64 zeros)".to_owned(),
            };
            return Verdict::Broken(Problem {
                tamper: Tamper::Relinked,
                id: rec.id,
                message: format!(
                    "{}: prev_hash {}… does not match {before} ({}…): a record was deleted, inserted or reordered before it",
                    rec.label(),
                    short(&rec.prev_hash),
                    short(expected_prev)
                ),
            });
        }
        let computed = rec.compute_hash();
        if rec.hash != computed {
            return Verdict::Broken(Problem {
                tamper: Tamper::Edited,
                id: rec.id,
                message: format!(
                    "{}: hash mismatch (stored {}…, computed {}…): the record was edited after it was written",
                    rec.label(),
                    short(&rec.hash),
                    short(&computed)
                ),
            });
        }
        if let Some(p) = check_mac(rec, &mut keyed_from, checks.key, given_key_id.as_deref()) {
            return Verdict::Broken(p);
        }
        prev = Some(rec);
    }
    let last_id = prev.map_or(0, |p| p.id);
    if highest_id_issued > last_id {
        let after = match prev {
            Some(p) => format!("after {}", p.label()),
            None => "the log is empty".to_owned(),
        };
        return Verdict::Broken(Problem {
            tamper: Tamper::Deleted,
            id: last_id + 1,
            message: format!(
                "record {} ({after}, but ids up to {highest_id_issued} were issued): {}",
                last_id + 1,
                missing(last_id + 1, highest_id_issued)
            ),
        });
    }
    if let Some(m) = transitions {
        return Verdict::Broken(Problem {
            tamper: Tamper::TransitionsEdited,
            id: m.transition_id,
            message: format!(
                "transition {} ({}, {}): {}",
                m.transition_id,
                m.service,
                m.at.rfc3339(),
                m.problem
            ),
        });
    }
    let last_id = prev.map_or(0, |p| p.id);
    if let (Some(given), None) = (&given_key_id, &keyed_from) {
        if last_id > 0 {
            return Verdict::Broken(Problem {
                tamper: Tamper::Unauthenticated,
                id: 1,
                message: format!(
                    "records 1..{last_id}: no record carries a MAC, but key {given} was given: a daemon with [audit] key_file writes a keyed record as soon as it starts, so the MACs were stripped (and the chain perhaps recomputed), or this database never had the key"
                ),
            });
        }
    }
    let by_id = |id: i64| -> Option<&AuditRecord> {
        let first = match rows.first() {
            Some(Ok(r)) => r.id,
            _ => return None,
        };
        match rows.get(usize::try_from(id - first).ok()?) {
            Some(Ok(r)) if r.id == id => Some(r),
            _ => None,
        }
    };
    for a in checks.anchors {
        let problem = match by_id(a.sequence) {
            None => Some(format!(
                "record {}: anchored ({}, hash {}…) but the chain ends at record {last_id}: records were deleted after the anchor was taken",
                a.sequence, a.source, short(&a.hash)
            )),
            Some(r) if !r.hash.starts_with(&a.hash) || a.hash.len() < 8 => Some(format!(
                "{}: hash {}… differs from the anchor ({}, hash {}…): the chain was rewritten after the anchor was taken",
                r.label(),
                short(&r.hash),
                a.source,
                short(&a.hash)
            )),
            Some(_) => None,
        };
        if let Some(message) = problem {
            return Verdict::Broken(Problem {
                tamper: Tamper::AnchorMismatch,
                id: a.sequence,
                message,
            });
        }
    }
    Verdict::Intact {
        records: rows.len() as u64,
        last_hash: prev.map(|p| p.hash.clone()),
        scope: Scope {
            last_id,
            keyed_from: keyed_from.as_ref().map(|(id, _)| *id),
            key_id: keyed_from.map(|(_, k)| k),
            key_checked: checks.key.is_some(),
            anchors_checked: checks.anchors.len(),
        },
    }
}

/// The MAC checks of one record whose hash is right: `keyed_from` remembers the first keyed
/// record (and its key id) so an unkeyed record after it is caught.
fn check_mac(
    rec: &AuditRecord,
    keyed_from: &mut Option<(i64, String)>,
    key: Option<&[u8]>,
    given_key_id: Option<&str>,
) -> Option<Problem> {
    let problem = |tamper, message: String| {
        Some(Problem {
            tamper,
            id: rec.id,
            message: format!("{}: {message}", rec.label()),
        })
    };
    let (Some(kid), Some(m)) = (&rec.key_id, &rec.mac) else {
        if rec.key_id.is_some() || rec.mac.is_some() {
            return problem(
                Tamper::Unauthenticated,
                "has a key id or a MAC but not both: the record was edited".to_owned(),
            );
        }
        return match keyed_from {
            Some((from, _)) => problem(
                Tamper::Unauthenticated,
                format!("carries no MAC although the chain is keyed from record {from}: its MAC was stripped, or it was written without the key"),
            ),
            None => None,
        };
    };
    match keyed_from {
        None => *keyed_from = Some((rec.id, kid.clone())),
        Some((from, first)) if first != kid => {
            return problem(
                Tamper::Unauthenticated,
                format!(
                    "is keyed with {kid}, but the chain is keyed with {first} from record {from}"
                ),
            )
        }
        Some(_) => {}
    }
    let (Some(key), Some(given)) = (key, given_key_id) else {
        return None;
    };
    if kid != given {
        return problem(
            Tamper::WrongKey,
            format!("was authenticated with key {kid}, not with the given key {given}: give the key that authenticated this chain"),
        );
    }
    if !mac_matches(key, &rec.hash, m) {
        return problem(
            Tamper::Unauthenticated,
            "MAC does not verify with the key: the record was rewritten and its hash recomputed (or its MAC replaced) by someone without the key".to_owned(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, prev_hash: &str) -> AuditRecord {
        let mut r = AuditRecord {
            id,
            kind: KIND_TRANSITION.into(),
            at: Timestamp(1_700_000_000_000 + id),
            node: "node-a".into(),
            actor: "system".into(),
            service: Some("ticket-submission".into()),
            from: Some("operational".into()),
            to: Some("failed_over".into()),
            cause: Some("primary_down".into()),
            reason: "primary down; backup healthy".into(),
            evidence: vec!["portal-form: down (HTTP 503)".into()],
            routes_before: [("submit-ticket".to_owned(), "https://p".to_owned())].into(),
            routes_after: [("submit-ticket".to_owned(), "https://b".to_owned())].into(),
            config_version: "cfg".into(),
            transition_id: Some(id),
            detail: serde_json::json!({}),
            prev_hash: prev_hash.into(),
            hash: String::new(),
            key_id: None,
            mac: None,
        };
        r.hash = r.compute_hash();
        r
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for id in 1..=n {
            let prev = out
                .last()
                .map_or(GENESIS_HASH.to_owned(), |r| r.hash.clone());
            out.push(record(id, &prev));
        }
        out
    }

    fn rows(records: Vec<AuditRecord>) -> Vec<AuditRow> {
        records.into_iter().map(Ok).collect()
    }

    fn broken(v: Verdict) -> Problem {
        match v {
            Verdict::Broken(p) => p,
            v => panic!("expected a broken chain, got {v}"),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_omits_the_hash() {
        let r = record(1, GENESIS_HASH);
        assert_eq!(
            r.canonical_json(),
            format!(
                concat!(
                    r#"{{"actor":"system","at":"2023-11-14T22:13:20.001Z","cause":"primary_down","#,
                    r#""config_version":"cfg","detail":{{}},"evidence":["portal-form: down (HTTP 503)"],"#,
                    r#""from":"operational","id":1,"kind":"transition","node":"node-a","prev_hash":"{}","#,
                    r#""reason":"primary down; backup healthy","routes_after":{{"submit-ticket":"https://b"}},"#,
                    r#""routes_before":{{"submit-ticket":"https://p"}},"service":"ticket-submission","#,
                    r#""to":"failed_over","transition_id":1}}"#
                ),
                GENESIS_HASH
            )
        );
        assert_eq!(r.hash.len(), 64);
        assert_eq!(r.hash, hex::encode(Sha256::digest(r.canonical_json())));
    }

    #[test]
    fn canonical_sorts_nested_objects_whatever_the_insertion_order() {
        let mut m = serde_json::Map::new();
        m.insert("z".into(), serde_json::json!(1));
        m.insert("a".into(), serde_json::json!({"y": "é\n", "b": [2, null]}));
        assert_eq!(
            canonical(&serde_json::Value::Object(m)),
            "{\"a\":{\"b\":[2,null],\"y\":\"é\\n\"},\"z\":1}"
        );
    }

    #[test]
    fn an_intact_chain_verifies_with_its_last_hash() {
        let c = chain(3);
        let last = c[2].hash.clone();
        assert_eq!(
            verify(&rows(c), 3, None),
            Verdict::Intact {
                records: 3,
                last_hash: Some(last),
                scope: Scope {
                    last_id: 3,
                    ..Scope::default()
                }
            }
        );
        assert_eq!(
            verify(&[], 0, None).to_string(),
            "audit: 0 records, chain intact"
        );
    }

    #[test]
    fn an_edited_field_is_a_hash_mismatch_at_that_record() {
        let mut c = chain(3);
        c[1].reason = "nothing to see".into();
        let p = broken(verify(&rows(c), 3, None));
        assert_eq!((p.tamper, p.id), (Tamper::Edited, 2));
        assert!(
            p.message.starts_with(
                "record 2 (ticket-submission, 2023-11-14T22:13:20.002Z): hash mismatch"
            ),
            "{p}"
        );
    }

    #[test]
    fn a_deleted_middle_record_is_a_gap_named_at_the_next_record() {
        let mut c = chain(4);
        c.remove(1);
        let p = broken(verify(&rows(c), 4, None));
        assert_eq!((p.tamper, p.id), (Tamper::Deleted, 3));
        assert!(
            p.message
                .contains("ids jump from 1 to 3: record 2 was deleted"),
            "{p}"
        );
    }

    #[test]
    fn a_deleted_first_record_and_a_deleted_tail_are_found() {
        let mut c = chain(3);
        c.remove(0);
        let p = broken(verify(&rows(c), 3, None));
        assert_eq!((p.tamper, p.id), (Tamper::Deleted, 2));

        let c = chain(3);
        let p = broken(verify(&rows(c[..2].to_vec()), 3, None));
        assert_eq!((p.tamper, p.id), (Tamper::Deleted, 3));
        assert!(p.message.contains("record 3 was deleted"), "{p}");

        let p = broken(verify(&[], 2, None));
        assert!(p.message.contains("records 1..2 were deleted"), "{p}");
    }

    #[test]
    fn swapped_records_break_the_link_at_the_first_swapped_id() {
        let mut c = chain(4);
        // Swap the contents of ids 2 and 3, as an UPDATE of their ids would.
        let (a, b) = (c[1].clone(), c[2].clone());
        c[1] = AuditRecord { id: 2, ..b };
        c[2] = AuditRecord { id: 3, ..a };
        let p = broken(verify(&rows(c), 4, None));
        assert_eq!((p.tamper, p.id), (Tamper::Relinked, 2));
        assert!(
            p.message.contains("does not match the hash of record 1"),
            "{p}"
        );
    }

    #[test]
    fn a_renumbered_chain_after_a_deletion_is_a_broken_link() {
        let mut c = chain(3);
        c.remove(1);
        c[1].id = 2;
        let p = broken(verify(&rows(c), 2, None));
        assert_eq!((p.tamper, p.id), (Tamper::Relinked, 2));
    }

    /// `chain(n)` with records from `from` on sealed under `key`.
    fn keyed_chain(n: i64, from: i64, key: &[u8]) -> Vec<AuditRecord> {
        let mut c = chain(n);
        for r in c.iter_mut().filter(|r| r.id >= from) {
            r.seal(key);
        }
        c
    }

    #[test]
    fn a_keyed_chain_verifies_with_its_key_and_names_where_the_keyed_part_starts() {
        let key = [9u8; 32];
        let c = keyed_chain(4, 3, &key);
        let checks = Checks {
            key: Some(&key),
            anchors: &[],
        };
        let Verdict::Intact { scope, .. } = verify_with(&rows(c.clone()), 4, None, checks) else {
            panic!("intact expected")
        };
        assert_eq!(scope.keyed_from, Some(3));
        assert!(scope.key_checked);
        let text = scope.explain().join("\n");
        assert!(text.contains("authenticated: records 3..4"), "{text}");
        assert!(text.contains("not authenticated: records 1..2"), "{text}");
        // Python's hmac gives the same MAC: hmac.new(key, hash.encode(), sha256).
        assert_eq!(c[2].mac.as_deref(), Some(mac(&key, &c[2].hash).as_str()));
        assert!(mac_matches(&key, &c[2].hash, c[2].mac.as_deref().unwrap()));
        assert!(!mac_matches(
            &[1u8; 32],
            &c[2].hash,
            c[2].mac.as_deref().unwrap()
        ));
    }

    #[test]
    fn a_missing_mac_after_the_keyed_part_starts_and_a_wrong_key_are_named() {
        let key = [9u8; 32];
        let mut c = keyed_chain(4, 2, &key);
        c[2].mac = None;
        c[2].key_id = None;
        let p = broken(verify_with(&rows(c), 4, None, Checks::default()));
        assert_eq!((p.tamper, p.id), (Tamper::Unauthenticated, 3));
        assert!(p.message.contains("keyed from record 2"), "{p}");

        let c = keyed_chain(2, 1, &key);
        let other = [1u8; 32];
        let p = broken(verify_with(
            &rows(c),
            2,
            None,
            Checks {
                key: Some(&other),
                anchors: &[],
            },
        ));
        assert_eq!((p.tamper, p.id), (Tamper::WrongKey, 1));
    }

    #[test]
    fn anchors_must_match_a_record_of_the_chain() {
        let c = chain(3);
        let good = Anchor {
            sequence: 2,
            hash: c[1].hash[..12].to_owned(),
            source: "log".into(),
        };
        let bad = Anchor {
            hash: "0123456789ab".into(),
            ..good.clone()
        };
        let gone = Anchor {
            sequence: 4,
            ..good.clone()
        };
        let with = |a: &Anchor| {
            verify_with(
                &rows(c.clone()),
                3,
                None,
                Checks {
                    key: None,
                    anchors: std::slice::from_ref(a),
                },
            )
        };
        assert!(matches!(with(&good), Verdict::Intact { .. }));
        assert_eq!(broken(with(&bad)).tamper, Tamper::AnchorMismatch);
        assert!(broken(with(&gone))
            .message
            .contains("chain ends at record 3"));
    }

    #[test]
    fn unreadable_rows_and_transition_mismatches_are_reported() {
        let bad = UnreadableRecord {
            id: 1,
            service: Some("s".into()),
            at: Timestamp(0),
            problem: "stored evidence is not valid JSON".into(),
        };
        let p = broken(verify(&[Err(bad)], 1, None));
        assert_eq!(p.tamper, Tamper::Unreadable);

        let m = TransitionMismatch {
            transition_id: 2,
            service: "s".into(),
            at: Timestamp(0),
            problem: "reason differs from audit record 2".into(),
        };
        let p = broken(verify(&rows(chain(2)), 2, Some(m)));
        assert_eq!((p.tamper, p.id), (Tamper::TransitionsEdited, 2));
        assert_eq!(
            p.message,
            "transition 2 (s, 1970-01-01T00:00:00.000Z): reason differs from audit record 2"
        );
    }

    /// The CSV cells of `text`'s rows after the header, as an RFC 4180 reader sees them.
    fn csv_cells(text: &str) -> Vec<Vec<String>> {
        csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn csv_quotes_commas_quotes_and_line_breaks_and_nothing_else() {
        let mut c = chain(1);
        c[0].reason = "a,b \"hi\"\r\nnext".into();
        c[0].actor = "plain".into();
        c[0].service = None;
        c[0].config_version = " padded ".into();
        let text = export(&c, Format::Csv);
        assert!(
            text.starts_with(&(CSV_COLUMNS.join(",") + "\r\n")),
            "{text}"
        );
        assert!(text.ends_with("\r\n"));
        // Quoted with inner quotes doubled; the line break inside stays as written.
        assert!(text.contains(",\"a,b \"\"hi\"\"\r\nnext\","), "{text}");
        // No quotes where none are needed: a plain word, an empty cell, surrounding spaces
        // (RFC 4180 keeps spaces as part of the field).
        assert!(text.contains(",node-a,plain,,operational,"), "{text}");
        assert!(text.contains("}\", padded ,1,{},"), "{text}");
        // JSON cells hold quotes, so they are quoted.
        assert!(
            text.contains(",\"[\"\"portal-form: down (HTTP 503)\"\"]\","),
            "{text}"
        );
    }

    #[test]
    fn csv_export_reads_back_cell_for_cell() {
        let mut c = chain(2);
        c[1].reason = "pin, \"just in case\"\nsecond line".into();
        c[1].transition_id = None;
        let cells = csv_cells(&export(&c, Format::Csv));
        assert_eq!(cells.len(), 2);
        for (row, r) in cells.iter().zip(&c) {
            assert_eq!(row.len(), CSV_COLUMNS.len());
            assert_eq!(row[0], r.id.to_string());
            assert_eq!(row[9], r.reason);
            assert_eq!(
                serde_json::from_str::<Vec<String>>(&row[10]).unwrap(),
                r.evidence
            );
            assert_eq!(
                row[14],
                r.transition_id.map(|i| i.to_string()).unwrap_or_default()
            );
            assert_eq!((&row[16], &row[17]), (&r.prev_hash, &r.hash));
        }
    }

    #[test]
    fn jsonl_export_round_trips_and_keeps_the_hash() {
        let c = chain(2);
        let text = export(&c, Format::Jsonl);
        let back: Vec<AuditRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, c);
        assert!(matches!(
            verify(&rows(back), 2, None),
            Verdict::Intact { records: 2, .. }
        ));
    }

    #[test]
    fn since_accepts_rfc3339_and_durations_ago() {
        let now = Timestamp(1_700_000_000_000);
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", now).unwrap(),
            Timestamp(1_700_000_000_000)
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20.5Z", now).unwrap(),
            Timestamp(1_700_000_000_500)
        );
        assert_eq!(
            parse_since("1h", now).unwrap(),
            Timestamp(now.0 - 3_600_000)
        );
        assert_eq!(
            parse_since("7d ago", now).unwrap(),
            Timestamp(now.0 - 7 * 86_400_000)
        );
        assert!(parse_since("yesterday-ish", now).is_err());
    }
}
