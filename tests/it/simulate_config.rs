//! `switchboard simulate --config FILE` runs a team's own services, checks and thresholds
//! (testdata/simulate/), deterministically for a seed; without `--config` the built-in set;
//! `--vantages N` sets N voting vantages, each with its own uplink outages, beside one.

use std::process::Command;

fn simulate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("simulate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("switchboard simulate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CONFIG: &str = "testdata/simulate/switchboard.toml";

#[test]
fn simulate_config_runs_the_teams_own_services_and_thresholds_deterministically() {
    let args = [
        "--config", CONFIG, "--noise", "0.03", "--months", "1", "--seed", "7",
    ];
    let (code, out, err) = simulate(&args);
    println!("{out}");
    assert_eq!(code, Some(0), "{err}");
    for must in [
        "2 services from testdata/simulate/switchboard.toml x 30 days, seed 7: 3.0 % random probe failures, 30 bursts and 8 true outages",
        "helpdesk-form (Helpdesk form)",
        // [defaults]: every 20 s, threshold 2, fixed.
        "helpdesk-page (primary): every 20s, re-probe 4s, failure_threshold 2, success_threshold 2, confirmation fixed (at most 2 failures)",
        "helpdesk-backup (backup): every 20s",
        "failover_when any, failback auto, recovery_hold 3m",
        "live-chat (Live chat)",
        // Per check: every 45 s, threshold 4, adaptive.
        "chat-widget (primary): every 45s, re-probe 4s, failure_threshold 4, success_threshold 2, confirmation adaptive (at most 7 failures)",
        "chat-api (primary): every 45s",
        "failover_when all, failback manual (simulated as an operator failing back after recovery_hold)",
        "your settings",
        "the same with confirmation = \"adaptive\"",
        "the same with confirmation = \"fixed\"",
        "2 consecutive failures at 20s (Gatus / Route 53 style)",
        "4 consecutive failures at 45s (Gatus / Route 53 style)",
    ] {
        assert!(out.contains(must), "missing {must:?}");
    }
    assert!(!out.contains("4 services"), "not the built-in set");

    let (_, again, _) = simulate(&args);
    assert_eq!(out, again, "same seed, same report");
    let (_, other, _) = simulate(&[
        "--config", CONFIG, "--noise", "0.03", "--months", "1", "--seed", "8",
    ]);
    assert_ne!(out, other, "another seed draws another month");
}

#[test]
fn simulate_without_config_is_the_built_in_set_and_a_bad_config_is_a_usage_error() {
    let (code, out, _) = simulate(&["--days", "3", "--services", "1"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("1 services x 3 days, seed 1"), "{out}");
    assert!(out.contains("switchboard defaults (noise-aware confirmation)"));

    let (code, _, err) = simulate(&["--config", "testdata/simulate/missing.toml"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = simulate(&["--config", CONFIG, "--noise", "3"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--noise is a fraction"), "{err}");
}

/// The row of `policy` in a printed table: its columns after the name.
fn row<'a>(out: &'a str, policy: &str) -> Vec<&'a str> {
    let line = out
        .lines()
        .find(|l| l.starts_with(policy))
        .unwrap_or_else(|| panic!("no row {policy:?} in\n{out}"));
    line[policy.len()..].split_whitespace().collect()
}

#[test]
fn simulate_vantages_sets_three_voting_vantages_beside_one_fooled_by_its_uplink() {
    let args = ["--vantages", "3", "--days", "91", "--seed", "3"];
    let (code, out, err) = simulate(&args);
    println!("{out}");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("simulated in "),
        "the run time, on stderr: {err}"
    );
    for must in [
        "4 services x 91 days, seed 3",
        "each vantage: its own uplink down once a week (1 to 20 min",
        "2 vantages cut off at once: never",
        "3 vantages, each probing every check every 30s, 10s apart",
        "down when 2 vantages say down, healthy when 2 say healthy, else unchanged",
    ] {
        assert!(out.contains(must), "missing {must:?}");
    }
    // Columns: failovers, false, missed, det p50, det p95, det max, conf max, probes.
    let one = row(&out, "1 vantage, switchboard defaults");
    let three = row(
        &out,
        "3 vantages, 2 agree, fixed 4 failures, re-probe 1.5s each",
    );
    let plain = row(&out, "3 consecutive failures at 30s, 1 vantage");
    println!("{one:?}\n{three:?}\n{plain:?}");
    let secs = |s: &str| s.trim_end_matches('s').parse::<f64>().expect("seconds");
    let count = |s: &str| s.parse::<u32>().expect("a count");
    assert_eq!(count(three[1]), 0, "no false failover from three vantages");
    assert!(three[2].starts_with("0/"), "nothing missed: {}", three[2]);
    assert!(secs(three[5]) <= 25.0, "worst detection {}", three[5]);
    assert!(count(one[1]) >= 3, "one vantage is fooled by its uplink");
    assert!(count(plain[1]) >= 3);

    let (_, again, _) = simulate(&args);
    assert_eq!(out, again, "same seed, same report");
}

#[test]
fn simulate_vantages_runs_a_teams_own_settings_and_refuses_impossible_votes() {
    let (code, out, err) = simulate(&[
        "--config",
        CONFIG,
        "--vantages",
        "3",
        "--days",
        "14",
        "--seed",
        "7",
    ]);
    println!("{out}");
    assert_eq!(code, Some(0), "{err}");
    for must in [
        "2 services from testdata/simulate/switchboard.toml x 14 days, seed 7",
        "3 vantages, each probing every check at its interval, spread evenly over it",
        "your settings, 1 vantage",
        "your settings, 3 vantages, 2 agree",
        "3 vantages, 2 agree, fixed 4 failures, re-probe 1.5s each",
        "2 consecutive failures at 20s, 1 vantage",
        "4 consecutive failures at 45s, 1 vantage",
    ] {
        assert!(out.contains(must), "missing {must:?}");
    }

    for (args, message) in [
        (&["--vantages", "1"][..], "--vantages is from 2 to 9"),
        (
            &["--vantages", "3", "--quorum", "4"],
            "--quorum is from 1 to the number of vantages (3)",
        ),
        (
            &["--vantages", "3", "--vantage-retry-interval", "0s"],
            "--vantage-retry-interval",
        ),
    ] {
        let (code, out, err) = simulate(args);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let (code, _, err) = simulate(&["--quorum", "2"]);
    assert_eq!(code, Some(2), "--quorum without --vantages: {err}");
}
