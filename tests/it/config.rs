//! Configuration loading: every invalid fixture under `testdata/config/invalid/` against its
//! exact expected diagnostics, and the shipped `switchboard.toml` + `probes/` loading cleanly.
//!
//! A fixture is a directory with a `switchboard.toml` (plus `probes/` when it needs service
//! files) and an `expected.txt` holding the diagnostics, one per line, with paths relative to
//! the fixture directory. To add a case, add a directory; nothing here changes.

use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard::config::{
    CheckKind, Config, Diagnostic, EmailTransport, Failback, FailoverWhen, Role,
};

fn repo() -> PathBuf {
    crate::support::repo("")
}

/// Loads `fixture/switchboard.toml` and compares the diagnostics, relative to `fixture`, with `expect`.
fn check(fixture: &Path, expect: &str) {
    let got = match Config::load(&fixture.join("switchboard.toml")) {
        Ok(config) => panic!(
            "{}: expected diagnostics, but it loaded: {}",
            fixture.display(),
            config.summary()
        ),
        Err(e) => e
            .diagnostics
            .into_iter()
            .map(|d| {
                Diagnostic {
                    file: d
                        .file
                        .strip_prefix(fixture)
                        .unwrap_or(&d.file)
                        .to_path_buf(),
                    ..d
                }
                .to_string()
                // Messages that point at another place ("first defined at ...") name it by
                // the same path the loader was given; make those relative too.
                .replace(&format!("{}/", fixture.display()), "")
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    assert_eq!(
        got,
        expect.trim_end(),
        "fixture {}\n--- got ---\n{got}\n",
        fixture.display()
    );
}

#[test]
fn invalid_fixtures_report_every_problem_with_file_and_line() {
    let root = repo().join("testdata/config/invalid");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("testdata/config/invalid exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 10,
        "only {} fixtures found",
        fixtures.len()
    );
    for fixture in fixtures {
        let expect = std::fs::read_to_string(fixture.join("expected.txt"))
            .unwrap_or_else(|e| panic!("{}/expected.txt: {e}", fixture.display()));
        check(&fixture, &expect);
    }
}

#[test]
fn shipped_config_loads() {
    let config = Config::load(&repo().join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = config.services.iter().map(|s| s.id.as_str()).collect();
    // Service files load in file-name order.
    assert_eq!(
        ids,
        [
            "gitlab-issue-intake",
            "scheduling",
            "slack-community",
            "support-email-intake",
            "support-portal",
            "ticket-submission"
        ]
    );
    for service in &config.services {
        assert!(service.primary_checks().count() >= 1, "{}", service.id);
        assert!(service.backup_checks().count() >= 1, "{}", service.id);
        assert!(!service.routes.is_empty(), "{}", service.id);
    }
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9898");
    assert_eq!(config.server.public_url, "http://127.0.0.1:9898");
    assert_eq!(
        config.email.transport,
        EmailTransport::File {
            dir: repo().join("var/mail")
        }
    );
    assert_eq!(config.storage.path, repo().join("var/switchboard.db"));
    assert_eq!(config.auth.tokens_file, Some(repo().join("tokens.toml")));
    assert_eq!(config.audiences.oncall, ["support-oncall@example.com"]);
    assert_eq!(config.status_page.title, "Example Support Status");

    let ticket = config.service("ticket-submission").expect("shipped");
    assert_eq!(ticket.failover_when, FailoverWhen::Any);
    assert_eq!(ticket.failback, Failback::Auto);
    assert_eq!(ticket.recovery_hold, Duration::from_secs(300));
    let form = config.check("portal-form").expect("shipped");
    assert_eq!(form.role, Role::Primary);
    assert_eq!(form.service, "ticket-submission");
    assert_eq!(form.interval, Duration::from_secs(30));
    assert_eq!(form.failure_threshold, 3);
    assert_eq!(form.conditions.len(), 4);
    assert_eq!(
        config.check("backup-form").expect("shipped").role,
        Role::Backup
    );
    let canary = config.check("ticket-form-canary").expect("shipped");
    let CheckKind::Steps(steps) = &canary.kind else {
        panic!("the canary is a multi-step check: {:?}", canary.kind)
    };
    let names: Vec<&str> = steps.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["load-form", "form-config", "submit-canary"]);
    assert_eq!(steps.steps[2].method, "POST");
    assert_eq!(
        config.service("support-portal").expect("shipped").failback,
        Failback::Manual
    );
    assert_eq!(
        config.summary(),
        format!(
            "{}: ok: 6 services, 24 checks, 6 routes",
            repo().join("switchboard.toml").display()
        )
    );
    assert_eq!(config.version.len(), 64);
}

#[test]
fn minimal_config_takes_defaults_and_checks_inherit_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("probes")).expect("mkdir");
    std::fs::write(
        dir.path().join("switchboard.toml"),
        "[defaults]\ninterval = \"20s\"\nsuccess_threshold = 4\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("probes/a.toml"),
        r#"[service]
id = "a"
failover_when = "2 of 2"

[[check]]
name = "one"
url = "http://127.0.0.1:1/"
timeout = "3s"

[[check]]
name = "two"
url = "http://127.0.0.1:2/"
follow_redirects = false
headers = { X-Probe = "switchboard" }
method = "post"
body = "hello"

[[check]]
name = "spare"
role = "backup"
url = "http://127.0.0.1:3/"
retry_interval = "1s"
max_body_bytes = 4096
insecure = true
conditions = ["[STATUS] == 200"]
"#,
    )
    .expect("write");
    let config =
        Config::load(&dir.path().join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9898");
    assert_eq!(config.probes_dir, dir.path().join("probes"));
    assert_eq!(config.storage.path, dir.path().join("var/switchboard.db"));
    assert_eq!(config.auth.tokens_file, None);
    assert_eq!(
        config.email.transport,
        EmailTransport::File {
            dir: dir.path().join("var/mail")
        }
    );

    let a = config.service("a").expect("loaded");
    assert_eq!(a.name, "a");
    assert_eq!(a.failover_when, FailoverWhen::AtLeast(2));
    assert_eq!(a.recovery_hold, Duration::from_secs(300));
    assert_eq!(a.source, dir.path().join("probes/a.toml"));

    let one = config.check("one").expect("loaded");
    assert_eq!(
        (one.interval, one.timeout, one.retry_interval),
        (
            Duration::from_secs(20),
            Duration::from_secs(3),
            Duration::from_secs(5)
        )
    );
    assert_eq!((one.failure_threshold, one.success_threshold), (3, 4));
    let CheckKind::Http(http) = &one.kind else {
        panic!("an HTTP check")
    };
    assert_eq!(
        (
            http.method.as_str(),
            http.max_redirects,
            http.max_body_bytes,
            http.insecure
        ),
        ("GET", 10, 1024 * 1024, false)
    );

    let CheckKind::Http(two) = &config.check("two").expect("loaded").kind else {
        panic!("an HTTP check")
    };
    assert_eq!(two.method, "POST");
    assert_eq!(two.max_redirects, 0, "follow_redirects = false");
    assert_eq!(
        two.headers,
        [("X-Probe".to_string(), "switchboard".to_string())]
    );
    assert_eq!(two.body.as_deref(), Some("hello"));

    let spare = config.check("spare").expect("loaded");
    let CheckKind::Http(http) = &spare.kind else {
        panic!("an HTTP check")
    };
    assert_eq!(
        (spare.retry_interval, http.max_body_bytes, http.insecure),
        (Duration::from_secs(1), 4096, true)
    );
}

#[test]
fn version_hashes_every_file_and_changes_with_any_of_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("probes")).expect("mkdir");
    let main = dir.path().join("switchboard.toml");
    std::fs::write(&main, "").expect("write");
    let service =
        |url: &str| format!("[service]\nid = \"s\"\n[[check]]\nname = \"c\"\nurl = \"{url}\"\n");
    std::fs::write(
        dir.path().join("probes/s.toml"),
        service("http://127.0.0.1/"),
    )
    .expect("write");
    let first = Config::load(&main).expect("valid").version;
    assert_eq!(first, Config::load(&main).expect("valid").version, "stable");
    std::fs::write(
        dir.path().join("probes/s.toml"),
        service("http://127.0.0.1/x"),
    )
    .expect("write");
    assert_ne!(first, Config::load(&main).expect("valid").version);
}

#[test]
fn route_targets_are_written_in_one_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir");
    std::fs::write(dir.path().join("switchboard.toml"), "probes = \"probes\"\n").expect("write");
    std::fs::write(
        dir.path().join("probes/intake.toml"),
        r#"[service]
id = "intake"
[[check]]
name = "form"
url = "https://support.example.com/contact"
[[route]]
id = "write-to-us"
primary = "https://support.example.com/contact"
backup = "help@example.net"
[[route]]
id = "call-us"
primary = "tel:+44 20 7946 0000"
backup = "text:Ask at the front desk"
"#,
    )
    .expect("write");
    let config = switchboard::config::Config::load(&dir.path().join("switchboard.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let routes = &config.services[0].routes;
    assert_eq!(routes[0].backup, "mailto:help@example.net");
    assert_eq!(routes[1].primary, "tel:+44 20 7946 0000");
    assert_eq!(routes[1].backup, "text:Ask at the front desk");
}

#[test]
fn every_check_kind_loads_from_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir");
    std::fs::write(dir.path().join("switchboard.toml"), "probes = \"probes\"\n").expect("write");
    std::fs::write(
        dir.path().join("probes/mail.toml"),
        r#"[service]
id = "mail"
[[check]]
name = "mx"
kind = "smtp"
target = "mx.example.com:25"
[[check]]
name = "port"
kind = "tcp"
target = "mx.example.com:587"
expect = "220"
[[check]]
name = "cert"
kind = "tls"
target = "mx.example.com:465"
[[check]]
name = "mx-record"
kind = "dns"
target = "127.0.0.1:53"
query_name = "example.com"
query_type = "MX"
[[check]]
name = "form-flow"
[[check.step]]
name = "load"
url = "https://support.example.com/new"
extract = { csrf = 'regex:name="csrf" value="([^"]+)"' }
[[check.step]]
name = "submit"
method = "post"
url = "https://support.example.com/submit"
body = "csrf=${csrf|url}"
conditions = ["[STATUS] == any(201, 302)"]
"#,
    )
    .expect("write");
    let config = switchboard::config::Config::load(&dir.path().join("switchboard.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    use switchboard::config::CheckKind;
    let kinds: Vec<&str> = config
        .checks()
        .map(|c| match &c.kind {
            CheckKind::Http(_) => "http",
            CheckKind::Steps(s) => {
                let names: Vec<&str> = s.steps.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, ["load", "submit"]);
                assert_eq!(s.steps[1].method, "POST");
                "steps"
            }
            CheckKind::Smtp(_) => "smtp",
            CheckKind::Tcp(t) if t.tls => "tls",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Dns(d) => {
                assert_eq!((d.qtype, d.name.as_str()), (15, "example.com"));
                "dns"
            }
            CheckKind::VendorStatus(_) => "vendor_status",
            CheckKind::Browser(_) => "browser",
            // Kinds this file does not configure.
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["smtp", "tcp", "tls", "dns", "steps"]);
}

#[test]
fn grouping_settings_have_defaults_zero_is_allowed_and_a_service_may_set_its_own_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |email_extra: &str| {
        std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir");
        std::fs::write(
            dir.path().join("switchboard.toml"),
            format!("probes = \"probes\"\n[email]\nfrom = \"Status <status@support.example.org>\"\ntransport = \"file\"\ndir = \"mail\"\n{email_extra}"),
        )
        .expect("write");
        for (id, extra) in [("a", "customer_delay = \"5m\"\n"), ("b", "")] {
            std::fs::write(
                dir.path().join(format!("probes/{id}.toml")),
                format!("[service]\nid = \"{id}\"\n{extra}\n[[check]]\nname = \"{id}-check\"\nurl = \"https://{id}.example.com/\"\n"),
            )
            .expect("write");
        }
        Config::load(&dir.path().join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"))
    };
    let config = write("");
    assert_eq!(config.email.group_window, Duration::from_secs(30));
    assert_eq!(config.email.customer_delay, Duration::from_secs(120));
    assert_eq!(config.email.message_id_domain(), "support.example.org");
    assert_eq!(
        config.service("a").expect("a").customer_delay,
        Some(Duration::from_secs(300))
    );
    assert_eq!(config.service("b").expect("b").customer_delay, None);

    let config = write(
        "group_window = \"0s\"\ncustomer_delay = \"0s\"\nmessage_id_domain = \"mail.example.net\"\n",
    );
    assert_eq!(config.email.group_window, Duration::ZERO);
    assert_eq!(config.email.customer_delay, Duration::ZERO);
    assert_eq!(config.email.message_id_domain(), "mail.example.net");
}

/// The spill settings: a 10 s grace and no `spill_dir` by default; `spill_dir` resolves against
/// the main file like `path`; a malformed grace is reported with file and line.
#[test]
fn spill_settings_have_defaults_and_resolve_against_the_main_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |storage_extra: &str| {
        std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir");
        std::fs::write(
            dir.path().join("switchboard.toml"),
            format!("probes = \"probes\"\n[storage]\npath = \"var/s.db\"\n{storage_extra}"),
        )
        .expect("write");
        Config::load(&dir.path().join("switchboard.toml"))
    };
    let config = write("").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.storage.shutdown_grace, Duration::from_secs(10));
    assert_eq!(config.storage.spill_dir, None);

    let config =
        write("shutdown_grace = \"0s\"\nspill_dir = \"spill\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.storage.shutdown_grace, Duration::ZERO);
    assert_eq!(config.storage.spill_dir, Some(dir.path().join("spill")));

    let err = write("shutdown_grace = \"soon\"\n").expect_err("not a duration");
    assert!(
        err.to_string().contains("switchboard.toml:4:"),
        "file:line: {err}"
    );
}

/// `[defaults] source_address` reaches every connection of every kind that opens one (a
/// mail round trip's servers included) unless the check names its own; `[vantage]` has its
/// defaults, and the host each check probes is what the guard groups by.
#[test]
fn source_address_is_inherited_and_overridden_and_vantage_has_defaults() {
    use switchboard::config::{CheckKind, MailConfirm, VantageConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("probes")).expect("mkdir");
    std::fs::write(
        dir.path().join("switchboard.toml"),
        "[defaults]\nsource_address = \"127.0.0.2\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("probes/a.toml"),
        r#"[service]
id = "a"

[[check]]
name = "web"
url = "http://Support.Example.COM:8080/form"

[[check]]
name = "own"
kind = "tcp"
target = "[::1]:25"
source_address = "::1"

[[check]]
name = "resolver"
kind = "dns"
target = "127.0.0.1:53"
query_name = "support.example.com"

[[check]]
name = "canary"
kind = "mail_roundtrip"
from = "canary@example.com"
to = "support@example.com"
smtp = { host = "127.0.0.1", port = 2525, tls = "none" }
[check.search]
url = "http://127.0.0.1:8025/search?query=${token}"
conditions = ["[BODY].count > 0"]
"#,
    )
    .expect("write");
    let config =
        Config::load(&dir.path().join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.vantage, VantageConfig::default());
    let from = |name: &str| -> Vec<Option<std::net::IpAddr>> {
        match &config.check(name).expect(name).kind {
            CheckKind::Http(h) => vec![h.net.source_address],
            CheckKind::Tcp(t) => vec![t.net.source_address],
            CheckKind::Dns(d) => vec![d.source_address],
            CheckKind::MailRoundtrip(m) => match &m.confirm {
                MailConfirm::Imap(i) => {
                    vec![m.smtp.net.source_address, i.server.net.source_address]
                }
                MailConfirm::Search(s) => vec![m.smtp.net.source_address, s.net.source_address],
            },
            other => panic!("{other:?}"),
        }
    };
    let two = Some("127.0.0.2".parse().expect("ip"));
    assert_eq!(from("web"), vec![two]);
    assert_eq!(from("own"), vec![Some("::1".parse().expect("ip"))]);
    assert_eq!(from("resolver"), vec![two]);
    assert_eq!(from("canary"), vec![two, two]);
    let host = |name: &str| config.check(name).expect(name).kind.host();
    assert_eq!(host("web").as_deref(), Some("support.example.com"));
    assert_eq!(host("own").as_deref(), Some("::1"));
    assert_eq!(host("resolver").as_deref(), Some("127.0.0.1"));
    assert_eq!(host("canary").as_deref(), Some("127.0.0.1"));
}
