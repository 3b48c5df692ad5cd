//! The month-long simulation: Switchboard's defaults make no false failover and miss no outage
//! under 3 % random probe failures, where the plain policy fails on both counts.

use switchboard::sim::{simulate, Params};

#[test]
fn defaults_make_no_false_failover_and_catch_every_outage_within_the_confirmation_time() {
    let p = Params::default();
    let rows = simulate(&p);
    let (ours, fixed, plain) = (&rows[0], &rows[1], &rows[2]);
    assert!(ours.policy.starts_with("switchboard defaults"));
    assert_eq!(ours.outages, 4 * 8, "every service-month has its outages");
    assert_eq!(ours.false_failovers, 0, "{ours:?}");
    assert_eq!(ours.missed, 0, "{ours:?}");
    // The confirmation time: at most failure_threshold + 3 failures, re-probed at retry_interval.
    let most = (p.failure_threshold + 3 - 1) as f64 * p.retry_interval.as_secs_f64();
    let confirmation = ours.confirmation_max.expect("outages were caught");
    assert!(
        confirmation <= most,
        "confirmation {confirmation}s > {most}s"
    );
    // The same world fools the simpler policies: the noise is real, not a rigged test.
    assert!(fixed.false_failovers > 0, "{fixed:?}");
    assert!(plain.false_failovers > 0, "{plain:?}");
    assert!(
        plain.detection_p50 > ours.detection_p50,
        "{plain:?} vs {ours:?}"
    );
}

#[test]
fn same_seed_same_table() {
    let p = Params {
        services: 1,
        ..Params::default()
    };
    assert_eq!(simulate(&p), simulate(&p));
}
