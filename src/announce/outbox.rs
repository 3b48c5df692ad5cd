//! The outbox delivery loop: sends due announcements from the store, retries with backoff, never drops one.
//!
//! Crash safety comes from the order of operations: a row is only marked delivered after
//! the transport accepted it. A crash between the two leaves it pending, so it is sent once
//! more on restart, with the same stored Message-ID; a crash before sending just sends it
//! later. Nothing is ever lost, and a repeat is at most one and recognisable.

use super::webhook::Webhooks;
use super::Mailer;
use crate::clock::Timestamp;
use crate::store::{OutboxItem, Store, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// How often the loop looks for due rows when nobody wakes it (retries come due this way).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// First retry delay; it doubles with each failed attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Retry delays never grow past this, so a relay that comes back is used within minutes.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
/// Rows taken per pass; a full batch makes the loop go again at once.
pub const BATCH: usize = 32;

/// One delivery attempt, reported to the shell (which logs it and updates metrics).
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The row as it was before this attempt.
    pub item: OutboxItem,
    /// The transport's detail (`.eml` path or SMTP reply), or the error text.
    pub result: Result<String, String>,
    pub at: Timestamp,
}

/// A transport the outbox can hand a row to: e-mail, webhooks, or both by channel.
pub trait Deliver: Send + Sync {
    /// Sends one row; `Ok` carries what the receiver said, `Err` why it did not take it
    /// (never a secret).
    fn deliver(&self, item: &OutboxItem) -> impl Future<Output = Result<String, String>> + Send;
}

impl Deliver for Mailer {
    async fn deliver(&self, item: &OutboxItem) -> Result<String, String> {
        self.send(item).await.map_err(|e| e.to_string())
    }
}

/// Every transport of a running daemon, chosen by the row's channel.
pub struct Transports {
    pub mailer: Mailer,
    pub webhooks: Webhooks,
}

impl Deliver for Transports {
    async fn deliver(&self, item: &OutboxItem) -> Result<String, String> {
        match item.channel.as_str() {
            "webhook" => self.webhooks.send(item).await.map_err(|e| e.to_string()),
            _ => self.mailer.send(item).await.map_err(|e| e.to_string()),
        }
    }
}

/// The wait before the next attempt after `attempts` failed ones (1 -> 1s, 2 -> 2s, ... capped).
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP)
}

/// Runs until `shutdown` turns true (or its sender is dropped): on `wake` (after a commit)
/// or every `POLL_INTERVAL`, delivers every due row.
pub async fn run<D: Deliver + 'static>(
    store: Arc<Store>,
    mailer: Arc<D>,
    wake: Arc<Notify>,
    events: mpsc::UnboundedSender<Delivery>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        // A pass against a relay that swallows packets can take BATCH x SMTP_TIMEOUT, so
        // shutdown interrupts it. That is safe: an interrupted send leaves its row pending
        // (sent again later with the same Message-ID), and a started store write runs to
        // completion on the blocking pool.
        let pass = tokio::select! {
            r = deliver_due(&store, mailer.as_ref(), Timestamp::now(), BATCH) => r,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let full_batch = match pass {
            Ok(done) => {
                let full = done.len() == BATCH;
                for d in done {
                    // A closed channel only means nobody listens any more; delivery goes on.
                    let _ = events.send(d);
                }
                full
            }
            Err(e) => {
                // The rows are still in the store; they will be tried again on the next pass.
                tracing::error!(error = %e, "outbox: cannot read due announcements");
                false
            }
        };
        if full_batch {
            continue;
        }
        tokio::select! {
            // `Notify` keeps a permit when nobody waits, so a commit that happened while this
            // loop was sending still wakes it here.
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            // Returns on `true`, or when the sender is gone (nobody can stop us any more).
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// One pass: sends every row due at `now` (up to `limit`) and records each result.
/// Returns what happened to each, in order. Store reads happen off the async threads.
pub async fn deliver_due<D: Deliver>(
    store: &Arc<Store>,
    mailer: &D,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    let due = blocking(store, move |s| s.due_announcements(now, limit)).await?;
    let mut out = Vec::with_capacity(due.len());
    for item in due {
        out.push(deliver_one(store, mailer, item).await);
    }
    Ok(out)
}

async fn deliver_one<D: Deliver>(store: &Arc<Store>, mailer: &D, item: OutboxItem) -> Delivery {
    let sent = mailer.deliver(&item).await;
    let at = Timestamp::now();
    let id = item.id;
    let result = match sent {
        Ok(detail) => {
            let d = detail.clone();
            if let Err(e) = blocking(store, move |s| s.mark_delivered(id, at, &d)).await {
                // Sent but not recorded: the row stays pending and will be sent once more
                // with the same Message-ID. Loud, because it is a store problem.
                tracing::error!(outbox_id = id, error = %e, "outbox: sent but could not mark delivered");
            }
            Ok(detail)
        }
        Err(error) => {
            let next = at.plus(backoff(item.attempts.saturating_add(1)));
            let msg = error.clone();
            if let Err(se) = blocking(store, move |s| s.mark_failed(id, at, &msg, next)).await {
                tracing::error!(outbox_id = id, error = %se, "outbox: could not record a failed attempt");
            }
            Err(error)
        }
    };
    Delivery { item, result, at }
}

/// Runs a short store call on the blocking pool, so SQLite's fsyncs never stall the runtime.
async fn blocking<T, F>(store: &Arc<Store>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r,
        // The closure panicked: surface it (a bug), instead of hiding it from the caller.
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmailConfig, EmailTransport};
    use crate::failover::{Cause, State, Transition};
    use crate::store::{NewAnnouncement, OutboxStatus};

    #[test]
    fn backoff_doubles_from_one_second_and_stops_at_five_minutes() {
        let secs: Vec<u64> = (1..=11).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(0), BACKOFF_BASE);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    fn commit(store: &Store) -> i64 {
        let t = Transition {
            service: "ticket-submission".into(),
            from: State::Operational,
            to: State::FailedOver,
            cause: Cause::PrimaryDown,
            at: Timestamp(0),
            actor: "system".into(),
            reason: "test".into(),
            evidence: vec![],
        };
        let a = NewAnnouncement {
            audience: "customers".into(),
            channel: "email".into(),
            recipients: vec!["announce@example.com".into()],
            subject: "switched".into(),
            text: "use the backup".into(),
            html: None,
        };
        store.commit_transition(&t, "v", &[a]).unwrap().outbox_ids[0]
    }

    #[tokio::test]
    async fn a_failed_send_stays_pending_with_backoff() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let id = commit(&store);
        // Port 9 on loopback ("discard") is closed in test environments: connection refused.
        let cfg = EmailConfig {
            from: "status@example.com".into(),
            transport: EmailTransport::Smtp {
                url: "smtp://127.0.0.1:9".into(),
            },
        };
        let mailer = Mailer::with_password(&cfg, None).unwrap();
        let before = Timestamp::now();
        let done = deliver_due(&store, &mailer, Timestamp(i64::MAX), 10)
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        assert!(done[0].result.is_err());
        let row = store.outbox_item(id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Pending);
        assert_eq!(row.attempts, 1);
        assert!(row.next_attempt_at >= before.plus(Duration::from_secs(1)));
        assert!(row.last_error.is_some());
    }

    #[tokio::test]
    async fn the_file_transport_delivers_once_and_the_next_pass_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in_memory().unwrap());
        let id = commit(&store);
        let cfg = EmailConfig {
            from: "status@example.com".into(),
            transport: EmailTransport::File {
                dir: dir.path().join("mail"),
            },
        };
        let mailer = Mailer::with_password(&cfg, None).unwrap();
        let done = deliver_due(&store, &mailer, Timestamp::now(), 10)
            .await
            .unwrap();
        let path = done[0].result.clone().unwrap();
        assert!(path.ends_with(".eml"), "{path}");
        assert!(std::path::Path::new(&path).is_file());
        let row = store.outbox_item(id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Delivered);
        assert_eq!(row.detail.as_deref(), Some(path.as_str()));
        assert!(deliver_due(&store, &mailer, Timestamp(i64::MAX), 10)
            .await
            .unwrap()
            .is_empty());
    }

    /// Starts `run` on an empty store; returns the task and the shutdown sender.
    fn spawn_run() -> (
        tokio::task::JoinHandle<()>,
        watch::Sender<bool>,
        tempfile::TempDir,
    ) {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmailConfig {
            from: "status@example.com".into(),
            transport: EmailTransport::File {
                dir: dir.path().to_path_buf(),
            },
        };
        let mailer = Arc::new(Mailer::with_password(&cfg, None).unwrap());
        let (tx, _rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(store, mailer, Arc::new(Notify::new()), tx, stop_rx));
        (task, stop, dir)
    }

    async fn returns(task: tokio::task::JoinHandle<()>) {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run returns")
            .unwrap();
    }

    #[tokio::test]
    async fn run_stops_on_shutdown() {
        let (task, stop, _dir) = spawn_run();
        tokio::task::yield_now().await;
        stop.send(true).unwrap();
        returns(task).await;
    }

    #[tokio::test]
    async fn run_stops_when_the_shutdown_sender_is_dropped() {
        let (task, stop, _dir) = spawn_run();
        tokio::task::yield_now().await;
        drop(stop);
        returns(task).await;
    }
}
