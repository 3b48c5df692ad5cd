//! The one way the store reads rows: a reader per record type that converts as it reads, with the store's own errors.
//!
//! Why not `query_map`: its callback can only return `rusqlite::Error`, which forced a raw
//! struct of column values per record type, converted in a second step. Stepping the rows
//! here lets one function per record type (`read_outbox`, `read_part`, ...) read each column
//! and fail with a `StoreError` that says which stored value is wrong.

use super::StoreError;
use crate::failover::State;
use rusqlite::{Connection, Params, Row};

/// Every row of `sql`, each read with `read`.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read(r)?);
    }
    Ok(out)
}

/// The first row of `sql`, if any, read with `read`.
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params)?;
    rows.next()?.map(read).transpose()
}

pub(super) fn parse_state(s: &str) -> Result<State, StoreError> {
    State::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "state",
        value: s.to_owned(),
    })
}

pub(super) fn parse_json_strings(what: &'static str, s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|source| StoreError::Json { what, source })
}

pub(super) fn u32_from(what: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        value: v.to_string(),
    })
}
