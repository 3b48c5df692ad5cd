//! The way into the core task: `CoreHandle` and the messages it sends (`Msg`), one request answered per message.
//!
//! The control API (through `api::core::Core`, which `CoreHandle` implements), SIGHUP and the
//! probe loops reach the core only as messages on one channel, so the core decides each in
//! order with everything else. A request whose answer never comes (the core has stopped)
//! is answered "the daemon is shutting down".

use super::reload;
use crate::api::core::{
    Applied, CommandError, Core, CoreFuture, DrillRequest, ReloadError, ReloadReport, ServiceDetail,
};
use crate::audit::AuditRecord;
use crate::failover::Command;
use crate::probe::Outcome;
use crate::store::{DrillRow, ScheduledWindow};
use tokio::sync::{mpsc, oneshot};

/// Messages to the core task.
pub(super) enum Msg {
    Outcome {
        /// The probe generation the loop belongs to; outcomes of an older one (before a
        /// reload) are dropped, since their indices may point at other checks now.
        generation: u64,
        service: usize,
        check: usize,
        outcome: Box<Outcome>,
        /// The core answers whether the check wants a confirmation re-probe.
        reply: oneshot::Sender<bool>,
    },
    Tick {
        service: String,
    },
    /// An operator command (`actor` and `reason` travel inside `command`).
    Command {
        service: String,
        command: Command,
        /// What the request asked for, for the audit record (`failover`, `pin`, ...).
        what: String,
        params: serde_json::Value,
        /// The command's `public_message`, put on the transitions it causes.
        public_message: Option<String>,
        reply: oneshot::Sender<Result<Applied, CommandError>>,
    },
    Inspect {
        reply: oneshot::Sender<Vec<ServiceDetail>>,
    },
    DrillStart {
        request: DrillRequest,
        reply: oneshot::Sender<Result<DrillRow, CommandError>>,
    },
    DrillAbort {
        id: String,
        actor: String,
        reason: String,
        public_message: Option<String>,
        reply: oneshot::Sender<Result<Applied, CommandError>>,
    },
    ScheduleMaintenance {
        window: ScheduledWindow,
        reply: oneshot::Sender<Result<i64, CommandError>>,
    },
    Reload {
        actor: String,
        reply: oneshot::Sender<Result<ReloadReport, ReloadError>>,
    },
    /// A reload prepared off the core (`reload`), ready to swap in.
    Reloaded(Result<Box<reload::Prepared>, ReloadError>),
    Review {
        audit_id: i64,
        actor: String,
        note: String,
        reply: oneshot::Sender<Result<AuditRecord, CommandError>>,
    },
    Audit {
        actor: String,
        reason: String,
        detail: serde_json::Value,
        reply: oneshot::Sender<Option<i64>>,
    },
}

/// How the HTTP side (and SIGHUP) talk to the core task. Each call is one message answered
/// by the core, so a command is decided in order with outcomes and ticks.
#[derive(Clone, Debug)]
pub struct CoreHandle {
    pub(super) tx: mpsc::Sender<Msg>,
}

fn stopping() -> CommandError {
    CommandError::Unavailable("the daemon is shutting down".into())
}

impl CoreHandle {
    async fn ask<T>(&self, msg: Msg, rx: oneshot::Receiver<T>) -> Option<T> {
        self.tx.send(msg).await.ok()?;
        rx.await.ok()
    }

    /// Runs an operator command on `service`. `what` and `params` describe the request for
    /// its audit record.
    pub async fn command(
        &self,
        service: &str,
        command: Command,
        what: &str,
        params: serde_json::Value,
        public_message: Option<String>,
    ) -> Result<Applied, CommandError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Command {
            service: service.to_string(),
            command,
            what: what.to_string(),
            params,
            public_message,
            reply,
        };
        self.ask(msg, rx).await.unwrap_or_else(|| Err(stopping()))
    }

    /// Every service with its state, checks and holds.
    pub async fn services(&self) -> Result<Vec<ServiceDetail>, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::Inspect { reply }, rx)
            .await
            .ok_or_else(stopping)
    }

    pub async fn start_drill(&self, request: DrillRequest) -> Result<DrillRow, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::DrillStart { request, reply }, rx)
            .await
            .unwrap_or_else(|| Err(stopping()))
    }

    pub async fn abort_drill(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
        public_message: Option<String>,
    ) -> Result<Applied, CommandError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::DrillAbort {
            id: id.to_string(),
            actor: actor.to_string(),
            reason: reason.to_string(),
            public_message,
            reply,
        };
        self.ask(msg, rx).await.unwrap_or_else(|| Err(stopping()))
    }

    pub async fn schedule_maintenance(&self, window: ScheduledWindow) -> Result<i64, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::ScheduleMaintenance { window, reply }, rx)
            .await
            .unwrap_or_else(|| Err(stopping()))
    }

    /// Records `actor`'s review of the automatic transition in audit record `audit_id`.
    pub async fn review(
        &self,
        audit_id: i64,
        actor: &str,
        note: &str,
    ) -> Result<AuditRecord, CommandError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Review {
            audit_id,
            actor: actor.to_string(),
            note: note.to_string(),
            reply,
        };
        self.ask(msg, rx).await.unwrap_or_else(|| Err(stopping()))
    }

    /// Appends an operator action outside any service's machine to the audit chain; `None`
    /// when it could not be written (logged and counted by the core).
    pub async fn audit(&self, actor: &str, reason: &str, detail: serde_json::Value) -> Option<i64> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Audit {
            actor: actor.to_string(),
            reason: reason.to_string(),
            detail,
            reply,
        };
        self.ask(msg, rx).await.flatten()
    }

    /// Re-reads the configuration; keeps the running one if the new one is invalid.
    pub async fn reload(&self, actor: &str) -> Result<ReloadReport, ReloadError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reload {
            actor: actor.to_string(),
            reply,
        };
        self.ask(msg, rx)
            .await
            .unwrap_or_else(|| Err(ReloadError::Store("the daemon is shutting down".into())))
    }
}

impl Core for CoreHandle {
    fn command<'a>(
        &'a self,
        service: &'a str,
        command: Command,
        what: &'a str,
        params: serde_json::Value,
        public_message: Option<String>,
    ) -> CoreFuture<'a, Result<Applied, CommandError>> {
        Box::pin(CoreHandle::command(
            self,
            service,
            command,
            what,
            params,
            public_message,
        ))
    }

    fn services(&self) -> CoreFuture<'_, Result<Vec<ServiceDetail>, CommandError>> {
        Box::pin(CoreHandle::services(self))
    }

    fn start_drill(&self, request: DrillRequest) -> CoreFuture<'_, Result<DrillRow, CommandError>> {
        Box::pin(CoreHandle::start_drill(self, request))
    }

    fn abort_drill<'a>(
        &'a self,
        id: &'a str,
        actor: &'a str,
        reason: &'a str,
        public_message: Option<String>,
    ) -> CoreFuture<'a, Result<Applied, CommandError>> {
        Box::pin(CoreHandle::abort_drill(
            self,
            id,
            actor,
            reason,
            public_message,
        ))
    }

    fn schedule_maintenance(
        &self,
        window: ScheduledWindow,
    ) -> CoreFuture<'_, Result<i64, CommandError>> {
        Box::pin(CoreHandle::schedule_maintenance(self, window))
    }

    fn review<'a>(
        &'a self,
        audit_id: i64,
        actor: &'a str,
        note: &'a str,
    ) -> CoreFuture<'a, Result<AuditRecord, CommandError>> {
        Box::pin(CoreHandle::review(self, audit_id, actor, note))
    }

    fn audit<'a>(
        &'a self,
        actor: &'a str,
        reason: &'a str,
        detail: serde_json::Value,
    ) -> CoreFuture<'a, Option<i64>> {
        Box::pin(CoreHandle::audit(self, actor, reason, detail))
    }

    fn reload<'a>(&'a self, actor: &'a str) -> CoreFuture<'a, Result<ReloadReport, ReloadError>> {
        Box::pin(CoreHandle::reload(self, actor))
    }
}
