//! Stored probe history: per service and time bucket, probes ok/total and latency sum/max.
//!
//! Rows are written in batches (`Store::add_history`, one transaction per flush of
//! `history::Accumulator`), each batch adding onto the bucket rows it touches, so the table
//! grows with services x buckets and never with probes. Old buckets are pruned in the same
//! transaction.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use rusqlite::params;

/// Bucket width of the fine history (the response-time sparkline), in seconds.
pub const FIVE_MINUTES_S: u32 = 300;
/// Bucket width of the daily roll-up (the uptime bars), in seconds.
pub const DAY_S: u32 = 86_400;

/// One bucket of one service: the sums of the probes that ended in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryRow {
    pub service: String,
    /// `FIVE_MINUTES_S` or `DAY_S`.
    pub resolution_s: u32,
    /// Start of the bucket (a multiple of the resolution since the epoch, UTC).
    pub start: Timestamp,
    pub ok: u64,
    pub total: u64,
    pub latency_sum_ms: u64,
    pub latency_max_ms: u64,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Adds each row onto its stored bucket (counts and sums add, the maximum is kept), then
    /// deletes five-minute buckets older than `prune_fine_before` and days older than
    /// `prune_days_before`. One transaction.
    pub fn add_history(
        &self,
        rows: &[HistoryRow],
        prune_fine_before: Timestamp,
        prune_days_before: Timestamp,
    ) -> Result<(), StoreError> {
        self.check_file()?;
        let mut conn = self.conn();
        let tx = super::open::begin(&mut conn)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO probe_history
                    (service, resolution_s, start_ms, ok, total, latency_sum_ms, latency_max_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (service, resolution_s, start_ms) DO UPDATE SET
                    ok = ok + excluded.ok,
                    total = total + excluded.total,
                    latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms,
                    latency_max_ms = MAX(latency_max_ms, excluded.latency_max_ms)",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.service,
                    r.resolution_s,
                    r.start.as_millis(),
                    i(r.ok),
                    i(r.total),
                    i(r.latency_sum_ms),
                    i(r.latency_max_ms)
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM probe_history WHERE resolution_s = ?1 AND start_ms < ?2",
            params![FIVE_MINUTES_S, prune_fine_before.as_millis()],
        )?;
        tx.execute(
            "DELETE FROM probe_history WHERE resolution_s = ?1 AND start_ms < ?2",
            params![DAY_S, prune_days_before.as_millis()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every stored bucket of `resolution_s` starting at or after `since`, by service and time.
    pub fn history(
        &self,
        resolution_s: u32,
        since: Timestamp,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT service, start_ms, ok, total, latency_sum_ms, latency_max_ms
             FROM probe_history WHERE resolution_s = ?1 AND start_ms >= ?2
             ORDER BY service, start_ms",
        )?;
        let rows = stmt.query_map(params![resolution_s, since.as_millis()], |r| {
            Ok(HistoryRow {
                service: r.get(0)?,
                resolution_s,
                start: Timestamp::from_millis(r.get(1)?),
                ok: u(r.get(2)?),
                total: u(r.get(3)?),
                latency_sum_ms: u(r.get(4)?),
                latency_max_ms: u(r.get(5)?),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(res: u32, start: i64, ok: u64, total: u64, sum: u64, max: u64) -> HistoryRow {
        HistoryRow {
            service: "s".into(),
            resolution_s: res,
            start: Timestamp(start),
            ok,
            total,
            latency_sum_ms: sum,
            latency_max_ms: max,
        }
    }

    #[test]
    fn batches_add_onto_their_buckets_and_old_buckets_are_pruned() {
        let store = Store::open_in_memory().unwrap();
        let day = i64::from(DAY_S) * 1000;
        let old = Timestamp(0);
        store
            .add_history(
                &[row(DAY_S, 0, 1, 1, 10, 10), row(DAY_S, day, 3, 4, 40, 20)],
                old,
                old,
            )
            .unwrap();
        store
            .add_history(&[row(DAY_S, day, 2, 2, 30, 25)], old, old)
            .unwrap();
        assert_eq!(
            store.history(DAY_S, Timestamp(0)).unwrap(),
            vec![row(DAY_S, 0, 1, 1, 10, 10), row(DAY_S, day, 5, 6, 70, 25)]
        );
        // Pruning days before the second drops the first; five-minute rows are separate.
        store
            .add_history(&[row(FIVE_MINUTES_S, day, 1, 1, 5, 5)], old, Timestamp(day))
            .unwrap();
        assert_eq!(
            store.history(DAY_S, Timestamp(0)).unwrap(),
            vec![row(DAY_S, day, 5, 6, 70, 25)]
        );
        assert_eq!(
            store.history(FIVE_MINUTES_S, Timestamp(0)).unwrap().len(),
            1
        );
        assert!(store.history(DAY_S, Timestamp(day + 1)).unwrap().is_empty());
    }
}
