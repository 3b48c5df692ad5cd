//! Every message kind for every audience against its snapshot, and the rules of what each
//! audience reads (escaping, evidence, holds, public messages, grouping).

use super::*;
use crate::clock::Timestamp;
use crate::failover::Cause;
use std::path::Path;

const PRIMARY: &str = "https://support.example.com/hc/en-us/requests/new";
const BACKUP: &str = "https://forms.example.net/support";

fn ctx(active: Side) -> MessageContext {
    MessageContext {
        service_name: "Ticket submission".into(),
        routes: vec![RouteView {
            id: "submit-ticket".into(),
            service: "ticket-submission".into(),
            primary: PRIMARY.into(),
            backup: BACKUP.into(),
            active,
        }],
        status_url: "http://127.0.0.1:9898/status".into(),
        go_base_url: "http://127.0.0.1:9898/go/".into(),
        runbook: Some("runbooks/ticket-submission.md".into()),
        api_url: "http://127.0.0.1:9898/api/v1".into(),
        holds: Vec::new(),
    }
}

fn failover() -> Transition {
    Transition {
        service: "ticket-submission".into(),
        from: State::Operational,
        to: State::FailedOver,
        cause: Cause::PrimaryDown,
        // 2026-11-28T03:00:07.250Z
        at: Timestamp(1_795_834_807_250),
        actor: "system".into(),
        reason: "failover_when = any: 1 of 1 primary checks down".into(),
        evidence: vec!["portal-form: down (connect: connection refused)".into()],
        public_message: None,
    }
}

fn failback() -> Transition {
    Transition {
        service: "ticket-submission".into(),
        from: State::Recovering,
        to: State::Operational,
        cause: Cause::RecoveryHoldElapsed,
        at: Timestamp(1_795_835_407_250),
        actor: "system".into(),
        reason: "primary healthy for recovery_hold (5m)".into(),
        evidence: vec!["portal-form: healthy (200 in 41 ms)".into()],
        public_message: None,
    }
}

fn with(from: State, to: State) -> Transition {
    Transition {
        from,
        to,
        ..failover()
    }
}

/// One transition per kind, as the daemon would record it, with the routes after it.
fn example(kind: Kind) -> (Transition, Side) {
    let (from, to, cause, actor, reason, evidence, side) = match kind {
        Kind::Failover => return (failover(), Side::Backup),
        Kind::Failback => return (failback(), Side::Primary),
        Kind::Outage => (
            State::FailedOver,
            State::Outage,
            Cause::BackupDown,
            "system",
            "backup checks down while the primary is down",
            vec!["backup-form: down (HTTP 502; [STATUS] (502) == 200)"],
            Side::Primary,
        ),
        Kind::OutageResolved => (
            State::Outage,
            State::Operational,
            Cause::PrimaryRecovered,
            "system",
            "primary checks back up",
            vec!["portal-form: healthy (200 in 38 ms)"],
            Side::Primary,
        ),
        Kind::Recovering => (
            State::FailedOver,
            State::Recovering,
            Cause::PrimaryRecovered,
            "system",
            "primary healthy; waiting recovery_hold (5m)",
            vec!["portal-form: healthy (200 in 41 ms)"],
            Side::Backup,
        ),
        Kind::MaintenanceStart => (
            State::Operational,
            State::Maintenance,
            Cause::Operator,
            "alice",
            "portal upgrade, ticket CHG-1234",
            vec![],
            Side::Backup,
        ),
        Kind::MaintenanceEnd => (
            State::Maintenance,
            State::Operational,
            Cause::MaintenanceEnded,
            "system",
            "maintenance window over",
            vec![],
            Side::Primary,
        ),
        Kind::DrillStart => (
            State::Operational,
            State::Drill,
            Cause::Operator,
            "bob",
            "quarterly failover drill (live, 10m)",
            vec![],
            Side::Backup,
        ),
        Kind::DrillEnd => (
            State::Drill,
            State::Operational,
            Cause::DrillDeadline,
            "system",
            "drill deadline reached",
            vec![],
            Side::Primary,
        ),
        Kind::Flapping => (
            State::FailedOver,
            State::FailedOver,
            Cause::PrimaryDown,
            "system",
            "3 automatic failovers within 1h; holding the backup",
            vec![
                "portal-form: down (failed (connect): connection refused; [STATUS] (none) == 200)",
            ],
            Side::Backup,
        ),
        Kind::VendorNotice => (
            State::Operational,
            State::Operational,
            Cause::PrimaryDown,
            "system",
            "zendesk-status declares an outage while our checks pass; no failover",
            vec![
                "zendesk-status (vendor) says: zendesk status: major outage: \"Ticket submission failing on pod 23\" <https://status.zendesk.com/incidents/51240> — source https://status.zendesk.com/api/incidents/active?subdomain=acme",
            ],
            Side::Primary,
        ),
        Kind::VantageSuspect => (
            State::Operational,
            State::Operational,
            Cause::PrimaryDown,
            "vantage:eu-west",
            "3 of 4 hosts failing at once: this vantage's own network is suspect; outcomes count for nothing until it sees healthy targets again",
            vec![
                "failing: 127.0.0.2, 127.0.0.3, 127.0.0.4",
                "portal-form (127.0.0.2): failed (connect): connection refused",
            ],
            Side::Primary,
        ),
        Kind::VantageClear => (
            State::Operational,
            State::Operational,
            Cause::PrimaryDown,
            "vantage:eu-west",
            "healthy targets again after 2m 14s: 0 of 4 hosts failing; outcomes count again",
            vec!["suspect since 2026-11-28T03:00:07Z"],
            Side::Primary,
        ),
        Kind::Update => (
            State::Operational,
            State::Degraded,
            Cause::PrimaryDown,
            "system",
            "1 of 2 primary checks down",
            vec!["portal-form: down (HTTP 500)"],
            Side::Primary,
        ),
    };
    let t = Transition {
        from,
        to,
        cause,
        actor: actor.into(),
        reason: reason.into(),
        evidence: evidence.into_iter().map(String::from).collect(),
        ..failover()
    };
    (t, side)
}

/// Every kind for every audience, compared exactly with `testdata/snapshots/messages/`;
/// `UPDATE_SNAPSHOTS=1 cargo test --lib announce::render` rewrites them after a deliberate
/// change (then review the diff).
#[test]
fn rendered_messages_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snapshots/messages");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut mismatched = Vec::new();
    for kind in Kind::ALL {
        let (t, side) = example(kind);
        for audience in Audience::ALL {
            let m = render_with(&Templates::embedded(), kind, &t, audience, &ctx(side));
            let got = format!(
                "Subject: {}\n\n{}\n==== text/html ====\n{}",
                m.subject, m.text, m.html
            );
            let path = dir.join(format!("{}.{}.txt", kind.as_str(), audience.as_str()));
            if update {
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display())
            });
            if got != want {
                mismatched.push(format!(
                    "{}:\n--- want\n{want}\n--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

/// Three changes to two services as one grouped message per audience, compared exactly
/// with `testdata/snapshots/messages/group.{audience}.txt` (`UPDATE_SNAPSHOTS=1`).
#[test]
fn grouped_messages_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snapshots/messages");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut portal_ctx = ctx(Side::Backup);
    portal_ctx.service_name = "Support portal".into();
    portal_ctx.routes[0].id = "portal".into();
    let mut portal = failover();
    portal.service = "support-portal".into();
    portal.evidence = vec!["portal-home: down (503)".into()];
    let mut mismatched = Vec::new();
    for audience in [Audience::Oncall, Audience::Customers] {
        let messages = [
            (
                render(&failover(), audience, &ctx(Side::Backup)),
                "Ticket submission",
            ),
            (render(&portal, audience, &portal_ctx), "Support portal"),
            (
                render(&failback(), audience, &ctx(Side::Primary)),
                "Ticket submission",
            ),
        ];
        let sections: Vec<Section<'_>> = messages
            .iter()
            .map(|(m, name)| Section {
                service_name: name,
                subject: &m.subject,
                text: &m.text,
                html: Some(&m.html),
            })
            .collect();
        let m = render_group(&Templates::embedded(), audience, &sections);
        assert_eq!(
            m.subject,
            "[Switchboard] Ticket submission, Support portal: 3 changes"
        );
        let got = format!(
            "Subject: {}\n\n{}\n==== text/html ====\n{}",
            m.subject, m.text, m.html
        );
        let path = dir.join(format!("group.{}.txt", audience.as_str()));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
        if got != want {
            mismatched.push(format!(
                "{}:\n--- want\n{want}\n--- got\n{got}",
                path.display()
            ));
        }
        // The signature closes the message once, in text and in HTML.
        assert_eq!(
            m.text.matches("Sent by Switchboard.").count(),
            1,
            "{}",
            m.text
        );
        assert_eq!(
            m.html.matches("Sent by Switchboard.").count(),
            1,
            "{}",
            m.html
        );
        assert_eq!(m.text.contains("For on-call"), audience == Audience::Oncall);
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

#[test]
fn a_group_of_one_is_the_change_s_own_message_unchanged() {
    let m = render(&failover(), Audience::Customers, &ctx(Side::Backup));
    let one = [Section {
        service_name: "Ticket submission",
        subject: &m.subject,
        text: &m.text,
        html: Some(&m.html),
    }];
    assert_eq!(
        render_group(&Templates::embedded(), Audience::Customers, &one),
        m
    );
}

#[test]
fn grouped_html_escapes_names_and_titles() {
    let sections = [
        Section {
            service_name: "<b>A</b>",
            subject: "[Switchboard] <b>A</b>: x",
            text: "a\n-- \nSig\n",
            html: None,
        },
        Section {
            service_name: "B & C",
            subject: "[Switchboard] B & C: y",
            text: "<script>b</script>\n",
            html: None,
        },
    ];
    let m = render_group(&Templates::embedded(), Audience::Customers, &sections);
    assert_eq!(m.subject, "[Switchboard] <b>A</b>, B & C: 2 changes");
    assert!(
        m.html.contains("<h2>&lt;b&gt;A&lt;/b&gt;: x</h2>"),
        "{}",
        m.html
    );
    assert!(
        m.html.contains("<pre>&lt;script&gt;b&lt;/script&gt;</pre>"),
        "{}",
        m.html
    );
    assert!(!m.html.contains("<script>"));
    assert!(
        m.text.contains("== <b>A</b>: x ==\n\na\n\n== B & C: y =="),
        "{}",
        m.text
    );
}

#[test]
fn oncall_gets_evidence_runbook_and_api_links_customers_get_only_where_to_go() {
    let oncall = render(&failover(), Audience::Oncall, &ctx(Side::Backup));
    for want in [
        "  Evidence: portal-form: down (connect: connection refused)",
        "  Runbook: runbooks/ticket-submission.md",
        "  Service API: http://127.0.0.1:9898/api/v1/services/ticket-submission",
        "  Audit log: http://127.0.0.1:9898/api/v1/audit?service=ticket-submission",
        "  submit-ticket: https://forms.example.net/support (backup)",
    ] {
        assert!(
            oncall.text.contains(want),
            "missing {want:?} in\n{}",
            oncall.text
        );
    }
    let customers = render(&failover(), Audience::Customers, &ctx(Side::Backup));
    assert_eq!(
        customers.text,
        "\
Ticket submission is not working right now, so we have switched to a backup.

Where to go now:
  submit-ticket: https://forms.example.net/support (backup)
    always the current one: http://127.0.0.1:9898/go/submit-ticket

Current status: http://127.0.0.1:9898/status

-- 
Sent by Switchboard.
"
    );
}

#[test]
fn oncall_is_told_which_hold_applies_and_until_when_customers_are_not() {
    let mut c = ctx(Side::Backup);
    c.holds = vec![
            "flapping: automatic failback held: 3 automatic failovers within 1h until 2026-11-28T04:00:07.251Z".into(),
        ];
    let want = "  Hold: flapping: automatic failback held: 3 automatic failovers within 1h until 2026-11-28T04:00:07.251Z";
    let oncall = render(&failover(), Audience::Oncall, &c);
    assert!(oncall.text.contains(want), "{}", oncall.text);
    assert!(oncall.html.contains("<th>Hold</th>"), "{}", oncall.html);
    let customers = render(&failover(), Audience::Customers, &c);
    assert!(!customers.text.contains("Hold"), "{}", customers.text);
    assert!(!customers.html.contains("flapping"), "{}", customers.html);
}

#[test]
fn a_drill_interrupted_by_a_real_outage_is_also_announced_as_the_real_change() {
    let t = Transition {
        cause: Cause::PrimaryDown,
        reason: "portal-form down".into(),
        ..with(State::Drill, State::FailedOver)
    };
    assert_eq!(Kind::all_of(&t), [Kind::DrillEnd, Kind::Failover]);
    let outage = Transition {
        to: State::Outage,
        ..t.clone()
    };
    assert_eq!(Kind::all_of(&outage), [Kind::DrillEnd, Kind::Outage]);
    // Back on a healthy primary: nothing real changed for customers.
    let back = Transition {
        cause: Cause::BackupDown,
        ..with(State::Drill, State::Operational)
    };
    assert_eq!(Kind::all_of(&back), [Kind::DrillEnd]);
    // A planned end is the drill's business only.
    let deadline = Transition {
        cause: Cause::DrillDeadline,
        ..with(State::Drill, State::Operational)
    };
    assert_eq!(Kind::all_of(&deadline), [Kind::DrillEnd]);
}

#[test]
fn templates_from_a_directory_override_the_built_in_ones_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
            dir.path().join("failover.txt"),
            "Subject: {{service_name}} moved — now at {{target}}\n\nHi {{audience}}, {{service_name}} moved.\n{{oncall}}\n\nBye\n",
        )
        .unwrap();
    let t = Templates::load(dir.path()).unwrap();
    let m = render_with(
        &t,
        Kind::Failover,
        &failover(),
        Audience::Customers,
        &ctx(Side::Backup),
    );
    assert_eq!(
        m.subject,
        "Ticket submission moved — now at https://forms.example.net/support"
    );
    // The empty on-call block and the blank line after it are gone.
    assert_eq!(m.text, "Hi customers, Ticket submission moved.\nBye\n");
    // The HTML was not overridden: the built-in one is used.
    assert!(m
        .html
        .contains("<p>Ticket submission is not working right now"));
    // Other kinds keep their built-in wording.
    let back = render_with(
        &t,
        Kind::Failback,
        &failback(),
        Audience::Customers,
        &ctx(Side::Primary),
    );
    assert_eq!(
        back,
        render(&failback(), Audience::Customers, &ctx(Side::Primary))
    );
}

#[test]
fn bad_template_directories_are_refused_with_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("outage.html"), "<p>{{service}}</p>").unwrap();
    let err = Templates::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("outage.html:1: unknown placeholder {{service}} (known: service_name,"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("outage.html")).unwrap();
    std::fs::write(dir.path().join("failback.txt"), "no subject here\n").unwrap();
    let err = Templates::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.ends_with("failback.txt: the first line must be \"Subject: ...\""),
        "{err}"
    );
    assert!(Templates::load(&dir.path().join("missing")).is_err());
}

#[test]
fn the_built_in_templates_are_the_files_under_templates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    assert_eq!(Templates::load(&dir).unwrap(), Templates::embedded());
    for kind in Kind::ALL {
        assert!(Templates::embedded().has(kind.as_str()), "{kind:?}");
        assert!(dir.join(format!("{}.txt", kind.as_str())).is_file());
    }
}

#[test]
fn customers_never_see_internal_evidence_or_reasons() {
    let m = render(&failover(), Audience::Customers, &ctx(Side::Backup));
    for secret in ["portal-form", "primary_down", "runbooks/", "failover_when"] {
        assert!(!m.text.contains(secret), "text leaks {secret}");
        assert!(!m.html.contains(secret), "html leaks {secret}");
    }
}

#[test]
fn customers_read_the_public_message_and_on_call_reads_both() {
    let t = Transition {
        cause: Cause::Operator,
        actor: "olga".into(),
        reason: "INC-43: flap-held, customers on broken form".into(),
        public_message: Some("We moved you to our backup form <for now>.".into()),
        ..failover()
    };
    let customers = render(&t, Audience::Customers, &ctx(Side::Backup));
    assert!(customers
        .text
        .contains("\n\nWe moved you to our backup form <for now>.\n\n"));
    assert!(customers
        .html
        .contains("<p>We moved you to our backup form &lt;for now&gt;.</p>"));
    for m in [&customers.text, &customers.html, &customers.subject] {
        assert!(!m.contains("INC-43"), "the reason leaks: {m}");
    }
    let oncall = render(&t, Audience::Oncall, &ctx(Side::Backup));
    assert!(oncall.text.contains("Reason: INC-43"), "{}", oncall.text);
    assert!(
        oncall.text.contains("Public message: We moved you"),
        "{}",
        oncall.text
    );
}

#[test]
fn outage_and_outage_resolved_subjects() {
    let outage = Transition {
        cause: Cause::BackupDown,
        ..with(State::Operational, State::Outage)
    };
    check_subject(
            &outage,
            &ctx(Side::Primary),
            "[Switchboard] Ticket submission: outage, no working backup — still on https://support.example.com/hc/en-us/requests/new",
        );
    assert!(render(&outage, Audience::Customers, &ctx(Side::Primary))
        .text
        .starts_with("Ticket submission is not working right now, and neither is its backup."));
    check_subject(
            &with(State::Outage, State::Operational),
            &ctx(Side::Primary),
            "[Switchboard] Ticket submission: outage resolved — use https://support.example.com/hc/en-us/requests/new",
        );
    // From outage to the backup (the backup came back first) is a failover.
    check_subject(
            &with(State::Outage, State::FailedOver),
            &ctx(Side::Backup),
            "[Switchboard] Ticket submission: switched to backup — use https://forms.example.net/support",
        );
}

#[test]
fn other_kinds_have_their_own_subjects() {
    let cases = [
            (
                State::FailedOver,
                State::Recovering,
                Side::Backup,
                "[Switchboard] Ticket submission: primary recovered, still on backup — use https://forms.example.net/support",
            ),
            (
                State::Operational,
                State::Maintenance,
                Side::Backup,
                "[Switchboard] Ticket submission: maintenance started — use https://forms.example.net/support",
            ),
            (
                State::Maintenance,
                State::Operational,
                Side::Primary,
                "[Switchboard] Ticket submission: maintenance over — use https://support.example.com/hc/en-us/requests/new",
            ),
            (
                State::Operational,
                State::Drill,
                Side::Backup,
                "[Switchboard] [Drill] Ticket submission: drill started — use https://forms.example.net/support",
            ),
            (
                State::Drill,
                State::Operational,
                Side::Primary,
                "[Switchboard] [Drill] Ticket submission: drill ended — use https://support.example.com/hc/en-us/requests/new",
            ),
            (
                State::Operational,
                State::Degraded,
                Side::Primary,
                "[Switchboard] Ticket submission: now degraded — use https://support.example.com/hc/en-us/requests/new",
            ),
        ];
    for (from, to, side, subject) in cases {
        check_subject(&with(from, to), &ctx(side), subject);
    }
}

fn check_subject(t: &Transition, ctx: &MessageContext, subject: &str) {
    for audience in Audience::ALL {
        assert_eq!(render(t, audience, ctx).subject, subject, "{audience}");
    }
}

#[test]
fn kinds_of_transitions() {
    let kind = |from, to| Kind::of(&with(from, to));
    assert_eq!(kind(State::Operational, State::FailedOver), Kind::Failover);
    assert_eq!(kind(State::Degraded, State::FailedOver), Kind::Failover);
    assert_eq!(kind(State::Recovering, State::Operational), Kind::Failback);
    assert_eq!(kind(State::FailedOver, State::Operational), Kind::Failback);
    assert_eq!(kind(State::FailedOver, State::Recovering), Kind::Recovering);
    // Primary failing again during the hold changes nothing customers see.
    assert_eq!(kind(State::Recovering, State::FailedOver), Kind::Update);
    assert_eq!(kind(State::FailedOver, State::Outage), Kind::Outage);
    assert_eq!(kind(State::Outage, State::Degraded), Kind::OutageResolved);
    assert_eq!(kind(State::Degraded, State::Operational), Kind::Update);
}

#[test]
fn several_routes_are_all_listed_and_counted_in_the_subject() {
    let mut c = ctx(Side::Backup);
    c.routes.push(RouteView {
        id: "book-call".into(),
        service: "ticket-submission".into(),
        primary: "https://book.example.com/".into(),
        backup: "https://cal.example.net/support".into(),
        active: Side::Backup,
    });
    c.go_base_url = "http://127.0.0.1:9898/go".into();
    let m = render(&failover(), Audience::Customers, &c);
    assert_eq!(
            m.subject,
            "[Switchboard] Ticket submission: switched to backup — use https://forms.example.net/support (+1 more route)"
        );
    assert!(m
            .text
            .contains("  book-call: https://cal.example.net/support (backup)\n    always the current one: http://127.0.0.1:9898/go/book-call\n"));
}

#[test]
fn html_has_the_same_content_escaped() {
    let m = render(&failover(), Audience::Oncall, &ctx(Side::Backup));
    assert!(m.html.contains(
            "<li><strong>submit-ticket</strong>: <a href=\"https://forms.example.net/support\">https://forms.example.net/support</a> (backup); always the current one: <a href=\"http://127.0.0.1:9898/go/submit-ticket\">http://127.0.0.1:9898/go/submit-ticket</a></li>"
        ), "{}", m.html);
    assert!(m
        .html
        .contains("<tr><th>State</th><td>operational -&gt; failed_over</td></tr>"));
    assert!(m.html.contains(
        "<tr><th>Evidence</th><td>portal-form: down (connect: connection refused)</td></tr>"
    ));
}

#[test]
fn html_escapes_hostile_values_and_never_links_non_http_targets() {
    let mut c = ctx(Side::Backup);
    c.service_name = "<script>alert(1)</script> & co".into();
    c.routes[0].backup = "javascript:alert('x')".into();
    let t = Transition {
        reason: "\"quoted\" <b>".into(),
        ..failover()
    };
    let m = render(&t, Audience::Oncall, &c);
    assert!(!m.html.contains("<script>"));
    assert!(m
        .html
        .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
    assert!(m.html.contains("javascript:alert(&#39;x&#39;)"));
    assert!(!m.html.contains("href=\"javascript"));
    assert!(m.html.contains("&quot;quoted&quot; &lt;b&gt;"));
}

#[test]
fn a_service_without_routes_still_gets_a_subject_and_status_link() {
    let mut c = ctx(Side::Backup);
    c.routes.clear();
    let m = render(&failover(), Audience::Customers, &c);
    assert_eq!(
        m.subject,
        "[Switchboard] Ticket submission: switched to backup"
    );
    assert!(!m.text.contains("Where to go now"));
    assert!(m
        .text
        .contains("Current status: http://127.0.0.1:9898/status"));
}

/// The Slack message (Block Kit) of every kind that reaches chat, compared exactly with
/// `testdata/snapshots/messages/{kind}.chat.json` (`UPDATE_SNAPSHOTS=1` rewrites them): the
/// words are on-call's (or the drill audience's), as `plan_kind` chooses.
#[test]
fn chat_messages_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/snapshots/messages");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut mismatched = Vec::new();
    for kind in Kind::ALL {
        let audiences = kind.audiences();
        if audiences.is_empty() {
            continue;
        }
        let audience = if audiences.contains(&Audience::Drill) {
            Audience::Drill
        } else {
            Audience::Oncall
        };
        let (t, side) = example(kind);
        let c = MessageContext {
            runbook: Some("https://runbooks.example.com/ticket-submission".into()),
            ..ctx(side)
        };
        let m = render_with(&Templates::embedded(), kind, &t, audience, &c);
        let payload = crate::announce::chat::payload(&t, &c, &m);
        let got = serde_json::to_string_pretty(&payload).unwrap() + "\n";
        let path = dir.join(format!("{}.chat.json", kind.as_str()));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
        if got != want {
            mismatched.push(format!(
                "{}:\n--- want\n{want}\n--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

/// Slack reads `<`, `>` and `&` as markup: a hostile value cannot make a link or a mention,
/// and only http(s) targets are ever linked.
#[test]
fn chat_escapes_values_and_links_only_http_targets() {
    let (mut t, side) = example(Kind::Failover);
    t.reason = "<!channel> look & see <https://evil.example|click>".into();
    t.evidence = vec!["portal-form: down (<script>)".into()];
    let mut c = ctx(side);
    c.routes[0].backup = "javascript:alert(1)".into();
    let m = render_with(
        &Templates::embedded(),
        Kind::Failover,
        &t,
        Audience::Oncall,
        &c,
    );
    let text = crate::announce::chat::payload(&t, &c, &m).to_string();
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(
        text.contains("&lt;!channel&gt; look &amp; see &lt;https://evil.example|click&gt;"),
        "{text}"
    );
    assert!(
        text.contains("portal-form: down (&lt;script&gt;)"),
        "{text}"
    );
    assert!(!text.contains("<javascript:"), "{text}");
}
