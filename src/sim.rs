//! `switchboard simulate`: the real decision core (`health` + `failover`) driven over a simulated
//! month per service with virtual time, against a plain "N consecutive failures" policy.
//!
//! The world of each service is fixed by its seed: true outages of varied length, short
//! bursts where every probe fails, and random probe failures at a given rate. Whether a probe
//! at time `t` fails is a pure function of (seed, check, t), so every policy sees the same
//! probe data wherever its schedule puts a probe. Nothing here reads a clock or does I/O.
//!
//! By default it simulates a built-in set of services (one primary and one backup check each,
//! with `Params`' timings). `simulate_config` instead takes the services of a loaded
//! configuration: each check with its own interval, `retry_interval`, thresholds and
//! `confirmation`, each service with its own `failover_when`, failback, `recovery_hold` and
//! flap damping, so a team can see what its own settings would have done. A true outage or a
//! burst takes down every primary check of a service; random failures hit every check.

use crate::clock::Timestamp;
use crate::config::{Config, Failback, FailoverWhen, ServiceSpec};
use crate::failover::{self, Action, Event, Policy, Side, State};
use crate::health::{CheckHealth, Thresholds};
use std::fmt::Write as _;
use std::time::Duration;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Params {
    pub days: u32,
    pub services: u32,
    pub seed: u64,
    /// Share of probes that fail at random (0.03 = 3 %).
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
}

impl Default for Params {
    /// Switchboard's defaults (design.md) and the world: 3 % noise.
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
        }
    }
}

/// One service's simulated world.
struct World {
    seed: u64,
    /// True outages of the primary, sorted, non-overlapping: [start, end) in ms.
    outages: Vec<(i64, i64)>,
    bursts: Vec<(i64, i64)>,
    noise: f64,
    end: i64,
}

/// splitmix64: small, stable across crate versions, good enough to draw a world.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

impl World {
    fn new(p: &Params, service: u32) -> World {
        let seed = mix(p.seed ^ (u64::from(service) << 32));
        let end = i64::from(p.days) * 86_400_000;
        let mut draw = {
            let mut n = seed;
            move || {
                n = mix(n);
                unit(n)
            }
        };
        // Outages: 1 minute to 4 hours, log-uniform, kept apart so each is its own event.
        let mut outages: Vec<(i64, i64)> = Vec::new();
        let mut tries = 0;
        while outages.len() < p.outages as usize && tries < 10_000 {
            tries += 1;
            let len = (60_000.0 * (240.0f64).powf(draw())) as i64;
            let start = 3_600_000 + (draw() * (end - 2 * 3_600_000 - len) as f64) as i64;
            let apart = |(s, e): &(i64, i64)| start + len + 3_600_000 < *s || start > e + 3_600_000;
            if outages.iter().all(apart) {
                outages.push((start, start + len));
            }
        }
        outages.sort_unstable();
        let bursts = (0..p.bursts)
            .map(|_| {
                let start = (draw() * end as f64) as i64;
                (start, start + 1_000 + (draw() * 7_000.0) as i64)
            })
            .collect();
        World {
            seed,
            outages,
            bursts,
            noise: p.noise,
            end,
        }
    }

    fn in_any(spans: &[(i64, i64)], t: i64) -> bool {
        spans.iter().any(|(s, e)| *s <= t && t < *e)
    }

    /// Whether a probe of check number `check` at `t` fails; outages and bursts hit primary
    /// checks only.
    fn fails(&self, check: u64, primary: bool, t: i64) -> bool {
        let noisy = unit(self.seed ^ mix(check.wrapping_add(1)) ^ (t as u64)) < self.noise;
        noisy || (primary && (Self::in_any(&self.outages, t) || Self::in_any(&self.bursts, t)))
    }

    fn outage_at(&self, t: i64) -> Option<usize> {
        self.outages.iter().position(|(s, e)| *s <= t && t < *e)
    }
}

/// What one policy did in one world.
#[derive(Default)]
struct Tally {
    failovers: u32,
    false_failovers: u32,
    /// Outage index -> detection latency (ms), for the outages caught.
    caught: Vec<(usize, i64)>,
    /// Outage index -> time of the first primary probe that fell inside it.
    first_probe: Vec<(usize, i64)>,
    /// From an outage's first failing probe to the switch (ms): the confirmation time.
    confirmation: Vec<i64>,
    probes: u64,
}

impl Tally {
    /// Notes the first primary probe inside each outage.
    fn probed(&mut self, w: &World, t: i64) {
        if let Some(i) = w.outage_at(t) {
            if !self.first_probe.iter().any(|(j, _)| *j == i) {
                self.first_probe.push((i, t));
            }
        }
    }
}

/// A failover is true when an outage was under way at the decision or ended moments before
/// it (the confirmation of a short outage may land after its end).
fn classify(w: &World, t: i64, tally: &mut Tally) {
    tally.failovers += 1;
    let recent = (0..=120)
        .step_by(10)
        .find_map(|back| w.outage_at(t - back * 1000));
    match recent {
        Some(i) => {
            if !tally.caught.iter().any(|(j, _)| *j == i) {
                tally.caught.push((i, t - w.outages[i].0));
                if let Some((_, first)) = tally.first_probe.iter().find(|(j, _)| *j == i) {
                    tally.confirmation.push(t - first);
                }
            }
        }
        None => tally.false_failovers += 1,
    }
}

/// One check as the simulation probes it.
#[derive(Clone, Debug)]
struct SimCheck {
    name: String,
    primary: bool,
    interval_ms: i64,
    retry_ms: i64,
    thresholds: Thresholds,
}

/// One simulated service: its checks and its failover policy.
#[derive(Clone, Debug)]
struct Model {
    checks: Vec<SimCheck>,
    policy: Policy,
}

impl Model {
    /// The built-in service: one primary and one backup check with `p`'s timings.
    fn builtin(p: &Params, adaptive: bool) -> Model {
        let check = |name: &str, primary| SimCheck {
            name: name.to_string(),
            primary,
            interval_ms: p.interval.as_millis() as i64,
            retry_ms: p.retry_interval.as_millis() as i64,
            thresholds: Thresholds {
                failure: p.failure_threshold,
                success: p.success_threshold,
                adaptive,
            },
        };
        Model {
            checks: vec![check("primary", true), check("backup", false)],
            policy: Policy {
                failover_when: FailoverWhen::Any,
                failback: Failback::Auto,
                recovery_hold: p.recovery_hold,
                primary: vec!["primary".into()],
                backup: vec!["backup".into()],
                max_failovers: 3,
                flap_window: Duration::from_secs(3600),
                maintenance_side: Side::Backup,
                windows: Vec::new(),
            },
        }
    }

    /// A configured service as it is, planned maintenance windows aside (they are dates and
    /// times, not probe data). A manual failback is simulated as an operator failing back
    /// once the primary has been healthy for `recovery_hold`: without one, every later
    /// outage of the month would count as missed.
    fn of_spec(spec: &ServiceSpec) -> Model {
        let mut policy = Policy::from_spec(spec);
        policy.windows.clear();
        policy.failback = Failback::Auto;
        Model {
            // Vendor checks corroborate and never decide: the simulation leaves them out.
            checks: spec
                .checks
                .iter()
                .filter(|c| c.role != crate::config::Role::Vendor)
                .map(|c| SimCheck {
                    name: c.name.clone(),
                    primary: c.role == crate::config::Role::Primary,
                    interval_ms: (c.interval.as_millis() as i64).max(1),
                    retry_ms: (c.retry_interval.as_millis() as i64).max(1),
                    thresholds: c.thresholds(),
                })
                .collect(),
            policy,
        }
    }

    /// The same service with every check's confirmation set to adaptive or fixed.
    fn with_adaptive(&self, adaptive: bool) -> Model {
        let mut m = self.clone();
        for c in &mut m.checks {
            c.thresholds.adaptive = adaptive;
        }
        m
    }
}

/// Switchboard's core: health with confirmation re-probes, then the failover machine.
fn run_switchboard(m: &Model, w: &World) -> Tally {
    let policy = &m.policy;
    let mut svc = failover::Service::new("svc", State::Operational, Timestamp(0));
    let mut health: Vec<CheckHealth> = m
        .checks
        .iter()
        .map(|_| CheckHealth::new(Timestamp(0)))
        .collect();
    // Spread like the scheduler does: each check starts somewhere in its interval.
    let n = m.checks.len() as i64;
    let mut due: Vec<i64> = m
        .checks
        .iter()
        .enumerate()
        .map(|(i, c)| (i as i64 + 1) * c.interval_ms / (n + 1))
        .collect();
    let mut wakes: Vec<i64> = Vec::new();
    let mut tally = Tally::default();
    if m.checks.is_empty() {
        return tally;
    }
    loop {
        // The earliest due check; the first of equals, so the order is stable.
        let next_probe = (0..due.len()).min_by_key(|i| (due[*i], *i)).unwrap_or(0);
        let (now, is_tick) = match wakes.iter().copied().min() {
            Some(wk) if wk <= due[next_probe] => (wk, true),
            _ => (due[next_probe], false),
        };
        if now >= w.end {
            break;
        }
        let event = if is_tick {
            wakes.retain(|x| *x != now);
            Some(Event::Tick)
        } else {
            let c = next_probe;
            let check = &m.checks[c];
            tally.probes += 1;
            if check.primary {
                tally.probed(w, now);
            }
            let ok = !w.fails(c as u64, check.primary, now);
            let changed = health[c].observe(check.thresholds, ok, Timestamp(now));
            due[c] = if health[c].wants_confirmation() {
                now + check.retry_ms
            } else {
                due[c] + check.interval_ms
            }
            .max(now + 1);
            changed.map(|_| Event::Health {
                check: check.name.clone(),
                health: health[c].health,
                detail: String::new(),
                seen: Default::default(),
            })
        };
        if let Some(e) = event {
            for a in failover::step(&mut svc, policy, &e, Timestamp(now)) {
                match a {
                    Action::SwitchRoutes { to: Side::Backup } => classify(w, now, &mut tally),
                    Action::WakeAt(at) => wakes.push(at.as_millis()),
                    _ => {}
                }
            }
        }
    }
    tally
}

/// The plain policy of Gatus or Route 53 health checks: probe at the interval only, fail
/// over after N consecutive failures, fail back after M consecutive successes.
fn run_consecutive(interval: Duration, threshold: u32, w: &World) -> Tally {
    let interval = (interval.as_millis() as i64).max(1);
    let mut tally = Tally::default();
    let (mut fails, mut oks, mut on_backup) = (0u32, 0u32, false);
    let mut now = interval / 3;
    while now < w.end {
        tally.probes += 1;
        tally.probed(w, now);
        if w.fails(0, true, now) {
            fails += 1;
            oks = 0;
        } else {
            oks += 1;
            fails = 0;
        }
        if !on_backup && fails >= threshold {
            on_backup = true;
            classify(w, now, &mut tally);
        } else if on_backup && oks >= threshold {
            on_backup = false;
        }
        now += interval;
    }
    tally
}

fn percentile(sorted: &[i64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub policy: String,
    pub failovers: u32,
    pub false_failovers: u32,
    pub outages: u32,
    pub missed: u32,
    pub detection_p50: Option<f64>,
    pub detection_p95: Option<f64>,
    pub detection_max: Option<f64>,
    /// Longest time from an outage's first failing probe to the switch.
    pub confirmation_max: Option<f64>,
    pub probes: u64,
}

/// A policy run over one world.
type Runner<'a> = dyn Fn(&World) -> Tally + 'a;

/// Runs every policy over `p.services` simulated worlds and returns one row per policy.
pub fn simulate(p: &Params) -> Vec<Row> {
    let worlds: Vec<World> = (0..p.services).map(|i| World::new(p, i)).collect();
    let (adaptive, fixed) = (Model::builtin(p, true), Model::builtin(p, false));
    let policies: [(String, &Runner); 3] = [
        (
            "switchboard defaults (noise-aware confirmation)".into(),
            &|w| run_switchboard(&adaptive, w),
        ),
        (
            format!(
                "switchboard, fixed {} failures with re-probes",
                p.failure_threshold
            ),
            &|w| run_switchboard(&fixed, w),
        ),
        (
            format!(
                "{} consecutive failures at {} (Gatus / Route 53 style)",
                p.failure_threshold,
                humantime::format_duration(p.interval)
            ),
            &|w| run_consecutive(p.interval, p.failure_threshold, w),
        ),
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
    /// Its own settings first, then the other confirmation, then the plain policy.
    pub rows: Vec<Row>,
}

/// Runs each service of `config` as configured, over one simulated world per service drawn
/// from `p` (noise, bursts, outages, days, seed; `p.services` and `p`'s timings are unused).
pub fn simulate_config(p: &Params, config: &Config) -> Vec<ServiceRun> {
    config
        .services
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let worlds = [World::new(p, i as u32)];
            let own = Model::of_spec(spec);
            let all_fixed = own.checks.iter().all(|c| !c.thresholds.adaptive);
            let other = own.with_adaptive(all_fixed);
            let other_name = if all_fixed {
                "the same with confirmation = \"adaptive\""
            } else {
                "the same with confirmation = \"fixed\""
            };
            let first = spec.primary_checks().next();
            let (interval, threshold) = first.map_or((p.interval, p.failure_threshold), |c| {
                (c.interval, c.failure_threshold)
            });
            let policies: [(String, &Runner); 3] = [
                ("your settings".into(), &|w| run_switchboard(&own, w)),
                (other_name.into(), &|w| run_switchboard(&other, w)),
                (
                    format!(
                        "{threshold} consecutive failures at {} (Gatus / Route 53 style)",
                        humantime::format_duration(interval)
                    ),
                    &|w| run_consecutive(interval, threshold, w),
                ),
            ];
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
                rows: rows(&worlds, &policies),
            }
        })
        .collect()
}

/// Each policy over every world, summed into one row per policy.
fn rows(worlds: &[World], policies: &[(String, &Runner)]) -> Vec<Row> {
    let outages: u32 = worlds.iter().map(|w| w.outages.len() as u32).sum();
    policies
        .iter()
        .map(|(name, run)| {
            let mut total = Tally::default();
            let mut latencies = Vec::new();
            let mut confirmation = 0i64;
            for w in worlds {
                let t = run(w);
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

/// The table `switchboard simulate` prints.
pub fn report(p: &Params, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} services x {} days, seed {}: {:.1} % random probe failures, {} bursts and {} true outages (1 min to 4 h) per service-month",
        p.services,
        p.days,
        p.seed,
        p.noise * 100.0,
        p.bursts,
        p.outages
    );
    let _ = writeln!(
        out,
        "interval {}, retry_interval {}, failure_threshold {}, success_threshold {}, recovery_hold {}\n",
        humantime::format_duration(p.interval),
        humantime::format_duration(p.retry_interval),
        p.failure_threshold,
        p.success_threshold,
        humantime::format_duration(p.recovery_hold)
    );
    table(&mut out, rows);
    legend(&mut out);
    out
}

/// What `switchboard simulate --config FILE` prints: the world, then each service with its
/// settings and its table.
pub fn report_config(p: &Params, source: &str, runs: &[ServiceRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} services from {source} x {} days, seed {}: {:.1} % random probe failures, {} bursts and {} true outages (1 min to 4 h) per service-month",
        runs.len(),
        p.days,
        p.seed,
        p.noise * 100.0,
        p.bursts,
        p.outages
    );
    for r in runs {
        let _ = writeln!(out, "\n{} ({})", r.id, r.name);
        for line in &r.settings {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "  {}\n", r.policy);
        table(&mut out, &r.rows);
    }
    legend(&mut out);
    out
}

fn table(out: &mut String, rows: &[Row]) {
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.1}s"));
    let _ = writeln!(
        out,
        "{:<58} {:>9} {:>6} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "policy",
        "failovers",
        "false",
        "missed",
        "det p50",
        "det p95",
        "det max",
        "conf max",
        "probes"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<58} {:>9} {:>6} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9}",
            r.policy,
            r.failovers,
            r.false_failovers,
            format!("{}/{}", r.missed, r.outages),
            secs(r.detection_p50),
            secs(r.detection_p95),
            secs(r.detection_max),
            secs(r.confirmation_max),
            r.probes
        );
    }
}

fn legend(out: &mut String) {
    let _ = writeln!(
        out,
        "\ndetection = from the start of a true outage to the switch to the backup; conf = from the outage's first\n\
         failing probe to the switch (the confirmation time); false = a failover with no outage under way"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_deterministic_and_probe_data_is_shared_by_time() {
        let p = Params::default();
        let (a, b) = (World::new(&p, 0), World::new(&p, 0));
        assert_eq!(a.outages, b.outages);
        assert_eq!(a.fails(0, true, 123_456), b.fails(0, true, 123_456));
        assert_eq!(a.outages.len(), 8);
        let (s, _) = a.outages[0];
        assert!(a.fails(0, true, s), "a probe during an outage fails");
        assert!(!a.fails(1, false, s) || a.fails(1, false, s) == b.fails(1, false, s));
    }

    #[test]
    fn noise_rate_is_what_was_asked() {
        let p = Params::default();
        let w = World::new(&p, 3);
        let n = 200_000;
        let failed = (0..n)
            .map(|i| i as i64 * 997)
            .filter(|t| w.outage_at(*t).is_none() && w.fails(1, false, *t))
            .count();
        let rate = failed as f64 / n as f64;
        assert!((0.027..0.033).contains(&rate), "rate {rate}");
    }
}
