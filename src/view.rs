//! What the HTTP side reads: a snapshot of every service, check and route, replaced whole on each change.
//!
//! The shell (`app`) builds a new `Snapshot` after every outcome or transition and publishes it;
//! handlers only read. No handler can change a route.

use crate::clock::Timestamp;
use crate::config::Role;
use crate::failover::window::Window;
use crate::failover::{Cause, Side, State};
use crate::health::Health;
use crate::history::{History, HistoryView};
use crate::store::{IncidentRecord, StoreError, StoreHandle};
use serde::Serialize;
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// Status page title.
    pub title: String,
    /// Base URL for links, e.g. `http://127.0.0.1:9898`.
    pub public_url: String,
    pub updated_at: Timestamp,
    pub services: Vec<ServiceView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub state: State,
    /// When the current state was entered.
    pub since: Timestamp,
    /// Cause of the last transition, e.g. `primary_down`; `startup` before any.
    pub cause: String,
    pub checks: Vec<CheckView>,
    pub routes: Vec<RouteView>,
    /// When the service first appeared in this daemon's store (for component `created_at`).
    pub created_at: Timestamp,
    /// End of the maintenance under way, when one is and it has an end.
    #[serde(default)]
    pub maintenance_until: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckView {
    pub name: String,
    pub role: Role,
    pub target: String,
    pub health: Health,
    /// `Outcome::summary()` of the last outcome, if any.
    pub last_outcome: Option<String>,
    pub last_probe_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteView {
    pub id: String,
    pub service: String,
    pub primary: String,
    pub backup: String,
    pub active: Side,
}

impl RouteView {
    pub fn active_target(&self) -> &str {
        match self.active {
            Side::Primary => &self.primary,
            Side::Backup => &self.backup,
        }
    }

    pub fn active_kind(&self) -> TargetKind {
        TargetKind::of(self.active_target())
    }

    /// The active target as a person reads it: the URL, address, number or instructions.
    pub fn active_display(&self) -> &str {
        target_display(self.active_target())
    }
}

/// What a route target is. Config writes them as `https://…`, `mailto:…` (or a bare
/// address), `tel:…` and `text:…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A page: `/go/{route}` redirects to it.
    Url,
    /// An e-mail address: `/go/{route}` redirects to `mailto:`.
    Email,
    /// A phone number: `/go/{route}` redirects to `tel:`.
    Phone,
    /// Instructions in words: `/go/{route}` shows them.
    Text,
}

impl TargetKind {
    pub fn of(target: &str) -> TargetKind {
        let lower = target.get(..7).unwrap_or(target).to_ascii_lowercase();
        if lower.starts_with("mailto:") {
            TargetKind::Email
        } else if lower.starts_with("tel:") {
            TargetKind::Phone
        } else if lower.starts_with("text:") {
            TargetKind::Text
        } else {
            TargetKind::Url
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Url => "url",
            TargetKind::Email => "email",
            TargetKind::Phone => "phone",
            TargetKind::Text => "text",
        }
    }
}

/// `target` without its `mailto:`, `tel:` or `text:` prefix.
pub fn target_display(target: &str) -> &str {
    let prefix = match TargetKind::of(target) {
        TargetKind::Url => 0,
        TargetKind::Email => "mailto:".len(),
        TargetKind::Phone => "tel:".len(),
        TargetKind::Text => "text:".len(),
    };
    target[prefix..].trim()
}

impl Snapshot {
    pub fn route(&self, id: &str) -> Option<&RouteView> {
        self.services
            .iter()
            .flat_map(|s| s.routes.iter())
            .find(|r| r.id == id)
    }

    pub fn routes(&self) -> impl Iterator<Item = &RouteView> {
        self.services.iter().flat_map(|s| s.routes.iter())
    }
}

/// How many of the newest incidents `incidents.json` and the feeds list (as Statuspage's
/// `incidents.json` does, 50), open ones always included.
pub const RECENT_INCIDENTS: usize = 50;

/// The status page's data beyond the snapshot: incidents (from the store), probe history
/// (from `History`) and planned maintenance windows (from the configuration). Shared by the
/// shell, which refreshes incidents after each recorded transition, and the HTTP side, which
/// refreshes them after an operator's update.
#[derive(Default)]
pub struct Board {
    store: Option<StoreHandle>,
    incidents: RwLock<Arc<Vec<IncidentRecord>>>,
    history: Option<Arc<History>>,
    /// Per service id: its planned windows (configured, and scheduled by operators).
    windows: RwLock<Vec<(String, Vec<Window>)>>,
    /// Told the number of open incidents after every reload (the shell sets a gauge).
    on_reload: Option<Box<dyn Fn(usize) + Send + Sync>>,
    /// Wakes `reload_on_change` (`changed`); many wakes while it works make one more reload.
    changed: tokio::sync::Notify,
    /// Counts changes to `windows`, so the HTTP side knows when a cached page is out of date.
    windows_version: std::sync::atomic::AtomicU64,
}

impl Board {
    /// A board over `store` and `history`, with each service's planned windows. `store` is
    /// the daemon's `StoreHandle` (an `Arc<Store>` converts, with a writer thread of its own).
    pub fn new(
        store: impl Into<StoreHandle>,
        history: Arc<History>,
        windows: Vec<(String, Vec<Window>)>,
    ) -> Board {
        Board {
            store: Some(store.into()),
            incidents: RwLock::default(),
            history: Some(history),
            windows: RwLock::new(windows),
            on_reload: None,
            changed: tokio::sync::Notify::new(),
            windows_version: Default::default(),
        }
    }

    /// Calls `f` with the number of open incidents after every reload.
    pub fn on_reload(mut self, f: impl Fn(usize) + Send + Sync + 'static) -> Board {
        self.on_reload = Some(Box::new(f));
        self
    }

    /// A board with fixed incidents and history and no store (tests, previews).
    pub fn fixed(
        incidents: Vec<IncidentRecord>,
        history: HistoryView,
        windows: Vec<(String, Vec<Window>)>,
    ) -> Board {
        let h = History::new(Vec::new());
        h.set_view(history);
        Board {
            store: None,
            incidents: RwLock::new(Arc::new(incidents)),
            history: Some(Arc::new(h)),
            windows: RwLock::new(windows),
            on_reload: None,
            changed: tokio::sync::Notify::new(),
            windows_version: Default::default(),
        }
    }

    /// The store the incidents are read from (none for a fixed board).
    pub fn store(&self) -> Option<&StoreHandle> {
        self.store.as_ref()
    }

    /// Says the stored incidents changed (a transition was recorded): `reload_on_change`
    /// reloads them soon. Cheap, so the core can call it after every transition; a burst of
    /// transitions (a mass outage) costs one reload, not one per transition.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Reads the incidents again from the store (on a read-only connection, so a commit in
    /// progress does not hold it up); returns how many are open.
    pub async fn reload_incidents(&self) -> Result<usize, StoreError> {
        let Some(store) = &self.store else {
            return Ok(self.incidents().iter().filter(|i| i.is_open()).count());
        };
        let incidents = store.read(|s| s.incidents(RECENT_INCIDENTS)).await?;
        let open = incidents.iter().filter(|i| i.is_open()).count();
        // The gauge first: whoever sees the new incidents then also sees the count.
        if let Some(f) = &self.on_reload {
            f(open);
        }
        *self.incidents.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(incidents);
        Ok(open)
    }

    /// Open incidents and the recent resolved ones, newest first.
    pub fn incidents(&self) -> Arc<Vec<IncidentRecord>> {
        self.incidents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the planned windows of `service`: the shell calls this when an operator
    /// schedules a window through the API, so the page shows it beside the configured ones.
    pub fn set_windows(&self, service: &str, planned: Vec<Window>) {
        let mut windows = self.windows.write().unwrap_or_else(|p| p.into_inner());
        match windows.iter_mut().find(|(id, _)| id == service) {
            Some((_, w)) => *w = planned,
            None => windows.push((service.to_owned(), planned)),
        }
        self.windows_version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// How many times the planned windows changed; equal values mean equal windows.
    pub fn windows_version(&self) -> u64 {
        self.windows_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The probe history as of its last flush (replaced whole by each flush).
    pub fn history(&self) -> Arc<HistoryView> {
        self.history.as_ref().map(|h| h.view()).unwrap_or_default()
    }

    /// Everything a page render needs besides the snapshot, as of `now`.
    pub fn extras(&self, snapshot: &Snapshot, now: Timestamp) -> Extras {
        Extras {
            incidents: self.incidents(),
            history: self.history.as_ref().map(|h| h.view()).unwrap_or_default(),
            maintenances: maintenances(
                snapshot,
                &self.windows.read().unwrap_or_else(|p| p.into_inner()),
                now,
            ),
            now,
        }
    }
}

/// Reloads `board`'s incidents whenever `Board::changed` is called, until shutdown.
pub async fn reload_on_change(board: Arc<Board>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = board.changed.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Err(e) = board.reload_incidents().await {
            tracing::error!("could not reload incidents for the status page: {e}");
        }
    }
}

/// What the status page and the Statuspage documents show besides the snapshot.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Open incidents and recent resolved ones, newest first.
    pub incidents: Arc<Vec<IncidentRecord>>,
    pub history: Arc<HistoryView>,
    /// Maintenance in progress, then upcoming, by start.
    pub maintenances: Vec<MaintenanceView>,
    pub now: Timestamp,
}

/// Statuspage's scheduled-maintenance status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceStatus {
    Scheduled,
    InProgress,
}

impl MaintenanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceStatus::Scheduled => "scheduled",
            MaintenanceStatus::InProgress => "in_progress",
        }
    }
}

/// One maintenance, planned in the configuration or started by an operator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaintenanceView {
    pub service: String,
    pub service_name: String,
    pub reason: String,
    pub status: MaintenanceStatus,
    pub starts_at: Timestamp,
    /// `None`: until an operator ends it.
    pub ends_at: Option<Timestamp>,
    /// When it was planned: the service's first appearance for configured windows, the
    /// start for an operator's.
    pub created_at: Timestamp,
}

/// Maintenance in progress and the next occurrence of every planned window, by start.
pub fn maintenances(
    snapshot: &Snapshot,
    windows: &[(String, Vec<Window>)],
    now: Timestamp,
) -> Vec<MaintenanceView> {
    let mut out = Vec::new();
    for service in &snapshot.services {
        let planned = windows
            .iter()
            .find(|(id, _)| *id == service.id)
            .map(|(_, w)| w.as_slice())
            .unwrap_or_default();
        let view = |reason: &str, status, starts_at, ends_at: Option<Timestamp>| MaintenanceView {
            service: service.id.clone(),
            service_name: service.name.clone(),
            reason: reason.to_owned(),
            status,
            starts_at,
            ends_at,
            created_at: service.created_at.min(starts_at),
        };
        // An operator's maintenance has no window in the configuration: it shows from the state.
        if service.state == State::Maintenance && service.cause == Cause::Operator.as_str() {
            out.push(view(
                "Maintenance started by an operator",
                MaintenanceStatus::InProgress,
                service.since,
                service.maintenance_until,
            ));
        }
        for w in planned {
            if let Some(end) = w.active_until(now) {
                let start = Timestamp(end.0 - i64::try_from(w.duration.as_millis()).unwrap_or(0));
                out.push(view(
                    &w.reason,
                    MaintenanceStatus::InProgress,
                    start,
                    Some(end),
                ));
            }
            if let Some(start) = w.next_start(now) {
                out.push(view(
                    &w.reason,
                    MaintenanceStatus::Scheduled,
                    start,
                    Some(start.plus(w.duration)),
                ));
            }
        }
    }
    out.sort_by_key(|m| (m.status != MaintenanceStatus::InProgress, m.starts_at));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn target_kinds_and_what_people_read() {
        let cases = [
            (
                "https://forms.example.net/support",
                TargetKind::Url,
                "https://forms.example.net/support",
            ),
            (
                "mailto:help@example.net",
                TargetKind::Email,
                "help@example.net",
            ),
            (
                "tel:+44 20 7946 0000",
                TargetKind::Phone,
                "+44 20 7946 0000",
            ),
            (
                "text: Call the front desk",
                TargetKind::Text,
                "Call the front desk",
            ),
            (
                "TEXT:Ask at reception",
                TargetKind::Text,
                "Ask at reception",
            ),
        ];
        for (target, kind, display) in cases {
            assert_eq!(TargetKind::of(target), kind, "{target}");
            assert_eq!(target_display(target), display, "{target}");
        }
    }

    fn service(state: State, cause: Cause) -> ServiceView {
        ServiceView {
            id: "ticket-submission".into(),
            name: "Ticket submission".into(),
            state,
            since: Timestamp(1_000),
            cause: cause.as_str().into(),
            checks: Vec::new(),
            routes: Vec::new(),
            created_at: Timestamp(0),
            maintenance_until: Some(Timestamp(5_000_000)),
        }
    }

    fn snapshot(svc: ServiceView) -> Snapshot {
        Snapshot {
            title: "t".into(),
            public_url: "http://127.0.0.1:1".into(),
            updated_at: Timestamp(0),
            services: vec![svc],
        }
    }

    #[test]
    fn maintenances_come_from_windows_and_from_operators() {
        use crate::failover::window::{Cron, Schedule};
        use std::time::Duration;
        let now = Timestamp(1_773_481_337_381); // 2026-03-14T09:42:17.381Z
        let windows = vec![(
            "ticket-submission".to_string(),
            vec![
                // Daily at 09:00 for an hour: in progress now, and again tomorrow.
                Window {
                    schedule: Schedule::Cron(Cron::parse("0 9 * * *").unwrap()),
                    duration: Duration::from_secs(3600),
                    reason: "patching".into(),
                },
                // Already over: shows nowhere.
                Window {
                    schedule: Schedule::Once(Timestamp(now.0 - 86_400_000)),
                    duration: Duration::from_secs(60),
                    reason: "old".into(),
                },
            ],
        )];
        let got = maintenances(
            &snapshot(service(State::Operational, Cause::PrimaryRecovered)),
            &windows,
            now,
        );
        let summary: Vec<(MaintenanceStatus, String, Option<String>)> = got
            .iter()
            .map(|m| {
                (
                    m.status,
                    m.starts_at.rfc3339(),
                    m.ends_at.map(|t| t.rfc3339()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    MaintenanceStatus::InProgress,
                    "2026-03-14T09:00:00.000Z".into(),
                    Some("2026-03-14T10:00:00.000Z".into())
                ),
                (
                    MaintenanceStatus::Scheduled,
                    "2026-03-15T09:00:00.000Z".into(),
                    Some("2026-03-15T10:00:00.000Z".into())
                ),
            ]
        );
        // An operator's maintenance shows from the state, with its end if it has one.
        let got = maintenances(
            &snapshot(service(State::Maintenance, Cause::Operator)),
            &[],
            now,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, MaintenanceStatus::InProgress);
        assert_eq!(
            (got[0].starts_at, got[0].ends_at),
            (Timestamp(1_000), Some(Timestamp(5_000_000)))
        );
    }

    #[test]
    fn a_window_an_operator_schedules_joins_the_configured_ones() {
        use crate::failover::window::Schedule;
        use std::time::Duration;
        let now = Timestamp(1_773_481_337_381);
        let board = Board::fixed(Vec::new(), HistoryView::default(), Vec::new());
        let snap = snapshot(service(State::Operational, Cause::PrimaryRecovered));
        assert!(board.extras(&snap, now).maintenances.is_empty());
        board.set_windows(
            "ticket-submission",
            vec![Window {
                schedule: Schedule::Once(now.plus(Duration::from_secs(3600))),
                duration: Duration::from_secs(1800),
                reason: "Vendor upgrade".into(),
            }],
        );
        let m = board.extras(&snap, now).maintenances;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].status, MaintenanceStatus::Scheduled);
        assert_eq!(m[0].reason, "Vendor upgrade");
        assert_eq!(m[0].ends_at, Some(now.plus(Duration::from_secs(5400))));
    }

    #[tokio::test]
    async fn a_change_reloads_the_incidents_off_the_caller() {
        use crate::failover::Transition;
        let store = Arc::new(Store::open_in_memory().unwrap());
        store.ensure_service("s", Timestamp(0)).unwrap();
        let board = Arc::new(Board::new(
            store.clone(),
            Arc::new(History::new(vec!["s".into()])),
            Vec::new(),
        ));
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(reload_on_change(board.clone(), shutdown));
        let t = Transition {
            service: "s".into(),
            from: State::Operational,
            to: State::Outage,
            cause: Cause::PrimaryDown,
            at: Timestamp(1),
            actor: "system".into(),
            reason: "down".into(),
            evidence: Vec::new(),
            public_message: None,
        };
        store.commit_transition(&t, "v", &[]).unwrap();
        assert!(board.incidents().is_empty(), "not before it is told");
        // A burst of changes is fine: they coalesce.
        for _ in 0..100 {
            board.changed();
        }
        for _ in 0..200 {
            if !board.incidents().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(board.incidents().len(), 1);
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_board_over_a_file_reads_what_the_writer_committed() {
        use crate::failover::Transition;
        let dir = tempfile::tempdir().unwrap();
        let store = StoreHandle::open(&dir.path().join("board.db")).unwrap();
        store
            .write(|s| s.ensure_service("s", Timestamp(0)).map(|_| ()))
            .await
            .unwrap();
        let board = Board::new(
            store.clone(),
            Arc::new(History::new(vec!["s".into()])),
            Vec::new(),
        );
        assert_eq!(board.reload_incidents().await.unwrap(), 0);
        let t = Transition {
            service: "s".into(),
            from: State::Operational,
            to: State::Outage,
            cause: Cause::PrimaryDown,
            at: Timestamp(1),
            actor: "system".into(),
            reason: "down".into(),
            evidence: Vec::new(),
            public_message: None,
        };
        store
            .commit_transition(t, "v".into(), Vec::new())
            .await
            .unwrap();
        // Read on a read-only connection beside the writer: the awaited commit is visible.
        assert_eq!(board.reload_incidents().await.unwrap(), 1);
        assert_eq!(board.incidents().len(), 1);
        assert!(board.incidents()[0].is_open());
    }
}
