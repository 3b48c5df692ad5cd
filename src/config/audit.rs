//! `[audit]`: the key that authenticates the audit chain and where its head is anchored outside the database.
//!
//! The key is a secret kept outside the database (`key_file`), so someone who can rewrite the
//! database file cannot recompute the records' MACs (`audit` explains the scheme). Only the
//! daemon and `switchboard audit verify` read it; auditor tooling loads the configuration
//! without it (`Config::load_for_audit`) and is told what it could not check.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the chain head is written to the log and the anchor file when
/// `[audit] anchor_interval` is not set.
pub const DEFAULT_ANCHOR_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// The fewest key bytes accepted: HMAC-SHA-256's own output size.
pub const MIN_KEY_BYTES: usize = 32;

/// `[audit]` as validated.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditConfig {
    /// The key file, resolved against the main file's directory (a reference: kept even when
    /// the key was not read).
    pub key_file: Option<PathBuf>,
    /// The key read from `key_file`; `None` without one, and always in auditor mode.
    pub key: Option<AuditKey>,
    /// Append-only JSON lines of chain heads, ideally on another machine's file system.
    pub anchor_file: Option<PathBuf>,
    /// How often the head is anchored (log line, anchor file); also at shutdown.
    pub anchor_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            key_file: None,
            key: None,
            anchor_file: None,
            anchor_interval: DEFAULT_ANCHOR_INTERVAL,
        }
    }
}

/// The audit key's bytes. A secret: `Debug` never shows it, and nothing stores or logs it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey(Arc<[u8]>);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    /// The key in a key file: at least 64 hex digits (what `switchboard audit keygen` writes,
    /// surrounding whitespace ignored), or else at least 32 raw bytes (`head -c 32
    /// /dev/urandom`). The error says what is wrong without echoing the content.
    pub fn parse(bytes: &[u8]) -> Result<AuditKey, String> {
        let trimmed = bytes.trim_ascii();
        if !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_hexdigit) {
            if trimmed.len() < 2 * MIN_KEY_BYTES || !trimmed.len().is_multiple_of(2) {
                return Err(format!(
                    "holds {} hex digits; an audit key needs an even number, at least {} ({MIN_KEY_BYTES} bytes)",
                    trimmed.len(),
                    2 * MIN_KEY_BYTES
                ));
            }
            return hex::decode(trimmed)
                .map(|k| AuditKey(Arc::from(k)))
                .map_err(|e| format!("is not valid hex: {e}"));
        }
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "holds {} bytes; an audit key needs at least {MIN_KEY_BYTES} random bytes (or {} hex digits)",
                bytes.len(),
                2 * MIN_KEY_BYTES
            ));
        }
        Ok(AuditKey(Arc::from(bytes)))
    }

    /// Reads and parses a key file; the error names the file.
    pub fn read(path: &std::path::Path) -> Result<AuditKey, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        AuditKey::parse(&bytes).map_err(|why| format!("{} {why}", path.display()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_raw_keys_are_read_and_short_ones_refused() {
        let hex64 = "ab".repeat(32);
        let k = AuditKey::parse(format!("  {hex64}\n").as_bytes()).unwrap();
        assert_eq!(k.bytes(), [0xab; 32]);
        let raw = [0u8, 200, 3, 4].repeat(8);
        assert_eq!(AuditKey::parse(&raw).unwrap().bytes(), &raw[..]);
        let e = AuditKey::parse("ab".repeat(20).as_bytes()).unwrap_err();
        assert!(e.contains("40 hex digits"), "{e}");
        let e = AuditKey::parse(b"secret!").unwrap_err();
        assert!(e.contains("holds 7 bytes"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        assert_eq!(format!("{k:?}"), "AuditKey(<redacted>)");
    }
}
