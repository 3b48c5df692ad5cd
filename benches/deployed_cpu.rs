//! CPU per probe as deployed: the real `switchboard run` daemon probing 200 checks at 1 s, next to blackbox_exporter driven by a real Prometheus at the same pace, plain HTTP and HTTPS with a private CA, one run.
//!
//! What runs where, so that each CPU figure belongs to exactly one program:
//!
//! - **target**: a hyper server inside this bench process on `127.0.0.1:0`, plain HTTP and
//!   HTTPS (a leaf certificate for `127.0.0.1` signed by a private CA made with rcgen),
//!   answering every path with 200 and a ~2 KiB page. Its CPU is never counted.
//! - **Switchboard**: `target/release/switchboard run --config <generated>` as a child process:
//!   100 services of a primary and a backup check each (200 checks), interval 1 s, timeout 1 s,
//!   each check on its own URL path of the target; HTTPS checks name the private CA in
//!   `ca_file`, so every probe verifies the chain. Storage in a temp dir, e-mail to files.
//!   Figure: the daemon's user+sys CPU from `/proc/<pid>/stat` over the window, divided by the
//!   probes it ran in the window (the rise of `switchboard_probes_total`, all labels, on its
//!   own `/metrics`).
//! - **blackbox_exporter**: Debian's binary as a child process with a generated config
//!   (`http_2xx`, and `http_2xx_ca` with `tls_config.ca_file` = the private CA, so it verifies
//!   too), scraped by a real Prometheus (Debian's `prometheus`) with 200 targets through
//!   `/probe` at `scrape_interval: 1s`, the same URLs as the daemon's checks. Figure: the
//!   exporter's user+sys CPU over the window divided by the scrapes Prometheus did in the
//!   window (the rise of `prometheus_target_interval_length_seconds_count` on Prometheus's own
//!   `/metrics`). Prometheus's CPU is printed beside it but not counted: in production the
//!   monitoring system pays it either way.
//!
//! The sides run one after the other (Switchboard then the exporter, for each scheme), each
//! after a warm-up, so that they do not compete for the two cores. A window in which a probe
//! failed on either side aborts the run: the cost of failing probes says nothing.
//!
//! Usage: `deployed_cpu [--warmup S] [--window S] [--checks N] [--switchboard-only]`
//! (defaults: 10 s warm-up, 30 s window, 200 checks; `BLACKBOX_EXPORTER` and `PROMETHEUS`
//! name other binaries). `cargo bench --bench deployed_cpu` passes `--bench`; without it, as
//! under `cargo test --all-targets`, it is a smoke run: the Switchboard side only, 1 s warm-up
//! and a 3 s window per scheme, which still fails on a failing probe.

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

// The integration tests' daemon harness: the main config writer, the daemon as a child
// process and a minimal HTTP client.
#[allow(dead_code)]
#[path = "../tests/it/support/daemon.rs"]
mod daemon;

use daemon::{free_port, get, series_sum, write_main_config, Daemon};

// CPU accounting and the revision, shared by the benches.
mod support;

use support::{cpu_ticks, git_rev, stat_path};

/// Goal of issue 13 point 10: CPU per plain HTTP probe of the deployed daemon, in µs.
const GOAL_HTTP_US: f64 = 250.0;
/// Goal of issue 13 point 10: CPU per verified HTTPS probe relative to blackbox_exporter's.
const GOAL_HTTPS_RATIO: f64 = 0.25;

fn main() {
    support::main("deployed_cpu", |args| Options::parse(args).and_then(run));
}

struct Options {
    warmup: Duration,
    window: Duration,
    checks: usize,
    switchboard_only: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let bench = args.iter().any(|a| a == "--bench");
        let mut opts = if bench {
            Options {
                warmup: Duration::from_secs(10),
                window: Duration::from_secs(30),
                checks: 200,
                switchboard_only: false,
            }
        } else {
            // `cargo test --all-targets` runs benches without `--bench`: a short smoke run of
            // the Switchboard side, so the test suite needs neither Prometheus nor the exporter.
            Options {
                warmup: Duration::from_secs(1),
                window: Duration::from_secs(3),
                checks: 200,
                switchboard_only: true,
            }
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| anyhow!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--warmup" => opts.warmup = Duration::from_secs(value()?.parse()?),
                "--window" => opts.window = Duration::from_secs(value()?.parse()?),
                "--checks" => opts.checks = value()?.parse()?,
                "--switchboard-only" => opts.switchboard_only = true,
                // `cargo bench` passes `--bench`; other harness flags are ignored as well.
                _ => {}
            }
        }
        if opts.window.is_zero() || opts.checks < 2 || opts.checks % 2 != 0 {
            bail!("--window must be at least 1 s and --checks an even number of at least 2");
        }
        Ok(opts)
    }
}

// ---------------------------------------------------------------------------------------------
// The target, in this process

/// A private CA and the target's certificate it signed for 127.0.0.1.
struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Result<Pki> {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Switchboard Bench CA");
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
        .map_err(|e| anyhow!("leaf key: {e}"))?;
    // The chain as a real server sends it: the leaf only (the CA is the trust anchor).
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![leaf_cert.der().clone()], key)?;
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    })
}

/// ~2 KiB of HTML, the size of a small support landing page.
fn page() -> Bytes {
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Support</title></head><body>\n<h1>Contact support</h1>\n",
    );
    let mut i = 0;
    while html.len() < 2000 {
        i += 1;
        html.push_str(&format!(
            "<p>Line {i}: open a ticket, chat with us or call; we answer within one business day.</p>\n"
        ));
    }
    html.push_str("</body></html>\n");
    Bytes::from(html)
}

async fn serve_conn<S>(io: TokioIo<S>, page: Bytes)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
        let page = page.clone();
        async move {
            Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .body(Full::new(page))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// Starts the target on `rt`; returns (plain HTTP port, HTTPS port).
fn start_target(rt: &tokio::runtime::Runtime, pki: &Pki) -> Result<(u16, u16)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    rt.block_on(async {
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let https = TcpListener::bind("127.0.0.1:0").await?;
        let ports = (http.local_addr()?.port(), https.local_addr()?.port());
        let page = page();
        let p = page.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = http.accept().await {
                tokio::spawn(serve_conn(TokioIo::new(stream), p.clone()));
            }
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = https.accept().await {
                let (acceptor, p) = (acceptor.clone(), page.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve_conn(TokioIo::new(tls), p).await;
                    }
                });
            }
        });
        anyhow::Ok(ports)
    })
}

/// The URL of check `i` (distinct paths, so that Prometheus keeps 200 distinct targets).
fn target_url(scheme: &str, port: u16, i: usize) -> String {
    format!("{scheme}://127.0.0.1:{port}/channel/{i:03}")
}

// ---------------------------------------------------------------------------------------------
// One measured window

struct Row {
    scheme: &'static str,
    side: &'static str,
    probes: f64,
    cpu: Duration,
    /// Prometheus's CPU over the exporter's window (shown, not counted).
    prometheus_cpu: Option<Duration>,
}

impl Row {
    fn us_per_probe(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.probes
    }
}

/// Waits `warmup`, then measures CPU of `pids` and a probe counter read by `probes` over
/// `window`. Returns (probes, CPU of each pid).
fn window(
    warmup: Duration,
    window: Duration,
    pids: &[u32],
    tick: Duration,
    mut probes: impl FnMut() -> Result<f64>,
) -> Result<(f64, Vec<Duration>)> {
    std::thread::sleep(warmup);
    let p0 = probes()?;
    let c0: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(&stat_path(p)))
        .collect::<Result<_>>()?;
    std::thread::sleep(window);
    let c1: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(&stat_path(p)))
        .collect::<Result<_>>()?;
    let p1 = probes()?;
    let cpu = c0
        .iter()
        .zip(&c1)
        .map(|(a, b)| tick * (b - a) as u32)
        .collect();
    Ok((p1 - p0, cpu))
}

// ---------------------------------------------------------------------------------------------
// Switchboard side

fn measure_switchboard(
    opts: &Options,
    scheme: &'static str,
    port: u16,
    ca: &Path,
    tick: Duration,
) -> Result<Row> {
    let dir = tempfile::tempdir()?;
    let mail = format!(
        "transport = \"file\"\ndir = \"{}\"",
        dir.path().join("mail").display()
    );
    let (main, api_port) = write_main_config(dir.path(), "var/switchboard.db", &mail);
    let ca_line = if scheme == "https" {
        format!("ca_file = \"{}\"\n", ca.display())
    } else {
        String::new()
    };
    for s in 0..opts.checks / 2 {
        let (primary, backup) = (
            target_url(scheme, port, 2 * s),
            target_url(scheme, port, 2 * s + 1),
        );
        std::fs::write(
            dir.path().join(format!("probes/svc-{s:03}.toml")),
            format!(
                r#"[service]
id = "svc-{s:03}"
name = "Support channel {s:03}"
failover_when = "any"
failback = "auto"

[[check]]
name = "primary-{s:03}"
url = "{primary}"
conditions = ["[STATUS] == 200"]
{ca_line}
[[check]]
name = "backup-{s:03}"
role = "backup"
url = "{backup}"
conditions = ["[STATUS] == 200"]
{ca_line}
[[route]]
id = "route-{s:03}"
primary = "{primary}"
backup = "{backup}"
"#
            ),
        )?;
    }
    let d = Daemon::start(&main, api_port);
    let pid = d.child.id();
    eprintln!(
        "switchboard {scheme}: pid {pid}, {} checks at 1 s",
        opts.checks
    );
    let scrape = || -> Result<(f64, f64)> {
        let text = get(&d.url("/metrics"))?.body;
        let failures: f64 = text
            .lines()
            .filter(|l| l.starts_with("switchboard_probes_total{") && l.contains("\"failure\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Ok((series_sum(&text, "switchboard_probes_total{"), failures))
    };
    std::thread::sleep(opts.warmup);
    let (_, failed_before) = scrape()?;
    let (probes, cpu) = window(
        Duration::ZERO,
        opts.window,
        &[pid],
        tick,
        || Ok(scrape()?.0),
    )?;
    let (_, failed_after) = scrape()?;
    if failed_after > failed_before {
        bail!(
            "switchboard {scheme}: {} probes failed in the window",
            failed_after - failed_before
        );
    }
    if probes < 1.0 {
        bail!("switchboard {scheme}: no probe ran in the window");
    }
    drop(d);
    eprintln!("stopped switchboard (pid {pid})");
    Ok(Row {
        scheme,
        side: "switchboard",
        probes,
        cpu: cpu[0],
        prometheus_cpu: None,
    })
}

// ---------------------------------------------------------------------------------------------
// blackbox_exporter side, driven by Prometheus

/// A child process that is killed and reaped when dropped (also on error).
struct Guard {
    name: &'static str,
    child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("stopped {} (pid {})", self.name, self.child.id());
    }
}

fn find_binary(env: &str, names: &[&str]) -> Result<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Ok(PathBuf::from(path));
    }
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
            let path = Path::new(dir).join(name);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    bail!(
        "{} not found: run scripts/bench.sh (it installs it) or set {env}",
        names[0]
    )
}

fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            // Older Go programs print it to stderr, newer ones to stdout.
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

fn wait_http_ok(what: &str, url: &str, guard: &mut Guard) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = guard.child.try_wait()? {
            bail!("{what} exited during startup: {status}");
        }
        if get(url).is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer {url} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_blackbox(bin: &Path, dir: &Path, ca: &Path) -> Result<(Guard, u16)> {
    let config = dir.join("blackbox.yml");
    std::fs::write(
        &config,
        format!(
            "modules:
  http_2xx:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
  http_2xx_ca:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: {}
",
            ca.display()
        ),
    )?;
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--config.file={}", config.display()))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut guard = Guard {
        name: "blackbox_exporter",
        child,
    };
    wait_http_ok(
        "blackbox_exporter",
        &format!("http://127.0.0.1:{port}/-/healthy"),
        &mut guard,
    )?;
    Ok((guard, port))
}

fn start_prometheus(
    bin: &Path,
    dir: &Path,
    exporter_port: u16,
    module: &str,
    targets: &[String],
) -> Result<(Guard, u16)> {
    let config = dir.join("prometheus.yml");
    let list: String = targets
        .iter()
        .map(|t| format!("\n          - {t}"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1m
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [{module}]
    static_configs:
      - targets:{list}
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:{exporter_port}
"
        ),
    )?;
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut guard = Guard {
        name: "prometheus",
        child,
    };
    wait_http_ok(
        "prometheus",
        &format!("http://127.0.0.1:{port}/-/ready"),
        &mut guard,
    )?;
    Ok((guard, port))
}

/// The single number PromQL `expr` evaluates to at Unix time `at`, from Prometheus's query API.
fn prometheus_query(prometheus_port: u16, expr: &str, at: f64) -> Result<f64> {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = get(&format!(
        "http://127.0.0.1:{prometheus_port}/api/v1/query?query={encoded}&time={at:.3}"
    ))?;
    let v: serde_json::Value = serde_json::from_str(&r.body)
        .with_context(|| format!("Prometheus answer to {expr:?}: {:?}", r.body))?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no value for {expr:?} in {v}"))
}

fn measure_blackbox(
    opts: &Options,
    scheme: &'static str,
    port: u16,
    exporter: (&Guard, u16),
    prometheus_bin: &Path,
    tick: Duration,
) -> Result<Row> {
    let dir = tempfile::tempdir()?;
    let module = if scheme == "https" {
        "http_2xx_ca"
    } else {
        "http_2xx"
    };
    let targets: Vec<String> = (0..opts.checks)
        .map(|i| target_url(scheme, port, i))
        .collect();
    let (prom, prom_port) =
        start_prometheus(prometheus_bin, dir.path(), exporter.1, module, &targets)?;
    eprintln!(
        "prometheus {scheme}: pid {}, {} targets through blackbox_exporter (pid {}) at 1 s",
        prom.child.id(),
        targets.len(),
        exporter.0.child.id()
    );
    // Prometheus applies discovered targets a few seconds after it is ready: the warm-up
    // starts once every target has been scraped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let up = prometheus_query(prom_port, "count(up)", now.as_secs_f64()).unwrap_or(0.0);
        if up >= opts.checks as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "prometheus: only {up} of {} targets scraped after 60 s",
                opts.checks
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // The window's ends in Prometheus's time (Unix seconds), read right beside the CPU figures.
    let ends = std::cell::RefCell::new(Vec::new());
    let (_, cpu) = window(
        opts.warmup,
        opts.window,
        &[exporter.0.child.id(), prom.child.id()],
        tick,
        || {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            ends.borrow_mut().push(now.as_secs_f64());
            Ok(0.0)
        },
    )?;
    let ends = ends.into_inner();
    let (start, end) = (ends[0], ends[1]);
    // Scrapes that started before the end are stored when they finish: give them a moment.
    std::thread::sleep(Duration::from_millis(1500));
    let range = format!("{}ms", ((end - start) * 1000.0).round());
    // Every scrape writes one `up` sample stamped with its start: the scrapes in the window.
    let probes = prometheus_query(
        prom_port,
        &format!("sum(count_over_time(up{{job=\"blackbox\"}}[{range}]))"),
        end,
    )?;
    let succeeded = prometheus_query(
        prom_port,
        &format!("sum(sum_over_time(probe_success{{job=\"blackbox\"}}[{range}]))"),
        end,
    )?;
    if probes < 1.0 {
        bail!("blackbox_exporter {scheme}: Prometheus did no scrape in the window");
    }
    if succeeded < probes {
        bail!(
            "blackbox_exporter {scheme}: {} of {probes} probes in the window failed",
            probes - succeeded
        );
    }
    drop(prom);
    Ok(Row {
        scheme,
        side: "blackbox_exporter",
        probes,
        cpu: cpu[0],
        prometheus_cpu: Some(cpu[1]),
    })
}

// ---------------------------------------------------------------------------------------------
// The run

fn run(opts: Options) -> Result<()> {
    let tools = if opts.switchboard_only {
        None
    } else {
        Some((
            find_binary(
                "BLACKBOX_EXPORTER",
                &["prometheus-blackbox-exporter", "blackbox_exporter"],
            )?,
            find_binary("PROMETHEUS", &["prometheus"])?,
        ))
    };
    let tick = support::tick();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "deployed_cpu: CPU per probe as deployed, {} checks at 1 s, loopback target (~2 KiB page)",
        opts.checks
    );
    println!(
        "  switchboard {} (git {}), {cpus} CPUs; {} s warm-up, {} s window per row; CPU = user+sys from /proc/<pid>/stat, {} ms ticks",
        env!("CARGO_PKG_VERSION"),
        git_rev(),
        opts.warmup.as_secs(),
        opts.window.as_secs(),
        tick.as_millis()
    );
    if let Some((bb, prom)) = &tools {
        println!("  {}; {}", version(bb), version(prom));
    }
    println!(
        "  https: leaf for 127.0.0.1 signed by a private CA, verified on both sides (ca_file)"
    );

    let pki = pki()?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem)?;
    // The target's runtime: two workers, like the machine; its CPU is this process's, never counted.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (http_port, https_port) = start_target(&rt, &pki)?;
    eprintln!("target http://127.0.0.1:{http_port}/ https://127.0.0.1:{https_port}/");
    let exporter = match &tools {
        Some((bb, _)) => Some(start_blackbox(bb, dir.path(), &ca)?),
        None => None,
    };

    let mut rows = Vec::new();
    for (scheme, port) in [("http", http_port), ("https", https_port)] {
        rows.push(measure_switchboard(&opts, scheme, port, &ca, tick)?);
        if let (Some((_, prom)), Some((guard, bb_port))) = (&tools, &exporter) {
            rows.push(measure_blackbox(
                &opts,
                scheme,
                port,
                (guard, *bb_port),
                prom,
                tick,
            )?);
        }
    }
    drop(exporter);

    println!();
    println!(
        "{:<6} {:<18} {:>7} {:>8} {:>13} {:>7}  goal",
        "scheme", "side", "probes", "CPU s", "CPU µs/probe", "ratio"
    );
    for row in &rows {
        let exporter = rows
            .iter()
            .find(|r| r.scheme == row.scheme && r.side == "blackbox_exporter");
        let ratio = exporter
            .filter(|_| row.side == "switchboard")
            .map(|e| row.us_per_probe() / e.us_per_probe());
        let goal = match (row.side, row.scheme) {
            ("switchboard", "http") => format!(
                "≤ {GOAL_HTTP_US:.0} µs/probe: {}",
                if row.us_per_probe() <= GOAL_HTTP_US {
                    "met"
                } else {
                    "MISSED"
                }
            ),
            ("switchboard", _) => match ratio {
                Some(r) => format!(
                    "≤ {GOAL_HTTPS_RATIO}× exporter: {}",
                    if r <= GOAL_HTTPS_RATIO {
                        "met"
                    } else {
                        "MISSED"
                    }
                ),
                None => format!("≤ {GOAL_HTTPS_RATIO}× exporter: no exporter in this run"),
            },
            _ => match row.prometheus_cpu {
                Some(p) => format!(
                    "(Prometheus, not counted: {:.0} µs/scrape)",
                    p.as_secs_f64() * 1e6 / row.probes
                ),
                None => String::new(),
            },
        };
        println!(
            "{:<6} {:<18} {:>7.0} {:>8.2} {:>13.0} {:>7}  {goal}",
            row.scheme,
            row.side,
            row.probes,
            row.cpu.as_secs_f64(),
            row.us_per_probe(),
            ratio.map_or("-".into(), |r| format!("{r:.3}")),
        );
    }
    for row in &rows {
        if row.cpu < tick * 50 {
            println!(
                "  note: {} {} used only {:?} of CPU (under 50 ticks); a longer --window gives a steadier figure",
                row.side, row.scheme, row.cpu
            );
        }
    }
    drop(rt);
    Ok(())
}
