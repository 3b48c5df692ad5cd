//! The daemon's background tasks: the probe loops and their supervisor, and the tasks that keep review, grouping, delivery and stored-fact metrics current.

use super::handle::Msg;
use crate::announce::outbox::{Delivery, GroupEvent};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, Config};
use crate::metrics::Metrics;
use crate::probe;
use crate::store::{Store, StoreError, StoreHandle};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{error, info, warn};

/// Spreads checks over their interval so that many checks do not fire together, and the
/// vantages of a cluster over each check's interval: vantage `i` of `n` probes `i/n` of an
/// interval after the first (3 vantages at 30 s: one probe of the check every 10 s).
fn first_delay(check: &CheckSpec, (index, count): (u32, u32)) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    check.name.hash(&mut h);
    let ms = check.interval.as_millis().max(1) as u64;
    let offset = ms * u64::from(index) / u64::from(count.max(1));
    Duration::from_millis((h.finish() % ms + offset) % ms)
}

/// What a probe loop needs: which check (by position in `config`, valid for its generation).
#[derive(Clone)]
pub(super) struct ProbeLoop {
    pub(super) generation: u64,
    pub(super) si: usize,
    pub(super) ci: usize,
    pub(super) config: Arc<Config>,
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) permits: Arc<Semaphore>,
    /// Judged instead of probed for a heartbeat check.
    pub(super) heartbeats: Arc<crate::probe::heartbeat::Heartbeats>,
    /// This node's place among the cluster's vantages (index, count); `(0, 1)` alone.
    pub(super) slot: (u32, u32),
}

/// Runs `probe_loop`, starting it again (after a second, counted and logged) if it panics,
/// so a bug in one probe never silently stops a check from being probed.
pub(super) async fn supervised_probe_loop(
    p: ProbeLoop,
    shutdown: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    let spec = &p.config.services[p.si];
    let (service, check) = (spec.id.clone(), spec.checks[p.ci].name.clone());
    let metrics = p.metrics.clone();
    restart_on_panic(
        || probe_loop(p.clone(), shutdown.clone(), stop.clone()),
        || {
            error!(service, check, "probe loop panicked; restarting it in 1s");
            metrics.probe_loop_restarted(&service, &check);
        },
    )
    .await;
}

/// Runs the future `make` builds until it finishes without panicking; after each panic calls
/// `on_panic`, waits a second (a loop that always panics must not spin) and starts again.
async fn restart_on_panic<F, Fut>(make: F, on_panic: impl Fn())
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make()).await {
            Err(e) if e.is_panic() => {
                on_panic();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return,
        }
    }
}

/// Probes one check until shutdown or until its generation is stopped by a reload: at its
/// interval, or at `retry_interval` while the core wants confirmation. Each probe is bounded
/// by the check's timeout inside `probe::run`.
async fn probe_loop(p: ProbeLoop, shutdown: watch::Receiver<bool>, stop: watch::Receiver<bool>) {
    let ProbeLoop {
        generation,
        si,
        ci,
        config,
        tx,
        metrics,
        permits,
        heartbeats,
        slot,
    } = p;
    // Shared, not cloned: ten thousand checks would otherwise hold ten thousand copies.
    let check = &config.services[si].checks[ci];
    let mut due = tokio::time::Instant::now() + first_delay(check, slot);
    // A vendor feed that answered 429 or 5xx is polled less often until it answers again.
    let mut backoff: Option<Duration> = None;
    // One wait for the end of the loop, for its whole life: every `select!` below polls the
    // same future, which stays registered with both notifiers. A fresh `wait_for` per select
    // registered (and unregistered) two waiters three times per probe.
    let ended = ended(shutdown, stop);
    tokio::pin!(ended);
    // One timer entry, reset for each probe rather than made anew.
    let sleep = tokio::time::sleep_until(due);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            _ = &mut ended => return,
            _ = &mut sleep => {}
        }
        // Waiting for a permit counts as schedule lag: that is what the limit costs.
        let permit = tokio::select! {
            biased;
            _ = &mut ended => return,
            p = permits.acquire() => p,
        };
        let started = tokio::time::Instant::now();
        metrics.schedule_lag(started.saturating_duration_since(due).as_secs_f64());
        // `probe::run` boxes the probe's state (connections, TLS, cookie jar), so it is
        // allocated only while it runs. Inline, every sleeping loop's task would keep room for
        // the largest probe kind all the time: tens of MiB of resident memory at 10,000 checks.
        let outcome = if let crate::config::CheckKind::Heartbeat(hb) = &check.kind {
            // Nothing to fetch: the heartbeats jobs sent are judged against the deadline.
            heartbeats.judge(check, hb)
        } else {
            tokio::select! {
                biased;
                _ = &mut ended => return,
                o = probe::run(check) => o,
            }
        };
        drop(permit);
        let vendor = outcome.vendor.clone();
        let (reply, confirm) = oneshot::channel();
        let msg = Msg::Outcome {
            generation,
            service: si,
            check: ci,
            outcome: Box::new(outcome),
            reply,
        };
        if tx.send(msg).await.is_err() {
            return;
        }
        let confirm = confirm.await.unwrap_or(false);
        // Confirmation re-probes follow at `retry_interval`; otherwise keep the cadence from the
        // planned start so checks stay spread, but never schedule in the past.
        let now = tokio::time::Instant::now();
        let normal = if confirm {
            (started + check.retry_interval).max(now)
        } else {
            (due + check.interval).max(now)
        };
        let (wait, kept) = probe::vendor_status::next_delay(
            normal.saturating_duration_since(started),
            check.interval,
            backoff,
            vendor.as_deref(),
        );
        if kept.is_some() {
            warn!(
                check = check.name.as_str(),
                "vendor feed throttled or failing; next poll in {}",
                humantime::format_duration(wait)
            );
        }
        backoff = kept;
        due = (started + wait).max(now);
        sleep.as_mut().reset(due);
    }
}

/// Finishes when the daemon shuts down or the loop's generation is stopped (or either sender
/// is gone, which means the same).
async fn ended(mut shutdown: watch::Receiver<bool>, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Rebuilds the series that count stored facts (drills, transitions, announcements, audit
/// records) and reads the gauges the store answers (pending reviews, the outbox backlog),
/// before the first scrape: after a restart, alerts see what they saw before it.
pub(super) fn restore_stored_series(store: &Store, metrics: &Metrics, config: &Config) {
    let services: Vec<&str> = config.services.iter().map(|s| s.id.as_str()).collect();
    match store.metric_facts() {
        Ok(facts) => metrics.restore(&facts, &services),
        Err(e) => {
            metrics.store_error("metric_facts");
            error!("cannot rebuild metrics from the store; counters start at zero: {e}");
        }
    }
    if let Ok((n, oldest)) = store.pending_reviews() {
        metrics.reviews(n, age_of(oldest));
    }
    if let Ok((backlog, oldest)) = store.outbox_backlog() {
        metrics.outbox(backlog, age_of(oldest));
    }
}

/// Seconds since `oldest`, 0 without one.
fn age_of(oldest: Option<Timestamp>) -> f64 {
    oldest
        .map(|t| Timestamp::now().since(t).as_secs_f64())
        .unwrap_or(0.0)
}

/// Keeps `switchboard_reviews_pending` and the oldest pending age current, and the outbox
/// backlog and its oldest age (ages grow by themselves, so they are refreshed on a timer
/// rather than on events).
pub(super) async fn watch_reviews(
    store: StoreHandle,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match store.read(|s| s.pending_reviews()).await {
            Ok((n, oldest)) => {
                let age = oldest
                    .map(|t| Timestamp::now().since(t).as_secs_f64())
                    .unwrap_or(0.0);
                metrics.reviews(n, age);
            }
            Err(e) => {
                metrics.store_error("pending_reviews");
                warn!("cannot count pending reviews: {e}");
            }
        }
        // The outbox's oldest age grows by itself too, also while no delivery is attempted
        // (a row waiting out its backoff).
        if let Ok((backlog, oldest)) = store.read(|s| s.outbox_backlog()).await {
            metrics.outbox(backlog, age_of(oldest));
        }
    }
}

/// Keeps the grouping metrics: suppressed customer announcements (logged, since customers
/// were deliberately told nothing) and the parts still waiting for their group.
pub(super) async fn report_grouping(
    mut rx: mpsc::UnboundedReceiver<GroupEvent>,
    metrics: Arc<Metrics>,
) {
    while let Some(e) = rx.recv().await {
        match e {
            GroupEvent::Suppressed {
                audience,
                kind,
                reason,
            } => {
                metrics.announcements_suppressed(&audience, &reason, 1);
                info!("{kind} e-mail to {audience} not sent: the change was {reason} within its customer_delay");
            }
            GroupEvent::Waiting(by_audience) => metrics.announcements_waiting(&by_audience),
        }
    }
}

/// Logs each delivery in a plain sentence and keeps the announcement metrics.
pub(super) async fn report_deliveries(
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    metrics: Arc<Metrics>,
    store: StoreHandle,
) {
    while let Some(d) = rx.recv().await {
        let what = match d.item.channel.as_str() {
            "webhook" => format!(
                "webhook {} ({})",
                d.item.recipients.join(", "),
                d.item.subject
            ),
            "statuspage" => format!("Statuspage push ({})", d.item.subject),
            "zendesk" => format!(
                "Help Center {} ({})",
                d.item.subject,
                d.item.recipients.join(", ")
            ),
            "chat" => format!("chat message \"{}\"", d.item.subject),
            _ => format!(
                "e-mail to {} ({}) \"{}\"",
                d.item.audience,
                d.item.recipients.join(", "),
                d.item.subject
            ),
        };
        // Rows from before schema version 6 carry no kind; their transition tells it.
        let kind = if d.item.kind.is_empty() {
            "unknown"
        } else {
            d.item.kind.as_str()
        };
        let (channel, audience) = (&d.item.channel, &d.item.audience);
        match &d.result {
            Ok(detail) => {
                metrics.announcement(channel, audience, kind, "success", d.at.as_secs_f64());
                info!("{what}: {detail}");
            }
            Err(e) if d.given_up => {
                metrics.announcement(channel, audience, kind, "given_up", d.at.as_secs_f64());
                error!(
                    "{what} GIVEN UP after {} attempts since {}: {e}; it will not be retried",
                    d.item.attempts + 1,
                    d.item.created_at
                );
            }
            Err(e) => {
                metrics.announcement(channel, audience, kind, "failure", d.at.as_secs_f64());
                warn!("{what} not delivered yet: {e}; will retry");
            }
        }
        // Its final result went into the audit chain with the row (counted as a restart
        // counts it: one record per delivered or given-up row).
        if let Some(kind) = d.audited {
            metrics.audit_recorded(kind);
        }
        let backlog: Result<_, StoreError> = store.read(|s| s.outbox_backlog()).await;
        if let Ok((backlog, oldest)) = backlog {
            let age = oldest
                .map(|t| Timestamp::now().since(t).as_secs_f64())
                .unwrap_or(0.0);
            metrics.outbox(backlog, age);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_probe_loop_is_restarted_and_counted() {
        let runs = Arc::new(AtomicUsize::new(0));
        let panics = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let p = panics.clone();
        restart_on_panic(
            move || {
                let r = r.clone();
                async move {
                    // The first run panics as a probe bug would; the second ends normally.
                    if r.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("bug in a probe");
                    }
                }
            },
            move || {
                p.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "started again after the panic"
        );
        assert_eq!(panics.load(Ordering::SeqCst), 1, "the panic was counted");
    }
}
