//! Operator commands on the core: each decided by the service's machine, answered, and audited with the caller's name whether accepted or rejected; reviews, scheduled maintenance and other audited actions.

use super::core::{Core, Stepped};
use super::service::scheduled_window;
use crate::api::core::{Applied, AppliedTransition, CommandError};
use crate::audit::NewAuditRecord;
use crate::clock::Timestamp;
use crate::failover::{Command, Event};
use crate::store::{ScheduledWindow, StoreError};
use tracing::{error, info};

impl Core {
    /// Runs one operator command, audits it with the caller's name, and answers.
    pub(super) async fn on_command(
        &mut self,
        service: &str,
        command: Command,
        what: &str,
        params: serde_json::Value,
        public_message: Option<String>,
    ) -> Result<Applied, CommandError> {
        let si = self
            .index(service)
            .ok_or_else(|| CommandError::UnknownService(service.to_string()))?;
        if !self.coordinator.is_leader() {
            return Err(CommandError::Unavailable(
                "this node does not lead; send commands to the leader".into(),
            ));
        }
        let (actor, reason) = command_actor(&command);
        let now = Timestamp::now();
        let stepped = self
            .on_event_with(si, Event::Command(command), now, public_message.as_deref())
            .await;
        let audit_id = self
            .audit_command(si, &actor, &reason, what, params, &stepped, now)
            .await;
        match stepped.rejected {
            Some(r) => Err(CommandError::Rejected(r)),
            None => Ok(self.applied(si, stepped.transitions, audit_id)),
        }
    }

    pub(super) fn applied(
        &self,
        si: usize,
        transitions: Vec<AppliedTransition>,
        audit_id: Option<i64>,
    ) -> Applied {
        let s = &self.services[si];
        Applied {
            service: s.spec.id.clone(),
            state: s.machine.state,
            side: s.side,
            transitions,
            audit_id,
        }
    }

    /// Appends the operator-action audit record of a command, accepted or rejected.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn audit_command(
        &self,
        si: usize,
        actor: &str,
        reason: &str,
        what: &str,
        params: serde_json::Value,
        stepped: &Stepped,
        now: Timestamp,
    ) -> Option<i64> {
        let detail = serde_json::json!({
            "command": what,
            "params": params,
            "result": if stepped.rejected.is_some() { "rejected" } else { "accepted" },
            "rejection": stepped.rejected,
            "transition_ids": stepped.transitions.iter().filter_map(|t| t.transition_id).collect::<Vec<_>>(),
        });
        self.audit_action(Some(&self.services[si].spec.id), actor, reason, detail, now)
            .await
    }

    /// Appends an operator-action record; a failure is logged and counted, not hidden.
    pub(super) async fn audit_action(
        &self,
        service: Option<&str>,
        actor: &str,
        reason: &str,
        detail: serde_json::Value,
        now: Timestamp,
    ) -> Option<i64> {
        let rec = NewAuditRecord {
            kind: crate::audit::KIND_OPERATOR_ACTION.to_string(),
            at: now,
            actor: actor.to_string(),
            service: service.map(str::to_string),
            reason: reason.to_string(),
            config_version: self.config.version.clone(),
            node: self.coordinator.node().to_owned(),
            detail,
        };
        match self.store.append_audit(rec).await {
            Ok(r) => {
                self.metrics
                    .audit_recorded(crate::audit::KIND_OPERATOR_ACTION);
                Some(r.id)
            }
            Err(e) => {
                self.metrics.store_error("append_audit");
                error!("could not audit an operator action by {actor}: {e}");
                None
            }
        }
    }

    pub(super) async fn review(
        &self,
        audit_id: i64,
        actor: &str,
        note: &str,
    ) -> Result<crate::audit::AuditRecord, CommandError> {
        use crate::store::ReviewError;
        let now = Timestamp::now();
        let draft = crate::audit::AuditRecord {
            id: 0,
            kind: crate::store::KIND_REVIEW.to_string(),
            at: now,
            node: self.coordinator.node().to_owned(),
            actor: actor.to_string(),
            service: None,
            from: None,
            to: None,
            cause: None,
            reason: note.to_string(),
            evidence: Vec::new(),
            routes_before: Default::default(),
            routes_after: Default::default(),
            config_version: self.config.version.clone(),
            transition_id: None,
            detail: serde_json::json!({ "reviews": audit_id }),
            prev_hash: String::new(),
            hash: String::new(),
            key_id: None,
            mac: None,
        };
        let (actor_owned, note_owned) = (actor.to_owned(), note.to_owned());
        // One write making both calls, so the count includes the review just recorded.
        let res = self
            .store
            .write(move |s| {
                let r = s.review(audit_id, &actor_owned, &note_owned, &draft)?;
                Ok::<_, ReviewError>((r, s.pending_reviews()?))
            })
            .await;
        match res {
            Ok((rec, (n, oldest))) => {
                self.metrics.audit_recorded(crate::store::KIND_REVIEW);
                let age = oldest.map(|t| now.since(t).as_secs_f64()).unwrap_or(0.0);
                self.metrics.reviews(n, age);
                info!("audit record {audit_id} reviewed by {actor}: {note}");
                Ok(rec)
            }
            Err(ReviewError::NotFound(id)) => Err(CommandError::NotFound(format!(
                "no audit record with id {id}"
            ))),
            Err(e @ (ReviewError::NotReviewable(_) | ReviewError::AlreadyReviewed { .. })) => {
                Err(CommandError::Rejected(e.to_string()))
            }
            Err(ReviewError::Store(e)) => {
                self.metrics.store_error("review");
                Err(CommandError::Store(e.to_string()))
            }
        }
    }

    /// Appends an operator action that does not go through a service's machine (an incident
    /// update) to the audit chain.
    pub(super) async fn audit_other(
        &self,
        actor: &str,
        reason: &str,
        detail: serde_json::Value,
    ) -> Option<i64> {
        self.audit_action(None, actor, reason, detail, Timestamp::now())
            .await
    }

    pub(super) async fn schedule_maintenance(
        &mut self,
        w: ScheduledWindow,
    ) -> Result<i64, CommandError> {
        let si = self
            .index(&w.service)
            .ok_or_else(|| CommandError::UnknownService(w.service.clone()))?;
        let stored = w.clone();
        let id = self
            .store
            .write(move |s| s.schedule_maintenance(&stored))
            .await
            .map_err(|e: StoreError| {
                self.metrics.store_error("schedule_maintenance");
                CommandError::Store(e.to_string())
            })?;
        let now = Timestamp::now();
        self.audit_action(
            Some(&w.service),
            &w.actor,
            &w.reason,
            serde_json::json!({
                "command": "maintenance_schedule",
                "window": id,
                "starts_at": w.starts_at.rfc3339(),
                "ends_at": w.ends_at.rfc3339(),
                "public_message": w.public_message,
            }),
            now,
        )
        .await;
        self.services[si].policy.windows.push(scheduled_window(&w));
        self.reloads.maintenance_scheduled();
        self.show_windows();
        // The machine asks to be woken at the window's start (or enters it now).
        self.on_event(si, Event::Tick, now).await;
        Ok(id)
    }
}

/// The actor and reason a command carries.
fn command_actor(c: &Command) -> (String, String) {
    match c {
        Command::Failover { actor, reason, .. }
        | Command::Failback { actor, reason }
        | Command::Pin { actor, reason, .. }
        | Command::Unpin { actor, reason }
        | Command::MaintenanceStart { actor, reason, .. }
        | Command::MaintenanceStop { actor, reason }
        | Command::DrillStart { actor, reason, .. }
        | Command::DrillAbort { actor, reason } => (actor.clone(), reason.clone()),
    }
}
