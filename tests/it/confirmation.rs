//! The configured thresholds are the thresholds, through the real daemon: with
//! `confirmation = "fixed"` a noisy target fails over after exactly `failure_threshold` failed
//! probes; with `"adaptive"` the threshold it grows to is shown in `switchboard status`, the
//! service API, `/metrics` and the log, and is the one applied.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::control;
use crate::support::daemon;

use control::{add_tokens, service};
use daemon::{metric, wait_until, write_config, Daemon, Target};

const THRESHOLD: &str =
    r#"switchboard_check_failure_threshold{check="ticket-form",service="ticket-submission"} "#;
const FAILED_PROBES: &str = r#"switchboard_probes_total{check="ticket-form",result="failure",service="ticket-submission"} "#;

/// A daemon on `target` with fast probes, `failure_threshold = 3` and `confirmation` as given
/// (`None`: not written, the default); returns it with the main config, its log and a viewer token.
fn start(dir: &Path, target: &Target, confirmation: Option<&str>) -> (Daemon, String, String) {
    let email = format!(
        "transport = \"file\"\ndir = \"{}\"",
        dir.join("mail").display()
    );
    let (main, port) = write_config(dir, target, &email);
    let text = std::fs::read_to_string(&main).expect("config");
    let defaults = format!(
        "[defaults]\ninterval = \"250ms\"\ntimeout = \"200ms\"\nretry_interval = \"100ms\"\nfailure_threshold = 3\nsuccess_threshold = 2\n{}",
        confirmation.map_or(String::new(), |c| format!("confirmation = \"{c}\"\n"))
    );
    let start = text.find("[defaults]").expect("defaults");
    std::fs::write(&main, format!("{}{defaults}", &text[..start])).expect("write config");
    let tokens = add_tokens(&main);
    let log = dir.join("daemon.log");
    let d = Daemon::start_with(&main, port, &[], Some(&log));
    (d, main.display().to_string(), tokens.viewer)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

/// Waits until the noisy form has failed often enough for the noise estimate (32 scheduled
/// probes) to be trusted, without ever failing twice in a row.
fn wait_for_noise(d: &Daemon) {
    wait_until("noise seen", Duration::from_secs(90), || {
        metric(d, FAILED_PROBES).unwrap_or(0.0) >= 8.0
    });
}

fn check<'a>(detail: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    detail["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {detail:#}"))
}

/// Breaks the form for good and returns the log line saying how many failures it took.
fn break_and_fail_over(dir: &Path, d: &Daemon, target: &Target) -> String {
    target.set_down(true);
    wait_until("failed over", Duration::from_secs(60), || {
        d.location("submit-ticket") == target.url("/backup")
    });
    log(dir)
        .lines()
        .find(|l| l.contains("ticket-form (primary check of Ticket submission) is down after"))
        .expect("the log says when the check went down")
        .to_string()
}

#[test]
fn fixed_confirmation_fails_a_noisy_target_over_after_exactly_failure_threshold_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    target.set_fail_every(6);
    let (d, _, viewer) = start(dir.path(), &target, Some("fixed"));
    wait_for_noise(&d);
    assert_eq!(
        d.location("submit-ticket"),
        target.url("/form"),
        "isolated failures never make three in a row"
    );
    assert_eq!(metric(&d, THRESHOLD), Some(3.0));
    let detail = service(&d, &viewer, "ticket-submission");
    let form = check(&detail, "ticket-form");
    assert_eq!(form["confirmation"], "fixed");
    assert_eq!(form["failure_threshold"], 3);
    assert_eq!(form["effective_failure_threshold"], 3);

    let line = break_and_fail_over(dir.path(), &d, &target);
    println!("{line}");
    assert!(
        line.contains("is down after 3 failed probes in a row"),
        "{line}"
    );
    assert!(
        !log(dir.path()).contains("now needs"),
        "a fixed threshold never changes"
    );
}

#[test]
fn adaptive_confirmation_shows_and_logs_the_threshold_it_grows_to_and_applies_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    target.set_fail_every(6);
    let (d, _, viewer) = start(dir.path(), &target, None);
    wait_until("threshold grown", Duration::from_secs(90), || {
        metric(&d, THRESHOLD) == Some(6.0)
    });
    let detail = service(&d, &viewer, "ticket-submission");
    let form = check(&detail, "ticket-form");
    assert_eq!(form["confirmation"], "adaptive", "the default");
    assert_eq!(form["failure_threshold"], 3);
    assert_eq!(form["effective_failure_threshold"], 6);
    assert_eq!(
        check(&detail, "backup-form")["effective_failure_threshold"],
        3
    );

    let status = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("status")
        .env("SWITCHBOARD_URL", &d.base)
        .env("SWITCHBOARD_TOKEN", &viewer)
        .output()
        .expect("switchboard status");
    let out = String::from_utf8_lossy(&status.stdout);
    println!("{out}");
    assert_eq!(status.status.code(), Some(0));
    assert!(
        out.contains("failure thresholds: ticket-form 6 of 3..6 (adaptive), backup-form 3 of 3..6 (adaptive)"),
        "{out}"
    );
    let grew: Vec<String> = log(dir.path())
        .lines()
        .filter(|l| l.contains("now needs"))
        .map(str::to_string)
        .collect();
    println!("{}", grew.join("\n"));
    assert!(
        grew.last().is_some_and(|l| l.contains("ticket-form")
            && l.contains("now needs 6 failed probes in a row to be down (was 3")),
        "{grew:?}"
    );

    let line = break_and_fail_over(dir.path(), &d, &target);
    println!("{line}");
    assert!(
        line.contains("is down after 6 failed probes in a row"),
        "{line}"
    );
}

#[test]
fn probe_json_names_the_confirmation_and_the_thresholds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    for (confirmation, max) in [("fixed", 3), ("adaptive", 6)] {
        let sub = dir.path().join(confirmation);
        let (main, _) = write_config(&sub, &target, "transport = \"file\"\ndir = \"mail\"");
        let text = std::fs::read_to_string(&main)
            .expect("config")
            .replace("failure_threshold = 2", "failure_threshold = 3")
            .replace(
                "[defaults]\n",
                &format!("[defaults]\nconfirmation = \"{confirmation}\"\n"),
            );
        std::fs::write(&main, text).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["probe", "--config"])
            .arg(&main)
            .args(["ticket-form", "--json"])
            .output()
            .expect("switchboard probe");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["check"], "ticket-form");
        assert_eq!(v["confirmation"], confirmation);
        assert_eq!(v["failure_threshold"], 3);
        assert_eq!(
            v["effective_failure_threshold"], 3,
            "one probe has no noise history"
        );
        assert_eq!(v["failure_threshold_max"], max);
    }
}
