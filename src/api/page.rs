//! The `/status` HTML page, rendered purely from a `Snapshot` and its `Extras`: no JavaScript, no external assets.
//!
//! The page must work when everything else is broken (it is what customers open during an
//! outage), so it is one self-contained document with inline CSS and inline SVG that
//! refreshes itself. Every interpolated string goes through `escape`, because service names
//! and targets come from configuration files we do not control the authors of.
//!
//! Accessibility: `lang`, landmarks (header, main, footer), one h1 then h2 sections then h3
//! items, text colours of at least 4.5:1 against their background, and every graphic (uptime
//! bars, sparkline) an `img` with a text alternative that says what it shows.

use super::statuspage::{self, Indicator};
use crate::clock::Timestamp;
use crate::failover::{Side, State};
use crate::history::{Agg, ServiceHistory, DAYS};
use crate::store::IncidentRecord;
use crate::view::{
    target_display, Extras, MaintenanceStatus, MaintenanceView, RouteView, ServiceView, Snapshot,
    TargetKind,
};
use std::fmt::Write as _;
use std::time::Duration;

/// Seconds between automatic reloads; short enough to follow a failover, long enough to be cheap.
const REFRESH_SECONDS: u32 = 30;

/// Resolved incidents shown under "Past incidents"; the feeds and `incidents.json` have more.
const PAST_INCIDENTS: usize = 10;

const DAY_MS: i64 = 86_400_000;

pub use crate::html::escape;

/// Renders the whole page. `extras.now` is used for "5 minutes ago" and the 90 days of bars.
pub fn render(snapshot: &Snapshot, extras: &Extras) -> String {
    let now = extras.now;
    let status = statuspage::status(snapshot);
    let title = escape(&snapshot.title);
    let mut html = String::with_capacity(8192 + 6144 * snapshot.services.len());
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
"#,
        class = banner_class(status.indicator),
        description = escape(&status.description),
    );
    let (active, past): (Vec<&IncidentRecord>, Vec<&IncidentRecord>) =
        extras.incidents.iter().partition(|i| i.is_open());
    if !active.is_empty() {
        html.push_str(
            "<section aria-labelledby=\"h-active\">\n<h2 id=\"h-active\">Active incidents</h2>\n",
        );
        for i in &active {
            render_incident(&mut html, snapshot, i, now);
        }
        html.push_str("</section>\n");
    }
    if !extras.maintenances.is_empty() {
        html.push_str(
            "<section aria-labelledby=\"h-maint\">\n<h2 id=\"h-maint\">Scheduled maintenance</h2>\n",
        );
        for m in &extras.maintenances {
            render_maintenance(&mut html, m);
        }
        html.push_str("</section>\n");
    }
    html.push_str(
        "<section aria-labelledby=\"h-services\">\n<h2 id=\"h-services\">Services</h2>\n",
    );
    if snapshot.services.is_empty() {
        html.push_str("<p>No services are configured.</p>\n");
    }
    for service in &snapshot.services {
        let history = extras.history.service(&service.id);
        let incident = active.iter().find(|i| i.service == service.id).copied();
        render_service(&mut html, snapshot, service, incident, history, now);
    }
    html.push_str("</section>\n");
    html.push_str("<section aria-labelledby=\"h-past\">\n<h2 id=\"h-past\">Past incidents</h2>\n");
    if past.is_empty() {
        html.push_str("<p>No incidents reported recently.</p>\n");
    }
    for i in past.iter().take(PAST_INCIDENTS) {
        render_incident(&mut html, snapshot, i, now);
    }
    html.push_str("</section>\n");
    let _ = write!(
        html,
        r#"</main>
<footer>
<p>Updated <time datetime="{updated}">{updated_text}</time>. This page reloads every {REFRESH_SECONDS} seconds.
Machine-readable: <a href="{base}/api/v2/summary.json">summary.json</a>.
Follow incidents: <a href="{base}/history.atom">Atom feed</a>, <a href="{base}/history.rss">RSS feed</a>.</p>
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

fn render_incident(html: &mut String, snapshot: &Snapshot, i: &IncidentRecord, now: Timestamp) {
    let service = snapshot
        .services
        .iter()
        .find(|s| s.id == i.service)
        .map_or(i.service.as_str(), |s| s.name.as_str());
    let heading = format!("incident-{}", escape(&i.public_id));
    let _ = write!(
        html,
        r#"<article class="incident {class}" id="{heading}" aria-labelledby="{heading}-h">
<h3 id="{heading}-h">{name}</h3>
<p class="muted">{status} · {service} · {impact} impact · started <time datetime="{started}">{started_text}</time> ({ago})</p>
<ol class="timeline">
"#,
        class = if i.is_open() { "open" } else { "closed" },
        name = escape(&i.name),
        status = escape(i.status.words()),
        service = escape(service),
        impact = escape(i.impact.as_str()),
        started = escape(&i.started_at.rfc3339()),
        started_text = escape(&human_time(i.started_at)),
        ago = escape(&ago(now.since(i.started_at))),
    );
    for u in &i.updates {
        let _ = writeln!(
            html,
            r#"<li><strong>{status}</strong> <time datetime="{at}">{at_text}</time><p>{body}</p></li>"#,
            status = escape(u.status.words()),
            at = escape(&u.created_at.rfc3339()),
            at_text = escape(&human_time(u.created_at)),
            body = escape(&u.body),
        );
    }
    html.push_str("</ol>\n</article>\n");
}

fn render_maintenance(html: &mut String, m: &MaintenanceView) {
    let id = statuspage::maintenance_id(m);
    let status = match m.status {
        MaintenanceStatus::Scheduled => "Scheduled",
        MaintenanceStatus::InProgress => "In progress",
    };
    let until = m.ends_at.map_or_else(
        || "until an operator ends it".to_owned(),
        |t| {
            format!(
                r#"to <time datetime="{}">{}</time>"#,
                escape(&t.rfc3339()),
                escape(&human_time(t))
            )
        },
    );
    let _ = writeln!(
        html,
        r#"<article class="maintenance" id="maintenance-{id}" aria-labelledby="maintenance-{id}-h">
<h3 id="maintenance-{id}-h">{name}: planned maintenance</h3>
<p><strong>{status}</strong>: from <time datetime="{from}">{from_text}</time> {until}. {reason}</p>
</article>"#,
        id = escape(&id),
        name = escape(&m.service_name),
        from = escape(&m.starts_at.rfc3339()),
        from_text = escape(&human_time(m.starts_at)),
        reason = escape(&m.reason),
    );
}

fn render_service(
    html: &mut String,
    snapshot: &Snapshot,
    service: &ServiceView,
    incident: Option<&IncidentRecord>,
    history: Option<&ServiceHistory>,
    now: Timestamp,
) {
    let cid = statuspage::stable_id("component", &service.id);
    let heading_id = format!("svc-{cid}");
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
    if let Some(i) = incident {
        let _ = writeln!(
            html,
            r##"<p>Incident: <a href="#incident-{id}">{name}</a> ({status}).</p>"##,
            id = escape(&i.public_id),
            name = escape(&i.name),
            status = escape(i.status.words()),
        );
    }
    if service.routes.is_empty() {
        html.push_str("<p>No contact route is configured for this service.</p>\n");
    } else {
        html.push_str("<ul class=\"routes\">\n");
        for route in &service.routes {
            render_route(html, snapshot, route);
        }
        html.push_str("</ul>\n");
    }
    let empty = ServiceHistory::default();
    let history = history.unwrap_or(&empty);
    render_bars(html, &cid, history, service.created_at, now);
    render_sparkline(html, &cid, history, now);
    html.push_str("</section>\n");
}

/// Bar colours: each at least 3:1 against white (WCAG 1.4.11 for graphics), and never the
/// only carrier of meaning (every bar has a text alternative).
fn bar_colour(day: Option<&Agg>) -> (&'static str, &'static str) {
    match day.and_then(Agg::uptime) {
        None => ("#6e7781", "no data"),
        Some(u) if u >= 0.999 => ("#1a7f37", "operational"),
        Some(u) if u >= 0.95 => ("#9a6700", "some failed probes"),
        Some(_) => ("#b42318", "outage"),
    }
}

fn percent(u: f64) -> String {
    let p = u * 100.0;
    if p >= 99.995 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.2}%")
    }
}

/// The days of the uptime bars that have one colour.
struct BarClass {
    fill: &'static str,
    words: &'static str,
    /// One short vertical stroke per day (`M{x} 17h8`).
    path: String,
    /// (uptime, date) of its days with failed probes.
    failed_days: Vec<(f64, String)>,
    days: usize,
}

/// Days with failed probes named in a bar colour's title; the rest are counted.
const WORST_DAYS_LISTED: usize = 5;

/// 90 bars, one per UTC day, oldest first, as an inline SVG with a summary and a title per
/// colour naming the worst days.
/// While the history is shorter than the bars, the summary says since when it counts (the
/// service's first appearance when that falls on its first day of data, else that day), so a
/// day-old service never claims an uptime "over the last 90 days".
fn render_bars(
    html: &mut String,
    cid: &str,
    history: &ServiceHistory,
    first_seen: Timestamp,
    now: Timestamp,
) {
    let today = now.as_millis().div_euclid(DAY_MS) * DAY_MS;
    let window_start = today - (DAYS - 1) * DAY_MS;
    let first_data = history.days.first().map(|(day, _)| {
        let day = day.as_millis();
        if (day..day + DAY_MS).contains(&first_seen.as_millis()) {
            first_seen
        } else {
            Timestamp(day)
        }
    });
    let summary = match (history.uptime(), first_data) {
        (Some(u), Some(first)) if first.as_millis() > window_start => format!(
            "{} uptime of the primary route since {}",
            percent(u),
            human_time(first)
        ),
        (Some(u), _) => format!(
            "{} uptime of the primary route over the last {DAYS} days",
            percent(u)
        ),
        (None, _) => format!("No probe history yet for the last {DAYS} days"),
    };
    let _ = write!(
        html,
        r##"<figure class="uptime">
<svg viewBox="0 0 {w} 34" preserveAspectRatio="none" role="img" aria-labelledby="up-{cid}" focusable="false">
<title id="up-{cid}">{summary_text}. One bar per day, oldest first.</title>
"##,
        w = DAYS * 10,
        summary_text = escape(&summary),
    );
    // One path per colour, not one element per day: ninety titled bars per service made a
    // page of dozens of services a megabyte. Each path's title says what its colour means,
    // how many days have it and, for days with failed probes, which (the worst first).
    let mut classes: Vec<BarClass> = Vec::new();
    let mut by_day = history.days.iter().peekable();
    for n in 0..DAYS {
        let day = today - (DAYS - 1 - n) * DAY_MS;
        while by_day.next_if(|(d, _)| d.as_millis() < day).is_some() {}
        let agg = by_day
            .next_if(|(d, _)| d.as_millis() == day)
            .map(|(_, a)| a);
        let (fill, words) = bar_colour(agg);
        let i = match classes.iter().position(|c| c.fill == fill) {
            Some(i) => i,
            None => {
                classes.push(BarClass {
                    fill,
                    words,
                    path: String::new(),
                    failed_days: Vec::new(),
                    days: 0,
                });
                classes.len() - 1
            }
        };
        let class = &mut classes[i];
        let _ = write!(class.path, "M{} 17h8", n * 10);
        class.days += 1;
        if let Some(u) = agg.and_then(Agg::uptime).filter(|u| *u < 0.999) {
            let mut date = Timestamp(day).rfc3339();
            date.truncate(10);
            class.failed_days.push((u, date));
        }
    }
    // Every bar is a stroke 34 high: the commonest colour one dashed line (a dash per day,
    // the gaps between bars), the other colours drawn over it, a short stroke per day.
    let base = (0..classes.len())
        .max_by_key(|&i| (classes[i].days, std::cmp::Reverse(i)))
        .unwrap_or(0);
    for (i, class) in classes.into_iter().enumerate() {
        let BarClass {
            fill,
            words,
            path: d,
            failed_days: mut days,
            days: count,
        } = class;
        let plural = if count == 1 { "" } else { "s" };
        let mut title = format!("{count} day{plural}: {words}");
        if !days.is_empty() {
            days.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            let listed: Vec<String> = days
                .iter()
                .take(WORST_DAYS_LISTED)
                .map(|(u, date)| format!("{date} {}", percent(*u)))
                .collect();
            let _ = write!(title, " ({}", listed.join(", "));
            if days.len() > WORST_DAYS_LISTED {
                let _ = write!(title, " and {} more", days.len() - WORST_DAYS_LISTED);
            }
            title.push(')');
        }
        let title = escape(&title);
        if i == base {
            let _ = writeln!(
                html,
                r#"<path d="M0 17h{w}" stroke="{fill}" stroke-width="34" stroke-dasharray="8 2"><title>{title}</title></path>"#,
                w = DAYS * 10,
            );
        } else {
            let _ = writeln!(
                html,
                r#"<path d="{d}" stroke="{fill}" stroke-width="34"><title>{title}</title></path>"#
            );
        }
    }
    let _ = writeln!(
        html,
        r#"</svg>
<figcaption><span>{DAYS} days ago</span><span>{summary}</span><span>Today</span></figcaption>
</figure>"#,
        summary = escape(&summary),
    );
}

/// Mean response time per hour over the last 24 hours, as an inline SVG line.
fn render_sparkline(html: &mut String, cid: &str, history: &ServiceHistory, now: Timestamp) {
    let points: Vec<(i64, f64)> = history
        .hours
        .iter()
        .filter_map(|(t, a)| a.mean_latency_ms().map(|m| (t.as_millis(), m)))
        .collect();
    let max = history
        .hours
        .iter()
        .map(|(_, a)| a.latency_max_ms)
        .max()
        .unwrap_or(0);
    let mut all = Agg::default();
    for (_, a) in &history.hours {
        all.merge(a);
    }
    let Some(mean) = all.mean_latency_ms() else {
        html.push_str("<p class=\"muted\">Response time: no probes in the last 24 hours.</p>\n");
        return;
    };
    // Latency is kept in whole milliseconds; a fast target reads "under 1 ms", never "0 ms".
    let ms = |v: f64| {
        if v < 1.0 {
            "under 1 ms".to_owned()
        } else {
            format!("{v:.0} ms")
        }
    };
    let text = format!(
        "Response time over the last 24 hours: {} on average, {} at most",
        ms(mean),
        ms(max as f64)
    );
    const W: f64 = 300.0;
    const H: f64 = 40.0;
    const PAD: f64 = 4.0;
    let top = points.iter().map(|(_, m)| *m).fold(1.0_f64, f64::max);
    // 24 hourly slots ending with the current hour, so the line's position says when.
    let first_hour = now.as_millis().div_euclid(3_600_000) * 3_600_000 - 23 * 3_600_000;
    let xy = |(t, m): (i64, f64)| {
        let slot = ((t - first_hour) as f64 / 3_600_000.0).clamp(0.0, 23.0);
        let x = PAD + slot / 23.0 * (W - 2.0 * PAD);
        let y = H - PAD - (m / top) * (H - 2.0 * PAD);
        (x, y)
    };
    let _ = write!(
        html,
        r#"<figure class="spark">
<svg viewBox="0 0 {W} {H}" role="img" aria-labelledby="rt-{cid}" focusable="false">
<title id="rt-{cid}">{title}. One point per hour.</title>
"#,
        title = escape(&text),
    );
    if points.len() == 1 {
        let (x, y) = xy(points[0]);
        let _ = writeln!(
            html,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#0550ae"/>"##
        );
    } else {
        let line: Vec<String> = points
            .iter()
            .map(|p| {
                let (x, y) = xy(*p);
                // Whole units of a 300 by 40 drawing are finer than any screen shows it.
                format!("{x:.0},{y:.0}")
            })
            .collect();
        let _ = writeln!(
            html,
            r##"<polyline points="{}" fill="none" stroke="#0550ae" stroke-width="2" stroke-linejoin="round"/>"##,
            line.join(" ")
        );
    }
    let _ = writeln!(
        html,
        r#"</svg>
<figcaption>{}</figcaption>
</figure>"#,
        escape(&text)
    );
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
pub(crate) const CSS: &str = "
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
figure{margin:.6rem 0 0}
figure svg{display:block;width:100%;height:2.1rem}
.spark svg{height:auto;max-width:20rem;border-bottom:1px solid #8c959f}
figcaption{display:flex;justify-content:space-between;gap:.5rem;flex-wrap:wrap;font-size:.85rem;color:#57606a}
.incident,.maintenance{border-left:.3rem solid #8c959f;padding:.25rem 0 .25rem .8rem;margin:.75rem 0}
.incident.open{border-color:#b42318}
.maintenance{border-color:#1f5fa8}
.timeline{margin:.25rem 0;padding-left:1.2rem}
.timeline p{margin:.1rem 0 .5rem}
@media (max-width:30rem){h1{font-size:1.3rem}.service{padding:.6rem}figcaption span:first-child,figcaption span:last-child{display:none}}
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

    /// WCAG 2 relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let hex = hex.trim_start_matches('#');
        let channel = |i: usize| {
            let v = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex colour")) / 255.0;
            if v <= 0.039_28 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    /// The value of `property` in a CSS declaration block as `#rrggbb`, if it is a hex colour.
    fn colour(block: &str, property: &str) -> Option<String> {
        block.split(';').find_map(|decl| {
            let (k, v) = decl.split_once(':')?;
            let v = v.trim().strip_prefix('#')?;
            if k.trim() != property {
                return None;
            }
            match v.len() {
                6 => Some(format!("#{v}")),
                3 => Some(v.chars().fold("#".to_owned(), |mut s, c| {
                    s.push(c);
                    s.push(c);
                    s
                })),
                _ => None,
            }
        })
    }

    #[test]
    fn every_text_colour_in_the_css_has_at_least_4_5_to_1_contrast() {
        let mut checked = 0;
        for rule in CSS.split('}') {
            let Some((selector, block)) = rule.split_once('{') else {
                continue;
            };
            let Some(fg) = colour(block, "color") else {
                continue;
            };
            // Text without its own background sits on the page's white.
            let bg = colour(block, "background").unwrap_or_else(|| "#ffffff".to_owned());
            let ratio = contrast(&fg, &bg);
            assert!(
                ratio >= 4.5,
                "{} : {fg} on {bg} is only {ratio:.2}:1",
                selector.trim()
            );
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} rules checked");
    }

    #[test]
    fn bar_and_line_colours_stand_out_from_white_as_graphics_must() {
        let none = Agg::default();
        let mut ok = Agg::default();
        ok.add(true, 1);
        let mut bad = Agg::default();
        bad.add(false, 1);
        let mut mixed = Agg::default();
        for i in 0..100 {
            mixed.add(i != 0, 1);
        }
        for day in [None, Some(&none), Some(&ok), Some(&bad), Some(&mixed)] {
            let (fill, _) = bar_colour(day);
            assert!(contrast(fill, "#ffffff") >= 3.0, "{fill}");
        }
        assert!(contrast("#0550ae", "#ffffff") >= 3.0);
        assert_eq!(bar_colour(Some(&mixed)).1, "some failed probes");
        assert_eq!(bar_colour(Some(&bad)).1, "outage");
        assert_eq!(bar_colour(None).1, "no data");
    }

    /// The uptime summary of `render_bars` for a service seen first at `first_seen` whose
    /// history has one day of probes, `days_ago` days before today.
    fn uptime_summary(first_seen: Timestamp, days_ago: i64) -> String {
        let now = Timestamp(1_773_481_337_381); // 2026-03-14T09:42Z
        let today = now.as_millis().div_euclid(DAY_MS) * DAY_MS;
        let mut agg = Agg::default();
        agg.add(true, 10);
        let history = ServiceHistory {
            days: vec![(Timestamp(today - days_ago * DAY_MS), agg)],
            hours: Vec::new(),
        };
        let mut html = String::new();
        render_bars(&mut html, "c", &history, first_seen, now);
        let start = html.find("<title id=").expect("summary title");
        let rest = &html[start..];
        rest[rest.find('>').expect("tag") + 1..rest.find(". One bar").expect("end")].to_string()
    }

    #[test]
    fn uptime_says_since_when_while_the_history_is_shorter_than_the_bars() {
        let now = 1_773_481_337_381;
        assert_eq!(
            uptime_summary(Timestamp(now - 3_600_000), 0),
            "100% uptime of the primary route since 2026-03-14 08:42 UTC",
            "a service first seen an hour ago"
        );
        assert_eq!(
            uptime_summary(Timestamp(0), 3),
            "100% uptime of the primary route since 2026-03-11 00:00 UTC",
            "first seen long before its oldest day of data: that day"
        );
        assert_eq!(
            uptime_summary(Timestamp(0), DAYS - 1),
            "100% uptime of the primary route over the last 90 days",
            "history as long as the bars"
        );
    }

    #[test]
    fn a_page_without_history_or_incidents_still_says_so_in_words() {
        let snapshot = Snapshot {
            title: "T".into(),
            public_url: "http://127.0.0.1:1".into(),
            updated_at: Timestamp(0),
            services: vec![ServiceView {
                id: "s".into(),
                name: "S".into(),
                state: State::Operational,
                since: Timestamp(0),
                cause: "startup".into(),
                checks: Vec::new(),
                routes: Vec::new(),
                created_at: Timestamp(0),
                maintenance_until: None,
            }],
        };
        let html = render(&snapshot, &Extras::default());
        assert!(html.contains("No probe history yet for the last 90 days"));
        assert!(html.contains("Response time: no probes in the last 24 hours."));
        assert!(html.contains("No incidents reported recently."));
        assert!(!html.contains("Active incidents"));
        assert!(!html.contains("Scheduled maintenance"));
    }
}
