//! `[audit]` of the main file as written, and its validation (the key is read here unless loading for an auditor).

use super::{Loader, Source};
use crate::config::audit::{AuditConfig, AuditKey, DEFAULT_ANCHOR_INTERVAL};
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// File holding the key that authenticates the audit chain (64+ hex digits, or 32+ raw
    /// bytes), relative to this file; `switchboard audit keygen FILE` makes one.
    pub key_file: Option<Spanned<String>>,
    /// File to append the chain head to as JSON lines, relative to this file. Default: none.
    pub anchor_file: Option<Spanned<String>>,
    /// How often the head is logged and appended to `anchor_file`. Default `15m`.
    pub anchor_interval: Option<Spanned<String>>,
}

impl Loader {
    pub(super) fn validate_audit(
        &mut self,
        source: &Source<'_>,
        base: &Path,
        raw: Option<RawAudit>,
    ) -> AuditConfig {
        let Some(raw) = raw else {
            return AuditConfig::default();
        };
        let key_file = raw.key_file.as_ref().map(|f| base.join(f.get_ref()));
        // An auditor's copy of the configuration names the key without holding it: the
        // reference is kept and the file is not read (`Config::load_for_audit`).
        let key = match (&raw.key_file, &key_file) {
            (Some(at), Some(path)) if !self.auditor => match AuditKey::read(path) {
                Ok(k) => Some(k),
                Err(why) => {
                    self.report_at(source, at, format!("audit.key_file: {why}"));
                    None
                }
            },
            _ => None,
        };
        let anchor_interval = self
            .duration(
                source,
                "audit.anchor_interval",
                raw.anchor_interval.as_ref(),
                false,
            )
            .unwrap_or(DEFAULT_ANCHOR_INTERVAL);
        AuditConfig {
            key_file,
            key,
            anchor_file: raw.anchor_file.map(|f| base.join(f.into_inner())),
            anchor_interval,
        }
    }
}
