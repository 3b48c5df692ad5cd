//! Drills: the timed report of an operator-started exercise of the failover path, watched step by step and kept as evidence.
//!
//! The core starts a drill through the failover machine (`Command::DrillStart`), which
//! records the transition (announced to the drill audience only) and, for a live drill,
//! switches the routes. `monitor` then observes the rest from the outside, the way a person
//! would check it: the backup verified by an immediate probe of its backup checks, the
//! drill e-mail accepted by the mail server (read from the outbox row's delivery result,
//! never assumed), the published snapshot (what `/status` and the Statuspage JSON serve)
//! showing the drill, `on_switch` webhooks acknowledged, and the revert at the deadline. Each
//! step is timed and checked against the service's `drill_targets`; the report is rewritten
//! in the store as steps finish, so `GET /api/v1/drills/{id}` shows them as they happen.
//!
//! A real outage beats a drill: when a check of the service goes down, the failover machine
//! ends the drill at once with the real decision (announced to the real audiences). The
//! monitor then stops watching, and the report ends `interrupted`, naming the checks.
//!
//! Files: `report.rs` is the report itself (pure: steps, timing, verdict, its stored row);
//! `monitor.rs` starts, resumes and finishes the watching and saves the report; `steps.rs`
//! observes each step from outside.

use crate::clock::Timestamp;
use crate::config::ServiceSpec;
use crate::failover::Cause;
use crate::metrics::Metrics;
use crate::store::StoreHandle;
use crate::view::Snapshot;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

mod monitor;
mod report;
mod steps;
#[cfg(test)]
mod tests;

pub use monitor::{monitor, resume};
pub use report::{target_of, DrillStatus, Report, Started, Step, StepStatus, TargetsDoc, STEPS};

/// How often the outbox is looked at while waiting for a delivery result.
const POLL: Duration = Duration::from_millis(100);

/// A fresh drill id: the start time and random bits, e.g. `drill-20261129T041502-3fa9c1`.
pub fn new_id(now: Timestamp) -> String {
    let stamp: String = now
        .rfc3339()
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("drill-{stamp}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// What a drill monitor needs.
pub struct Context {
    /// The daemon's way into the store: the report is saved through its writer, the outbox
    /// rows it watches are read beside it.
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub spec: Arc<ServiceSpec>,
    /// The transition into `drill` (its outbox rows are the drill's announcements).
    pub transition_id: Option<i64>,
    pub node: String,
    pub config_version: String,
}

type Shared = Arc<Mutex<Report>>;

/// A cause (as the snapshot spells it) that is a change of check health: the machine ends a
/// drill with one only when a check of the service went down.
fn health_cause(cause: &str) -> bool {
    serde_json::from_value::<Cause>(serde_json::Value::String(cause.to_owned()))
        .is_ok_and(Cause::is_health)
}
