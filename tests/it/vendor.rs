//! `kind = "vendor_status"` against real loopback servers playing the vendors' feeds in their
//! recorded shapes (operational, degraded, major outage, garbage), and corroboration through
//! the real daemon: a vendor's declared outage shortens our own confirmation, never fails a
//! service over alone, and reaches on-call as one note quoting the vendor.

use crate::support::check::{self, class, message, vendor_status};
use crate::support::feeds::{Feeds, Reply};
use switchboard::config::{Impact, VendorFormat};
use switchboard::probe::vendor_status::VendorReport;
use switchboard::probe::{ErrorClass, Outcome};

/// The feed path each format is read at, as the vendors publish it.
fn path(format: VendorFormat) -> &'static str {
    match format {
        VendorFormat::Statuspage => "/api/v2/summary.json",
        VendorFormat::Statusio => "/1.0/status/5b36dc6502d06804c08349f7",
        VendorFormat::Zendesk => "/api/incidents/active",
        VendorFormat::Slack => "/api/v2.0.0/current",
        VendorFormat::GitlabJobs => "/api/v4/projects/278964/jobs",
    }
}

/// Serves `fixture` as `format`'s feed and probes it once with `edit` applied to the check.
async fn probe_with(
    format: VendorFormat,
    fixture: &str,
    edit: impl FnOnce(&mut switchboard::config::VendorStatusCheck),
) -> Outcome {
    let feeds = Feeds::start();
    feeds.set_fixture(path(format), fixture);
    let url = feeds.url(path(format))
        + if format == VendorFormat::Zendesk {
            "?subdomain=acme"
        } else {
            ""
        };
    let spec = vendor_status(format, &url).with_vendor(edit).spec();
    check::run(&spec).await
}

async fn probe(format: VendorFormat, fixture: &str) -> Outcome {
    probe_with(format, fixture, |_| {}).await
}

fn report(o: &Outcome) -> &VendorReport {
    o.vendor
        .as_deref()
        .expect("a vendor check's outcome carries its report")
}

const FORMATS: [(VendorFormat, &str); 4] = [
    (VendorFormat::Statuspage, "statuspage"),
    (VendorFormat::Statusio, "statusio"),
    (VendorFormat::Zendesk, "zendesk"),
    (VendorFormat::Slack, "slack"),
];

#[tokio::test]
async fn an_operational_feed_of_every_format_is_a_success_with_nothing_declared() {
    for (format, name) in FORMATS {
        let o = probe(format, &format!("{name}-operational.json")).await;
        assert!(o.success, "{name}: {:?}", o.error);
        let r = report(&o);
        assert_eq!(r.impact, Some(Impact::None), "{name}");
        assert!(!r.declared && r.incidents.is_empty(), "{name}: {r:?}");
    }
}

#[tokio::test]
async fn a_degraded_feed_is_read_as_minor_and_stays_below_the_default_threshold() {
    for (format, name) in FORMATS {
        let o = probe(format, &format!("{name}-degraded.json")).await;
        let r = report(&o);
        assert_eq!(r.impact, Some(Impact::Minor), "{name}: {r:?}");
        assert!(o.success, "{name}: minor is below impact = \"major\"");
        // The vendor's words are kept even when they do not fail the check.
        let title = &r.incidents.first().expect("the incident").title;
        assert!(!title.is_empty(), "{name}");
        assert!(
            o.summary().contains(title.as_str()),
            "{name}: {}",
            o.summary()
        );
    }
    // With impact = "minor" the same feed fails the check.
    let o = probe_with(VendorFormat::Statuspage, "statuspage-degraded.json", |v| {
        v.impact = Impact::Minor
    })
    .await;
    assert!(!o.success && report(&o).declared);
}

#[tokio::test]
async fn a_major_outage_fails_the_check_with_the_vendors_title_link_and_source() {
    let expected = [
        (
            "Ticket form unavailable for all customers",
            "https://stspg.io/abc123xyz",
        ),
        (
            "GitLab.com is down",
            "https://status.io/pages/incident/5b36dc6502d06804c08349f7/65f2c1a9e4b0d85f1c2a7b31",
        ),
        ("Ticket submission failing on pod 23", "/incidents/51240"),
        (
            "Slack is unavailable for all users",
            "https://slack-status.com/2026-03/1240",
        ),
    ];
    for ((format, name), (title, link)) in FORMATS.into_iter().zip(expected) {
        let o = probe(format, &format!("{name}-major.json")).await;
        assert!(!o.success, "{name}");
        assert_eq!(class(&o), Some(ErrorClass::Conditions), "{name}");
        let r = report(&o);
        assert_eq!(r.impact, Some(Impact::Critical), "{name}");
        assert!(r.declared);
        let quote = r.quote().expect("a quote");
        assert!(quote.contains(title), "{name}: {quote}");
        assert!(quote.contains(link), "{name}: {quote}");
        assert!(
            quote.contains(&r.source),
            "{name}: the source is named: {quote}"
        );
        assert!(message(&o).contains(title), "{name}: {}", message(&o));
    }
}

#[tokio::test]
async fn garbage_and_wrong_shapes_are_failed_outcomes_without_a_verdict() {
    for (format, name) in FORMATS {
        let o = probe(format, "garbage.json").await;
        assert_eq!(class(&o), Some(ErrorClass::Protocol), "{name}");
        assert!(message(&o).contains("not JSON"), "{name}: {}", message(&o));
        assert_eq!(report(&o).impact, None, "{name}: garbage is no declaration");
        assert!(!report(&o).declared);

        let o = probe(format, "wrong-shape.json").await;
        assert_eq!(class(&o), Some(ErrorClass::Protocol), "{name}");
        assert!(
            message(&o).contains(&format!("not a {name} feed")),
            "{name}: {}",
            message(&o)
        );
        assert_eq!(report(&o).impact, None);
    }
    // Deep nesting is refused by the parser's recursion limit, not by the stack.
    let deep = "[".repeat(100_000);
    let feeds = Feeds::start();
    feeds.set("/api/v2/summary.json", 200, deep);
    let spec = vendor_status(VendorFormat::Statuspage, &feeds.url("/api/v2/summary.json")).spec();
    let o = check::run(&spec).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{:?}", o.error);
}

#[tokio::test]
async fn a_feed_longer_than_the_cap_is_not_judged_on_a_part() {
    let o = probe_with(VendorFormat::Statuspage, "statuspage-major.json", |v| {
        v.max_body_bytes = 512
    })
    .await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol));
    assert!(
        message(&o).contains("longer than max_body_bytes (512 bytes)"),
        "{}",
        message(&o)
    );
    assert!(o.content_length <= 512);
    assert_eq!(report(&o).impact, None);
}

#[tokio::test]
async fn components_are_selected_by_name_or_id_and_a_missing_one_is_named() {
    let by_name = probe_with(VendorFormat::Statuspage, "statuspage-major.json", |v| {
        v.components = vec!["scheduling page".into()]
    })
    .await;
    assert!(by_name.success, "{:?}", by_name.error);
    assert_eq!(report(&by_name).impact, Some(Impact::None));
    assert!(
        report(&by_name).incidents.is_empty(),
        "the incident names another component"
    );

    let by_id = probe_with(VendorFormat::Statuspage, "statuspage-major.json", |v| {
        v.components = vec!["t1c8f3k0n6de".into()]
    })
    .await;
    assert_eq!(report(&by_id).impact, Some(Impact::Critical));
    assert_eq!(report(&by_id).components[0].status, "major_outage");

    let missing = probe_with(VendorFormat::Statuspage, "statuspage-major.json", |v| {
        v.components = vec!["Live chat".into()]
    })
    .await;
    assert_eq!(class(&missing), Some(ErrorClass::Protocol));
    assert!(
        message(&missing).contains("component \"Live chat\" is not on the page"),
        "{}",
        message(&missing)
    );

    // status.io: a container inside a component, by id.
    let container = probe_with(VendorFormat::Statusio, "statusio-major.json", |v| {
        v.components = vec!["CI/CD - Hosted runners on Linux".into()]
    })
    .await;
    assert_eq!(
        report(&container).impact,
        Some(Impact::None),
        "{:?}",
        container.error
    );

    // Zendesk: the incident touches Support and Help Center, not Chat; the degraded one only
    // Help Center.
    let zd = probe_with(VendorFormat::Zendesk, "zendesk-major.json", |v| {
        v.components = vec!["Help Center".into()]
    })
    .await;
    assert_eq!(report(&zd).impact, Some(Impact::Critical));
    let zd = probe_with(VendorFormat::Zendesk, "zendesk-degraded.json", |v| {
        v.components = vec!["Support".into()]
    })
    .await;
    assert_eq!(report(&zd).impact, Some(Impact::None));

    // Slack: services of the incident.
    let sl = probe_with(VendorFormat::Slack, "slack-major.json", |v| {
        v.components = vec!["Huddles".into()]
    })
    .await;
    assert_eq!(report(&sl).impact, Some(Impact::None));
    let sl = probe_with(VendorFormat::Slack, "slack-major.json", |v| {
        v.components = vec!["messaging".into()]
    })
    .await;
    assert_eq!(report(&sl).impact, Some(Impact::Critical));
}

#[tokio::test]
async fn too_many_requests_is_a_throttled_outcome_with_the_vendors_retry_after() {
    let feeds = Feeds::start();
    feeds.set_reply(
        "/api/incidents/active",
        Reply {
            status: 429,
            headers: vec![("Retry-After".into(), "120".into())],
            body: b"{\"error\":\"TooManyRequests\"}".to_vec(),
        },
    );
    let spec = vendor_status(VendorFormat::Zendesk, &feeds.url("/api/incidents/active")).spec();
    let o = check::run(&spec).await;
    assert!(!o.success);
    let r = report(&o);
    assert!(r.throttled);
    assert_eq!(r.retry_after, Some(std::time::Duration::from_secs(120)));
    assert_eq!(r.impact, None, "a refusal is no declaration");
    assert!(message(&o).contains("429"), "{}", message(&o));

    feeds.set("/api/incidents/active", 503, "upstream down");
    let o = check::run(&spec).await;
    assert!(report(&o).throttled && report(&o).retry_after.is_none());
    assert_eq!(
        feeds.hits("/api/incidents/active"),
        2,
        "one request per probe"
    );
}

#[tokio::test]
async fn gitlab_ci_health_fails_on_pending_jobs_or_a_long_running_job() {
    let ok = probe_with(VendorFormat::GitlabJobs, "gitlab-jobs-ok.json", |v| {
        v.max_pending = Some(50);
        v.max_running = Some(std::time::Duration::from_secs(25 * 60));
    })
    .await;
    assert!(ok.success, "{:?}", ok.error);
    assert_eq!(report(&ok).indicator, "1 pending, 1 running");

    let jammed = probe_with(VendorFormat::GitlabJobs, "gitlab-jobs-jammed.json", |v| {
        v.max_pending = Some(50);
        v.max_running = Some(std::time::Duration::from_secs(25 * 60));
    })
    .await;
    assert!(!jammed.success);
    let titles: Vec<&str> = report(&jammed)
        .incidents
        .iter()
        .map(|i| i.title.as_str())
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.contains("60 jobs pending (max_pending 50)")),
        "{titles:?}"
    );
    assert!(
        titles
            .iter()
            .any(|t| t.contains("job 300 \"e2e\" running for 31m")),
        "{titles:?}"
    );
    // Only the pending threshold set: the long job alone does not fail it.
    let pending_only = probe_with(VendorFormat::GitlabJobs, "gitlab-jobs-ok.json", |v| {
        v.max_pending = Some(1);
    })
    .await;
    assert!(
        !pending_only.success,
        "one pending job reaches max_pending = 1"
    );
}

#[test]
fn switchboard_probe_shows_the_verdict_and_the_vendors_words() {
    let feeds = Feeds::start();
    feeds.set_fixture("/api/v2/summary.json", "statuspage-major.json");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir");
    std::fs::write(dir.path().join("switchboard.toml"), "probes = \"probes\"\n").expect("write");
    std::fs::write(
        dir.path().join("probes/calendly.toml"),
        format!(
            "[service]\nid = \"booking\"\n\n[[check]]\nname = \"page\"\nurl = \"{}\"\n\n[[check]]\nname = \"calendly-status\"\nkind = \"vendor_status\"\nformat = \"statuspage\"\nurl = \"{}\"\ncomponents = [\"Ticket form\"]\n",
            feeds.url("/page"),
            feeds.url("/api/v2/summary.json")
        ),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["probe", "--config"])
        .arg(dir.path().join("switchboard.toml"))
        .arg("calendly-status")
        .output()
        .expect("run switchboard probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a declared outage fails: {text}"
    );
    assert!(
        text.contains("vendor  statuspage: major outage (declared)"),
        "{text}"
    );
    assert!(
        text.contains("component Ticket form: major_outage"),
        "{text}"
    );
    assert!(
        text.contains("incident \"Ticket form unavailable for all customers\" <https://stspg.io/abc123xyz> (critical)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("source  {}", feeds.url("/api/v2/summary.json"))),
        "{text}"
    );

    let json = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["probe", "--json", "--config"])
        .arg(dir.path().join("switchboard.toml"))
        .arg("calendly-status")
        .output()
        .expect("run switchboard probe --json");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["vendor"]["impact"], "critical");
    assert_eq!(v["vendor"]["declared"], true);
    assert_eq!(
        v["vendor"]["incidents"][0]["url"],
        "https://stspg.io/abc123xyz"
    );
}

mod daemon {
    //! Corroboration through the real daemon, with a real SMTP server (aiosmtpd).

    use crate::support::daemon::{get, stored_transitions, write_main_config, Daemon};
    use crate::support::feeds::{fixture, Feeds, Reply};
    use crate::support::smtp::{parse_mail, require_aiosmtpd, ParsedMail, SmtpServer};
    use std::time::{Duration, Instant};

    fn mails(server: &SmtpServer) -> Vec<ParsedMail> {
        server.messages().iter().map(|p| parse_mail(p)).collect()
    }

    fn text(m: &ParsedMail) -> String {
        m.part("text/plain").unwrap_or_default().to_owned()
    }

    /// One daemon run: Zendesk declares a major outage while our ticket form passes (one note
    /// to on-call, nothing to customers, no switch); then the form breaks and is confirmed
    /// after two failures instead of its configured five, the failover quoting the vendor to
    /// on-call and (public_vendor_words) to customers; a second vendor feed that answers 429
    /// with Retry-After is not asked again before it said.
    #[test]
    fn a_vendor_outage_notes_on_call_never_switches_alone_and_shortens_confirmation() {
        require_aiosmtpd();
        let dir = tempfile::tempdir().expect("tempdir");
        let server = SmtpServer::start(&dir.path().join("maildir"));
        let feeds = Feeds::start();
        let form_ok = |feeds: &Feeds| {
            feeds.set_reply(
                "/form",
                Reply {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/html".into())],
                    body: b"<form><input name=request_subject></form>".to_vec(),
                },
            )
        };
        form_ok(&feeds);
        feeds.set("/backup", 200, "backup form");
        feeds.set(
            "/api/incidents/active",
            200,
            fixture("zendesk-operational.json"),
        );
        feeds.set_reply(
            "/throttled/api/incidents/active",
            Reply {
                status: 429,
                headers: vec![("Retry-After".into(), "60".into())],
                body: b"{}".to_vec(),
            },
        );
        let (config, port) = write_main_config(
            dir.path(),
            "var/switchboard.db",
            &format!(
                "group_window = \"0s\"\ncustomer_delay = \"0s\"\ntransport = \"smtp\"\nsmtp_url = \"{}\"",
                server.url()
            ),
        );
        std::fs::write(
            dir.path().join("probes/zendesk.toml"),
            format!(
                r#"[service]
id = "ticket-submission"
name = "Ticket submission"
corroborate = ["zendesk-status", "zendesk-throttled"]
public_vendor_words = true

[[check]]
name = "ticket-form"
url = "{form}"
conditions = ["[STATUS] == 200", "[BODY] == pat(*request_subject*)"]
failure_threshold = 5
confirmation = "fixed"
retry_interval = "300ms"

[[check]]
name = "backup-form"
role = "backup"
url = "{backup}"

[[check]]
name = "zendesk-status"
kind = "vendor_status"
format = "zendesk"
url = "{zendesk}?subdomain=acme"
interval = "12s"

[[check]]
name = "zendesk-throttled"
kind = "vendor_status"
format = "zendesk"
url = "{throttled}?subdomain=acme"
interval = "12s"

[[route]]
id = "submit-ticket"
primary = "{form}"
backup = "{backup}"
"#,
                form = feeds.url("/form"),
                backup = feeds.url("/backup"),
                zendesk = feeds.url("/api/incidents/active"),
                throttled = feeds.url("/throttled/api/incidents/active"),
            ),
        )
        .expect("write service");
        let log = dir.path().join("daemon.log");
        let d = Daemon::start_with(&config, port, &[], Some(&log));
        let wait_until = |what: &str, limit: Duration, cond: &mut dyn FnMut() -> bool| {
            let end = Instant::now() + limit;
            while Instant::now() < end {
                if cond() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("timed out waiting for: {what}\n--- daemon log ---\n{text}");
        };
        let db = dir.path().join("var/switchboard.db");

        // The vendor is heard while operational: nothing happens.
        wait_until("the vendor polled", Duration::from_secs(20), &mut || {
            feeds.hits("/api/incidents/active") >= 1
        });
        std::thread::sleep(Duration::from_secs(1));
        assert!(mails(&server).is_empty(), "nothing declared, nothing said");
        assert_eq!(
            crate::support::daemon::metric(
                &d,
                r#"switchboard_check_failure_threshold{check="ticket-form",service="ticket-submission"} "#,
            ),
            Some(5.0),
            "the configured threshold while no vendor declares"
        );

        // Zendesk declares a major outage while our form passes.
        feeds.set("/api/incidents/active", 200, fixture("zendesk-major.json"));
        wait_until("on-call's note", Duration::from_secs(30), &mut || {
            !mails(&server).is_empty()
        });
        let first_throttled = Instant::now();
        std::thread::sleep(Duration::from_secs(13)); // one more vendor poll: still one note
        let notes = mails(&server);
        assert_eq!(notes.len(), 1, "one note per declaration");
        let note = &notes[0];
        assert_eq!(note.header("To"), Some("support-oncall@example.com"));
        assert!(
            note.header("Subject")
                .unwrap_or("")
                .contains("a vendor declares an outage"),
            "{:?}",
            note.header("Subject")
        );
        let body = text(note);
        assert!(
            body.contains("Ticket submission failing on pod 23"),
            "{body}"
        );
        assert!(
            body.contains(&format!("source {}", feeds.url("/api/incidents/active"))),
            "{body}"
        );
        assert!(
            d.location("submit-ticket").ends_with("/form"),
            "a vendor alone never switches"
        );
        assert!(stored_transitions(&db).is_empty(), "no transition");
        // The threshold in force is exported: 5 without the vendor, 2 while it declares.
        let threshold = |d: &Daemon| {
            crate::support::daemon::metric(
                d,
                r#"switchboard_check_failure_threshold{check="ticket-form",service="ticket-submission"} "#,
            )
        };
        wait_until(
            "the corroborated threshold exported",
            Duration::from_secs(5),
            &mut || threshold(&d) == Some(2.0),
        );

        // Our form breaks: two failures confirm it, not five.
        let before = feeds.hits("/form");
        feeds.set("/form", 503, "down");
        wait_until("failed over", Duration::from_secs(15), &mut || {
            d.location("submit-ticket").ends_with("/backup")
        });
        let failures = feeds.hits("/form") - before;
        assert!(
            failures <= 3,
            "confirmed after {failures} failed probes; failure_threshold 5 without the vendor"
        );
        wait_until("failover e-mails", Duration::from_secs(15), &mut || {
            mails(&server).len() >= 3
        });
        let all = mails(&server);
        let oncall = all
            .iter()
            .find(|m| {
                m.header("To") == Some("support-oncall@example.com")
                    && m.header("Subject").unwrap_or("").contains("backup")
            })
            .expect("on-call's failover e-mail");
        let body = text(oncall);
        assert!(
            body.contains("zendesk-status (vendor) says: zendesk status: major outage: \"Ticket submission failing on pod 23\""),
            "{body}"
        );
        let customers = all
            .iter()
            .find(|m| m.header("To") == Some("support-announce@example.com"))
            .expect("customers' failover e-mail");
        let body = text(customers);
        assert!(
            body.contains(
                "Our provider's status page reports: \"Ticket submission failing on pod 23\""
            ),
            "public_vendor_words: {body}"
        );
        assert!(
            !body.contains("zendesk-status"),
            "no internals for customers: {body}"
        );

        // The throttled feed was asked once and not again within its Retry-After.
        assert!(first_throttled.elapsed() >= Duration::from_secs(13));
        assert_eq!(feeds.hits("/throttled/api/incidents/active"), 1);
        let status = get(&d.url("/api/v1/routes")).expect("routes");
        assert_eq!(status.status, 200);
    }
}

mod properties {
    //! The corroboration rules of the pure core, as properties: `health::corroborated` only
    //! ever shortens the wait for failures, and a vendor check can never move a service.

    use proptest::prelude::*;
    use switchboard::clock::Timestamp;
    use switchboard::config::Config;
    use switchboard::failover::{self, Action, Event, Policy, State};
    use switchboard::health::{
        corroborated, CheckHealth, Health, Thresholds, CORROBORATED_FAILURES,
    };

    fn thresholds() -> impl Strategy<Value = Thresholds> {
        (1u32..8, 1u32..4, any::<bool>()).prop_map(|(failure, success, adaptive)| Thresholds {
            failure,
            success,
            adaptive,
        })
    }

    /// A service with a primary, a backup and a vendor check, loaded as the daemon loads it.
    fn policy() -> Policy {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir");
        std::fs::write(dir.path().join("switchboard.toml"), "probes = \"probes\"\n")
            .expect("write");
        std::fs::write(
            dir.path().join("probes/s.toml"),
            "[service]\nid = \"s\"\ncorroborate = [\"vendor\"]\n[[check]]\nname = \"form\"\nurl = \"http://127.0.0.1:1/\"\n[[check]]\nname = \"backup\"\nrole = \"backup\"\nurl = \"http://127.0.0.1:2/\"\n[[check]]\nname = \"vendor\"\nkind = \"vendor_status\"\nformat = \"statuspage\"\nurl = \"http://127.0.0.1:3/api/v2/summary.json\"\n",
        )
        .expect("write");
        let config = Config::load(&dir.path().join("switchboard.toml")).expect("loads");
        Policy::from_spec(&config.services[0])
    }

    proptest! {
        #![proptest_config(crate::support::proptest_config(500))]

        /// Whatever the history and the thresholds, under corroboration a check is down once
        /// it has failed `min(failure_threshold, 2)` times in a row, and never while its last
        /// outcome was a success.
        #[test]
        fn corroboration_confirms_within_two_failures_and_never_on_a_success(
            t in thresholds(),
            history in proptest::collection::vec(any::<bool>(), 0..300),
            tail in proptest::collection::vec(any::<bool>(), 1..12),
        ) {
            let c = corroborated(t);
            prop_assert!(c.failure <= CORROBORATED_FAILURES && c.failure <= t.failure.max(1));
            prop_assert!(!c.adaptive);
            let mut h = CheckHealth::new(Timestamp(0));
            let mut at = 0;
            for ok in history {
                at += 1;
                h.observe(t, ok, Timestamp(at));
            }
            for ok in tail {
                at += 1;
                let before = h.health;
                h.observe(c, ok, Timestamp(at));
                if !ok && h.consecutive_failures >= t.failure.clamp(1, CORROBORATED_FAILURES) {
                    prop_assert_eq!(h.health, Health::Down);
                }
                if ok {
                    prop_assert!(h.health != Health::Down || before == Health::Down,
                        "a success never makes a check down");
                }
                // Never down sooner than without corroboration would be impossible: it is
                // never *later* either.
                prop_assert!(h.failure_threshold(c) <= h.failure_threshold(t));
            }
        }

        /// A vendor check's health, whatever it does, never records a transition or switches
        /// a service whose own checks pass: it is not among the policy's checks.
        #[test]
        fn a_vendor_check_alone_never_moves_a_service(
            verdicts in proptest::collection::vec(0u8..4, 1..40),
        ) {
            let p = policy();
            prop_assert_eq!(&p.primary, &vec!["form".to_string()]);
            prop_assert!(!p.backup.contains(&"vendor".to_string()));
            let mut svc = failover::Service::new("s", State::Operational, Timestamp(0));
            let mut now = 0;
            for (check, health) in [("form", Health::Healthy), ("backup", Health::Healthy)] {
                failover::step(&mut svc, &p, &Event::Health { check: check.into(), health, detail: String::new(), seen: Default::default() }, Timestamp(now));
            }
            for v in verdicts {
                now += 1000;
                let health = [Health::Healthy, Health::Suspect, Health::Down, Health::Unknown][v as usize];
                let actions = failover::step(&mut svc, &p, &Event::Health { check: "vendor".into(), health, detail: "declared".into(), seen: Default::default() }, Timestamp(now));
                prop_assert!(!actions.iter().any(|a| matches!(a, Action::Record { .. } | Action::SwitchRoutes { .. })), "{actions:?}");
                prop_assert_eq!(svc.state, State::Operational);
            }
        }
    }
}
