//! The policies run over one world with virtual time: Switchboard's core from one or more
//! vantages (each with its own `health`, their verdicts voted into one per check, which feeds
//! the real `failover` machine), and the plain "N consecutive failures" policy.

use super::world::{Timeline, World};
use crate::clock::Timestamp;
use crate::cluster::votes::{decide, Quorum, Report, Rule, Verdict};
use crate::config::{Failback, FailoverWhen, ServiceSpec};
use crate::failover::{self, Action, Event, Policy, Side, State};
use crate::health::{CheckHealth, Health, Thresholds};
use std::time::Duration;

/// What one policy did in one world.
#[derive(Default)]
pub(super) struct Tally {
    /// Automatic decisions: switches to the backup, and outages declared (primary and
    /// backup both down) from a service that was not failed over.
    pub(super) failovers: u32,
    /// Those made with no true outage under way.
    pub(super) false_failovers: u32,
    /// Outage index -> detection latency (ms), for the outages caught.
    pub(super) caught: Vec<(usize, i64)>,
    /// Outage index -> time of the first primary probe that fell inside it.
    first_probe: Vec<Option<i64>>,
    /// From an outage's first failing probe to the switch (ms): the confirmation time.
    pub(super) confirmation: Vec<i64>,
    pub(super) probes: u64,
    /// When the false decisions were made (ms).
    pub(super) false_at: Vec<i64>,
}

impl Tally {
    fn new(w: &World) -> Tally {
        Tally {
            first_probe: vec![None; w.outages.len()],
            ..Tally::default()
        }
    }

    /// Notes the first primary probe inside each outage.
    fn probed(&mut self, line: &mut Timeline, t: i64) {
        if let Some(i) = line.outage_at(t) {
            self.first_probe[i].get_or_insert(t);
        }
    }

    /// A decision is true when an outage was under way at it or ended moments before it
    /// (the confirmation of a short outage may land after its end).
    fn classify(&mut self, w: &World, t: i64) {
        self.failovers += 1;
        let recent = (0..=120)
            .step_by(10)
            .find_map(|back| w.outage_at(t - back * 1000));
        match recent {
            Some(i) => {
                if !self.caught.iter().any(|(j, _)| *j == i) {
                    self.caught.push((i, t - w.outages.start(i)));
                    if let Some(first) = self.first_probe[i] {
                        self.confirmation.push(t - first);
                    }
                }
            }
            None => {
                self.false_failovers += 1;
                self.false_at.push(t);
            }
        }
    }
}

/// One check as the simulation probes it.
#[derive(Clone, Debug)]
pub(super) struct SimCheck {
    pub(super) name: String,
    pub(super) primary: bool,
    pub(super) interval_ms: i64,
    pub(super) retry_ms: i64,
    pub(super) thresholds: Thresholds,
}

/// One simulated service: its checks and its failover policy.
#[derive(Clone, Debug)]
pub(super) struct Model {
    pub(super) checks: Vec<SimCheck>,
    pub(super) policy: Policy,
}

impl Model {
    /// The built-in service: one primary and one backup check, each probed every
    /// `interval`, re-probed at `retry`, with `thresholds`.
    pub(super) fn builtin(
        interval: Duration,
        retry: Duration,
        thresholds: Thresholds,
        recovery_hold: Duration,
    ) -> Model {
        let check = |name: &str, primary| SimCheck {
            name: name.to_string(),
            primary,
            interval_ms: (interval.as_millis() as i64).max(1),
            retry_ms: (retry.as_millis() as i64).max(1),
            thresholds,
        };
        Model {
            checks: vec![check("primary", true), check("backup", false)],
            policy: Policy {
                failover_when: FailoverWhen::Any,
                failback: Failback::Auto,
                recovery_hold,
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
    /// outage of the run would count as missed.
    pub(super) fn of_spec(spec: &ServiceSpec) -> Model {
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
    pub(super) fn with_adaptive(&self, adaptive: bool) -> Model {
        let mut m = self.clone();
        for c in &mut m.checks {
            c.thresholds.adaptive = adaptive;
        }
        m
    }

    /// The same service with every check confirmed by `failure` failures in a row (fixed),
    /// re-probed at `retry`: the thresholds each vantage of a cluster may use.
    pub(super) fn with_confirmation(&self, failure: u32, retry: Duration) -> Model {
        let mut m = self.clone();
        for c in &mut m.checks {
            c.thresholds.failure = failure;
            c.thresholds.adaptive = false;
            c.retry_ms = (retry.as_millis() as i64).max(1);
        }
        m
    }
}

/// How many vantages probe, and how their verdicts become the cluster's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Vote {
    pub(super) vantages: u32,
    /// Verdicts that must agree: a check is down when at least this many vantages say down,
    /// healthy when at least this many say healthy, else unchanged (`cluster::votes::decide`).
    pub(super) quorum: u32,
}

impl Vote {
    /// One node, as Switchboard runs today.
    pub(super) const SINGLE: Vote = Vote {
        vantages: 1,
        quorum: 1,
    };

    /// `n` vantages deciding by majority.
    pub(super) fn majority(n: u32) -> Vote {
        Vote {
            vantages: n,
            quorum: n / 2 + 1,
        }
    }

    /// The cluster's rule. Every vantage is live and none is suspect in the simulation, so
    /// a majority of the live ones is `quorum` of `vantages`.
    fn rule(self) -> Rule {
        Rule {
            quorum: Quorum::AtLeast {
                k: self.quorum.clamp(1, self.vantages.max(1)),
                n: self.vantages.max(1),
            },
            min_vantages: 1,
        }
    }
}

/// Every vantage's report, as the cluster's leader holds them: one verdict per check.
fn reports(m: &Model, n: usize) -> Vec<Report> {
    let verdict = Verdict {
        health: Health::Unknown,
        outcome: String::new(),
        at: Timestamp(0),
        streak: 0,
        threshold: 0,
    };
    (0..n)
        .map(|v| Report {
            node: format!("vantage-{}", v + 1),
            suspect: false,
            checks: m
                .checks
                .iter()
                .map(|c| (c.name.clone(), verdict.clone()))
                .collect(),
        })
        .collect()
}

/// Switchboard's core from `vote.vantages` vantages. Each vantage probes every check at its
/// interval, offset so that the vantages' probes of one check are spread evenly over it, and
/// keeps its own `health` per check (with its confirmation re-probes); each check's votes
/// make the cluster's verdict (`cluster::votes::decide`: down when `quorum` say down,
/// healthy when `quorum` say healthy, else unchanged), which the `failover` machine receives
/// as a single node's.
///
/// One vantage is today's daemon and schedules as its probe loop does: the next probe an
/// interval after the last one. Several keep their slots (the offset is what spreads them):
/// after a confirmation re-probe, a vantage's next scheduled probe is its next slot.
pub(super) fn run_switchboard(m: &Model, w: &World, vote: Vote) -> Tally {
    let mut tally = Tally::new(w);
    let (n, per) = (vote.vantages.max(1) as usize, m.checks.len());
    if per == 0 {
        return tally;
    }
    let policy = &m.policy;
    let mut svc = failover::Service::new("svc", State::Operational, Timestamp(0));
    // Probe slot `i` is vantage `i / per` probing check `i % per`.
    let mut health = vec![CheckHealth::new(Timestamp(0)); n * per];
    let mut verdict = vec![Health::Unknown; per];
    let (mut reports, rule) = (reports(m, n), vote.rule());
    // Checks spread over their interval as the scheduler spreads them; the vantages of one
    // check an n-th of its interval apart.
    let phase: Vec<i64> = (0..n * per)
        .map(|i| {
            let (v, c) = ((i / per) as i64, &m.checks[i % per]);
            let checks = per as i64;
            ((i % per) as i64 + 1) * c.interval_ms / (checks + 1) + v * c.interval_ms / n as i64
        })
        .collect();
    let mut due = phase.clone();
    let mut wakes: Vec<i64> = Vec::new();
    let mut line = w.timeline();
    loop {
        // The earliest due probe, the first of equals so the order is stable; or a wake-up
        // asked for by the machine, before the probes due at the same time. Plain loops: this
        // runs tens of millions of times, also in debug builds.
        let (mut next, mut now) = (0, due[0]);
        let mut i = 1;
        while i < due.len() {
            if due[i] < now {
                (next, now) = (i, due[i]);
            }
            i += 1;
        }
        let mut is_tick = false;
        for wk in &wakes {
            if *wk <= now {
                (now, is_tick) = (*wk, true);
            }
        }
        if now >= w.end {
            break;
        }
        let event = if is_tick {
            wakes.retain(|x| *x != now);
            Some(Event::Tick)
        } else {
            let (v, c) = (next / per, next % per);
            let check = &m.checks[c];
            tally.probes += 1;
            if check.primary {
                tally.probed(&mut line, now);
            }
            let ok = !line.fails(v, c, check.primary, now);
            let changed = health[next].observe(check.thresholds, ok, Timestamp(now));
            due[next] = if health[next].wants_confirmation() {
                now + check.retry_ms
            } else if n == 1 {
                now + check.interval_ms
            } else {
                let slots = (now - phase[next]).div_euclid(check.interval_ms) + 1;
                phase[next] + slots * check.interval_ms
            }
            .max(now + 1);
            // A vantage publishes a verdict when it changes; the leader decides the check
            // from every vantage's (the real `cluster::votes::decide`).
            changed.and_then(|_| {
                if let Some(mine) = reports[v].checks.get_mut(&check.name) {
                    (mine.health, mine.at) = (health[next].health, Timestamp(now));
                }
                let h = decide(&reports, &check.name, rule).health?;
                (h != verdict[c]).then(|| {
                    verdict[c] = h;
                    Event::Health {
                        check: check.name.clone(),
                        health: h,
                        detail: String::new(),
                        seen: Default::default(),
                    }
                })
            })
        };
        if let Some(e) = event {
            for a in failover::step(&mut svc, policy, &e, Timestamp(now)) {
                match a {
                    Action::Record { transition: t, .. } if is_decision(t.from, t.to) => {
                        tally.classify(w, now)
                    }
                    Action::WakeAt(at) => wakes.push(at.as_millis()),
                    _ => {}
                }
            }
        }
    }
    tally
}

/// A decision customers see: a switch to the backup, or an outage declared, from a service
/// that was on its primary.
fn is_decision(from: State, to: State) -> bool {
    matches!(from, State::Operational | State::Degraded)
        && matches!(to, State::FailedOver | State::Outage)
}

/// The plain policy of Gatus or Route 53 health checks, from one vantage (vantage 0, with its
/// uplink outages): probe at the interval only, fail over after N consecutive failures, fail
/// back after N consecutive successes.
pub(super) fn run_consecutive(interval: Duration, threshold: u32, w: &World) -> Tally {
    let interval = (interval.as_millis() as i64).max(1);
    let mut tally = Tally::new(w);
    let (mut fails, mut oks, mut on_backup) = (0u32, 0u32, false);
    let mut now = interval / 3;
    let mut line = w.timeline();
    while now < w.end {
        tally.probes += 1;
        tally.probed(&mut line, now);
        if line.fails(0, 0, true, now) {
            fails += 1;
            oks = 0;
        } else {
            oks += 1;
            fails = 0;
        }
        if !on_backup && fails >= threshold {
            on_backup = true;
            tally.classify(w, now);
        } else if on_backup && oks >= threshold {
            on_backup = false;
        }
        now += interval;
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_is_quorum_of_vantages_and_one_vantage_is_a_single_node() {
        assert_eq!(Vote::majority(2).quorum, 2);
        assert_eq!(Vote::majority(3).quorum, 2);
        assert_eq!(Vote::majority(5).quorum, 3);
        let rule = Vote::majority(3).rule();
        assert_eq!(rule.quorum, Quorum::AtLeast { k: 2, n: 3 });
        // Every vantage live and counted: the same as a majority of the live ones.
        assert_eq!(Quorum::Majority.needed(3), 2);
        let m = Model::builtin(
            Duration::from_secs(30),
            Duration::from_secs(5),
            Thresholds {
                failure: 3,
                success: 2,
                adaptive: true,
            },
            Duration::from_secs(300),
        );
        let mut r = reports(&m, 3);
        let set = |r: &mut Vec<Report>, v: usize, h| {
            r[v].checks.get_mut("primary").expect("checked").health = h;
        };
        set(&mut r, 0, Health::Down);
        set(&mut r, 1, Health::Healthy);
        assert_eq!(
            decide(&r, "primary", rule).health,
            None,
            "1 down, 1 up: keep"
        );
        set(&mut r, 2, Health::Down);
        assert_eq!(decide(&r, "primary", rule).health, Some(Health::Down));
        let one = reports(&m, 1);
        let single = Vote::SINGLE.rule();
        assert_eq!(decide(&one, "backup", single).health, Some(Health::Unknown));
    }
}
