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
    /// A vendor the service corroborates with declares an outage while our own checks pass:
    /// on-call's note, not a transition (the shell raises it, `failover::vendor`).
    VendorNotice,
    /// This vantage sees most of its targets' hosts fail at once and suspects its own
    /// network: on-call's note, not a transition (`crate::vantage`); customers hear nothing.
    VantageSuspect,
    /// The vantage sees healthy targets again: the end of that episode, to on-call.
    VantageClear,
    /// Any other change (e.g. operational <-> degraded): recorded, not announced.
    Update,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
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
        Kind::VendorNotice,
        Kind::VantageSuspect,
        Kind::VantageClear,
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
            Kind::VendorNotice => "vendor_notice",
            Kind::VantageSuspect => "vantage_suspect",
            Kind::VantageClear => "vantage_clear",
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
            Kind::Recovering
            | Kind::Flapping
            | Kind::VendorNotice
            | Kind::VantageSuspect
            | Kind::VantageClear => &[Audience::Oncall],
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
mod tests;
