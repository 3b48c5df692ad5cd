//! The real daemon under hostile load: thousands of slow connections cannot exhaust its file descriptors and make it see outages that are not there.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, daemon};

use daemon::{get, scrape, series_sum, wait_until, write_config, Daemon, Target, FILE_MAIL};

/// Starts the daemon with its open-file limit (soft and hard) set to `nofile`, as on a host
/// with a conservative limit: the child's own, set between fork and exec, never the test
/// process's. Killed on drop, as every `Daemon` is.
fn start_limited(main: &std::path::Path, port: u16, nofile: u64, log: &std::path::Path) -> Daemon {
    let log = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["run", "--config"])
        .arg(main)
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let d = Daemon {
        child: cmd.spawn().expect("start switchboard"),
        base: format!("http://127.0.0.1:{port}"),
    };
    wait_until("switchboard /readyz", Duration::from_secs(30), || {
        get(&d.url("/readyz"))
            .map(|r| r.status == 200)
            .unwrap_or(false)
    });
    d
}

/// Every transition the daemon on `port` counted, all services and states summed.
fn transitions(port: u16) -> f64 {
    series_sum(&scrape(port), "switchboard_transitions_total{")
}

#[test]
fn two_thousand_slow_connections_cause_no_false_transition_and_healthz_answers() {
    // Heavy: 2,000 connections held for 30 s, and a verdict on how the daemon kept up.
    let _turn = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port) = write_config(dir.path(), &target, FILE_MAIL);
    // 1,536 descriptors and 64 probes at once: the listener may hold (1536 - 384) / 2 = 576
    // connections. Without a cap, 2,000 clients took every descriptor and the probes failed.
    let text = std::fs::read_to_string(&main).expect("config");
    std::fs::write(
        &main,
        text.replacen("[server]\n", "[server]\nmax_concurrent_probes = 64\n", 1),
    )
    .expect("config");
    let d = start_limited(&main, port, 1536, &dir.path().join("daemon.log"));
    wait_until(
        "both checks healthy and settled",
        Duration::from_secs(30),
        || {
            get(&format!("http://127.0.0.1:{port}/metrics"))
            .map(|r| r.body.contains("switchboard_service_state{service=\"ticket-submission\",state=\"operational\"} 1"))
            .unwrap_or(false)
        },
    );
    let before = transitions(port);

    // 2,000 clients that connect, send half a request line and then nothing, for 30 s.
    let attack_started = Instant::now();
    let attacker = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2000 {
            let s = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if let Ok(mut c) = TcpStream::connect_timeout(&s, Duration::from_millis(200)) {
                let _ = c.write_all(b"GET /status HTT");
                held.push(c);
            }
        }
        let connected = held.len();
        while attack_started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(200));
        }
        connected
    });

    // While it lasts, /healthz answers and the probes keep seeing a healthy target.
    std::thread::sleep(Duration::from_secs(3));
    let mut worst = Duration::ZERO;
    let mut answered = 0;
    while attack_started.elapsed() < Duration::from_secs(28) {
        let t = Instant::now();
        let r = get(&format!("http://127.0.0.1:{port}/healthz"));
        if r.map(|r| r.status == 200).unwrap_or(false) {
            answered += 1;
            worst = worst.max(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let connected = attacker.join().expect("attacker");
    let after = transitions(port);
    let metrics = get(&format!("http://127.0.0.1:{port}/metrics"))
        .expect("metrics")
        .body;
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    println!(
        "slow connections opened: {connected}; /healthz answered {answered} times, slowest {worst:?}; transitions during the attack: {}",
        after - before
    );
    drop(d);
    assert!(
        connected >= 1000,
        "the attack reached the daemon ({connected} connections)"
    );
    assert!(
        answered >= 3,
        "/healthz answered during the attack ({answered} times)\n{log}"
    );
    assert_eq!(after, before, "no transition from our own shortage\n{log}");
    assert!(
        metrics.contains(
            "switchboard_service_state{service=\"ticket-submission\",state=\"operational\"} 1"
        ),
        "still operational"
    );
    assert!(!log.contains("Too many open files"), "{log}");
}
