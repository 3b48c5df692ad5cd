//! The `/status` HTML page, rendered purely from a `Snapshot`: no JavaScript, no external assets.
//!
//! The page must work when everything else is broken (it is what customers open during an
//! outage), so it is one self-contained document with inline CSS that refreshes itself.
//! Every interpolated string goes through `escape`, because service names and targets come
//! from configuration files we do not control the authors of.

use super::statuspage::{self, Indicator};
use crate::clock::Timestamp;
use crate::failover::{Side, State};
use crate::view::{target_display, RouteView, ServiceView, Snapshot, TargetKind};
use std::fmt::Write as _;
use std::time::Duration;

/// Seconds between automatic reloads; short enough to follow a failover, long enough to be cheap.
const REFRESH_SECONDS: u32 = 30;

pub use crate::html::escape;

/// Renders the whole page. `now` is only used for "5 minutes ago"; the shell passes the wall clock.
pub fn render(snapshot: &Snapshot, now: Timestamp) -> String {
    let status = statuspage::status(snapshot);
    let title = escape(&snapshot.title);
    let mut html = String::with_capacity(4096 + 1024 * snapshot.services.len());
    // `write!` into a String cannot fail; the results are ignored deliberately below.
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{title}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class="banner {class}" role="status">{description}</p>
</header>
<main>
<h2>Services</h2>
"#,
        class = banner_class(status.indicator),
        description = escape(&status.description),
    );
    if snapshot.services.is_empty() {
        html.push_str("<p>No services are configured.</p>\n");
    }
    for service in &snapshot.services {
        render_service(&mut html, snapshot, service, now);
    }
    let _ = write!(
        html,
        r#"</main>
<footer>
<p>Updated <time datetime="{updated}">{updated_text}</time>. This page reloads every {REFRESH_SECONDS} seconds.
Machine-readable: <a href="{base}/api/v2/summary.json">summary.json</a>.</p>
</footer>
</body>
</html>
"#,
        updated = escape(&snapshot.updated_at.rfc3339()),
        updated_text = escape(&human_time(snapshot.updated_at)),
        base = escape(snapshot.public_url.trim_end_matches('/')),
    );
    html
}

fn render_service(html: &mut String, snapshot: &Snapshot, service: &ServiceView, now: Timestamp) {
    let heading_id = format!("svc-{}", statuspage::stable_id("component", &service.id));
    let _ = write!(
        html,
        r#"<section class="service" aria-labelledby="{heading_id}">
<h3 id="{heading_id}">{name}</h3>
<p class="state {class}"><strong>{words}</strong> since <time datetime="{since}">{since_text}</time> ({ago}).</p>
"#,
        name = escape(&service.name),
        class = state_class(service.state),
        words = escape(statuspage::state_words(service.state)),
        since = escape(&service.since.rfc3339()),
        since_text = escape(&human_time(service.since)),
        ago = escape(&ago(now.since(service.since))),
    );
    if service.routes.is_empty() {
        html.push_str("<p>No contact route is configured for this service.</p>\n");
    } else {
        html.push_str("<ul class=\"routes\">\n");
        for route in &service.routes {
            render_route(html, snapshot, route);
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</section>\n");
}

fn render_route(html: &mut String, snapshot: &Snapshot, route: &RouteView) {
    let side = match route.active {
        Side::Primary => "primary route",
        Side::Backup => "backup route",
    };
    let go = format!(
        "{}/go/{}",
        snapshot.public_url.trim_end_matches('/'),
        route.id
    );
    let _ = writeln!(
        html,
        r#"<li>Contact us via the {side}: {target} <span class="muted">(stable link: <a href="{go}">{go_text}</a>)</span></li>"#,
        target = match route.active_kind() {
            TargetKind::Text => escape(route.active_display()),
            _ => link(route.active_target()),
        },
        go = escape(&go),
        go_text = escape(&go),
    );
}

/// A link for schemes a browser can safely follow; anything else (say `javascript:` from a
/// careless config) is shown as text, because escaping alone does not make an href safe.
fn link(target: &str) -> String {
    let lower = target.to_ascii_lowercase();
    let safe = ["https://", "http://", "mailto:", "tel:"]
        .iter()
        .any(|p| lower.starts_with(p));
    let text = escape(target_display(target));
    if safe {
        format!(r#"<a href="{}">{text}</a>"#, escape(target))
    } else {
        text
    }
}

fn banner_class(indicator: Indicator) -> &'static str {
    match indicator {
        Indicator::None => "ok",
        Indicator::Maintenance => "maint",
        Indicator::Minor => "minor",
        Indicator::Major | Indicator::Critical => "major",
    }
}

fn state_class(state: State) -> &'static str {
    match state.component_status() {
        "operational" => "ok",
        "under_maintenance" => "maint",
        "major_outage" => "major",
        _ => "minor",
    }
}

/// `2026-03-14 09:42 UTC`: readable, and unambiguous for readers in any zone.
fn human_time(t: Timestamp) -> String {
    let s = t.rfc3339();
    match (s.get(0..10), s.get(11..16)) {
        (Some(date), Some(hm)) => format!("{date} {hm} UTC"),
        _ => s,
    }
}

fn ago(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        0..=59 => return "just now".to_string(),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

/// Colours are chosen for at least 4.5:1 contrast (WCAG AA) between text and background.
const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fff;line-height:1.5}
header,main,footer{max-width:48rem;margin:0 auto;padding:0 1rem}
h1{font-size:1.6rem;margin:1.5rem 0 .75rem}
h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
h3{font-size:1.1rem;margin:0 0 .25rem}
.banner{padding:.9rem 1rem;border-radius:.4rem;font-weight:600;font-size:1.1rem}
.banner.ok{background:#1a7f37;color:#fff}
.banner.minor{background:#f2c744;color:#1b1b1b}
.banner.major{background:#b42318;color:#fff}
.banner.maint{background:#1f5fa8;color:#fff}
.service{border:1px solid #8c959f;border-radius:.4rem;padding:.75rem 1rem;margin:.75rem 0}
.state{margin:.25rem 0;padding-left:.6rem;border-left:.3rem solid #8c959f}
.state.ok{border-color:#1a7f37}.state.minor{border-color:#bf8700}.state.major{border-color:#b42318}.state.maint{border-color:#1f5fa8}
.routes{margin:.25rem 0;padding-left:1.2rem;overflow-wrap:anywhere}
.muted{color:#57606a}
a{color:#0550ae}
footer{color:#57606a;font-size:.9rem;margin-top:2rem;padding-bottom:2rem}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn unsafe_schemes_are_not_linked() {
        assert_eq!(link("javascript:alert(1)"), "javascript:alert(1)");
        assert_eq!(
            link("mailto:help@example.net"),
            r#"<a href="mailto:help@example.net">help@example.net</a>"#
        );
        assert!(link("https://example.com/?a=1&b=2").contains("a=1&amp;b=2"));
    }

    #[test]
    fn ago_reads_naturally() {
        let cases = [
            (0, "just now"),
            (59, "just now"),
            (60, "1 minute ago"),
            (150, "2 minutes ago"),
            (3600, "1 hour ago"),
            (2 * 86_400, "2 days ago"),
        ];
        for (secs, want) in cases {
            assert_eq!(ago(Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn human_time_is_minute_precision_utc() {
        assert_eq!(
            human_time(Timestamp(1_773_481_337_381)),
            "2026-03-14 09:42 UTC"
        );
    }
}
