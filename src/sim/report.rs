//! The tables `switchboard simulate` prints: the world simulated, then one row per policy.

use super::world::World;
use super::{Params, Row, ServiceRun};
use std::fmt::Write as _;
use std::time::Duration;

/// `30s`, `5m`, and `1.5s` rather than humantime's `1s 500ms`.
pub(super) fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 || d >= Duration::from_secs(60) {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else {
        format!("{}s", d.as_millis() as f64 / 1000.0)
    }
}

/// The table `switchboard simulate` prints.
pub fn report(p: &Params, rows: &[Row]) -> String {
    let mut out = String::new();
    world(&mut out, p, &format!("{} services", p.services));
    let _ = writeln!(
        out,
        "{}: interval {}, retry_interval {}, failure_threshold {}, success_threshold {}, recovery_hold {}",
        if p.vantages.is_some() { "switchboard defaults" } else { "settings" },
        humantime::format_duration(p.interval),
        humantime::format_duration(p.retry_interval),
        p.failure_threshold,
        p.success_threshold,
        humantime::format_duration(p.recovery_hold)
    );
    if let Some(vote) = p.vote() {
        let _ = writeln!(
            out,
            "{} vantages, each probing every check every {}, {} apart; each vantage's own health per check; a check's verdict is\n\
             down when {} vantages say down, healthy when {} say healthy, else unchanged",
            vote.vantages,
            humantime::format_duration(p.interval),
            duration(p.interval / vote.vantages.max(1)),
            vote.quorum,
            vote.quorum
        );
    }
    out.push('\n');
    table(&mut out, rows);
    legend(&mut out, p);
    out
}

/// What `switchboard simulate --config FILE` prints: the world, then each service with its
/// settings and its table.
pub fn report_config(p: &Params, source: &str, runs: &[ServiceRun]) -> String {
    let mut out = String::new();
    world(
        &mut out,
        p,
        &format!("{} services from {source}", runs.len()),
    );
    if let Some(vote) = p.vote() {
        let _ = writeln!(
            out,
            "{} vantages, each probing every check at its interval, spread evenly over it; a check's verdict is down when\n\
             {} vantages say down, healthy when {} say healthy, else unchanged",
            vote.vantages, vote.quorum, vote.quorum
        );
    }
    for r in runs {
        let _ = writeln!(out, "\n{} ({})", r.id, r.name);
        for line in &r.settings {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "  {}\n", r.policy);
        table(&mut out, &r.rows);
    }
    legend(&mut out, p);
    out
}

/// The first lines: what was simulated, and with vantages their own faults.
fn world(out: &mut String, p: &Params, services: &str) {
    let _ = writeln!(
        out,
        "{services} x {} days, seed {}: {:.1} % random probe failures, {} bursts and {} true outages (1 min to 4 h) per service-month",
        p.days,
        p.seed,
        p.noise * 100.0,
        p.bursts,
        p.outages
    );
    if let Some(vote) = p.vote() {
        let _ = writeln!(
            out,
            "each vantage: its own uplink down {} (1 to 20 min, every probe from it failing), its own random failures;\n\
             {} vantages cut off at once: {}",
            match p.uplink_outages {
                1 => "once a week".to_string(),
                n => format!("{n} times a week"),
            },
            vote.quorum,
            match World::new(p, 0).cut_off_together(vote.quorum as usize) {
                0 => "never".to_string(),
                1 => "once".to_string(),
                n => format!("{n} times"),
            }
        );
    }
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

fn legend(out: &mut String, p: &Params) {
    let _ = writeln!(
        out,
        "\ndetection = from the start of a true outage to the switch to the backup; conf = from the outage's first\n\
         failing probe to the switch (the confirmation time); failovers = switches to the backup and outages declared\n\
         (primary and backup both down); false = those with no true outage under way"
    );
    if p.vantages.is_some() {
        let _ = writeln!(
            out,
            "1 vantage = one node, as today, with its own uplink outages; probes = from every vantage"
        );
    }
}
