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

/// CSV columns, in the order of the JSON export.
pub const CSV_COLUMNS: [&str; 18] = [
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

/// The CSV export. Writing into memory cannot fail (every row has the header's 18 cells and
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
