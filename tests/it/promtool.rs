//! Prometheus's own tools judge what we expose: `promtool check metrics` on a live `/metrics`
//! after probes and a failover, and `promtool check config` on the shipped scrape config.

use crate::support::daemon;
use crate::support::oncall;

use daemon::{get, wait_until, write_config, Daemon, Target, FILE_MAIL};
use std::io::Write;
use std::time::Duration;

/// promtool run from the repository root (paths in the checks are relative to it).
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    oncall::promtool(args, &oncall::repo(""), stdin)
}

#[test]
fn promtool_finds_nothing_to_complain_about_in_live_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config(dir.path(), &target, FILE_MAIL);
    let d = Daemon::start(&config, port);
    target.set_down(true);
    let backup = target.url("/backup");
    wait_until("failed over", Duration::from_secs(30), || {
        d.location("submit-ticket") == backup
    });
    let metrics = get(&d.url("/metrics")).expect("GET /metrics").body;
    for name in [
        "probe_success{",
        "probe_http_duration_seconds{",
        "switchboard_service_state{",
        "switchboard_transitions_total{",
        "switchboard_detection_seconds_bucket{",
        "switchboard_route_active_target{",
    ] {
        assert!(metrics.contains(name), "{name} exported:\n{metrics}");
    }
    let (ok, said) = promtool(&["check", "metrics"], &metrics);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

#[test]
fn the_shipped_scrape_config_is_valid_and_honours_labels() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus.yml");
    let (ok, said) = promtool(&["check", "config", path], "");
    assert!(ok, "promtool check config:\n{said}");
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains("honor_labels: true"));
}

/// The series only dns, tcp and multi-step checks export, from real probes of each kind against
/// loopback peers, also pass promtool: record counts, DNS phases, `probe_failed_due_to_regex`.
#[test]
fn promtool_accepts_dns_tcp_and_steps_series_from_real_probes() {
    use switchboard::config::Config;
    use switchboard::metrics::Metrics;
    let target = Target::start();
    // A UDP "DNS server" that answers every query with one A record, so the dns check has a
    // reply to count without needing dnsmasq here.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let dns_port = udp.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            let mut reply = buf[..n].to_vec();
            reply[2] = 0x81;
            reply[3] = 0x80;
            reply[7] = 1;
            reply.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 7]);
            let _ = udp.send_to(&reply, peer);
        }
    });
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let tcp_port = tcp.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in tcp.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(b"220 mail ready\r\n");
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir");
    std::fs::write(dir.path().join("switchboard.toml"), "probes = \"probes\"\n").expect("write");
    std::fs::write(
        dir.path().join("probes/s.toml"),
        format!(
            r#"[service]
id = "s"
[[check]]
name = "record"
kind = "dns"
target = "127.0.0.1:{dns_port}"
query_name = "support.example.com"
timeout = "2s"
[[check]]
name = "banner"
kind = "tcp"
target = "127.0.0.1:{tcp_port}"
expect_regex = "^250 "
timeout = "2s"
[[check]]
name = "flow"
timeout = "2s"
[[check.step]]
name = "one"
url = "{}"
"#,
            target.url("/")
        ),
    )
    .expect("write");
    let config =
        Config::load(&dir.path().join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"));
    let metrics = Metrics::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for check in config.checks() {
        let outcome = rt.block_on(switchboard::probe::run(check));
        metrics.probe_finished("s", check, &outcome);
    }
    let text = metrics.render();
    for line in [
        r#"probe_dns_answer_rrs{check="record",instance="dns://127.0.0.1:"#,
        r#"probe_dns_duration_seconds{check="record","#,
        r#"probe_failed_due_to_regex{check="banner",instance="127.0.0.1:"#,
        r#"probe_http_duration_seconds{check="flow","#,
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("probe_dns_answer_rrs{") && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("probe_failed_due_to_regex{check=\"banner\"") && l.ends_with(" 1")
        ),
        "the banner is 220, not 250:\n{text}"
    );
    let (ok, said) = promtool(&["check", "metrics"], &text);
    assert!(ok, "promtool check metrics:\n{said}\n{text}");
}
