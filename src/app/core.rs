//! The core task: one loop that owns every service's decision state and takes messages one at a time.
//!
//! Outcomes go through `health`, health changes and ticks through `failover::step`, and the
//! actions that come back are executed here in order: recorded (`record`), routes switched,
//! wake-ups armed. Operator commands (`commands`), drills (`drills`) and reloads (`reload`)
//! are other messages to the same loop, so every decision is serialised with the rest. After
//! a change the core publishes a new snapshot for the HTTP side (`publish`), built from the
//! same per-service projection the control API shows (`ServiceRuntime::view`).

use super::handle::Msg;
use super::record::{RetryQueue, TransportsInUse};
use super::reload;
use super::service::{side_target, ServiceRuntime};
use super::tasks::{supervised_probe_loop, ProbeLoop};
use crate::announce::Templates;
use crate::api::core::AppliedTransition;
use crate::clock::Timestamp;
use crate::cluster::Coordinator;
use crate::config::Config;
use crate::failover::{self, Action, Event, Side};
use crate::health::Health;
use crate::history::History;
use crate::metrics::Metrics;
use crate::probe::Outcome;
use crate::store::{StoreError, StoreHandle};
use crate::view::{Board, Snapshot};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tracing::{error, info, warn};

/// How often the core looks again at services whose deadlines have passed (`Core::safety_tick`).
const SAFETY_TICK: Duration = Duration::from_secs(5);

/// Everything the core task owns and decides with; only the core task touches it.
pub(super) struct Core {
    pub(super) config: Arc<Config>,
    pub(super) coordinator: Arc<dyn Coordinator>,
    pub(super) store: StoreHandle,
    pub(super) metrics: Arc<Metrics>,
    pub(super) services: Vec<ServiceRuntime>,
    pub(super) snapshot_tx: watch::Sender<Arc<Snapshot>>,
    pub(super) outbox_wake: Arc<Notify>,
    pub(super) msg_tx: mpsc::Sender<Msg>,
    /// Bumped by every reload that restarts the probe loops.
    pub(super) generation: u64,
    /// Turned true to stop the probe loops of the current generation.
    pub(super) probes_stop: watch::Sender<bool>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Probe history for the status page (summed in memory; written by `history::run`).
    pub(super) history: Arc<History>,
    /// Incidents for the status page, told after each recorded transition.
    pub(super) board: Arc<Board>,
    /// Transitions whose commit failed (full disk, database locked), kept in order and
    /// retried with backoff so that neither they nor their announcements are lost.
    pub(super) queue: RetryQueue,
    /// Message templates, loaded once at start.
    pub(super) templates: Arc<Templates>,
    /// The announcement transports started with, which announcements are planned for.
    pub(super) in_use: TransportsInUse,
    /// The reload being prepared off the core and those waiting for it (`reload`).
    pub(super) reloads: reload::Reloads,
    /// What each vendor check (by name) said last: whether it declares an outage, and its
    /// words. Services that name it in `corroborate` read it (`corroboration`).
    pub(super) vendors: HashMap<String, VendorHeard>,
    /// The announcement transports, for on-call's vendor notes (`note_vendor`), which are
    /// not outbox rows.
    pub(super) transports: Arc<crate::announce::outbox::Transports>,
    /// What jobs reported to heartbeat checks; shared with the control API, kept by reloads.
    pub(super) heartbeats: Arc<crate::probe::heartbeat::Heartbeats>,
    /// The vantages' verdicts: this node's own (published in cluster mode) and the live
    /// peers', from which each check's verdict is decided (`decide_check`).
    pub(super) votes: Arc<crate::cluster::vantage::VoteBoard>,
}

/// The last verdict of one vendor check, as corroboration reads it.
#[derive(Clone, Debug, Default)]
pub(super) struct VendorHeard {
    /// The vendor declares an outage at or above the check's `impact`.
    pub(super) declared: bool,
    /// The vendor's words with their source, for on-call (`VendorReport::quote`); `None`
    /// while the vendor declares nothing or its feed could not be judged.
    pub(super) quote: Option<String>,
    /// The words customers may read (`public_vendor_words`): the incident's title and link.
    pub(super) public: Option<String>,
}

/// What one step of a service's machine did.
#[derive(Default)]
pub(super) struct Stepped {
    pub(super) rejected: Option<String>,
    pub(super) transitions: Vec<AppliedTransition>,
}

impl Core {
    pub(super) async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Outcomes change the page often; publish at most every 250 ms unless something switched.
        let mut publish = tokio::time::interval(Duration::from_millis(250));
        let mut dirty = false;
        let mut safety = tokio::time::interval(SAFETY_TICK);
        let mut clock_offset = 0.0;
        safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A first look at every service: schedules planned windows, ends a drill whose
        // deadline passed while the daemon was down, and wakes it again at the deadlines of
        // the holds it restored (drill, pin, maintenance), so none of them runs forever.
        let now = Timestamp::now();
        for si in 0..self.services.len() {
            self.on_event(si, Event::Tick, now).await;
            self.wake_for_holds(si, now);
        }
        let mut remote_votes = self.votes.subscribe_remote();
        // A new leader decides at once from the verdicts the other vantages already published.
        if !self.votes.remote().is_empty() {
            self.decide_all(now).await;
        }
        loop {
            tokio::select! {
                _ = remote_votes.changed() => {
                    self.decide_all(Timestamp::now()).await;
                    dirty = true;
                }
                msg = rx.recv() => match msg {
                    Some(Msg::Outcome { generation, service, check, outcome, reply }) => {
                        let confirm = generation == self.generation
                            && self.on_outcome(service, check, *outcome).await;
                        let _ = reply.send(confirm);
                        dirty = true;
                    }
                    Some(Msg::Tick { service }) => {
                        if let Some(si) = self.index(&service) {
                            self.on_event(si, Event::Tick, Timestamp::now()).await;
                        }
                    }
                    Some(Msg::Command { service, command, what, params, public_message, reply }) => {
                        let applied = self.on_command(&service, command, &what, params, public_message).await;
                        let _ = reply.send(applied);
                    }
                    Some(Msg::Inspect { reply }) => {
                        let _ = reply.send(self.services.iter().map(ServiceRuntime::detail).collect());
                    }
                    Some(Msg::DrillStart { request, reply }) => {
                        let _ = reply.send(self.start_drill(request).await);
                    }
                    Some(Msg::DrillAbort { id, actor, reason, public_message, reply }) => {
                        let _ = reply.send(self.abort_drill(&id, actor, reason, public_message).await);
                    }
                    Some(Msg::ScheduleMaintenance { window, reply }) => {
                        let _ = reply.send(self.schedule_maintenance(window).await);
                    }
                    Some(Msg::Reload { actor, reply }) => self.reload(actor, reply),
                    Some(Msg::Reloaded(prepared)) => self.reloaded(prepared).await,
                    Some(Msg::Review { audit_id, actor, note, reply }) => {
                        let _ = reply.send(self.review(audit_id, &actor, &note).await);
                    }
                    Some(Msg::Audit { actor, reason, detail, reply }) => {
                        let _ = reply.send(self.audit_other(&actor, &reason, detail).await);
                    }
                    None => break,
                },
                _ = publish.tick() => {
                    if self.queue.retry_due() {
                        self.retry_unrecorded().await;
                    }
                    if dirty { self.publish(); dirty = false; }
                },
                _ = safety.tick() => clock_offset = self.safety_tick(clock_offset).await,
                // Awaited inside a block so that the borrowed value it returns is dropped at
                // once: held in `select!`'s output across the other branches' awaits, it would
                // make this future unable to move between worker threads.
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            }
        }
        // A reload still being prepared is not waited for; its callers hear that the daemon
        // is stopping, and the HTTP server is not kept open by a request waiting for it.
        self.abandon_reloads();
    }

    pub(super) fn index(&self, service: &str) -> Option<usize> {
        self.services.iter().position(|s| s.spec.id == service)
    }

    /// Asks for a `Tick` at every deadline of the service's restored holds (`deadlines`: drill,
    /// pin, maintenance, flap window, recovery hold, planned windows).
    pub(super) fn wake_for_holds(&self, si: usize, now: Timestamp) {
        let s = &self.services[si];
        for at in s.machine.deadlines(&s.policy, now) {
            self.wake_at(si, at);
        }
    }

    /// Sends a `Tick` once the daemon's clock has reached `at`. The wait is re-armed for what
    /// is left until the clock says the deadline has really passed, so a wake-up that comes
    /// early can never leave a hold in force with nothing to end it.
    pub(super) fn wake_at(&self, si: usize, at: Timestamp) {
        let tx = self.msg_tx.clone();
        let service = self.services[si].spec.id.clone();
        tokio::spawn(async move {
            loop {
                let left = at.since(Timestamp::now());
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left).await;
            }
            let _ = tx.send(Msg::Tick { service }).await;
        });
    }

    /// The safety net under the wake-ups: every service with a deadline that has passed is
    /// looked at again. It also shows how far the system clock has been stepped away from
    /// the daemon's (`switchboard_clock_offset_seconds`, and a warning when it moves), given
    /// the offset it saw last time; returns the offset it sees now.
    pub(super) async fn safety_tick(&mut self, last_offset: f64) -> f64 {
        let offset = Timestamp::wall_offset_secs();
        self.metrics.clock_offset(offset);
        if (offset - last_offset).abs() >= 1.0 {
            warn!(
                "the system clock was stepped: it is now {offset:+.1} s from switchboard's clock, which holds and deadlines follow (it never jumps); timestamps keep this offset until the next start"
            );
        }
        let now = Timestamp::now();
        for si in 0..self.services.len() {
            let s = &self.services[si];
            if s.machine
                .deadlines(&s.policy, now)
                .first()
                .is_some_and(|t| *t <= now)
            {
                self.on_event(si, Event::Tick, now).await;
            }
        }
        offset
    }

    pub(super) fn metrics_for_new_service(&self, s: &ServiceRuntime) {
        let m = &self.metrics;
        m.service_state(&s.spec.id, s.machine.state);
        m.state_since(&s.spec.id, s.machine.since);
        m.flapping(&s.spec.id, s.machine.flapping);
        m.holds(
            &s.spec.id,
            &s.machine.holds_in_force(&s.policy, Timestamp::now()),
        );
        m.drill_service_configured(&s.spec.id);
        m.detection_configured(&s.spec.id);
        for c in &s.spec.checks {
            m.check_configured(&s.spec.id, c);
        }
        for r in &s.spec.routes {
            m.route_targets(&s.spec.id, &r.id, &r.primary, &r.backup, s.side);
        }
    }

    /// Starts one probe loop per configured check, as a new generation: loops of the
    /// previous one are told to stop, and their outcomes are ignored from now on.
    pub(super) fn start_probes(&mut self) {
        self.probes_stop.send_replace(true);
        self.generation += 1;
        self.probes_stop = watch::Sender::new(false);
        // Before the loops start, so every heartbeat check is watched from now on.
        self.heartbeats.configure(&self.config);
        // Verdicts on checks no longer configured are not this vantage's votes any more.
        let keys: std::collections::HashSet<String> = self
            .config
            .services
            .iter()
            .flat_map(|s| {
                s.checks
                    .iter()
                    .map(|c| crate::cluster::votes::check_key(&s.id, &c.name))
            })
            .collect();
        self.votes.retain_own(|k| keys.contains(k));
        for (si, s) in self.config.services.iter().enumerate() {
            for ci in 0..s.checks.len() {
                tokio::spawn(supervised_probe_loop(
                    ProbeLoop {
                        generation: self.generation,
                        si,
                        ci,
                        config: self.config.clone(),
                        tx: self.msg_tx.clone(),
                        metrics: self.metrics.clone(),
                        permits: self.permits.clone(),
                        heartbeats: self.heartbeats.clone(),
                        slot: self.votes.slot(),
                    },
                    self.shutdown.clone(),
                    self.probes_stop.subscribe(),
                ));
            }
        }
    }

    /// Shows every service's planned windows (configured and scheduled through the API) on
    /// the status page.
    pub(super) fn show_windows(&self) {
        for s in &self.services {
            self.board.set_windows(&s.spec.id, s.policy.windows.clone());
        }
    }

    /// The vendor checks `service` corroborates with that declare an outage now, with what
    /// they said.
    pub(super) fn corroboration(&self, si: usize) -> Vec<(&str, &VendorHeard)> {
        self.services[si]
            .spec
            .corroborate
            .iter()
            .filter_map(|name| {
                let heard = self.vendors.get(name)?;
                heard.declared.then_some((name.as_str(), heard))
            })
            .collect()
    }

    pub(super) async fn on_outcome(&mut self, si: usize, ci: usize, outcome: Outcome) -> bool {
        let now = Timestamp::now();
        let is_vendor = self.services[si].spec.checks[ci].role == crate::config::Role::Vendor;
        let corroborated = !is_vendor && !self.corroboration(si).is_empty();
        let svc = &mut self.services[si];
        let spec = &svc.spec.checks[ci];
        if outcome
            .error
            .as_ref()
            .is_some_and(|e| e.class == crate::probe::ErrorClass::Local)
        {
            // Our own shortage (out of file descriptors, say) is not the target's failure:
            // the outcome counts as unknown, so it can neither confirm nor clear a failure.
            let why = outcome.error.as_ref().map_or("", |e| e.message.as_str());
            warn!(
                "{} ({} check of {}) not probed: this machine is short of resources: {why}",
                spec.name,
                spec.role.as_str(),
                svc.spec.name
            );
            self.metrics.probe_local_error(&svc.spec.id, &spec.name);
            return svc.checks[ci].health.wants_confirmation();
        }
        self.metrics.probe_finished(&svc.spec.id, spec, &outcome);
        if spec.role == crate::config::Role::Primary {
            self.history.record(
                &svc.spec.id,
                outcome.success,
                outcome.duration,
                outcome.started_at,
            );
        }
        // A corroborating vendor's declared outage shortens our own confirmation (`health`).
        let rt = &mut svc.checks[ci];
        let threshold_before = rt.health.failure_threshold(rt.thresholds(spec));
        let was_corroborated = std::mem::replace(&mut rt.corroborated, corroborated);
        let t = rt.thresholds(spec);
        let changed = rt.health.observe(t, outcome.success, now);
        let threshold = rt.health.failure_threshold(t);
        if threshold != threshold_before && corroborated != was_corroborated {
            self.metrics.check_failure_threshold(&spec.name, threshold);
            let why = if corroborated {
                "a vendor it corroborates with declares an outage"
            } else {
                "no vendor it corroborates with declares an outage any more"
            };
            info!(
                "{} ({} check of {}) now needs {threshold} failed probes in a row to be down (was {threshold_before}): {why}",
                spec.name,
                spec.role.as_str(),
                svc.spec.name
            );
        } else if threshold != threshold_before {
            self.metrics.check_failure_threshold(&spec.name, threshold);
            let noise = rt.health.noise().unwrap_or(0.0) * 100.0;
            info!(
                "{} ({} check of {}) now needs {threshold} failed probes in a row to be down (was {threshold_before}; failure_threshold {}, at most {}): {noise:.1} % of its recent probes failed while it was healthy (confirmation = \"adaptive\")",
                spec.name,
                spec.role.as_str(),
                svc.spec.name,
                spec.failure_threshold,
                t.max_failures()
            );
        }
        let confirm = rt.health.wants_confirmation();
        let health = rt.health.health;
        let summary = outcome.summary();
        rt.last = Some((summary.clone(), outcome.started_at));
        if is_vendor {
            // A vendor check never reaches the machine: it corroborates, it does not decide.
            if changed.is_some() {
                self.metrics
                    .check_health(&svc.spec.id, &spec.name, health.as_str());
            }
            let name = spec.name.clone();
            self.on_vendor(&name, &outcome, now).await;
            return confirm;
        }
        if let Some(prev) = changed {
            self.metrics
                .check_health(&svc.spec.id, &spec.name, health.as_str());
            let role = spec.role.as_str();
            let name = spec.name.clone();
            match health {
                Health::Suspect => warn!(
                    "{name} ({role} check of {}) is failing: {summary}; re-probing every {} to confirm",
                    svc.spec.name,
                    humantime::format_duration(spec.retry_interval)
                ),
                Health::Down => warn!(
                    "{name} ({role} check of {}) is down after {} failed probes in a row: {summary}",
                    svc.spec.name, rt.health.consecutive_failures
                ),
                Health::Healthy if prev != Health::Unknown => info!(
                    "{name} ({role} check of {}) is healthy again: {summary}",
                    svc.spec.name
                ),
                _ => {}
            }
            // The evidence a transition this causes will cite: where the outcome was seen
            // and the streak that crossed the threshold it was judged by.
            let (streak, threshold) = rt.health.streak(prev, t, threshold_before);
            let key = crate::cluster::votes::check_key(&svc.spec.id, &name);
            self.votes.set_own(
                &key,
                crate::cluster::votes::Verdict {
                    health,
                    outcome: summary,
                    at: now,
                    streak,
                    threshold,
                },
            );
            let reports = self.votes.slice(&key);
            self.decide_check(si, ci, now, &reports).await;
        }
        confirm
    }

    /// Decides every (non-vendor) check again from the vantages' votes: a peer's report
    /// changed, or a vantage came or went.
    async fn decide_all(&mut self, now: Timestamp) {
        let reports = self.votes.reports();
        for si in 0..self.services.len() {
            // Backup checks first: a primary decided down while the backup's verdict is not
            // yet heard would be a `degraded` step on the way to `failed_over`.
            let mut order: Vec<usize> = (0..self.services[si].spec.checks.len()).collect();
            order.sort_by_key(|&ci| {
                self.services[si].spec.checks[ci].role == crate::config::Role::Primary
            });
            for ci in order {
                self.decide_check(si, ci, now, &reports).await;
            }
        }
    }

    /// The verdict the failover machine hears for a check: this node's own when it is the
    /// only vantage, else the quorum of the live vantages (`cluster::votes::decide`). Only a
    /// change of that verdict becomes an `Event::Health`, with the votes as its evidence.
    async fn decide_check(
        &mut self,
        si: usize,
        ci: usize,
        now: Timestamp,
        reports: &[crate::cluster::votes::Report],
    ) {
        use crate::cluster::votes::{check_key, decide};
        let svc = &self.services[si];
        let spec = &svc.spec.checks[ci];
        if spec.role == crate::config::Role::Vendor {
            return;
        }
        let name = spec.name.clone();
        let key = check_key(&svc.spec.id, &name);
        let decision = decide(reports.iter(), &key, svc.spec.vote);
        let me = self.coordinator.node().to_owned();
        let own = decision.votes.iter().find(|v| v.vantage == me).cloned();
        let rt = &mut self.services[si].checks[ci];
        let Some(health) = decision.health else {
            if let Some(why) = &decision.blocked {
                if rt.decided.is_some() && decision.counted > 0 {
                    warn!(
                        "{name} ({} check of {}): no automatic decision: {why}",
                        spec_role(&self.services[si], ci),
                        self.services[si].spec.name
                    );
                }
            }
            return;
        };
        // A check the vantages found down stays down until they find it healthy: a quorum
        // of "failing" votes (a new leader's own probes starting over, say) is not a recovery.
        if rt.decided == Some(Health::Down) && health == Health::Suspect {
            return;
        }
        if rt.decided == Some(health) {
            if let Some(o) = own.filter(|o| o.health != health && decision.votes.len() > 1) {
                info!(
                    "{name} ({} check of {}): this vantage says {}, the vantages decide {} ({} of {} counted agree, {} needed)",
                    spec_role(&self.services[si], ci),
                    self.services[si].spec.name,
                    o.health.as_str(),
                    health.as_str(),
                    decision.votes.iter().filter(|v| v.counted && v.health == health).count(),
                    decision.counted,
                    decision.needed
                );
            }
            return;
        }
        rt.decided = Some(health);
        // The evidence: this node's own verdict when it agrees, else the first vantage's
        // that does; with every vote when more than one vantage voted.
        let agreeing = decision
            .votes
            .iter()
            .filter(|v| v.counted && v.health == health)
            .map(|v| v.vantage.clone())
            .collect::<Vec<_>>();
        let lead = if agreeing.contains(&me) {
            me.clone()
        } else {
            agreeing.first().cloned().unwrap_or_else(|| me.clone())
        };
        let verdict = reports
            .iter()
            .find(|r| r.node == lead)
            .and_then(|r| r.checks.get(&key));
        let (streak, threshold) = verdict.map_or((0, 0), |v| (v.streak, v.threshold));
        let mut detail = verdict.map(|v| v.outcome.clone()).unwrap_or_default();
        let several = decision.votes.len() > 1;
        if several && lead != me {
            detail = format!("{detail} (seen from {lead})");
        }
        if several {
            info!(
                "{name} ({} check of {}) is {} by the vantages' vote: {} ({} of {} counted, {} needed)",
                spec_role(&self.services[si], ci),
                self.services[si].spec.name,
                health.as_str(),
                decision
                    .votes
                    .iter()
                    .map(|v| format!("{}={}{}", v.vantage, v.health.as_str(), if v.counted { "" } else { " (suspect, not counted)" }))
                    .collect::<Vec<_>>()
                    .join(", "),
                agreeing.len(),
                decision.counted,
                decision.needed
            );
        }
        let seen = failover::Seen {
            vantage: if several { agreeing.join(",") } else { me },
            streak,
            threshold,
            votes: if several { decision.votes } else { Vec::new() },
        };
        self.on_event(
            si,
            Event::Health {
                check: name,
                health,
                detail,
                seen,
            },
            now,
        )
        .await;
    }

    /// A vendor check's verdict: kept for the services that corroborate with it, logged when
    /// the declaration starts or ends, and noted to on-call (`failover::vendor::notes_oncall`)
    /// for each such service whose own checks pass.
    async fn on_vendor(&mut self, name: &str, outcome: &Outcome, now: Timestamp) {
        let report = outcome.vendor.as_deref();
        let heard = VendorHeard {
            declared: report.is_some_and(|r| r.declared),
            quote: report
                .filter(|r| r.impact.is_some_and(|i| i > crate::config::Impact::None))
                .and_then(|r| r.quote()),
            public: report
                .filter(|r| r.declared)
                .map(|r| match r.incidents.first() {
                    Some(i) => format!(
                        "Our provider's status page reports: \"{}\"{}.",
                        i.title,
                        i.url
                            .as_ref()
                            .map(|u| format!(" ({u})"))
                            .unwrap_or_default()
                    ),
                    None => format!(
                        "Our provider's status page reports {}.",
                        r.impact.map_or("an outage", |i| i.words())
                    ),
                }),
        };
        let was = self
            .vendors
            .insert(name.to_owned(), heard.clone())
            .is_some_and(|h| h.declared);
        match (was, heard.declared) {
            (false, true) => warn!(
                "{name}: the vendor declares an outage: {}",
                heard.quote.as_deref().unwrap_or("(no words)")
            ),
            (true, false) => info!("{name}: the vendor no longer declares an outage"),
            _ => {}
        }
        for si in 0..self.services.len() {
            let svc = &self.services[si];
            if !svc.spec.corroborate.iter().any(|c| c == name) {
                continue;
            }
            if crate::failover::vendor::notes_oncall(svc.machine.state, was, heard.declared) {
                self.note_vendor(si, name, heard.quote.as_deref().unwrap_or(""), now)
                    .await;
            }
        }
    }

    pub(super) async fn on_event(&mut self, si: usize, event: Event, now: Timestamp) -> Stepped {
        self.on_event_with(si, event, now, None).await
    }

    /// `on_event` for an operator's command: `public_message` (theirs, if given) goes on every
    /// transition the command causes. The rules know nothing of it; it is words, not a decision.
    pub(super) async fn on_event_with(
        &mut self,
        si: usize,
        event: Event,
        now: Timestamp,
        public_message: Option<&str>,
    ) -> Stepped {
        let mut stepped = Stepped::default();
        let svc = &mut self.services[si];
        let mut actions = failover::step(&mut svc.machine, &svc.policy, &event, now);
        if let Some(m) = public_message {
            for a in &mut actions {
                if let Action::Record { transition, .. } = a {
                    transition.public_message = Some(m.to_owned());
                }
            }
        }
        self.quote_vendors(si, &mut actions);
        let svc = &mut self.services[si];
        self.metrics
            .holds(&svc.spec.id, &svc.machine.holds_in_force(&svc.policy, now));
        let holds = svc.machine.holds();
        if holds != svc.saved_holds {
            let store = self.store.clone();
            let id = svc.spec.id.clone();
            let saved = match serde_json::to_string(&holds) {
                Ok(json) => store
                    .write(move |s| s.set_holds(&id, &json, now))
                    .await
                    .map_err(|e: StoreError| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match saved {
                Ok(()) => svc.saved_holds = holds,
                Err(e) => error!(
                    "{}: could not save its holds (pin, maintenance, drill): {e}; a restart would lose them",
                    svc.spec.name
                ),
            }
        }
        if let Some(Action::Rejected { reason }) = actions
            .iter()
            .find(|a| matches!(a, Action::Rejected { .. }))
        {
            stepped.rejected = Some(reason.clone());
        }
        if actions.is_empty() {
            return stepped;
        }
        if !self.coordinator.is_leader() {
            // Followers keep deciding so they can take over with a warm state, but act on nothing.
            return stepped;
        }
        // The side after each record: the switch that follows it, if any.
        let sides: Vec<Side> = (0..actions.len())
            .map(|i| match actions.get(i + 1) {
                Some(Action::SwitchRoutes { to }) => *to,
                _ => self.services[si].side,
            })
            .collect();
        for (action, side_after) in actions.into_iter().zip(sides) {
            match action {
                Action::Record {
                    transition,
                    announce,
                    detected_in,
                    grounds,
                } => {
                    let (from, to, cause, at) = (
                        transition.from,
                        transition.to,
                        transition.cause.as_str(),
                        transition.at.rfc3339(),
                    );
                    let transition_id = self
                        .record(si, transition, grounds, announce, detected_in, side_after)
                        .await;
                    stepped.transitions.push(AppliedTransition {
                        transition_id,
                        from,
                        to,
                        cause,
                        at,
                    });
                }
                // A cluster leader whose write the log refused has stepped down (the
                // replicator ends its term): it switches nothing, the next leader decides.
                Action::SwitchRoutes { .. } if !self.coordinator.is_leader() => {}
                Action::SwitchRoutes { to } => self.switch(si, to),
                Action::Flapping { on } => {
                    if on {
                        self.announce_flapping(si, now).await;
                    }
                    let svc = &self.services[si];
                    self.metrics.flapping(&svc.spec.id, on);
                    if on {
                        warn!(
                            "{}: failed over {} times within {}; holding the backup instead of switching back (flapping)",
                            svc.spec.name,
                            svc.policy.max_failovers,
                            humantime::format_duration(svc.policy.flap_window)
                        );
                    } else {
                        info!("{}: no longer flapping", svc.spec.name);
                    }
                }
                Action::Rejected { reason } => {
                    warn!(
                        "{}: command rejected: {reason}",
                        self.services[si].spec.name
                    );
                }
                Action::WakeAt(at) => self.wake_at(si, at),
            }
        }
        self.publish();
        stepped
    }

    /// The words of the vendors this service corroborates with, with their source, on every
    /// transition it records: as evidence for on-call, and (`public_vendor_words`) for
    /// customers too while the vendor declares an outage.
    fn quote_vendors(&self, si: usize, actions: &mut [Action]) {
        let spec = &self.services[si].spec;
        let quotes: Vec<String> = spec
            .corroborate
            .iter()
            .filter_map(|name| {
                let q = self.vendors.get(name)?.quote.as_deref()?;
                Some(format!("{name} (vendor) says: {q}"))
            })
            .collect();
        let public: Vec<&str> = if spec.public_vendor_words {
            self.corroboration(si)
                .into_iter()
                .filter_map(|(_, h)| h.public.as_deref())
                .collect()
        } else {
            Vec::new()
        };
        for a in actions {
            if let Action::Record { transition, .. } = a {
                transition.evidence.extend(quotes.iter().cloned());
                if !public.is_empty() {
                    let words = public.join(" ");
                    transition.public_message = Some(match transition.public_message.take() {
                        Some(m) => format!("{m}\n\n{words}"),
                        None => words,
                    });
                }
            }
        }
    }

    /// The only place routes change.
    pub(super) fn switch(&mut self, si: usize, to: Side) {
        let svc = &mut self.services[si];
        svc.side = to;
        for r in &svc.spec.routes {
            let target = side_target(r, to);
            self.metrics.route_active(&svc.spec.id, &r.id, to, target);
            info!(
                "route {}: customers now go to the {} target {target} ({}/go/{})",
                r.id,
                to.as_str(),
                self.config.server.public_url,
                r.id
            );
        }
    }

    /// Publishes every service's `view` (the projection the control API shows too) as a new
    /// snapshot for the HTTP side.
    pub(super) fn publish(&self) {
        let services = self.services.iter().map(ServiceRuntime::view).collect();
        let snap = Snapshot {
            services,
            ..super::empty_snapshot(&self.config)
        };
        self.snapshot_tx.send_replace(Arc::new(snap));
    }
}

/// `primary` or `backup`: a check's role as log lines name it.
fn spec_role(svc: &ServiceRuntime, ci: usize) -> &'static str {
    svc.spec.checks[ci].role.as_str()
}
