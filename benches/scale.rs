//! Scale benchmark: the real daemon with 10,000 HTTP checks at a 10 s interval against loopback
//! targets; prints schedule lag p50/p99, RSS, CPU and `/metrics` scrape time against the goals
//! in design.md. Run with `cargo bench --bench scale` (release build).
//!
//! Targets listen on 50 loopback addresses (127.0.0.1-50) so a thousand fresh connections a
//! second do not exhaust one address pair's ephemeral ports with TIME_WAIT sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHECKS: usize = 10_000;
const ADDRESSES: usize = 50;

/// How big and how long: the real run under `cargo bench`, a smoke run of the harness itself
/// under `cargo test --all-targets` (which runs benches without `--bench`).
struct Plan {
    checks: usize,
    warmup: Duration,
    measure: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve-target") {
        serve_target(args[2].parse().expect("port"));
        return;
    }
    let bench = args.iter().any(|a| a == "--bench");
    let checks = std::env::var("SCALE_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { CHECKS } else { 100 });
    let plan = if bench {
        Plan {
            checks,
            warmup: Duration::from_secs(25),
            measure: Duration::from_secs(60),
        }
    } else {
        Plan {
            checks,
            warmup: Duration::from_secs(3),
            measure: Duration::from_secs(3),
        }
    };
    run(plan);
}

/// A tiny HTTP/1.1 server on 127.0.0.1-50:port answering 200 with a short body, one thread
/// per address with a small pool, in this (separate) process so its CPU is not the daemon's.
fn serve_target(port: u16) {
    let mut handles = Vec::new();
    for i in 1..=ADDRESSES {
        let listener = TcpListener::bind(("127.0.0.".to_string() + &i.to_string(), port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.{i}:{port}: {e}"));
        for _ in 0..2 {
            let l = listener.try_clone().expect("clone listener");
            handles.push(std::thread::spawn(move || {
                for stream in l.incoming() {
                    let Ok(mut s) = stream else { continue };
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf);
                    let body = "<html><body>request_subject ok</body></html>";
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }));
        }
    }
    for h in handles {
        let _ = h.join();
    }
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

fn write_config(dir: &Path, checks: usize, target_port: u16, api_port: u16) {
    std::fs::create_dir_all(dir.join("probes")).expect("mkdir");
    std::fs::write(
        dir.join("switchboard.toml"),
        format!(
            r#"probes = "probes"
[server]
listen = "127.0.0.1:{api_port}"
[storage]
path = "var/switchboard.db"
[email]
from = "Status <status@example.com>"
transport = "file"
dir = "var/mail"
[status_page]
title = "Scale"
[defaults]
interval = "10s"
timeout = "5s"
retry_interval = "2s"
"#
        ),
    )
    .expect("write main");
    // One service file per 4 checks (3 primary, 1 backup), as an organisation would write them.
    for s in 0..checks.div_ceil(4) {
        let mut body = format!("[service]\nid = \"svc-{s}\"\nfailover_when = \"all\"\n");
        for c in 0..4 {
            let n = s * 4 + c;
            if n >= checks {
                break;
            }
            let ip = 1 + n % ADDRESSES;
            let role = if c == 3 { "role = \"backup\"\n" } else { "" };
            body.push_str(&format!(
                "\n[[check]]\nname = \"c{n}\"\n{role}url = \"http://127.0.0.{ip}:{target_port}/form\"\nconditions = [\"[STATUS] == 200\", \"[BODY] == pat(*request_subject*)\"]\n"
            ));
        }
        body.push_str(&format!(
            "\n[[route]]\nid = \"r{s}\"\nprimary = \"https://support.example.com/{s}\"\nbackup = \"https://forms.example.net/{s}\"\n"
        ));
        std::fs::write(dir.join(format!("probes/svc-{s:05}.toml")), body).expect("write service");
    }
}

fn get(port: u16, path: &str) -> (Duration, String) {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect API");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&raw).to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (elapsed, body)
}

/// (upper bound, cumulative count) of each bucket of a histogram in the text format.
fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which quantile `q` of the observations in (after - before) fall.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> (f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            (
                *le,
                c - before
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0.0, |(_, b)| *b),
            )
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, c)| *c);
    let want = q * total;
    let bound = delta
        .iter()
        .find(|(_, c)| *c >= want)
        .map_or(f64::INFINITY, |(le, _)| *le);
    (bound, total)
}

fn proc_stat(pid: u32) -> (f64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of /proc/pid/stat: 12th and 13th after the name.
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    (ticks / 100.0, kb("VmRSS:"), kb("VmHWM:"))
}

fn run(plan: Plan) {
    let checks = plan.checks;
    let dir = tempfile::tempdir().expect("tempdir");
    let target_port = free_port();
    let api_port = free_port();
    let me = std::env::current_exe().expect("current exe");
    let _target = Killed(
        Command::new(me)
            .args(["--serve-target", &target_port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start target"),
    );
    write_config(dir.path(), checks, target_port, api_port);
    let daemon = Killed(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["run", "--config"])
            .arg(dir.path().join("switchboard.toml"))
            .env("SWITCHBOARD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start switchboard"),
    );
    let pid = daemon.0.id();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", api_port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let startup = start.elapsed();
    println!(
        "switchboard {} — {checks} HTTP checks at a 10 s interval on 127.0.0.1-{ADDRESSES}; {} cores",
        env!("CARGO_PKG_VERSION"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "started and listening in {:.2} s; warming up {} s, measuring {} s",
        startup.as_secs_f64(),
        plan.warmup.as_secs(),
        plan.measure.as_secs()
    );
    std::thread::sleep(plan.warmup);
    let (_, m0) = get(api_port, "/metrics");
    let (cpu0, _, _) = proc_stat(pid);
    std::thread::sleep(plan.measure);
    let (cpu1, rss, hwm) = proc_stat(pid);
    let mut scrapes = Vec::new();
    let mut body = String::new();
    for _ in 0..5 {
        let (t, b) = get(api_port, "/metrics");
        scrapes.push(t);
        body = b;
    }
    scrapes.sort();
    let lag = "switchboard_probe_schedule_lag_seconds";
    let (b0, b1) = (buckets(&m0, lag), buckets(&body, lag));
    let (p50, n) = quantile(&b0, &b1, 0.50);
    let (p99, _) = quantile(&b0, &b1, 0.99);
    let ok_probes = body
        .lines()
        .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 1"))
        .count();
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    let failed = body
        .lines()
        .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 0"))
        .count();
    // A benchmark of failing probes measures nothing: stop loudly.
    assert_eq!(
        failed, 0,
        "{failed} checks failed against the loopback targets"
    );
    assert!(n > 0.0, "no probe ran in the measured window");
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!();
    println!("{:<34} {:>14} {:>12}", "figure", "measured", "goal");
    println!(
        "{:<34} {:>14} {:>12}",
        "probes run in the window",
        format!("{n:.0}"),
        format!("~{}", checks * plan.measure.as_secs() as usize / 10)
    );
    println!(
        "{:<34} {:>14} {:>12}",
        "checks succeeding at the end",
        format!("{ok_probes}/{checks}"),
        "all"
    );
    println!(
        "{:<34} {:>14} {:>12}",
        "schedule lag p50 (bucket bound)",
        format!("<= {:.3} s", p50),
        ""
    );
    println!(
        "{:<34} {:>14} {:>12}",
        "schedule lag p99 (bucket bound)",
        format!("<= {:.3} s", p99),
        "< 0.050 s"
    );
    println!(
        "{:<34} {:>14} {:>12}",
        "RSS now / peak",
        format!("{:.0} / {:.0} MiB", mib(rss), mib(hwm)),
        "< 150 MiB"
    );
    println!(
        "{:<34} {:>14} {:>12}",
        "CPU (cores busy)",
        format!("{:.2}", (cpu1 - cpu0) / plan.measure.as_secs_f64()),
        ""
    );
    println!(
        "{:<34} {:>14} {:>12}",
        "/metrics scrape median / max",
        format!(
            "{:.0} / {:.0} ms",
            scrapes[2].as_secs_f64() * 1000.0,
            scrapes[4].as_secs_f64() * 1000.0
        ),
        "< 100 ms"
    );
    println!(
        "{:<34} {:>14} {:>12}",
        "/metrics size",
        format!("{:.1} MiB, {series} series", body.len() as f64 / 1048576.0),
        ""
    );
}
