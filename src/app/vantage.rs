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
        if !local {
            let now = Timestamp::now();
            let before = rt.failure_threshold(t);
            if let Some(prev) = rt.observe(t, outcome.success, now) {
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
