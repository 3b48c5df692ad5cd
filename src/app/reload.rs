//! Configuration reload: the files parsed, validated and diffed off the core task; only the swap runs on the core.
//!
//! SIGHUP and `POST /-/reload` reach the core as `Msg::Reload`. The core hands the slow part to
//! a thread of its own — load and validate the files, diff them against the running
//! configuration into a `ReloadPlan` (`config::diff`, pure, by fingerprints), read what the
//! store holds for the services the new file has — and goes on deciding outcomes, commands
//! and ticks, and noticing a SIGTERM, meanwhile. The thread sends the result back as
//! `Msg::Reloaded` and the core applies the plan: a walk that moves each kept check's health
//! across and tells each kept service's machine what changed (`Service::reconfigure`), linear
//! in the number of checks, with no spec formatted or compared and no machine field edited
//! from here. Done on the core, a reload of 6,000 checks in one service froze decisions for
//! minutes and held up shutdown.
//!
//! The announcement transports are not rebuilt: the plan lists a change to them as needing a
//! restart, and the core keeps planning announcements for those it started with
//! (`record::TransportsInUse`).
//!
//! Reloads run one at a time, in the order asked; one asked for while another is prepared
//! waits its turn and reads the files when it starts. The work runs on a plain thread rather
//! than a blocking task because the runtime waits for its blocking tasks when it shuts down,
//! and a SIGTERM must not wait for a reload.

use super::core::Core;
use super::handle::Msg;
use super::service::{policy_for, CheckRuntime, ServiceRuntime};
use crate::api::core::{ReloadError, ReloadReport};
use crate::audit::{self, NewAuditRecord};
use crate::clock::Timestamp;
use crate::config::diff::ReloadPlan;
use crate::config::{Config, ConfigFiles};
use crate::failover::{Event, Policy};
use crate::store::{ConfigLoad, LoadResult, StoreError, StoreHandle};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::oneshot;
use tracing::{error, info};

/// Where a reload's answer goes.
pub(super) type Reply = oneshot::Sender<Result<ReloadReport, ReloadError>>;

/// The core's reload bookkeeping.
#[derive(Default)]
pub(super) struct Reloads {
    /// The reload being prepared off the core: who asked, and where its answer goes.
    current: Option<(String, Reply)>,
    /// Reloads asked for while one was being prepared, in order.
    waiting: VecDeque<(String, Reply)>,
    /// Bumped by every maintenance window scheduled through the API: a reload that read the
    /// stored windows before one was added reads them again when it swaps.
    maintenance_epoch: u64,
}

impl Reloads {
    /// A window was scheduled through the API.
    pub(super) fn maintenance_scheduled(&mut self) {
        self.maintenance_epoch += 1;
    }
}

/// A new configuration worked out off the core, ready to swap in.
pub(super) struct Prepared {
    /// The running configuration it was diffed against.
    base: Arc<Config>,
    new: Config,
    plan: ReloadPlan,
    /// One per service of `new`, in order.
    loaded: Vec<Loaded>,
    /// `Reloads::maintenance_epoch` when the stored windows were read.
    maintenance_epoch: u64,
    /// How long loading, validating, diffing and reading the store took.
    took: std::time::Duration,
}

/// What the store says about one service of the new configuration.
enum Loaded {
    /// Running now (at `old` in the running configuration): its policy, with the windows
    /// scheduled through the API.
    Running { old: usize, policy: Policy },
    /// Not running: its remembered state and holds, or a fresh start.
    Added(Box<ServiceRuntime>),
}

/// Loads, validates and diffs the configuration at `base.source`, and reads from the store
/// what the swap needs. Runs off the core, so it may take its time.
fn prepare(
    base: Arc<Config>,
    store: &StoreHandle,
    maintenance_epoch: u64,
    rejected: Rejected,
) -> Result<Prepared, ReloadError> {
    let started = std::time::Instant::now();
    let new = match Config::load(&base.source) {
        Ok(c) => c,
        Err(e) => {
            let diagnostics: Vec<String> = e.diagnostics.iter().map(ToString::to_string).collect();
            rejected.record(&base, store, e.files, &diagnostics);
            return Err(ReloadError::Invalid { diagnostics });
        }
    };
    let plan = ReloadPlan::diff(&base, &new);
    let at = Timestamp::now();
    let store_err = |e: crate::store::StoreError| ReloadError::Store(e.to_string());
    // This thread is outside the runtime: it may wait for the store. A running service's
    // policy is only read; an added one is registered (`ensure_service`), so it goes to the writer.
    let loaded = new
        .services
        .iter()
        .zip(&plan.services)
        .map(|(spec, d)| {
            let spec = spec.clone();
            match d.old {
                Some(old) => store
                    .read_blocking(move |s| policy_for(&spec, s, at))
                    .map(|policy| Loaded::Running { old, policy }),
                None => store
                    .write_blocking(move |s| ServiceRuntime::load(&spec, s, at))
                    .map(|rt| Loaded::Added(Box::new(rt))),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(store_err)?;
    Ok(Prepared {
        base,
        new,
        plan,
        loaded,
        maintenance_epoch,
        took: started.elapsed(),
    })
}

/// What auditing a rejected reload needs on the reload's thread: who asked, the node, and
/// the metrics to count the record.
struct Rejected {
    actor: String,
    node: String,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Rejected {
    /// Audits a reload the loader refused (`config_rejected`, with its diagnostics) and keeps
    /// the files it read in the configuration history, so an auditor sees what was tried.
    /// A store error is logged: the reload's answer is the diagnostics either way.
    fn record(
        self,
        base: &Config,
        store: &StoreHandle,
        files: ConfigFiles,
        diagnostics: &[String],
    ) {
        let version = files.version().unwrap_or_default();
        let rec = NewAuditRecord {
            kind: audit::KIND_CONFIG_REJECTED.to_owned(),
            at: Timestamp::now(),
            actor: self.actor.clone(),
            service: None,
            reason: format!(
                "configuration reload rejected ({} problem(s)); the running configuration stays in force",
                diagnostics.len()
            ),
            config_version: base.version.clone(),
            node: self.node,
            detail: serde_json::json!({
                "command": "reload",
                "rejected_version": version,
                "diagnostics": diagnostics,
                "files": files.reads.iter().map(|r| serde_json::json!({
                    "path": r.path, "sha256": r.sha256
                })).collect::<Vec<_>>(),
            }),
        };
        let diagnostics = diagnostics.to_vec();
        let secrets = super::anchor::secrets(base);
        let actor = self.actor.clone();
        let written = store.write_blocking(move |s| {
            let r = s.append_audit(&rec)?;
            s.record_config_load(&ConfigLoad {
                files: &files,
                version: &version,
                at: r.at,
                trigger: "reload",
                actor: &actor,
                result: LoadResult::Rejected,
                diagnostics: &diagnostics,
                audit_id: Some(r.id),
                secrets: &secrets,
            })?;
            Ok::<_, StoreError>(r.id)
        });
        match written {
            Ok(_) => self.metrics.audit_recorded(audit::KIND_CONFIG_REJECTED),
            Err(e) => {
                self.metrics.store_error("append_audit");
                error!(
                    "could not audit the rejected configuration reload by {}: {e}",
                    self.actor
                );
            }
        }
    }
}

impl Core {
    /// A reload was asked for: started now, or after the one being prepared.
    pub(super) fn reload(&mut self, actor: String, reply: Reply) {
        if self.reloads.current.is_some() {
            self.reloads.waiting.push_back((actor, reply));
        } else {
            self.start_reload(actor, reply);
        }
    }

    fn start_reload(&mut self, actor: String, reply: Reply) {
        let base = self.config.clone();
        let store = self.store.clone();
        let tx = self.msg_tx.clone();
        let epoch = self.reloads.maintenance_epoch;
        let rejected = Rejected {
            actor: actor.clone(),
            node: self.coordinator.node().to_owned(),
            metrics: self.metrics.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("switchboard-reload".into())
            .spawn(move || {
                let prepared = prepare(base, &store, epoch, rejected).map(Box::new);
                // The core is gone only when the daemon is stopping: nobody waits for this.
                let _ = tx.blocking_send(Msg::Reloaded(prepared));
            });
        match spawned {
            Ok(_) => self.reloads.current = Some((actor, reply)),
            Err(e) => {
                error!("configuration reload by {actor}: cannot start its thread: {e}");
                let _ = reply.send(Err(ReloadError::Store(format!(
                    "cannot start the reload: {e}"
                ))));
            }
        }
    }

    /// The prepared reload is back: swap it in (or report why not), answer, start the next.
    pub(super) async fn reloaded(&mut self, prepared: Result<Box<Prepared>, ReloadError>) {
        let Some((actor, reply)) = self.reloads.current.take() else {
            return;
        };
        let result = match prepared {
            Ok(p) if !Arc::ptr_eq(&p.base, &self.config) => {
                // Only a reload changes the configuration and reloads run one at a time, so
                // this does not happen; if it ever did, the plan would be against the wrong
                // base: prepare again rather than swap it in.
                self.reloads.waiting.push_front((actor, reply));
                self.start_next_reload();
                return;
            }
            Ok(p) => self.swap(&actor, *p).await,
            Err(e) => {
                if let ReloadError::Invalid { diagnostics } = &e {
                    self.metrics.config_reload(false);
                    error!(
                        "configuration reload by {actor} failed; keeping the running configuration: {}",
                        diagnostics.join("; ")
                    );
                }
                Err(e)
            }
        };
        let _ = reply.send(result);
        self.start_next_reload();
    }

    /// The daemon is stopping: every reload asked for is answered so, none is swapped in.
    pub(super) fn abandon_reloads(&mut self) {
        let current = self.reloads.current.take();
        for (_, reply) in current.into_iter().chain(self.reloads.waiting.drain(..)) {
            let _ = reply.send(Err(ReloadError::Store(
                "the daemon is shutting down".into(),
            )));
        }
    }

    fn start_next_reload(&mut self) {
        if let Some((actor, reply)) = self.reloads.waiting.pop_front() {
            self.start_reload(actor, reply);
        }
    }

    /// Swaps in a prepared configuration, keeping the machine state (and holds) of services
    /// that still exist and the health of checks whose definition did not change.
    async fn swap(&mut self, actor: &str, p: Prepared) -> Result<ReloadReport, ReloadError> {
        let swap_started = std::time::Instant::now();
        let Prepared {
            new,
            plan,
            mut loaded,
            maintenance_epoch,
            took,
            ..
        } = p;
        let now = Timestamp::now();
        if maintenance_epoch != self.reloads.maintenance_epoch {
            // A window was scheduled through the API after the store was read: read the
            // policies again, before anything is touched, so a store error changes nothing.
            for (spec, l) in new.services.iter().zip(loaded.iter_mut()) {
                if let Loaded::Running { policy, .. } = l {
                    let spec = spec.clone();
                    *policy = self
                        .store
                        .read(move |s| policy_for(&spec, s, now))
                        .await
                        .map_err(|e| ReloadError::Store(e.to_string()))?;
                }
            }
        }
        let mut old_services: Vec<Option<ServiceRuntime>> = std::mem::take(&mut self.services)
            .into_iter()
            .map(Some)
            .collect();
        let mut report = ReloadReport {
            config_version: new.version.clone(),
            services_added: Vec::new(),
            services_removed: Vec::new(),
            services_changed: Vec::new(),
            checks_changed: Vec::new(),
            restart_needed: plan.restart_needed,
        };
        let mut services = Vec::with_capacity(new.services.len());
        for ((spec, d), l) in new.services.iter().zip(plan.services).zip(loaded) {
            let (old, policy) = match l {
                Loaded::Added(rt) => {
                    self.metrics_for_new_service(&rt);
                    report.services_added.push(spec.id.clone());
                    services.push(*rt);
                    continue;
                }
                Loaded::Running { old, policy } => (old, policy),
            };
            // The plan names each running service once, so it is still there.
            let Some(mut rt) = old_services.get_mut(old).and_then(Option::take) else {
                continue;
            };
            if d.changed {
                report.services_changed.push(spec.id.clone());
            }
            let mut old_checks: Vec<Option<CheckRuntime>> = std::mem::take(&mut rt.checks)
                .into_iter()
                .map(Some)
                .collect();
            let mut checks = Vec::with_capacity(spec.checks.len());
            for (c, kept) in spec.checks.iter().zip(&d.kept) {
                match kept.and_then(|i| old_checks.get_mut(i).and_then(Option::take)) {
                    Some(k) => checks.push(k),
                    None => {
                        // New or changed: its health starts over (the machine forgets the
                        // old verdict in `reconfigure` below).
                        report.checks_changed.push(c.name.clone());
                        self.metrics.check_configured(&spec.id, c);
                        checks.push(CheckRuntime::new(now));
                    }
                }
            }
            for dropped in d.dropped.iter().filter(|d| d.gone) {
                // Indices from the plan are into this very spec (the base was checked above).
                if let Some(c) = rt.spec.checks.get(dropped.old) {
                    report.checks_changed.push(c.name.clone());
                    self.metrics.remove_check(&spec.id, c);
                }
            }
            rt.machine.reconfigure(d.forgotten(&rt.spec, spec));
            rt.checks = checks;
            rt.policy = policy;
            rt.spec = spec.clone();
            for r in &spec.routes {
                self.metrics
                    .route_targets(&spec.id, &r.id, &r.primary, &r.backup, rt.side);
            }
            services.push(rt);
        }
        for gone in plan
            .removed
            .iter()
            .filter_map(|&o| old_services.get_mut(o).and_then(Option::take))
        {
            info!(
                "{}: no longer configured; its probes stop (its history stays in the store)",
                gone.spec.name
            );
            for c in &gone.spec.checks {
                self.metrics.remove_check(&gone.spec.id, c);
            }
            self.metrics.forget_service(&gone.spec.id);
            report.services_removed.push(gone.spec.id.clone());
        }
        self.services = services;
        self.config = Arc::new(new);
        // The words incidents are written with and the Message-ID domain live on the writer's
        // connection: set there, in the order of the writes around them.
        let words = super::service_words(&self.config);
        let domain = self.config.email.message_id_domain();
        let described = self
            .store
            .write(move |s| {
                s.describe_services(words);
                s.set_message_id_domain(&domain);
                Ok::<_, StoreError>(())
            })
            .await;
        if let Err(e) = described {
            error!("configuration reload by {actor}: the store did not take the new service names: {e}");
        }
        super::configure_windows(&self.board, &self.config);
        self.show_windows();
        self.resolve_incidents_of_removed(&report.services_removed, actor)
            .await;
        self.start_probes();
        for si in 0..self.services.len() {
            self.on_event(si, Event::Tick, now).await;
        }
        self.publish();
        self.metrics.config_reload(true);
        let audit_id = self
            .audit_action(
                None,
                actor,
                "configuration reload",
                serde_json::json!({
                    "command": "reload",
                    "services_added": report.services_added,
                    "services_removed": report.services_removed,
                    "services_changed": report.services_changed,
                    "checks_changed": report.checks_changed,
                }),
                now,
            )
            .await;
        self.record_applied_load(actor, audit_id, now).await;
        info!(
            "configuration reloaded by {actor}: version {}; {} services ({} added, {} removed, {} changed){}; prepared in {} ms off the core, swapped in {} ms",
            &report.config_version[..12.min(report.config_version.len())],
            self.services.len(),
            report.services_added.len(),
            report.services_removed.len(),
            report.services_changed.len(),
            if report.restart_needed.is_empty() {
                String::new()
            } else {
                format!("; needs a restart to apply: {}", report.restart_needed.join(", "))
            },
            took.as_millis(),
            swap_started.elapsed().as_millis(),
        );
        Ok(report)
    }

    /// Keeps the configuration now in force in the configuration history, with the reload's
    /// audit record.
    async fn record_applied_load(&self, actor: &str, audit_id: Option<i64>, at: Timestamp) {
        let config = self.config.clone();
        let actor_owned = actor.to_owned();
        let written = self
            .store
            .write(move |s| {
                s.record_config_load(&ConfigLoad {
                    files: &config.files,
                    version: &config.version,
                    at,
                    trigger: "reload",
                    actor: &actor_owned,
                    result: LoadResult::Applied,
                    diagnostics: &config.warnings(),
                    audit_id,
                    secrets: &super::anchor::secrets(&config),
                })
            })
            .await;
        if let Err(e) = written {
            self.metrics.store_error("record_config_load");
            error!("configuration reload by {actor}: could not keep it in the configuration history: {e}");
        }
    }

    /// A service removed from the configuration is no longer watched: its open incident is
    /// resolved with an update saying so, rather than left open on the status page forever.
    async fn resolve_incidents_of_removed(&self, removed: &[String], actor: &str) {
        if removed.is_empty() {
            return;
        }
        // `incidents(0)`: every unresolved incident (and no resolved ones).
        let open = match self.store.read(|s| s.incidents(0)).await {
            Ok(all) => all,
            Err(e) => {
                self.metrics.store_error("incidents");
                error!("could not read incidents of removed services: {e}");
                return;
            }
        };
        for inc in open
            .iter()
            .filter(|i| i.is_open() && removed.contains(&i.service))
        {
            let update = crate::store::NewIncidentUpdate {
                status: crate::incident::IncidentStatus::Resolved,
                body: "This channel is no longer monitored here: it was removed from the \
                       configuration."
                    .to_string(),
                actor: actor.to_string(),
                at: Timestamp::now(),
            };
            let id = inc.public_id.clone();
            match self
                .store
                .write(move |s| s.add_incident_update(&id, &update))
                .await
            {
                Ok(_) => info!(
                    "{}: incident {} resolved: the service was removed from the configuration",
                    inc.service, inc.public_id
                ),
                Err(e) => {
                    self.metrics.store_error("add_incident_update");
                    error!(
                        "{}: could not resolve incident {} of the removed service: {e}",
                        inc.service, inc.public_id
                    );
                }
            }
        }
        self.board.changed();
    }
}
