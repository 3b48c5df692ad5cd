//! The TOML as written: serde structs with `deny_unknown_fields`, and the validation that turns them into `Config`.
//!
//! Loading never stops at the first problem. Each file is checked for TOML syntax as a whole,
//! then split into regions, one per top-level table (`[server]`, each `[[check]]`, ...), and
//! each region is deserialized on its own: serde stops at the first error it meets, so
//! isolating regions lets an unknown field in one check leave the next check's problems
//! visible. Every leaf that validation may complain about is `Spanned`, so each diagnostic
//! carries the line it is about.
//!
//! One file per concern: `regions.rs` splits and parses files, `main_file.rs` and `email.rs`
//! the main file's tables, `service.rs` a service file, `check/` its checks (one file per
//! kind), `route.rs` and `webhook.rs` its routes and `on_switch` entries (`zendesk.rs` the Help
//! Center article kind). This file holds
//! what they share: the loader, its diagnostics, line numbers and the common value checks.

mod audit;
mod check;
mod cluster;
mod email;
mod main_file;
mod regions;
mod route;
mod service;
#[cfg(test)]
mod tests;
mod webhook;
mod zendesk;

pub use audit::RawAudit;
pub use check::{
    Kind, RawBrowser, RawBrowserCheck, RawBrowserStep, RawCheck, RawDnsCheck, RawHttpCheck,
    RawSmtpCheck, RawStep, RawStepsCheck, RawTcpCheck, RawTlsCheck, RawUnknownCheck,
};
pub use email::{RawChat, RawEmail, RawStatuspagePush, DEFAULT_STATUSPAGE_API};
pub use main_file::{
    RawAudiences, RawAuth, RawDefaults, RawMain, RawServer, RawStatusPage, RawStorage,
};
pub use route::RawRoute;
pub use service::{RawDrillTargets, RawMaintenance, RawService, RawServiceFile};
pub use webhook::RawWebhook;

use super::{Config, ConfigError, Confirmation, Diagnostic, Secret};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

const DEFAULT_LISTEN: &str = "127.0.0.1:9898";
const DEFAULT_FROM: &str = "Switchboard <switchboard@localhost>";
const DEFAULT_RECOVERY_HOLD: Duration = Duration::from_secs(5 * 60);
const DEFAULT_MAX_FAILOVERS: u32 = 3;
/// The longest duration any setting may have (ten years of 365 days).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);
const DEFAULT_MAX_CONCURRENT_PROBES: u32 = 512;
const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(60 * 60);
const DEFAULT_MAX_REDIRECTS: u32 = 10;
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_as(path, false)
}

/// `load`, or (`auditor`) the auditor's load: secret references (`${VAR}` in webhook
/// headers, `[audit] key_file`) are kept as references and neither resolved nor required, so
/// `switchboard audit` runs where none of the production secrets exist.
pub fn load_as(path: &Path, auditor: bool) -> Result<Config, ConfigError> {
    let mut loader = Loader {
        auditor,
        ..Loader::default()
    };
    let config = loader.load(path);
    if loader.diagnostics.is_empty() {
        // `load` only returns `None` after recording a diagnostic.
        config.ok_or(ConfigError {
            diagnostics: Vec::new(),
            files: loader.files,
        })
    } else {
        // Stable, so problems on one line keep the order they were found in.
        loader
            .diagnostics
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(ConfigError {
            diagnostics: loader.diagnostics,
            files: loader.files,
        })
    }
}

/// A file being validated, as seen from one region of it: its path (as it appears in
/// diagnostics), its whole text, the index of its line starts, and where the region starts.
/// Each region is parsed on its own, so the spans serde hands back count from the region's
/// start (`base`); adding it back gives the offset in the file.
#[derive(Clone, Copy)]
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    lines: &'a LineIndex,
    base: usize,
}

impl<'a> Source<'a> {
    /// The same file, seen from the region starting at byte `base`.
    fn region(self, base: usize) -> Source<'a> {
        Source { base, ..self }
    }

    /// The 1-based line of a span from this region.
    fn line(&self, span: Range<usize>) -> usize {
        self.lines.line(self.base + span.start)
    }

    fn at<T>(&self, spanned: &Spanned<T>) -> (PathBuf, usize) {
        (self.path.to_path_buf(), self.line(spanned.span()))
    }
}

/// Where each line of a text starts, so that a byte offset's line number is a binary search
/// instead of a count of the newlines before it: every diagnostic and every duplicate check
/// asks for a line, and counting from the start of the file each time made loading one file
/// of 10,000 checks take minutes (the time grew with the square of the size).
struct LineIndex {
    /// Offsets of the first byte of each line; the first is always 0.
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    /// The 1-based line holding byte `offset`: one more than the newlines before it. An
    /// offset past the end counts as the end.
    fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.len);
        self.starts.partition_point(|&start| start <= offset)
    }
}

/// Where something was first defined, for "duplicate" messages.
#[derive(Clone)]
struct Place(PathBuf, usize);

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0.display(), self.1)
    }
}

#[derive(Default)]
struct Loader {
    diagnostics: Vec<Diagnostic>,
    hasher: Sha256,
    service_ids: HashMap<String, Place>,
    check_names: HashMap<String, Place>,
    route_ids: HashMap<String, Place>,
    webhook_ids: HashMap<String, Place>,
    /// Loading for an auditor: secret references are not resolved (`load_as`).
    auditor: bool,
    /// Every file read, in order, for the configuration history (`ConfigFiles`).
    files: super::ConfigFiles,
    /// The main file's directory: stored paths are shown relative to it.
    base: PathBuf,
    /// Every `corroborate` name with where it is written, resolved once all files are read.
    corroborations: Vec<(PathBuf, usize, String)>,
    /// Every valid Zendesk-format vendor check with where it is written and its fastest
    /// polling interval: together they must stay within Zendesk's 10 requests a minute.
    zendesk_polls: Vec<(PathBuf, usize, String, std::time::Duration)>,
    /// Bytes handed to the TOML parser so far: a test proves with it that loading costs
    /// a small multiple of the files' size, not their size times their number of tables.
    parsed_bytes: usize,
    /// `[browser]`, validated with the main file, shared by every browser check.
    browser: Option<std::sync::Arc<super::BrowserSettings>>,
}

impl Loader {
    fn report(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    fn report_at<T>(
        &mut self,
        source: &Source<'_>,
        spanned: &Spanned<T>,
        message: impl Into<String>,
    ) {
        let (file, line) = source.at(spanned);
        self.report(&file, line, message);
    }

    /// Reads one file and feeds it to the version hash.
    fn read(&mut self, path: &Path) -> Option<String> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                self.report(path, 0, format!("cannot read: {e}"));
                return None;
            }
        };
        self.hasher.update(&bytes);
        self.files.add(&self.base, path, &bytes);
        match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(e) => {
                let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                self.report(path, line, "not valid UTF-8");
                None
            }
        }
    }

    /// A humantime duration; `None` (after reporting) when malformed or zero where zero is meaningless.
    fn duration(
        &mut self,
        source: &Source<'_>,
        field: &str,
        raw: Option<&Spanned<String>>,
        zero_ok: bool,
    ) -> Option<Duration> {
        let raw = raw?;
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.report_at(source, raw, format!("{field} must be longer than zero"));
                None
            }
            // Beyond this a wait means nothing, and adding it to a clock reading overflows:
            // "500000000y" once wrapped to 2 ms, and a huge retry_interval panicked a probe loop.
            Ok(d) if d > MAX_DURATION => {
                self.report_at(
                    source,
                    raw,
                    format!(
                        "{field}: \"{}\" is longer than 3650d (ten years), the most any wait may be",
                        raw.get_ref()
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                // humantime names a wrong unit well; its other messages are byte offsets.
                let why = match e {
                    humantime::DurationError::UnknownUnit { .. }
                    | humantime::DurationError::NumberOverflow => e.to_string(),
                    _ => "write a number and a unit, such as \"30s\", \"5m\" or \"7d\"".to_string(),
                };
                self.report_at(
                    source,
                    raw,
                    format!("{field}: invalid duration \"{}\": {why}", raw.get_ref()),
                );
                None
            }
        }
    }

    fn threshold(
        &mut self,
        source: &Source<'_>,
        field: &str,
        raw: Option<&Spanned<i64>>,
    ) -> Option<u32> {
        let raw = raw?;
        let value = *raw.get_ref();
        let message = match u32::try_from(value) {
            Ok(n) if n >= 1 => return Some(n),
            _ if value < 1 => format!("{field} must be at least 1, not {value}"),
            _ => format!("{field} is too large: {value}"),
        };
        self.report_at(source, raw, message);
        None
    }

    /// `confirmation = "adaptive" | "fixed"`; `None` (after reporting) for anything else.
    fn confirmation(
        &mut self,
        source: &Source<'_>,
        raw: Option<&Spanned<String>>,
    ) -> Option<Confirmation> {
        let raw = raw?;
        match raw.get_ref().as_str() {
            "adaptive" => Some(Confirmation::Adaptive),
            "fixed" => Some(Confirmation::Fixed),
            other => {
                let message =
                    format!("confirmation must be \"adaptive\" or \"fixed\", not \"{other}\"");
                self.report_at(source, raw, message);
                None
            }
        }
    }

    /// Ids and names appear in URL paths, metric labels and command lines, so they stay plain.
    fn identifier(&mut self, source: &Source<'_>, what: &str, raw: &Spanned<String>) -> bool {
        let id = raw.get_ref();
        let plain = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            self.report_at(
                source,
                raw,
                format!("{what} \"{id}\" must be non-empty and use only letters, digits, '-', '_' and '.'"),
            );
        }
        plain
    }

    /// `{field}_env` or `{field}_file` (at most one), for a secret read where it lives each
    /// time it is needed: `Some(None)` when neither is given, `None` after reporting. The
    /// variable must be set now and the file readable now, so a missing secret shows in
    /// `switchboard check`; neither value is kept. An auditor's load (`Config::load_for_audit`)
    /// needs no secret, so neither is looked at then. `what` opens each message (`[check.imap]`).
    fn secret(
        &mut self,
        source: &Source<'_>,
        what: &str,
        field: &str,
        env: Option<&Spanned<String>>,
        file: Option<&Spanned<String>>,
    ) -> Option<Option<Secret>> {
        match (env, file) {
            (None, None) => Some(None),
            (Some(_), Some(f)) => {
                let message = format!("{what} give {field}_env or {field}_file, not both");
                self.report_at(source, f, message);
                None
            }
            (Some(e), None) => {
                if !self.auditor && std::env::var_os(e.get_ref()).is_none() {
                    let message = format!(
                        "{what} {field}_env: environment variable {} is not set",
                        e.get_ref()
                    );
                    self.report_at(source, e, message);
                    return None;
                }
                Some(Some(Secret::Env(e.get_ref().clone())))
            }
            (None, Some(f)) => {
                let base = source.path.parent().unwrap_or(Path::new(""));
                let path = base.join(f.get_ref());
                let problem = match std::fs::metadata(&path) {
                    _ if self.auditor => return Some(Some(Secret::File(path))),
                    Ok(m) if m.is_file() => return Some(Some(Secret::File(path))),
                    Ok(_) => "is not a file".to_string(),
                    Err(e) => format!("cannot be read: {e}"),
                };
                let message = format!("{what} {field}_file: \"{}\" {problem}", f.get_ref());
                self.report_at(source, f, message);
                None
            }
        }
    }

    /// Records the first place each id is defined and reports later ones against it.
    fn unique(&mut self, source: &Source<'_>, kind: Unique, raw: &Spanned<String>) -> bool {
        let (file, line) = source.at(raw);
        let seen = match kind {
            Unique::Service => &mut self.service_ids,
            Unique::Check => &mut self.check_names,
            Unique::Route => &mut self.route_ids,
            Unique::Webhook => &mut self.webhook_ids,
        };
        match seen.get(raw.get_ref()) {
            Some(first) => {
                let message = format!(
                    "duplicate {} \"{}\" (first defined at {first})",
                    kind.noun(),
                    raw.get_ref()
                );
                self.report(&file, line, message);
                false
            }
            None => {
                seen.insert(raw.get_ref().clone(), Place(file, line));
                true
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Unique {
    Service,
    Check,
    Route,
    Webhook,
}

impl Unique {
    fn noun(self) -> &'static str {
        match self {
            Unique::Service => "service id",
            Unique::Check => "check name",
            Unique::Route => "route id",
            Unique::Webhook => "webhook id",
        }
    }
}

fn timeout_message(timeout: Duration, interval: Duration) -> String {
    format!(
        "timeout ({}) is longer than interval ({})",
        humantime::format_duration(timeout),
        humantime::format_duration(interval)
    )
}
