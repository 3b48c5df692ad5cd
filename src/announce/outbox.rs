//! The outbox delivery loop: sends due announcements from the store, retries with backoff, never drops one.
//!
//! Crash safety comes from the order of operations: a row is only marked delivered after
//! the transport accepted it. A crash between the two leaves it pending, so it is sent once
//! more on restart, with the same stored Message-ID; a crash before sending just sends it
//! later. Nothing is ever lost, and a repeat is at most one and recognisable.
//!
//! A row that still fails after `give_up_after` (`[email]`, default 24h) is marked
//! `given_up`: kept in the store with its last error, reported as a delivery with
//! `given_up = true` so the shell raises `switchboard_outbox_given_up_total`, and not retried.

use super::chat::Chat;
use super::group;
use super::render::Templates;
use super::statuspage_push::StatuspagePush;
pub use super::transport::{Deliver, Failure, Receipt};
use super::webhook::Webhooks;
use super::zendesk::ZendeskArticles;
use super::Mailer;
use crate::clock::Timestamp;
use crate::store::{Composed, OutboxItem, StoreError, StoreHandle};
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

/// The default give-up age (`[email] give_up_after`).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One delivery attempt, reported to the shell (which logs it and updates metrics).
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The row as it was before this attempt.
    pub item: OutboxItem,
    /// The transport's detail (`.eml` path or SMTP reply), or the error text.
    pub result: Result<String, String>,
    pub at: Timestamp,
    /// This failure was the last: the row is older than the give-up age and is no longer
    /// retried.
    pub given_up: bool,
    /// The kind of the audit record this attempt appended (its final result, delivered or
    /// given up, is proof in the chain), for `switchboard_audit_records_total`.
    pub audited: Option<&'static str>,
}

impl Deliver for Mailer {
    async fn deliver(&self, item: &OutboxItem) -> Result<Receipt, Failure> {
        self.send(item)
            .await
            .map(Receipt::from)
            .map_err(|e| e.to_string().into())
    }
}

/// Every transport of a running daemon, chosen by the row's channel.
pub struct Transports {
    pub mailer: Mailer,
    pub webhooks: Webhooks,
    /// `[statuspage_push]`, when configured.
    pub statuspage: Option<StatuspagePush>,
    /// `[chat]`, when configured.
    pub chat: Option<Chat>,
    /// The Help Center articles of `[[on_switch]] kind = "zendesk_article"`, when any.
    pub zendesk: Option<ZendeskArticles>,
}

impl Deliver for Transports {
    async fn deliver(&self, item: &OutboxItem) -> Result<Receipt, Failure> {
        match item.channel.as_str() {
            "webhook" => self
                .webhooks
                .deliver(item)
                .await
                .map_err(|e| e.to_string().into()),
            "statuspage" => match &self.statuspage {
                Some(p) => p.send(item).await,
                None => Err("[statuspage_push] is no longer configured"
                    .to_string()
                    .into()),
            },
            "zendesk" => match &self.zendesk {
                Some(z) => z.send(item).await,
                None => Err("no zendesk_article is configured any more"
                    .to_string()
                    .into()),
            },
            "chat" => match &self.chat {
                Some(c) => c.send(item).await,
                None => Err("[chat] is no longer configured".to_string().into()),
            },
            _ => self.mailer.deliver(item).await,
        }
    }
}

/// The wait before the next attempt after `attempts` failed ones (1 -> 1s, 2 -> 2s, ... capped).
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP)
}

/// What composing groups did, reported to the shell (which keeps the metrics).
#[derive(Clone, Debug, PartialEq)]
pub enum GroupEvent {
    /// A part was not sent, and why (`undone`, `superseded`).
    Suppressed {
        audience: String,
        kind: String,
        reason: String,
    },
    /// Parts still waiting for their group, by audience (every audience that has any).
    Waiting(Vec<(String, u64)>),
}

/// How the loop composes grouped e-mail: the templates of grouped messages, and where it
/// reports what it did.
#[derive(Clone, Debug)]
pub struct Grouping {
    pub templates: Arc<Templates>,
    pub events: mpsc::UnboundedSender<GroupEvent>,
}

impl Grouping {
    /// The built-in templates; events go nowhere.
    pub fn quiet() -> Grouping {
        Grouping {
            templates: Arc::new(Templates::embedded()),
            events: mpsc::unbounded_channel().0,
        }
    }
}

/// Composes every group due at `now` into its outbox row (one transaction), and reports
/// suppressed parts and what still waits.
pub async fn compose_due(
    store: &StoreHandle,
    grouping: &Grouping,
    now: Timestamp,
) -> Result<Composed, StoreError> {
    let templates = grouping.templates.clone();
    let composed = store
        .write(move |s| {
            s.compose_groups(now, |waiting, last| {
                group::plan(waiting, last, now, &templates)
            })
        })
        .await?;
    for (audience, kind, reason) in &composed.suppressed {
        // A closed channel only means nobody listens any more.
        let _ = grouping.events.send(GroupEvent::Suppressed {
            audience: audience.clone(),
            kind: kind.clone(),
            reason: reason.clone(),
        });
    }
    let waiting = store.read(|s| s.waiting_parts()).await?;
    let _ = grouping.events.send(GroupEvent::Waiting(waiting));
    Ok(composed)
}

/// Runs until `shutdown` turns true (or its sender is dropped): on `wake` (after a commit)
/// or every `POLL_INTERVAL`, delivers every due row. Gives up after [`GIVE_UP_AFTER`].
pub async fn run<D: Deliver + 'static>(
    store: StoreHandle,
    mailer: Arc<D>,
    wake: Arc<Notify>,
    events: mpsc::UnboundedSender<Delivery>,
    shutdown: watch::Receiver<bool>,
) {
    run_with(store, mailer, wake, events, shutdown, GIVE_UP_AFTER).await
}

/// [`run`] with the give-up age chosen by the caller (`[email] give_up_after`).
pub async fn run_with<D: Deliver + 'static>(
    store: StoreHandle,
    mailer: Arc<D>,
    wake: Arc<Notify>,
    events: mpsc::UnboundedSender<Delivery>,
    shutdown: watch::Receiver<bool>,
    give_up_after: Duration,
) {
    run_grouped(
        store,
        mailer,
        wake,
        events,
        shutdown,
        give_up_after,
        Grouping::quiet(),
    )
    .await
}

/// [`run_with`], composing grouped e-mail with `grouping` before each delivery pass. Groups
/// come due by time alone, so the `POLL_INTERVAL` pass is what sends them (within a second).
pub async fn run_grouped<D: Deliver + 'static>(
    store: StoreHandle,
    mailer: Arc<D>,
    wake: Arc<Notify>,
    events: mpsc::UnboundedSender<Delivery>,
    mut shutdown: watch::Receiver<bool>,
    give_up_after: Duration,
    grouping: Grouping,
) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if let Err(e) = compose_due(&store, &grouping, Timestamp::now()).await {
            // The parts are still in the store; the next pass composes them.
            tracing::error!(error = %e, "outbox: cannot compose grouped announcements");
        }
        // A pass against a relay that swallows packets can take BATCH x SMTP_TIMEOUT, so
        // shutdown interrupts it. That is safe: an interrupted send leaves its row pending
        // (sent again later with the same Message-ID), and a queued store write runs to
        // completion on the store's writer thread.
        let pass = tokio::select! {
            r = deliver_due_with(&store, mailer.as_ref(), Timestamp::now(), BATCH, give_up_after) => r,
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
/// Returns what happened to each, in order. Reads go to a read-only connection and
/// writes to the store's writer thread, so SQLite's fsyncs never stall the runtime.
pub async fn deliver_due<D: Deliver>(
    store: &StoreHandle,
    mailer: &D,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    deliver_due_with(store, mailer, now, limit, GIVE_UP_AFTER).await
}

/// [`deliver_due`] with the give-up age chosen by the caller.
pub async fn deliver_due_with<D: Deliver>(
    store: &StoreHandle,
    mailer: &D,
    now: Timestamp,
    limit: usize,
    give_up_after: Duration,
) -> Result<Vec<Delivery>, StoreError> {
    let due = store.read(move |s| s.due_announcements(now, limit)).await?;
    let mut out = Vec::with_capacity(due.len());
    for item in due {
        out.push(deliver_one(store, mailer, item, give_up_after).await);
    }
    Ok(out)
}

/// The wait before the next attempt: the backoff, or longer if the receiver asked for it.
pub fn retry_delay(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let b = backoff(attempts);
    match retry_after {
        // Capped like the backoff, so a hostile or confused receiver cannot park a row for days.
        Some(r) => r.min(BACKOFF_CAP).max(b),
        None => b,
    }
}

async fn deliver_one<D: Deliver>(
    store: &StoreHandle,
    mailer: &D,
    item: OutboxItem,
    give_up_after: Duration,
) -> Delivery {
    let sent = mailer.deliver(&item).await;
    let at = Timestamp::now();
    let id = item.id;
    let mut given_up = false;
    let mut audited = None;
    let result = match sent {
        Ok(receipt) => {
            let detail = receipt.reply.clone();
            match store
                .write(move |s| s.mark_delivered(id, at, receipt))
                .await
            {
                Ok(true) => audited = Some(crate::audit::KIND_ANNOUNCEMENT_DELIVERED),
                Ok(false) => {}
                // Sent but not recorded: the row stays pending and will be sent once more
                // with the same Message-ID. Loud, because it is a store problem.
                Err(e) => {
                    tracing::error!(outbox_id = id, error = %e, "outbox: sent but could not mark delivered")
                }
            }
            Ok(detail)
        }
        Err(failure) => {
            let msg = failure.message.clone();
            // The last attempt falls at the give-up age itself, not a backoff step past it.
            let deadline = item.created_at.plus(give_up_after);
            let next = at
                .plus(retry_delay(
                    item.attempts.saturating_add(1),
                    failure.retry_after,
                ))
                .min(deadline);
            given_up = at >= deadline;
            let recorded = if given_up {
                store.write(move |s| s.mark_given_up(id, at, &msg)).await
            } else {
                store
                    .write(move |s| s.mark_failed(id, at, &msg, next))
                    .await
                    .map(|()| false)
            };
            match recorded {
                Ok(true) => audited = Some(crate::audit::KIND_ANNOUNCEMENT_GIVEN_UP),
                Ok(false) => {}
                Err(se) => {
                    tracing::error!(outbox_id = id, error = %se, "outbox: could not record a failed attempt")
                }
            }
            Err(failure.message)
        }
    };
    Delivery {
        item,
        result,
        at,
        given_up,
        audited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmailConfig, EmailTransport};
    use crate::failover::{Cause, State, Transition};
    use crate::store::Store;
    use crate::store::{NewAnnouncement, OutboxStatus};

    #[test]
    fn backoff_doubles_from_one_second_and_stops_at_five_minutes() {
        let secs: Vec<u64> = (1..=11).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(0), BACKOFF_BASE);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    fn commit(store: &Store) -> i64 {
        commit_at(store, Timestamp::now())
    }

    fn commit_at(store: &Store, at: Timestamp) -> i64 {
        let t = Transition {
            service: "ticket-submission".into(),
            from: State::Operational,
            to: State::FailedOver,
            cause: Cause::PrimaryDown,
            at,
            actor: "system".into(),
            reason: "test".into(),
            evidence: vec![],
            public_message: None,
        };
        let a = NewAnnouncement {
            audience: "customers".into(),
            channel: "email".into(),
            kind: "failover".into(),
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
        let handle = StoreHandle::shared(store.clone());
        let id = commit(&store);
        // Port 9 on loopback ("discard") is closed in test environments: connection refused.
        let cfg = EmailConfig::new(
            "status@example.com",
            EmailTransport::Smtp {
                url: "smtp://127.0.0.1:9".into(),
            },
        );
        let mailer = Mailer::with_password(&cfg, None).unwrap();
        let before = Timestamp::now();
        let done = deliver_due(&handle, &mailer, Timestamp(i64::MAX), 10)
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

    fn refused() -> Mailer {
        // Port 9 on loopback ("discard") is closed in test environments: connection refused.
        let cfg = EmailConfig::new(
            "status@example.com",
            EmailTransport::Smtp {
                url: "smtp://127.0.0.1:9".into(),
            },
        );
        Mailer::with_password(&cfg, None).unwrap()
    }

    #[tokio::test]
    async fn a_row_still_failing_at_the_give_up_age_is_given_up_and_kept() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let handle = StoreHandle::shared(store.clone());
        let give_up = Duration::from_secs(3600);
        // Written 59 minutes ago: one more failure is retried, but no later than the age.
        let created = Timestamp(Timestamp::now().as_millis() - 59 * 60 * 1000);
        let id = commit_at(&store, created);
        let done = deliver_due_with(&handle, &refused(), Timestamp(i64::MAX), 10, give_up)
            .await
            .unwrap();
        assert!(!done[0].given_up);
        let row = store.outbox_item(id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Pending);
        assert!(
            row.next_attempt_at <= created.plus(give_up),
            "the last try falls at the age"
        );

        // At the age it fails again: given up, kept with its error, never due again.
        let done = deliver_due_with(
            &handle,
            &refused(),
            Timestamp(i64::MAX),
            10,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(done.len(), 1);
        assert!(done[0].given_up);
        assert!(done[0].result.is_err());
        let row = store.outbox_item(id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::GivenUp);
        assert_eq!(row.attempts, 2);
        assert!(row.given_up_at.is_some());
        assert!(row
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("127.0.0.1:9"));
        assert!(store
            .due_announcements(Timestamp(i64::MAX), 10)
            .unwrap()
            .is_empty());
        assert_eq!(store.outbox_backlog().unwrap().0, 0);
    }

    #[test]
    fn retry_after_is_honoured_when_longer_than_the_backoff_and_capped() {
        assert_eq!(retry_delay(1, None), Duration::from_secs(1));
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_delay(4, Some(Duration::from_secs(2))),
            Duration::from_secs(8)
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(86_400))),
            BACKOFF_CAP
        );
    }

    #[tokio::test]
    async fn the_file_transport_delivers_once_and_the_next_pass_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in_memory().unwrap());
        let handle = StoreHandle::shared(store.clone());
        let id = commit(&store);
        let cfg = EmailConfig::new(
            "status@example.com",
            EmailTransport::File {
                dir: dir.path().join("mail"),
            },
        );
        let mailer = Mailer::with_password(&cfg, None).unwrap();
        let done = deliver_due(&handle, &mailer, Timestamp::now(), 10)
            .await
            .unwrap();
        let path = done[0].result.clone().unwrap();
        assert!(path.ends_with(".eml"), "{path}");
        assert!(std::path::Path::new(&path).is_file());
        let row = store.outbox_item(id).unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Delivered);
        assert_eq!(row.detail.as_deref(), Some(path.as_str()));
        assert!(deliver_due(&handle, &mailer, Timestamp(i64::MAX), 10)
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
        let handle = StoreHandle::shared(store.clone());
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmailConfig::new(
            "status@example.com",
            EmailTransport::File {
                dir: dir.path().to_path_buf(),
            },
        );
        let mailer = Arc::new(Mailer::with_password(&cfg, None).unwrap());
        let (tx, _rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(handle, mailer, Arc::new(Notify::new()), tx, stop_rx));
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
