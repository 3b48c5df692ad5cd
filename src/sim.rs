//! `switchboard simulate`: the real decision core (`health` + `failover`) driven over a simulated
//! month per service with virtual time, against a plain "N consecutive failures" policy.
//!
//! The world of each service is fixed by its seed: true outages of varied length, short
//! bursts where every probe fails, and random probe failures at a given rate. Whether a probe
//! at time `t` fails is a pure function of (seed, check, t), so every policy sees the same
//! probe data wherever its schedule puts a probe. Nothing here reads a clock or does I/O.

use crate::clock::Timestamp;
use crate::config::{Failback, FailoverWhen};
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

    /// Whether a probe of `check` (0 primary, 1 backup) at `t` fails.
    fn fails(&self, check: u64, t: i64) -> bool {
        let noisy = unit(self.seed ^ mix(check.wrapping_add(1)) ^ (t as u64)) < self.noise;
        noisy || (check == 0 && (Self::in_any(&self.outages, t) || Self::in_any(&self.bursts, t)))
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

/// Switchboard's core: health with confirmation re-probes, then the failover machine.
fn run_switchboard(p: &Params, w: &World, adaptive: bool) -> Tally {
    let policy = Policy {
        failover_when: FailoverWhen::Any,
        failback: Failback::Auto,
        recovery_hold: p.recovery_hold,
        primary: vec!["primary".into()],
        backup: vec!["backup".into()],
        max_failovers: 3,
        flap_window: Duration::from_secs(3600),
        maintenance_side: Side::Backup,
        windows: Vec::new(),
    };
    let t = Thresholds {
        failure: p.failure_threshold,
        success: p.success_threshold,
        adaptive,
    };
    let mut svc = failover::Service::new("svc", State::Operational, Timestamp(0));
    let names = ["primary", "backup"];
    let mut health = [
        CheckHealth::new(Timestamp(0)),
        CheckHealth::new(Timestamp(0)),
    ];
    // Spread like the scheduler does: each check starts somewhere in its interval.
    let interval = p.interval.as_millis() as i64;
    let retry = p.retry_interval.as_millis() as i64;
    let mut due = [interval / 3, 2 * interval / 3];
    let mut wakes: Vec<i64> = Vec::new();
    let mut tally = Tally::default();
    loop {
        let next_probe = if due[0] <= due[1] { 0 } else { 1 };
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
            tally.probes += 1;
            if c == 0 {
                tally.probed(w, now);
            }
            let ok = !w.fails(c as u64, now);
            let changed = health[c].observe(t, ok, Timestamp(now));
            due[c] = if health[c].wants_confirmation() {
                now + retry
            } else {
                due[c] + interval
            }
            .max(now + 1);
            changed.map(|_| Event::Health {
                check: names[c].to_string(),
                health: health[c].health,
                detail: String::new(),
            })
        };
        if let Some(e) = event {
            for a in failover::step(&mut svc, &policy, &e, Timestamp(now)) {
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
fn run_consecutive(p: &Params, w: &World) -> Tally {
    let interval = p.interval.as_millis() as i64;
    let mut tally = Tally::default();
    let (mut fails, mut oks, mut on_backup) = (0u32, 0u32, false);
    let mut now = interval / 3;
    while now < w.end {
        tally.probes += 1;
        tally.probed(w, now);
        if w.fails(0, now) {
            fails += 1;
            oks = 0;
        } else {
            oks += 1;
            fails = 0;
        }
        if !on_backup && fails >= p.failure_threshold {
            on_backup = true;
            classify(w, now, &mut tally);
        } else if on_backup && oks >= p.failure_threshold {
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
    let outages: u32 = worlds.iter().map(|w| w.outages.len() as u32).sum();
    let policies: [(String, &Runner); 3] = [
        (
            "switchboard defaults (noise-aware confirmation)".into(),
            &|w| run_switchboard(p, w, true),
        ),
        (
            format!(
                "switchboard, fixed {} failures with re-probes",
                p.failure_threshold
            ),
            &|w| run_switchboard(p, w, false),
        ),
        (
            format!(
                "{} consecutive failures at {} (Gatus / Route 53 style)",
                p.failure_threshold,
                humantime::format_duration(p.interval)
            ),
            &|w| run_consecutive(p, w),
        ),
    ];
    policies
        .iter()
        .map(|(name, run)| {
            let mut total = Tally::default();
            let mut latencies = Vec::new();
            let mut confirmation = 0i64;
            for w in &worlds {
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
    let _ = writeln!(
        out,
        "\ndetection = from the start of a true outage to the switch to the backup; conf = from the outage's first\n\
         failing probe to the switch (the confirmation time); false = a failover with no outage under way"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_deterministic_and_probe_data_is_shared_by_time() {
        let p = Params::default();
        let (a, b) = (World::new(&p, 0), World::new(&p, 0));
        assert_eq!(a.outages, b.outages);
        assert_eq!(a.fails(0, 123_456), b.fails(0, 123_456));
        assert_eq!(a.outages.len(), 8);
        let (s, _) = a.outages[0];
        assert!(a.fails(0, s), "a probe during an outage fails");
        assert!(!a.fails(1, s) || a.fails(1, s) == b.fails(1, s));
    }

    #[test]
    fn noise_rate_is_what_was_asked() {
        let p = Params::default();
        let w = World::new(&p, 3);
        let n = 200_000;
        let failed = (0..n)
            .map(|i| i as i64 * 997)
            .filter(|t| w.outage_at(*t).is_none() && w.fails(1, *t))
            .count();
        let rate = failed as f64 / n as f64;
        assert!((0.027..0.033).contains(&rate), "rate {rate}");
    }
}
