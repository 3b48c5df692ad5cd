//! Config scale benchmark: `switchboard check` on one file of 1,000, 5,000 and 10,000 checks (the time should grow linearly), then a reload of 10,000 checks in the running daemon and the core's worst response time while it runs.
//!
//! Run with `cargo bench --bench config_scale` (release build). Under `cargo test` (which runs
//! benches without `--bench`) it does a short smoke run of the same steps with a few hundred
//! checks. The core's responsiveness is measured with `GET /api/v1/services`, which the core
//! answers itself (every service with every check's health): the idle figure is its cost
//! with nothing else going on, the worst figure during the reload is what the reload adds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Plan {
    /// Sizes of the one-file configurations `switchboard check` is timed on.
    check_sizes: Vec<usize>,
    /// Checks in the daemon's configuration for the reload.
    reload_checks: usize,
    /// `check` runs per size; the fastest is reported (the others saw noise, not the code).
    runs: usize,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let plan = if bench {
        Plan {
            check_sizes: vec![1_000, 5_000, 10_000],
            reload_checks: 10_000,
            runs: 3,
        }
    } else {
        Plan {
            check_sizes: vec![100, 500],
            reload_checks: 300,
            runs: 1,
        }
    };
    println!(
        "switchboard {} — configuration scale; {} cores",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    check_times(&plan);
    reload(&plan);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A main file, and one service file holding `checks` HTTP checks of `target` (every
/// `changed`-th one with a different path, so a reload has checks to replace).
fn write_config(dir: &Path, checks: usize, api_port: u16, target: &str, variant: usize) {
    std::fs::create_dir_all(dir.join("probes")).expect("mkdir");
    std::fs::write(
        dir.join("switchboard.toml"),
        format!(
            "probes = \"probes\"\n[server]\nlisten = \"127.0.0.1:{api_port}\"\n[storage]\npath = \"var/switchboard.db\"\n[email]\nfrom = \"Status <status@example.com>\"\ntransport = \"file\"\ndir = \"var/mail\"\n[auth]\ntokens_file = \"tokens.toml\"\n[defaults]\ninterval = \"1h\"\ntimeout = \"5s\"\n"
        ),
    )
    .expect("write main");
    let mut body = String::from("[service]\nid = \"large\"\nfailover_when = \"all\"\n");
    for n in 0..checks {
        let role = if n % 4 == 3 {
            "role = \"backup\"\n"
        } else {
            ""
        };
        // One check in ten differs between variants: a reload replaces those, keeps the rest.
        let path = if n % 10 == 0 { variant } else { 0 };
        body.push_str(&format!(
            "\n[[check]]\nname = \"c{n}\"\n{role}url = \"{target}/form/{n}/{path}\"\nconditions = [\"[STATUS] == 200\", \"[BODY] == pat(*request_subject*)\"]\n"
        ));
    }
    body.push_str(
        "\n[[route]]\nid = \"large\"\nprimary = \"https://support.example.com/\"\nbackup = \"https://forms.example.net/\"\n",
    );
    std::fs::write(dir.join("probes/large.toml"), body).expect("write service");
}

fn check_times(plan: &Plan) {
    println!();
    println!(
        "{:<34} {:>12} {:>16} {:>18} {:>10}",
        "switchboard check, one file", "time", "per check", "time for size", "goal"
    );
    let mut first: Option<(usize, f64)> = None;
    for &n in &plan.check_sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(dir.path(), n, 9, "http://127.0.0.1:9", 0);
        let mut best = f64::INFINITY;
        for _ in 0..plan.runs {
            let started = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .args(["check", "--config"])
                .arg(dir.path().join("switchboard.toml"))
                .output()
                .expect("run switchboard check");
            best = best.min(started.elapsed().as_secs_f64());
            assert!(
                out.status.success(),
                "check failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (n0, t0) = *first.get_or_insert((n, best));
        // Linear: the time grows as the size does (both ratios equal); quadratic: as its square.
        let growth = format!("x{:.1} for x{:.0}", best / t0, n as f64 / n0 as f64);
        println!(
            "{:<34} {:>12} {:>16} {:>18} {:>10}",
            format!("{n} checks"),
            format!("{best:.3} s"),
            format!("{:.1} µs", best / n as f64 * 1e6),
            growth,
            if n == 10_000 { "< 2 s" } else { "" }
        );
    }
}

/// A loopback HTTP server answering 200 to anything, on its own threads.
fn serve_target(listener: TcpListener) {
    for _ in 0..2 {
        let l = listener.try_clone().expect("clone listener");
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let body = "request_subject";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
    }
}

/// One request; (time to the whole answer, status, body).
fn request(port: u16, method: &str, path: &str, token: &str) -> (Duration, u16, String) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect API");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (took, status, body)
}

fn token(main: &Path, name: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["token", "new", name, "--role", role, "--config"])
        .arg(main)
        .output()
        .expect("switchboard token new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn reload(plan: &Plan) {
    let n = plan.reload_checks;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = TcpListener::bind("127.0.0.1:0").expect("bind target");
    let target_url = format!("http://{}", target.local_addr().expect("addr"));
    serve_target(target);
    let port = free_port();
    let main = dir.path().join("switchboard.toml");
    write_config(dir.path(), n, port, &target_url, 0);
    let admin = token(&main, "bench-admin", "admin");
    let viewer = token(&main, "bench-viewer", "viewer");
    let log = dir.path().join("daemon.log");
    let _daemon = Killed(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["run", "--config"])
            .arg(&main)
            // Info: the reload's own line says how long it was prepared and swapped.
            .env("SWITCHBOARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("start switchboard"),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The core's own cost of answering, with nothing else going on.
    let mut idle: Vec<Duration> = (0..10)
        .map(|_| {
            let (t, status, _) = request(port, "GET", "/api/v1/services", &viewer);
            assert_eq!(status, 200);
            t
        })
        .collect();
    idle.sort();

    println!();
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>9} {:>22} {:>10}",
        format!("reload"),
        "answered",
        "prepared",
        "core swap",
        "replaced",
        "API during: p50 / max",
        "goal"
    );
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>9} {:>22} {:>10}",
        "idle",
        "",
        "",
        "",
        "",
        format!(
            "{} / {}",
            ms(idle[idle.len() / 2]),
            ms(idle[idle.len() - 1])
        ),
        ""
    );
    for variant in 1..=3 {
        reload_once(
            port,
            dir.path(),
            n,
            &target_url,
            variant,
            &admin,
            &viewer,
            &log,
        );
    }
    println!(
        "({n} checks in one file, one in ten changed by each reload; \"API\" is GET /api/v1/services, answered by the core)"
    );
}

/// One reload of a changed file (one check in ten different) while a client keeps asking the
/// core; prints one row.
#[allow(clippy::too_many_arguments)]
fn reload_once(
    port: u16,
    dir: &Path,
    n: usize,
    target_url: &str,
    variant: usize,
    admin: &str,
    viewer: &str,
    log: &Path,
) {
    write_config(dir, n, port, target_url, variant);
    let reloading = Arc::new(AtomicBool::new(true));
    let asker = {
        let (reloading, viewer) = (reloading.clone(), viewer.to_string());
        std::thread::spawn(move || {
            let mut during = Vec::new();
            while reloading.load(Ordering::SeqCst) {
                let (t, status, _) = request(port, "GET", "/api/v1/services", &viewer);
                assert_eq!(status, 200);
                during.push(t);
            }
            during
        })
    };
    // Let the asker start first, so the reload begins under questioning.
    std::thread::sleep(Duration::from_millis(50));
    let (took, status, body) = request(port, "POST", "/-/reload", admin);
    reloading.store(false, Ordering::SeqCst);
    let mut during = asker.join().expect("asker");
    assert_eq!(status, 200, "reload: {body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("reload report");
    let changed = report["checks_changed"].as_array().map_or(0, Vec::len);
    during.sort();
    // The daemon's own account: "... prepared in N ms off the core, swapped in M ms".
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .rfind(|l| l.contains("configuration reloaded by"))
        .unwrap_or("");
    let figure = |after: &str| -> String {
        line.split_once(after)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map_or_else(|| "?".to_string(), |v| format!("{v} ms"))
    };
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>9} {:>22} {:>10}",
        format!("#{variant}"),
        ms(took),
        figure("prepared in "),
        figure("swapped in "),
        changed,
        format!(
            "{} / {}",
            ms(during[during.len() / 2]),
            ms(during[during.len() - 1])
        ),
        "max < 100 ms"
    );
}
