//! Durable state: current state per service, every transition, and the announcement outbox (SQLite).
//!
//! The one rule this module exists for: a transition and the announcements it causes are
//! written in ONE transaction (`Store::commit_transition`) before anything is sent. The
//! outbox delivery loop (`announce::outbox`) then works from the stored rows, so a crash at
//! any point loses nothing; at worst a message the server already accepted is sent once
//! more, with the same stable Message-ID.
//!
//! The same transaction appends the transition's hash-chained audit record (`audit_log.rs`;
//! the record and the chain are described in `crate::audit`).
//!
//! `Store` is the SQLite implementation (opened in `open.rs`, numbered migrations in
//! `migrations/`, one file per concern beside it): short synchronous calls on one
//! connection, for the writer thread, for start-up before the tasks run, and for
//! command-line tools. Async code reaches the store through `StoreHandle` (`handle.rs`):
//! writes go to the one writer thread in call order, reads to read-only connections beside
//! it. Async code should never call `Store` directly, nor wrap it in `block_in_place`.

mod audit_log;
mod chat;
pub mod cluster_log;
mod config_versions;
mod control;
mod facts;
mod groups;
mod handle;
mod history;
mod incidents;
mod open;
mod outbox;
pub mod replica;
mod rows;
mod services;
pub mod spill;
#[cfg(test)]
mod tests;
mod transitions;
mod zendesk;

pub use config_versions::{
    ConfigLoad, ConfigLookupError, LoadResult, StoredConfig, StoredFile, StoredLoad,
};
pub use control::{
    AuditQuery, DrillRow, ReviewError, ScheduledWindow, KIND_REVIEW, REVIEWED_CAUSES,
};
pub use facts::{DeliveryCount, FinishedDrill, MetricFacts, TransitionCount};
pub use groups::{Composed, GroupDecision, NewPart, WaitingPart, KIND_GROUPED};
pub use handle::{Around, StoreHandle};
pub use history::{HistoryRow, DAY_S, FIVE_MINUTES_S};
pub use incidents::{IncidentRecord, IncidentUpdateRecord, NewIncidentUpdate};
pub use open::Store;
pub use outbox::Receipt;
pub use zendesk::{ArticlePhase, SavedArticle};

use crate::clock::Timestamp;
use crate::failover::{State, Transition};

/// The stored current state of one service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRecord {
    pub id: String,
    pub state: State,
    /// When the current state was entered.
    pub since: Timestamp,
    /// Cause of the last transition (`Cause::as_str`), or `startup` before any.
    pub cause: String,
    /// When the service first appeared in this store.
    pub created_at: Timestamp,
}

/// One stored transition, with the id that the audit trail and Message-IDs refer to.
#[derive(Clone, Debug, PartialEq)]
pub struct TransitionRecord {
    pub id: i64,
    pub transition: Transition,
    /// Hash of the configuration in force when it was decided (`Config::version`).
    pub config_version: String,
}

/// An announcement to enqueue together with its transition.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewAnnouncement {
    /// `oncall`, `customers` or `drill` (`announce::Audience::as_str`).
    pub audience: String,
    /// `email`, `webhook`, `statuspage` or `chat`.
    pub channel: String,
    /// What the message is about (`announce::Kind::as_str`, e.g. `failover`), for metrics.
    /// A `flapping` notice may share its transition with that transition's own messages.
    pub kind: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// What `commit_transition` wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedTransition {
    pub transition_id: i64,
    /// Outbox row ids, in the order the announcements were given.
    pub outbox_ids: Vec<i64>,
}

/// Delivery status of one outbox row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxStatus {
    Pending,
    Delivered,
    /// Still failing after `give_up_after`: kept for the record, no longer retried.
    GivenUp,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::GivenUp => "given_up",
        }
    }

    pub fn parse(s: &str) -> Option<OutboxStatus> {
        match s {
            "pending" => Some(OutboxStatus::Pending),
            "delivered" => Some(OutboxStatus::Delivered),
            "given_up" => Some(OutboxStatus::GivenUp),
            _ => None,
        }
    }
}

/// One outbox row: a message to deliver, and how delivery went so far.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub transition_id: i64,
    pub service: String,
    pub audience: String,
    pub channel: String,
    /// What the message is about (`failover`, `flapping`, ...); empty on rows from before
    /// schema version 6.
    pub kind: String,
    /// Stable across retries and restarts, e.g.
    /// `<t42.customers.ticket-submission.mi5x2k9c.3f9a0c1d2e4b5a67@example.com>` (see
    /// [`MessageIds`]), so that receivers can recognise a repeat after a crash and never
    /// mistake another database's message for one.
    pub message_id: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub status: OutboxStatus,
    /// Delivery attempts so far, successful or not.
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    /// What the transport said on success: the `.eml` path or the SMTP server's reply.
    pub detail: Option<String>,
    pub given_up_at: Option<Timestamp>,
}

/// A store failure. Every database or disk error surfaces as one of these: none is swallowed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Cluster mode: the replicated log refused or could not take a write, or an entry
    /// from it could not be applied.
    #[error("replication: {0}")]
    Replica(String),
    #[error("cannot create the directory {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
    #[error("migration {version} failed: {source}")]
    Migration {
        version: u32,
        source: rusqlite::Error,
    },
    #[error("the database schema is version {found}, newer than this build knows ({known}); refusing to use it")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt stored value in {what}: {value:?}")]
    Corrupt { what: &'static str, value: String },
    #[error("stored JSON in {what} is invalid: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("service {service} is stored as {stored}, but the transition starts from {from}")]
    StateMismatch {
        service: String,
        stored: State,
        from: State,
    },
    #[error("no incident with id {0:?}")]
    NoSuchIncident(String),
    /// Not attempted: earlier transitions are still waiting to be written (the shell keeps
    /// order by queueing behind them).
    #[error("deferred behind earlier unrecorded transitions")]
    Deferred,
    #[error("service {0} has no recorded transition to attach a notice to")]
    NoTransition(String),
    #[error("no outbox row with id {0}")]
    NoSuchOutboxItem(i64),
    #[error("no waiting announcement part with id {0}")]
    NoSuchPart(i64),
    #[error("the database file {path} {why} since it was opened; refusing to write where nobody will read it")]
    FileGone {
        path: std::path::PathBuf,
        why: String,
    },
    /// The configured audit key cannot extend the stored chain (missing or another key).
    #[error("{0}")]
    AuditKey(String),
    #[error("no database at {path} (has the daemon run with this configuration?)")]
    NoDatabase { path: std::path::PathBuf },
    #[error("the database schema is version {found}, which predates the audit log (version 2); run the daemon once to migrate it")]
    NoAuditLog { found: u32 },
    /// The writer thread did not answer: it has stopped (or could not start), or the call
    /// panicked on it. Nothing of that call was committed.
    #[error(
        "the store's writer did not answer (it stopped, or the call panicked); nothing was written"
    )]
    WriterGone,
}

/// How this database names its messages: a random id created once with the database
/// (migration 7) and the domain of `[email] from` (or `message_id_domain`).
///
/// Why both, and the row's creation time too: `t1.oncall...` alone repeats in every new
/// database, and a receiver that deduplicates by Message-ID would drop a later, different
/// announcement. The instance id separates databases; the creation time separates a
/// restored copy's new rows from the ones its original already sent. All three are stored
/// with the row, so a retry or a restart sends the same id again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageIds {
    pub instance: String,
    pub domain: String,
}

/// The domain of Message-IDs when the daemon has not named one (store-level tests).
pub const DEFAULT_MESSAGE_ID_DOMAIN: &str = "switchboard.invalid";

/// Only dot-atom-safe characters may appear in a Message-ID; service ids are validated
/// config ids, but this keeps the header valid whatever they contain.
fn atom(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `ms` in base 36: short, and only letters and digits.
fn base36(ms: i64) -> String {
    let mut n = ms.unsigned_abs();
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl MessageIds {
    /// The Message-ID of the announcement of transition `transition_id` to `audience` over
    /// `channel`, written at `created`.
    pub fn for_transition(
        &self,
        transition_id: i64,
        audience: &str,
        channel: &str,
        service: &str,
        created: crate::clock::Timestamp,
    ) -> String {
        let channel = if channel == "email" {
            String::new()
        } else {
            format!(".{}", atom(channel))
        };
        format!(
            "<t{transition_id}.{}{channel}.{}.{}.{}@{}>",
            atom(audience),
            atom(service),
            base36(created.as_millis()),
            atom(&self.instance),
            self.domain
        )
    }

    /// The Message-ID of a grouped message to `audience` whose first part is `first_part`.
    pub fn for_group(
        &self,
        first_part: i64,
        audience: &str,
        created: crate::clock::Timestamp,
    ) -> String {
        format!(
            "<g{first_part}.{}.{}.{}@{}>",
            atom(audience),
            base36(created.as_millis()),
            atom(&self.instance),
            self.domain
        )
    }
}
