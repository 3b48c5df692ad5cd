//! `kind = "heartbeat"`: a check that jobs report to (`POST /api/v1/heartbeats/{check}`) and
//! that fails when no heartbeat came within `deadline` + `grace`.

use super::{Loader, Source};
use crate::config::{CheckKind, HeartbeatCheck};
use crate::lang::condition::Condition;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeatCheck {
    /// Unique across the whole configuration; the `{check}` of the heartbeat URL.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"heartbeat"`.
    pub kind: Option<Spanned<String>>,
    /// The longest time expected between two heartbeats (required), e.g. the job's schedule.
    pub deadline: Option<Spanned<String>>,
    /// Extra time allowed past `deadline` before a missing heartbeat fails. Default `0s`.
    pub grace: Option<Spanned<String>>,
    /// Environment variable holding the job's token (read at load, kept only as SHA-256).
    pub token_env: Option<Spanned<String>>,
    /// File holding the job's token (first line), relative to this file.
    pub token_file: Option<Spanned<String>>,
    /// The token's SHA-256 in hex, for a configuration that must not hold the token itself.
    pub token_sha256: Option<Spanned<String>>,
    /// How often the deadline is judged (an outcome is produced).
    pub interval: Option<Spanned<String>>,
    /// Confirmation re-judgements while the check is suspect.
    pub retry_interval: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    /// `"adaptive"` or `"fixed"`; default from `[defaults]`.
    pub confirmation: Option<Spanned<String>>,
}

impl Loader {
    pub(super) fn heartbeat_check(
        &mut self,
        source: &Source<'_>,
        raw: RawHeartbeatCheck,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let deadline = match &raw.deadline {
            None => {
                let message = format!(
                    "check \"{}\" of kind \"heartbeat\" needs `deadline` (the longest time between two heartbeats, e.g. \"15m\")",
                    raw.name.get_ref()
                );
                self.report_at(source, &raw.name, message);
                None
            }
            Some(d) => self.duration(source, "deadline", Some(d), false),
        };
        let grace = match &raw.grace {
            None => Some(std::time::Duration::ZERO),
            Some(g) => self.duration(source, "grace", Some(g), true),
        };
        let token = self.heartbeat_token(source, &raw);
        Some((
            CheckKind::Heartbeat(HeartbeatCheck {
                deadline: deadline?,
                grace: grace?,
                token_sha256: token?,
            }),
            Vec::new(),
        ))
    }

    /// Exactly one of `token_env`, `token_file`, `token_sha256`, as the SHA-256 (hex) of the
    /// token: the token itself is never kept in the configuration.
    fn heartbeat_token(&mut self, source: &Source<'_>, raw: &RawHeartbeatCheck) -> Option<String> {
        let given: Vec<&Spanned<String>> = [&raw.token_env, &raw.token_file, &raw.token_sha256]
            .into_iter()
            .flatten()
            .collect();
        match given.as_slice() {
            [] => {
                let message = format!(
                    "check \"{}\" of kind \"heartbeat\" needs a token: token_env, token_file or token_sha256",
                    raw.name.get_ref()
                );
                self.report_at(source, &raw.name, message);
                return None;
            }
            [_] => {}
            [_, second, ..] => {
                let message = "give one of token_env, token_file and token_sha256, not several";
                self.report_at(source, *second, message);
                return None;
            }
        }
        let hash = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
        if let Some(e) = &raw.token_env {
            return match std::env::var(e.get_ref()) {
                Ok(t) if !t.trim().is_empty() => Some(hash(t.trim())),
                _ => {
                    let message = format!(
                        "token_env: environment variable {} is not set (or empty)",
                        e.get_ref()
                    );
                    self.report_at(source, e, message);
                    None
                }
            };
        }
        if let Some(f) = &raw.token_file {
            let base = source.path.parent().unwrap_or(Path::new(""));
            return match std::fs::read_to_string(base.join(f.get_ref())) {
                Ok(text) => {
                    // The first line: files written by `echo` or secret mounts end with a newline.
                    let token = text.lines().next().unwrap_or("").trim();
                    if token.is_empty() {
                        let message = format!("token_file: \"{}\" is empty", f.get_ref());
                        self.report_at(source, f, message);
                        None
                    } else {
                        Some(hash(token))
                    }
                }
                Err(e) => {
                    let message = format!("token_file: \"{}\" cannot be read: {e}", f.get_ref());
                    self.report_at(source, f, message);
                    None
                }
            };
        }
        let h = raw.token_sha256.as_ref()?;
        let hex = h.get_ref().trim().to_ascii_lowercase();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(hex)
        } else {
            let message = "token_sha256 must be 64 hexadecimal digits (the SHA-256 of the token)";
            self.report_at(source, h, message);
            None
        }
    }
}
