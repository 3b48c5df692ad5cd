//! `switchboard simulate`: the real decision core (`health` + `failover`) driven over
//! simulated months per service with virtual time, against a plain "N consecutive failures"
//! policy. Nothing here reads a clock or does I/O.
//!
//! `world.rs` draws each service's world from the seed (true outages of varied length,
//! short bursts where every probe fails, random probe failures, and with vantages each
//! vantage's own uplink outages); `run.rs` runs the policies over it; `report.rs` prints the
//! tables.
//!
//! By default it simulates a built-in set of services (one primary and one backup check each,
//! with `Params`' timings). `simulate_config` instead takes the services of a loaded
//! configuration: each check with its own interval, `retry_interval`, thresholds and
//! `confirmation`, each service with its own `failover_when`, failback, `recovery_hold` and
//! flap damping, so a team can see what its own settings would have done. A true outage or a
//! burst takes down every primary check of a service; random failures hit every check.
//!
//! With `vantages` (`--vantages N`), every run is from N vantages as the cluster probes
//! (issue 15): each probes every check, offset so their probes are spread evenly, keeps its
//! own health per check, and a check's cluster verdict is the quorum of theirs
//! (`cluster::votes::decide`, as the cluster's leader decides it). The table
//! then sets one vantage (which its own uplink outages fool) beside N voting.

mod report;
mod run;
mod world;

pub use report::{report, report_config};
use run::{run_consecutive, run_switchboard, Model, Tally, Vote};
use std::time::Duration;
use world::World;

use crate::config::{Config, Failback, FailoverWhen, Thresholds};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Params {
    pub days: u32,
    pub services: u32,
    pub seed: u64,
    /// Share of probes that fail at random (0.03 = 3 %), independently for each vantage.
    pub noise: f64,
    /// True outages per service-month.
    pub outages: u32,
    /// Short bursts (1-8 s of failing probes) per service-month.
    pub bursts: u32,
    pub interval: Duration,
    pub retry_interval: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub recovery_hold: Duration,
    /// Probe from this many vantages (the cluster's nodes), each with its own uplink
    /// outages, beside one vantage alone; `None` is today's table, from one node whose
    /// network never fails.
    pub vantages: Option<u32>,
    /// Vantages whose verdicts must agree; `None` is a majority.
    pub quorum: Option<u32>,
    /// Each vantage's own uplink outages (1 to 20 minutes) per week.
    pub uplink_outages: u32,
    /// The confirmation each vantage uses when several vote: failures in a row (fixed),
    /// re-probed at `vantage_retry_interval`.
    pub vantage_failure_threshold: u32,
    pub vantage_retry_interval: Duration,
}

impl Default for Params {
    /// Switchboard's defaults (design.md) and the world: 3 % noise; with vantages,
    /// one uplink outage per vantage-week and each vantage confirming with 4 failures in a
    /// row re-probed every 1.5 s (README, "Judgement", says why).
    fn default() -> Self {
        Params {
            days: 30,
            services: 4,
            seed: 1,
            noise: 0.03,
            outages: 8,
            bursts: 30,
            interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(5),
            failure_threshold: 3,
            success_threshold: 2,
            recovery_hold: Duration::from_secs(300),
            vantages: None,
            quorum: None,
            uplink_outages: 1,
            vantage_failure_threshold: 4,
            vantage_retry_interval: Duration::from_millis(1500),
        }
    }
}

impl Params {
    /// How the vantages vote; `None` without vantages.
    fn vote(&self) -> Option<Vote> {
        self.vantages.map(|n| match self.quorum {
            Some(k) => Vote {
                vantages: n,
                quorum: k,
            },
            None => Vote::majority(n),
        })
    }

    /// `N vantages, K agree, ` for a policy's name.
    fn vote_name(v: Vote) -> String {
        format!("{} vantages, {} agree", v.vantages, v.quorum)
    }

    /// `fixed 4 failures, re-probe 1.5s`.
    fn vantage_confirmation(&self) -> String {
        format!(
            "fixed {} failures, re-probe {}",
            self.vantage_failure_threshold,
            report::duration(self.vantage_retry_interval)
        )
    }

    /// The plain policy's name with `Params`' timings.
    fn plain(&self) -> String {
        plain_name(self.failure_threshold, self.interval)
    }

    fn builtin(&self, adaptive: bool) -> Model {
        let thresholds = Thresholds {
            failure: self.failure_threshold,
            success: self.success_threshold,
            adaptive,
        };
        Model::builtin(
            self.interval,
            self.retry_interval,
            thresholds,
            self.recovery_hold,
        )
    }
}

/// `3 consecutive failures at 30s`.
fn plain_name(threshold: u32, interval: Duration) -> String {
    format!(
        "{threshold} consecutive failures at {}",
        humantime::format_duration(interval)
    )
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub policy: String,
    /// Automatic switches to the backup and outages declared (primary and backup both down).
    pub failovers: u32,
    /// Those made with no true outage under way.
    pub false_failovers: u32,
    pub outages: u32,
    pub missed: u32,
    pub detection_p50: Option<f64>,
    pub detection_p95: Option<f64>,
    pub detection_max: Option<f64>,
    /// Longest time from an outage's first failing probe to the switch.
    pub confirmation_max: Option<f64>,
    /// Probes made, from every vantage.
    pub probes: u64,
}

/// A policy run over one world. `Sync`: the runs are shared out among threads.
type Runner<'a> = dyn Fn(&World) -> Tally + Sync + 'a;

/// Runs every policy over `p.services` simulated worlds and returns one row per policy:
/// today's table, or with `p.vantages` the vantage table (`simulate_vantages`).
pub fn simulate(p: &Params) -> Vec<Row> {
    if let Some(vote) = p.vote() {
        return simulate_vantages(p, vote);
    }
    let worlds: Vec<World> = (0..p.services).map(|i| World::new(p, i)).collect();
    let (adaptive, fixed) = (p.builtin(true), p.builtin(false));
    let single = Vote::SINGLE;
    let policies: [(String, &Runner); 3] = [
        (
            "switchboard defaults (noise-aware confirmation)".into(),
            &|w| run_switchboard(&adaptive, w, single),
        ),
        (
            format!(
                "switchboard, fixed {} failures with re-probes",
                p.failure_threshold
            ),
            &|w| run_switchboard(&fixed, w, single),
        ),
        (format!("{} (Gatus / Route 53 style)", p.plain()), &|w| {
            run_consecutive(p.interval, p.failure_threshold, w)
        }),
    ];
    rows(&worlds, &policies)
}

/// The vantage table: one vantage (today's defaults, then the vantages' confirmation), the
/// vantages voting, and the plain policy from one vantage. Every row sees vantage 0's uplink
/// outages; the voting row every vantage's. (The vantages voting with today's defaults each
/// are as safe but no faster than one vantage; `--config` shows that row for your settings.)
fn simulate_vantages(p: &Params, vote: Vote) -> Vec<Row> {
    let worlds: Vec<World> = (0..p.services).map(|i| World::new(p, i)).collect();
    let defaults = p.builtin(true);
    let fast = defaults.with_confirmation(p.vantage_failure_threshold, p.vantage_retry_interval);
    let (voters, confirmation) = (Params::vote_name(vote), p.vantage_confirmation());
    let single = Vote::SINGLE;
    let policies: [(String, &Runner); 4] = [
        ("1 vantage, switchboard defaults".into(), &|w| {
            run_switchboard(&defaults, w, single)
        }),
        (format!("1 vantage, {confirmation}"), &|w| {
            run_switchboard(&fast, w, single)
        }),
        (format!("{voters}, {confirmation} each"), &|w| {
            run_switchboard(&fast, w, vote)
        }),
        (format!("{}, 1 vantage", p.plain()), &|w| {
            run_consecutive(p.interval, p.failure_threshold, w)
        }),
    ];
    rows(&worlds, &policies)
}

/// One configured service's simulation: what its settings did, beside the alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRun {
    pub id: String,
    pub name: String,
    /// One line per check: its role, interval, retry interval, thresholds and confirmation.
    pub settings: Vec<String>,
    /// `failover_when`, failback, `recovery_hold`, flap damping.
    pub policy: String,
    /// Its own settings first, then the alternatives, then the plain policy.
    pub rows: Vec<Row>,
}

/// Runs each service of `config` as configured, over one simulated world per service drawn
/// from `p` (noise, bursts, outages, days, seed, vantages; `p.services` and `p`'s check
/// timings are unused). Without vantages: its settings, the other confirmation and the plain
/// policy; with them: its settings from one vantage and from the vantages voting, the
/// vantages with their own confirmation, and the plain policy from one vantage.
pub fn simulate_config(p: &Params, config: &Config) -> Vec<ServiceRun> {
    config
        .services
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let worlds = [World::new(p, i as u32)];
            let own = Model::of_spec(spec);
            let first = spec.primary_checks().next();
            let (interval, threshold) = first.map_or((p.interval, p.failure_threshold), |c| {
                (c.interval, c.failure_threshold)
            });
            let plain = plain_name(threshold, interval);
            let single = Vote::SINGLE;
            let rows = match p.vote() {
                None => {
                    let all_fixed = own.checks.iter().all(|c| !c.thresholds.adaptive);
                    let other = own.with_adaptive(all_fixed);
                    let other_name = if all_fixed {
                        "the same with confirmation = \"adaptive\""
                    } else {
                        "the same with confirmation = \"fixed\""
                    };
                    let policies: [(String, &Runner); 3] = [
                        ("your settings".into(), &|w| run_switchboard(&own, w, single)),
                        (other_name.into(), &|w| run_switchboard(&other, w, single)),
                        (format!("{plain} (Gatus / Route 53 style)"), &|w| {
                            run_consecutive(interval, threshold, w)
                        }),
                    ];
                    rows(&worlds, &policies)
                }
                Some(vote) => {
                    let fast = own
                        .with_confirmation(p.vantage_failure_threshold, p.vantage_retry_interval);
                    let voters = Params::vote_name(vote);
                    let confirmation = p.vantage_confirmation();
                    let policies: [(String, &Runner); 4] = [
                        ("your settings, 1 vantage".into(), &|w| {
                            run_switchboard(&own, w, single)
                        }),
                        (format!("your settings, {voters}"), &|w| {
                            run_switchboard(&own, w, vote)
                        }),
                        (format!("{voters}, {confirmation} each"), &|w| {
                            run_switchboard(&fast, w, vote)
                        }),
                        (format!("{plain}, 1 vantage"), &|w| {
                            run_consecutive(interval, threshold, w)
                        }),
                    ];
                    rows(&worlds, &policies)
                }
            };
            ServiceRun {
                id: spec.id.clone(),
                name: spec.name.clone(),
                settings: spec
                    .checks
                    .iter()
                    .map(|c| {
                        let t = c.thresholds();
                        format!(
                            "{} ({}): every {}, re-probe {}, failure_threshold {}, success_threshold {}, confirmation {} (at most {} failures)",
                            c.name,
                            c.role.as_str(),
                            humantime::format_duration(c.interval),
                            humantime::format_duration(c.retry_interval),
                            c.failure_threshold,
                            c.success_threshold,
                            c.confirmation.as_str(),
                            t.max_failures()
                        )
                    })
                    .collect(),
                policy: format!(
                    "failover_when {}, failback {}, recovery_hold {}, max_failovers {} per {}",
                    match spec.failover_when {
                        FailoverWhen::Any => "any".to_string(),
                        FailoverWhen::All => "all".to_string(),
                        FailoverWhen::AtLeast(k) =>
                            format!("{k} of {}", spec.primary_checks().count()),
                    },
                    match spec.failback {
                        Failback::Auto => "auto",
                        Failback::Manual =>
                            "manual (simulated as an operator failing back after recovery_hold)",
                    },
                    humantime::format_duration(spec.recovery_hold),
                    spec.max_failovers,
                    humantime::format_duration(spec.flap_window)
                ),
                rows,
            }
        })
        .collect()
}

/// `f(0..jobs)` on as many threads as there are cores, the results in order: each run is
/// pure, so the table does not depend on which thread ran what.
fn parallel<T: Send>(jobs: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, jobs.max(1));
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<T>> = (0..jobs).map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= jobs {
                            return done;
                        }
                        done.push((i, f(i)));
                    }
                })
            })
            .collect();
        for worker in workers {
            // A panic in a run is a bug in the simulation: it goes on as this thread's.
            let done = worker
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            for (i, t) in done {
                out[i] = Some(t);
            }
        }
    });
    // Every index below `jobs` was taken by exactly one worker, which returned its result.
    out.into_iter().flatten().collect()
}

fn percentile(sorted: &[i64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

/// Each policy over every world, summed into one row per policy.
fn rows(worlds: &[World], policies: &[(String, &Runner)]) -> Vec<Row> {
    let outages: u32 = worlds.iter().map(|w| w.outages.len() as u32).sum();
    let n = worlds.len();
    let mut tallies = parallel(policies.len() * n, |i| (policies[i / n].1)(&worlds[i % n]));
    policies
        .iter()
        .map(|(name, _)| {
            let mut total = Tally::default();
            let mut latencies = Vec::new();
            let mut confirmation = 0i64;
            for t in tallies.drain(..n) {
                total.failovers += t.failovers;
                total.false_failovers += t.false_failovers;
                total.probes += t.probes;
                latencies.extend(t.caught.iter().map(|(_, l)| *l));
                confirmation = confirmation.max(t.confirmation.iter().copied().max().unwrap_or(0));
                total.caught.extend(t.caught);
            }
            latencies.sort_unstable();
            Row {
                policy: name.clone(),
                failovers: total.failovers,
                false_failovers: total.false_failovers,
                outages,
                missed: outages - total.caught.len() as u32,
                detection_p50: percentile(&latencies, 0.5),
                detection_p95: percentile(&latencies, 0.95),
                detection_max: latencies.last().map(|l| *l as f64 / 1000.0),
                confirmation_max: (!latencies.is_empty()).then_some(confirmation as f64 / 1000.0),
                probes: total.probes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
