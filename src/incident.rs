//! Incidents on the status page: what a transition does to a service's open incident (pure).
//!
//! A failover or an outage opens an incident; each later transition of the same service adds
//! an update and moves its status on (identified or investigating -> monitoring while the
//! primary proves itself -> resolved when the service is operational again). `plan` decides
//! that from the transition and the open incident alone, with no I/O and no clock read; the
//! store applies the plan inside the transition's own transaction (`Store::commit_transition`),
//! so a crash can never keep a transition and lose the incident it caused.

use crate::failover::{Side, State, Transition};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Statuspage's incident status enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
    Postmortem,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 5] = [
        IncidentStatus::Investigating,
        IncidentStatus::Identified,
        IncidentStatus::Monitoring,
        IncidentStatus::Resolved,
        IncidentStatus::Postmortem,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Postmortem => "postmortem",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentStatus> {
        IncidentStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Resolved and postmortem incidents are over; the others are shown as active.
    pub fn is_open(self) -> bool {
        !matches!(self, IncidentStatus::Resolved | IncidentStatus::Postmortem)
    }

    /// The word a reader sees on the page.
    pub fn words(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "Investigating",
            IncidentStatus::Identified => "Identified",
            IncidentStatus::Monitoring => "Monitoring",
            IncidentStatus::Resolved => "Resolved",
            IncidentStatus::Postmortem => "Postmortem",
        }
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Statuspage's impact enum, ordered from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    None,
    Maintenance,
    Minor,
    Major,
    Critical,
}

impl Impact {
    pub const ALL: [Impact; 5] = [
        Impact::None,
        Impact::Maintenance,
        Impact::Minor,
        Impact::Major,
        Impact::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Impact::None => "none",
            Impact::Maintenance => "maintenance",
            Impact::Minor => "minor",
            Impact::Major => "major",
            Impact::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Impact> {
        Impact::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The open incident of a service, as far as `plan` needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenIncident {
    pub status: IncidentStatus,
    pub impact: Impact,
}

/// What customers call a service and its routes, for the words of an incident. Registered
/// with the store once from the configuration (`Store::describe_services`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceWords {
    pub name: String,
    /// Each route's primary and backup target as a person reads them.
    pub routes: Vec<RouteWords>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteWords {
    pub primary: String,
    pub backup: String,
}

impl ServiceWords {
    /// Words for a service nobody described: its id stands in for its name.
    pub fn bare(service: &str) -> ServiceWords {
        ServiceWords {
            name: service.to_owned(),
            routes: Vec::new(),
        }
    }

    fn targets(&self, side: Side) -> String {
        let targets: Vec<&str> = self
            .routes
            .iter()
            .map(|r| match side {
                Side::Primary => r.primary.as_str(),
                Side::Backup => r.backup.as_str(),
            })
            .collect();
        targets.join(", ")
    }
}

/// What a transition does to the service's incidents.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Nothing: no incident is open and none is warranted (or a drill, which customers do not see).
    Nothing,
    Open {
        name: String,
        status: IncidentStatus,
        impact: Impact,
        body: String,
    },
    /// One more update on the open incident; the impact only ever rises.
    Update {
        status: IncidentStatus,
        impact: Impact,
        body: String,
    },
}

/// The 12-character public id of the incident opened by transition `transition_id` of
/// `service`: derived from stored identifiers, so it never changes and never needs a counter.
pub fn public_id(service: &str, transition_id: i64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"incident\0")
        .chain_update(service.as_bytes())
        .chain_update(transition_id.to_be_bytes())
        .finalize();
    let mut id = hex::encode(digest);
    id.truncate(12);
    id
}

/// The operator's `public_message` as a sentence to append, or nothing. The transition's
/// `reason` is internal (audit and on-call): incident words never include it, since an
/// operator writes it for colleagues ("flap-held; customers on broken form, INC-43") and an
/// automatic one names checks and errors.
fn said(t: &Transition) -> String {
    match t.public_message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => format!(" {m}"),
        _ => String::new(),
    }
}

/// Decides what transition `t` does to the service's open incident (`open`), if any.
///
/// Only failures customers notice open an incident (failover to the backup, or an outage with
/// nothing to switch to); degradation on the primary route and drills do not. An open incident
/// follows the service until it is operational again, which resolves it.
pub fn plan(open: Option<OpenIncident>, t: &Transition, words: &ServiceWords) -> Change {
    let name = &words.name;
    let backup = words.targets(Side::Backup);
    let primary = words.targets(Side::Primary);
    let via = |targets: &str| {
        if targets.is_empty() {
            String::new()
        } else {
            format!(": {targets}")
        }
    };
    match open {
        None => match t.to {
            State::FailedOver => Change::Open {
                name: format!("{name} is failing; customers are sent to the backup route"),
                status: IncidentStatus::Identified,
                impact: Impact::Minor,
                body: format!(
                    "{name} is not working. Customers are being sent to the backup contact route{}. No action is needed on your side.{}",
                    via(&backup),
                    said(t)
                ),
            },
            State::Outage => Change::Open {
                name: format!("{name} is unavailable"),
                status: IncidentStatus::Investigating,
                impact: Impact::Major,
                body: format!(
                    "{name} is not working, and its backup contact route is down too. We are investigating.{}",
                    said(t)
                ),
            },
            _ => Change::Nothing,
        },
        Some(o) => {
            let (status, impact, body) = match t.to {
                State::Operational => (
                    IncidentStatus::Resolved,
                    o.impact,
                    format!(
                        "{name} is working normally again and customers are back on the primary route{}.",
                        via(&primary)
                    ),
                ),
                State::Recovering => (
                    IncidentStatus::Monitoring,
                    o.impact,
                    format!(
                        "{name} is responding again. Customers stay on the backup route{} until it has been stable for a while; we are monitoring.",
                        via(&backup)
                    ),
                ),
                State::FailedOver => (
                    IncidentStatus::Identified,
                    o.impact.max(Impact::Minor),
                    format!(
                        "{name} is still not working. Customers are being sent to the backup contact route{}.",
                        via(&backup)
                    ),
                ),
                State::Outage => (
                    IncidentStatus::Investigating,
                    o.impact.max(Impact::Major),
                    format!(
                        "{name} is not working, and its backup contact route is down too. We are investigating."
                    ),
                ),
                State::Degraded => (
                    IncidentStatus::Monitoring,
                    o.impact,
                    format!(
                        "Customers are back on the primary route of {name}{}, which is partly degraded; we are monitoring.",
                        via(&primary)
                    ),
                ),
                State::Maintenance => (
                    o.status,
                    o.impact,
                    format!("{name} is now under maintenance."),
                ),
                State::Drill => return Change::Nothing,
            };
            Change::Update {
                status,
                impact,
                body: body + &said(t),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::failover::Cause;

    fn t(from: State, to: State) -> Transition {
        Transition {
            service: "ticket-submission".into(),
            from,
            to,
            cause: Cause::PrimaryDown,
            at: Timestamp(1),
            actor: "system".into(),
            reason: "ticket-form: down".into(),
            evidence: Vec::new(),
            public_message: None,
        }
    }

    fn words() -> ServiceWords {
        ServiceWords {
            name: "Ticket submission".into(),
            routes: vec![RouteWords {
                primary: "https://support.example.com/new".into(),
                backup: "https://forms.example.net/support".into(),
            }],
        }
    }

    /// (open incident before, transition) -> (status, impact) after, or None for no change.
    fn check(
        open: Option<(IncidentStatus, Impact)>,
        from: State,
        to: State,
        want: Option<(IncidentStatus, Impact)>,
    ) {
        let open = open.map(|(status, impact)| OpenIncident { status, impact });
        let got = match plan(open, &t(from, to), &words()) {
            Change::Nothing => None,
            Change::Open { status, impact, .. } => {
                assert!(open.is_none(), "opened a second incident");
                Some((status, impact))
            }
            Change::Update { status, impact, .. } => {
                assert!(open.is_some(), "updated a missing incident");
                Some((status, impact))
            }
        };
        assert_eq!(got, want, "{open:?}: {from} -> {to}");
    }

    #[test]
    fn an_incident_follows_a_failover_to_its_resolution() {
        use IncidentStatus::*;
        check(
            None,
            State::Operational,
            State::FailedOver,
            Some((Identified, Impact::Minor)),
        );
        let open = Some((Identified, Impact::Minor));
        check(
            open,
            State::FailedOver,
            State::Recovering,
            Some((Monitoring, Impact::Minor)),
        );
        check(
            Some((Monitoring, Impact::Minor)),
            State::Recovering,
            State::Operational,
            Some((Resolved, Impact::Minor)),
        );
        // The primary fails again while we were monitoring.
        check(
            Some((Monitoring, Impact::Minor)),
            State::Recovering,
            State::FailedOver,
            Some((Identified, Impact::Minor)),
        );
    }

    #[test]
    fn an_outage_opens_as_investigating_and_impact_never_falls() {
        use IncidentStatus::*;
        check(
            None,
            State::Degraded,
            State::Outage,
            Some((Investigating, Impact::Major)),
        );
        check(
            Some((Identified, Impact::Minor)),
            State::FailedOver,
            State::Outage,
            Some((Investigating, Impact::Major)),
        );
        // The backup comes back: identified again, but the incident was major and stays so.
        check(
            Some((Investigating, Impact::Major)),
            State::Outage,
            State::FailedOver,
            Some((Identified, Impact::Major)),
        );
    }

    #[test]
    fn only_failures_customers_notice_open_an_incident() {
        for to in [
            State::Operational,
            State::Degraded,
            State::Recovering,
            State::Maintenance,
            State::Drill,
        ] {
            check(None, State::Operational, to, None);
        }
        // A drill never touches an open incident either.
        check(
            Some((IncidentStatus::Identified, Impact::Minor)),
            State::FailedOver,
            State::Drill,
            None,
        );
    }

    #[test]
    fn the_words_name_the_service_and_the_route_in_use_but_never_the_reason() {
        let Change::Open { name, body, .. } =
            plan(None, &t(State::Operational, State::FailedOver), &words())
        else {
            panic!("a failover opens an incident");
        };
        assert_eq!(
            name,
            "Ticket submission is failing; customers are sent to the backup route"
        );
        assert!(
            !body.contains("ticket-form"),
            "the internal reason leaked: {body}"
        );
        assert!(body.contains("https://forms.example.net/support"), "{body}");
        let open = Some(OpenIncident {
            status: IncidentStatus::Monitoring,
            impact: Impact::Minor,
        });
        let Change::Update { body, .. } = plan(
            open,
            &t(State::Recovering, State::Operational),
            &ServiceWords::bare("ticket-submission"),
        ) else {
            panic!("recovery resolves");
        };
        assert_eq!(
            body,
            "ticket-submission is working normally again and customers are back on the primary route."
        );
    }

    #[test]
    fn an_operators_public_message_is_said_and_their_reason_is_not() {
        let mut failover = t(State::Operational, State::FailedOver);
        failover.cause = Cause::Operator;
        failover.reason = "flap-held; customers on broken form, INC-43".into();
        failover.public_message = Some("We are moving you to our backup form.".into());
        let Change::Open { body, .. } = plan(None, &failover, &words()) else {
            panic!("a failover opens an incident");
        };
        assert!(
            body.ends_with(" We are moving you to our backup form."),
            "{body}"
        );
        assert!(!body.contains("INC-43"), "{body}");
        let mut back = t(State::FailedOver, State::Operational);
        back.reason = "INC-43 closed".into();
        back.public_message = Some("Fixed.".into());
        let open = Some(OpenIncident {
            status: IncidentStatus::Identified,
            impact: Impact::Minor,
        });
        let Change::Update { body, .. } = plan(open, &back, &words()) else {
            panic!("a failback resolves");
        };
        assert!(body.ends_with(". Fixed."), "{body}");
        assert!(!body.contains("INC-43"), "{body}");
    }

    #[test]
    fn enums_round_trip_through_their_names() {
        for s in IncidentStatus::ALL {
            assert_eq!(IncidentStatus::parse(s.as_str()), Some(s));
        }
        for i in Impact::ALL {
            assert_eq!(Impact::parse(i.as_str()), Some(i));
        }
        assert_eq!(IncidentStatus::parse("fixed"), None);
    }
}
