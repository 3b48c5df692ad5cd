//! Current state per service and its holds.

use super::rows::{self, parse_state};
use super::{ServiceRecord, Store, StoreError};
use crate::clock::Timestamp;
use crate::failover::State;
use rusqlite::{params, OptionalExtension, Row};

impl Store {
    /// Every stored service, ordered by id.
    pub fn load_services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let sql = format!("{SERVICE_SELECT} ORDER BY id");
        rows::all(&self.conn(), &sql, [], read_service)
    }

    /// One stored service, if known.
    pub fn service(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        let sql = format!("{SERVICE_SELECT} WHERE id = ?1");
        rows::one(&self.conn(), &sql, [id], read_service)
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
        let sql = format!("{SERVICE_SELECT} WHERE id = ?1");
        // Inserted just above if it was missing: the row is there.
        rows::one(&conn, &sql, [id], read_service)?
            .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
    }
}

const SERVICE_SELECT: &str = "SELECT id, state, since_ms, cause, created_at_ms FROM services";

/// Reads a row of `SERVICE_SELECT`.
fn read_service(r: &Row<'_>) -> Result<ServiceRecord, StoreError> {
    Ok(ServiceRecord {
        id: r.get(0)?,
        state: parse_state(&r.get::<_, String>(1)?)?,
        since: Timestamp::from_millis(r.get(2)?),
        cause: r.get(3)?,
        created_at: Timestamp::from_millis(r.get(4)?),
    })
}
