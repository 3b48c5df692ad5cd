//! The HTTP server: metrics, status page, Statuspage v2 JSON, route redirects, control API.
//!
//! Handlers read the latest `Snapshot` from a watch channel the shell publishes into; nothing
//! here changes a route or a state, so the decision core stays the only writer. Each endpoint
//! family lives in its own file: `public` (customers, widgets), `ops` (metrics, probes of the
//! daemon itself), `statuspage` and `page` (pure renderers), `error` (the one error shape).
//! What the control endpoints need from the core is the `core::Core` trait and its data
//! types, which the shell implements: the server knows nothing of the daemon around it.

pub mod auth;
pub mod cache;
pub mod control;
pub mod core;
pub mod error;
pub mod feeds;
pub mod forward;
mod headers;
pub mod incidents;
pub mod listener;
pub mod openapi;
pub mod ops;
pub mod page;
pub mod public;
pub mod statuspage;

pub use error::ApiError;

use crate::view::{Board, Snapshot};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Renders the Prometheus text exposition. A closure so this module need not know the registry.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// What every handler can see. Cheap to clone: axum clones it per request.
#[derive(Clone)]
pub struct ApiState {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    metrics: MetricsFn,
    ready: Arc<AtomicBool>,
    /// Authenticates control calls (`auth::Caller`); refuses all without a token file.
    pub(crate) auth: Arc<auth::Auth>,
    /// The way to the core task; `None` when the server runs without a daemon (tests of the
    /// public endpoints), in which case control endpoints answer 404.
    pub(crate) control: Option<control::Control>,
    /// Incidents, probe history and maintenance windows for the status page.
    board: Arc<Board>,
    /// Transitions the store has not taken yet (disk full): not ready while any wait.
    pending_transitions: Arc<std::sync::atomic::AtomicUsize>,
    /// The public documents as last rendered (`cache`).
    docs: Arc<cache::Documents>,
    /// Concurrent scrapes share one render (`ops::SharedRender`).
    metrics_render: Arc<ops::SharedRender>,
    /// A cluster follower's way to the leader: control requests are forwarded (`forward`).
    pub(crate) forward: Option<forward::Forward>,
    /// The cluster as this node sees it (`GET /api/v1/cluster`); `None` on a single node.
    pub(crate) cluster: Option<ClusterView>,
}

/// Reads the cluster's nodes, leader and sync state, as JSON.
pub type ClusterView = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = serde_json::Value> + Send>> + Send + Sync,
>;

impl ApiState {
    /// `snapshot`: the shell keeps the `Sender` and publishes a new snapshot on every change.
    /// `metrics`: called once per scrape. `ready`: flipped by the shell once state is loaded.
    pub fn new(
        snapshot: watch::Receiver<Arc<Snapshot>>,
        metrics: impl Fn() -> String + Send + Sync + 'static,
        ready: Arc<AtomicBool>,
    ) -> Self {
        ApiState {
            snapshot,
            metrics: Arc::new(metrics),
            ready,
            auth: Arc::new(auth::Auth::disabled()),
            control: None,
            board: Arc::new(Board::default()),
            pending_transitions: Arc::default(),
            docs: Arc::default(),
            metrics_render: Arc::default(),
            forward: None,
            cluster: None,
        }
    }

    /// Enables the control API: `auth` checks tokens, `control` reaches the core.
    pub fn with_control(mut self, auth: Arc<auth::Auth>, control: control::Control) -> Self {
        self.auth = auth;
        self.control = Some(control);
        self
    }

    /// Serves the status page's incidents, history and maintenance from `board` (without one,
    /// those parts of the page and the documents are empty).
    pub fn with_board(mut self, board: Arc<Board>) -> Self {
        self.board = board;
        self
    }

    /// `/readyz` answers 503 while `pending` (kept by the core) is above zero.
    pub fn with_pending_transitions(
        mut self,
        pending: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        self.pending_transitions = pending;
        self
    }

    /// Answers `GET /api/v1/cluster` from `view` (cluster mode).
    pub fn with_cluster(mut self, view: ClusterView) -> Self {
        self.cluster = Some(view);
        self
    }

    /// Authenticates callers with `auth` without a control API (a cluster follower, which
    /// answers `GET /api/v1/cluster` itself and forwards the rest).
    pub fn with_auth(mut self, auth: Arc<auth::Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// Forwards every control request to the cluster's leader (a follower's API).
    pub fn with_forward(mut self, forward: forward::Forward) -> Self {
        self.forward = Some(forward);
        self
    }

    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// The latest published snapshot. The `Arc` is cloned out so the channel's read lock is
    /// held for a pointer copy only, never across rendering.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

/// Every route the daemon serves. Unknown paths and wrong methods answer with `ApiError` JSON.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/go/{route}", get(public::go))
        .route("/api/v1/routes", get(public::routes))
        .route("/api/v2/summary.json", get(public::summary))
        .route("/api/v2/status.json", get(public::status_json))
        .route("/api/v2/components.json", get(public::components))
        .route("/api/v2/incidents.json", get(public::incidents))
        .route("/api/v2/incidents/unresolved.json", get(public::unresolved))
        .route(
            "/api/v2/scheduled-maintenances.json",
            get(public::maintenances),
        )
        .route(
            "/api/v2/scheduled-maintenances/upcoming.json",
            get(public::upcoming_maintenances),
        )
        .route(
            "/api/v2/scheduled-maintenances/active.json",
            get(public::active_maintenances),
        )
        .route("/history.atom", get(public::history_atom))
        .route("/history.rss", get(public::history_rss))
        .route("/status", get(public::status_page))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(control::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A follower forwards control to the leader before any handler sees it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::forward,
        ))
        // Every 403 (any handler's `caller.require(..)?`) counts as an auth failure.
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            count_forbidden,
        ))
        // Outermost, so errors, fallbacks and 403s get the headers too.
        .layer(axum::middleware::map_response(headers::add))
        .with_state(state)
}

async fn count_forbidden(
    axum::extract::State(state): axum::extract::State<ApiState>,
    response: axum::response::Response,
) -> axum::response::Response {
    if response.status() == axum::http::StatusCode::FORBIDDEN {
        state.auth.forbidden();
    }
    response
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such path: {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Serves `router(state)` on `listener` with the default `listener::Limits` until `shutdown`
/// completes, then lets requests in flight finish before returning. The caller binds the
/// listener, so it decides the address (loopback by default) and tests can use port 0.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, listener::Limits::default(), shutdown).await
}

/// `serve` within the given connection cap and header deadline.
pub async fn serve_with(
    listener: TcpListener,
    state: ApiState,
    limits: listener::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let direct = state.clone();
    let direct: listener::Direct = Arc::new(move |m, u| public::go_direct(&direct, m, u));
    listener::serve(listener, router(state), Some(direct), limits, shutdown).await
}

/// Threads the HTTP runtime may use for blocking work (metrics rendering, store reads).
const HTTP_BLOCKING_THREADS: usize = 2;

/// `serve_with` on a runtime of its own: one thread (and at most two more for blocking
/// work) that serve every HTTP request, apart from the runtime the probes and the core run
/// on. A crowd on `/status` then competes for that one thread, never for the probes'
/// schedule: load on the public endpoints could otherwise start probes late and time them
/// out, and the daemon would declare outages that were its own. Returns when the server has
/// drained after `shutdown`.
pub async fn serve_isolated(
    listener: TcpListener,
    state: ApiState,
    limits: listener::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The socket is registered with the caller's runtime; it moves as a plain socket and is
    // registered again with the server's own.
    let std_listener = listener.into_std()?;
    // A current-thread runtime: the thread below is its one worker, with no work-stealing
    // machinery to pay for on every request.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(HTTP_BLOCKING_THREADS)
        .thread_name("switchboard-http")
        .enable_all()
        .build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("switchboard-http".into())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener)?;
                serve_with(listener, state, limits, shutdown).await
            });
            // Connections still open after the drain end with the runtime, off the caller.
            runtime.shutdown_background();
            let _ = done_tx.send(result);
        })?;
    done_rx
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the HTTP server thread panicked")))
}
