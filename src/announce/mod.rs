//! Announcements: render messages for a transition (pure), deliver them from the durable outbox.
//!
//! The path of an announcement, and why it has this shape:
//!
//! 1. The shell turns a transition into `NewAnnouncement`s with [`plan`] (pure: which
//!    audiences hear about this kind of change, rendered by [`render::render`]).
//! 2. It commits them together with the transition (`Store::commit_transition`, one
//!    transaction), then wakes the delivery loop. Nothing is sent inline in the decision path.
//!    E-mail to on-call and customers first waits as *parts* for its group ([`group`]):
//!    one message per audience per `group_window`, customers only about changes that
//!    lasted `customer_delay`; the outbox loop composes due groups into rows.
//! 3. [`outbox::run`] sends due rows through the transport of their channel (e-mail,
//!    `on_switch` webhook, Statuspage API, chat webhook) and records the result; a failure
//!    only reschedules the row (exponential backoff), it never drops it, until the row is
//!    older than the give-up age.

pub mod chat;
pub mod email;
pub mod group;
pub mod http;
pub mod outbox;
pub mod render;
pub mod statuspage_push;
pub mod transport;
pub mod webhook;
pub mod zendesk;

pub use email::{EmailError, Mailer};
pub use outbox::Delivery;
pub use render::{render, render_with, Kind, Message, MessageContext, Templates};

use crate::config::Audiences;
use crate::failover::Transition;
use crate::store::NewAnnouncement;
use std::fmt;

/// Who an announcement is for. Each has its own recipients in `[audiences]` and its own
/// wording: customers get plain words and no internals, on-call gets the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Audience {
    Oncall,
    Customers,
    Drill,
}

impl Audience {
    pub const ALL: [Audience; 3] = [Audience::Oncall, Audience::Customers, Audience::Drill];

    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Oncall => "oncall",
            Audience::Customers => "customers",
            Audience::Drill => "drill",
        }
    }

    pub fn parse(s: &str) -> Option<Audience> {
        Audience::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The configured recipients of this audience.
    pub fn recipients(self, audiences: &Audiences) -> &[String] {
        match self {
            Audience::Oncall => &audiences.oncall,
            Audience::Customers => &audiences.customers,
            Audience::Drill => &audiences.drill,
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The e-mail announcements of `t` with the built-in templates: one per audience that
/// hears about this kind of change and has recipients configured. The caller commits them
/// with the transition.
pub fn plan(t: &Transition, ctx: &MessageContext, audiences: &Audiences) -> Vec<NewAnnouncement> {
    let channels = Channels {
        audiences,
        templates: &Templates::embedded(),
        statuspage_component: None,
        chat: false,
    };
    plan_kind(Kind::of(t), t, ctx, &channels)
}

/// Where announcements go, beyond the transition itself.
#[derive(Clone, Copy, Debug)]
pub struct Channels<'a> {
    pub audiences: &'a Audiences,
    pub templates: &'a Templates,
    /// The service's Statuspage component, when `[statuspage_push]` is configured and the
    /// service names one.
    pub statuspage_component: Option<&'a str>,
    /// Whether `[chat]` is configured.
    pub chat: bool,
}

/// Every outbox row for a `kind` message about `t` (for `Flapping`, the transition it
/// follows): one e-mail per audience with recipients, one chat message with on-call's
/// news, one Statuspage request for what customers see. Rendered now, sent later.
pub fn plan_kind(
    kind: Kind,
    t: &Transition,
    ctx: &MessageContext,
    ch: &Channels<'_>,
) -> Vec<NewAnnouncement> {
    let audiences = kind.audiences();
    let mut rows: Vec<NewAnnouncement> = audiences
        .iter()
        .filter(|a| !a.recipients(ch.audiences).is_empty())
        .map(|&audience| {
            let m = render_with(ch.templates, kind, t, audience, ctx);
            NewAnnouncement {
                audience: audience.as_str().to_owned(),
                channel: "email".to_owned(),
                kind: kind.as_str().to_owned(),
                recipients: audience.recipients(ch.audiences).to_vec(),
                subject: m.subject,
                text: m.text,
                html: Some(m.html),
            }
        })
        .collect();
    if ch.chat && !audiences.is_empty() {
        // The chat channel is on-call's (drills included): it gets their wording.
        let audience = if audiences.contains(&Audience::Drill) {
            Audience::Drill
        } else {
            Audience::Oncall
        };
        let m = render_with(ch.templates, kind, t, audience, ctx);
        rows.push(chat::plan(kind, t, ctx, &m));
    }
    if let Some(component) = ch.statuspage_component {
        if audiences.contains(&Audience::Customers) {
            let m = render_with(ch.templates, kind, t, Audience::Customers, ctx);
            rows.extend(statuspage_push::plan(
                kind,
                t,
                component,
                &ctx.service_name,
                &m.text,
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::failover::{Cause, Side, State};
    use crate::view::RouteView;

    fn ctx(active: Side) -> MessageContext {
        MessageContext {
            service_name: "Ticket submission".into(),
            routes: vec![RouteView {
                id: "submit-ticket".into(),
                service: "ticket-submission".into(),
                primary: "https://support.example.com/new".into(),
                backup: "https://forms.example.net/support".into(),
                active,
            }],
            status_url: "http://127.0.0.1:9898/status".into(),
            go_base_url: "http://127.0.0.1:9898/go/".into(),
            runbook: None,
            api_url: String::new(),
            holds: Vec::new(),
        }
    }

    fn t(from: State, to: State) -> Transition {
        Transition {
            service: "ticket-submission".into(),
            from,
            to,
            cause: Cause::PrimaryDown,
            at: Timestamp(0),
            actor: "system".into(),
            reason: "r".into(),
            evidence: vec![],
            public_message: None,
        }
    }

    fn audiences() -> Audiences {
        Audiences {
            oncall: vec!["oncall@example.com".into()],
            customers: vec!["announce@example.com".into()],
            drill: vec!["ops@example.com".into()],
        }
    }

    #[test]
    fn failover_goes_to_oncall_and_customers_with_their_recipients() {
        let anns = plan(
            &t(State::Operational, State::FailedOver),
            &ctx(Side::Backup),
            &audiences(),
        );
        let got: Vec<_> = anns
            .iter()
            .map(|a| {
                (
                    a.audience.as_str(),
                    a.recipients.clone(),
                    a.channel.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("oncall", vec!["oncall@example.com".to_string()], "email"),
                (
                    "customers",
                    vec!["announce@example.com".to_string()],
                    "email"
                ),
            ]
        );
        assert!(anns.iter().all(|a| a.html.is_some()));
    }

    #[test]
    fn audiences_without_recipients_are_skipped() {
        let mut a = audiences();
        a.customers.clear();
        let anns = plan(
            &t(State::Operational, State::FailedOver),
            &ctx(Side::Backup),
            &a,
        );
        assert_eq!(anns.len(), 1);
        assert_eq!(anns[0].audience, "oncall");
    }

    #[test]
    fn drills_reach_only_the_drill_audience_and_degraded_reaches_nobody() {
        let anns = plan(
            &t(State::Operational, State::Drill),
            &ctx(Side::Backup),
            &audiences(),
        );
        assert_eq!(
            anns.iter().map(|a| a.audience.as_str()).collect::<Vec<_>>(),
            ["drill"]
        );
        assert!(plan(
            &t(State::Operational, State::Degraded),
            &ctx(Side::Primary),
            &audiences()
        )
        .is_empty());
    }

    #[test]
    fn audience_names_round_trip() {
        for a in Audience::ALL {
            assert_eq!(Audience::parse(a.as_str()), Some(a));
        }
        assert_eq!(Audience::parse("everyone"), None);
    }
}
