//! What every transport shares with the outbox: the [`Deliver`] trait and the [`Failure`] a
//! transport reports.
//!
//! It lives apart from `outbox` so that the dependency runs one way: the outbox loop
//! dispatches to the transports (`email`, `webhook`, `statuspage_push`, `chat`), and the
//! transports know only this small contract, never the loop.

use crate::store::OutboxItem;
/// What a receiver said when it took a row (defined by the store, which keeps it as proof).
pub use crate::store::Receipt;
use std::future::Future;
use std::time::Duration;

/// Why a transport did not take a row: the text (never a secret), and how long the
/// receiver asked us to wait (`Retry-After`), which the retry honours when it is longer
/// than the backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            retry_after: None,
        }
    }
}

/// A transport the outbox can hand a row to: e-mail, webhooks, or all of them by channel.
pub trait Deliver: Send + Sync {
    /// Sends one row; `Ok` carries what the receiver said (the proof the audit chain keeps),
    /// `Err` why it did not take it.
    fn deliver(&self, item: &OutboxItem) -> impl Future<Output = Result<Receipt, Failure>> + Send;
}

/// Hands a row to `inner` only while this node may act. In cluster mode a leader whose term
/// ended (deposed, paused past its lease, cut off from etcd) sends nothing more, not even
/// rows it had already read: the new leader sends them, with the same Message-IDs.
pub struct WhileLeader<D> {
    pub inner: std::sync::Arc<D>,
    pub coordinator: std::sync::Arc<dyn crate::cluster::Coordinator>,
}

impl<D: Deliver> Deliver for WhileLeader<D> {
    async fn deliver(&self, item: &OutboxItem) -> Result<Receipt, Failure> {
        if !self.coordinator.is_leader() {
            return Err(Failure::from(
                "not sent: this node no longer leads the cluster; the leader sends it".to_string(),
            ));
        }
        self.inner.deliver(item).await
    }
}
