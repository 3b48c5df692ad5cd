//! The audit chain's key at start, the configuration in force recorded, and the chain's head anchored outside the database.
//!
//! A keyed chain stops someone who rewrites the database without the key; the anchors stop
//! someone who cuts off its newest records, or rewrites records written before a key was
//! configured. The head (the newest record's id and hash) leaves the database four ways:
//! the metrics `switchboard_audit_head_sequence` and `switchboard_audit_head_info` (refreshed
//! every few seconds, so Prometheus keeps its history), a log line every `anchor_interval`
//! and at shutdown, the same as a JSON line appended to `[audit] anchor_file`, and the footer
//! of every on-call e-mail (written by the store as the row is queued). `switchboard audit
//! verify --anchor-file`/`--anchor SEQ:HASH` compares any of them with the chain.

use crate::audit::{self, NewAuditRecord};
use crate::clock::Timestamp;
use crate::config::{AuditConfig, Config};
use crate::metrics::Metrics;
use crate::store::{ConfigLoad, LoadResult, Store, StoreError, StoreHandle};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info};

/// How often the head metrics are refreshed from the store.
const METRICS_EVERY: Duration = Duration::from_secs(5);

/// Secret values the configuration files may hold, blanked out of the stored history.
pub(super) fn secrets(config: &Config) -> Vec<(String, &'static str)> {
    config
        .chat
        .iter()
        .filter_map(|c| c.webhook_url.clone())
        .map(|url| (url, "[chat] webhook_url"))
        .collect()
}

/// At start, before anything is recorded: binds the configured key to the store (refusing a
/// key that cannot extend the chain), starts the keyed part with an `audit_key` record when
/// the key is new to the chain, and records the configuration in force.
pub(super) fn start(config: &Config, store: &Store, node: &str) -> Result<(), StoreError> {
    let now = Timestamp::now();
    let key_id = config.audit.key.as_ref().map(|k| audit::key_id(k.bytes()));
    let note = NewAuditRecord {
        kind: audit::KIND_AUDIT_KEY.to_owned(),
        at: now,
        actor: "system".to_owned(),
        service: None,
        reason: "audit records are authenticated with [audit] key_file from this record on"
            .to_owned(),
        config_version: config.version.clone(),
        node: node.to_owned(),
        detail: serde_json::json!({
            "key_id": key_id,
            "key_file": config.audit.key_file.as_ref().map(|p| p.display().to_string()),
        }),
    };
    if let Some(rec) = store.start_audit_key(config.audit.key.as_ref(), &note)? {
        info!(
            "audit chain authenticated with key {} from record {} on",
            key_id.as_deref().unwrap_or("?"),
            rec.id
        );
    }
    store.record_config_load(&ConfigLoad {
        files: &config.files,
        version: &config.version,
        at: now,
        trigger: "start",
        actor: "system",
        result: LoadResult::Applied,
        diagnostics: &config.warnings(),
        audit_id: None,
        secrets: &secrets(config),
    })
}

/// Refreshes the head metrics every few seconds and anchors the head every
/// `anchor_interval` (log line and anchor file) until shutdown; `at_shutdown` writes the last.
pub(super) async fn run(
    store: StoreHandle,
    metrics: Arc<Metrics>,
    audit: AuditConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_anchor = tokio::time::Instant::now();
    anchor(&store, &metrics, &audit, "start").await;
    let every = METRICS_EVERY.min(audit.anchor_interval);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        if last_anchor.elapsed() >= audit.anchor_interval {
            last_anchor = tokio::time::Instant::now();
            anchor(&store, &metrics, &audit, "interval").await;
        } else if let Some((seq, hash)) = head(&store, &metrics).await {
            metrics.audit_head(seq, &hash);
        }
    }
}

/// The last anchor, once the core has recorded everything it will.
pub(super) async fn at_shutdown(store: &StoreHandle, metrics: &Metrics, audit: &AuditConfig) {
    anchor(store, metrics, audit, "shutdown").await;
}

async fn head(store: &StoreHandle, metrics: &Metrics) -> Option<(i64, String)> {
    match store.read(|s| s.audit_head()).await {
        Ok(h) => h,
        Err(e) => {
            metrics.store_error("audit_head");
            error!("could not read the audit chain's head: {e}");
            None
        }
    }
}

/// Writes the head to the metrics, the log and the anchor file.
async fn anchor(store: &StoreHandle, metrics: &Metrics, audit: &AuditConfig, why: &str) {
    let Some((seq, hash)) = head(store, metrics).await else {
        return;
    };
    metrics.audit_head(seq, &hash);
    info!(
        "audit chain head ({why}): {} (check: switchboard audit verify --anchor {seq}:{})",
        audit::head_text(seq, &hash),
        audit::short_hash(&hash)
    );
    if let Some(path) = &audit.anchor_file {
        let line = serde_json::json!({
            "at": Timestamp::now().rfc3339(),
            "sequence": seq,
            "hash": hash,
            "why": why,
        })
        .to_string();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| {
                f.write_all(format!("{line}\n").as_bytes())?;
                f.sync_data()
            });
        if let Err(e) = written {
            metrics.store_error("audit_anchor_file");
            error!(
                "could not append the audit chain head to {}: {e}",
                path.display()
            );
        }
    }
}
