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

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

mod export;

pub use export::{export, parse_since, Format, SinceError, CSV_COLUMNS};

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
}

impl AuditRecord {
    /// The canonical JSON that `hash` is the SHA-256 of: every field but `hash`, keys sorted.
    pub fn canonical_json(&self) -> String {
        // Serialising a struct of strings, integers, maps and JSON values cannot fail; should
        // it ever, the record hashes as `null` and verification fails loudly, never silently.
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(m) = &mut v {
            m.remove("hash");
        }
        let mut out = String::new();
        write_canonical(&v, &mut out);
        out
    }

    /// The hash this record should carry, from its other fields.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// `record 5 (ticket-submission, 2026-11-28T17:38:41.123Z)`: how reports name a record.
    pub fn label(&self) -> String {
        label(self.id, self.service.as_deref(), Some(self.at))
    }
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
    },
    Broken(Problem),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Intact {
                records,
                last_hash: Some(h),
            } => write!(f, "audit: {records} records, chain intact, last hash {h}"),
            Verdict::Intact {
                records,
                last_hash: None,
            } => write!(f, "audit: {records} records, chain intact"),
            Verdict::Broken(p) => write!(f, "audit: chain BROKEN at {p}"),
        }
    }
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
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
    Verdict::Intact {
        records: rows.len() as u64,
        last_hash: prev.map(|p| p.hash.clone()),
    }
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
                last_hash: Some(last)
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
