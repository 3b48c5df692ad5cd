//! The simulated world of one service: when its primary is truly down, when probes fail in
//! bursts or at random, and when each vantage's own uplink is down.
//!
//! Whether a probe fails is a pure function of (seed, vantage, check, t), so every policy
//! sees the same probe data wherever its schedule puts a probe. True outages and bursts are
//! the target's: every vantage sees them. Random failures are drawn independently for each
//! vantage. An uplink outage is the vantage's own network: every probe it makes fails, of
//! every check of every service, so the uplinks are drawn from the seed alone and shared by
//! the worlds of all services.

use super::Params;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const WEEK: i64 = 7 * 24 * HOUR;

/// Sorted, disjoint `[start, end)` spans in ms, looked up by binary search.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Spans(Vec<(i64, i64)>);

impl Spans {
    /// The union of `spans`, given in any order, overlapping or not.
    fn union(mut spans: Vec<(i64, i64)>) -> Spans {
        spans.sort_unstable();
        let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        Spans(out)
    }

    /// The position of the span holding `t`.
    pub(super) fn find(&self, t: i64) -> Option<usize> {
        let i = self.0.partition_point(|(s, _)| *s <= t);
        (i > 0 && t < self.0[i - 1].1).then(|| i - 1)
    }

    #[cfg(test)]
    pub(super) fn contains(&self, t: i64) -> bool {
        self.find(t).is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn start(&self, i: usize) -> i64 {
        self.0[i].0
    }

    #[cfg(test)]
    pub(super) fn spans(&self) -> &[(i64, i64)] {
        &self.0
    }
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

/// A stream of draws in [0, 1) from a seed.
fn draws(seed: u64) -> impl FnMut() -> f64 {
    let mut n = seed;
    move || {
        n = mix(n);
        unit(n)
    }
}

/// A count given per 30 days, for `days` days (8 a month is 97 a year).
fn per_days(per_month: u32, days: u32) -> usize {
    ((u64::from(per_month) * u64::from(days) + 15) / 30) as usize
}

/// One service's simulated world.
pub(super) struct World {
    seed: u64,
    /// True outages of the primary: apart from each other by more than an hour.
    pub(super) outages: Spans,
    bursts: Spans,
    /// Per vantage, the spans when its own uplink is down.
    uplinks: Vec<Spans>,
    noise: f64,
    pub(super) end: i64,
}

impl World {
    /// Service `service`'s world, with the uplinks of `p.vantages` vantages (none without
    /// vantages, as before them, or when `p.uplink_outages` is 0).
    pub(super) fn new(p: &Params, service: u32) -> World {
        let seed = mix(p.seed ^ (u64::from(service) << 32));
        let end = i64::from(p.days) * 24 * HOUR;
        let mut draw = draws(seed);
        // Outages: 1 minute to 4 hours, log-uniform, kept apart so each is its own event.
        let mut outages: Vec<(i64, i64)> = Vec::new();
        let wanted = per_days(p.outages, p.days);
        let mut tries = 0;
        while outages.len() < wanted && tries < 10_000 + 100 * wanted {
            tries += 1;
            let len = (MINUTE as f64 * (240.0f64).powf(draw())) as i64;
            let start = HOUR + (draw() * (end - 2 * HOUR - len) as f64) as i64;
            let apart = |(s, e): &(i64, i64)| start + len + HOUR < *s || start > e + HOUR;
            if outages.iter().all(apart) {
                outages.push((start, start + len));
            }
        }
        let bursts = (0..per_days(p.bursts, p.days))
            .map(|_| {
                let start = (draw() * end as f64) as i64;
                (start, start + 1_000 + (draw() * 7_000.0) as i64)
            })
            .collect();
        World {
            seed,
            outages: Spans::union(outages),
            bursts: Spans::union(bursts),
            uplinks: (0..p.vantages.unwrap_or(0))
                .map(|v| uplinks(p, v, end))
                .collect(),
            noise: p.noise,
            end,
        }
    }

    /// Whether a probe from `vantage` of check number `check` at `t` fails. Outages and
    /// bursts hit primary checks only; the vantage's uplink and random failures hit every
    /// check. Vantage 0's random failures are the single node's of earlier versions.
    #[cfg(test)]
    pub(super) fn fails(&self, vantage: usize, check: usize, primary: bool, t: i64) -> bool {
        self.noisy(vantage, check, t)
            || self.cut_off(vantage, t)
            || (primary && (self.outages.contains(t) || self.bursts.contains(t)))
    }

    fn noisy(&self, vantage: usize, check: usize, t: i64) -> bool {
        let key = (check as u64)
            .wrapping_add(1)
            .wrapping_add((vantage as u64) << 32);
        unit(self.seed ^ mix(key) ^ (t as u64)) < self.noise
    }

    pub(super) fn outage_at(&self, t: i64) -> Option<usize> {
        self.outages.find(t)
    }

    /// Whether `vantage`'s own uplink is down at `t`.
    #[cfg(test)]
    pub(super) fn cut_off(&self, vantage: usize, t: i64) -> bool {
        self.uplinks.get(vantage).is_some_and(|u| u.contains(t))
    }

    /// How many times at least `k` vantages' uplinks were down at once (the vantages are
    /// the same for every service).
    pub(super) fn cut_off_together(&self, k: usize) -> u32 {
        let mut edges: Vec<(i64, i32)> = self
            .uplinks
            .iter()
            .flat_map(|u| u.0.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]))
            .collect();
        // An end before a start at the same instant: spans are half-open.
        edges.sort_unstable();
        let (mut down, mut times) = (0usize, 0);
        for (_, step) in edges {
            let before = down;
            down = down.saturating_add_signed(step as isize);
            if before < k && down >= k {
                times += 1;
            }
        }
        times
    }

    /// A run's view of the world, for probes in time order.
    pub(super) fn timeline(&self) -> Timeline<'_> {
        Timeline {
            world: self,
            outage: 0,
            burst: 0,
            uplink: vec![0; self.uplinks.len()],
        }
    }
}

/// The world read by one run, whose probes come in time order: each list of spans is walked
/// with a cursor instead of searched (the simulation makes tens of millions of probes).
pub(super) struct Timeline<'w> {
    world: &'w World,
    outage: usize,
    burst: usize,
    uplink: Vec<usize>,
}

impl Timeline<'_> {
    /// `World::fails`, for a `t` no earlier than the last one asked about.
    pub(super) fn fails(&mut self, vantage: usize, check: usize, primary: bool, t: i64) -> bool {
        let w = self.world;
        if w.noisy(vantage, check, t) {
            return true;
        }
        if let (Some(u), Some(i)) = (w.uplinks.get(vantage), self.uplink.get_mut(vantage)) {
            if Self::walk(u, i, t) {
                return true;
            }
        }
        primary
            && (Self::walk(&w.outages, &mut self.outage, t)
                || Self::walk(&w.bursts, &mut self.burst, t))
    }

    /// The outage under way at `t`, for a `t` no earlier than the last one asked about.
    pub(super) fn outage_at(&mut self, t: i64) -> Option<usize> {
        Self::walk(&self.world.outages, &mut self.outage, t).then_some(self.outage)
    }

    /// Whether `t` is in `spans`, moving the cursor `i` past the spans that end by `t`.
    fn walk(spans: &Spans, i: &mut usize, t: i64) -> bool {
        let s = &spans.0;
        while *i < s.len() && s[*i].1 <= t {
            *i += 1;
        }
        *i < s.len() && s[*i].0 <= t
    }
}

/// Vantage `v`'s own uplink outages: `p.uplink_outages` in each week, each 1 to 20 minutes
/// at a random time of the week. Drawn from the seed and the vantage only: the same for
/// every service.
fn uplinks(p: &Params, v: u32, end: i64) -> Spans {
    let mut draw = draws(mix(p.seed ^ 0x7570_6C69_6E6B ^ (u64::from(v) << 40)));
    let mut spans = Vec::new();
    let mut week = 0;
    while week < end {
        for _ in 0..p.uplink_outages {
            let start = week + (draw() * WEEK as f64) as i64;
            let len = MINUTE + (draw() * (19 * MINUTE) as f64) as i64;
            if start < end {
                spans.push((start, start + len));
            }
        }
        week += WEEK;
    }
    Spans::union(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_deterministic_and_probe_data_is_shared_by_time() {
        let p = Params::default();
        let (a, b) = (World::new(&p, 0), World::new(&p, 0));
        assert_eq!(a.outages, b.outages);
        assert_eq!(a.fails(0, 0, true, 123_456), b.fails(0, 0, true, 123_456));
        assert_eq!(a.outages.len(), 8);
        let s = a.outages.start(0);
        assert!(a.fails(0, 0, true, s), "a probe during an outage fails");
        assert!(a.fails(2, 0, true, s), "every vantage sees it");
    }

    #[test]
    fn noise_rate_is_what_was_asked_and_independent_per_vantage() {
        let p = Params {
            vantages: Some(2),
            uplink_outages: 0,
            ..Params::default()
        };
        let w = World::new(&p, 3);
        let n = 200_000;
        let times = || (0..n).map(|i| i as i64 * 997);
        let failed = |v| {
            times()
                .filter(|t| w.fails(v, 1, false, *t))
                .collect::<Vec<_>>()
        };
        let (a, b) = (failed(0), failed(1));
        for f in [&a, &b] {
            let rate = f.len() as f64 / n as f64;
            assert!((0.027..0.033).contains(&rate), "rate {rate}");
        }
        // Independent: both fail together about noise² of the time, not noise.
        let both = a.iter().filter(|t| b.binary_search(t).is_ok()).count();
        assert!(both < n / 500, "{both} probes failed from both vantages");
    }

    #[test]
    fn uplinks_are_weekly_per_vantage_shared_by_services_and_fail_every_check() {
        let p = Params {
            days: 364,
            vantages: Some(3),
            uplink_outages: 1,
            ..Params::default()
        };
        let (a, b) = (World::new(&p, 0), World::new(&p, 1));
        assert_eq!(
            a.uplinks, b.uplinks,
            "a vantage's network is down for all services"
        );
        assert_ne!(a.uplinks[0], a.uplinks[1], "each vantage has its own");
        for u in &a.uplinks {
            assert!((50..=52).contains(&u.len()), "{} in 52 weeks", u.len());
            for (s, e) in u.spans() {
                assert!((MINUTE..=20 * MINUTE).contains(&(e - s)), "{s}..{e}");
            }
        }
        let all: u32 = a.uplinks.iter().map(|u| u.len() as u32).sum();
        let (one, two) = (a.cut_off_together(1), a.cut_off_together(2));
        assert!(one <= all && one + two >= all, "{one} + {two} of {all}");
        assert!(two < 10, "seldom two at once: {two}");
        let (s, _) = a.uplinks[1].spans()[0];
        assert!(a.fails(1, 0, false, s) && a.fails(1, 1, true, s) && b.fails(1, 1, false, s));
    }

    #[test]
    fn the_timeline_sees_what_the_world_says() {
        let p = Params {
            days: 60,
            vantages: Some(3),
            uplink_outages: 3,
            bursts: 3000,
            ..Params::default()
        };
        let w = World::new(&p, 1);
        let mut line = w.timeline();
        let mut seen = [0; 2];
        for i in 0..(60 * 24 * 3600 / 7) {
            let t = i * 7_000 + i % 5;
            let (v, c) = ((i % 3) as usize, (i % 2) as usize);
            let fails = w.fails(v, c, c == 0, t);
            assert_eq!(line.fails(v, c, c == 0, t), fails, "{v} {c} {t}");
            assert_eq!(line.outage_at(t), w.outage_at(t), "{t}");
            seen[usize::from(fails)] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    }

    #[test]
    fn outages_and_bursts_are_counted_per_month() {
        let p = Params {
            days: 360,
            ..Params::default()
        };
        let w = World::new(&p, 0);
        assert_eq!(w.outages.len(), 8 * 12);
        assert!(w.bursts.len() > 300, "{}", w.bursts.len());
    }
}
