//! The suspect-vantage guard: tells "most targets fail" (our own network is cut) from "one target fails". Pure: no I/O, no clock.
//!
//! A single prober cannot tell a broken ticket form from its own broken uplink, unless it
//! looks at its other targets. The guard is fed every outcome of every watched check (the
//! check's name, the host it probes, success, when the probe started) and keeps, per host,
//! the latest outcome of each of its checks. A host is **failing** when every one of its
//! checks failed at its latest probe, **healthy** when one of them passed. The vantage is
//! **suspect** while at least `min_hosts` distinct hosts have been probed and more than
//! `failing_share` of them are failing; it clears as soon as that no longer holds, which is
//! the vantage seeing healthy targets again.
//!
//! Timing is the hard part. A cut makes checks fail one by one as their schedules come round:
//! with a 30 s interval the last check may be probed 30 s after the first, and the first
//! check's confirmation re-probes (`retry_interval`) would make it `Down`, and fail its
//! service over, before the guard has seen anything else fail. So a failure may only be
//! **confirmed** (turn `Down`) once the guard holds *fresh evidence*: outcomes of at least
//! `min_hosts - 1` other hosts from probes that started at or after the failure's first
//! failing probe (`may_confirm`). Fresh evidence that mostly passes says the failure is the
//! target's own, and it is confirmed as today; fresh evidence that mostly fails makes the
//! vantage suspect, and nothing is confirmed. The evidence is not waited for at the others'
//! intervals: when a check starts failing, the guard asks for an immediate probe of one
//! check of every other host whose latest probe is older than the failure (`probe_now`), so
//! on healthy targets the evidence arrives within milliseconds, long before the failing
//! check's own confirmation completes, and a lone failing target fails over exactly as fast
//! as without the guard. Evidence that never comes (other hosts' probes hang) is waited for
//! at most `evidence_wait`; then the failure is confirmed as it would have been without the
//! guard. When the vantage is suspect and a host passes again, every failing host is probed
//! at once too, so the episode ends as soon as the network is back.
//!
//! Which checks are watched is the shell's choice (`Watched`): the checks that probe a host
//! over the network. Vendor status feeds (judged by what the vendor says) and heartbeats (no
//! probe at all) are not evidence of our network and are left out. With fewer than
//! `min_hosts` distinct hosts the guard is inactive: it never suspects and never holds.

use crate::clock::Timestamp;
pub use crate::config::VantageConfig;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One check the guard watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The check's name (unique across the configuration).
    pub check: String,
    /// The host it probes, as its target names it (a name or an IP address).
    pub host: String,
    /// Whether the shell may probe it out of schedule when the guard asks (not a browser
    /// check, which is slow and scarce).
    pub on_demand: bool,
}

/// What a check's latest probe said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Latest {
    success: bool,
    started: Timestamp,
}

#[derive(Clone, Debug)]
struct CheckState {
    host: String,
    on_demand: bool,
    latest: Option<Latest>,
    /// When the first probe of the current failure streak started; `None` while passing.
    failing_since: Option<Timestamp>,
}

/// A suspect episode: since when, and the evidence that started it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    pub since: Timestamp,
    /// The hosts failing when it started, sorted.
    pub failing: Vec<String>,
    /// The hosts probed when it started (failing or not).
    pub hosts: usize,
}

/// A change of the vantage's own judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Most hosts fail at once: our own network is suspect.
    Suspect(Episode),
    /// Enough hosts pass again. `episode` is the one that ended; `failing` the hosts still
    /// failing now (a real outage may outlast the cut).
    Cleared {
        episode: Episode,
        at: Timestamp,
        failing: Vec<String>,
        hosts: usize,
    },
}

/// What one outcome made of the guard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The vantage became suspect, or stopped being.
    pub change: Option<Change>,
    /// Checks the shell should probe now (one per host whose news is older than a failure).
    pub probe_now: Vec<String>,
}

/// Whether a failing check may be confirmed `Down` now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// Yes: the guard is inactive, or fresh evidence from other hosts says the failure is
    /// the target's.
    Yes,
    /// Yes, though the evidence did not come within `evidence_wait`.
    WaitedOut,
    /// Not yet: `fresh` other hosts have been probed since the failure began, `needed` are.
    Hold { fresh: usize, needed: usize },
    /// No: the vantage is suspect.
    Suspect,
}

impl Confirm {
    pub fn allowed(self) -> bool {
        matches!(self, Confirm::Yes | Confirm::WaitedOut)
    }
}

/// The guard's state: every watched check's latest outcome, and the episode in progress.
#[derive(Clone, Debug)]
pub struct Guard {
    settings: VantageConfig,
    checks: HashMap<String, CheckState>,
    /// Host -> its checks, sorted, so every answer is the same for the same inputs.
    hosts: BTreeMap<String, Vec<String>>,
    episode: Option<Episode>,
}

impl Guard {
    pub fn new(settings: VantageConfig, watched: impl IntoIterator<Item = Watched>) -> Guard {
        let mut guard = Guard {
            settings,
            checks: HashMap::new(),
            hosts: BTreeMap::new(),
            episode: None,
        };
        guard.reconfigure(guard.settings.clone(), watched);
        guard
    }

    /// A new configuration: checks still watched on the same host keep what they saw, the
    /// others start unknown, and an episode in progress goes on until an outcome clears it
    /// (so on-call hears of its end).
    pub fn reconfigure(
        &mut self,
        settings: VantageConfig,
        watched: impl IntoIterator<Item = Watched>,
    ) {
        let mut old = std::mem::take(&mut self.checks);
        self.hosts.clear();
        self.settings = settings;
        for w in watched {
            let state = match old.remove(&w.check) {
                Some(mut s) if s.host == w.host => {
                    s.on_demand = w.on_demand;
                    s
                }
                _ => CheckState {
                    host: w.host.clone(),
                    on_demand: w.on_demand,
                    latest: None,
                    failing_since: None,
                },
            };
            self.hosts.entry(w.host).or_default().push(w.check.clone());
            self.checks.insert(w.check, state);
        }
        for checks in self.hosts.values_mut() {
            checks.sort();
        }
    }

    /// Whether the guard judges at all: on, and watching at least `min_hosts` distinct hosts.
    pub fn active(&self) -> bool {
        self.settings.guard && self.hosts.len() >= self.settings.min_hosts.max(1)
    }

    /// Whether this vantage suspects its own network now: its outcomes should count for
    /// nothing (single node) and its votes be set aside (cluster).
    pub fn is_suspect(&self) -> bool {
        self.episode.is_some()
    }

    /// The episode in progress, if the vantage is suspect.
    pub fn episode(&self) -> Option<&Episode> {
        self.episode.as_ref()
    }

    /// The distinct hosts watched.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Feeds one outcome of `check` (ignored unless watched) from a probe that started at
    /// `started`; `now` is when it is seen.
    pub fn observe(
        &mut self,
        check: &str,
        success: bool,
        started: Timestamp,
        now: Timestamp,
    ) -> Observed {
        let Some(state) = self.checks.get_mut(check) else {
            return Observed::default();
        };
        // An outcome older than the one kept (a slow probe overtaken by a quicker one) is
        // not news.
        if state.latest.is_some_and(|l| l.started > started) {
            return Observed::default();
        }
        state.latest = Some(Latest { success, started });
        let began = match (success, state.failing_since) {
            (true, _) => {
                state.failing_since = None;
                None
            }
            (false, None) => {
                state.failing_since = Some(started);
                Some(started)
            }
            (false, Some(_)) => None,
        };
        let host = state.host.clone();
        if !self.active() {
            return Observed::default();
        }
        let mut observed = Observed::default();
        let (failing, hosts) = self.failing_hosts();
        let suspect_now = self.judges_suspect(failing.len(), hosts);
        match (&self.episode, suspect_now) {
            (None, true) => {
                let episode = Episode {
                    since: now,
                    failing: failing.clone(),
                    hosts,
                };
                self.episode = Some(episode.clone());
                observed.change = Some(Change::Suspect(episode));
            }
            (Some(episode), false) => {
                observed.change = Some(Change::Cleared {
                    episode: episode.clone(),
                    at: now,
                    failing: failing.clone(),
                    hosts,
                });
                self.episode = None;
            }
            _ => {}
        }
        if let Some(since) = began {
            // A failure begins: hear from every other host whose news is older.
            observed.probe_now = self.stale_hosts(&host, since);
        } else if success && self.episode.is_some() {
            // A host passes while suspect: look at the failing ones again now, so the episode
            // ends as soon as the network is back rather than at their intervals.
            observed.probe_now = failing
                .iter()
                .filter(|h| **h != host)
                .filter_map(|h| self.on_demand_check(h))
                .collect();
        }
        observed
    }

    /// Whether `check`'s failure may be confirmed now (see the module header).
    pub fn may_confirm(&self, check: &str, now: Timestamp) -> Confirm {
        if !self.active() {
            return Confirm::Yes;
        }
        if self.episode.is_some() {
            return Confirm::Suspect;
        }
        let Some(state) = self.checks.get(check) else {
            return Confirm::Yes;
        };
        let Some(since) = state.failing_since else {
            return Confirm::Yes;
        };
        let needed = self.settings.min_hosts.max(1) - 1;
        let fresh = self
            .hosts
            .iter()
            .filter(|(h, _)| **h != state.host)
            .filter(|(_, checks)| {
                checks
                    .iter()
                    .any(|c| self.checks[c].latest.is_some_and(|l| l.started >= since))
            })
            .count();
        if fresh >= needed {
            Confirm::Yes
        } else if now.since(since) >= self.settings.evidence_wait {
            Confirm::WaitedOut
        } else {
            Confirm::Hold { fresh, needed }
        }
    }

    /// The failing hosts (sorted) and how many hosts have been probed at all.
    fn failing_hosts(&self) -> (Vec<String>, usize) {
        let mut failing = Vec::new();
        let mut known = 0;
        for (host, checks) in &self.hosts {
            let latest: Vec<Latest> = checks
                .iter()
                .filter_map(|c| self.checks[c].latest)
                .collect();
            if latest.is_empty() {
                continue;
            }
            known += 1;
            if latest.iter().all(|l| !l.success) {
                failing.push(host.clone());
            }
        }
        (failing, known)
    }

    fn judges_suspect(&self, failing: usize, hosts: usize) -> bool {
        hosts >= self.settings.min_hosts.max(1)
            && failing as f64 > self.settings.failing_share * hosts as f64
    }

    /// One check to probe now on each host other than `host` with no probe started at or
    /// after `since`.
    fn stale_hosts(&self, host: &str, since: Timestamp) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|(h, _)| h.as_str() != host)
            .filter(|(_, checks)| {
                !checks
                    .iter()
                    .any(|c| self.checks[c].latest.is_some_and(|l| l.started >= since))
            })
            .filter_map(|(h, _)| self.on_demand_check(h))
            .collect()
    }

    fn on_demand_check(&self, host: &str) -> Option<String> {
        self.hosts
            .get(host)?
            .iter()
            .find(|c| self.checks[*c].on_demand)
            .cloned()
    }

    /// The hosts failing now, for evidence lines.
    pub fn failing_now(&self) -> Vec<String> {
        self.failing_hosts().0
    }

    /// Every watched host, sorted.
    pub fn host_names(&self) -> BTreeSet<&str> {
        self.hosts.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    //! Traces of timed outcomes: `t` is seconds, checks are named after their host.
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn settings() -> VantageConfig {
        VantageConfig::default()
    }

    fn guard(hosts: &[&str]) -> Guard {
        Guard::new(
            settings(),
            hosts.iter().map(|h| Watched {
                check: format!("{h}-check"),
                host: (*h).to_owned(),
                on_demand: true,
            }),
        )
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_millis(1_000_000 + s as i64 * 1000)
    }

    fn feed(g: &mut Guard, host: &str, ok: bool, s: u64) -> Observed {
        g.observe(&format!("{host}-check"), ok, t(s), t(s))
    }

    #[test]
    fn most_hosts_failing_at_once_is_suspect_and_passing_again_clears() {
        let mut g = guard(&["a", "b", "c", "d"]);
        for h in ["a", "b", "c", "d"] {
            feed(&mut g, h, true, 0);
        }
        assert!(feed(&mut g, "a", false, 30).change.is_none());
        assert!(
            feed(&mut g, "b", false, 31).change.is_none(),
            "2 of 4 is not most"
        );
        let o = feed(&mut g, "c", false, 32);
        assert_eq!(
            o.change,
            Some(Change::Suspect(Episode {
                since: t(32),
                failing: vec!["a".into(), "b".into(), "c".into()],
                hosts: 4
            }))
        );
        assert!(g.is_suspect());
        assert_eq!(g.may_confirm("a-check", t(40)), Confirm::Suspect);
        assert!(feed(&mut g, "d", false, 33).change.is_none(), "one episode");
        let o = feed(&mut g, "a", true, 60);
        assert!(o.change.is_none(), "3 of 4 still failing");
        assert_eq!(o.probe_now, vec!["b-check", "c-check", "d-check"]);
        assert!(
            matches!(
                feed(&mut g, "b", true, 61).change,
                Some(Change::Cleared { .. })
            ),
            "2 of 4 failing is not most"
        );
    }

    #[test]
    fn clears_once_no_more_than_the_share_fails() {
        let mut g = guard(&["a", "b", "c"]);
        for h in ["a", "b", "c"] {
            feed(&mut g, h, true, 0);
        }
        feed(&mut g, "a", false, 30);
        assert!(matches!(
            feed(&mut g, "b", false, 31).change,
            Some(Change::Suspect(_))
        ));
        match feed(&mut g, "b", true, 50).change {
            Some(Change::Cleared { failing, hosts, .. }) => {
                assert_eq!(failing, vec!["a".to_string()]);
                assert_eq!(hosts, 3);
            }
            other => panic!("expected a clear, got {other:?}"),
        }
        assert!(!g.is_suspect());
    }

    #[test]
    fn a_failure_asks_for_fresh_news_of_every_other_host_and_waits_for_it() {
        let mut g = guard(&["a", "b", "c", "d"]);
        for h in ["a", "b", "c", "d"] {
            feed(&mut g, h, true, 0);
        }
        let o = feed(&mut g, "a", false, 30);
        assert_eq!(o.probe_now, vec!["b-check", "c-check", "d-check"]);
        assert_eq!(
            g.may_confirm("a-check", t(35)),
            Confirm::Hold {
                fresh: 0,
                needed: 2
            }
        );
        feed(&mut g, "b", true, 30);
        assert_eq!(
            g.may_confirm("a-check", t(35)),
            Confirm::Hold {
                fresh: 1,
                needed: 2
            }
        );
        feed(&mut g, "c", true, 30);
        assert_eq!(g.may_confirm("a-check", t(35)), Confirm::Yes);
        // The second failure of a streak asks for nothing more.
        assert!(feed(&mut g, "a", false, 35).probe_now.is_empty());
    }

    #[test]
    fn news_older_than_the_failure_is_not_evidence() {
        let mut g = guard(&["a", "b", "c"]);
        feed(&mut g, "b", true, 29);
        feed(&mut g, "c", true, 29);
        feed(&mut g, "a", false, 30);
        assert!(!g.may_confirm("a-check", t(31)).allowed());
    }

    #[test]
    fn evidence_that_never_comes_is_waited_for_at_most_evidence_wait() {
        let mut g = guard(&["a", "b", "c"]);
        feed(&mut g, "a", false, 30);
        assert!(!g.may_confirm("a-check", t(59)).allowed());
        assert_eq!(g.may_confirm("a-check", t(60)), Confirm::WaitedOut);
    }

    #[test]
    fn fewer_hosts_than_min_hosts_leave_the_guard_inactive() {
        let mut g = guard(&["a", "b"]);
        assert!(!g.active());
        feed(&mut g, "a", false, 30);
        assert!(feed(&mut g, "b", false, 30).change.is_none());
        assert!(!g.is_suspect());
        assert_eq!(g.may_confirm("a-check", t(30)), Confirm::Yes);
    }

    #[test]
    fn checks_of_one_host_count_once_and_a_host_passes_when_one_of_its_checks_does() {
        let mut g = Guard::new(
            settings(),
            [
                ("x1", "x"),
                ("x2", "x"),
                ("x3", "x"),
                ("y", "y"),
                ("z", "z"),
            ]
            .into_iter()
            .map(|(c, h)| Watched {
                check: c.into(),
                host: h.into(),
                on_demand: true,
            }),
        );
        assert_eq!(g.hosts(), 3);
        for c in ["x1", "x2", "x3", "y", "z"] {
            g.observe(c, true, t(0), t(0));
        }
        g.observe("x1", false, t(30), t(30));
        g.observe("x2", false, t(30), t(30));
        let o = g.observe("y", false, t(31), t(31));
        assert!(o.change.is_none(), "x still has a passing check");
        let o = g.observe("x3", false, t(32), t(32));
        assert!(matches!(o.change, Some(Change::Suspect(_))));
    }

    #[test]
    fn an_outcome_overtaken_by_a_newer_one_is_ignored() {
        let mut g = guard(&["a", "b", "c"]);
        feed(&mut g, "a", true, 40);
        g.observe("a-check", false, t(30), t(41));
        assert_eq!(g.failing_now(), Vec::<String>::new());
    }

    #[test]
    fn off_never_suspects() {
        let mut g = Guard::new(
            VantageConfig {
                guard: false,
                ..settings()
            },
            ["a", "b", "c"].iter().map(|h| Watched {
                check: format!("{h}-check"),
                host: (*h).into(),
                on_demand: true,
            }),
        );
        for h in ["a", "b", "c"] {
            feed(&mut g, h, false, 30);
        }
        assert!(!g.is_suspect());
        assert_eq!(g.may_confirm("a-check", t(31)), Confirm::Yes);
    }

    #[test]
    fn a_reload_keeps_what_unchanged_checks_saw_and_the_episode() {
        let mut g = guard(&["a", "b", "c"]);
        feed(&mut g, "c", true, 0);
        feed(&mut g, "a", false, 30);
        feed(&mut g, "b", false, 30);
        assert!(g.is_suspect());
        g.reconfigure(
            settings(),
            ["a", "b", "c", "d"].iter().map(|h| Watched {
                check: format!("{h}-check"),
                host: (*h).into(),
                on_demand: h != &"d",
            }),
        );
        assert!(g.is_suspect());
        assert_eq!(g.failing_now(), vec!["a", "b"]);
        // d is not probed yet: 2 of the 3 probed hosts still fail.
        assert!(feed(&mut g, "c", true, 40).change.is_none());
        assert!(matches!(
            feed(&mut g, "d", true, 41).change,
            Some(Change::Cleared { .. })
        ));
    }

    /// One step of a random trace: a host's check passes or fails, some seconds later.
    fn steps() -> impl Strategy<Value = Vec<(usize, bool, u64)>> {
        prop::collection::vec((0usize..5, prop::bool::weighted(0.6), 0u64..20), 1..120)
    }

    proptest! {
        /// The guard is suspect exactly when more than half of the probed hosts (at least
        /// three) failed at their latest probe, and every change it reports alternates.
        #[test]
        fn suspect_means_most_probed_hosts_fail(trace in steps()) {
            let hosts = ["a", "b", "c", "d", "e"];
            let mut g = guard(&hosts);
            let mut latest: [Option<bool>; 5] = [None; 5];
            let mut s = 0;
            let mut suspect = false;
            for (h, ok, dt) in trace {
                s += dt;
                latest[h] = Some(ok);
                let o = feed(&mut g, hosts[h], ok, s);
                let known = latest.iter().flatten().count();
                let failing = latest.iter().flatten().filter(|ok| !**ok).count();
                let expected = known >= 3 && failing * 2 > known;
                prop_assert_eq!(g.is_suspect(), expected);
                match o.change {
                    Some(Change::Suspect(_)) => { prop_assert!(!suspect); suspect = true; }
                    Some(Change::Cleared { .. }) => { prop_assert!(suspect); suspect = false; }
                    None => prop_assert_eq!(suspect, expected),
                }
            }
        }

        /// While the guard is not suspect, a failure is never confirmed before two other
        /// hosts were probed after it began, unless `evidence_wait` passed.
        #[test]
        fn no_confirmation_without_fresh_evidence(trace in steps()) {
            let hosts = ["a", "b", "c", "d", "e"];
            let mut g = guard(&hosts);
            let mut started: [Option<(bool, u64)>; 5] = [None; 5];
            let mut since: [Option<u64>; 5] = [None; 5];
            let mut s = 0;
            for (h, ok, dt) in trace {
                s += dt;
                started[h] = Some((ok, s));
                since[h] = if ok { None } else { since[h].or(Some(s)) };
                feed(&mut g, hosts[h], ok, s);
                for (i, host) in hosts.iter().enumerate() {
                    let Some(f) = since[i] else { continue };
                    let fresh = (0..5)
                        .filter(|j| *j != i)
                        .filter(|j| started[*j].is_some_and(|(_, at)| at >= f))
                        .count();
                    let c = g.may_confirm(&format!("{host}-check"), t(s));
                    if g.is_suspect() {
                        prop_assert_eq!(c, Confirm::Suspect);
                    } else if fresh >= 2 {
                        prop_assert_eq!(c, Confirm::Yes);
                    } else if Duration::from_secs(s - f) >= settings().evidence_wait {
                        prop_assert_eq!(c, Confirm::WaitedOut);
                    } else {
                        prop_assert!(!c.allowed());
                    }
                }
            }
        }
    }
}
