//! Drills on the core: a drill started through the service's machine and its report stored and watched (`drill::monitor`), an abort, and the reports of drills a restart interrupted finished.

use super::core::Core;
use crate::api::core::{Applied, CommandError, DrillRequest};
use crate::clock::Timestamp;
use crate::failover::{Command, Event, Side, State};
use crate::store::{DrillRow, StoreError};
use tracing::{error, info};

impl Core {
    pub(super) async fn start_drill(
        &mut self,
        req: DrillRequest,
    ) -> Result<DrillRow, CommandError> {
        let si = self
            .index(&req.service)
            .ok_or_else(|| CommandError::UnknownService(req.service.clone()))?;
        if !self.coordinator.is_leader() {
            return Err(CommandError::Unavailable(
                "this node does not lead; send drills to the leader".into(),
            ));
        }
        let now = Timestamp::now();
        let id = crate::drill::new_id(now);
        let until = now.plus(req.duration);
        let command = Command::DrillStart {
            id: id.clone(),
            live: req.live,
            until,
            actor: req.actor.clone(),
            reason: req.reason.clone(),
        };
        let stepped = self
            .on_event_with(
                si,
                Event::Command(command),
                now,
                req.public_message.as_deref(),
            )
            .await;
        let switched_at = Timestamp::now();
        let mode = if req.live { "live" } else { "dry_run" };
        let params = serde_json::json!({
            "drill": id, "mode": mode, "duration": humantime::format_duration(req.duration).to_string(),
            "ticket": req.ticket,
            "public_message": req.public_message,
        });
        self.audit_command(
            si,
            &req.actor,
            &req.reason,
            "drill_start",
            params,
            &stepped,
            now,
        )
        .await;
        if let Some(r) = stepped.rejected {
            return Err(CommandError::Rejected(r));
        }
        let svc = &self.services[si];
        let transition_id = stepped
            .transitions
            .iter()
            .find(|t| t.to == State::Drill)
            .and_then(|t| t.transition_id);
        let report = crate::drill::Report::started(crate::drill::Started {
            id: &id,
            service: &svc.spec.id,
            live: req.live,
            actor: &req.actor,
            reason: &req.reason,
            ticket: req.ticket.as_deref(),
            received: req.received,
            decided: switched_at,
            switched: switched_at,
            deadline: until,
            targets: svc.spec.drill_targets,
            on_backup: svc.side == Side::Backup,
        });
        let row = report.row();
        let stored = row.clone();
        let inserted = self.store.write(move |s| s.insert_drill(&stored)).await;
        if let Err(e) = inserted {
            self.metrics.store_error("insert_drill");
            error!("drill {id}: could not store its report: {e}");
        }
        info!(
            "{}: {mode} drill {id} started by {} until {until}: {}",
            svc.spec.name, req.actor, req.reason
        );
        tokio::spawn(crate::drill::monitor(
            self.drill_context(si, transition_id),
            report,
        ));
        Ok(row)
    }

    pub(super) fn drill_context(
        &self,
        si: usize,
        transition_id: Option<i64>,
    ) -> crate::drill::Context {
        crate::drill::Context {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            snapshot: self.snapshot_tx.subscribe(),
            spec: self.services[si].spec.clone(),
            transition_id,
            node: self.coordinator.node().to_owned(),
            config_version: self.config.version.clone(),
        }
    }

    /// Finishes the reports of drills that were running when the daemon last stopped.
    pub(super) async fn resume_drills(&self) {
        let running = match self.store.read(|s| s.running_drills()).await {
            Ok(r) => r,
            Err(e) => {
                error!("cannot read running drills: {e}");
                return;
            }
        };
        for row in running {
            let report = match crate::drill::Report::from_row(&row) {
                Some(r) => r,
                None => {
                    error!(
                        "drill {}: stored report unreadable; marking it failed",
                        row.id
                    );
                    let (id, report) = (row.id.clone(), row.report.clone());
                    let _: Result<_, StoreError> = self
                        .store
                        .write(move |s| {
                            s.update_drill(&id, "fail", Some(Timestamp::now()), &report)
                        })
                        .await;
                    continue;
                }
            };
            match self.index(&row.service) {
                Some(si) => {
                    tokio::spawn(crate::drill::resume(self.drill_context(si, None), report));
                }
                None => {
                    let mut report = report;
                    report.interrupt("the service is no longer configured");
                    let (id, status, ended, json) = (
                        row.id.clone(),
                        report.status.as_str(),
                        report.ended_at_ts(),
                        report.json(),
                    );
                    let _: Result<_, StoreError> = self
                        .store
                        .write(move |s| s.update_drill(&id, status, ended, &json))
                        .await;
                }
            }
        }
    }

    pub(super) async fn abort_drill(
        &mut self,
        id: &str,
        actor: String,
        reason: String,
        public_message: Option<String>,
    ) -> Result<Applied, CommandError> {
        let si = self
            .services
            .iter()
            .position(|s| s.machine.drill.as_ref().is_some_and(|d| d.id == id));
        let Some(si) = si else {
            let key = id.to_owned();
            return match self.store.read(move |s| s.drill(&key)).await {
                Ok(Some(row)) => Err(CommandError::Rejected(format!(
                    "drill {id} is no longer running ({})",
                    row.status
                ))),
                Ok(None) => Err(CommandError::UnknownDrill(id.to_string())),
                Err(e) => Err(CommandError::Store(e.to_string())),
            };
        };
        let service = self.services[si].spec.id.clone();
        let command = Command::DrillAbort {
            actor: actor.clone(),
            reason: reason.clone(),
        };
        self.on_command(
            &service,
            command,
            "drill_abort",
            serde_json::json!({ "drill": id, "public_message": public_message }),
            public_message,
        )
        .await
    }
}
