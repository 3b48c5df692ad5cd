//! The recorder: every transition and the announcements it causes written to the store in one transaction, before anything is switched or sent, and the queue of those the store refused.
//!
//! When the store refuses a commit (disk full, database locked) the route still switches and
//! the transition waits here, in order, retried with backoff (`RetryQueue`); a later
//! transition queues behind it so the store sees each service's transitions in order. What
//! still waits at shutdown is spilled (`spill`). The announcement planning a record needs
//! (message context, channels, grouping) lives here too: it is what the transaction writes.

use super::core::Core;
use super::service::{route_views, side_target};
use super::spill::{self, PendingCount};
use crate::announce::group::{self, Hold};
use crate::announce::{self, Channels, Kind, MessageContext, Templates};
use crate::announce::{webhook, zendesk};
use crate::clock::Timestamp;
use crate::config::{Config, ServiceSpec, WebhookSpec, ZendeskArticleSpec};
use crate::failover::{self, Side, Transition};
use crate::health::Health;
use crate::store::{OutboxItem, OutboxStatus, StoreError};
use crate::view::RouteView;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// A transition the store did not take yet, with what its commit writes (spilled at shutdown).
use crate::store::spill::Pending as Unrecorded;

/// The first and the longest wait between retries of unrecorded transitions.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Transitions the store refused, oldest first, with when to try again.
pub(super) struct RetryQueue {
    pub(super) waiting: VecDeque<Unrecorded>,
    /// When the next retry is due, and the delay after that.
    retry_at: Instant,
    delay: Duration,
    /// `waiting.len()` for `/readyz` (see `Core::pending_changed`).
    pub(super) pending: PendingCount,
}

impl RetryQueue {
    pub(super) fn new(pending: PendingCount) -> RetryQueue {
        RetryQueue {
            waiting: VecDeque::new(),
            retry_at: Instant::now(),
            delay: RETRY_MIN,
            pending,
        }
    }

    /// Something waits and its retry is due.
    pub(super) fn retry_due(&self) -> bool {
        !self.waiting.is_empty() && Instant::now() >= self.retry_at
    }
}

impl Core {
    /// Writes the transition and its announcements in one transaction, before any switch.
    pub(super) async fn record(
        &mut self,
        si: usize,
        t: Transition,
        grounds: Vec<failover::Ground>,
        announce: bool,
        detected_in: Option<Duration>,
        side_after: Side,
    ) -> Option<i64> {
        let svc = &mut self.services[si];
        let routes_after = route_views(&svc.spec, side_after);
        let announcements = if announce {
            let mut ctx = message_context(&self.config, &svc.spec, routes_after.clone());
            ctx.holds = svc.hold_lines(t.at);
            let channels = channels(&self.config, &self.in_use, &svc.spec, &self.templates);
            // A drill interrupted by a real outage is also announced as the real change.
            Kind::all_of(&t)
                .into_iter()
                .flat_map(|kind| announce::plan_kind(kind, &t, &ctx, &channels))
                .collect()
        } else {
            Vec::new()
        };
        // E-mail to on-call and customers waits for its group; the rest goes at once.
        let (mut announcements, parts) = group::hold(
            announcements,
            &svc.spec.name,
            t.at,
            hold_for(&self.config, &svc.spec),
        );
        if side_after != svc.side {
            // The webhooks follow the switch, and are written in the same transaction.
            let name = &svc.spec.name;
            let hooks = self.in_use.hooks(&svc.spec.id);
            announcements.extend(webhook::plan(hooks, &t, name, &routes_after));
            let articles = self.in_use.articles(&svc.spec.id);
            announcements.extend(zendesk::plan(articles, &t, name, &routes_after));
        }
        let store = self.store.clone();
        // The audit record also says where customers were sent before and after, and who decided.
        let routes_on = |side: Side| {
            svc.spec
                .routes
                .iter()
                .map(|r| (r.id.clone(), side_target(r, side).to_owned()))
                .collect()
        };
        let audit = crate::audit::AuditContext {
            config_version: self.config.version.clone(),
            node: self.coordinator.node().to_owned(),
            routes_before: routes_on(svc.side),
            routes_after: routes_on(side_after),
            grounds,
        };
        // While earlier transitions wait for a retry, this one queues behind them: the store
        // must see every service's transitions in order.
        let res = if self.queue.waiting.is_empty() {
            store
                .commit_transition_with(
                    t.clone(),
                    audit.clone(),
                    announcements.clone(),
                    parts.clone(),
                )
                .await
        } else {
            Err(StoreError::Deferred)
        };
        let transition_id = match res {
            Ok(c) => {
                self.metrics.audit_recorded(crate::audit::KIND_TRANSITION);
                if !announcements.is_empty() || !parts.is_empty() {
                    self.outbox_wake.notify_one();
                }
                // The transition may have opened or moved an incident (same transaction).
                self.board.changed();
                Some(c.transition_id)
            }
            // The switch still happens (customers come first); the record and its
            // announcements are kept in memory and written as soon as the store takes them.
            Err(e) => {
                if !matches!(e, StoreError::Deferred) {
                    self.metrics.store_error("commit_transition");
                    error!(
                        "{}: could not record transition {} -> {}: {e}; keeping it and its {} announcement(s) in memory, retrying",
                        svc.spec.name, t.from, t.to, announcements.len()
                    );
                    self.queue.retry_at = Instant::now() + RETRY_MIN;
                    self.queue.delay = RETRY_MIN;
                }
                self.queue.waiting.push_back(Unrecorded {
                    t: t.clone(),
                    audit,
                    announcements,
                    parts,
                });
                spill::show_pending(&self.metrics, &self.queue.pending, self.queue.waiting.len());
                None
            }
        };
        self.metrics.transition(&t.service, t.from, t.to, t.cause);
        self.metrics.service_state(&t.service, t.to);
        self.metrics.state_since(&t.service, t.at);
        if let Some(d) = detected_in {
            self.metrics.detection_seconds(&t.service, d.as_secs_f64());
        }
        svc.cause = t.cause.as_str().to_string();
        let detected = detected_in
            .map(|d| format!(", {:.1}s after the first failing probe", d.as_secs_f64()))
            .unwrap_or_default();
        let by = if t.actor == "system" {
            String::new()
        } else {
            format!(" by {}", t.actor)
        };
        info!(
            "{}: {} -> {}{by}: {}{detected}",
            svc.spec.name, t.from, t.to, t.reason
        );
        transition_id
    }

    /// Writes the transitions whose commit failed, oldest first, stopping at the first that
    /// fails again (and backing off, doubling up to `RETRY_MAX`).
    pub(super) async fn retry_unrecorded(&mut self) {
        while let Some(u) = self.queue.waiting.front() {
            let res = self
                .store
                .commit_transition_with(
                    u.t.clone(),
                    u.audit.clone(),
                    u.announcements.clone(),
                    u.parts.clone(),
                )
                .await;
            match res {
                Ok(_) => {
                    info!(
                        "{}: recorded transition {} -> {} of {} on retry; its {} announcement(s) are queued",
                        u.t.service,
                        u.t.from,
                        u.t.to,
                        u.t.at.rfc3339(),
                        u.announcements.len() + u.parts.len()
                    );
                    self.metrics.audit_recorded(crate::audit::KIND_TRANSITION);
                    self.queue.waiting.pop_front();
                    self.pending_changed();
                    self.outbox_wake.notify_one();
                    self.board.changed();
                }
                Err(e) => {
                    self.metrics.store_error("commit_transition");
                    self.queue.delay = (self.queue.delay * 2).min(RETRY_MAX);
                    self.queue.retry_at = Instant::now() + self.queue.delay;
                    warn!(
                        "{} transition(s) still unrecorded ({e}); retrying in {}s",
                        self.queue.waiting.len(),
                        self.queue.delay.as_secs()
                    );
                    return;
                }
            }
        }
        self.queue.delay = RETRY_MIN;
    }

    /// Queues the on-call alert that the service is flapping: not a transition, so it is
    /// attached to the service's latest one (the failover it keeps repeating).
    pub(super) async fn announce_flapping(&mut self, si: usize, now: Timestamp) {
        let svc = &self.services[si];
        let state = svc.machine.state;
        let t = Transition {
            service: svc.spec.id.clone(),
            from: state,
            to: state,
            cause: serde_json::from_value(serde_json::Value::String(svc.cause.clone()))
                .unwrap_or(failover::Cause::PrimaryDown),
            at: now,
            actor: "system".to_owned(),
            reason: format!(
                "{} automatic failover{} within {}; holding the backup",
                svc.policy.max_failovers,
                if svc.policy.max_failovers == 1 {
                    ""
                } else {
                    "s"
                },
                humantime::format_duration(svc.policy.flap_window)
            ),
            evidence: svc
                .spec
                .checks
                .iter()
                .zip(&svc.checks)
                .filter(|(_, rt)| rt.health.health != Health::Healthy)
                .map(|(c, rt)| {
                    let last = rt
                        .last
                        .as_ref()
                        .map(|(s, _)| s.as_str())
                        .unwrap_or("not probed yet");
                    format!("{}: {} ({last})", c.name, rt.health.health.as_str())
                })
                .collect(),
            public_message: None,
        };
        let mut ctx = message_context(&self.config, &svc.spec, route_views(&svc.spec, svc.side));
        ctx.holds = svc.hold_lines(now);
        let channels = channels(&self.config, &self.in_use, &svc.spec, &self.templates);
        let rows = announce::plan_kind(Kind::Flapping, &t, &ctx, &channels);
        if rows.is_empty() {
            return;
        }
        let (rows, parts) =
            group::hold(rows, &svc.spec.name, now, hold_for(&self.config, &svc.spec));
        let store = self.store.clone();
        let id = svc.spec.id.clone();
        match store.enqueue_notice_with(id, now, rows, parts).await {
            Ok(_) => self.outbox_wake.notify_one(),
            Err(e) => {
                self.metrics.store_error("enqueue_notice");
                error!("{}: could not queue the flapping alert: {e}", svc.spec.name);
            }
        }
    }
}

impl Core {
    /// On-call's note that a vendor `check` declares an outage while the service's own checks
    /// pass. Nothing changed for customers, so it is no transition and has no place in the
    /// outbox (whose rows hang off transitions): it is written to the audit chain first (kind
    /// `operator_action`, actor `vendor:{check}`, the vendor's words as its reason), then sent
    /// to on-call's channels (e-mail, and chat when configured) by a task that retries with
    /// backoff for `[email] give_up_after`. A restart while it retries loses the message, never
    /// its audit record.
    pub(super) async fn note_vendor(
        &mut self,
        si: usize,
        check: &str,
        quote: &str,
        now: Timestamp,
    ) {
        let svc = &self.services[si];
        let state = svc.machine.state;
        let t = Transition {
            service: svc.spec.id.clone(),
            from: state,
            to: state,
            cause: serde_json::from_value(serde_json::Value::String(svc.cause.clone()))
                .unwrap_or(failover::Cause::PrimaryDown),
            at: now,
            actor: "system".to_owned(),
            reason: format!(
                "{check} declares an outage of a vendor {} depends on while its own checks pass; nothing switched",
                svc.spec.name
            ),
            evidence: vec![format!("{check} (vendor) says: {quote}")],
            public_message: None,
        };
        let mut ctx = message_context(&self.config, &svc.spec, route_views(&svc.spec, svc.side));
        ctx.holds = svc.hold_lines(now);
        let channels = channels(&self.config, &self.in_use, &svc.spec, &self.templates);
        let rows = announce::plan_kind(Kind::VendorNotice, &t, &ctx, &channels);
        let (name, id) = (svc.spec.name.clone(), svc.spec.id.clone());
        let detail = serde_json::json!({
            "service": id,
            "vendor_check": check,
            "vendor_words": quote,
            "notified": rows.iter().map(|r| r.channel.clone()).collect::<Vec<_>>(),
        });
        self.audit_other(&format!("vendor:{check}"), &t.reason, detail)
            .await;
        let domain = self.config.email.message_id_domain();
        let give_up = self.config.email.give_up_after;
        for (n, row) in rows.into_iter().enumerate() {
            let item = OutboxItem {
                id: 0,
                transition_id: 0,
                service: id.clone(),
                audience: row.audience,
                channel: row.channel,
                kind: row.kind,
                message_id: format!("<vendor.{check}.{id}.{}.{n}@{domain}>", now.as_millis()),
                recipients: row.recipients,
                subject: row.subject,
                text: row.text,
                html: row.html,
                status: OutboxStatus::Pending,
                attempts: 0,
                created_at: now,
                next_attempt_at: now,
                last_attempt_at: None,
                last_error: None,
                delivered_at: None,
                detail: None,
                given_up_at: None,
            };
            tokio::spawn(send_note(
                self.transports.clone(),
                item,
                name.clone(),
                give_up,
            ));
        }
    }
}

/// Sends one vendor note, retrying (1 s doubling to 60 s) until it is taken or `give_up`
/// has passed.
async fn send_note(
    transports: std::sync::Arc<crate::announce::outbox::Transports>,
    item: OutboxItem,
    service: String,
    give_up: Duration,
) {
    use crate::announce::transport::Deliver;
    let start = Instant::now();
    let mut delay = RETRY_MIN;
    loop {
        match transports.deliver(&item).await {
            Ok(said) => {
                info!(
                    "{service}: vendor note to {} ({}) delivered: {}",
                    item.audience, item.channel, said.reply
                );
                return;
            }
            Err(e) if start.elapsed() + delay > give_up => {
                error!(
                    "{service}: vendor note to {} ({}) given up: {}",
                    item.audience, item.channel, e.message
                );
                return;
            }
            Err(e) => {
                warn!(
                    "{service}: vendor note to {} ({}) not taken, retrying in {}s: {}",
                    item.audience,
                    item.channel,
                    delay.as_secs(),
                    e.message
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// What messages about a service may say beyond the transition.
fn message_context(config: &Config, spec: &ServiceSpec, routes: Vec<RouteView>) -> MessageContext {
    let public = &config.server.public_url;
    MessageContext {
        service_name: spec.name.clone(),
        routes,
        status_url: format!("{public}/status"),
        go_base_url: format!("{public}/go/"),
        // On-call get an absolute link; a relative path without `runbook_base_url` is named
        // as text (`switchboard check` warns about it) rather than as a link leading nowhere.
        runbook: spec.runbook.as_deref().map(|rb| {
            config
                .email
                .runbook_url(rb)
                .unwrap_or_else(|| format!("{rb} (no [email] runbook_base_url set)"))
        }),
        api_url: format!("{public}/api/v1"),
        holds: Vec::new(),
    }
}

/// How a service's e-mail waits: the group window, and its customer delay (its own, or
/// `[email] customer_delay`).
fn hold_for(config: &Config, spec: &ServiceSpec) -> Hold {
    Hold {
        window: config.email.group_window,
        customer_delay: spec.customer_delay.unwrap_or(config.email.customer_delay),
    }
}

/// The channels a service's announcements go to: its audiences from the running
/// configuration, over the transports the daemon started with.
fn channels<'a>(
    config: &'a Config,
    in_use: &TransportsInUse,
    spec: &'a ServiceSpec,
    templates: &'a Templates,
) -> Channels<'a> {
    Channels {
        audiences: &config.audiences,
        templates,
        statuspage_component: spec
            .statuspage_component
            .as_deref()
            .filter(|_| in_use.statuspage),
        chat: in_use.chat,
    }
}

/// The announcement transports the daemon started with. The outbox delivers through these
/// until a restart (a reload does not rebuild them; `config::diff` reports a change to them
/// as needing one), so announcements are planned for them and not for what a reloaded file
/// names: a row planned for a transport the outbox does not have could only fail.
pub(super) struct TransportsInUse {
    chat: bool,
    statuspage: bool,
    /// Each service's `on_switch` webhooks, by service id.
    hooks: HashMap<String, Vec<WebhookSpec>>,
    /// Each service's Help Center articles (`kind = "zendesk_article"`), by service id.
    articles: HashMap<String, Vec<ZendeskArticleSpec>>,
}

impl TransportsInUse {
    /// The transports `run` builds from `config`.
    pub(super) fn of(config: &Config) -> TransportsInUse {
        TransportsInUse {
            chat: config.chat.is_some(),
            statuspage: config.statuspage_push.is_some(),
            hooks: config
                .services
                .iter()
                .filter(|s| !s.on_switch.is_empty())
                .map(|s| (s.id.clone(), s.on_switch.clone()))
                .collect(),
            articles: config
                .services
                .iter()
                .filter(|s| !s.zendesk_articles.is_empty())
                .map(|s| (s.id.clone(), s.zendesk_articles.clone()))
                .collect(),
        }
    }

    /// The webhooks that follow `service`'s switches.
    fn hooks(&self, service: &str) -> &[WebhookSpec] {
        self.hooks.get(service).map_or(&[], Vec::as_slice)
    }

    /// The Help Center articles that follow `service`'s switches.
    fn articles(&self, service: &str) -> &[ZendeskArticleSpec] {
        self.articles.get(service).map_or(&[], Vec::as_slice)
    }
}
