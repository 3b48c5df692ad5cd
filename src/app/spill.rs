//! The shell's side of transitions the store refused: the pending gauge and readiness, the
//! bounded retry at shutdown, the spill file, and its replay at the next start.
//!
//! The file format and the replay transaction live in `store::spill`; this module decides
//! when: replay before the services' state is read (so they start from what was decided),
//! spill only after `[storage] shutdown_grace` of retrying has not emptied the queue.

use super::core::Core;
use super::AppError;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::spill::{spill_paths, write_spill, Pending};
use crate::store::Store;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Transitions waiting in memory for the store, shared with `/readyz`.
pub type PendingCount = Arc<AtomicUsize>;

/// Records what a previous run spilled, before anything else reads or writes the store. A
/// spill that cannot be replayed stops the start: anything recorded first would reach the
/// store out of order, and the file stays for the next attempt.
pub(super) fn replay_at_start(config: &Config, store: &Store) -> Result<(), AppError> {
    let paths = spill_paths(&config.storage.path, config.storage.spill_dir.as_deref());
    let replayed = store
        .replay_spills(&paths)
        .map_err(|e| AppError::Spill(e.to_string()))?;
    for r in replayed {
        info!(
            "replayed the spill file {}: {} transition(s) recorded with {} announcement(s), {} already recorded; file deleted",
            r.path.display(),
            r.recorded,
            r.announcements,
            r.already
        );
    }
    Ok(())
}

/// `n` transitions wait: the gauge and `/readyz` say so.
pub(super) fn show_pending(metrics: &Metrics, pending: &PendingCount, n: usize) {
    metrics.store_pending_transitions(n);
    pending.store(n, Ordering::Release);
}

impl Core {
    /// Tells the gauge and `/readyz` how many transitions wait; called whenever the queue changes.
    pub(super) fn pending_changed(&self) {
        show_pending(&self.metrics, &self.queue.pending, self.queue.waiting.len());
    }

    /// At shutdown: keeps retrying what the store refused, once a second, for `grace`; then
    /// spills what still waits, and if even that fails logs every lost transition whole.
    pub(super) async fn drain_on_shutdown(&mut self, grace: Duration) {
        if self.queue.waiting.is_empty() {
            return;
        }
        if !self.coordinator.is_leader() {
            // A cluster leader whose term ended: what it decided and could not record is not
            // its to record any more (the log refuses it), and must not be replayed later;
            // the new leader decides from its own probes.
            for p in &self.queue.waiting {
                warn!(
                    "{}: dropping a transition decided in a leader term that ended before it was recorded ({} -> {} at {}); the new leader decides",
                    p.t.service, p.t.from, p.t.to, p.t.at
                );
            }
            self.queue.waiting.clear();
            self.pending_changed();
            return;
        }
        warn!(
            "{} transition(s) not yet recorded at shutdown; retrying for up to {}s",
            self.queue.waiting.len(),
            grace.as_secs_f64()
        );
        let deadline = Instant::now() + grace;
        loop {
            self.retry_unrecorded().await;
            self.pending_changed();
            if self.queue.waiting.is_empty() || Instant::now() >= deadline {
                break;
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            tokio::time::sleep(wait).await;
        }
        if self.queue.waiting.is_empty() {
            info!("every waiting transition was recorded before shutdown");
            return;
        }
        let pending: Arc<Vec<Pending>> = Arc::new(self.queue.waiting.drain(..).collect());
        let paths = spill_paths(
            &self.config.storage.path,
            self.config.storage.spill_dir.as_deref(),
        );
        // Writing the file ends in an fsync: on the blocking pool, not on a runtime worker.
        let (to_write, tried) = (pending.clone(), paths.clone());
        let res = tokio::task::spawn_blocking(move || write_spill(&paths, &to_write))
            .await
            .unwrap_or_else(|e| {
                let why = std::io::Error::other(format!("the spill task failed: {e}"));
                Err(tried
                    .into_iter()
                    .next()
                    .map(|p| vec![(p, why)])
                    .unwrap_or_default())
            });
        match res {
            Ok(path) => warn!(
                "spilled {} unrecorded transition(s) with {} announcement(s) to {}; the next start records them before anything else",
                pending.len(),
                pending
                    .iter()
                    .map(|p| p.announcements.len() + p.parts.len())
                    .sum::<usize>(),
                path.display()
            ),
            Err(failures) => {
                for (path, e) in &failures {
                    error!("cannot write the spill file {}: {e}", path.display());
                }
                // The last record of them: each line is the whole transition with its
                // announcements, as the spill file would have held it.
                for p in pending.iter() {
                    error!(
                        "LOST transition {} {} -> {} at {} with {} announcement(s): {}",
                        p.t.service,
                        p.t.from,
                        p.t.to,
                        p.t.at.rfc3339(),
                        p.announcements.len() + p.parts.len(),
                        serde_json::to_string(p).unwrap_or_default()
                    );
                }
            }
        }
        self.pending_changed();
    }
}
