//! Unit tests of the metrics: the series each event leaves in the rendered text.

use super::table::PHASES;
use super::Metrics;
use crate::clock::Timestamp;
use crate::config::{CheckKind, CheckSpec, HttpCheck, Role};
use crate::failover::{Cause, Side, State};
use crate::probe::{ConditionResult, ErrorClass, Outcome, Phases, ProbeError, TlsInfo};
use std::time::Duration;

fn spec() -> CheckSpec {
    CheckSpec {
        name: "portal-form".to_string(),
        service: "tickets".to_string(),
        role: Role::Primary,
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
        retry_interval: Duration::from_secs(5),
        failure_threshold: 3,
        success_threshold: 2,
        confirmation: Default::default(),
        conditions: Vec::new(),
        kind: CheckKind::Http(HttpCheck {
            url: "https://support.example.com/new".parse().unwrap(),
            method: "GET".to_string(),
            headers: Vec::new(),
            body: None,
            max_redirects: 10,
            max_body_bytes: 1 << 20,
            insecure: false,
            net: Default::default(),
        }),
    }
}

fn outcome(tls: bool) -> Outcome {
    Outcome {
        check: "portal-form".to_string(),
        success: true,
        conditions: Vec::new(),
        status: Some(200),
        duration: Duration::from_millis(250),
        phases: Phases {
            resolve: Duration::from_millis(10),
            connect: Duration::from_millis(20),
            tls: if tls {
                Duration::from_millis(30)
            } else {
                Duration::ZERO
            },
            processing: Duration::from_millis(40),
            transfer: Duration::from_millis(50),
        },
        error: None,
        started_at: Timestamp::from_millis(0),
        tls: tls.then(|| TlsInfo {
            version: "TLS 1.3".to_string(),
            earliest_cert_expiry: 1_900_000_000,
        }),
        http_version: Some(1.1),
        content_length: 1234,
        body_truncated: false,
        redirects: 1,
        failed_due_to_regex: false,
        dns: None,
        steps: Vec::new(),
        vendor: None,
    }
}

/// Sample lines (no comments) whose name and labels contain every fragment in `parts`.
fn lines<'a>(text: &'a str, parts: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

const LABELS: &str =
    r#"{check="portal-form",instance="https://support.example.com/new",service="tickets"}"#;

#[test]
fn probe_finished_exports_blackbox_gauges_with_all_phases() {
    let m = Metrics::new();
    m.probe_finished("tickets", &spec(), &outcome(true));
    let text = m.render();
    for (name, value) in [
        ("probe_success", "1"),
        ("probe_duration_seconds", "0.25"),
        ("probe_dns_lookup_time_seconds", "0.01"),
        ("probe_http_status_code", "200"),
        ("probe_http_ssl", "1"),
        ("probe_http_version", "1.1"),
        ("probe_http_content_length", "1234"),
        ("probe_http_redirects", "1"),
        ("probe_ssl_earliest_cert_expiry", "1900000000"),
        ("probe_failed_due_to_regex", "0"),
    ] {
        let line = format!("{name}{LABELS} {value}");
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    for (phase, value) in PHASES.iter().zip(["0.01", "0.02", "0.03", "0.04", "0.05"]) {
        let found = lines(
            &text,
            &[
                "probe_http_duration_seconds{",
                &format!("phase=\"{phase}\""),
            ],
        );
        assert_eq!(found.len(), 1, "{phase}: {found:?}");
        assert!(found[0].ends_with(&format!(" {value}")), "{found:?}");
    }
    assert_eq!(
        lines(
            &text,
            &["probe_tls_version_info{", "version=\"TLS 1.3\"", "} 1"]
        )
        .len(),
        1
    );
    assert_eq!(
        lines(
            &text,
            &["switchboard_probes_total{", "result=\"success\"", "} 1"]
        )
        .len(),
        1
    );
}

#[test]
fn plain_http_probe_has_all_phases_but_no_tls_series() {
    let m = Metrics::new();
    m.probe_finished("tickets", &spec(), &outcome(true));
    m.probe_finished("tickets", &spec(), &outcome(false));
    let text = m.render();
    assert_eq!(lines(&text, &["probe_http_duration_seconds{"]).len(), 5);
    assert!(
        lines(
            &text,
            &["probe_http_duration_seconds{", "phase=\"tls\"", "} 0"]
        )
        .len()
            == 1
    );
    assert!(
        lines(&text, &["probe_ssl_earliest_cert_expiry"]).is_empty(),
        "{text}"
    );
    assert!(
        lines(&text, &["probe_tls_version_info"]).is_empty(),
        "{text}"
    );
    assert_eq!(lines(&text, &["probe_http_ssl{", "} 0"]).len(), 1);
}

#[test]
fn failed_body_condition_sets_failed_due_to_regex() {
    let m = Metrics::new();
    let mut o = outcome(false);
    o.success = false;
    o.conditions = vec![ConditionResult {
        condition: "[BODY] == pat(*request_subject*)".to_string(),
        success: false,
        resolved: "[BODY] (...) == pat(*request_subject*)".to_string(),
    }];
    o.error = Some(ProbeError {
        class: ErrorClass::Conditions,
        message: "condition failed".to_string(),
    });
    m.probe_finished("tickets", &spec(), &o);
    let text = m.render();
    assert_eq!(
        lines(&text, &["probe_failed_due_to_regex{", "} 1"]).len(),
        1,
        "{text}"
    );
    assert_eq!(lines(&text, &["probe_success{", "} 0"]).len(), 1);
    assert_eq!(
        lines(
            &text,
            &["switchboard_probes_total{", "result=\"failure\"", "} 1"]
        )
        .len(),
        1
    );
}

#[test]
fn exactly_one_service_state_is_current() {
    let m = Metrics::new();
    m.service_state("tickets", State::Operational);
    m.service_state("tickets", State::FailedOver);
    let text = m.render();
    let all = lines(
        &text,
        &["switchboard_service_state{", "service=\"tickets\""],
    );
    assert_eq!(all.len(), State::ALL.len());
    let current = lines(&text, &["switchboard_service_state{", "} 1"]);
    assert_eq!(
        current,
        [r#"switchboard_service_state{service="tickets",state="failed_over"} 1"#]
    );
}

#[test]
fn check_health_has_one_series_per_value() {
    let m = Metrics::new();
    m.check_configured("tickets", &spec());
    m.check_health("tickets", "portal-form", "suspect");
    let text = m.render();
    assert_eq!(lines(&text, &["switchboard_check_health{"]).len(), 4);
    assert_eq!(
        lines(&text, &["switchboard_check_health{", "} 1"]),
        [r#"switchboard_check_health{check="portal-form",health="suspect",service="tickets"} 1"#]
    );
}

#[test]
fn route_switch_keeps_two_series_with_one_active() {
    let m = Metrics::new();
    m.route_active("tickets", "submit", Side::Primary, "https://a.example.com/");
    m.route_active("tickets", "submit", Side::Backup, "https://b.example.net/");
    let text = m.render();
    assert_eq!(
        lines(&text, &["switchboard_route_active_target{"]),
        [
            r#"switchboard_route_active_target{route="submit",service="tickets",side="backup",target="https://b.example.net/"} 1"#,
            r#"switchboard_route_active_target{route="submit",service="tickets",side="primary",target="https://a.example.com/"} 0"#,
        ]
    );
    // A reload that changes the backup target replaces its series instead of adding a third.
    m.route_targets(
        "tickets",
        "submit",
        "https://a.example.com/",
        "https://c.example.net/",
        Side::Primary,
    );
    let text = m.render();
    assert_eq!(
        lines(&text, &["switchboard_route_active_target{"]).len(),
        2,
        "{text}"
    );
    assert_eq!(
        lines(
            &text,
            &[
                "switchboard_route_active_target{",
                "side=\"primary\"",
                "} 1"
            ]
        )
        .len(),
        1
    );
}

#[test]
fn counters_histograms_and_info() {
    let m = Metrics::new();
    m.transition(
        "tickets",
        State::Operational,
        State::FailedOver,
        Cause::PrimaryDown,
    );
    m.detection_seconds("tickets", 3.2);
    m.announcement("email", "oncall", "failover", "success", 1_700_000_000.0);
    m.announcement("chat", "oncall", "failover", "given_up", 0.0);
    m.outbox(2, 4.5);
    m.schedule_lag(0.003);
    m.config_reload(true);
    m.config_reload(false);
    m.drill("ticket-submission", "pass", 1.0);
    let text = m.render();
    for line in [
        r#"switchboard_transitions_total{cause="primary_down",from="operational",service="tickets",to="failed_over"} 1"#,
        r#"switchboard_detection_seconds_count{service="tickets"} 1"#,
        r#"switchboard_detection_seconds_bucket{service="tickets",le="5"} 1"#,
        r#"switchboard_announcements_total{audience="oncall",channel="email",kind="failover",result="success"} 1"#,
        r#"switchboard_announcement_last_success_timestamp_seconds{channel="email"} 1700000000"#,
        r#"switchboard_outbox_given_up_total{channel="chat"} 1"#,
        "switchboard_outbox_backlog 2",
        "switchboard_outbox_oldest_age_seconds 4.5",
        "switchboard_probe_schedule_lag_seconds_count 1",
        r#"switchboard_config_reloads_total{result="success"} 1"#,
        r#"switchboard_config_reloads_total{result="failure"} 1"#,
        "switchboard_config_last_reload_successful 0",
        r#"switchboard_drills_total{result="pass",service="ticket-submission"} 1"#,
        &format!(
            r#"switchboard_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("# TYPE switchboard_transitions_total counter"));
    assert!(text.contains("# TYPE switchboard_detection_seconds histogram"));
}

#[test]
fn restored_facts_read_as_the_live_events_left_them() {
    use crate::store::{DeliveryCount, FinishedDrill, MetricFacts, TransitionCount};
    let drill = |result: &str, at: i64| FinishedDrill {
        service: "tickets".into(),
        result: result.into(),
        ended_at: crate::clock::Timestamp(at),
    };
    let facts = MetricFacts {
        // A fail, a pass, then an abort: the last drill is the abort, and the abort leaves
        // the last result (the pass), as it does live.
        drills: vec![
            drill("fail", 1_000),
            drill("pass", 5_000),
            drill("aborted", 9_000),
        ],
        transitions: vec![TransitionCount {
            service: "gone".into(),
            from: "operational".into(),
            to: "failed_over".into(),
            cause: "primary_down".into(),
            count: 4,
        }],
        deliveries: vec![DeliveryCount {
            channel: "email".into(),
            audience: "oncall".into(),
            kind: String::new(),
            success: 2,
            failure: 3,
            given_up: 1,
        }],
        last_delivered: vec![("email".into(), crate::clock::Timestamp(7_500))],
        audit_records: vec![("transition".into(), 6)],
    };
    let m = Metrics::new();
    m.restore(&facts, &["tickets"]);
    let text = m.render();
    for line in [
        r#"switchboard_drills_total{result="fail",service="tickets"} 1"#,
        r#"switchboard_drills_total{result="pass",service="tickets"} 1"#,
        r#"switchboard_drills_total{result="aborted",service="tickets"} 1"#,
        r#"switchboard_drill_last_timestamp_seconds{service="tickets"} 9"#,
        r#"switchboard_drill_last_success{service="tickets"} 1"#,
        r#"switchboard_announcements_total{audience="oncall",channel="email",kind="unknown",result="success"} 2"#,
        r#"switchboard_announcements_total{audience="oncall",channel="email",kind="unknown",result="failure"} 3"#,
        r#"switchboard_announcements_total{audience="oncall",channel="email",kind="unknown",result="given_up"} 1"#,
        r#"switchboard_outbox_given_up_total{channel="email"} 1"#,
        r#"switchboard_announcement_last_success_timestamp_seconds{channel="email"} 7.5"#,
        r#"switchboard_audit_records_total{kind="transition"} 6"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !text.contains("service=\"gone\""),
        "a service no longer configured gets no series back"
    );
}

#[test]
fn removed_check_leaves_no_series() {
    let m = Metrics::new();
    m.probe_finished("tickets", &spec(), &outcome(true));
    m.check_health("tickets", "portal-form", "healthy");
    m.remove_check("tickets", &spec());
    let text = m.render();
    assert!(!text.contains("portal-form"), "{text}");
}
/// A check of another kind than http, with the same name as `spec()`.
fn spec_of(kind: CheckKind) -> CheckSpec {
    CheckSpec { kind, ..spec() }
}

#[test]
fn smtp_with_starttls_exports_common_and_tls_series_but_no_http_series() {
    let m = Metrics::new();
    let smtp = spec_of(CheckKind::Smtp(crate::config::SmtpCheck {
        host: "mx.example.com".to_string(),
        port: 25,
        starttls: true,
        tls: false,
        insecure: false,
        ehlo: "probe.example.com".to_string(),
        net: Default::default(),
    }));
    let mut o = outcome(true);
    o.status = Some(220);
    o.http_version = None;
    m.probe_finished("tickets", &smtp, &o);
    let text = m.render();
    let labels = r#"{check="portal-form",instance="smtp://mx.example.com:25",service="tickets"}"#;
    for (name, value) in [
        ("probe_success", "1"),
        ("probe_duration_seconds", "0.25"),
        ("probe_dns_lookup_time_seconds", "0.01"),
        ("probe_ssl_earliest_cert_expiry", "1900000000"),
    ] {
        let line = format!("{name}{labels} {value}");
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert_eq!(
        lines(
            &text,
            &["probe_tls_version_info{", "version=\"TLS 1.3\"", "} 1"]
        )
        .len(),
        1,
        "{text}"
    );
    assert!(lines(&text, &["probe_http_"]).is_empty(), "{text}");
    assert!(
        lines(&text, &["probe_failed_due_to_regex"]).is_empty(),
        "{text}"
    );
}

#[test]
fn a_configured_service_has_zeroed_detection_and_drill_series_until_forgotten() {
    let m = Metrics::new();
    m.detection_configured("tickets");
    m.drill_service_configured("tickets");
    let text = m.render();
    assert!(text.contains(r#"switchboard_detection_seconds_count{service="tickets"} 0"#));
    assert!(text.contains(r#"switchboard_drills_total{result="pass",service="tickets"} 0"#));
    m.forget_service("tickets");
    let text = m.render();
    assert!(!text.contains(r#"service="tickets""#), "{text}");
}

#[test]
fn dns_exports_no_http_and_no_tls_series() {
    let m = Metrics::new();
    let dns = spec_of(CheckKind::Dns(crate::config::DnsCheck {
        server: "127.0.0.1".parse().unwrap(),
        port: 53,
        name: "support.example.com".to_string(),
        qtype: 1,
        expect_rcode: "NOERROR".to_string(),
        expect_answers: Vec::new(),
        source_address: None,
    }));
    let mut o = outcome(false);
    o.status = None;
    o.http_version = None;
    o.success = false;
    m.probe_finished("tickets", &dns, &o);
    let text = m.render();
    assert_eq!(lines(&text, &["probe_success{", "} 0"]).len(), 1, "{text}");
    assert_eq!(
        lines(
            &text,
            &[
                "probe_dns_lookup_time_seconds{",
                "instance=\"dns://127.0.0.1:53/support.example.com\"",
                "} 0.01"
            ]
        )
        .len(),
        1,
        "{text}"
    );
    assert!(lines(&text, &["probe_http_"]).is_empty(), "{text}");
    assert!(lines(&text, &["probe_ssl_"]).is_empty(), "{text}");
    assert!(lines(&text, &["probe_tls_"]).is_empty(), "{text}");
}

/// The names of states, causes, error classes and health values are label values here, and
/// are stored and served by the API: their strum tables must give exactly these strings, and
/// agree with serde.
#[test]
fn label_names_of_states_causes_classes_and_health_are_unchanged() {
    use crate::health::Health;
    fn serde_name<T: serde::Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }
    let states = State::ALL.map(State::as_str);
    assert_eq!(
        states,
        [
            "operational",
            "degraded",
            "failed_over",
            "recovering",
            "outage",
            "maintenance",
            "drill"
        ]
    );
    for s in State::ALL {
        assert_eq!(State::parse(s.as_str()), Some(s));
        assert_eq!(serde_name(s), s.as_str());
    }
    assert_eq!(State::parse("failed-over"), None);
    assert_eq!(State::parse("FailedOver"), None);
    assert_eq!(State::FailedOver.to_string(), "failed_over");

    let causes = [
        (Cause::PrimaryDown, "primary_down"),
        (Cause::PrimaryRecovered, "primary_recovered"),
        (Cause::RecoveryHoldElapsed, "recovery_hold_elapsed"),
        (Cause::BackupDown, "backup_down"),
        (Cause::BackupRecovered, "backup_recovered"),
        (Cause::Operator, "operator"),
        (Cause::DrillDeadline, "drill_deadline"),
        (Cause::MaintenanceEnded, "maintenance_ended"),
        (Cause::MaintenanceScheduled, "maintenance_scheduled"),
    ];
    for (c, name) in causes {
        assert_eq!(c.as_str(), name);
        assert_eq!(serde_name(c), name);
    }

    let classes = [
        (ErrorClass::Dns, "dns"),
        (ErrorClass::Connect, "connect"),
        (ErrorClass::Tls, "tls"),
        (ErrorClass::Timeout, "timeout"),
        (ErrorClass::Protocol, "protocol"),
        (ErrorClass::TooManyRedirects, "too_many_redirects"),
        (ErrorClass::Conditions, "conditions"),
        (ErrorClass::Local, "local"),
    ];
    for (c, name) in classes {
        assert_eq!(c.as_str(), name);
        assert_eq!(serde_name(c), name);
    }

    let healths = [
        (Health::Unknown, "unknown"),
        (Health::Healthy, "healthy"),
        (Health::Suspect, "suspect"),
        (Health::Down, "down"),
    ];
    for (h, name) in healths {
        assert_eq!(h.as_str(), name);
        assert_eq!(serde_name(h), name);
    }
}
