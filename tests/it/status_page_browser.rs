//! The status page as a person sees it: headless Chromium renders `/status` of the real daemon
//! during a failover and after the recovery; the rendered text says so each time (state,
//! route, incident timeline, uptime bars, sparkline), nothing is loaded from elsewhere, no
//! console message is logged, and screenshots (desktop and phone) are kept in
//! target/screenshots/.

use crate::support::{self, daemon};

use daemon::{get, wait_until, write_config, Daemon, Target, FILE_MAIL};
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

/// Renders `url` in Chromium and returns the DOM as text, after checking that the browser
/// logged no console message, no script error and no failed load (the page has no script
/// and loads nothing from anywhere).
fn rendered(url: &str) -> String {
    let dom = chromium(&["--dump-dom"], url);
    assert!(
        dom.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let problems = console_problems(&String::from_utf8_lossy(&dom.stderr));
    assert!(problems.is_empty(), "browser reported: {problems:#?}");
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

/// Lines of Chromium's log that report a console message (`INFO:CONSOLE:1] "..."`), a script
/// error or a failed load.
fn console_problems(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            [":CONSOLE", "Uncaught", "Failed to load resource", "ERR_"]
                .iter()
                .any(|bad| l.contains(bad))
        })
        .map(str::to_owned)
        .collect()
}

/// The console check above must be able to fail: a page that logs an error and throws is caught.
#[test]
fn the_console_check_catches_a_page_that_logs_errors() {
    // Heavy: a headless Chromium.
    let _turn = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html lang=\"en\"><body><script>console.error('boom'); missing();</script></body></html>",
    )
    .expect("write page");
    let out = chromium(&["--dump-dom"], &format!("file://{}", page.display()));
    let problems = console_problems(&String::from_utf8_lossy(&out.stderr));
    assert!(
        problems.iter().any(|l| l.contains("boom")),
        "console.error not seen: {problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|l| l.contains("Uncaught ReferenceError")),
        "the uncaught error not seen: {problems:#?}"
    );
}

fn assert_shows(html: &str, what: &str, expected: &[&str]) {
    for e in expected {
        assert!(
            html.contains(e),
            "{what}: rendered page lacks {e:?}:\n{html}"
        );
    }
}

/// Saves a screenshot of `url` at `width`x`height` under target/screenshots/.
fn screenshot(url: &str, name: &str, width: u32, height: u32) {
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let png = shots.join(name);
    let _ = std::fs::remove_file(&png);
    let shot = chromium(
        &[
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", png.display()),
        ],
        url,
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

#[test]
fn chromium_shows_the_failover_and_the_recovery_on_the_status_page() {
    // Heavy: a headless Chromium beside the daemon.
    let _turn = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config(dir.path(), &target, FILE_MAIL);
    let d = Daemon::start(&config, port);
    let url = d.url("/status");
    // A few healthy probes first, so the history has something to show before the outage.
    wait_until("probe history written", Duration::from_secs(30), || {
        get(&url).is_ok_and(|r| r.body.contains("uptime of the primary route since "))
    });

    target.set_down(true);
    let backup = target.url("/backup");
    wait_until("failed over", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });
    // The failed probes reach the uptime bars with the next history flush (a few seconds).
    wait_until(
        "failed probes in the history",
        Duration::from_secs(30),
        || {
            get(&url).is_ok_and(|r| {
                r.body.contains("uptime of the primary route") && !r.body.contains("100% uptime")
            })
        },
    );
    let html = rendered(&url);
    assert_shows(
        &html,
        "during the failover",
        &[
            // Readable without script, refreshing itself, with landmarks, for phones too.
            "<html lang=\"en\">",
            "<meta name=\"viewport\"",
            "<meta http-equiv=\"refresh\"",
            "<header>",
            "<main>",
            "<footer>",
            "role=\"img\"",
            "E2E Support Status",
            "Minor Service Outage",
            "Ticket submission",
            "Using backup route",
            backup.as_str(),
            "Active incidents",
            "Ticket submission is failing; customers are sent to the backup route",
            "Identified",
            "uptime of the primary route since ",
            // The uptime bars' text: today's colour names the day and its share of good probes.
            "89 days: no data",
            "1 day: ",
            "Response time over the last 24 hours",
        ],
    );
    screenshot(&url, "status-failed-over.png", 1100, 1400);
    screenshot(&url, "status-failed-over-phone.png", 390, 1600);

    target.set_down(false);
    let primary = target.url("/form");
    wait_until("switched back", Duration::from_secs(30), || {
        d.location("submit-ticket") == primary
    });
    // Incidents reach the page just after the transition is recorded, off the core task.
    wait_until(
        "the incident resolved on the page",
        Duration::from_secs(10),
        || get(&url).is_ok_and(|r| !r.body.contains("Active incidents")),
    );
    let html = rendered(&url);
    assert_shows(
        &html,
        "after the recovery",
        &[
            "All Systems Operational",
            "Operational",
            "Past incidents",
            "Resolved",
            "Monitoring",
            "is working normally again and customers are back on the primary route",
            primary.as_str(),
        ],
    );
    assert!(
        !html.contains("Active incidents") && !html.contains("Using backup route"),
        "after the recovery the page still shows the outage:\n{html}"
    );
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "the page needs no script"
    );
    screenshot(&url, "status-recovered.png", 1100, 1400);
}
