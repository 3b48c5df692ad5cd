//! The suspect-vantage guard through the real daemon (issue 15, acceptance 3): every target
//! host stopped at once makes the vantage suspect (no transition, nothing to customers, one
//! note to on-call, `SwitchboardVantageSuspect` firing in a real Prometheus), starting them
//! again clears it (one more note), and one target stopped alone still fails over. The figures
//! (time to suspect, to clear, detection with and without the guard) are printed.

use crate::support::daemon::{
    metric, stored_transitions, write_main_config, Daemon, Host, ServiceFile,
};
use crate::support::prometheus::Prometheus;
use crate::support::smtp::{parse_mail, require_aiosmtpd, ParsedMail, SmtpServer};
use std::path::Path;
use std::time::{Duration, Instant};

/// Three services, each with its primary form on its own host (127.0.0.2, .3, .4), and their
/// backup forms on a fourth (127.0.0.5): four distinct hosts, so the guard judges.
struct Site {
    primaries: Vec<Host>,
    backup: Host,
}

impl Site {
    fn start() -> Site {
        Site {
            primaries: ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
                .iter()
                .map(|ip| Host::start(ip))
                .collect(),
            backup: Host::start("127.0.0.5"),
        }
    }

    fn hosts(&mut self) -> impl Iterator<Item = &mut Host> {
        self.primaries
            .iter_mut()
            .chain(std::iter::once(&mut self.backup))
    }

    /// The service files, and `[vantage]` appended to the main file when given.
    fn write(&self, dir: &Path, main: &Path, vantage: &str) {
        let mut text = std::fs::read_to_string(main).expect("main config");
        text.push_str(vantage);
        std::fs::write(main, text).expect("write main config");
        for (i, host) in self.primaries.iter().enumerate() {
            let id = ["a", "b", "c"][i];
            ServiceFile {
                id: &format!("svc-{id}"),
                name: &format!("Channel {id}"),
                recovery_hold: "5m",
                primary: &format!("form-{id}"),
                backup: &format!("backup-{id}"),
                route: &format!("route-{id}"),
            }
            .write_urls(
                dir,
                &host.url(&format!("/form-{id}")),
                &self.backup.url(&format!("/backup-{id}")),
            );
        }
    }
}

fn mails(server: &SmtpServer) -> Vec<ParsedMail> {
    server.messages().iter().map(|p| parse_mail(p)).collect()
}

fn to(m: &ParsedMail) -> &str {
    m.header("To").unwrap_or_default()
}

fn subject(m: &ParsedMail) -> &str {
    m.header("Subject").unwrap_or_default()
}

/// Waits for `cond`, polling every 20 ms; on timeout panics with the daemon's log.
fn wait(log: &Path, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    panic!("timed out waiting for: {what}\n--- daemon log ---\n{text}");
}

fn suspect(d: &Daemon) -> Option<f64> {
    metric(d, "switchboard_vantage_suspect{")
}

/// Starts the site, aiosmtpd and the daemon (with `vantage` appended to its main file) and
/// waits until every check has passed a probe.
fn start(dir: &Path, vantage: &str) -> (Site, SmtpServer, Daemon, u16, std::path::PathBuf) {
    let site = Site::start();
    let server = SmtpServer::start(&dir.join("maildir"));
    let (config, port) = write_main_config(
        dir,
        "var/switchboard.db",
        &format!(
            "group_window = \"0s\"\ncustomer_delay = \"0s\"\ntransport = \"smtp\"\nsmtp_url = \"{}\"",
            server.url()
        ),
    );
    site.write(dir, &config, vantage);
    let log = dir.join("daemon.log");
    let d = Daemon::start_with(&config, port, &[], Some(&log));
    wait(&log, "every check healthy", Duration::from_secs(20), || {
        let m = d.metrics();
        [
            "form-a", "form-b", "form-c", "backup-a", "backup-b", "backup-c",
        ]
        .iter()
        .all(|c| {
            crate::support::daemon::series(
                &m,
                &format!("switchboard_check_health{{check=\"{c}\",health=\"healthy\""),
            ) == Some(1.0)
        })
    });
    (site, server, d, port, log)
}

#[test]
fn every_host_failing_at_once_is_suspect_not_an_outage_and_one_failing_alone_fails_over() {
    require_aiosmtpd();
    let _heavy = crate::support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut site, server, d, port, log) = start(dir.path(), "");
    let prometheus = Prometheus::start(dir.path(), &[port]);
    let db = dir.path().join("var/switchboard.db");
    assert_eq!(suspect(&d), Some(0.0), "healthy targets: not suspect");
    assert_eq!(metric(&d, "switchboard_vantage_hosts{"), Some(4.0));
    assert_eq!(metric(&d, "switchboard_vantage_up{"), Some(1.0));

    // Every host stops at once: the vantage's own network, as far as it can tell.
    for h in site.hosts() {
        h.halt();
    }
    for h in site.hosts() {
        h.stop();
    }
    let to_suspect = wait(&log, "the vantage suspect", Duration::from_secs(10), || {
        suspect(&d) == Some(1.0)
    });
    // Several intervals and many confirmation rounds later, still nothing decided.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(suspect(&d), Some(1.0));
    assert_eq!(
        stored_transitions(&db),
        Vec::<(String, String)>::new(),
        "no failover, no outage\n--- daemon log ---\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for id in ["a", "b", "c"] {
        assert!(
            d.location(&format!("route-{id}"))
                .contains(&format!("/form-{id}")),
            "customers stay where they were"
        );
    }
    let to_alert = wait(
        &log,
        "SwitchboardVantageSuspect firing in Prometheus",
        Duration::from_secs(30),
        || {
            prometheus
                .firing()
                .iter()
                .any(|(name, _)| name == "SwitchboardVantageSuspect")
        },
    );
    wait(&log, "on-call's note", Duration::from_secs(10), || {
        !mails(&server).is_empty()
    });
    let m = mails(&server);
    assert_eq!(
        m.len(),
        1,
        "exactly one message: {:?}",
        m.iter().map(subject).collect::<Vec<_>>()
    );
    assert!(
        to(&m[0]).contains("support-oncall@"),
        "to on-call: {}",
        to(&m[0])
    );
    assert!(
        subject(&m[0]).contains("may be cut off"),
        "{}",
        subject(&m[0])
    );
    let body = m[0].part("text/plain").unwrap_or_default().to_owned();
    // The evidence: the hosts failing when the guard judged (more than half of the four).
    let named = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        .iter()
        .filter(|h| body.contains(&format!("Evidence: {h}: ")))
        .count();
    assert!(named >= 3, "the note names the failing hosts: {body}");
    assert!(body.contains("runbooks/vantage-suspect.md"), "{body}");

    // The network is back: the episode ends, and on-call hears that once.
    for h in site.hosts() {
        h.resume();
    }
    let to_clear = wait(&log, "the vantage cleared", Duration::from_secs(10), || {
        suspect(&d) == Some(0.0)
    });
    wait(
        &log,
        "on-call's second note",
        Duration::from_secs(10),
        || mails(&server).len() >= 2,
    );
    std::thread::sleep(Duration::from_secs(2));
    let m = mails(&server);
    assert_eq!(
        m.len(),
        2,
        "{:?}",
        m.iter().map(subject).collect::<Vec<_>>()
    );
    assert!(
        subject(&m[1]).contains("healthy targets again"),
        "{}",
        subject(&m[1])
    );
    assert!(
        m.iter().all(|m| !to(m).contains("support-announce@")),
        "customers heard nothing"
    );
    assert!(stored_transitions(&db).is_empty(), "still no transition");
    let audit =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("db")
            .query_row(
                "SELECT count(*) FROM audit WHERE actor LIKE 'vantage:%'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .expect("audit query");
    assert_eq!(audit, 2, "the episode's start and end are audited");

    // One real target fails alone: it fails over as it always did.
    let stopped = Instant::now();
    site.primaries[0].stop();
    wait(&log, "svc-a failed over", Duration::from_secs(10), || {
        d.location("route-a").contains("/backup-a")
    });
    let to_failover = stopped.elapsed();
    let detection = metric(&d, "switchboard_detection_seconds_sum{service=\"svc-a\"}")
        .expect("a detection time");
    assert_eq!(
        suspect(&d),
        Some(0.0),
        "one host of four failing is not the vantage"
    );
    assert_eq!(
        stored_transitions(&db),
        vec![("operational".to_string(), "failed_over".to_string())]
    );
    wait(
        &log,
        "the customers' failover e-mail",
        Duration::from_secs(10),
        || {
            mails(&server)
                .iter()
                .any(|m| to(m).contains("support-announce@"))
        },
    );
    // Confirmation alone: the first failure and one re-probe 200 ms later (threshold 2).
    assert!(detection < 1.0, "detection {detection:.3} s");
    println!(
        "vantage guard: suspect {:.0} ms after every host stopped (interval 1 s); alert firing after {:.1} s more (for: 2s); cleared {:.0} ms after they resumed; one host alone: failover {:.0} ms after it stopped, detection (first failing probe to switch) {:.0} ms",
        to_suspect.as_secs_f64() * 1000.0,
        to_alert.as_secs_f64(),
        to_clear.as_secs_f64() * 1000.0,
        to_failover.as_secs_f64() * 1000.0,
        detection * 1000.0
    );
}

/// The guard's price for one target failing alone: detection (first failing probe to the
/// switch) with and without it, same site, same timings, printed side by side. The guard asks
/// the other hosts at once when the failure begins, so it is done before the confirmation
/// re-probe: the two differ by the probes' scheduling noise, not by a wait.
#[test]
fn one_target_failing_alone_is_detected_as_fast_with_the_guard_as_without() {
    require_aiosmtpd();
    let _heavy = crate::support::heavy();
    let mut figures = Vec::new();
    for (label, vantage) in [
        ("guard on", ""),
        ("guard off", "[vantage]\nguard = false\n"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut site, _server, d, _port, log) = start(dir.path(), vantage);
        site.primaries[0].stop();
        wait(&log, "svc-a failed over", Duration::from_secs(10), || {
            d.location("route-a").contains("/backup-a")
        });
        let detection =
            metric(&d, "switchboard_detection_seconds_sum{service=\"svc-a\"}").expect("detection");
        assert_eq!(suspect(&d), Some(0.0), "{label}: never suspect");
        figures.push((label, detection));
    }
    let (on, off) = (figures[0].1, figures[1].1);
    println!(
        "detection of one target failing alone (failure_threshold 2, retry_interval 200ms): guard on {:.0} ms, guard off {:.0} ms, difference {:+.0} ms",
        on * 1000.0,
        off * 1000.0,
        (on - off) * 1000.0
    );
    assert!(
        on <= off + 0.2,
        "the guard delays a lone failure by at most one re-probe's jitter: on {on:.3} s, off {off:.3} s"
    );
}
