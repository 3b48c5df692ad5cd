//! The vantage table's goal (issue 15, point 4) on a simulated year of four services, and
//! what fools a majority of three.

use super::*;

/// A year in which no two vantages' uplinks are down at once (seed 1's is not; see the
/// test below). README, "Judgement", gives the share of seeds that are like it.
const GOAL_SEED: u64 = 3;

#[test]
fn three_vantages_voting_make_no_false_failover_and_detect_within_25s_where_one_is_fooled() {
    let p = Params {
        days: 365,
        vantages: Some(3),
        seed: GOAL_SEED,
        ..Params::default()
    };
    let rows = simulate(&p);
    println!("{}", report(&p, &rows));
    let (one, one_fast, three, plain) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    assert_eq!(one.policy, "1 vantage, switchboard defaults");
    assert_eq!(
        three.policy,
        "3 vantages, 2 agree, fixed 4 failures, re-probe 1.5s each"
    );
    assert_eq!(three.outages, 4 * 97, "8 outages a service-month");
    // The goal: nothing false, nothing missed, every outage acted on within 25 s.
    assert_eq!(three.false_failovers, 0, "{three:?}");
    assert_eq!(three.missed, 0, "{three:?}");
    let worst = three.detection_max.expect("outages were caught");
    assert!(worst <= 25.0, "worst detection {worst}s");
    // One vantage alone is fooled by its own uplink, with today's defaults (and today's
    // 55 s worst case) or with the vantages' faster confirmation (and the noise besides).
    assert!(one.false_failovers >= 5, "{one:?}");
    assert!(one.detection_max > Some(45.0), "{one:?}");
    assert!(
        one_fast.false_failovers > one.false_failovers,
        "{one_fast:?}"
    );
    assert!(plain.false_failovers >= 5 && plain.missed > 0, "{plain:?}");
}

#[test]
fn a_majority_is_fooled_only_while_a_vantage_is_cut_off() {
    // Seed 1's day 54: two vantages' uplinks are down at once, and two of three agree on
    // "down" for every service. No vote can tell that from an outage: the suspect guard
    // (issue 15) is what answers it.
    let p = Params {
        days: 60,
        vantages: Some(3),
        ..Params::default()
    };
    let fast = p
        .builtin(true)
        .with_confirmation(p.vantage_failure_threshold, p.vantage_retry_interval);
    let mut fooled = 0;
    for service in 0..p.services {
        let w = World::new(&p, service);
        let t = run_switchboard(&fast, &w, Vote::majority(3));
        for at in &t.false_at {
            let cut_off = (0..3)
                .filter(|v| (0..60).any(|back| w.cut_off(*v, at - back * 1000)))
                .count();
            assert!(cut_off >= 1, "service {service} fooled at {at} ms");
            fooled += 1;
        }
    }
    assert!(
        fooled >= 4,
        "every service fooled on day 54, not {fooled} decisions"
    );
}

#[test]
fn without_vantages_the_table_is_the_single_node_one() {
    let p = Params::default();
    let rows = simulate(&p);
    assert_eq!(rows.len(), 3);
    assert!(rows[0].policy.starts_with("switchboard defaults"));
    // A single node's world has no uplink outages: its numbers are as before vantages.
    assert_eq!((rows[0].false_failovers, rows[0].missed), (0, 0));
    let worst = rows[0].detection_max.expect("outages were caught");
    assert!((54.0..=55.0).contains(&worst), "today's 55 s, not {worst}");
}

#[test]
fn same_seed_same_vantage_table() {
    let p = Params {
        days: 7,
        services: 1,
        vantages: Some(3),
        quorum: Some(3),
        ..Params::default()
    };
    let rows = simulate(&p);
    assert_eq!(rows, simulate(&p));
    assert!(
        rows[2].policy.starts_with("3 vantages, 3 agree"),
        "{rows:?}"
    );
}
