//! Public endpoints under `wrk -c100`: requests per second and p99 of `/go`, `/status`, `summary.json` and `/metrics` on the real daemon, next to nginx serving static files of the same sizes in the same run, with the probes' schedule lag meanwhile.
//!
//! Run with `scripts/bench.sh` (installs `wrk` and `nginx-light` from Debian) or
//! `cargo bench --bench public_load`. Without `--bench`, as under `cargo test --all-targets`,
//! it is a smoke run of the harness (one second per endpoint, ten connections), and it says
//! so and stops when `wrk` or `nginx` is not installed: the bench installs nothing itself.
//!
//! Both servers get one worker: the daemon serves HTTP on a runtime of one worker thread (its
//! probes run on another), nginx runs one worker process. The daemon watches 40 services (80
//! checks at a 1 s interval, 1 s timeout) on a loopback target while it is loaded.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

// The integration tests' daemon harness; this bench uses a few of its helpers.
#[allow(dead_code)]
#[path = "../tests/it/support/daemon.rs"]
mod daemon;

use daemon::{
    add_services, free_port, get, lag_buckets, lag_p99, wait_until, write_config, Daemon, Target,
};

const SERVICES: usize = 40;

struct Plan {
    seconds: u32,
    connections: u32,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let plan = if bench {
        Plan {
            seconds: 10,
            connections: 100,
        }
    } else {
        Plan {
            seconds: 1,
            connections: 10,
        }
    };
    let (Some(wrk), Some(nginx)) = (which("wrk"), which("nginx")) else {
        println!(
            "public_load: skipped, wrk or nginx is not installed (scripts/bench.sh installs them)"
        );
        return;
    };
    run(&plan, &wrk, &nginx);
}

fn which(name: &str) -> Option<String> {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
}

/// What wrk measured.
struct Figures {
    rps: f64,
    p99_ms: f64,
}

fn run(plan: &Plan, wrk: &str, nginx: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        use std::os::unix::fs::PermissionsExt;
        // nginx's workers may run as an unprivileged user and must reach the files inside.
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    }
    let target = Target::start();
    let mail = format!(
        "transport = \"file\"\ndir = \"{}\"",
        dir.path().join("mail").display()
    );
    let (main, port) = write_config(dir.path(), &target, &mail);
    add_services(dir.path(), &target, SERVICES);
    let daemon = Daemon::start(&main, port);
    wait_until("the first probes", Duration::from_secs(60), || {
        lag_buckets(&metrics(port))
            .last()
            .is_some_and(|(_, n)| *n >= 80.0)
    });

    // nginx serves files of the sizes the daemon answers with, and the same redirect.
    let site = dir.path().join("nginx");
    std::fs::create_dir_all(site.join("html")).expect("mkdir");
    let paths = [
        ("/go/route-07", "go"),
        ("/status", "status.html"),
        ("/api/v2/summary.json", "summary.json"),
        ("/metrics", "metrics.txt"),
    ];
    for (path, file) in &paths[1..] {
        let body = get(&daemon.url(path)).expect(path).body;
        std::fs::write(site.join("html").join(file), body).expect("write static file");
    }
    let nginx_port = free_port();
    let server = start_nginx(nginx, &site, nginx_port, &target.url("/form"));

    println!(
        "public_load: wrk -t2 -c{} -d{}s, {SERVICES} services (80 checks at 1 s) probed meanwhile",
        plan.connections, plan.seconds
    );
    println!(
        "{:<22} {:>12} {:>10} {:>12} {:>10} {:>9} {:>14}",
        "endpoint", "switchboard", "p99", "nginx", "p99", "ratio", "probe lag p99"
    );
    for (path, file) in paths {
        let before = lag_buckets(&metrics(port));
        let ours = wrk_run(wrk, plan, &daemon.url(path));
        let (lag, probes) = lag_p99(&before, &lag_buckets(&metrics(port)));
        let nginx_path = if file == "go" {
            path.to_string()
        } else {
            format!("/{file}")
        };
        let theirs = wrk_run(
            wrk,
            plan,
            &format!("http://127.0.0.1:{nginx_port}{nginx_path}"),
        );
        let size = std::fs::metadata(site.join("html").join(file))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "{:<22} {:>8.0} r/s {:>7.2} ms {:>8.0} r/s {:>7.2} ms {:>8.3}x {:>8} ms ({probes:.0} probes; {size} bytes)",
            path,
            ours.rps,
            ours.p99_ms,
            theirs.rps,
            theirs.p99_ms,
            ours.rps / theirs.rps,
            if lag.is_finite() {
                format!("<= {:.0}", lag * 1000.0)
            } else {
                "> 5000".into()
            },
        );
    }
    let text = metrics(port);
    let transitions: f64 = text
        .lines()
        .filter(|l| l.starts_with("switchboard_transitions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!("transitions during the whole run: {}", transitions + 0.0);
    stop_nginx(server);
    drop(daemon);
}

fn start_nginx(nginx: &str, site: &Path, port: u16, go_to: &str) -> Child {
    let html = site.join("html");
    let conf = format!(
        r#"daemon off;
worker_processes 1;
pid {pid};
error_log {site}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {site}/tmp;
  proxy_temp_path {site}/tmp;
  fastcgi_temp_path {site}/tmp;
  uwsgi_temp_path {site}/tmp;
  scgi_temp_path {site}/tmp;
  types {{ text/html html; application/json json; text/plain txt; }}
  server {{
    listen 127.0.0.1:{port};
    root {html};
    location /go/ {{ add_header Cache-Control no-store always; return 307 {go_to}; }}
  }}
}}
"#,
        pid = site.join("nginx.pid").display(),
        site = site.display(),
        html = html.display(),
    );
    std::fs::create_dir_all(site.join("tmp")).expect("mkdir");
    std::fs::write(site.join("nginx.conf"), conf).expect("nginx.conf");
    // Workers may run as an unprivileged user: they must be able to read the files.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(site)
        .status();
    let child = Command::new(nginx)
        .arg("-p")
        .arg(site)
        .arg("-c")
        .arg(site.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let url = format!("http://127.0.0.1:{port}/summary.json");
    wait_until("nginx answers", Duration::from_secs(10), || {
        get(&url).map(|r| r.status == 200).unwrap_or(false)
    });
    child
}

/// Stops nginx as its docs say (SIGQUIT to the master, which ends its workers); a SIGKILL
/// would leave the worker running without its master.
fn stop_nginx(mut master: Child) {
    // SAFETY: kill only sends a signal to our own child's pid.
    unsafe {
        libc::kill(master.id() as libc::pid_t, libc::SIGQUIT);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = master.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = master.kill();
    let _ = master.wait();
}

fn wrk_run(wrk: &str, plan: &Plan, url: &str) -> Figures {
    let out = Command::new(wrk)
        .args(["-t2", &format!("-c{}", plan.connections)])
        .arg(format!("-d{}s", plan.seconds))
        .arg("--latency")
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .expect("run wrk");
    let mut text = String::new();
    let _ = out.stdout.as_slice().read_to_string(&mut text);
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| millis(v.trim()))
        .unwrap_or(f64::NAN);
    Figures { rps, p99_ms }
}

/// wrk's `12.34ms`, `850.00us`, `1.02s` in milliseconds.
fn millis(v: &str) -> f64 {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().map_or(f64::NAN, |n| n * factor)
}

fn metrics(port: u16) -> String {
    get(&format!("http://127.0.0.1:{port}/metrics"))
        .map(|r| r.body)
        .unwrap_or_default()
}
