//! A follower as a vantage: it probes every check on its own schedule, keeps its own verdict per check (`health`), and puts each change of verdict on the vote board that `cluster::vantage::publish` writes to etcd.
//!
//! The leader's core does the same for its own probes (`Core::on_outcome`) and decides from
//! every vantage's verdicts; a follower only observes. Vendor checks (they corroborate, the
//! leader reads them) and heartbeat checks (jobs report to the leader) are not probed here.

use super::handle::Msg;
use super::tasks::{supervised_probe_loop, ProbeLoop};
use crate::clock::Timestamp;
use crate::cluster::vantage::VoteBoard;
use crate::cluster::votes::{check_key, Verdict};
use crate::config::{CheckKind, Config, Role};
use crate::health::CheckHealth;
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Semaphore};

/// Probes every check and records this node's verdicts until `stop` or `shutdown`.
pub(super) async fn probe(
    config: Arc<Config>,
    votes: Arc<VoteBoard>,
    shutdown: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let keys: Vec<Vec<String>> = config
        .services
        .iter()
        .map(|s| s.checks.iter().map(|c| check_key(&s.id, &c.name)).collect())
        .collect();
    votes.retain_own(|k| keys.iter().flatten().any(|x| x == k));
    let (tx, mut rx) = mpsc::channel::<Msg>(1024);
    let metrics = Arc::new(Metrics::new());
    let permits = Arc::new(Semaphore::new(config.server.max_concurrent_probes as usize));
    let heartbeats = Arc::new(crate::probe::heartbeat::Heartbeats::new());
    let slot = votes.slot();
    // The suspect-vantage guard, as on the leader (`Core::guard_vantage`): this node's
    // votes are not counted while it sees most hosts fail at once, and a failure is
    // confirmed only with fresh news of other hosts, asked for at once.
    let mut guard =
        crate::vantage::Guard::new(config.vantage.clone(), crate::vantage::watched(&config));
    let mut wakes = std::collections::HashMap::new();
    let now = Timestamp::now();
    let mut health: Vec<Vec<CheckHealth>> = config
        .services
        .iter()
        .map(|s| s.checks.iter().map(|_| CheckHealth::new(now)).collect())
        .collect();
    for (si, s) in config.services.iter().enumerate() {
        for (ci, c) in s.checks.iter().enumerate() {
            if c.role == Role::Vendor || matches!(c.kind, CheckKind::Heartbeat(_)) {
                continue;
            }
            let probe_now = Arc::new(tokio::sync::Notify::new());
            wakes.insert(c.name.clone(), probe_now.clone());
            tokio::spawn(supervised_probe_loop(
                ProbeLoop {
                    generation: 0,
                    si,
                    ci,
                    config: config.clone(),
                    tx: tx.clone(),
                    metrics: metrics.clone(),
                    permits: permits.clone(),
                    heartbeats: heartbeats.clone(),
                    probe_now,
                    slot,
                },
                shutdown.clone(),
                stop.clone(),
            ));
        }
    }
    drop(tx);
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = stop.changed() => None,
        };
        let Some(Msg::Outcome {
            service: si,
            check: ci,
            outcome,
            reply,
            ..
        }) = msg
        else {
            break;
        };
        let spec = &config.services[si].checks[ci];
        let rt = &mut health[si][ci];
        let t = spec.thresholds();
        let local = outcome
            .error
            .as_ref()
            .is_some_and(|e| e.class == crate::probe::ErrorClass::Local);
        let now = Timestamp::now();
        if !local {
            let seen = guard.observe(&spec.name, outcome.success, outcome.started_at, now);
            for c in &seen.probe_now {
                if let Some(wake) = wakes.get(c) {
                    wake.notify_one();
                }
            }
            if seen.change.is_some() {
                tracing::warn!(
                    "vantage {}: {}",
                    votes.node(),
                    if guard.is_suspect() {
                        "most hosts fail at once: this vantage suspects its own network, its votes are not counted"
                    } else {
                        "healthy targets again: its votes count again"
                    }
                );
                votes.set_suspect(guard.is_suspect());
            }
        }
        if !local && !guard.is_suspect() {
            let before = rt.failure_threshold(t);
            let may_confirm = guard.may_confirm(&spec.name, now).allowed();
            if let Some(prev) = rt.observe_guarded(t, outcome.success, now, may_confirm) {
                let (streak, threshold) = rt.streak(prev, t, before);
                votes.set_own(
                    &keys[si][ci],
                    Verdict {
                        health: rt.health,
                        outcome: outcome.summary(),
                        at: now,
                        streak,
                        threshold,
                    },
                );
            }
        }
        let _ = reply.send(rt.wants_confirmation());
    }
}
