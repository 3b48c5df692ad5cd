//! The status page as a person sees it: headless Chromium renders `/status` of the real daemon
//! during a failover; the rendered text says so, nothing is loaded from elsewhere, no script
//! error is logged, and a screenshot is kept in target/screenshots/.

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{wait_until, write_config, Daemon, Target};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

fn chromium(args: &[&str], url: &str) -> Output {
    let profile = tempfile::tempdir().expect("profile dir");
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium is required: run ./scripts/test.sh to install Debian's chromium")
}

#[test]
fn chromium_shows_the_failover_on_the_status_page() {
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
    let url = d.url("/status");

    let dom = chromium(&["--dump-dom"], &url);
    assert!(
        dom.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let html = String::from_utf8_lossy(&dom.stdout);
    for expected in [
        "E2E Support Status",
        "Ticket submission",
        "Using backup route",
        backup.as_str(),
    ] {
        assert!(
            html.contains(expected),
            "rendered page lacks {expected:?}:\n{html}"
        );
    }
    let log = String::from_utf8_lossy(&dom.stderr);
    for bad in ["Uncaught", "Failed to load resource", "ERR_"] {
        assert!(!log.contains(bad), "browser reported {bad:?}:\n{log}");
    }

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let png = shots.join("status-failed-over.png");
    let _ = std::fs::remove_file(&png);
    let shot = chromium(
        &[
            "--window-size=1100,900",
            &format!("--screenshot={}", png.display()),
        ],
        &url,
    );
    assert!(
        shot.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
        "a real PNG: {} bytes",
        bytes.len()
    );
}
