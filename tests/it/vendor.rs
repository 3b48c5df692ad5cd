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
