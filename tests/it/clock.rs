//! Time through the real daemon (issue 13 points 3 and 4): a wall clock stepped back under a
//! live drill and a recovery hold and forward under another hold (libfaketime, monotonic clock
//! left alone), and a kill -9 while flap damping holds the backup.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::control;
use crate::support::daemon;

use control::{all_healthy, request, service};
use daemon::{metric, wait_until, Daemon, Target};

const SERVICE: &str = "ticket-submission";
/// Debian's `libfaketime` (package `faketime`, installed by scripts/test.sh), under the
/// machine's multiarch directory.
fn libfaketime() -> String {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .and_then(|p| p.to_str().map(str::to_owned))
        .expect("libfaketime.so.1 missing: install Debian's faketime (scripts/test.sh does)")
}
/// How far the tests step the wall clock back, as the attack suite did.
const STEP_SECS: i64 = 20;

/// The daemon with its wall clock faked through `offset_file` (an offset such as `-20`,
/// re-read on every clock reading) and its monotonic clock left real.
fn start_with_faked_wall_clock(main: &Path, port: u16, dir: &Path, offset_file: &Path) -> Daemon {
    let lib = libfaketime();
    std::fs::write(offset_file, "+0\n").expect("offset file");
    let offset = offset_file.to_str().expect("utf-8 path");
    Daemon::start_with(
        main,
        port,
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", offset),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("NO_FAKE_STAT", "1"),
        ],
        Some(&dir.join("daemon.log")),
    )
}

fn state(d: &Daemon, token: &str) -> String {
    service(d, token, SERVICE)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sets the service's recovery hold and appends `extra` lines to its `[service]` table.
fn edit_service(dir: &Path, hold: &str, extra: &str) {
    let file = dir.join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&file).expect("service file");
    let text = text.replacen(
        "recovery_hold = \"2s\"",
        &format!("recovery_hold = \"{hold}\"\n{extra}"),
        1,
    );
    std::fs::write(&file, text).expect("write service file");
}

#[test]
fn a_wall_clock_stepped_back_cannot_keep_a_drill_or_a_recovery_hold_on_the_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    let hold = Duration::from_secs(10);
    edit_service(dir.path(), "10s", "");
    let offset_file = dir.path().join("faketime-offset");
    let d = start_with_faked_wall_clock(&main, port, dir.path(), &offset_file);
    let (primary, backup) = (target.url("/form"), target.url("/backup"));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, SERVICE)
    });

    // A live drill of 10 s; 4 s in, the wall clock is set back 20 s.
    let started = Instant::now();
    let r = request(
        "POST",
        &d.url("/api/v1/drills"),
        Some(&t.operator),
        Some(&format!(
            r#"{{"service":"{SERVICE}","mode":"live","duration":"10s","reason":"clock drill"}}"#
        )),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let real_deadline = started + Duration::from_secs(10);
    assert_eq!(d.location("submit-ticket"), backup);
    std::thread::sleep(Duration::from_secs(4));
    std::fs::write(&offset_file, format!("-{STEP_SECS}\n")).expect("step the clock back");
    // The daemon saw the step (its safety tick exports it): this is not a clock it ignores.
    wait_until(
        "the step shows in the metrics",
        Duration::from_secs(20),
        || metric(&d, "switchboard_clock_offset_seconds").is_some_and(|v| v < -15.0),
    );
    wait_until(
        "the drill ends although the wall clock says its deadline is 20 s ahead",
        Duration::from_secs(60),
        || state(&d, &t.viewer) != "drill",
    );
    let drill_late = Instant::now().saturating_duration_since(real_deadline);
    let drill_took = started.elapsed();
    assert!(
        drill_took >= Duration::from_secs(10),
        "the drill ended before its 10 s"
    );
    assert_eq!(d.location("submit-ticket"), primary, "customers are back");
    // On time by the monotonic clock: well within the 20 s the wall clock was set back.
    assert!(
        drill_late < Duration::from_secs(15),
        "the drill ended {drill_late:?} after its real deadline"
    );

    // A recovery hold of 10 s; once it runs, the clock is set back another 20 s.
    target.set_down(true);
    wait_until("failed over", Duration::from_secs(30), || {
        state(&d, &t.viewer) == "failed_over"
    });
    let primary_back = Instant::now();
    target.set_down(false);
    wait_until("recovering", Duration::from_secs(30), || {
        state(&d, &t.viewer) == "recovering"
    });
    let recovering_seen = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&offset_file, format!("-{}\n", 2 * STEP_SECS)).expect("step back again");
    wait_until(
        "failback after the recovery hold",
        Duration::from_secs(60),
        || state(&d, &t.viewer) == "operational",
    );
    let failback_at = Instant::now();
    assert_eq!(d.location("submit-ticket"), primary);
    // Never before the hold (the primary cannot have been healthy before it was mended) ...
    assert!(
        failback_at - primary_back >= hold,
        "failback after {:?}, before the {hold:?} hold",
        failback_at - primary_back
    );
    // ... and on time: the hold began before the test saw `recovering`.
    let hold_late = failback_at.saturating_duration_since(recovering_seen + hold);
    assert!(
        hold_late < Duration::from_secs(15),
        "failback {hold_late:?} after the hold's real end"
    );
    // Set forward an hour during the next hold: it still lasts its 10 s, never less.
    target.set_down(true);
    wait_until("failed over again", Duration::from_secs(30), || {
        state(&d, &t.viewer) == "failed_over"
    });
    let mended = Instant::now();
    target.set_down(false);
    wait_until("recovering again", Duration::from_secs(30), || {
        state(&d, &t.viewer) == "recovering"
    });
    std::fs::write(&offset_file, "+3600\n").expect("step forward");
    wait_until(
        "the forward step shows in the metrics",
        Duration::from_secs(20),
        || metric(&d, "switchboard_clock_offset_seconds").is_some_and(|v| v > 3000.0),
    );
    wait_until(
        "failback after the second hold",
        Duration::from_secs(60),
        || state(&d, &t.viewer) == "operational",
    );
    let forward_hold = mended.elapsed();
    assert!(
        forward_hold >= hold,
        "failback {forward_hold:?} after the primary was mended, before the {hold:?} hold"
    );
    println!(
        "wall clock stepped back {STEP_SECS} s under each: the 10 s live drill ended {:.1} s after it started ({:.1} s past its real deadline); failback {:.1} s after the primary was mended (hold 10 s, {:.1} s past the hold's real end at most); set forward 1 h, the next failback came {:.1} s after the mend",
        drill_took.as_secs_f64(),
        drill_late.as_secs_f64(),
        (failback_at - primary_back).as_secs_f64(),
        hold_late.as_secs_f64(),
        forward_hold.as_secs_f64()
    );
}

#[test]
fn a_restart_while_flap_damping_holds_the_backup_fails_back_once_the_window_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    let window = Duration::from_secs(25);
    edit_service(dir.path(), "1s", "max_failovers = 1\nflap_window = \"25s\"");
    let log = dir.path().join("daemon.log");
    let mut d = Daemon::start_with(&main, port, &[], Some(&log));
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, SERVICE)
    });

    // One automatic failover is the limit: after the primary comes back, the backup is held.
    let broken = Instant::now();
    target.set_down(true);
    wait_until("failed over", Duration::from_secs(30), || {
        state(&d, &t.viewer) == "failed_over"
    });
    target.set_down(false);
    wait_until(
        "flap damping holds the backup",
        Duration::from_secs(30),
        || service(&d, &t.viewer, SERVICE)["flapping"] == true,
    );
    let held = service(&d, &t.viewer, SERVICE);
    assert_eq!(held["state"], "recovering", "{held:#}");
    assert!(
        held["holds"]["flapping"]["until"].is_string(),
        "the flap hold has an end: {held:#}"
    );

    // kill -9 while the hold is on, and start again on the same database.
    d.kill9();
    assert!(
        broken.elapsed() < window,
        "the restart must fall inside the flap window"
    );
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon2.log")));
    assert_eq!(d.location("submit-ticket"), target.url("/backup"));
    wait_until(
        "failback once the flap window has ended",
        Duration::from_secs(90),
        || state(&d, &t.viewer) == "operational",
    );
    // Not before the window: the failover happened after the primary was broken.
    assert!(
        broken.elapsed() >= window,
        "failback inside the flap window"
    );
    assert_eq!(d.location("submit-ticket"), target.url("/form"));
    assert_eq!(service(&d, &t.viewer, SERVICE)["flapping"], false);
    assert_eq!(
        metric(&d, "switchboard_service_flapping{"),
        Some(0.0),
        "the flapping signal is off"
    );
    println!(
        "restart inside the flap window: failback {:.1} s after the primary broke (window {} s)",
        broken.elapsed().as_secs_f64(),
        window.as_secs()
    );
}
