//! Probe history for the status page: outcomes summed in memory, flushed to SQLite in batches, kept downsampled.
//!
//! The probe path only adds to an in-memory bucket (`History::record`: one short mutex hold,
//! no allocation in the common case, no I/O). A separate task (`run`) flushes the pending
//! buckets every few seconds in ONE transaction, as five-minute buckets (kept two days) and
//! daily roll-ups (kept 90 days), and rebuilds the read-only `HistoryView` the status page
//! draws its uptime bars and response-time sparklines from. At 10,000 checks that is one
//! write per service per flush, never one per probe.
//!
//! What is counted: the outcomes of a service's primary checks, the channel customers are
//! meant to use; its latency is the probe's total duration.

use crate::clock::Timestamp;
use crate::store::{HistoryRow, Store, StoreError, StoreHandle, DAY_S, FIVE_MINUTES_S};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tracing::error;

/// How many days of uptime bars the page shows and the store keeps.
pub const DAYS: i64 = 90;
/// Hourly points of the response-time sparkline.
pub const SPARK_HOURS: i64 = 24;
/// How often pending buckets are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = DAY_S as i64 * 1000;
const FINE_MS: i64 = FIVE_MINUTES_S as i64 * 1000;
/// Five-minute buckets are kept this long (the daily roll-up keeps the rest).
const FINE_KEEP_MS: i64 = 2 * DAY_MS;

/// Pending sums taken for one flush: per service, (bucket start in ms, sums).
type Taken = Vec<(String, Vec<(i64, Agg)>)>;

/// Where each flush prunes: five-minute buckets older than two days, days older than `DAYS`.
fn prune_before(now: Timestamp) -> (Timestamp, Timestamp) {
    (
        Timestamp(now.0 - FINE_KEEP_MS),
        Timestamp(floor(now.0, DAY_MS) - (DAYS - 1) * DAY_MS),
    )
}

/// Sums over the probes of one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Agg {
    pub ok: u64,
    pub total: u64,
    pub latency_sum_ms: u64,
    pub latency_max_ms: u64,
}

impl Agg {
    pub fn add(&mut self, success: bool, latency_ms: u64) {
        self.ok += u64::from(success);
        self.total += 1;
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(latency_ms);
        self.latency_max_ms = self.latency_max_ms.max(latency_ms);
    }

    pub fn merge(&mut self, other: &Agg) {
        self.ok += other.ok;
        self.total += other.total;
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(other.latency_sum_ms);
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
    }

    /// Share of successful probes, 0.0 to 1.0; `None` without probes.
    pub fn uptime(&self) -> Option<f64> {
        (self.total > 0).then(|| self.ok as f64 / self.total as f64)
    }

    /// Mean probe duration in milliseconds; `None` without probes.
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.total > 0).then(|| self.latency_sum_ms as f64 / self.total as f64)
    }
}

/// What the status page shows of one service: only buckets with probes, oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceHistory {
    /// Day start -> sums, at most `DAYS` days.
    pub days: Vec<(Timestamp, Agg)>,
    /// Hour start -> sums, at most `SPARK_HOURS` hours.
    pub hours: Vec<(Timestamp, Agg)>,
}

impl ServiceHistory {
    /// Uptime over every day shown, `None` without probes.
    pub fn uptime(&self) -> Option<f64> {
        let mut all = Agg::default();
        for (_, a) in &self.days {
            all.merge(a);
        }
        all.uptime()
    }
}

/// The read-only history every page render uses, rebuilt after each flush.
#[derive(Clone, Debug, Default)]
pub struct HistoryView {
    pub services: HashMap<String, Arc<ServiceHistory>>,
}

impl HistoryView {
    pub fn service(&self, id: &str) -> Option<&ServiceHistory> {
        self.services.get(id).map(|s| s.as_ref())
    }
}

fn floor(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width
}

/// Pending sums per service id: (five-minute bucket start, sums), usually one entry.
/// Keys stay after a flush (only the lists are taken), so recording allocates nothing.
type Pending = HashMap<String, Vec<(i64, Agg)>>;

/// Per service: the days and hours kept in memory for the view.
#[derive(Default)]
struct Kept {
    days: BTreeMap<i64, Agg>,
    hours: BTreeMap<i64, Agg>,
}

/// The accumulator and the view of every service, keyed by service id (so a configuration
/// reload that adds, removes or reorders services cannot misattribute a probe).
pub struct History {
    pending: Mutex<Pending>,
    kept: Mutex<HashMap<String, Kept>>,
    view: RwLock<Arc<HistoryView>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data is plain sums; a panic while it was held leaves nothing half-updated that
    // matters more than losing the page's bars, so a poisoned lock is reused.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl History {
    /// An empty history, with room made for `services` (ids) up front.
    pub fn new(services: Vec<String>) -> History {
        let pending = services.iter().map(|s| (s.clone(), Vec::new())).collect();
        let kept = services.into_iter().map(|s| (s, Kept::default())).collect();
        History {
            pending: Mutex::new(pending),
            kept: Mutex::new(kept),
            view: RwLock::new(Arc::new(HistoryView::default())),
        }
    }

    /// `services` with their stored history: the last `DAYS` days and `SPARK_HOURS` hours.
    pub fn load(
        store: &Store,
        services: Vec<String>,
        now: Timestamp,
    ) -> Result<History, StoreError> {
        let history = History::new(services);
        {
            let mut kept = lock(&history.kept);
            let days_since = Timestamp(floor(now.0, DAY_MS) - (DAYS - 1) * DAY_MS);
            for row in store.history(DAY_S, days_since)? {
                let k = kept.entry(row.service.clone()).or_default();
                k.days.entry(row.start.0).or_default().merge(&agg_of(&row));
            }
            let hours_since = Timestamp(floor(now.0, HOUR_MS) - (SPARK_HOURS - 1) * HOUR_MS);
            for row in store.history(FIVE_MINUTES_S, hours_since)? {
                let k = kept.entry(row.service.clone()).or_default();
                let hour = floor(row.start.0, HOUR_MS);
                k.hours.entry(hour).or_default().merge(&agg_of(&row));
            }
        }
        history.rebuild(now);
        Ok(history)
    }

    /// One probe of a primary check of `service` ended at `at`. The hot path: no I/O.
    pub fn record(&self, service: &str, success: bool, latency: Duration, at: Timestamp) {
        let bucket = floor(at.0, FINE_MS);
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let mut pending = lock(&self.pending);
        let list = match pending.get_mut(service) {
            Some(list) => list,
            // A service added by a reload: its first probe makes room for it.
            None => pending.entry(service.to_owned()).or_default(),
        };
        match list.iter_mut().find(|(b, _)| *b == bucket) {
            Some((_, agg)) => agg.add(success, ms),
            None => {
                let mut agg = Agg::default();
                agg.add(success, ms);
                list.push((bucket, agg));
            }
        }
    }

    /// Replaces the view: for previews and tests that have no store behind them.
    pub fn set_view(&self, view: HistoryView) {
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }

    /// The latest view; cheap (an `Arc` clone).
    pub fn view(&self) -> Arc<HistoryView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes every pending bucket in one transaction (on the store's writer thread) and
    /// updates the view. On a store error the pending sums are put back, to be written by the
    /// next flush. Returns the rows written.
    pub async fn flush_to(&self, store: &StoreHandle, now: Timestamp) -> Result<usize, StoreError> {
        let (taken, rows) = self.take_pending();
        let (prune_fine, prune_days) = prune_before(now);
        let res = store
            .write(move |s| {
                s.add_history(&rows, prune_fine, prune_days)
                    .map(|()| rows.len())
            })
            .await;
        self.settle(taken, res, now)
    }

    /// [`History::flush_to`] on a store in hand, on the calling thread: for tests and
    /// previews that have no writer thread.
    pub fn flush(&self, store: &Store, now: Timestamp) -> Result<usize, StoreError> {
        let (taken, rows) = self.take_pending();
        let (prune_fine, prune_days) = prune_before(now);
        let res = store
            .add_history(&rows, prune_fine, prune_days)
            .map(|()| rows.len());
        self.settle(taken, res, now)
    }

    /// After a write: keeps what was written and rebuilds the view, or puts it all back.
    fn settle(
        &self,
        taken: Taken,
        written: Result<usize, StoreError>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        match written {
            Ok(n) => {
                self.keep(&taken);
                self.rebuild(now);
                Ok(n)
            }
            Err(e) => {
                self.put_back(taken);
                Err(e)
            }
        }
    }

    /// Takes the pending sums, and the rows that write them (five-minute and daily buckets).
    fn take_pending(&self) -> (Taken, Vec<HistoryRow>) {
        let taken: Taken = {
            let mut pending = lock(&self.pending);
            pending
                .iter_mut()
                .filter(|(_, list)| !list.is_empty())
                .map(|(id, list)| (id.clone(), std::mem::take(list)))
                .collect()
        };
        let mut rows = Vec::new();
        for (id, list) in &taken {
            let mut days: BTreeMap<i64, Agg> = BTreeMap::new();
            for (bucket, agg) in list {
                rows.push(row(id, FIVE_MINUTES_S, *bucket, agg));
                days.entry(floor(*bucket, DAY_MS)).or_default().merge(agg);
            }
            for (day, agg) in days {
                rows.push(row(id, DAY_S, day, &agg));
            }
        }
        (taken, rows)
    }

    /// Returns sums the store did not take to the pending ones (which may have grown since).
    fn put_back(&self, taken: Taken) {
        let mut pending = lock(&self.pending);
        for (id, list) in taken {
            let back = pending.entry(id).or_default();
            for (bucket, agg) in list {
                match back.iter_mut().find(|(b, _)| *b == bucket) {
                    Some((_, a)) => a.merge(&agg),
                    None => back.push((bucket, agg)),
                }
            }
        }
    }

    /// Adds written sums to what the view is built from.
    fn keep(&self, taken: &Taken) {
        let mut kept = lock(&self.kept);
        for (id, list) in taken {
            let k = kept.entry(id.clone()).or_default();
            for (bucket, agg) in list {
                k.days.entry(floor(*bucket, DAY_MS)).or_default().merge(agg);
                k.hours
                    .entry(floor(*bucket, HOUR_MS))
                    .or_default()
                    .merge(agg);
            }
        }
    }

    /// Drops what fell out of the window and publishes a fresh view.
    fn rebuild(&self, now: Timestamp) {
        let first_day = floor(now.0, DAY_MS) - (DAYS - 1) * DAY_MS;
        let first_hour = floor(now.0, HOUR_MS) - (SPARK_HOURS - 1) * HOUR_MS;
        let mut kept = lock(&self.kept);
        let mut services = HashMap::with_capacity(kept.len());
        for (id, k) in kept.iter_mut() {
            k.days.retain(|d, _| *d >= first_day);
            k.hours.retain(|h, _| *h >= first_hour);
            let history = ServiceHistory {
                days: k.days.iter().map(|(d, a)| (Timestamp(*d), *a)).collect(),
                hours: k.hours.iter().map(|(h, a)| (Timestamp(*h), *a)).collect(),
            };
            services.insert(id.clone(), Arc::new(history));
        }
        let view = Arc::new(HistoryView { services });
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = view;
    }
}

fn row(service: &str, resolution_s: u32, start: i64, agg: &Agg) -> HistoryRow {
    HistoryRow {
        service: service.to_owned(),
        resolution_s,
        start: Timestamp(start),
        ok: agg.ok,
        total: agg.total,
        latency_sum_ms: agg.latency_sum_ms,
        latency_max_ms: agg.latency_max_ms,
    }
}

fn agg_of(row: &HistoryRow) -> Agg {
    Agg {
        ok: row.ok,
        total: row.total,
        latency_sum_ms: row.latency_sum_ms,
        latency_max_ms: row.latency_max_ms,
    }
}

/// Flushes `history` every `FLUSH_EVERY` until shutdown, and once more on the way out.
///
/// `store` is the daemon's `StoreHandle` (an `Arc<Store>` still converts, with a writer
/// thread of its own, for callers that hold the store itself).
pub async fn run(
    history: Arc<History>,
    store: impl Into<StoreHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let store: StoreHandle = store.into();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.wait_for(|s| *s) => true,
        };
        if let Err(e) = history.flush_to(&store, Timestamp::now()).await {
            error!("probe history not written (kept for the next try): {e}");
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_773_481_337_381); // 2026-03-14T09:42:17.381Z

    fn services() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[tokio::test]
    async fn probes_are_summed_in_memory_and_written_once_per_bucket() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let handle = StoreHandle::shared(store.clone());
        let h = History::new(services());
        for i in 0..1000 {
            h.record("a", i % 10 != 0, Duration::from_millis(20 + i % 7), NOW);
        }
        h.record("b", false, Duration::from_millis(5), NOW);
        assert!(h.view().service("a").is_none(), "nothing flushed yet");
        // Two services, one five-minute bucket and one day each: four rows for 1001 probes.
        assert_eq!(h.flush_to(&handle, NOW).await.unwrap(), 4);
        let a = h.view().service("a").cloned().unwrap();
        assert_eq!(a.days.len(), 1);
        assert_eq!(a.days[0].1.total, 1000);
        assert_eq!(a.days[0].1.ok, 900);
        assert_eq!(a.days[0].1.latency_max_ms, 26);
        assert_eq!(a.hours.len(), 1);
        assert_eq!(a.uptime(), Some(0.9));
        let b = h.view().service("b").cloned().unwrap();
        assert_eq!(b.uptime(), Some(0.0));
        // An empty flush writes nothing and keeps the view.
        assert_eq!(h.flush_to(&handle, NOW).await.unwrap(), 0);
        assert_eq!(h.view().service("a").cloned().unwrap(), a);

        // A restart reads the same history back from the store.
        let again = History::load(&store, services(), NOW).unwrap();
        assert_eq!(again.view().service("a").cloned().unwrap(), a);
    }

    #[tokio::test]
    async fn days_roll_up_and_fall_out_after_90_days() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let handle = StoreHandle::shared(store.clone());
        let h = History::new(services());
        let day = |n: i64| Timestamp(NOW.0 - n * DAY_MS);
        for n in [0, 1, 89, 90, 120] {
            h.record("a", true, Duration::from_millis(10), day(n));
        }
        h.flush_to(&handle, NOW).await.unwrap();
        let a = h.view().service("a").cloned().unwrap();
        let ages: Vec<i64> = a
            .days
            .iter()
            .map(|(d, _)| (floor(NOW.0, DAY_MS) - d.0) / DAY_MS)
            .collect();
        assert_eq!(ages, [89, 1, 0]);
        // The store pruned the same days, and the fine buckets older than two days.
        assert_eq!(store.history(DAY_S, Timestamp(0)).unwrap().len(), 3);
        assert_eq!(
            store.history(FIVE_MINUTES_S, Timestamp(0)).unwrap().len(),
            2
        );
        // Only the last 24 hours make the sparkline.
        assert_eq!(a.hours.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_write_keeps_the_sums_for_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/h.db");
        let handle = StoreHandle::open(&path).unwrap();
        let h = History::new(services());
        h.record("a", true, Duration::from_millis(10), NOW);
        std::fs::remove_dir_all(dir.path().join("var")).unwrap();
        assert!(h.flush_to(&handle, NOW).await.is_err());
        h.record("a", false, Duration::from_millis(30), NOW);
        drop(handle);
        let handle = StoreHandle::open(&path).unwrap();
        h.flush_to(&handle, NOW).await.unwrap();
        let a = h.view().service("a").cloned().unwrap();
        assert_eq!((a.days[0].1.ok, a.days[0].1.total), (1, 2));
    }

    #[tokio::test]
    async fn a_service_added_by_a_reload_is_counted_under_its_own_id() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let handle = StoreHandle::shared(store.clone());
        let h = History::new(services());
        h.record("added-later", false, Duration::from_millis(10), NOW);
        h.record("a", true, Duration::from_millis(10), NOW);
        h.flush_to(&handle, NOW).await.unwrap();
        let view = h.view();
        assert_eq!(view.service("added-later").unwrap().uptime(), Some(0.0));
        assert_eq!(view.service("a").unwrap().uptime(), Some(1.0));
        assert!(view.service("b").unwrap().days.is_empty());
    }
}
