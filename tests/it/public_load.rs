//! The real daemon with 40 services under load on every public endpoint: the probes keep their schedule and no transition happens; the status page and summary.json are cached (ETag, 304, gzip) and the page stays small.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{self, daemon};

use daemon::{
    add_services, lag_buckets, lag_p99, scrape, series_sum, wait_until, write_config, Daemon,
    Target, FILE_MAIL,
};

const SERVICES: usize = 40;
const DAY_MS: i64 = 86_400_000;

/// One keep-alive HTTP/1.1 connection, as a browser or a load generator holds it.
struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s),
            host: format!("127.0.0.1:{port}"),
        })
    }

    /// GET `path` with `extra` header lines; reads exactly one response (by Content-Length).
    fn get(&mut self, path: &str, extra: &[(&str, &str)]) -> std::io::Result<Reply> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("closed in the headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; if status == 304 { 0 } else { len }];
        self.reader.read_exact(&mut body)?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("valid gzip");
    out
}

/// 90 days of stored probe history per service, with the bad days a real quarter has (a few
/// days with failed probes, one outage day), so the page is measured as it looks in use.
fn seed_history(db: &std::path::Path) {
    use switchboard::clock::Timestamp;
    use switchboard::store::{HistoryRow, Store, DAY_S, FIVE_MINUTES_S};
    std::fs::create_dir_all(db.parent().expect("dir")).expect("mkdir var");
    let store = Store::open(db).expect("open the store");
    let today = Timestamp::now().as_millis().div_euclid(DAY_MS) * DAY_MS;
    let mut rows = Vec::new();
    for s in 0..SERVICES {
        let service = if s == 0 {
            "ticket-submission".to_string()
        } else {
            format!("svc-{s:02}")
        };
        let now = Timestamp::now().as_millis();
        for m in 1..288 {
            rows.push(HistoryRow {
                service: service.clone(),
                resolution_s: FIVE_MINUTES_S,
                start: Timestamp((now / 300_000 - m) * 300_000),
                ok: 10,
                total: 10,
                latency_sum_ms: 10 * (30 + (m as u64 * 7) % 50),
                latency_max_ms: 200,
            });
        }
        for d in 1..90 {
            let total = 2_880;
            let ok = match (d + s as i64) % 13 {
                0 => total - 120,
                5 => total - 9,
                _ if d == 40 + s as i64 % 7 => total / 2,
                _ => total,
            };
            rows.push(HistoryRow {
                service: service.clone(),
                resolution_s: DAY_S,
                start: Timestamp(today - d * DAY_MS),
                ok,
                total,
                latency_sum_ms: total * 40,
                latency_max_ms: 900,
            });
        }
    }
    store
        .add_history(&rows, Timestamp(0), Timestamp(0))
        .expect("seed history");
}

/// Every transition the daemon counted, all services and states summed.
fn transitions(text: &str) -> f64 {
    series_sum(text, "switchboard_transitions_total{")
}

#[test]
fn load_on_every_public_endpoint_delays_no_probe_and_causes_no_transition() {
    // Heavy: 50 clients on 40 services, and a verdict on the probes' schedule lag.
    let _turn = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port) = write_config(dir.path(), &target, FILE_MAIL);
    add_services(dir.path(), &target, SERVICES);
    seed_history(&dir.path().join("var/switchboard.db"));
    let log = dir.path().join("daemon.log");
    let d = Daemon::start_with(&main, port, &[], Some(&log));
    let operational = "state=\"operational\"} 1";
    wait_until("every service operational", Duration::from_secs(60), || {
        scrape(port)
            .lines()
            .filter(|l| l.starts_with("switchboard_service_state{") && l.ends_with(operational))
            .count()
            == SERVICES
    });

    // The page for 40 services with 90 days of history is tens of kilobytes, not a megabyte.
    let mut c = Conn::open(port).expect("connect");
    let page = c.get("/status", &[]).expect("/status");
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body.clone()).expect("utf-8");
    assert_eq!(html.matches("<section class=\"service\"").count(), SERVICES);
    assert!(html.contains("day: outage ("), "the outage days are named");

    // ETag and 304, gzip, Cache-Control on /status and summary.json.
    let mut sizes = Vec::new();
    for path in ["/status", "/api/v2/summary.json"] {
        let plain = c.get(path, &[]).expect(path);
        assert_eq!(plain.status, 200, "{path}");
        let etag = plain.header("etag").expect("an ETag").to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong: {etag}"
        );
        assert_eq!(plain.header("cache-control"), Some("public, max-age=5"));
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        let again = c
            .get(path, &[("If-None-Match", &etag)])
            .expect("conditional");
        assert_eq!(
            again.status, 304,
            "{path}: a client with this version gets no body"
        );
        assert!(again.body.is_empty());
        let zipped = c
            .get(path, &[("Accept-Encoding", "gzip, br")])
            .expect("gzip");
        assert_eq!(zipped.status, 200);
        assert_eq!(zipped.header("content-encoding"), Some("gzip"), "{path}");
        let unzipped = gunzip(&zipped.body);
        // The same document (unless a history flush came between), in fewer bytes.
        if path != "/status" {
            assert_eq!(unzipped.as_bytes(), plain.body.as_slice(), "{path}");
        }
        assert!(zipped.body.len() < plain.body.len() / 3, "{path}");
        let zetag = zipped.header("etag").expect("ETag").to_string();
        assert_ne!(zetag, etag, "each encoding has its own strong tag");
        let again = c
            .get(
                path,
                &[("If-None-Match", &zetag), ("Accept-Encoding", "gzip")],
            )
            .expect("conditional gzip");
        assert_eq!(again.status, 304, "{path}");
        sizes.push((path, plain.body.len(), zipped.body.len()));
    }
    // /go stays uncacheable: a cached redirect would outlive a failover.
    let go = c.get("/go/submit-ticket", &[]).expect("/go");
    assert_eq!(go.status, 307);
    assert_eq!(go.header("cache-control"), Some("no-store"));

    // 50 clients hammer /status, summary.json, /go and /metrics for 20 s.
    let before = scrape(port);
    let (transitions_before, lag_before) = (transitions(&before), lag_buckets(&before));
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let load = Duration::from_secs(20);
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let (served, failed) = (served.clone(), failed.clone());
            std::thread::spawn(move || {
                let paths = [
                    "/status",
                    "/api/v2/summary.json",
                    "/go/route-07",
                    "/metrics",
                ];
                let gzip: &[(&str, &str)] = if i % 2 == 0 {
                    &[("Accept-Encoding", "gzip")]
                } else {
                    &[]
                };
                let mut conn = None;
                let mut n = i;
                while started.elapsed() < load {
                    n += 1;
                    if conn.is_none() {
                        conn = Conn::open(port).ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    match c.get(paths[n % paths.len()], gzip) {
                        Ok(r) if r.status == 200 || r.status == 307 => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let elapsed = started.elapsed();
    let after = scrape(port);
    let (p99, probes) = lag_p99(&lag_before, &lag_buckets(&after));
    let transitions_during = transitions(&after) - transitions_before;
    let served = served.load(Ordering::Relaxed);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for (path, plain, zipped) in &sizes {
        println!("{path}: {plain} bytes, {zipped} gzip-encoded ({SERVICES} services, 90 days of history)");
    }
    println!(
        "load: {served} requests in {elapsed:.1?} ({:.0} req/s), {} failed; probes started meanwhile: {probes}, schedule lag p99 <= {p99} s; transitions: {transitions_during}",
        served as f64 / elapsed.as_secs_f64(),
        failed.load(Ordering::Relaxed),
    );
    assert!(
        page.body.len() < 100_000,
        "page of {} bytes",
        page.body.len()
    );
    assert!(
        served > 1_000,
        "the load reached the daemon ({served} requests)"
    );
    assert!(
        probes >= 40.0 * 20.0,
        "probes kept running ({probes} started)"
    );
    assert_eq!(transitions_during, 0.0, "no transition under load\n{text}");
    assert!(p99 <= 1.0, "schedule lag p99 {p99} s\n{text}");
    drop(d);
}
