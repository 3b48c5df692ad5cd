//! The shipped service packs (`probes/*.toml`: Zendesk ticket submission and Help Center,
//! Calendly booking, the GitLab.com support project, the mail intake, Slack) run against local
//! fakes serving recorded-shape responses. The shipped files are copied with every host
//! rewritten to a loopback server of its own (`https://host` becomes `http://127.0.0.1:PORT`,
//! so the certificate conditions, which need TLS, are dropped; certificates are tested in
//! `probe_net`), the MX to a real aiosmtpd without STARTTLS, the submission port to a banner;
//! nothing here contacts example.com or the real vendors.

use crate::support::feeds::{fixture, Feeds, Reply};
use crate::support::smtp::{require_aiosmtpd, SmtpServer};
use crate::support::{check, repo};
use std::collections::BTreeMap;
use std::io::Write;
use switchboard::config::{Config, Role};

/// What each host of the packs answers, path by path, in the shape the real one does.
fn recorded() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let text = |s: &str| s.as_bytes().to_vec();
    vec![
        (
            "support.example.com",
            "/hc/en-us/requests/new",
            text(
                r#"<html><form><input name="authenticity_token" value="tok123"><input name="request_subject"></form></html>"#,
            ),
        ),
        (
            "support.example.com",
            "/api/v2/health",
            text(r#"{"status":"UP"}"#),
        ),
        (
            "support.example.com",
            "/api/v2/ticket_forms/default.json",
            text(
                r#"{"ticket_form":{"id":360001,"name":"Default","active":true,"end_user_visible":true}}"#,
            ),
        ),
        (
            "support.example.com",
            "/sandbox/forms/360001/submit",
            Vec::new(),
        ),
        (
            "support.example.com",
            "/hc/en-us",
            text("<html><title>Example Help Center</title></html>"),
        ),
        (
            "support.example.com",
            "/api/v2/help_center/articles/search.json",
            text(r#"{"results":[{"id":1,"title":"Reset your password"}],"count":1}"#),
        ),
        (
            "forms.example.net",
            "/support",
            text("<html><form action=/submit></form></html>"),
        ),
        (
            "status.zendesk.com",
            "/api/incidents/active",
            fixture("zendesk-operational.json"),
        ),
        (
            "mail-intake.example.com",
            "/healthz",
            text(r#"{"queue":{"status":"OK","backlog":3}}"#),
        ),
        (
            "webmail.example.net",
            "/login",
            text("<html>Sign in</html>"),
        ),
        (
            "help-mirror.example.net",
            "/en-us/",
            text("<html>Example Help Center (mirror)</html>"),
        ),
        (
            "calendly.com",
            "/example-support/support-call",
            text("<html><title>Support call - Example Support</title></html>"),
        ),
        (
            "booking.example.net",
            "/example-support/call",
            text("<html>Book</html>"),
        ),
        (
            "www.calendlystatus.com",
            "/api/v2/summary.json",
            fixture("statuspage-operational.json"),
        ),
        (
            "gitlab.com",
            "/example-group/support-project/-/issues/new",
            text("<html><title>New issue · Support project</title></html>"),
        ),
        (
            "gitlab.com",
            "/api/v4/projects/example-group%2Fsupport-project",
            text(
                r#"{"id":278964,"path_with_namespace":"example-group/support-project","issues_enabled":true,"archived":false,"visibility":"public"}"#,
            ),
        ),
        (
            "gitlab.com",
            "/api/v4/projects/278964/jobs",
            fixture("gitlab-jobs-ok.json"),
        ),
        (
            "status.gitlab.com",
            "/1.0/status/5b36dc6502d06804c08349f7",
            fixture("statusio-operational.json"),
        ),
        ("slack.com", "/api/api.test", text(r#"{"ok":true}"#)),
        (
            "example-community.slack.com",
            "/",
            text("<html>Sign in to Example Community</html>"),
        ),
        (
            "community.example.net",
            "/c/support",
            text("<html>Support forum</html>"),
        ),
        (
            "slack-status.com",
            "/api/v2.0.0/current",
            fixture("slack-operational.json"),
        ),
    ]
}

/// A banner-only SMTP submission port: answers `220 ... ESMTP` and closes.
fn banner_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"220 mx.example.test ESMTP ready\r\n");
        }
    });
    port
}

/// The shipped configuration, rewritten to the fakes, and the fakes by host.
struct Packs {
    _dir: tempfile::TempDir,
    config: Config,
    hosts: BTreeMap<String, Feeds>,
    _smtp: SmtpServer,
}

fn packs() -> Packs {
    require_aiosmtpd();
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start(&dir.path().join("maildir"));
    let smtp_port = smtp.url().rsplit(':').next().expect("port").to_string();
    let banner = banner_server();
    std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir");
    std::fs::copy(
        repo("switchboard.toml"),
        dir.path().join("switchboard.toml"),
    )
    .expect("copy");
    let host_re = regex::Regex::new(r"https://([a-z0-9.-]+)").expect("regex");
    let cert_re = regex::Regex::new(
        r#"(,\s*"\[CERTIFICATE_EXPIRATION\] > 168h")|(\s*"\[CERTIFICATE_EXPIRATION\] > 168h",)"#,
    )
    .expect("regex");
    let mut hosts: BTreeMap<String, Feeds> = BTreeMap::new();
    for entry in std::fs::read_dir(repo("probes")).expect("probes/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for c in host_re.captures_iter(&text) {
            hosts.entry(c[1].to_string()).or_insert_with(Feeds::start);
        }
        let text = host_re.replace_all(&text, |c: &regex::Captures<'_>| {
            format!("http://{}", hosts[&c[1]].addr)
        });
        let text = cert_re
            .replace_all(&text, "")
            .replace("mx.example.com:25", &format!("127.0.0.1:{smtp_port}"))
            .replace("mx.example.com:587", &format!("127.0.0.1:{banner}"))
            .replace("kind = \"smtp\"\n", "kind = \"smtp\"\nstarttls = false\n");
        std::fs::write(
            dir.path()
                .join("probes")
                .join(path.file_name().expect("name")),
            text,
        )
        .expect("write");
    }
    for (host, path, body) in recorded() {
        let feeds = hosts
            .get(host)
            .unwrap_or_else(|| panic!("{host} is in no shipped pack"));
        let status = if path.ends_with("/submit") { 201 } else { 200 };
        feeds.set_reply(
            path,
            Reply {
                status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body,
            },
        );
    }
    let config =
        Config::load(&dir.path().join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"));
    Packs {
        _dir: dir,
        config,
        hosts,
        _smtp: smtp,
    }
}

/// Every check of every pack, probed once: (name, outcome).
async fn probe_all(config: &Config) -> Vec<(String, switchboard::probe::Outcome)> {
    let mut out = Vec::new();
    for c in config.checks() {
        out.push((c.name.clone(), check::run(c).await));
    }
    out
}

#[tokio::test]
async fn every_shipped_pack_passes_against_its_recorded_shapes() {
    let p = packs();
    let outcomes = probe_all(&p.config).await;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !o.success)
        .map(|(n, o)| format!("{n}: {}", o.summary()))
        .collect();
    assert!(
        failed.is_empty(),
        "failing against the fakes:\n{}",
        failed.join("\n")
    );
    assert_eq!(outcomes.len(), 24, "every check of every pack ran");
    // Every pack has its runbook and a vendor it corroborates with, which is a vendor check.
    for s in &p.config.services {
        let rb = s.runbook.as_deref().expect("a runbook");
        assert!(repo(rb).is_file(), "{}: {rb}", s.id);
        assert!(
            !s.corroborate.is_empty(),
            "{} corroborates with a vendor",
            s.id
        );
        for v in &s.corroborate {
            assert_eq!(p.config.check(v).expect("named").role, Role::Vendor);
        }
    }
}

#[tokio::test]
async fn the_packs_vendor_checks_read_a_declared_outage_from_every_vendor() {
    let p = packs();
    let major = [
        (
            "status.zendesk.com",
            "/api/incidents/active",
            "zendesk-major.json",
            "zendesk-status",
        ),
        (
            "www.calendlystatus.com",
            "/api/v2/summary.json",
            "statuspage-major.json",
            "calendly-status",
        ),
        (
            "status.gitlab.com",
            "/1.0/status/5b36dc6502d06804c08349f7",
            "statusio-major.json",
            "gitlab-status",
        ),
        (
            "slack-status.com",
            "/api/v2.0.0/current",
            "slack-major.json",
            "slack-status",
        ),
        (
            "gitlab.com",
            "/api/v4/projects/278964/jobs",
            "gitlab-jobs-jammed.json",
            "gitlab-ci",
        ),
    ];
    for (host, path, fixture_name, _) in major {
        p.hosts[host].set_fixture(path, fixture_name);
    }
    for (_, _, _, name) in major {
        let spec = p.config.check(name).expect("shipped vendor check");
        let o = check::run(spec).await;
        let r = o.vendor.as_deref().expect("report");
        assert!(!o.success && r.declared, "{name}: {}", o.summary());
        assert!(
            !r.incidents.is_empty(),
            "{name}: the vendor's words are kept"
        );
    }
}
