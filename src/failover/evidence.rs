//! The grounds of a decision: the check verdicts, planned windows and ended holds a transition was taken on, handed to the shell with it for the audit record.
//!
//! An auditor asks of every automatic transition "on what evidence?". The answer is what the
//! rule read when it fired: for a failover the primary checks that were down (each with the
//! outcome, where and when it was seen, and the streak of failures that crossed its
//! threshold) and the backup checks that were verified healthy; for a failback or recovery
//! every primary check and its healthy verdict; for a planned window the window that began
//! or ended. The machine keeps each check's latest verdict as an [`Observation`] (built from
//! the [`Seen`] the shell sends with every health event, so the core reads no clock and does
//! no I/O) and [`grounds`] picks those the new state rests on.

use super::machine::{Policy, Service};
use super::State;
use crate::clock::Timestamp;
use crate::health::Health;
use serde::{Deserialize, Serialize};

/// What the shell knows about the outcome behind a verdict and sends with `Event::Health`:
/// where it was observed and the streak that made the verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The vantage that observed it: this node's name (`cluster::Coordinator::node`) until
    /// several vantages vote.
    pub vantage: String,
    /// Outcomes in a row that agree with the verdict: failures for suspect and down,
    /// successes for healthy.
    pub streak: u32,
    /// The streak the verdict needed: the failure threshold in force for down (and the one a
    /// suspect check is on its way to), `success_threshold` for healthy after down, 1 for
    /// healthy otherwise.
    pub threshold: u32,
    /// Every vantage's vote when several voted (cluster mode): which said what, with its
    /// last outcome, and whether it was counted. Empty on a single node.
    pub votes: Vec<crate::cluster::votes::Vote>,
}

/// A check's latest verdict as the machine heard it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub check: String,
    /// `primary` or `backup`.
    pub role: String,
    pub health: Health,
    /// The outcome behind it: status or error (`failed (connect): connection refused`), or
    /// `not probed yet`.
    pub outcome: String,
    /// Where it was seen; empty when the shell did not say.
    pub vantage: String,
    /// When the verdict was reached; `null` for a check never probed since start.
    #[serde(with = "crate::clock::rfc3339_text::option")]
    pub at: Option<Timestamp>,
    pub streak: u32,
    pub threshold: u32,
    /// The vantages' votes behind a cluster verdict; absent on a single node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<crate::cluster::votes::Vote>,
}

/// One fact a transition rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ground {
    /// A check's verdict.
    Check(Observation),
    /// A planned maintenance window (configured or scheduled through the API) that began or
    /// ended.
    Window {
        reason: String,
        #[serde(with = "crate::clock::rfc3339_text")]
        start: Timestamp,
        #[serde(with = "crate::clock::rfc3339_text")]
        end: Timestamp,
        /// `began` or `ended`.
        event: String,
    },
    /// A hold that ended with time: a drill's deadline, a pin's end, the end an operator gave
    /// a maintenance.
    HoldEnded {
        /// `drill`, `pin` or `maintenance`.
        hold: String,
        /// The drill's id, when it is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(with = "crate::clock::rfc3339_text")]
        until: Timestamp,
    },
}

impl Ground {
    /// The evidence line on-call and the audit record's `evidence` show for it.
    pub fn line(&self) -> String {
        match self {
            Ground::Check(o) => {
                let mut line = if o.outcome.is_empty() {
                    format!("{}: {}", o.check, o.health.as_str())
                } else {
                    format!("{}: {} ({})", o.check, o.health.as_str(), o.outcome)
                };
                if !o.votes.is_empty() {
                    let votes: Vec<String> = o
                        .votes
                        .iter()
                        .map(|v| {
                            let counted = if v.counted {
                                ""
                            } else {
                                ", suspect: not counted"
                            };
                            format!(
                                "{} {} ({}{counted})",
                                v.vantage,
                                v.health.as_str(),
                                v.outcome
                            )
                        })
                        .collect();
                    line.push_str(&format!("; vantages: {}", votes.join("; ")));
                }
                line
            }
            Ground::Window {
                reason, end, event, ..
            } => format!("maintenance window \"{reason}\" {event} (ends {end})"),
            Ground::HoldEnded { hold, id, until } => match id {
                Some(id) => format!("{hold} {id} ended at its deadline {until}"),
                None => format!("{hold} ended at its end {until}"),
            },
        }
    }

    /// The check it names, if it is a check's verdict.
    pub fn check(&self) -> Option<&Observation> {
        match self {
            Ground::Check(o) => Some(o),
            _ => None,
        }
    }
}

impl Service {
    /// Keeps a check's new verdict, heard at `now`.
    pub(super) fn observe(
        &mut self,
        check: &str,
        health: Health,
        detail: &str,
        seen: &Seen,
        now: Timestamp,
    ) {
        self.observed.insert(
            check.to_owned(),
            Sighting {
                health,
                outcome: detail.to_owned(),
                vantage: seen.vantage.clone(),
                at: now,
                streak: seen.streak,
                threshold: seen.threshold,
                votes: seen.votes.clone(),
            },
        );
    }

    /// The verdict of `check` as an observation (`not probed yet` when none was heard).
    fn observation(&self, p: &Policy, check: &str) -> Observation {
        let role = if p.primary.iter().any(|c| c == check) {
            "primary"
        } else {
            "backup"
        };
        match self.observed.get(check) {
            Some(s) => Observation {
                check: check.to_owned(),
                role: role.to_owned(),
                health: self.health_of(check),
                outcome: s.outcome.clone(),
                vantage: s.vantage.clone(),
                at: Some(s.at),
                streak: s.streak,
                threshold: s.threshold,
                votes: s.votes.clone(),
            },
            None => Observation {
                check: check.to_owned(),
                role: role.to_owned(),
                health: self.health_of(check),
                outcome: "not probed yet".to_owned(),
                vantage: String::new(),
                at: None,
                streak: 0,
                threshold: 0,
                votes: Vec::new(),
            },
        }
    }
}

/// A check's latest verdict as kept by the machine (`Service::observed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub health: Health,
    pub outcome: String,
    pub vantage: String,
    pub at: Timestamp,
    pub streak: u32,
    pub threshold: u32,
    pub votes: Vec<crate::cluster::votes::Vote>,
}

/// The checks a move to `to` rests on, in configuration order (primary checks first): every
/// check that is not healthy (what is wrong), and the healthy verdicts the rule needed: every
/// primary check for `operational` and `recovering` (the failback's and recovery's proof),
/// every backup check for `failed_over` (the backup verified before customers go to it).
pub(super) fn grounds(svc: &Service, p: &Policy, to: State) -> Vec<Ground> {
    let primary = p.primary.iter().map(|c| (c, true));
    let backup = p.backup.iter().map(|c| (c, false));
    primary
        .chain(backup)
        .filter(|(c, is_primary)| {
            svc.health_of(c) != Health::Healthy
                || (*is_primary && matches!(to, State::Operational | State::Recovering))
                || (!*is_primary && to == State::FailedOver)
        })
        .map(|(c, _)| Ground::Check(svc.observation(p, c)))
        .collect()
}

/// The evidence lines of `grounds`.
pub(super) fn lines(grounds: &[Ground]) -> Vec<String> {
    grounds.iter().map(Ground::line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grounds travel in the spill file (`AuditContext`) and are written into the audit
    /// record: times as RFC 3339 text, the kind as a tag, and back again unchanged.
    #[test]
    fn grounds_round_trip_as_json_with_readable_times() {
        let grounds = vec![
            Ground::Check(Observation {
                check: "ticket-form".into(),
                role: "primary".into(),
                health: Health::Down,
                outcome: "failed (connect): connection refused".into(),
                vantage: "node-a".into(),
                at: Some(Timestamp(1_700_000_000_000)),
                streak: 3,
                threshold: 3,
                votes: vec![crate::cluster::votes::Vote {
                    vantage: "node-b".into(),
                    health: Health::Down,
                    outcome: "failed (connect): connection refused".into(),
                    at: Some(Timestamp(1_700_000_000_000)),
                    counted: true,
                }],
            }),
            Ground::Window {
                reason: "database upgrade".into(),
                start: Timestamp(1_700_000_000_000),
                end: Timestamp(1_700_000_600_000),
                event: "began".into(),
            },
            Ground::HoldEnded {
                hold: "drill".into(),
                id: Some("d1".into()),
                until: Timestamp(1_700_000_000_000),
            },
        ];
        let json = serde_json::to_value(&grounds).expect("serialise");
        assert_eq!(json[0]["kind"], "check");
        assert_eq!(json[0]["at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json[0]["health"], "down");
        assert_eq!(json[1]["kind"], "window");
        assert_eq!(json[1]["end"], "2023-11-14T22:23:20.000Z");
        assert_eq!(json[2]["kind"], "hold_ended");
        let back: Vec<Ground> = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, grounds);
        let never = Observation {
            at: None,
            ..grounds[0].check().expect("a check").clone()
        };
        let v = serde_json::to_value(&never).expect("serialise");
        assert_eq!(v["at"], serde_json::Value::Null);
        assert_eq!(
            serde_json::from_value::<Observation>(v).expect("back"),
            never
        );
    }
}
