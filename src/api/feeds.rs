//! `/history.atom` (Atom 1.0) and `/history.rss` (RSS 2.0): incidents and maintenances as feeds, rendered purely.
//!
//! One entry per incident (its whole timeline as the content) and one per maintenance in
//! progress or upcoming. Ids are the entries' permanent links on the status page, so a feed
//! reader sees an updated incident as the same entry with a newer `updated`.

use super::statuspage::{self, incident_link};
use crate::clock::Timestamp;
use crate::html::escape;
use crate::store::IncidentRecord;
use crate::view::{Extras, MaintenanceView, Snapshot};
use std::fmt::Write as _;

/// One feed entry, whichever format it is written in.
struct Entry {
    id: String,
    title: String,
    link: String,
    published: Timestamp,
    updated: Timestamp,
    /// HTML (escaped again when written into the XML).
    html: String,
}

fn incident_entry(snapshot: &Snapshot, i: &IncidentRecord) -> Entry {
    let mut html = String::new();
    for u in &i.updates {
        let _ = write!(
            html,
            "<p><strong>{}</strong> ({}): {}</p>",
            escape(u.status.words()),
            escape(&u.created_at.rfc3339()),
            escape(&u.body)
        );
    }
    let link = incident_link(snapshot, &i.public_id);
    Entry {
        id: link.clone(),
        title: format!("{} [{}]", i.name, i.status.words()),
        link,
        published: i.created_at,
        updated: i.updated_at,
        html,
    }
}

fn maintenance_entry(snapshot: &Snapshot, m: &MaintenanceView) -> Entry {
    let link = format!(
        "{}/status#maintenance-{}",
        base(snapshot),
        statuspage::maintenance_id(m)
    );
    let until = m.ends_at.map_or_else(
        || "until it is declared finished".to_owned(),
        |t| t.rfc3339(),
    );
    let when = match m.status {
        crate::view::MaintenanceStatus::Scheduled => "Scheduled",
        crate::view::MaintenanceStatus::InProgress => "In progress",
    };
    Entry {
        id: link.clone(),
        title: format!("{}: planned maintenance [{when}]", m.service_name),
        link,
        published: m.created_at,
        updated: m.created_at,
        html: format!(
            "<p><strong>{when}</strong>: {} from {} {}.</p>",
            escape(&m.reason),
            escape(&m.starts_at.rfc3339()),
            escape(&until)
        ),
    }
}

fn base(snapshot: &Snapshot) -> &str {
    snapshot.public_url.trim_end_matches('/')
}

/// Incidents first (newest first), then maintenances.
fn entries(snapshot: &Snapshot, extras: &Extras) -> Vec<Entry> {
    let mut out: Vec<Entry> = extras
        .incidents
        .iter()
        .map(|i| incident_entry(snapshot, i))
        .collect();
    out.extend(
        extras
            .maintenances
            .iter()
            .map(|m| maintenance_entry(snapshot, m)),
    );
    out
}

/// The feed's `updated`: its newest entry, or the snapshot when there is none.
fn feed_updated(snapshot: &Snapshot, entries: &[Entry]) -> Timestamp {
    entries
        .iter()
        .map(|e| e.updated)
        .max()
        .unwrap_or(snapshot.updated_at)
}

/// The Atom 1.0 document (RFC 4287).
pub fn atom(snapshot: &Snapshot, extras: &Extras) -> String {
    let entries = entries(snapshot, extras);
    let base = escape(base(snapshot));
    let title = escape(&snapshot.title);
    let mut xml = String::with_capacity(1024 + 1024 * entries.len());
    let _ = write!(
        xml,
        r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
<id>{base}/history.atom</id>
<title>{title}: incident history</title>
<updated>{updated}</updated>
<author><name>{title}</name></author>
<link rel="self" type="application/atom+xml" href="{base}/history.atom"/>
<link rel="alternate" type="text/html" href="{base}/status"/>
"#,
        updated = feed_updated(snapshot, &entries).rfc3339(),
    );
    for e in &entries {
        let _ = write!(
            xml,
            r#"<entry>
<id>{id}</id>
<title>{title}</title>
<published>{published}</published>
<updated>{updated}</updated>
<link rel="alternate" type="text/html" href="{link}"/>
<content type="html">{content}</content>
</entry>
"#,
            id = escape(&e.id),
            title = escape(&e.title),
            published = e.published.rfc3339(),
            updated = e.updated.rfc3339(),
            link = escape(&e.link),
            content = escape(&e.html),
        );
    }
    xml.push_str("</feed>\n");
    xml
}

/// The RSS 2.0 document.
pub fn rss(snapshot: &Snapshot, extras: &Extras) -> String {
    let entries = entries(snapshot, extras);
    let base = escape(base(snapshot));
    let title = escape(&snapshot.title);
    let mut xml = String::with_capacity(1024 + 1024 * entries.len());
    let _ = write!(
        xml,
        r#"<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">
<channel>
<title>{title}: incident history</title>
<link>{base}/status</link>
<description>Incidents and planned maintenance of {title}</description>
<language>en</language>
<lastBuildDate>{updated}</lastBuildDate>
<atom:link href="{base}/history.rss" rel="self" type="application/rss+xml"/>
"#,
        updated = rfc822(feed_updated(snapshot, &entries)),
    );
    for e in &entries {
        let _ = write!(
            xml,
            r#"<item>
<title>{title}</title>
<link>{link}</link>
<guid isPermaLink="true">{id}</guid>
<pubDate>{published}</pubDate>
<description>{content}</description>
</item>
"#,
            title = escape(&e.title),
            link = escape(&e.link),
            id = escape(&e.id),
            published = rfc822(e.updated),
            content = escape(&e.html),
        );
    }
    xml.push_str("</channel>\n</rss>\n");
    xml
}

/// RFC 822 dates as RSS wants them: `Sat, 14 Mar 2026 09:42:17 +0000`.
pub fn rfc822(t: Timestamp) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // RFC 3339 (`2026-03-14T09:42:17.381Z`) already has the calendar date worked out.
    let s = t.rfc3339();
    let field = |range: std::ops::Range<usize>| s.get(range).unwrap_or("00");
    let month = field(5..7)
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    // 1970-01-01 was a Thursday.
    let days = t.as_millis().div_euclid(86_400_000);
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    format!(
        "{weekday}, {} {month} {} {} +0000",
        field(8..10),
        field(0..4),
        field(11..19)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc822_dates_name_the_right_weekday() {
        assert_eq!(
            rfc822(Timestamp(1_773_481_337_381)),
            "Sat, 14 Mar 2026 09:42:17 +0000"
        );
        assert_eq!(rfc822(Timestamp(0)), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc822(Timestamp(1_764_460_800_000)),
            "Sun, 30 Nov 2025 00:00:00 +0000"
        );
    }
}
