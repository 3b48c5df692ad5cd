//! Pure grouping of e-mail announcements: which waiting parts become one message now, and which customers never hear of.
//!
//! Routes switch at once; e-mail does not have to. Alertmanager's `group_wait` and
//! `group_interval` are the model, with one setting for both (`[email] group_window`):
//!
//! - A part is *ready* at its transition's time, and for customers only once the change has
//!   lasted `customer_delay` (per service, default `[email] customer_delay`).
//! - An audience's ready parts are sent together, as ONE e-mail, when the first of them has
//!   waited `group_window` (collecting the burst) and the audience's previous group is at
//!   least `group_window` old: at most one e-mail per audience per window. Later changes go
//!   in the next group.
//! - Customers, per service: a change followed by another within its customer delay is
//!   *superseded* (customers hear only of the later one); when the last change of such a
//!   chain brings customers back where they were (a failover undone by its failback), every
//!   part of the chain is suppressed as *undone*. A chain is decided once its last part is
//!   ready, so nothing is decided on a change whose delay is still running.
//! - A part written with `group_window = "0s"` goes alone, as soon as it is ready: with
//!   both settings at zero every change is its own e-mail, at once, as before grouping.
//!
//! Drill mail never comes here: a drill times "e-mail accepted" against its target, so the
//! shell writes it straight to the outbox (see `hold`). No I/O, no clock: `now` is handed in.

use super::render::{render_group, Section, Templates};
use super::Audience;
use crate::clock::Timestamp;
use crate::failover::State;
use crate::store::{GroupDecision, NewAnnouncement, NewPart, WaitingPart, KIND_GROUPED};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Why a customer part is not sent (the `reason` label of
/// `switchboard_announcements_suppressed_total`).
pub const UNDONE: &str = "undone";
pub const SUPERSEDED: &str = "superseded";

/// How one service's e-mail waits: `[email] group_window`, and its customer delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub window: Duration,
    pub customer_delay: Duration,
}

/// Splits a transition's planned rows: e-mail to on-call and customers becomes parts that
/// wait for their group; everything else (drill mail, webhooks, chat, Statuspage) stays a
/// row for the outbox, sent at once. With both settings at zero nothing waits.
pub fn hold(
    rows: Vec<NewAnnouncement>,
    service_name: &str,
    at: Timestamp,
    hold: Hold,
) -> (Vec<NewAnnouncement>, Vec<NewPart>) {
    let mut now_rows = Vec::new();
    let mut parts = Vec::new();
    for row in rows {
        let delay = match (row.channel.as_str(), Audience::parse(&row.audience)) {
            ("email", Some(Audience::Customers)) => hold.customer_delay,
            ("email", Some(Audience::Oncall)) => Duration::ZERO,
            _ => {
                now_rows.push(row);
                continue;
            }
        };
        if delay.is_zero() && hold.window.is_zero() {
            now_rows.push(row);
            continue;
        }
        parts.push(NewPart {
            announcement: row,
            service_name: service_name.to_owned(),
            ready_at: at.plus(delay),
            window: hold.window,
        });
    }
    (now_rows, parts)
}

/// What customers are told a service is like in `state`: a change between two states that
/// read the same to them (degraded and operational) tells them nothing.
fn public_view(state: State) -> &'static str {
    match state {
        State::Operational | State::Degraded | State::Drill => "normal",
        State::FailedOver | State::Recovering => "backup",
        State::Outage => "outage",
        State::Maintenance => "maintenance",
    }
}

/// The decisions for `waiting` at `now`: groups to compose (rendered with `templates`) and
/// customer parts to suppress. `last` is when each audience's previous group was composed.
pub fn plan(
    waiting: &[WaitingPart],
    last: &HashMap<String, Timestamp>,
    now: Timestamp,
    templates: &Templates,
) -> Vec<GroupDecision> {
    let mut decisions = Vec::new();
    // Parts that may go out now, by audience (in id order, which is transition order).
    let mut sendable: BTreeMap<&str, Vec<&WaitingPart>> = BTreeMap::new();

    let mut customer_chains: BTreeMap<&str, Vec<&WaitingPart>> = BTreeMap::new();
    for p in waiting {
        if p.audience == Audience::Customers.as_str() {
            customer_chains
                .entry(p.service.as_str())
                .or_default()
                .push(p);
        } else if p.ready_at <= now {
            sendable.entry(p.audience.as_str()).or_default().push(p);
        }
    }
    for parts in customer_chains.values() {
        let mut i = 0;
        while i < parts.len() {
            // The chain runs while the next change came before this one's delay ended.
            let mut j = i;
            while j + 1 < parts.len() && parts[j + 1].at <= parts[j].ready_at {
                j += 1;
            }
            let last_part = parts[j];
            if now < last_part.ready_at {
                // Still within its delay: a later change may yet undo it. Later chains of
                // this service wait too, so customers hear of changes in order.
                break;
            }
            let undone = j > i && public_view(parts[i].from) == public_view(last_part.to);
            for p in &parts[i..j] {
                decisions.push(GroupDecision::Suppress {
                    part_id: p.id,
                    reason: if undone { UNDONE } else { SUPERSEDED }.to_owned(),
                });
            }
            if undone {
                decisions.push(GroupDecision::Suppress {
                    part_id: last_part.id,
                    reason: UNDONE.to_owned(),
                });
            } else {
                sendable
                    .entry(last_part.audience.as_str())
                    .or_default()
                    .push(last_part);
            }
            i = j + 1;
        }
    }

    for (audience, mut parts) in sendable {
        parts.sort_by_key(|p| p.id);
        let (alone, windowed): (Vec<&WaitingPart>, Vec<&WaitingPart>) =
            parts.into_iter().partition(|p| p.window.is_zero());
        for p in alone {
            decisions.push(compose(audience, &[p], templates));
        }
        let Some(first) = windowed.iter().min_by_key(|p| (p.ready_at, p.id)) else {
            continue;
        };
        let window = first.window;
        let mut due = first.ready_at.plus(window);
        if let Some(prev) = last.get(audience) {
            due = due.max(prev.plus(window));
        }
        if now >= due {
            decisions.push(compose(audience, &windowed, templates));
        }
    }
    decisions
}

/// One e-mail to `audience` carrying `parts`.
fn compose(audience: &str, parts: &[&WaitingPart], templates: &Templates) -> GroupDecision {
    let sections: Vec<Section<'_>> = parts
        .iter()
        .map(|p| Section {
            service_name: &p.service_name,
            subject: &p.subject,
            text: &p.text,
            html: p.html.as_deref(),
        })
        .collect();
    let m = render_group(
        templates,
        Audience::parse(audience).unwrap_or(Audience::Oncall),
        &sections,
    );
    // Everyone who would have had one of these messages gets the group.
    let mut recipients: Vec<String> = Vec::new();
    for p in parts {
        for r in &p.recipients {
            if !recipients.contains(r) {
                recipients.push(r.clone());
            }
        }
    }
    GroupDecision::Compose {
        part_ids: parts.iter().map(|p| p.id).collect(),
        audience: audience.to_owned(),
        kind: match parts {
            [one] => one.kind.clone(),
            _ => KIND_GROUPED.to_owned(),
        },
        recipients,
        subject: m.subject,
        text: m.text,
        html: (!m.html.is_empty()).then_some(m.html),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp(T0 + secs * 1000)
    }

    /// A waiting part: `audience`, `service`, `from -> to` at `t` seconds, ready after
    /// `delay` seconds, grouped over `window` seconds.
    fn part(
        id: i64,
        audience: &str,
        service: &str,
        (from, to): (State, State),
        t: i64,
        delay: i64,
        window: u64,
    ) -> WaitingPart {
        WaitingPart {
            id,
            transition_id: id,
            service: service.into(),
            service_name: service.to_uppercase(),
            from,
            to,
            at: at(t),
            audience: audience.into(),
            kind: "failover".into(),
            recipients: vec![format!("{audience}@example.com")],
            subject: format!(
                "[Switchboard] {}: {} -> {}",
                service.to_uppercase(),
                from,
                to
            ),
            text: format!("{service} changed\n\n-- \nSent by Switchboard.\n"),
            html: None,
            created_at: at(t),
            ready_at: at(t + delay),
            window: Duration::from_secs(window),
        }
    }

    const DOWN: (State, State) = (State::Operational, State::FailedOver);
    const BACK: (State, State) = (State::Recovering, State::Operational);
    const RECOVERING: (State, State) = (State::FailedOver, State::Recovering);
    const OUTAGE: (State, State) = (State::FailedOver, State::Outage);

    /// The decisions, as `compose [ids]` / `suppress id reason` lines.
    fn check(waiting: &[WaitingPart], last: &[(&str, i64)], now: i64, want: &[&str]) {
        let last = last.iter().map(|(a, t)| (a.to_string(), at(*t))).collect();
        let got: Vec<String> = plan(waiting, &last, at(now), &Templates::embedded())
            .into_iter()
            .map(|d| match d {
                GroupDecision::Compose {
                    part_ids, audience, ..
                } => format!("compose {audience} {part_ids:?}"),
                GroupDecision::Suppress { part_id, reason } => {
                    format!("suppress {part_id} {reason}")
                }
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_burst_to_oncall_waits_one_window_and_goes_as_one_message() {
        let w = [
            part(1, "oncall", "a", DOWN, 0, 0, 30),
            part(2, "oncall", "b", DOWN, 1, 0, 30),
            part(3, "oncall", "c", DOWN, 2, 0, 30),
        ];
        check(&w, &[], 29, &[]);
        check(&w, &[], 30, &["compose oncall [1, 2, 3]"]);
    }

    #[test]
    fn the_next_group_waits_a_window_after_the_previous_one() {
        let w = [part(4, "oncall", "a", BACK, 100, 0, 30)];
        // The previous group went at 90: not before 120, though the part came at 100.
        check(&w, &[("oncall", 90)], 119, &[]);
        check(&w, &[("oncall", 90)], 130, &["compose oncall [4]"]);
        // A long-quiet audience: the part's own window counts.
        check(&w, &[("oncall", 0)], 129, &[]);
        check(&w, &[("oncall", 0)], 130, &["compose oncall [4]"]);
    }

    #[test]
    fn customers_hear_nothing_of_a_blip_undone_within_the_delay() {
        let w = [
            part(1, "customers", "a", DOWN, 0, 120, 30),
            part(2, "customers", "a", BACK, 11, 120, 30),
        ];
        // Before the failback's delay has run, nothing is decided.
        check(&w, &[], 125, &[]);
        check(&w, &[], 131, &["suppress 1 undone", "suppress 2 undone"]);
    }

    #[test]
    fn a_change_that_lasts_reaches_customers_after_the_delay_and_the_window() {
        let w = [
            part(1, "customers", "a", DOWN, 0, 120, 30),
            part(2, "customers", "b", DOWN, 1, 120, 30),
        ];
        check(&w, &[], 149, &[]);
        check(&w, &[], 150, &["compose customers [1, 2]"]);
        // The failback, long after: its own delay and window.
        let back = [part(3, "customers", "a", BACK, 300, 120, 30)];
        check(&back, &[("customers", 150)], 449, &[]);
        check(
            &back,
            &[("customers", 150)],
            450,
            &["compose customers [3]"],
        );
    }

    #[test]
    fn a_superseded_change_gives_way_to_the_one_that_lasted() {
        // Failover, then the backup fails too within the delay: customers hear of the outage.
        let w = [
            part(1, "customers", "a", DOWN, 0, 120, 0),
            part(2, "customers", "a", OUTAGE, 60, 120, 0),
        ];
        check(
            &w,
            &[],
            180,
            &["suppress 1 superseded", "compose customers [2]"],
        );
    }

    #[test]
    fn oncall_parts_of_a_blip_are_all_sent_while_customers_hear_nothing() {
        let w = [
            part(1, "oncall", "a", DOWN, 0, 0, 30),
            part(2, "customers", "a", DOWN, 0, 120, 30),
            part(3, "oncall", "a", RECOVERING, 9, 0, 30),
            part(4, "oncall", "a", BACK, 11, 0, 30),
            part(5, "customers", "a", BACK, 11, 120, 30),
        ];
        check(&w, &[], 30, &["compose oncall [1, 3, 4]"]);
    }

    #[test]
    fn zero_window_and_delay_send_each_change_alone_at_once() {
        let w = [
            part(1, "oncall", "a", DOWN, 0, 0, 0),
            part(2, "oncall", "b", DOWN, 0, 0, 0),
        ];
        check(
            &w,
            &[("oncall", 0)],
            0,
            &["compose oncall [1]", "compose oncall [2]"],
        );
    }

    #[test]
    fn hold_keeps_drill_mail_and_other_channels_immediate() {
        let row = |audience: &str, channel: &str| NewAnnouncement {
            audience: audience.into(),
            channel: channel.into(),
            kind: "failover".into(),
            recipients: vec!["x@example.com".into()],
            subject: "s".into(),
            text: "t".into(),
            html: None,
        };
        let rows = vec![
            row("oncall", "email"),
            row("customers", "email"),
            row("drill", "email"),
            row("oncall", "chat"),
            row("public", "statuspage"),
        ];
        let h = Hold {
            window: Duration::from_secs(30),
            customer_delay: Duration::from_secs(120),
        };
        let (now, parts) = hold(rows.clone(), "A", at(0), h);
        assert_eq!(
            now.iter()
                .map(|r| format!("{}/{}", r.audience, r.channel))
                .collect::<Vec<_>>(),
            ["drill/email", "oncall/chat", "public/statuspage"]
        );
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.announcement.audience.as_str(), p.ready_at))
                .collect::<Vec<_>>(),
            [("oncall", at(0)), ("customers", at(120))]
        );
        let zero = Hold {
            window: Duration::ZERO,
            customer_delay: Duration::ZERO,
        };
        let (now, parts) = hold(rows.clone(), "A", at(0), zero);
        assert_eq!(now, rows);
        assert!(parts.is_empty());
    }
}
