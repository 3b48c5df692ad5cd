//! Prometheus's own tools judge what we expose: `promtool check metrics` on a live `/metrics`
//! after probes and a failover, and `promtool check config` on the shipped scrape config.

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{get, wait_until, write_config, Daemon, Target};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool is required: run ./scripts/test.sh to install Debian's prometheus package",
        );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn promtool_finds_nothing_to_complain_about_in_live_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config(
        dir.path(),
        &target,
        "transport = \"file\"\ndir = \"var/mail\"",
    );
    let d = Daemon::start(&config, port);
    target.set_down(true);
    let backup = target.url("/backup");
    wait_until("failed over", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });
    let metrics = get(&d.url("/metrics")).expect("GET /metrics").body;
    for name in [
        "probe_success{",
        "probe_http_duration_seconds{",
        "switchboard_service_state{",
        "switchboard_transitions_total{",
        "switchboard_detection_seconds_bucket{",
        "switchboard_route_active_target{",
    ] {
        assert!(metrics.contains(name), "{name} exported:\n{metrics}");
    }
    let (ok, said) = promtool(&["check", "metrics"], &metrics);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

#[test]
fn the_shipped_scrape_config_is_valid_and_honours_labels() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus.yml");
    let (ok, said) = promtool(&["check", "config", path], "");
    assert!(ok, "promtool check config:\n{said}");
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains("honor_labels: true"));
}
