//! The accept loop of the public listener: a cap on open connections, a deadline for request headers and idle keep-alive, graceful shutdown.
//!
//! Every connection costs a file descriptor, and so does every probe and the store. Without
//! limits, a thousand idle clients exhausted the descriptors and the probes failed with "Too
//! many open files": the daemon declared an outage that was its own. So the listener holds at
//! most `Limits::max_connections` connections (well below the descriptor limit; the rest wait
//! in the kernel's accept queue), a client gets `header_read_timeout` to send its request
//! head (which also ends an idle keep-alive connection; one second and no keep-alive once
//! three quarters of the slots are taken), and `raise_nofile` lifts the soft descriptor limit
//! to the hard one at start.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{info, warn};

/// What the listener allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; further clients wait in the accept queue.
    pub max_connections: usize,
    /// Time a client has to send a complete request head, and the most a keep-alive
    /// connection may sit idle between requests.
    pub header_read_timeout: Duration,
}

/// The default cap, for 20,000-descriptor machines and up (see `Limits::for_descriptors`).
pub const MAX_CONNECTIONS: usize = 1024;
/// Enough for a phone on a poor network; far too short to hold a descriptor for free.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The request-head deadline while the listener is crowded.
const CROWDED_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long in-flight requests may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

impl Limits {
    /// The cap that leaves room for `reserved` descriptors (probes in flight, the store, the
    /// outbox) under a descriptor limit of `nofile`: at most half of what remains, at most
    /// `MAX_CONNECTIONS`, at least 16.
    pub fn for_descriptors(nofile: u64, reserved: u64) -> Limits {
        let room = nofile.saturating_sub(reserved) / 2;
        Limits {
            max_connections: (room as usize).clamp(16, MAX_CONNECTIONS),
            ..Limits::default()
        }
    }
}

/// Raises the soft limit on open files to the hard limit where the process may; returns the
/// soft limit in force afterwards.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                info!(
                    "raised the open-file limit from {before} to {}",
                    lim.rlim_cur
                );
            } else {
                lim.rlim_cur = before;
            }
        }
    }
    lim.rlim_cur
}

/// A request answered before the router when it returns a response (`public::go_direct`);
/// `None` sends the request through the router.
pub type Direct = Arc<
    dyn Fn(&axum::http::Method, &axum::http::Uri) -> Option<axum::response::Response> + Send + Sync,
>;

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets
/// requests in flight finish (for at most ten seconds) before returning. Each request is
/// offered to `direct` first.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    direct: Option<Direct>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full = false;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        if permits.available_permits() == 0 && !warned_full {
            warned_full = true;
            warn!(
                "the HTTP listener holds {} connections, its cap; new clients wait",
                limits.max_connections
            );
        } else if permits.available_permits() > limits.max_connections / 2 {
            warned_full = false;
        }
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or memory for a moment: back off instead of
                    // spinning, and keep serving the connections already open.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, direct) = (router.clone(), direct.clone());
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut req: axum::http::Request<Incoming>| {
                let answered = direct.as_ref().and_then(|d| d(req.method(), req.uri()));
                let app = app.clone();
                async move {
                    if let Some(response) = answered {
                        return Ok(response);
                    }
                    // What `into_make_service_with_connect_info` would add: the control API
                    // keys its wrong-token backoff on the peer.
                    req.extensions_mut().insert(ConnectInfo(peer));
                    app.oneshot(req).await
                }
            },
        ));
        // Under pressure (three quarters of the slots taken) a new client gets one second for
        // its request head and no keep-alive: clients that hold a slot without asking for
        // anything cannot keep the queue behind them waiting for the full deadline.
        let crowded = permits.available_permits() < limits.max_connections / 4;
        let deadline = if crowded {
            CROWDED_HEADER_READ_TIMEOUT.min(limits.header_read_timeout)
        } else {
            limits.header_read_timeout
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(deadline)
            .keep_alive(!crowded);
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still in flight after {DRAIN:?}; closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_probes_and_the_store() {
        assert_eq!(Limits::for_descriptors(20_000, 1_100).max_connections, 1024);
        assert_eq!(Limits::for_descriptors(1024, 600).max_connections, 212);
        assert_eq!(Limits::for_descriptors(256, 600).max_connections, 16);
    }
}
