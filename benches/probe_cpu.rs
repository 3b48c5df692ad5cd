//! CPU time per HTTP probe: Switchboard against a real `prometheus-blackbox-exporter`, same loopback target, one run.
//!
//! What runs where, so that CPU accounting stays clean:
//!
//! - **target**: a child process (this binary re-executed with `--serve-target`) serving a
//!   ~2 KiB HTML page with 200 on `127.0.0.1:0`, plain HTTP and HTTPS (self-signed). Its CPU
//!   is never counted. It exits when its stdin closes, i.e. when this process goes away.
//! - **Switchboard**: `switchboard::probe::run` plus the per-probe metrics update
//!   (`Metrics::probe_finished`) on a multi-thread tokio runtime in *this* process; the figure
//!   is this process's user+sys CPU (`/proc/self/stat`) over the probes.
//! - **blackbox_exporter**: a child process on a free loopback port with a generated config,
//!   driven with `GET /probe?module=...&target=...` over keep-alive connections from this
//!   process (as Prometheus would); the figure is the exporter's user+sys CPU
//!   (`/proc/<pid>/stat`). The driver's own CPU is not counted: Prometheus pays it in production.
//!
//! Every Switchboard outcome must be a success and every exporter answer must contain
//! `probe_success 1`; anything else aborts the run (a benchmark of failing probes is worthless).
//!
//! Usage: `probe_cpu [--probes N] [--rounds R] [--concurrency 1,16] [--warmup N] [--no-https]
//! [--switchboard-only]` (also `SWITCHBOARD_BENCH_PROBES`, `SWITCHBOARD_BENCH_ROUNDS`,
//! `SWITCHBOARD_BENCH_CONCURRENCY`, `BLACKBOX_EXPORTER`). Each row is measured `R` times
//! (default 3), alternating sides, with `N` probes (default 2,000) each time.
//! `scripts/bench.sh` installs the exporter and runs this in release mode (`cargo bench`, which
//! passes `--bench`). Without `--bench`, as under `cargo test --all-targets`, it is a smoke run:
//! the Switchboard side only, 50 probes, concurrency 1, unless options say otherwise.

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::config::{CheckKind, CheckSpec, HttpCheck, Role};

// CPU accounting and the revision, shared by the benches.
mod support;

use support::{clock_ticks, cpu_ticks};
use switchboard::metrics::Metrics;
use tokio::net::{TcpListener, TcpStream};

/// The goal from design.md: Switchboard's CPU per probe at most this fraction of blackbox_exporter's.
const GOAL_RATIO: f64 = 0.25;

/// How long the exporter may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.iter().any(|a| a == "--serve-target") {
        serve_target()
    } else {
        Options::parse(&args).and_then(bench)
    };
    if let Err(e) = result {
        eprintln!("probe_cpu: error: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    probes: usize,
    warmup: usize,
    /// Each round measures every row once more, alternating the sides.
    rounds: usize,
    concurrency: Vec<usize>,
    https: bool,
    /// Only the Switchboard side (for profiling with `perf record`; no ratio is printed).
    switchboard_only: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let env_usize = |name: &str| -> Result<Option<usize>> {
            std::env::var(name)
                .ok()
                .map(|v| v.parse().with_context(|| format!("{name}={v:?}")))
                .transpose()
        };
        let mut opts = Options {
            probes: env_usize("SWITCHBOARD_BENCH_PROBES")?.unwrap_or(2000),
            warmup: 200,
            rounds: env_usize("SWITCHBOARD_BENCH_ROUNDS")?.unwrap_or(3),
            concurrency: match std::env::var("SWITCHBOARD_BENCH_CONCURRENCY") {
                Ok(v) => parse_list(&v)?,
                Err(_) => vec![1, 16],
            },
            https: true,
            switchboard_only: false,
        };
        if !args.iter().any(|a| a == "--bench") {
            // `cargo test --all-targets` runs benches without `--bench`: a quick smoke run of the
            // Switchboard side only, so the test suite needs no blackbox_exporter. Options given
            // explicitly still apply (e.g. `probe_cpu --probes 4000` under `perf record`).
            opts.probes = 50;
            opts.warmup = 5;
            opts.rounds = 1;
            opts.concurrency = vec![1];
            opts.switchboard_only = true;
        }
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| anyhow!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--probes" => opts.probes = value()?.parse().context("--probes")?,
                "--warmup" => opts.warmup = value()?.parse().context("--warmup")?,
                "--rounds" => opts.rounds = value()?.parse().context("--rounds")?,
                "--concurrency" => opts.concurrency = parse_list(&value()?)?,
                "--no-https" => opts.https = false,
                "--switchboard-only" => opts.switchboard_only = true,
                // `cargo bench` passes `--bench`; other harness flags are ignored as well.
                _ => {}
            }
        }
        if opts.probes == 0 || opts.rounds == 0 || opts.concurrency.contains(&0) {
            bail!("--probes, --rounds and every --concurrency level must be at least 1");
        }
        Ok(opts)
    }
}

fn parse_list(text: &str) -> Result<Vec<usize>> {
    text.split(',')
        .map(|s| {
            s.trim()
                .parse()
                .with_context(|| format!("concurrency {s:?}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// One measured run of one side at one concurrency level.
struct Measurement {
    side: &'static str,
    scheme: &'static str,
    concurrency: usize,
    probes: usize,
    cpu: Duration,
    wall: Duration,
}

impl Measurement {
    fn cpu_us_per_probe(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.probes as f64
    }
    fn probes_per_sec(&self) -> f64 {
        self.probes as f64 / self.wall.as_secs_f64()
    }
    fn add(&mut self, other: &Measurement) {
        self.probes += other.probes;
        self.cpu += other.cpu;
        self.wall += other.wall;
    }
}

/// One table row: both sides at one scheme and concurrency, summed over rounds.
struct Row {
    sb: Measurement,
    bx: Option<Measurement>,
    /// The per-round ratios, to show how much they moved.
    ratios: Vec<f64>,
}

impl Row {
    fn add(&mut self, sb: Measurement, bx: Option<Measurement>) {
        self.sb.add(&sb);
        if let (Some(total), Some(bx)) = (&mut self.bx, &bx) {
            total.add(bx);
        }
        if let Some(bx) = &bx {
            self.ratios
                .push(sb.cpu_us_per_probe() / bx.cpu_us_per_probe());
        }
    }
    fn record_ratio(&mut self) {
        if let Some(bx) = &self.bx {
            self.ratios
                .push(self.sb.cpu_us_per_probe() / bx.cpu_us_per_probe());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The target: a child process serving the same small page over HTTP and HTTPS.

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

/// Child-process entry point: serve until stdin closes.
fn serve_target() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let page = page();
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let https = TcpListener::bind("127.0.0.1:0").await?;
        let acceptor = tokio_rustls::TlsAcceptor::from(self_signed_server_config()?);
        println!(
            "ports {} {}",
            http.local_addr()?.port(),
            https.local_addr()?.port()
        );
        std::io::stdout().flush()?;

        let p = page.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = http.accept().await {
                let p = p.clone();
                tokio::spawn(serve_conn(TokioIo::new(stream), p));
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
        // The parent holds our stdin; EOF means it is gone (or done), so we go too.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        anyhow::Ok(())
    })
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

fn self_signed_server_config() -> Result<Arc<rustls::ServerConfig>> {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)?;
    // No ALPN: both sides speak HTTP/1.1 over TLS, like over plain TCP.
    Ok(Arc::new(config))
}

/// A child process that is killed and reaped when dropped (also on error and panic unwinding).
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

struct Target {
    _guard: Guard,
    http: SocketAddr,
    https: SocketAddr,
}

fn start_target() -> Result<Target> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--serve-target")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the target process")?;
    let stdout = child.stdout.take().context("target stdout")?;
    let guard = Guard {
        name: "target",
        child,
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let ports: Vec<u16> = line
        .strip_prefix("ports ")
        .with_context(|| format!("target said {line:?}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [http, https] = ports[..] else {
        bail!("target said {line:?}")
    };
    Ok(Target {
        _guard: guard,
        http: SocketAddr::from(([127, 0, 0, 1], http)),
        https: SocketAddr::from(([127, 0, 0, 1], https)),
    })
}

// ---------------------------------------------------------------------------------------------
// Switchboard side

fn check_spec(url: &str) -> Result<CheckSpec> {
    Ok(CheckSpec {
        name: "bench".into(),
        service: "bench".into(),
        role: Role::Primary,
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
        retry_interval: Duration::from_secs(5),
        failure_threshold: 3,
        success_threshold: 2,
        confirmation: Default::default(),
        // No conditions: the probe's implicit one is "the final status is 2xx or 3xx".
        conditions: Vec::new(),
        kind: CheckKind::Http(HttpCheck {
            url: url.parse()?,
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            max_redirects: 10,
            max_body_bytes: 1 << 20,
            insecure: true,
            net: Default::default(),
        }),
    })
}

/// Runs `probes` probes with `concurrency` in flight; fails on the first unsuccessful outcome.
/// Each probe also updates the blackbox-named probe metrics, as the daemon does after every
/// probe (blackbox_exporter's figure includes building its metrics per probe too; rendering
/// `/metrics` is per scrape in Switchboard, not per probe, so it is not part of this figure).
async fn run_switchboard(
    check: &Arc<CheckSpec>,
    metrics: &Arc<Metrics>,
    probes: usize,
    concurrency: usize,
) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(probes) {
        let (check, metrics, next) = (check.clone(), metrics.clone(), next.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < probes {
                let outcome = switchboard::probe::run(&check).await;
                metrics.probe_finished(&check.service, &check, &outcome);
                if !outcome.success {
                    bail!("Switchboard probe failed: {}", outcome.summary());
                }
                if outcome.content_length < 2000 {
                    bail!("Switchboard read only {} bytes", outcome.content_length);
                }
            }
            Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

fn measure_switchboard(
    rt: &tokio::runtime::Runtime,
    scheme: &'static str,
    url: &str,
    opts: &Options,
    concurrency: usize,
    tick: Duration,
) -> Result<Measurement> {
    let check = Arc::new(check_spec(url)?);
    let metrics = Arc::new(Metrics::new());
    rt.block_on(run_switchboard(&check, &metrics, opts.warmup, concurrency))?;
    let stat = Path::new("/proc/self/stat");
    let (cpu0, t0) = (cpu_ticks(stat)?, Instant::now());
    rt.block_on(run_switchboard(&check, &metrics, opts.probes, concurrency))?;
    let (cpu1, wall) = (cpu_ticks(stat)?, t0.elapsed());
    Ok(Measurement {
        side: "switchboard",
        scheme,
        concurrency,
        probes: opts.probes,
        cpu: tick * (cpu1 - cpu0) as u32,
        wall,
    })
}

// ---------------------------------------------------------------------------------------------
// blackbox_exporter side

fn blackbox_binary() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("BLACKBOX_EXPORTER") {
        return Ok(PathBuf::from(path));
    }
    for name in ["prometheus-blackbox-exporter", "blackbox_exporter"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
            let path = Path::new(dir).join(name);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    bail!("prometheus-blackbox-exporter not found: run scripts/bench.sh (it installs it) or set BLACKBOX_EXPORTER")
}

fn blackbox_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            // It prints to stderr in older releases and stdout in newer ones.
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

fn free_loopback_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Blackbox {
    guard: Guard,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Blackbox {
    fn stat_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/stat", self.guard.child.id()))
    }
}

const BLACKBOX_CONFIG: &str = "\
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
  http_2xx_insecure:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      tls_config:
        insecure_skip_verify: true
";

async fn start_blackbox(bin: &Path) -> Result<Blackbox> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("blackbox.yml");
    std::fs::write(&config, BLACKBOX_CONFIG)?;
    // The port is free now; should another process take it before the exporter binds, the
    // readiness wait below fails loudly rather than measuring someone else.
    let port = free_loopback_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(bin)
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--config.file={}", config.display()))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut bb = Blackbox {
        guard: Guard {
            name: "blackbox_exporter",
            child,
        },
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = bb.guard.child.try_wait()? {
            bail!("blackbox_exporter exited during startup: {status}");
        }
        if let Ok(mut conn) = BlackboxConn::open(bb.addr).await {
            if conn.get("/-/healthy").await.is_ok() {
                return Ok(bb);
            }
        }
        if Instant::now() > deadline {
            bail!("blackbox_exporter did not answer on {addr} within {STARTUP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One keep-alive HTTP/1.1 connection to the exporter, as a Prometheus scraper holds.
struct BlackboxConn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    authority: String,
}

impl BlackboxConn {
    async fn open(addr: SocketAddr) -> Result<BlackboxConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(BlackboxConn {
            sender,
            authority: addr.to_string(),
        })
    }

    async fn get(&mut self, path_and_query: &str) -> Result<Bytes> {
        self.sender.ready().await?;
        let req = Request::get(path_and_query)
            .header(hyper::header::HOST, &self.authority)
            .body(Empty::new())?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "blackbox_exporter answered {status} to {path_and_query}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// Drives `probes` probes through the exporter over `concurrency` connections; fails on the
/// first answer without `probe_success 1`.
async fn run_blackbox(
    addr: SocketAddr,
    query: &str,
    probes: usize,
    concurrency: usize,
) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let query: Arc<str> = query.into();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(probes) {
        let mut conn = BlackboxConn::open(addr).await?;
        let (next, query) = (next.clone(), query.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < probes {
                let body = conn.get(&query).await?;
                let text = std::str::from_utf8(&body)?;
                if !text.lines().any(|l| l == "probe_success 1") {
                    let size = text
                        .lines()
                        .find(|l| l.starts_with("probe_http_content_length "))
                        .unwrap_or("probe_http_content_length ?");
                    bail!("blackbox_exporter probe failed ({size}):\n{text}");
                }
            }
            Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn measure_blackbox(
    rt: &tokio::runtime::Runtime,
    bb: &Blackbox,
    scheme: &'static str,
    module: &str,
    target: &str,
    opts: &Options,
    concurrency: usize,
    tick: Duration,
) -> Result<Measurement> {
    let query = format!("/probe?module={module}&target={target}");
    rt.block_on(run_blackbox(bb.addr, &query, opts.warmup, concurrency))?;
    let stat = bb.stat_path();
    let (cpu0, t0) = (cpu_ticks(&stat)?, Instant::now());
    rt.block_on(run_blackbox(bb.addr, &query, opts.probes, concurrency))?;
    let (cpu1, wall) = (cpu_ticks(&stat)?, t0.elapsed());
    Ok(Measurement {
        side: "blackbox_exporter",
        scheme,
        concurrency,
        probes: opts.probes,
        cpu: tick * (cpu1 - cpu0) as u32,
        wall,
    })
}

// ---------------------------------------------------------------------------------------------
// The run

fn switchboard_version() -> String {
    format!(
        "switchboard {} (git {})",
        env!("CARGO_PKG_VERSION"),
        support::git_rev()
    )
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs available, {model}")
}

fn bench(opts: Options) -> Result<()> {
    let bin = if opts.switchboard_only {
        None
    } else {
        Some(blackbox_binary()?)
    };
    let hz = clock_ticks();
    let tick = Duration::from_nanos(1_000_000_000 / hz);
    println!("Switchboard vs blackbox_exporter: CPU time per HTTP probe, same loopback target");
    println!("  {}", switchboard_version());
    if let Some(bin) = &bin {
        println!("  {}", blackbox_version(bin));
    }
    println!("  machine: {}", machine());
    println!(
        "  {} rounds x {} probes per row, each after {} warm-up probes; CPU = user+sys from /proc/<pid>/stat, {} ms resolution",
        opts.rounds,
        opts.probes,
        opts.warmup,
        tick.as_millis()
    );
    println!(
        "  target: ~2 KiB HTML page, 200, separate process (not counted); http = plain TCP, \
         https = TLS (self-signed, verification off on both sides, no resumption, HTTP/1.1)"
    );
    println!();

    let target = start_target()?;
    // The runtime the Switchboard probes run on, as the daemon's: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bb = match &bin {
        Some(bin) => Some(rt.block_on(start_blackbox(bin))?),
        None => None,
    };
    eprintln!("target http://{} https://{}", target.http, target.https);
    if let Some(bb) = &bb {
        eprintln!(
            "blackbox_exporter on {} (pid {})",
            bb.addr,
            bb.guard.child.id()
        );
    }

    let mut schemes = vec![("http", format!("http://{}/", target.http), "http_2xx")];
    if opts.https {
        schemes.push((
            "https",
            format!("https://{}/", target.https),
            "http_2xx_insecure",
        ));
    }

    // Rounds interleave the two sides so that a change in machine load during the run (other
    // work on a shared box) hits both; the table sums the rounds, the ratio range shows spread.
    let mut rows: Vec<Row> = Vec::new();
    for round in 1..=opts.rounds {
        let mut i = 0;
        for (scheme, url, module) in &schemes {
            for &c in &opts.concurrency {
                eprintln!(
                    "round {round}/{}: {scheme} concurrency {c} ...",
                    opts.rounds
                );
                let sb = measure_switchboard(&rt, scheme, url, &opts, c, tick)?;
                let bx = match &bb {
                    Some(bb) => Some(measure_blackbox(
                        &rt, bb, scheme, module, url, &opts, c, tick,
                    )?),
                    None => None,
                };
                if round == 1 {
                    rows.push(Row {
                        sb,
                        bx,
                        ratios: Vec::new(),
                    });
                    rows[i].record_ratio();
                } else {
                    rows[i].add(sb, bx);
                }
                i += 1;
            }
        }
    }
    let rows: Vec<(Measurement, Option<Measurement>, Vec<f64>)> =
        rows.into_iter().map(|r| (r.sb, r.bx, r.ratios)).collect();

    println!(
        "{:<18} {:<6} {:>5} {:>7} {:>10} {:>12} {:>10}",
        "side", "scheme", "conc", "probes", "CPU s", "CPU µs/probe", "probes/s"
    );
    for m in rows
        .iter()
        .flat_map(|(sb, bx, _)| std::iter::once(sb).chain(bx))
    {
        println!(
            "{:<18} {:<6} {:>5} {:>7} {:>10.3} {:>12.1} {:>10.0}",
            m.side,
            m.scheme,
            m.concurrency,
            m.probes,
            m.cpu.as_secs_f64(),
            m.cpu_us_per_probe(),
            m.probes_per_sec()
        );
    }
    if bb.is_some() {
        println!();
        println!(
            "ratio = Switchboard CPU per probe / blackbox_exporter CPU per probe (goal ≤ {GOAL_RATIO})"
        );
    }
    for (sb, bx, ratios) in &rows {
        if let Some(bx) = bx {
            let ratio = sb.cpu_us_per_probe() / bx.cpu_us_per_probe();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            println!(
                "  {:<6} concurrency {:>3}: {:.3}  (rounds {:.3}..{:.3})  {}",
                sb.scheme,
                sb.concurrency,
                ratio,
                lo,
                hi,
                if ratio <= GOAL_RATIO {
                    "meets goal"
                } else {
                    "MISSES goal"
                }
            );
        }
    }
    for m in rows
        .iter()
        .flat_map(|(sb, bx, _)| std::iter::once(sb).chain(bx))
    {
        if m.cpu < tick * 20 {
            println!(
                "  note: {} {} c={} used only {:?} of CPU (under 20 clock ticks); raise --probes for a steadier figure",
                m.side, m.scheme, m.concurrency, m.cpu
            );
        }
    }
    drop(bb);
    drop(target);
    Ok(())
}
