//! The stored facts `switchboard_*` metrics are rebuilt from at start, so a restart (clean or
//! kill -9) leaves every series an alert reads where it was.
//!
//! Each query answers what the live metric events counted while the facts were written: the
//! drills that finished (replayed in order through the same event, so "last drill" and "last
//! success" mean what they mean live), the transitions recorded, the outbox rows delivered,
//! failed and given up, and the audit records appended. What no table records (probe results,
//! detection times, schedule lag, API authentication failures, store errors, configuration
//! reloads) stays a process-lifetime counter; `README.md` says which and why that is safe.

use super::{Store, StoreError};
use crate::clock::Timestamp;

/// One finished drill: service, result (`pass`, `fail`, ...) and when it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedDrill {
    pub service: String,
    pub result: String,
    pub ended_at: Timestamp,
}

/// Recorded transitions of one kind: how many.
#[derive(Clone, Debug, PartialEq)]
pub struct TransitionCount {
    pub service: String,
    pub from: String,
    pub to: String,
    pub cause: String,
    pub count: u64,
}

/// Delivery attempts of the outbox rows of one channel, audience and kind, by result, as
/// `report_deliveries` counts them: one success per delivered row, one give-up per given-up
/// row, and every other attempt a failure.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryCount {
    pub channel: String,
    pub audience: String,
    /// `""` on rows from before the outbox knew kinds.
    pub kind: String,
    pub success: u64,
    pub failure: u64,
    pub given_up: u64,
}

/// Everything the metrics are rebuilt from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricFacts {
    /// Oldest first.
    pub drills: Vec<FinishedDrill>,
    pub transitions: Vec<TransitionCount>,
    pub deliveries: Vec<DeliveryCount>,
    /// Channel -> when a row was last delivered over it.
    pub last_delivered: Vec<(String, Timestamp)>,
    /// Audit records by kind.
    pub audit_records: Vec<(String, u64)>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Reads the facts the metrics are rebuilt from (once, at start).
    pub fn metric_facts(&self) -> Result<MetricFacts, StoreError> {
        let conn = self.conn();
        let mut facts = MetricFacts::default();

        let mut stmt = conn.prepare(
            "SELECT service, status, ended_at_ms FROM drills
             WHERE status <> 'running' AND ended_at_ms IS NOT NULL
             ORDER BY ended_at_ms, started_at_ms, id",
        )?;
        facts.drills = stmt
            .query_map([], |r| {
                Ok(FinishedDrill {
                    service: r.get(0)?,
                    result: r.get(1)?,
                    ended_at: Timestamp(r.get(2)?),
                })
            })?
            .collect::<Result<_, _>>()?;

        let mut stmt = conn.prepare(
            "SELECT service, from_state, to_state, cause, COUNT(*) FROM transitions
             GROUP BY service, from_state, to_state, cause",
        )?;
        facts.transitions = stmt
            .query_map([], |r| {
                Ok(TransitionCount {
                    service: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    cause: r.get(3)?,
                    count: count(r.get(4)?),
                })
            })?
            .collect::<Result<_, _>>()?;

        // A delivered or given-up row's last attempt is its success or give-up; every other
        // attempt failed.
        let mut stmt = conn.prepare(
            "SELECT channel, audience, kind,
                    SUM(status = 'delivered'),
                    SUM(attempts - (status IN ('delivered', 'given_up'))),
                    SUM(status = 'given_up')
             FROM outbox GROUP BY channel, audience, kind",
        )?;
        facts.deliveries = stmt
            .query_map([], |r| {
                Ok(DeliveryCount {
                    channel: r.get(0)?,
                    audience: r.get(1)?,
                    kind: r.get(2)?,
                    success: count(r.get(3)?),
                    failure: count(r.get(4)?),
                    given_up: count(r.get(5)?),
                })
            })?
            .collect::<Result<_, _>>()?;

        let mut stmt = conn.prepare(
            "SELECT channel, MAX(delivered_at_ms) FROM outbox
             WHERE status = 'delivered' AND delivered_at_ms IS NOT NULL GROUP BY channel",
        )?;
        facts.last_delivered = stmt
            .query_map([], |r| Ok((r.get(0)?, Timestamp(r.get(1)?))))?
            .collect::<Result<_, _>>()?;

        let mut stmt = conn.prepare("SELECT kind, COUNT(*) FROM audit GROUP BY kind")?;
        facts.audit_records = stmt
            .query_map([], |r| Ok((r.get(0)?, count(r.get(1)?))))?
            .collect::<Result<_, _>>()?;
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_store_has_no_facts() {
        let store = Store::open_in_memory().expect("store");
        assert_eq!(store.metric_facts().expect("facts"), MetricFacts::default());
    }
}
