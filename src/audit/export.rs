//! `switchboard audit export`: the records as JSON Lines or CSV, and the `--since` filter.

use super::{canonical, AuditRecord};
use crate::clock::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// Export formats of `switchboard audit export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// CSV columns, in the order of the JSON export (`key_id` and `mac` empty on unkeyed records).
pub const CSV_COLUMNS: [&str; 20] = [
    "id",
    "kind",
    "at",
    "node",
    "actor",
    "service",
    "from",
    "to",
    "cause",
    "reason",
    "evidence",
    "routes_before",
    "routes_after",
    "config_version",
    "transition_id",
    "detail",
    "prev_hash",
    "hash",
    "key_id",
    "mac",
];

/// Writes `records` in `format`: JSON Lines (one object per line, every field), or CSV
/// (RFC 4180 through the `csv` crate: a header row, CRLF line ends, a cell quoted only when it
/// holds a comma, a quote or a line break, JSON-valued fields as compact JSON text, empty
/// cells for absent values).
pub fn export(records: &[AuditRecord], format: Format) -> String {
    match format {
        Format::Jsonl => {
            let mut out = String::new();
            for r in records {
                // Cannot fail for this type (see `canonical_json`); a `null` line would be
                // visible to the auditor rather than a silently missing record.
                out.push_str(&serde_json::to_string(r).unwrap_or_else(|_| "null".to_owned()));
                out.push('\n');
            }
            out
        }
        Format::Csv => csv_export(records),
    }
}

/// The CSV export. Writing into memory cannot fail (every row has the header's 20 cells and
/// there is no I/O), and the cells are `String`s, so the bytes are UTF-8; the fallbacks keep
/// the function total rather than panicking on that invariant.
fn csv_export(records: &[AuditRecord]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let _ = w.write_record(CSV_COLUMNS);
    for r in records {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let _ = w.write_record([
            r.id.to_string(),
            r.kind.clone(),
            r.at.rfc3339(),
            r.node.clone(),
            r.actor.clone(),
            opt(&r.service),
            opt(&r.from),
            opt(&r.to),
            opt(&r.cause),
            r.reason.clone(),
            json(&r.evidence),
            json(&r.routes_before),
            json(&r.routes_after),
            r.config_version.clone(),
            r.transition_id.map(|i| i.to_string()).unwrap_or_default(),
            canonical(&r.detail),
            r.prev_hash.clone(),
            r.hash.clone(),
            opt(&r.key_id),
            opt(&r.mac),
        ]);
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// Compact JSON text of a CSV cell's structured value (cannot fail for the types used).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Why an `--since` value was refused.
#[derive(Debug, thiserror::Error)]
#[error("--since {value:?} is neither an RFC 3339 time (2026-11-28T17:00:00Z) nor a duration ago (24h, \"7d ago\")")]
pub struct SinceError {
    pub value: String,
}

/// Parses `--since`: an RFC 3339 time, or a humantime duration (optionally followed by
/// `ago`) counted back from `now`.
pub fn parse_since(value: &str, now: Timestamp) -> Result<Timestamp, SinceError> {
    let err = || SinceError {
        value: value.to_owned(),
    };
    let v = value.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| err())?
            .as_millis();
        return Ok(Timestamp(i64::try_from(ms).map_err(|_| err())?));
    }
    let d: Duration =
        humantime::parse_duration(v.strip_suffix("ago").unwrap_or(v).trim()).map_err(|_| err())?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| err())?;
    Ok(Timestamp(now.0.saturating_sub(ms)))
}

/// A configuration version for the bundle: its text as `audit config` prints it, its files,
/// and its stored metadata (loads, redactions) as JSON.
pub struct BundleConfig {
    pub version: String,
    pub text: String,
    pub files: Vec<(std::path::PathBuf, String)>,
    pub meta: serde_json::Value,
}

/// Everything an evidence bundle holds, gathered by the caller from the store.
pub struct Bundle {
    pub generated_at: Timestamp,
    pub since: Timestamp,
    /// The database it was made from, as named to the command.
    pub source: String,
    /// The records of the period, in id order.
    pub records: Vec<AuditRecord>,
    /// `audit verify`'s verdict over the whole chain and what it could and could not check.
    pub verify: String,
    pub intact: bool,
    pub configs: Vec<BundleConfig>,
    /// Drill id -> the drill with its report, as JSON.
    pub drills: Vec<(String, serde_json::Value)>,
}

/// The schema of a JSON Lines record, shipped in the bundle and in the repository.
pub const RECORD_SCHEMA: &str = include_str!("../../docs/audit-record.schema.json");

/// The directory every file of a bundle is under.
pub const BUNDLE_DIR: &str = "audit-bundle";

/// The bundle as a `.tar.gz`: README.txt, records.jsonl, records.csv,
/// audit-record.schema.json, verify.txt, configs/<version>.txt and .json, drills/<id>.json,
/// all under `audit-bundle/`.
pub fn bundle(b: &Bundle) -> Result<Vec<u8>, super::tar::TarError> {
    let mtime = u64::try_from(b.generated_at.0 / 1000).unwrap_or(0);
    let mut entries = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>| {
        entries.push(super::tar::Entry {
            path: format!("{BUNDLE_DIR}/{name}"),
            bytes,
            mtime,
        })
    };
    add("README.txt".into(), readme(b).into_bytes());
    add(
        "records.jsonl".into(),
        export(&b.records, Format::Jsonl).into_bytes(),
    );
    add(
        "records.csv".into(),
        export(&b.records, Format::Csv).into_bytes(),
    );
    add(
        "audit-record.schema.json".into(),
        RECORD_SCHEMA.as_bytes().to_vec(),
    );
    add("verify.txt".into(), b.verify.clone().into_bytes());
    for c in &b.configs {
        let v = super::short_hash(&c.version);
        add(format!("configs/{v}.txt"), c.text.clone().into_bytes());
        let meta = serde_json::to_string_pretty(&c.meta).unwrap_or_default() + "\n";
        add(format!("configs/{v}.json"), meta.into_bytes());
    }
    for (id, d) in &b.drills {
        // Drill ids are `drill-<stamp>-<hex>`; anything else is made safe for a file name.
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let text = serde_json::to_string_pretty(d).unwrap_or_default() + "\n";
        add(format!("drills/{safe}.json"), text.into_bytes());
    }
    super::tar::tar_gz(&entries)
}

/// The auditor's guide to the bundle: what each file is and how to check it without
/// Switchboard.
fn readme(b: &Bundle) -> String {
    let first = b.records.first();
    let last = b.records.last();
    let range = match (first, last) {
        (Some(f), Some(l)) => format!("records {} to {}", f.id, l.id),
        _ => "no records".to_owned(),
    };
    let keyed = b.records.iter().filter(|r| r.mac.is_some()).count();
    format!(
        r#"Switchboard audit evidence bundle
=================================

Period:        from {since} to {generated} (when this bundle was made)
Made from:     {source}
Contents:      {range} ({n} records, {keyed} of them authenticated with the audit key),
               {configs} configuration version(s), {drills} drill report(s)
Chain check:   {verdict}

Files
-----
records.jsonl             The audit records of the period, one JSON object per line,
                          oldest first. Each line is described by audit-record.schema.json
                          (JSON Schema 2020-12).
records.csv               The same records as CSV (RFC 4180, header row, CRLF line ends);
                          structured fields are JSON text in their cell.
audit-record.schema.json  The JSON Schema of a record, with what each field means.
verify.txt                `switchboard audit verify` over the whole chain when the bundle was
                          made: the verdict, then what it could and could not check.
configs/<version>.txt     Each configuration version in force or loaded during the period:
                          every file as loaded (secrets are never in these files; environment
                          variables and key files stay named references), its loads (start,
                          reload, rejected reloads with their diagnostics).
configs/<version>.json    The same as JSON, with each file's SHA-256.
drills/<id>.json          Each drill of the period with its report: every step's target,
                          measured time and pass/fail, and the overall result.

Checking the records yourself
-----------------------------
Each record's "hash" is the SHA-256 (lowercase hex) of the record without "hash", "key_id"
and "mac", as JSON with keys sorted at every level, no whitespace, non-ASCII characters
unescaped. "prev_hash" is the previous record's hash (64 zeros for record 1; for the first
record of this period, the hash of the record before it). In Python:

    import hashlib, hmac, json
    prev = None
    for line in open("records.jsonl", encoding="utf-8"):
        rec = json.loads(line)
        h = rec.pop("hash"); key_id = rec.pop("key_id", None); mac = rec.pop("mac", None)
        canon = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canon.encode("utf-8")).hexdigest() == h, rec["id"]
        assert prev is None or rec["prev_hash"] == prev, rec["id"]
        prev = h
        # With the audit key (bytes), a keyed record's MAC:
        # assert hmac.new(key, h.encode(), hashlib.sha256).hexdigest() == mac

Hashes alone show that no record was edited, removed or reordered, but not that the whole
chain was not recomputed: that is what the MACs (checked with the key, which is kept outside
the database) and the anchors (the head's sequence and hash in log lines, on-call e-mail
footers, the switchboard_audit_head_sequence metric and the anchor file) are for; compare an
anchor's sequence and hash with the record of that id.

A configuration version is the SHA-256 of its files' bytes in load order; "config_version" in
a record names the version in force when it was written.
"#,
        since = b.since.rfc3339(),
        generated = b.generated_at.rfc3339(),
        source = b.source,
        n = b.records.len(),
        configs = b.configs.len(),
        drills = b.drills.len(),
        verdict = if b.intact {
            "intact (see verify.txt)"
        } else {
            "BROKEN (see verify.txt)"
        },
    )
}
