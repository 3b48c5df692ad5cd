//! Pure rendering of an announcement: (transition, audience, context) -> subject, text, HTML.
//!
//! No I/O and no clock: everything a message says comes from its arguments, so every
//! message kind and audience is snapshot-tested on its own, away from any transport.
//! Customers get plain words and where to go now; on-call and drill audiences also get
//! the cause, reason, evidence, states, runbook and status page.

use super::Audience;
use crate::failover::{Side, State, Transition};
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
    /// Any other change (e.g. operational <-> degraded): recorded, not announced.
    Update,
}

impl Kind {
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
            Kind::Update => "update",
        }
    }

    /// Who hears about this kind of change. Drills stay with the drill audience so that an
    /// exercise never reaches customers; a pending failback only concerns on-call.
    pub fn audiences(self) -> &'static [Audience] {
        match self {
            Kind::Failover
            | Kind::Failback
            | Kind::Outage
            | Kind::OutageResolved
            | Kind::MaintenanceStart
            | Kind::MaintenanceEnd => &[Audience::Oncall, Audience::Customers],
            Kind::Recovering => &[Audience::Oncall],
            Kind::DrillStart | Kind::DrillEnd => &[Audience::Drill],
            Kind::Update => &[],
        }
    }
}

/// Renders the message about `t` for `audience`.
pub fn render(t: &Transition, audience: Audience, ctx: &MessageContext) -> Message {
    let kind = Kind::of(t);
    let internal = audience != Audience::Customers;
    let lead = lead(kind, t, ctx);
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

    Message {
        subject: subject(kind, t, ctx),
        text: text(&lead, &routes, ctx, details.as_deref()),
        html: html(&lead, &routes, ctx, details.as_deref()),
    }
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

fn subject(kind: Kind, t: &Transition, ctx: &MessageContext) -> String {
    // The subject names the route in use now, so the one line in an inbox list is enough.
    let target = ctx.routes.first().map(|r| {
        let more = match ctx.routes.len() - 1 {
            0 => String::new(),
            1 => " (+1 more route)".to_owned(),
            n => format!(" (+{n} more routes)"),
        };
        format!("{}{more}", r.active_display())
    });
    let (what, use_word) = match kind {
        Kind::Failover => ("switched to backup".to_owned(), "use"),
        Kind::Failback => ("back on primary".to_owned(), "use"),
        Kind::Outage => ("outage, no working backup".to_owned(), "still on"),
        Kind::OutageResolved => ("outage resolved".to_owned(), "use"),
        Kind::Recovering => ("primary recovered, still on backup".to_owned(), "use"),
        Kind::MaintenanceStart => ("maintenance started".to_owned(), "use"),
        Kind::MaintenanceEnd => ("maintenance over".to_owned(), "use"),
        Kind::DrillStart => ("drill started".to_owned(), "use"),
        Kind::DrillEnd => ("drill ended".to_owned(), "use"),
        Kind::Update => (format!("now {}", t.to.as_str().replace('_', " ")), "use"),
    };
    let prefix = match kind {
        Kind::DrillStart | Kind::DrillEnd => "[Switchboard] [Drill]",
        _ => "[Switchboard]",
    };
    match target {
        Some(target) => format!(
            "{prefix} {}: {what} — {use_word} {target}",
            ctx.service_name
        ),
        None => format!("{prefix} {}: {what}", ctx.service_name),
    }
}

/// The opening sentence, in plain words for everyone.
fn lead(kind: Kind, t: &Transition, ctx: &MessageContext) -> String {
    let name = &ctx.service_name;
    match kind {
        Kind::Failover => {
            format!("{name} is not working right now, so we have switched to a backup.")
        }
        Kind::Failback => format!("{name} is working again, and we have switched back to it."),
        Kind::Outage => format!(
            "{name} is not working right now, and neither is its backup. We are working on it \
             and will write again when it changes."
        ),
        Kind::OutageResolved => format!("{name} is working again."),
        Kind::Recovering => format!(
            "{name} looks healthy again. Customers stay on the backup until the recovery hold \
             has passed (automatic failback) or an operator switches back (manual failback)."
        ),
        Kind::MaintenanceStart => format!("{name} is under maintenance."),
        Kind::MaintenanceEnd => format!("Maintenance of {name} is over."),
        Kind::DrillStart => format!("A failover drill of {name} has started."),
        Kind::DrillEnd => format!("The failover drill of {name} has ended."),
        Kind::Update => format!("{name} is now {}.", t.to.as_str().replace('_', " ")),
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
    if t.evidence.is_empty() {
        d.push(("Evidence", "(none recorded)".to_owned()));
    }
    for e in &t.evidence {
        d.push(("Evidence", e.clone()));
    }
    if let Some(rb) = &ctx.runbook {
        d.push(("Runbook", rb.clone()));
    }
    d.push(("Status page", ctx.status_url.clone()));
    d
}

fn text(
    lead: &str,
    routes: &[RouteLine],
    ctx: &MessageContext,
    details: Option<&[(&'static str, String)]>,
) -> String {
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let mut s = String::new();
    let _ = writeln!(s, "{lead}");
    if !routes.is_empty() {
        let _ = writeln!(s, "\nWhere to go now:");
        for r in routes {
            let _ = writeln!(s, "  {}: {} ({})", r.id, r.target, r.side.as_str());
            let _ = writeln!(s, "    always the current one: {}", r.go);
        }
    }
    let _ = writeln!(s, "\nCurrent status: {}", ctx.status_url);
    if let Some(details) = details {
        let _ = writeln!(s, "\nFor on-call:");
        for (k, v) in details {
            let _ = writeln!(s, "  {k}: {v}");
        }
    }
    let _ = write!(s, "\n-- \nSent by Switchboard.\n");
    s
}

fn html(
    lead: &str,
    routes: &[RouteLine],
    ctx: &MessageContext,
    details: Option<&[(&'static str, String)]>,
) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html><body>\n");
    let _ = writeln!(s, "<p>{}</p>", escape(lead));
    if !routes.is_empty() {
        s.push_str("<h2>Where to go now</h2>\n<ul>\n");
        for r in routes {
            let _ = writeln!(
                s,
                "<li><strong>{}</strong>: {} ({}); always the current one: {}</li>",
                escape(&r.id),
                link(&r.target),
                r.side.as_str(),
                link(&r.go)
            );
        }
        s.push_str("</ul>\n");
    }
    let _ = writeln!(s, "<p>Current status: {}</p>", link(&ctx.status_url));
    if let Some(details) = details {
        s.push_str("<h2>For on-call</h2>\n<table>\n");
        for (k, v) in details {
            let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
        }
        s.push_str("</table>\n");
    }
    s.push_str("<p>Sent by Switchboard.</p>\n</body></html>\n");
    s
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
        }
    }

    fn with(from: State, to: State) -> Transition {
        Transition {
            from,
            to,
            ..failover()
        }
    }

    /// One snapshot check: the exact subject and the exact text body.
    fn check(t: &Transition, audience: Audience, ctx: &MessageContext, subject: &str, text: &str) {
        let m = render(t, audience, ctx);
        assert_eq!(m.subject, subject);
        assert_eq!(m.text, text, "text body:\n{}", m.text);
    }

    #[test]
    fn failover_for_customers() {
        check(
            &failover(),
            Audience::Customers,
            &ctx(Side::Backup),
            "[Switchboard] Ticket submission: switched to backup — use https://forms.example.net/support",
            "\
Ticket submission is not working right now, so we have switched to a backup.

Where to go now:
  submit-ticket: https://forms.example.net/support (backup)
    always the current one: http://127.0.0.1:9898/go/submit-ticket

Current status: http://127.0.0.1:9898/status

-- 
Sent by Switchboard.
",
        );
    }

    #[test]
    fn failover_for_oncall() {
        check(
            &failover(),
            Audience::Oncall,
            &ctx(Side::Backup),
            "[Switchboard] Ticket submission: switched to backup — use https://forms.example.net/support",
            "\
Ticket submission is not working right now, so we have switched to a backup.

Where to go now:
  submit-ticket: https://forms.example.net/support (backup)
    always the current one: http://127.0.0.1:9898/go/submit-ticket

Current status: http://127.0.0.1:9898/status

For on-call:
  State: operational -> failed_over
  Cause: primary_down
  Actor: system
  Reason: failover_when = any: 1 of 1 primary checks down
  Time: 2026-11-28T03:00:07.250Z
  Evidence: portal-form: down (connect: connection refused)
  Runbook: runbooks/ticket-submission.md
  Status page: http://127.0.0.1:9898/status

-- 
Sent by Switchboard.
",
        );
    }

    #[test]
    fn failback_for_customers() {
        check(
            &failback(),
            Audience::Customers,
            &ctx(Side::Primary),
            "[Switchboard] Ticket submission: back on primary — use https://support.example.com/hc/en-us/requests/new",
            "\
Ticket submission is working again, and we have switched back to it.

Where to go now:
  submit-ticket: https://support.example.com/hc/en-us/requests/new (primary)
    always the current one: http://127.0.0.1:9898/go/submit-ticket

Current status: http://127.0.0.1:9898/status

-- 
Sent by Switchboard.
",
        );
    }

    #[test]
    fn failback_for_oncall() {
        check(
            &failback(),
            Audience::Oncall,
            &ctx(Side::Primary),
            "[Switchboard] Ticket submission: back on primary — use https://support.example.com/hc/en-us/requests/new",
            "\
Ticket submission is working again, and we have switched back to it.

Where to go now:
  submit-ticket: https://support.example.com/hc/en-us/requests/new (primary)
    always the current one: http://127.0.0.1:9898/go/submit-ticket

Current status: http://127.0.0.1:9898/status

For on-call:
  State: recovering -> operational
  Cause: recovery_hold_elapsed
  Actor: system
  Reason: primary healthy for recovery_hold (5m)
  Time: 2026-11-28T03:10:07.250Z
  Evidence: portal-form: healthy (200 in 41 ms)
  Runbook: runbooks/ticket-submission.md
  Status page: http://127.0.0.1:9898/status

-- 
Sent by Switchboard.
",
        );
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
