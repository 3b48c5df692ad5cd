//! `switchboard simulate --config FILE` runs a team's own services, checks and thresholds
//! (testdata/simulate/), deterministically for a seed; without `--config` the built-in set.

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
