//! The Slack thread of each service's open incident (migration 0012): the `ts` of a bot's
//! first message about it, so later messages are replies, across restarts too.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use rusqlite::{params, OptionalExtension};

impl Store {
    /// The thread (`ts`) open for `service` in `channel`, if any. A thread kept for another
    /// channel (the configuration changed) is not one to reply to.
    pub fn chat_thread(&self, service: &str, channel: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT ts FROM chat_threads WHERE service = ?1 AND channel = ?2",
                params![service, channel],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Remembers (`Some(ts)`) or forgets (`None`) the open thread of `service`.
    pub fn set_chat_thread(
        &self,
        service: &str,
        channel: &str,
        ts: Option<&str>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        match ts {
            Some(ts) => conn.execute(
                "INSERT INTO chat_threads (service, channel, ts, opened_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service) DO UPDATE SET channel = ?2, ts = ?3, opened_at_ms = ?4",
                params![service, channel, ts, at.as_millis()],
            )?,
            None => conn.execute("DELETE FROM chat_threads WHERE service = ?1", [service])?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_remembered_per_service_and_channel_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.chat_thread("svc", "C1").unwrap(), None);
        store
            .set_chat_thread("svc", "C1", Some("1700000000.000100"), Timestamp(5))
            .unwrap();
        assert_eq!(
            store.chat_thread("svc", "C1").unwrap().as_deref(),
            Some("1700000000.000100")
        );
        assert_eq!(store.chat_thread("svc", "C2").unwrap(), None);
        assert_eq!(store.chat_thread("other", "C1").unwrap(), None);
        store
            .set_chat_thread("svc", "C1", None, Timestamp(6))
            .unwrap();
        assert_eq!(store.chat_thread("svc", "C1").unwrap(), None);
    }
}
