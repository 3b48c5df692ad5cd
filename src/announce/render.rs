//! Pure rendering of an announcement: (templates, kind, transition, audience, context) ->
//! subject, text and HTML.
//!
//! No I/O and no clock: everything a message says comes from its arguments, so every
//! message kind and audience is snapshot-tested on its own, away from any transport.
//! Customers get plain words and where to go now; on-call and drill audiences also get
//! the cause, reason, evidence, states, runbook, status page and API links.
//!
//! The wording lives in templates (`templates/KIND.txt` and `KIND.html`, built into the
//! binary and overridable from a directory with `[email] templates`), run by the engine in
//! `crate::template` (minijinja, HTML autoescaped; see `templates/README.md`). This module
//! fills their placeholders: the blocks that need loops (routes, the on-call evidence) are
//! built here, so the shipped templates stay free of logic.

use super::Audience;
use crate::failover::{Side, State, Transition};
use crate::template::{Fill, GROUP};
use crate::view::RouteView;
use std::fmt::Write as _;

/// What a message may say beyond the transition itself.
#[derive(Clone, Debug)]
pub struct MessageContext {
    /// Human name of the service, e.g. `Ticket submission`.
    pub service_name: String,
    /// The service's routes with their active side AFTER the transition.
    pub routes: Vec<RouteView>,
    /// The public status page, e.g. `http://127.0.0.1:9898/status`.
    pub status_url: String,
    /// Prefix of the redirect links, e.g. `http://127.0.0.1:9898/go/`; a route's link is
    /// this plus its id, and always leads to whichever target is active.
    pub go_base_url: String,
    /// Runbook path or URL, shown to on-call only.
    pub runbook: Option<String>,
    /// The control API's base, e.g. `http://127.0.0.1:9898/api/v1`, for on-call links;
    /// empty to leave them out.
    pub api_url: String,
    /// The holds in force after the change, one line each (`HoldInForce::line`), for on-call
    /// only: which hold keeps the routes where they are, and until when.
    pub holds: Vec<String>,
}

/// A rendered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub text: String,
    /// A simple HTML alternative carrying the same content; every value in it is escaped.
    pub html: String,
}

/// What kind of change a transition is, as far as people are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Routes moved to the backup.
    Failover,
    /// Routes moved back to the primary.
    Failback,
    /// Primary down and no healthy backup to switch to.
    Outage,
    /// Out of outage without switching to the backup.
    OutageResolved,
    /// Primary healthy again while on backup; failback waits for the hold or an operator.
    Recovering,
    MaintenanceStart,
    MaintenanceEnd,
    DrillStart,
    DrillEnd,
    /// Too many failovers within the flap window: the backup is held. Not a transition of
    /// its own; the shell raises it from the core's `Flapping` action.
    Flapping,
    /// Any other change (e.g. operational <-> degraded): recorded, not announced.
    Update,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Failover,
        Kind::Failback,
        Kind::Outage,
        Kind::OutageResolved,
        Kind::Recovering,
        Kind::MaintenanceStart,
        Kind::MaintenanceEnd,
        Kind::DrillStart,
        Kind::DrillEnd,
        Kind::Flapping,
        Kind::Update,
    ];

    pub fn of(t: &Transition) -> Kind {
        use State::*;
        match (t.from, t.to) {
            (_, Drill) => Kind::DrillStart,
            (Drill, _) => Kind::DrillEnd,
            (_, Maintenance) => Kind::MaintenanceStart,
            (Maintenance, _) => Kind::MaintenanceEnd,
            (_, Outage) => Kind::Outage,
            (Outage, to) if to.routes_side() == Side::Primary => Kind::OutageResolved,
            (FailedOver, Recovering) => Kind::Recovering,
            (from, to) => match (from.routes_side(), to.routes_side()) {
                (Side::Primary, Side::Backup) => Kind::Failover,
                (Side::Backup, Side::Primary) => Kind::Failback,
                _ => Kind::Update,
            },
        }
    }

    /// Every kind of message `t` causes. Usually its one kind; a drill interrupted by a real
    /// outage also causes the real change's message to the real audiences (as if no drill had
    /// run: the routes were on the primary for them), while the drill audience hears that the
    /// drill ended.
    pub fn all_of(t: &Transition) -> Vec<Kind> {
        let kind = Kind::of(t);
        if !t.interrupts_drill() {
            return vec![kind];
        }
        let real = Kind::of(&Transition {
            from: State::Operational,
            ..t.clone()
        });
        if real == Kind::Update {
            vec![kind]
        } else {
            vec![kind, real]
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failover => "failover",
            Kind::Failback => "failback",
            Kind::Outage => "outage",
            Kind::OutageResolved => "outage_resolved",
            Kind::Recovering => "recovering",
            Kind::MaintenanceStart => "maintenance_start",
            Kind::MaintenanceEnd => "maintenance_end",
            Kind::DrillStart => "drill_start",
            Kind::DrillEnd => "drill_end",
            Kind::Flapping => "flapping",
            Kind::Update => "update",
        }
    }

    /// Who hears about this kind of change. Drills stay with the drill audience so that an
    /// exercise never reaches customers; a pending failback and flapping only concern on-call.
    pub fn audiences(self) -> &'static [Audience] {
        match self {
            Kind::Failover
            | Kind::Failback
            | Kind::Outage
            | Kind::OutageResolved
            | Kind::MaintenanceStart
            | Kind::MaintenanceEnd => &[Audience::Oncall, Audience::Customers],
            Kind::Recovering | Kind::Flapping => &[Audience::Oncall],
            Kind::DrillStart | Kind::DrillEnd => &[Audience::Drill],
            Kind::Update => &[],
        }
    }
}

pub use crate::template::{TemplateError, Templates};

/// Renders the message about `t` for `audience` with the built-in templates.
pub fn render(t: &Transition, audience: Audience, ctx: &MessageContext) -> Message {
    render_with(&Templates::embedded(), Kind::of(t), t, audience, ctx)
}

/// Renders the `kind` message about `t` (for `Flapping`, the transition it follows) for
/// `audience` with `templates`.
pub fn render_with(
    templates: &Templates,
    kind: Kind,
    t: &Transition,
    audience: Audience,
    ctx: &MessageContext,
) -> Message {
    let internal = audience != Audience::Customers;
    let routes: Vec<RouteLine> = ctx
        .routes
        .iter()
        .map(|r| RouteLine {
            id: r.id.clone(),
            target: r.active_display().to_owned(),
            side: r.active,
            go: go_link(&ctx.go_base_url, &r.id),
        })
        .collect();
    let details = internal.then(|| details(t, ctx));
    let target = ctx
        .routes
        .first()
        .map(|r| {
            let more = match ctx.routes.len() - 1 {
                0 => String::new(),
                1 => " (+1 more route)".to_owned(),
                n => format!(" (+{n} more routes)"),
            };
            format!("{}{more}", r.active_display())
        })
        .unwrap_or_default();
    let mut fill = Fill::new();
    fill.scalar("service_name", ctx.service_name.as_str())
        .scalar("service_id", t.service.as_str())
        .scalar("target", target)
        .scalar("state", t.to.as_str().replace('_', " "))
        .scalar("status_url", ctx.status_url.as_str())
        .scalar("audience", audience.as_str())
        .block("routes", text_routes(&routes), html_routes(&routes))
        .block(
            "oncall",
            details.as_deref().map(text_details).unwrap_or_default(),
            details.as_deref().map(html_details).unwrap_or_default(),
        )
        .block(
            "status_link",
            ctx.status_url.as_str(),
            link(&ctx.status_url),
        );
    // The operator's words for everyone (the `reason` only ever reaches the on-call block).
    let said = t.public_message.as_deref().map(str::trim).unwrap_or("");
    fill.block(
        "public_message",
        said,
        if said.is_empty() {
            String::new()
        } else {
            format!("<p>{}</p>", escape(said))
        },
    );
    let r = templates.render(kind.as_str(), &fill);
    Message {
        subject: r.subject,
        text: r.text,
        html: r.html,
    }
}

/// One change as a grouped message carries it: the change's own message, rendered with its
/// transition (`render_with`) and stored with it.
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    pub service_name: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
}

/// The one message to `audience` about every change in `sections` (oldest first).
///
/// A single change is its own message, unchanged: with `group_window = "0s"` nothing reads
/// differently from before grouping existed. Several changes fill the `group` template:
/// each change appears under its subject (without the `[Switchboard] ` prefix) with its
/// text up to the signature line (`-- `, RFC 3676) and its HTML body without the
/// signature paragraph; the group's own signature ends the message once.
pub fn render_group(
    templates: &Templates,
    audience: Audience,
    sections: &[Section<'_>],
) -> Message {
    if let [one] = sections {
        return Message {
            subject: one.subject.to_owned(),
            text: one.text.to_owned(),
            html: one.html.map(str::to_owned).unwrap_or_default(),
        };
    }
    let mut names: Vec<&str> = Vec::new();
    for s in sections {
        if !names.contains(&s.service_name) {
            names.push(s.service_name);
        }
    }
    let (mut text_block, mut html_block) = (String::new(), String::new());
    for (i, s) in sections.iter().enumerate() {
        let title = s
            .subject
            .strip_prefix("[Switchboard] ")
            .unwrap_or(s.subject);
        let (body, signature) = match s.text.rsplit_once("\n-- \n") {
            Some((body, sig)) => (body, sig.trim()),
            None => (s.text, ""),
        };
        if i > 0 {
            text_block.push_str("\n\n");
            html_block.push('\n');
        }
        let _ = write!(text_block, "== {title} ==\n\n{}", body.trim_end());
        let inner = match s.html {
            Some(h) => html_section(h, signature),
            None => format!("<pre>{}</pre>", escape(body.trim_end())),
        };
        let _ = write!(html_block, "<hr>\n<h2>{}</h2>\n{inner}", escape(title));
    }
    let services = names.join(", ");
    let mut fill = Fill::new();
    fill.scalar("count", sections.len().to_string())
        .scalar("services", services)
        .scalar("audience", audience.as_str())
        .block("changes", text_block, html_block);
    let r = templates.render(GROUP, &fill);
    Message {
        subject: r.subject,
        text: r.text,
        html: r.html,
    }
}

/// The part of a change's HTML that goes into a group: what is inside `<body>`, without a
/// last paragraph holding only the signature.
fn html_section(html: &str, signature: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let inner = match (lower.find("<body>"), lower.rfind("</body>")) {
        (Some(a), Some(b)) if a + 6 <= b => &html[a + 6..b],
        _ => html,
    };
    let inner = inner.trim();
    let sig = format!("<p>{}</p>", escape(signature));
    let inner = if signature.is_empty() {
        inner
    } else {
        inner.strip_suffix(sig.as_str()).unwrap_or(inner).trim_end()
    };
    inner.to_owned()
}

struct RouteLine {
    id: String,
    target: String,
    side: Side,
    go: String,
}

fn go_link(base: &str, route: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{route}")
    } else {
        format!("{base}/{route}")
    }
}

/// The on-call block: everything needed to judge the change without opening a dashboard.
fn details(t: &Transition, ctx: &MessageContext) -> Vec<(&'static str, String)> {
    let mut d = vec![
        ("State", format!("{} -> {}", t.from.as_str(), t.to.as_str())),
        ("Cause", t.cause.as_str().to_owned()),
        ("Actor", t.actor.clone()),
        ("Reason", t.reason.clone()),
        ("Time", t.at.rfc3339()),
    ];
    if let Some(m) = &t.public_message {
        d.push(("Public message", m.clone()));
    }
    if t.evidence.is_empty() {
        d.push(("Evidence", "(none recorded)".to_owned()));
    }
    for e in &t.evidence {
        d.push(("Evidence", e.clone()));
    }
    for h in &ctx.holds {
        d.push(("Hold", h.clone()));
    }
    if let Some(rb) = &ctx.runbook {
        d.push(("Runbook", rb.clone()));
    }
    d.push(("Status page", ctx.status_url.clone()));
    if !ctx.api_url.is_empty() {
        let api = ctx.api_url.trim_end_matches('/');
        d.push(("Service API", format!("{api}/services/{}", t.service)));
        d.push(("Audit log", format!("{api}/audit?service={}", t.service)));
    }
    d
}

fn text_routes(routes: &[RouteLine]) -> String {
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let mut s = String::new();
    if routes.is_empty() {
        return s;
    }
    s.push_str("Where to go now:");
    for r in routes {
        let _ = write!(s, "\n  {}: {} ({})", r.id, r.target, r.side.as_str());
        let _ = write!(s, "\n    always the current one: {}", r.go);
    }
    s
}

fn text_details(details: &[(&'static str, String)]) -> String {
    let mut s = String::from("For on-call:");
    for (k, v) in details {
        let _ = write!(s, "\n  {k}: {v}");
    }
    s
}

fn html_routes(routes: &[RouteLine]) -> String {
    let mut s = String::new();
    if routes.is_empty() {
        return s;
    }
    s.push_str("<h2>Where to go now</h2>\n<ul>");
    for r in routes {
        let _ = write!(
            s,
            "\n<li><strong>{}</strong>: {} ({}); always the current one: {}</li>",
            escape(&r.id),
            link(&r.target),
            r.side.as_str(),
            link(&r.go)
        );
    }
    s.push_str("\n</ul>");
    s
}

fn html_details(details: &[(&'static str, String)]) -> String {
    let mut s = String::from("<h2>For on-call</h2>\n<table>");
    for (k, v) in details {
        let _ = write!(
            s,
            "\n<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            link_or_text(v)
        );
    }
    s.push_str("\n</table>");
    s
}

/// A value that is a whole http(s) URL becomes a link; anything else is escaped text.
fn link_or_text(v: &str) -> String {
    if !v.contains(char::is_whitespace) {
        link(v)
    } else {
        escape(v)
    }
}

/// A link for http(s) targets only: anything else (a future `mailto:` or phone route, or a
/// hostile `javascript:` string) is shown as escaped text, never as an `href`.
fn link(target: &str) -> String {
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        let t = escape(target);
        format!("<a href=\"{t}\">{t}</a>")
    } else {
        escape(target)
    }
}

pub use crate::html::escape;

#[cfg(test)]
mod tests {
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
                vec!["portal-form: down (failed (connect): connection refused; [STATUS] (none) == 200)"],
                Side::Backup,
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
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display())
            });
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
}
