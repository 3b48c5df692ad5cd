//! The TOML as written: serde structs with `deny_unknown_fields`, and the validation that turns them into `Config`.
//!
//! Loading never stops at the first problem. Each file is checked for TOML syntax as a whole,
//! then split into regions, one per top-level table (`[server]`, each `[[check]]`, ...), and
//! each region is deserialized on its own: serde stops at the first error it meets, so
//! isolating regions lets an unknown field in one check leave the next check's problems
//! visible. Every leaf that validation may complain about is `Spanned`, so each diagnostic
//! carries the line it is about.

use super::Side;
use super::{
    Audiences, AuthConfig, ChatConfig, CheckKind, CheckSpec, Config, ConfigError, Confirmation,
    Defaults, Diagnostic, DnsCheck, EmailConfig, EmailTransport, Failback, FailoverWhen, HttpCheck,
    HttpStep, IpVersion, NetOptions, Role, RouteSpec, ServerConfig, ServiceSpec, SmtpCheck,
    StatusPageConfig, StatuspagePushConfig, StepsCheck, StorageConfig, TcpCheck, WebhookSpec,
};
use crate::announce::webhook;
use crate::clock::Timestamp;
use crate::lang::condition::Condition;
use crate::lang::template::{Extraction, Template};
use crate::lang::window::{Cron, Schedule, Window};
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use url::Url;

// ---------------------------------------------------------------------------------------
// The main file, `switchboard.toml`
// ---------------------------------------------------------------------------------------

/// `switchboard.toml`. Every table is optional; absent values take the documented defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMain {
    /// Directory of service files, relative to this file. Default `probes`.
    pub probes: Option<Spanned<String>>,
    pub server: Option<RawServer>,
    pub storage: Option<RawStorage>,
    pub email: Option<Spanned<RawEmail>>,
    pub audiences: Option<RawAudiences>,
    pub status_page: Option<RawStatusPage>,
    pub auth: Option<RawAuth>,
    pub defaults: Option<RawDefaults>,
    pub statuspage_push: Option<Spanned<RawStatuspagePush>>,
    pub chat: Option<Spanned<RawChat>>,
}

/// `[statuspage_push]`: keep an Atlassian Statuspage page in step with failovers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatuspagePush {
    pub page_id: Option<Spanned<String>>,
    /// Default `https://api.statuspage.io/v1`.
    pub api_base: Option<Spanned<String>>,
    /// Environment variable holding the API key. Default `STATUSPAGE_API_KEY`.
    pub api_key_env: Option<Spanned<String>>,
}

/// `[chat]`: a Slack-compatible incoming webhook that hears what on-call hears.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChat {
    pub webhook_url: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `host:port` to listen on. Default `127.0.0.1:9898`.
    pub listen: Option<Spanned<String>>,
    /// Base URL for links in messages. Default `http://{listen}`.
    pub public_url: Option<Spanned<String>>,
    /// Probes running at once, across all checks. Default 512.
    pub max_concurrent_probes: Option<Spanned<i64>>,
    /// Reverse proxies (addresses or CIDR blocks) whose client address header is believed.
    pub trusted_proxies: Option<Spanned<Vec<String>>>,
    /// The header trusted proxies put the client address in. Default `X-Forwarded-For`.
    pub client_ip_header: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// SQLite file, relative to this file. Default `var/switchboard.db`.
    pub path: Option<Spanned<String>>,
    /// Directory for the spill file when the database's own directory refuses it, relative
    /// to this file. Default: none (the system temp directory is the last resort).
    pub spill_dir: Option<Spanned<String>>,
    /// How long shutdown keeps retrying unrecorded transitions before spilling them. Default `10s`.
    pub shutdown_grace: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// Sender mailbox. Default `Switchboard <switchboard@localhost>`.
    pub from: Option<Spanned<String>>,
    /// Base URL that services' relative `runbook` paths are resolved against in on-call
    /// messages, e.g. `https://runbooks.example.com/`.
    pub runbook_base_url: Option<Spanned<String>>,
    /// `"file"` (default) or `"smtp"`.
    pub transport: Option<Spanned<String>>,
    /// Directory for `.eml` files; required when `transport = "file"`.
    pub dir: Option<Spanned<String>>,
    /// `smtp://host:port` or `smtps://host:port`; required when `transport = "smtp"`.
    pub smtp_url: Option<Spanned<String>>,
    /// A second relay, tried when the first one fails for a message.
    pub backup_smtp_url: Option<Spanned<String>>,
    /// File holding the SMTP password (instead of `SWITCHBOARD_SMTP_PASSWORD`).
    pub password_file: Option<Spanned<String>>,
    /// PEM file of extra CA certificates trusted for the relays (a private CA).
    pub tls_ca_file: Option<Spanned<String>>,
    /// Time to reach a ready SMTP session (TCP, banner, EHLO, TLS, AUTH). Default `10s`.
    pub connect_timeout: Option<Spanned<String>>,
    /// Time allowed for each SMTP command's reply. Default `30s`.
    pub command_timeout: Option<Spanned<String>>,
    /// Announcements still undelivered after this long are given up. Default `24h`.
    pub give_up_after: Option<Spanned<String>>,
    /// Directory of message templates overriding the built-in ones, relative to this file.
    pub templates: Option<Spanned<String>>,
    /// At most one e-mail per audience per this window, naming every change in it. Default
    /// `30s`; `0s` sends every change on its own, at once.
    pub group_window: Option<Spanned<String>>,
    /// Customers hear of a change only once it has lasted this long. Default `2m`.
    pub customer_delay: Option<Spanned<String>>,
    /// The domain of Message-IDs. Default: the domain of `from`.
    pub message_id_domain: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudiences {
    #[serde(default)]
    pub oncall: Vec<Spanned<String>>,
    #[serde(default)]
    pub customers: Vec<Spanned<String>>,
    #[serde(default)]
    pub drill: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatusPage {
    pub title: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Token store, relative to this file.
    pub tokens_file: Option<String>,
}

/// Values every check inherits; each also settable per check.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Confirmation re-probes while a check is suspect.
    pub retry_interval: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    /// `"adaptive"` (default): noisy targets need up to three more failures; `"fixed"`.
    pub confirmation: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------
// Service files, `probes/*.toml`
// ---------------------------------------------------------------------------------------

/// One service file: a `[service]`, its `[[check]]`s and its `[[route]]`s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceFile {
    pub service: Option<Spanned<RawService>>,
    #[serde(default)]
    pub check: Vec<Spanned<RawCheck>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub maintenance: Vec<Spanned<RawMaintenance>>,
    #[serde(default)]
    pub on_switch: Vec<Spanned<RawWebhook>>,
}

/// A webhook called when the service's routes switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Unique across the configuration; default `{service}-{n}`.
    pub id: Option<Spanned<String>>,
    pub url: Spanned<String>,
    /// Default `POST`.
    pub method: Option<Spanned<String>>,
    /// Values may name environment variables as `${NAME}` (secrets stay out of the file).
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// JSON template with `{{service}}`, `{{to}}`, `{{side}}`, `{{routes}}`, ...
    pub body: Option<Spanned<String>>,
    /// Default `10s`.
    pub timeout: Option<Spanned<String>>,
}

/// A planned maintenance window: `start` (RFC 3339) for a one-off, or `cron` (5 fields, UTC)
/// for a recurring one, each with a `duration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub start: Option<Spanned<String>>,
    pub cron: Option<Spanned<String>>,
    pub duration: Spanned<String>,
    /// Shown on the status page and in messages. Default "planned maintenance".
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Unique across the configuration; letters, digits, `-`, `_`, `.`.
    pub id: Spanned<String>,
    /// Display name. Default: the id.
    pub name: Option<String>,
    pub runbook: Option<String>,
    /// Component id of this service on the pushed Statuspage page (`[statuspage_push]`).
    pub statuspage_component: Option<String>,
    /// `"any"` (default), `"all"` or `"k of n"`, counted over primary checks that are down.
    pub failover_when: Option<Spanned<String>>,
    /// `"auto"` (default) or `"manual"`.
    pub failback: Option<Spanned<String>>,
    /// How long the primary must stay healthy before an automatic failback. Default `5m`.
    pub recovery_hold: Option<Spanned<String>>,
    /// Automatic failovers allowed per `flap_window` before the backup is held. Default 3;
    /// 0 turns flap damping off.
    pub max_failovers: Option<Spanned<i64>>,
    /// Default `1h`.
    pub flap_window: Option<Spanned<String>>,
    /// Where customers go during maintenance: `"backup"` (default) or `"primary"`.
    pub maintenance_route: Option<Spanned<String>>,
    /// What a drill of this service is timed against: `{ switch = "5s", notify = "60s" }`.
    pub drill_targets: Option<RawDrillTargets>,
    /// Overrides `[email] customer_delay` for this service.
    pub customer_delay: Option<Spanned<String>>,
}

/// `drill_targets = { switch = "5s", notify = "60s" }`: both optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrillTargets {
    /// Decision, route switch, backup verified and revert, each within this. Default `5s`.
    pub switch: Option<Spanned<String>>,
    /// E-mail accepted, status page updated and webhooks acknowledged within this of the
    /// drill's start. Default `60s`.
    pub notify: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"http"` (default), `"steps"`, `"tcp"`, `"tls"`, `"smtp"` or `"dns"`.
    pub kind: Option<Spanned<String>>,
    /// The requests of a multi-step HTTP check (`[[check.step]]`), in order.
    #[serde(default)]
    pub step: Vec<Spanned<RawStep>>,
    /// The page probed (`http`).
    pub url: Option<Spanned<String>>,
    /// `host:port` (`tcp`, `tls`, `smtp`).
    pub target: Option<Spanned<String>>,
    /// Sent after connecting (`tcp`).
    pub send: Option<String>,
    /// Text the reply must contain (`tcp`).
    pub expect: Option<String>,
    /// A regular expression the reply must match (`tcp`, `tls`).
    pub expect_regex: Option<Spanned<String>>,
    /// PEM file of the CAs to trust instead of the webpki roots, relative to this file.
    pub ca_file: Option<Spanned<String>>,
    /// TLS server name (SNI and verification) instead of the host's.
    pub server_name: Option<Spanned<String>>,
    /// `"any"` (default), `"4"` or `"6"` (that family only), `"prefer4"` or `"prefer6"` (that
    /// family first, the other as a fallback): the address family to connect over.
    pub ip_version: Option<Spanned<String>>,
    /// TLS on connect (`tcp`; `smtp` implicit TLS). `kind = "tls"` implies it.
    pub tls: Option<bool>,
    /// Require and negotiate STARTTLS (`smtp`). Default true.
    pub starttls: Option<bool>,
    /// Name sent with EHLO (`smtp`). Default `switchboard.invalid`.
    pub ehlo: Option<String>,
    /// The name asked for (`dns`; `target` is the DNS server's ip:port).
    pub query_name: Option<String>,
    /// `A` (default), `AAAA`, `CNAME`, `MX`, `NS`, `SOA`, `TXT` (`dns`).
    pub query_type: Option<Spanned<String>>,
    /// `NOERROR` (default), `NXDOMAIN`, ... (`dns`).
    pub expect_rcode: Option<Spanned<String>>,
    /// Answers that must all be present (`dns`).
    pub expect_answers: Option<Vec<String>>,
    /// Default `GET`.
    pub method: Option<Spanned<String>>,
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    pub body: Option<String>,
    /// Default `true`.
    pub follow_redirects: Option<bool>,
    /// Default 10.
    pub max_redirects: Option<Spanned<i64>>,
    /// Default 1 MiB; the rest of the body is never read.
    pub max_body_bytes: Option<Spanned<i64>>,
    /// Skip certificate verification. Default `false`.
    pub insecure: Option<bool>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub retry_interval: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    /// `"adaptive"` or `"fixed"`; default from `[defaults]`.
    pub confirmation: Option<Spanned<String>>,
    /// Without conditions, a 2xx or 3xx answer is a success.
    #[serde(default)]
    pub conditions: Vec<Spanned<String>>,
}

/// One request of a multi-step check. `url`, header values and `body` may use `${var}` for a
/// value an earlier step extracted (`${var|url}` percent-encodes it; in a URL it always is).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Unique within the check; named in the outcome when this step fails.
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    /// Default `GET`.
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub body: Option<Spanned<String>>,
    /// Default `true`.
    pub follow_redirects: Option<bool>,
    /// Default 10.
    pub max_redirects: Option<Spanned<i64>>,
    /// This step's limit, at most the check's timeout (which bounds the whole sequence).
    pub timeout: Option<Spanned<String>>,
    /// Without conditions, a 2xx or 3xx answer is a success.
    #[serde(default)]
    pub conditions: Vec<Spanned<String>>,
    /// `name = "regex:…"`, `"json:$.a.b"`, `"[BODY].a.b"` or `"header:Name"`.
    #[serde(default)]
    pub extract: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique across the configuration; the `{route}` of `/go/{route}`.
    pub id: Spanned<String>,
    /// Where customers go: an http(s) URL, an e-mail address (`mailto:` optional), a phone
    /// number as `tel:…`, or instructions as `text:…`.
    pub primary: Spanned<String>,
    pub backup: Spanned<String>,
}

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
    let mut loader = Loader::default();
    let config = loader.load(path);
    if loader.diagnostics.is_empty() {
        // `load` only returns `None` after recording a diagnostic.
        config.ok_or(ConfigError {
            diagnostics: Vec::new(),
        })
    } else {
        // Stable, so problems on one line keep the order they were found in.
        loader
            .diagnostics
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(ConfigError {
            diagnostics: loader.diagnostics,
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
    /// Bytes handed to the TOML parser so far: a test proves with it that loading costs
    /// a small multiple of the files' size, not their size times their number of tables.
    parsed_bytes: usize,
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

    /// Parses the file region by region into `T`, reporting every serde error with its line.
    /// Returns the partial results in file order, each with the source of its region (its
    /// spans count from the region's start), and whether any region failed.
    ///
    /// Each region is parsed as its own text rather than as the whole file with the rest
    /// blanked out: the blanked copy made every region cost as much as the file, so a file of
    /// n checks cost n times its size.
    fn parse_regions<'a, T: DeserializeOwned>(
        &mut self,
        source: &Source<'a>,
    ) -> Option<(Vec<(Source<'a>, T)>, bool)> {
        self.parsed_bytes += source.text.len();
        let regions = match regions(source.text) {
            Ok(r) => r,
            Err(e) => {
                // A syntax error leaves nothing trustworthy in this file; other files go on.
                let line = e.span().map_or(0, |s| source.line(s));
                self.report(
                    source.path,
                    line,
                    format!("invalid TOML: {}", toml_message(&e)),
                );
                return None;
            }
        };
        let mut parts = Vec::new();
        let mut failed = false;
        for region in regions {
            let here = source.region(region.start);
            // Regions start at `[` (ASCII) or at 0, so no character is ever cut in half.
            let mut text = std::borrow::Cow::Borrowed(&source.text[region]);
            // An unknown key says nothing about its neighbours: blank its line and parse again,
            // so one typo does not hide the next problem in the same table.
            for _ in 0..64 {
                self.parsed_bytes += text.len();
                match toml::from_str::<T>(&text) {
                    Ok(part) => {
                        parts.push((here, part));
                        break;
                    }
                    Err(e) => {
                        failed = true;
                        let line = e.span().map_or(0, |s| here.line(s));
                        let message = match e
                            .span()
                            .and_then(|s| key_before(source.text, here.base + s.start))
                        {
                            Some(key) => format!("{key}: {}", toml_message(&e)),
                            None => toml_message(&e),
                        };
                        self.report(source.path, line, message);
                        match e.span() {
                            Some(span) if e.message().starts_with("unknown field") => {
                                match without_line(&text, span.start) {
                                    Some(next) => text = std::borrow::Cow::Owned(next),
                                    None => break,
                                }
                            }
                            _ => break,
                        }
                    }
                }
            }
        }
        Some((parts, failed))
    }

    fn load(&mut self, path: &Path) -> Option<Config> {
        let text = self.read(path)?;
        let lines = LineIndex::new(&text);
        let source = Source {
            path,
            text: &text,
            lines: &lines,
            base: 0,
        };
        let (parts, _) = self.parse_regions::<RawMain>(&source)?;
        let (raw, at) = merge_main(source, parts);
        let base = path.parent().unwrap_or(Path::new(""));
        let main = self.validate_main(&at, base, raw);

        let services = self.load_services(&main.probes_dir, main.probes_line, path, &main.defaults);
        let (main, services) = (main, services?);
        Some(Config {
            source: path.to_path_buf(),
            probes_dir: main.probes_dir,
            server: main.server?,
            storage: main.storage,
            email: main.email?,
            statuspage_push: main.statuspage_push?,
            chat: main.chat?,
            audiences: main.audiences,
            status_page: main.status_page,
            auth: main.auth,
            defaults: main.defaults,
            services: services.into_iter().map(std::sync::Arc::new).collect(),
            version: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        })
    }

    fn validate_main(&mut self, at: &MainSources<'_>, base: &Path, raw: RawMain) -> Main {
        let probes_line = raw.probes.as_ref().map_or(0, |p| at.probes.line(p.span()));
        let probes_dir = base.join(
            raw.probes
                .map_or_else(|| "probes".to_string(), Spanned::into_inner),
        );

        let server = raw.server.unwrap_or_default();
        let source = &at.server;
        let listen = match &server.listen {
            None => DEFAULT_LISTEN.parse().ok(),
            Some(l) => match l.get_ref().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.report_at(
                        source,
                        l,
                        format!(
                            "listen: \"{}\" is not an address and port such as {DEFAULT_LISTEN}",
                            l.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let public_url = match &server.public_url {
            None => listen.map(|l| format!("http://{l}")),
            Some(u) => match Url::parse(u.get_ref()) {
                // Trimmed so callers can append `/status` without doubling the slash.
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Some(u.get_ref().trim_end_matches('/').to_string())
                }
                _ => {
                    self.report_at(
                        source,
                        u,
                        format!(
                            "public_url: \"{}\" is not an absolute http(s) URL",
                            u.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let max_concurrent_probes = match &server.max_concurrent_probes {
            None => Some(DEFAULT_MAX_CONCURRENT_PROBES),
            Some(m) => self.threshold(source, "max_concurrent_probes", Some(m)),
        };
        let mut trusted_proxies = Vec::new();
        if let Some(list) = &server.trusted_proxies {
            for entry in list.get_ref() {
                match entry.parse::<crate::config::IpRange>() {
                    Ok(r) => trusted_proxies.push(r),
                    Err(why) => self.report_at(source, list, format!("trusted_proxies: {why}")),
                }
            }
        }
        let client_ip_header = match &server.client_ip_header {
            None => Some("x-forwarded-for".to_string()),
            // RFC 9110 token characters; lower-cased as HTTP/1.1 header names compare.
            Some(h) => match h.get_ref().as_str() {
                name if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) =>
                {
                    Some(name.to_ascii_lowercase())
                }
                _ => {
                    let why = format!("client_ip_header: \"{}\" is not a header name", h.get_ref());
                    self.report_at(source, h, why);
                    None
                }
            },
        };
        let server = match (listen, public_url, max_concurrent_probes, client_ip_header) {
            (
                Some(listen),
                Some(public_url),
                Some(max_concurrent_probes),
                Some(client_ip_header),
            ) => Some(ServerConfig {
                listen,
                public_url,
                max_concurrent_probes,
                trusted_proxies,
                client_ip_header,
            }),
            _ => None,
        };

        let raw_storage = raw.storage.unwrap_or_default();
        let shutdown_grace = self
            .duration(
                &at.storage,
                "shutdown_grace",
                raw_storage.shutdown_grace.as_ref(),
                true,
            )
            .unwrap_or(Duration::from_secs(10));
        let storage = StorageConfig {
            path: base.join(
                raw_storage
                    .path
                    .map_or_else(|| "var/switchboard.db".to_string(), Spanned::into_inner),
            ),
            spill_dir: raw_storage.spill_dir.map(|d| base.join(d.into_inner())),
            shutdown_grace,
        };

        let email = self.validate_email(&at.email, base, raw.email);
        let statuspage_push =
            self.validate_statuspage_push(&at.statuspage_push, raw.statuspage_push);
        let chat = self.validate_chat(&at.chat, raw.chat);

        let audiences = raw.audiences.unwrap_or_default();
        let mut addresses = |name: &str, list: Vec<Spanned<String>>| -> Vec<String> {
            list.into_iter()
                .filter(|a| {
                    let ok = a.get_ref().parse::<lettre::message::Mailbox>().is_ok();
                    if !ok {
                        self.report_at(
                            &at.audiences,
                            a,
                            format!(
                                "audiences.{name}: \"{}\" is not an e-mail address",
                                a.get_ref()
                            ),
                        );
                    }
                    ok
                })
                .map(Spanned::into_inner)
                .collect()
        };
        let audiences = Audiences {
            oncall: addresses("oncall", audiences.oncall),
            customers: addresses("customers", audiences.customers),
            drill: addresses("drill", audiences.drill),
        };

        let status_page = StatusPageConfig {
            title: raw
                .status_page
                .and_then(|s| s.title)
                .unwrap_or_else(|| "Support status".to_string()),
        };
        let auth = AuthConfig {
            tokens_file: raw.auth.and_then(|a| a.tokens_file).map(|f| base.join(f)),
        };
        let defaults = self.validate_defaults(&at.defaults, raw.defaults.unwrap_or_default());

        Main {
            probes_dir,
            probes_line,
            server,
            storage,
            email,
            statuspage_push,
            chat,
            audiences,
            status_page,
            auth,
            defaults,
        }
    }

    fn validate_email(
        &mut self,
        source: &Source<'_>,
        base: &Path,
        raw: Option<Spanned<RawEmail>>,
    ) -> Option<EmailConfig> {
        // Without an [email] table, messages go to files under var/mail: the demo and a first
        // run work with no set-up, and nothing leaves the machine by surprise.
        let Some(raw) = raw else {
            return Some(EmailConfig::new(
                DEFAULT_FROM,
                EmailTransport::File {
                    dir: base.join("var/mail"),
                },
            ));
        };
        let table_line = source.line(raw.span());
        let raw = raw.into_inner();
        let templates_given = raw.templates.is_some();
        let runbook_base_url = match raw.runbook_base_url {
            None => Some(None),
            Some(u) => match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    // A base without a trailing slash would lose its last segment in the
                    // join (`…/docs` + `runbooks/x.md` is `…/runbooks/x.md`): add it.
                    let mut base = u.into_inner();
                    if !base.ends_with('/') {
                        base.push('/');
                    }
                    Some(Some(base))
                }
                _ => {
                    self.report_at(
                        source,
                        &u,
                        format!(
                            "email.runbook_base_url: \"{}\" is not an http:// or https:// URL",
                            u.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let from = match raw.from {
            None => Some(DEFAULT_FROM.to_string()),
            Some(f) if f.get_ref().parse::<lettre::message::Mailbox>().is_ok() => {
                Some(f.into_inner())
            }
            Some(f) => {
                self.report_at(
                    source,
                    &f,
                    format!("email.from: \"{}\" is not an e-mail address", f.get_ref()),
                );
                None
            }
        };
        let smtp_url_given = raw.smtp_url.is_some();
        // smtp_url is checked even while transport = "file", so switching over later is not
        // the moment a typo surfaces.
        let smtp_url = raw.smtp_url.and_then(|u| match Url::parse(u.get_ref()) {
            Ok(url) if matches!(url.scheme(), "smtp" | "smtps") && url.has_host() => {
                Some(u.into_inner())
            }
            _ => {
                self.report_at(
                    source,
                    &u,
                    format!(
                        "email.smtp_url: \"{}\" is not smtp://host:port or smtps://host:port",
                        u.get_ref()
                    ),
                );
                None
            }
        });
        let transport = match raw.transport.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("file") => match raw.dir {
                Some(dir) => Some(EmailTransport::File {
                    dir: base.join(dir.into_inner()),
                }),
                None => {
                    self.report(
                        source.path,
                        table_line,
                        "email.dir is required when transport = \"file\"",
                    );
                    None
                }
            },
            Some("smtp") => match smtp_url {
                Some(url) => Some(EmailTransport::Smtp { url }),
                // An smtp_url that was given but is malformed has been reported already.
                None => {
                    if !smtp_url_given {
                        self.report(
                            source.path,
                            table_line,
                            "email.smtp_url is required when transport = \"smtp\"",
                        );
                    }
                    None
                }
            },
            Some(other) => {
                let message =
                    format!("email.transport must be \"file\" or \"smtp\", not \"{other}\"");
                if let Some(t) = &raw.transport {
                    self.report_at(source, t, message);
                }
                None
            }
        };
        let backup_smtp_url = match raw.backup_smtp_url {
            None => Some(None),
            Some(u) => match Url::parse(u.get_ref()) {
                Ok(url)
                    if matches!(url.scheme(), "smtp" | "smtps")
                        && url.has_host()
                        && url.password().is_none() =>
                {
                    Some(Some(u.into_inner()))
                }
                _ => {
                    self.report_at(
                        source,
                        &u,
                        format!(
                            "email.backup_smtp_url: \"{}\" is not smtp://host:port or smtps://host:port (without a password)",
                            redact_url(u.get_ref())
                        ),
                    );
                    None
                }
            },
        };
        let password_file = raw.password_file.map(|f| base.join(f.into_inner()));
        let tls_ca_file = match raw.tls_ca_file {
            None => Some(None),
            Some(f) => {
                let path = base.join(f.get_ref());
                match std::fs::read(&path) {
                    Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
                        Some(Some(path))
                    }
                    Ok(_) => {
                        self.report_at(
                            source,
                            &f,
                            format!(
                                "email.tls_ca_file: {} holds no PEM certificate",
                                path.display()
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        self.report_at(
                            source,
                            &f,
                            format!("email.tls_ca_file: cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
        };
        let mut timeout = |name: &str, raw: Option<Spanned<String>>, default: u64| match raw {
            None => Some(Duration::from_secs(default)),
            Some(r) => self.duration(source, &format!("email.{name}"), Some(&r), false),
        };
        let connect_timeout = timeout("connect_timeout", raw.connect_timeout, 10);
        let command_timeout = timeout("command_timeout", raw.command_timeout, 30);
        let give_up_after = timeout("give_up_after", raw.give_up_after, 24 * 3600);
        // Zero is a deliberate choice for both: every change alone, at once (as before 0.x).
        let group_window = match &raw.group_window {
            None => Some(crate::config::DEFAULT_GROUP_WINDOW),
            Some(r) => self.duration(source, "email.group_window", Some(r), true),
        };
        let customer_delay = match &raw.customer_delay {
            None => Some(crate::config::DEFAULT_CUSTOMER_DELAY),
            Some(r) => self.duration(source, "email.customer_delay", Some(r), true),
        };
        let message_id_domain = match raw.message_id_domain {
            None => Some(None),
            Some(d) if is_domain(d.get_ref()) => Some(Some(d.into_inner())),
            Some(d) => {
                self.report_at(
                    source,
                    &d,
                    format!(
                        "email.message_id_domain: \"{}\" is not a domain name (letters, digits, '-' and '.')",
                        d.get_ref()
                    ),
                );
                None
            }
        };
        let templates = raw.templates.and_then(|t| {
            let dir = base.join(t.get_ref());
            match crate::announce::render::Templates::load(&dir) {
                Ok(_) => Some(dir),
                Err(e) => {
                    self.report_at(source, &t, format!("email.templates: {e}"));
                    None
                }
            }
        });
        let templates_ok = templates.is_some() || !templates_given;
        if !templates_ok {
            return None;
        }
        Some(EmailConfig {
            from: from?,
            runbook_base_url: runbook_base_url?,
            transport: transport?,
            backup_smtp_url: backup_smtp_url?,
            password_file,
            tls_ca_file: tls_ca_file?,
            connect_timeout: connect_timeout?,
            command_timeout: command_timeout?,
            give_up_after: give_up_after?,
            templates,
            group_window: group_window?,
            customer_delay: customer_delay?,
            message_id_domain: message_id_domain?,
        })
    }

    fn validate_statuspage_push(
        &mut self,
        source: &Source<'_>,
        raw: Option<Spanned<RawStatuspagePush>>,
    ) -> Option<Option<StatuspagePushConfig>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let line = source.line(raw.span());
        let raw = raw.into_inner();
        let page_id = match raw.page_id {
            Some(p)
                if !p.get_ref().trim().is_empty()
                    && p.get_ref().chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Some(p.into_inner())
            }
            Some(p) => {
                self.report_at(
                    source,
                    &p,
                    format!(
                        "statuspage_push.page_id: \"{}\" is not a page id (letters and digits)",
                        p.get_ref()
                    ),
                );
                None
            }
            None => {
                self.report(source.path, line, "statuspage_push.page_id is required");
                None
            }
        };
        let api_base = match raw.api_base {
            None => Some(DEFAULT_STATUSPAGE_API.to_string()),
            Some(u) => match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Some(u.get_ref().trim_end_matches('/').to_string())
                }
                _ => {
                    self.report_at(
                        source,
                        &u,
                        format!(
                            "statuspage_push.api_base: \"{}\" is not an absolute http(s) URL",
                            u.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let api_key_env = match raw.api_key_env {
            None => Some("STATUSPAGE_API_KEY".to_string()),
            Some(e) if is_env_name(e.get_ref()) => Some(e.into_inner()),
            Some(e) => {
                self.report_at(
                    source,
                    &e,
                    format!(
                        "statuspage_push.api_key_env: \"{}\" is not an environment variable name",
                        e.get_ref()
                    ),
                );
                None
            }
        };
        Some(Some(StatuspagePushConfig {
            page_id: page_id?,
            api_base: api_base?,
            api_key_env: api_key_env?,
        }))
    }

    fn validate_chat(
        &mut self,
        source: &Source<'_>,
        raw: Option<Spanned<RawChat>>,
    ) -> Option<Option<ChatConfig>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let line = source.line(raw.span());
        match raw.into_inner().webhook_url {
            None => {
                self.report(source.path, line, "chat.webhook_url is required");
                None
            }
            Some(u) => match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Some(Some(ChatConfig {
                        webhook_url: u.into_inner(),
                    }))
                }
                // The URL is a secret (whoever has it can post): not echoed.
                _ => {
                    self.report_at(
                        source,
                        &u,
                        "chat.webhook_url is not an absolute http(s) URL",
                    );
                    None
                }
            },
        }
    }

    fn validate_defaults(&mut self, source: &Source<'_>, raw: RawDefaults) -> Defaults {
        let builtin = Defaults::default();
        let interval = self.duration(source, "interval", raw.interval.as_ref(), false);
        let timeout = self.duration(source, "timeout", raw.timeout.as_ref(), false);
        let defaults = Defaults {
            interval: interval.unwrap_or(builtin.interval),
            timeout: timeout.unwrap_or(builtin.timeout),
            retry_interval: self
                .duration(source, "retry_interval", raw.retry_interval.as_ref(), false)
                .unwrap_or(builtin.retry_interval),
            failure_threshold: self
                .threshold(source, "failure_threshold", raw.failure_threshold.as_ref())
                .unwrap_or(builtin.failure_threshold),
            success_threshold: self
                .threshold(source, "success_threshold", raw.success_threshold.as_ref())
                .unwrap_or(builtin.success_threshold),
            confirmation: self
                .confirmation(source, raw.confirmation.as_ref())
                .unwrap_or(builtin.confirmation),
        };
        if defaults.timeout > defaults.interval {
            // Point at whichever of the two was written; timeout first, as it is the one to change.
            if let Some(at) = raw.timeout.as_ref().or(raw.interval.as_ref()) {
                let message = timeout_message(defaults.timeout, defaults.interval);
                self.report_at(source, at, format!("defaults: {message}"));
            }
        }
        defaults
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

    /// Loads every `*.toml` under the probes directory, in file-name order.
    fn load_services(
        &mut self,
        dir: &Path,
        probes_line: usize,
        main_path: &Path,
        defaults: &Defaults,
    ) -> Option<Vec<ServiceSpec>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.report(
                    main_path,
                    probes_line,
                    format!("probes directory \"{}\" cannot be read: {e}", dir.display()),
                );
                return None;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        // Paths in diagnostics read `probes/x.toml`, not the platform's directory listing form.
        let files = files
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| dir.join(n)));

        let mut services = Vec::new();
        for file in files {
            if let Some(service) = self.load_service_file(&file, defaults) {
                services.push(service);
            }
        }
        Some(services)
    }

    fn load_service_file(&mut self, path: &Path, defaults: &Defaults) -> Option<ServiceSpec> {
        let text = self.read(path)?;
        let lines = LineIndex::new(&text);
        let whole = Source {
            path,
            text: &text,
            lines: &lines,
            base: 0,
        };
        let (parts, region_failed) = self.parse_regions::<RawServiceFile>(&whole)?;
        // Each item keeps the source of the region it was parsed in, for its line numbers.
        let mut service: Option<(Source<'_>, Spanned<RawService>)> = None;
        let mut raw_checks = Vec::new();
        let mut raw_routes = Vec::new();
        let mut raw_windows = Vec::new();
        let mut raw_hooks = Vec::new();
        for (src, part) in parts {
            raw_hooks.extend(part.on_switch.into_iter().map(|h| (src, h)));
            if service.is_none() {
                service = part.service.map(|s| (src, s));
            }
            raw_checks.extend(part.check.into_iter().map(|c| (src, c)));
            raw_routes.extend(part.route.into_iter().map(|r| (src, r)));
            raw_windows.extend(part.maintenance.into_iter().map(|w| (src, w)));
        }
        // A [service] that failed to deserialize is still there: do not also claim its checks
        // belong to nothing.
        let has_service_table = service.is_some() || mentions_service(&text);
        if !has_service_table {
            if raw_checks.is_empty() && raw_routes.is_empty() && !region_failed {
                self.report(path, 0, "no [service] table");
            }
            for (src, c) in &raw_checks {
                let message = format!(
                    "check \"{}\" belongs to no service: this file has no [service] table",
                    c.get_ref().name.get_ref()
                );
                self.report_at(src, c, message);
            }
            for (src, r) in &raw_routes {
                let message = format!(
                    "route \"{}\" belongs to no service: this file has no [service] table",
                    r.get_ref().id.get_ref()
                );
                self.report_at(src, r, message);
            }
        }

        let service_id = service
            .as_ref()
            .map_or_else(String::new, |(_, s)| s.get_ref().id.get_ref().clone());
        let check_count = raw_checks.len();
        let checks: Vec<CheckSpec> = raw_checks
            .into_iter()
            .filter_map(|(src, c)| self.validate_check(&src, c, &service_id, defaults))
            .collect();
        let routes: Vec<RouteSpec> = raw_routes
            .into_iter()
            .filter_map(|(src, r)| self.validate_route(&src, r, &service_id))
            .collect();
        // Counting primaries is only meaningful when every check made it through; otherwise
        // the problem is already reported and a second, derived complaint would mislead.
        let checks_complete = !region_failed && checks.len() == check_count;
        let window_count = raw_windows.len();
        let windows: Vec<Window> = raw_windows
            .into_iter()
            .filter_map(|(src, w)| self.validate_window(&src, w))
            .collect();
        let hook_count = raw_hooks.len();
        let hooks: Vec<WebhookSpec> = raw_hooks
            .into_iter()
            .enumerate()
            .filter_map(|(n, (src, h))| self.validate_webhook(&src, h, &service_id, n + 1))
            .collect();
        let (src, service) = service?;
        let mut spec = self.validate_service(&src, service, checks, routes, checks_complete)?;
        if windows.len() != window_count || hooks.len() != hook_count {
            return None;
        }
        spec.maintenance = windows;
        spec.on_switch = hooks;
        Some(spec)
    }

    fn validate_webhook(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawWebhook>,
        service: &str,
        n: usize,
    ) -> Option<WebhookSpec> {
        let line = source.line(raw.span());
        let raw = raw.into_inner();
        let mut ok = true;
        let id = match &raw.id {
            Some(id) => {
                ok &= self.identifier(source, "webhook id", id);
                ok &= self.unique(source, Unique::Webhook, id);
                id.get_ref().clone()
            }
            None => format!("{service}-{n}"),
        };
        let url = match Url::parse(raw.url.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
            _ => {
                let message = format!(
                    "on_switch url: \"{}\" is not an absolute http(s) URL",
                    raw.url.get_ref()
                );
                self.report_at(source, &raw.url, message);
                None
            }
        };
        let method = raw
            .method
            .as_ref()
            .map_or_else(|| "POST".to_string(), |m| m.get_ref().to_ascii_uppercase());
        if hyper::Method::from_bytes(method.as_bytes()).is_err() {
            self.report(
                source.path,
                line,
                format!("on_switch method: \"{method}\" is not an HTTP method"),
            );
            ok = false;
        }
        let mut headers = Vec::new();
        for (name, value) in raw.headers {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.report_at(
                    source,
                    &value,
                    format!("on_switch headers: \"{name}\" is not a valid header name"),
                );
                ok = false;
            }
            for var in webhook::env_refs(value.get_ref()) {
                if std::env::var(var).is_err() {
                    // Checked at load so a missing secret shows up in `switchboard check`, not
                    // in the middle of an outage; its value is never read into the config.
                    let message = format!("on_switch headers: {name} needs environment variable {var}, which is not set");
                    self.report_at(source, &value, message);
                    ok = false;
                }
            }
            headers.push((name, value.into_inner()));
        }
        if let Some(body) = &raw.body {
            let unknown = webhook::unknown_placeholders(body.get_ref());
            if !unknown.is_empty() {
                let message = format!(
                    "on_switch body: unknown placeholder(s) {}; known: {}",
                    unknown.join(", "),
                    webhook::PLACEHOLDERS.join(", ")
                );
                self.report_at(source, body, message);
                ok = false;
            }
        }
        let timeout = match &raw.timeout {
            None => Some(Duration::from_secs(10)),
            Some(t) => self.duration(source, "timeout", Some(t), false),
        };
        (ok && url.is_some() && timeout.is_some()).then(|| WebhookSpec {
            id,
            url: url.expect("checked"),
            method,
            headers,
            body: raw.body.map(Spanned::into_inner),
            timeout: timeout.expect("checked"),
        })
    }

    fn validate_window(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawMaintenance>,
    ) -> Option<Window> {
        let line = source.line(raw.span());
        let raw = raw.into_inner();
        let duration = self.duration(source, "duration", Some(&raw.duration), false);
        let schedule = match (&raw.start, &raw.cron) {
            (Some(start), None) => match humantime::parse_rfc3339_weak(start.get_ref()) {
                Ok(t) => {
                    let ms = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    Some(Schedule::Once(Timestamp(ms)))
                }
                Err(_) => {
                    let message = format!(
                        "maintenance start: \"{}\" is not a time such as 2026-12-05T02:00:00Z",
                        start.get_ref()
                    );
                    self.report_at(source, start, message);
                    None
                }
            },
            (None, Some(cron)) => match Cron::parse(cron.get_ref()) {
                Ok(c) => Some(Schedule::Cron(c)),
                Err(e) => {
                    self.report_at(source, cron, format!("maintenance cron: {e}"));
                    None
                }
            },
            _ => {
                self.report(
                    source.path,
                    line,
                    "a [[maintenance]] window needs exactly one of `start` (one-off) or `cron` (recurring)",
                );
                None
            }
        };
        Some(Window {
            schedule: schedule?,
            duration: duration?,
            reason: raw
                .reason
                .unwrap_or_else(|| "planned maintenance".to_string()),
        })
    }

    fn validate_service(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawService>,
        checks: Vec<CheckSpec>,
        routes: Vec<RouteSpec>,
        checks_complete: bool,
    ) -> Option<ServiceSpec> {
        let table_line = source.line(raw.span());
        let raw = raw.into_inner();
        let mut ok = self.identifier(source, "service id", &raw.id);
        ok &= self.unique(source, Unique::Service, &raw.id);
        let id = raw.id.into_inner();
        let primaries = checks.iter().filter(|c| c.role == Role::Primary).count();
        if checks_complete && primaries == 0 {
            self.report(
                source.path,
                table_line,
                format!("service \"{id}\" has no primary check"),
            );
            ok = false;
        }

        let failover_when = match &raw.failover_when {
            None => Some(FailoverWhen::Any),
            Some(f) => self.failover_when(source, f, primaries, checks_complete),
        };
        let failback = match raw.failback.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("auto") => Some(Failback::Auto),
            Some("manual") => Some(Failback::Manual),
            Some(other) => {
                let message = format!("failback must be \"auto\" or \"manual\", not \"{other}\"");
                if let Some(f) = &raw.failback {
                    self.report_at(source, f, message);
                }
                None
            }
        };
        let recovery_hold = match &raw.recovery_hold {
            None => Some(DEFAULT_RECOVERY_HOLD),
            // Zero is a deliberate choice here: fail back as soon as the primary is healthy.
            Some(r) => self.duration(source, "recovery_hold", Some(r), true),
        };
        let max_failovers = match &raw.max_failovers {
            None => Some(DEFAULT_MAX_FAILOVERS),
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(n) => Some(n),
                Err(_) => {
                    let v = *m.get_ref();
                    self.report_at(
                        source,
                        m,
                        format!("max_failovers must be 0 or more, not {v}"),
                    );
                    None
                }
            },
        };
        let flap_window = match &raw.flap_window {
            None => Some(DEFAULT_FLAP_WINDOW),
            Some(r) => self.duration(source, "flap_window", Some(r), false),
        };
        let maintenance_side = match raw.maintenance_route.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("backup") => Some(Side::Backup),
            Some("primary") => Some(Side::Primary),
            Some(other) => {
                let message =
                    format!("maintenance_route must be \"backup\" or \"primary\", not \"{other}\"");
                if let Some(f) = &raw.maintenance_route {
                    self.report_at(source, f, message);
                }
                None
            }
        };
        let targets = raw.drill_targets.as_ref();
        let drill_switch = match targets.and_then(|t| t.switch.as_ref()) {
            None => Some(crate::config::DrillTargets::default().switch),
            Some(r) => self.duration(source, "drill_targets.switch", Some(r), false),
        };
        let drill_notify = match targets.and_then(|t| t.notify.as_ref()) {
            None => Some(crate::config::DrillTargets::default().notify),
            Some(r) => self.duration(source, "drill_targets.notify", Some(r), false),
        };
        let customer_delay = match &raw.customer_delay {
            None => Some(None),
            Some(r) => self
                .duration(source, "customer_delay", Some(r), true)
                .map(Some),
        };
        if !ok {
            return None;
        }
        Some(ServiceSpec {
            customer_delay: customer_delay?,
            drill_targets: crate::config::DrillTargets {
                switch: drill_switch?,
                notify: drill_notify?,
            },
            max_failovers: max_failovers?,
            flap_window: flap_window?,
            maintenance_side: maintenance_side?,
            maintenance: Vec::new(),
            on_switch: Vec::new(),
            name: raw.name.unwrap_or_else(|| id.clone()),
            id,
            runbook: raw.runbook,
            statuspage_component: raw.statuspage_component,
            failover_when: failover_when?,
            failback: failback?,
            recovery_hold: recovery_hold?,
            checks,
            routes,
            source: source.path.to_path_buf(),
        })
    }

    fn failover_when(
        &mut self,
        source: &Source<'_>,
        raw: &Spanned<String>,
        primaries: usize,
        checks_complete: bool,
    ) -> Option<FailoverWhen> {
        let text = raw.get_ref().trim();
        let parsed = match text {
            "any" => return Some(FailoverWhen::Any),
            "all" => return Some(FailoverWhen::All),
            _ => text.split_once(" of ").and_then(|(k, n)| {
                Some((k.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
            }),
        };
        let message = match parsed {
            None => format!(
                "failover_when must be \"any\", \"all\" or \"k of n\" (such as \"2 of 3\"), not \"{text}\""
            ),
            Some((0, _)) => format!("failover_when \"{text}\": k must be at least 1"),
            Some((k, n)) if k > n => {
                format!("failover_when \"{text}\": k ({k}) is larger than n ({n})")
            }
            Some((_, n)) if checks_complete && n as usize != primaries => format!(
                "failover_when \"{text}\": n ({n}) must equal the number of primary checks ({primaries})"
            ),
            Some((k, _)) => return Some(FailoverWhen::AtLeast(k)),
        };
        self.report_at(source, raw, message);
        None
    }

    fn validate_check(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawCheck>,
        service: &str,
        defaults: &Defaults,
    ) -> Option<CheckSpec> {
        let raw = raw.into_inner();
        let mut ok = self.identifier(source, "check name", &raw.name);
        ok &= self.unique(source, Unique::Check, &raw.name);

        let role = match raw.role.as_ref().map(|r| r.get_ref().as_str()) {
            None | Some("primary") => Some(Role::Primary),
            Some("backup") => Some(Role::Backup),
            Some(other) => {
                let message = format!("role must be \"primary\" or \"backup\", not \"{other}\"");
                if let Some(r) = &raw.role {
                    self.report_at(source, r, message);
                }
                None
            }
        };
        let kind = raw.kind.as_ref().map_or("http", |k| k.get_ref().as_str());
        if !matches!(kind, "http" | "steps" | "tcp" | "tls" | "smtp" | "dns") {
            if let Some(k) = &raw.kind {
                let message = format!(
                    "kind \"{kind}\" is not one of \"http\", \"steps\", \"tcp\", \"tls\", \"smtp\", \"dns\""
                );
                self.report_at(source, k, message);
            }
            ok = false;
        }
        let http_kind = matches!(kind, "http" | "steps");
        // A check with [[check.step]] is a multi-step HTTP check, whether or not it says
        // kind = "steps"; its requests live in the steps, not on the check.
        let multi = http_kind && (kind == "steps" || !raw.step.is_empty());
        if multi && raw.step.is_empty() {
            let message = format!(
                "check \"{}\" of kind \"steps\" needs at least one [[check.step]]",
                raw.name.get_ref()
            );
            self.report_at(source, &raw.name, message);
            ok = false;
        }
        if multi {
            let on_check: Vec<&str> = [
                ("url", raw.url.is_some()),
                ("method", raw.method.is_some()),
                ("headers", raw.headers.is_some()),
                ("body", raw.body.is_some()),
                ("follow_redirects", raw.follow_redirects.is_some()),
                ("max_redirects", raw.max_redirects.is_some()),
                ("conditions", !raw.conditions.is_empty()),
            ]
            .iter()
            .filter_map(|(f, set)| set.then_some(*f))
            .collect();
            if !on_check.is_empty() {
                let message = format!(
                    "check \"{}\" has steps: {} belong on each [[check.step]]",
                    raw.name.get_ref(),
                    on_check.join(", ")
                );
                self.report_at(source, &raw.name, message);
                ok = false;
            }
        }
        // Fields that belong to another kind are mistakes, not options to ignore.
        let misplaced: Vec<&str> = if http_kind {
            [
                ("target", raw.target.is_some()),
                ("send", raw.send.is_some()),
                ("expect", raw.expect.is_some()),
                ("tls", raw.tls.is_some()),
                ("starttls", raw.starttls.is_some()),
                ("ehlo", raw.ehlo.is_some()),
                ("query_name", raw.query_name.is_some()),
                ("query_type", raw.query_type.is_some()),
                ("expect_rcode", raw.expect_rcode.is_some()),
                ("expect_answers", raw.expect_answers.is_some()),
                ("expect_regex", raw.expect_regex.is_some()),
            ]
            .iter()
            .filter_map(|(f, set)| set.then_some(*f))
            .collect()
        } else {
            let dns = kind == "dns";
            [
                ("url", raw.url.is_some()),
                ("method", raw.method.is_some()),
                ("headers", raw.headers.is_some()),
                ("body", raw.body.is_some()),
                ("follow_redirects", raw.follow_redirects.is_some()),
                ("max_redirects", raw.max_redirects.is_some()),
                ("max_body_bytes", raw.max_body_bytes.is_some()),
                ("step", !raw.step.is_empty()),
                (
                    "expect_regex",
                    raw.expect_regex.is_some() && matches!(kind, "smtp" | "dns"),
                ),
                ("ca_file", dns && raw.ca_file.is_some()),
                ("server_name", dns && raw.server_name.is_some()),
                ("ip_version", dns && raw.ip_version.is_some()),
            ]
            .iter()
            .filter_map(|(f, set)| set.then_some(*f))
            .collect()
        };
        if !misplaced.is_empty() {
            let message = format!(
                "check \"{}\" of kind \"{kind}\" cannot have {}",
                raw.name.get_ref(),
                misplaced.join(", ")
            );
            self.report_at(source, &raw.name, message);
            ok = false;
        }
        let url = match (&raw.url, http_kind) {
            (Some(u), true) => match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
                Ok(_) => {
                    let message =
                        format!("url: \"{}\" is not an http:// or https:// URL", u.get_ref());
                    self.report_at(source, u, message);
                    None
                }
                Err(e) => {
                    let message = format!("url: \"{}\" is not a valid URL: {e}", u.get_ref());
                    self.report_at(source, u, message);
                    None
                }
            },
            (None, true) if multi => None,
            (None, true) => {
                let message = format!("check \"{}\" needs a url", raw.name.get_ref());
                self.report_at(source, &raw.name, message);
                None
            }
            (_, false) => None,
        };
        let target = match (&raw.target, http_kind) {
            (Some(t), false) => match split_host_port(t.get_ref()) {
                Some(hp) => Some(hp),
                None => {
                    let message = format!(
                        "target: \"{}\" is not host:port, such as mail.example.com:25",
                        t.get_ref()
                    );
                    self.report_at(source, t, message);
                    None
                }
            },
            (None, false) => {
                let message = format!(
                    "check \"{}\" of kind \"{kind}\" needs a target (host:port)",
                    raw.name.get_ref()
                );
                self.report_at(source, &raw.name, message);
                None
            }
            (_, true) => None,
        };
        let method = match &raw.method {
            None => Some("GET".to_string()),
            Some(m) => {
                let upper = m.get_ref().to_ascii_uppercase();
                if hyper::Method::from_bytes(upper.as_bytes()).is_ok() && !upper.is_empty() {
                    Some(upper)
                } else {
                    self.report_at(
                        source,
                        m,
                        format!("method: \"{}\" is not an HTTP method", m.get_ref()),
                    );
                    None
                }
            }
        };
        let mut headers = Vec::new();
        if let Some(h) = &raw.headers {
            for (name, value) in h.get_ref() {
                if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    self.report_at(
                        source,
                        h,
                        format!("headers: \"{name}\" is not a valid header name"),
                    );
                    ok = false;
                } else if hyper::header::HeaderValue::from_str(value).is_err() {
                    self.report_at(
                        source,
                        h,
                        format!("headers: the value of \"{name}\" is not a valid header value"),
                    );
                    ok = false;
                } else {
                    headers.push((name.clone(), value.clone()));
                }
            }
        }
        let max_redirects = match &raw.max_redirects {
            None => Some(DEFAULT_MAX_REDIRECTS),
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.report_at(
                        source,
                        m,
                        format!("max_redirects must be 0 or more, not {}", m.get_ref()),
                    );
                    None
                }
            },
        };
        let max_body_bytes = match &raw.max_body_bytes {
            None => Some(DEFAULT_MAX_BODY_BYTES),
            Some(m) => match usize::try_from(*m.get_ref()) {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    self.report_at(
                        source,
                        m,
                        format!("max_body_bytes must be at least 1, not {}", m.get_ref()),
                    );
                    None
                }
            },
        };

        let interval = self.duration(source, "interval", raw.interval.as_ref(), false);
        let timeout = self.duration(source, "timeout", raw.timeout.as_ref(), false);
        let retry_interval =
            self.duration(source, "retry_interval", raw.retry_interval.as_ref(), false);
        let failure_threshold =
            self.threshold(source, "failure_threshold", raw.failure_threshold.as_ref());
        let success_threshold =
            self.threshold(source, "success_threshold", raw.success_threshold.as_ref());
        ok &= raw.interval.is_none() || interval.is_some();
        ok &= raw.timeout.is_none() || timeout.is_some();
        ok &= raw.retry_interval.is_none() || retry_interval.is_some();
        ok &= raw.failure_threshold.is_none() || failure_threshold.is_some();
        ok &= raw.success_threshold.is_none() || success_threshold.is_some();
        let confirmation = self.confirmation(source, raw.confirmation.as_ref());
        ok &= raw.confirmation.is_none() || confirmation.is_some();
        let interval = interval.unwrap_or(defaults.interval);
        let timeout = timeout.unwrap_or(defaults.timeout);
        if timeout > interval {
            // When both come from [defaults] the problem was reported there, once.
            if let Some(at) = raw.timeout.as_ref().or(raw.interval.as_ref()) {
                self.report_at(source, at, timeout_message(timeout, interval));
                ok = false;
            }
        }

        let dns_server = match (&target, kind) {
            (Some((host, _)), "dns") => match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    // The server is given by address: resolving it would need DNS itself.
                    let message =
                        format!("target: the DNS server must be an IP address, not \"{host}\"");
                    self.report_at(source, &raw.name, message);
                    ok = false;
                    None
                }
            },
            _ => None,
        };
        let dns_type = match &raw.query_type {
            None => Some(1),
            Some(t) => match crate::lang::dns::type_number(t.get_ref()) {
                Some(n) => Some(n),
                None => {
                    let names: Vec<&str> =
                        crate::lang::dns::TYPES.iter().map(|(n, _)| *n).collect();
                    let message = format!(
                        "query_type \"{}\" is not one of {}",
                        t.get_ref(),
                        names.join(", ")
                    );
                    self.report_at(source, t, message);
                    ok = false;
                    None
                }
            },
        };
        let dns_rcode = match &raw.expect_rcode {
            None => Some("NOERROR".to_string()),
            Some(r)
                if crate::lang::dns::RCODES
                    .contains(&r.get_ref().to_ascii_uppercase().as_str()) =>
            {
                Some(r.get_ref().to_ascii_uppercase())
            }
            Some(r) => {
                let message = format!(
                    "expect_rcode \"{}\" is not one of {}",
                    r.get_ref(),
                    crate::lang::dns::RCODES.join(", ")
                );
                self.report_at(source, r, message);
                ok = false;
                None
            }
        };
        if kind == "dns" && raw.query_name.as_deref().is_none_or(str::is_empty) {
            let message = format!(
                "check \"{}\" of kind \"dns\" needs a query_name",
                raw.name.get_ref()
            );
            self.report_at(source, &raw.name, message);
            ok = false;
        }

        let mut conditions = Vec::new();
        for c in &raw.conditions {
            match Condition::parse(c.get_ref()) {
                Ok(condition) => conditions.push(condition),
                Err(e) => {
                    self.report_at(source, c, format!("condition \"{}\": {e}", c.get_ref()));
                    ok = false;
                }
            }
        }

        let net = self.validate_net(source, &raw);
        ok &= net.is_some();
        let expect_regex = match &raw.expect_regex {
            None => None,
            Some(r) => match regex::bytes::Regex::new(r.get_ref()) {
                Ok(re) => Some(re),
                Err(e) => {
                    let why = match &e {
                        regex::Error::Syntax(s) => s
                            .lines()
                            .last()
                            .unwrap_or(s)
                            .trim()
                            .trim_start_matches("error: ")
                            .to_string(),
                        other => other.to_string(),
                    };
                    let message = format!("expect_regex: bad regex `{}`: {why}", r.get_ref());
                    self.report_at(source, r, message);
                    ok = false;
                    None
                }
            },
        };
        let steps = if multi {
            let steps = self.validate_steps(source, &raw.step, timeout);
            ok &= steps.is_some();
            steps
        } else {
            None
        };

        if !ok {
            return None;
        }
        let net = net.unwrap_or_default();
        let follow = raw.follow_redirects.unwrap_or(true);
        Some(CheckSpec {
            name: raw.name.into_inner(),
            service: service.to_string(),
            role: role?,
            interval,
            timeout,
            retry_interval: retry_interval.unwrap_or(defaults.retry_interval),
            failure_threshold: failure_threshold.unwrap_or(defaults.failure_threshold),
            success_threshold: success_threshold.unwrap_or(defaults.success_threshold),
            confirmation: confirmation.unwrap_or(defaults.confirmation),
            conditions,
            kind: match kind {
                "http" | "steps" if multi => CheckKind::Steps(StepsCheck {
                    steps: steps?,
                    max_body_bytes: max_body_bytes?,
                    insecure: raw.insecure.unwrap_or(false),
                    net,
                }),
                "http" => CheckKind::Http(HttpCheck {
                    url: url?,
                    method: method?,
                    headers,
                    body: raw.body,
                    max_redirects: if follow { max_redirects? } else { 0 },
                    max_body_bytes: max_body_bytes?,
                    insecure: raw.insecure.unwrap_or(false),
                    net,
                }),
                "dns" => {
                    let (_, port) = target?;
                    CheckKind::Dns(DnsCheck {
                        server: dns_server?,
                        port,
                        name: raw.query_name.filter(|n| !n.is_empty())?,
                        qtype: dns_type?,
                        expect_rcode: dns_rcode?,
                        expect_answers: raw.expect_answers.unwrap_or_default(),
                    })
                }
                "smtp" => {
                    let (host, port) = target?;
                    CheckKind::Smtp(SmtpCheck {
                        host,
                        port,
                        starttls: raw.starttls.unwrap_or(true),
                        tls: raw.tls.unwrap_or(false),
                        insecure: raw.insecure.unwrap_or(false),
                        ehlo: raw
                            .ehlo
                            .unwrap_or_else(|| "switchboard.invalid".to_string()),
                        net,
                    })
                }
                _ => {
                    let (host, port) = target?;
                    CheckKind::Tcp(TcpCheck {
                        host,
                        port,
                        send: raw.send,
                        expect: raw.expect,
                        expect_regex,
                        tls: kind == "tls" || raw.tls.unwrap_or(false),
                        insecure: raw.insecure.unwrap_or(false),
                        net,
                    })
                }
            },
        })
    }

    /// `ip_version`, `server_name` and `ca_file` (read and parsed now, so a missing or broken
    /// bundle is a config error rather than a failing probe). `None` after reporting.
    fn validate_net(&mut self, source: &Source<'_>, raw: &RawCheck) -> Option<NetOptions> {
        let mut ok = true;
        let ip_version = match raw.ip_version.as_ref().map(|v| v.get_ref().as_str()) {
            None | Some("any") => IpVersion::Any,
            Some("4" | "ip4") => IpVersion::V4,
            Some("6" | "ip6") => IpVersion::V6,
            Some("prefer4") => IpVersion::Prefer4,
            Some("prefer6") => IpVersion::Prefer6,
            Some(other) => {
                let message = format!(
                    "ip_version must be \"any\", \"4\", \"6\", \"prefer4\" or \"prefer6\", not \"{other}\""
                );
                if let Some(v) = &raw.ip_version {
                    self.report_at(source, v, message);
                }
                ok = false;
                IpVersion::Any
            }
        };
        let server_name = match &raw.server_name {
            None => None,
            Some(n) => {
                if rustls::pki_types::ServerName::try_from(n.get_ref().as_str()).is_err() {
                    let message = format!(
                        "server_name: \"{}\" is not a DNS name or an IP address",
                        n.get_ref()
                    );
                    self.report_at(source, n, message);
                    ok = false;
                }
                Some(n.get_ref().clone())
            }
        };
        let ca = match &raw.ca_file {
            None => None,
            Some(f) if raw.insecure == Some(true) => {
                // Trusting a named CA and trusting anything cannot both be meant.
                let message = format!(
                    "ca_file: \"{}\" and insecure = true contradict each other; remove one",
                    f.get_ref()
                );
                self.report_at(source, f, message);
                ok = false;
                None
            }
            Some(f) => {
                let base = source.path.parent().unwrap_or(Path::new(""));
                let path = base.join(f.get_ref());
                match self.ca_bundle(&path) {
                    Ok(certs) => Some(super::CaBundle {
                        path,
                        certs: std::sync::Arc::new(certs),
                    }),
                    Err(why) => {
                        self.report_at(source, f, format!("ca_file: \"{}\" {why}", f.get_ref()));
                        ok = false;
                        None
                    }
                }
            }
        };
        ok.then_some(NetOptions {
            ip_version,
            server_name,
            ca,
        })
    }

    /// The DER certificates of a PEM file, each checked to be usable as a trust anchor.
    fn ca_bundle(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
        self.hasher.update(&bytes);
        let mut certs = Vec::new();
        for (n, cert) in rustls_pemfile::certs(&mut bytes.as_slice()).enumerate() {
            let cert = cert.map_err(|e| format!("is not valid PEM: {e}"))?;
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| format!("certificate {} is not a usable CA: {e}", n + 1))?;
            certs.push(cert.as_ref().to_vec());
        }
        if certs.is_empty() {
            return Err("holds no PEM certificate".to_string());
        }
        Ok(certs)
    }

    /// The steps of a multi-step check, in order. A variable must be extracted by an earlier
    /// step before a URL, header or body uses it. `None` after reporting.
    fn validate_steps(
        &mut self,
        source: &Source<'_>,
        raw: &[Spanned<RawStep>],
        check_timeout: Duration,
    ) -> Option<Vec<HttpStep>> {
        let mut ok = true;
        let mut steps = Vec::with_capacity(raw.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        // Variables set by the steps so far, and by which step.
        let mut defined: HashMap<String, String> = HashMap::new();
        for step in raw {
            let step = step.get_ref();
            let name = step.name.get_ref().clone();
            ok &= self.identifier(source, "step name", &step.name);
            let line = source.line(step.name.span());
            if let Some(first) = names.insert(name.clone(), line) {
                self.report_at(
                    source,
                    &step.name,
                    format!(
                        "duplicate step name \"{name}\" (first defined at {}:{first})",
                        source.path.display()
                    ),
                );
                ok = false;
            }
            let prefix = format!("step \"{name}\"");
            // Templates are checked for their variables here, and for their shape by filling
            // every variable with a stand-in value.
            let template = |this: &mut Self, field: &str, raw: &Spanned<String>| {
                match Template::parse(raw.get_ref()) {
                    Ok(t) => {
                        for var in t.vars() {
                            if !defined.contains_key(var) {
                                let later = if step.extract.contains_key(var) {
                                    " (this step extracts it only after its request)"
                                } else {
                                    ""
                                };
                                let message = format!(
                                    "{prefix}: {field} uses ${{{var}}}, which no earlier step extracts{later}"
                                );
                                this.report_at(source, raw, message);
                                return None;
                            }
                        }
                        Some(t)
                    }
                    Err(e) => {
                        this.report_at(source, raw, format!("{prefix}: {field}: {e}"));
                        None
                    }
                }
            };
            let stand_in: HashMap<String, String> = defined
                .keys()
                .map(|k| (k.clone(), "1".to_string()))
                .collect();
            let url = template(self, "url", &step.url).and_then(|t| {
                let filled = t
                    .render(&stand_in, crate::lang::template::Context::Url)
                    .unwrap_or_default();
                match Url::parse(&filled) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(t),
                    _ => {
                        let message = format!(
                            "{prefix}: url: \"{}\" is not an http:// or https:// URL",
                            step.url.get_ref()
                        );
                        self.report_at(source, &step.url, message);
                        None
                    }
                }
            });
            let mut headers = Vec::new();
            let mut headers_ok = true;
            for (hname, value) in &step.headers {
                if hyper::header::HeaderName::from_bytes(hname.as_bytes()).is_err() {
                    let message =
                        format!("{prefix}: headers: \"{hname}\" is not a valid header name");
                    self.report_at(source, value, message);
                    headers_ok = false;
                    continue;
                }
                let field = format!("header {hname}");
                match template(self, &field, value) {
                    Some(t) => {
                        let filled = t
                            .render(&stand_in, crate::lang::template::Context::Text)
                            .unwrap_or_default();
                        if hyper::header::HeaderValue::from_str(&filled).is_err() {
                            let message = format!(
                                "{prefix}: headers: the value of \"{hname}\" is not a valid header value"
                            );
                            self.report_at(source, value, message);
                            headers_ok = false;
                        }
                        headers.push((hname.clone(), t));
                    }
                    None => headers_ok = false,
                }
            }
            let body = match &step.body {
                None => Some(None),
                Some(b) => template(self, "body", b).map(Some),
            };
            let method = match &step.method {
                None => Some("GET".to_string()),
                Some(m) => {
                    let upper = m.get_ref().to_ascii_uppercase();
                    if hyper::Method::from_bytes(upper.as_bytes()).is_ok() && !upper.is_empty() {
                        Some(upper)
                    } else {
                        let message = format!(
                            "{prefix}: method: \"{}\" is not an HTTP method",
                            m.get_ref()
                        );
                        self.report_at(source, m, message);
                        None
                    }
                }
            };
            let max_redirects = match &step.max_redirects {
                None => Some(DEFAULT_MAX_REDIRECTS),
                Some(m) => match u32::try_from(*m.get_ref()) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        let message = format!(
                            "{prefix}: max_redirects must be 0 or more, not {}",
                            m.get_ref()
                        );
                        self.report_at(source, m, message);
                        None
                    }
                },
            };
            let timeout = match &step.timeout {
                None => Some(None),
                Some(t) => {
                    match self.duration(source, &format!("{prefix}: timeout"), Some(t), false) {
                        Some(d) if d > check_timeout => {
                            let message = format!(
                                "{prefix}: timeout ({}) is longer than the check's timeout ({})",
                                humantime::format_duration(d),
                                humantime::format_duration(check_timeout)
                            );
                            self.report_at(source, t, message);
                            None
                        }
                        Some(d) => Some(Some(d)),
                        None => None,
                    }
                }
            };
            let mut conditions = Vec::new();
            let mut conditions_ok = true;
            for c in &step.conditions {
                match Condition::parse(c.get_ref()) {
                    Ok(condition) => conditions.push(condition),
                    Err(e) => {
                        let message = format!("{prefix}: condition \"{}\": {e}", c.get_ref());
                        self.report_at(source, c, message);
                        conditions_ok = false;
                    }
                }
            }
            let mut extract = Vec::new();
            let mut extract_ok = true;
            for (var, text) in &step.extract {
                match Extraction::parse(var, text.get_ref()) {
                    Ok(x) => extract.push(x),
                    Err(e) => {
                        self.report_at(source, text, format!("{prefix}: extract {var}: {e}"));
                        extract_ok = false;
                    }
                }
                defined.insert(var.clone(), name.clone());
            }
            // Extractions run in the order written; BTreeMap sorted them by name, so put
            // them back in file order.
            extract.sort_by_key(|x| step.extract.get(&x.var).map_or(0, |s| s.span().start));
            match (url, body, method, max_redirects, timeout) {
                (Some(url), Some(body), Some(method), Some(max_redirects), Some(timeout))
                    if headers_ok && conditions_ok && extract_ok =>
                {
                    steps.push(HttpStep {
                        name,
                        url,
                        method,
                        headers,
                        body,
                        max_redirects: if step.follow_redirects.unwrap_or(true) {
                            max_redirects
                        } else {
                            0
                        },
                        timeout,
                        conditions,
                        extract,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(steps)
    }

    fn validate_route(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawRoute>,
        service: &str,
    ) -> Option<RouteSpec> {
        let raw = raw.into_inner();
        let mut ok = self.identifier(source, "route id", &raw.id);
        ok &= self.unique(source, Unique::Route, &raw.id);
        let mut targets = Vec::new();
        for (field, target) in [("primary", &raw.primary), ("backup", &raw.backup)] {
            match route_target(target.get_ref()) {
                Ok(normalized) => targets.push(normalized),
                Err(why) => {
                    self.report_at(
                        source,
                        target,
                        format!("{field}: \"{}\" {why}", target.get_ref()),
                    );
                    ok = false;
                }
            }
        }
        let (Some(backup), Some(primary)) = (targets.pop(), targets.pop()) else {
            return None;
        };
        ok.then(|| RouteSpec {
            id: raw.id.into_inner(),
            service: service.to_string(),
            primary,
            backup,
        })
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

/// The main file's settings, each `None` when invalid (already reported).
struct Main {
    probes_dir: PathBuf,
    probes_line: usize,
    server: Option<ServerConfig>,
    storage: StorageConfig,
    email: Option<EmailConfig>,
    statuspage_push: Option<Option<StatuspagePushConfig>>,
    chat: Option<Option<ChatConfig>>,
    audiences: Audiences,
    status_page: StatusPageConfig,
    auth: AuthConfig,
    defaults: Defaults,
}

/// The source (region) each table of the main file was parsed in, for its line numbers.
#[derive(Clone, Copy)]
struct MainSources<'a> {
    probes: Source<'a>,
    server: Source<'a>,
    storage: Source<'a>,
    email: Source<'a>,
    statuspage_push: Source<'a>,
    chat: Source<'a>,
    audiences: Source<'a>,
    defaults: Source<'a>,
}

/// The main file's regions as one `RawMain` (each table appears in exactly one region: the
/// whole-file parse rejects a table defined twice), with the region each came from.
fn merge_main<'a>(
    whole: Source<'a>,
    parts: Vec<(Source<'a>, RawMain)>,
) -> (RawMain, MainSources<'a>) {
    fn take<'a, T>(into: &mut Option<T>, from: Option<T>, at: &mut Source<'a>, src: Source<'a>) {
        if into.is_none() && from.is_some() {
            *into = from;
            *at = src;
        }
    }
    let mut raw = RawMain::default();
    let mut at = MainSources {
        probes: whole,
        server: whole,
        storage: whole,
        email: whole,
        statuspage_push: whole,
        chat: whole,
        audiences: whole,
        defaults: whole,
    };
    for (src, b) in parts {
        take(&mut raw.probes, b.probes, &mut at.probes, src);
        take(&mut raw.server, b.server, &mut at.server, src);
        take(&mut raw.email, b.email, &mut at.email, src);
        take(
            &mut raw.statuspage_push,
            b.statuspage_push,
            &mut at.statuspage_push,
            src,
        );
        take(&mut raw.chat, b.chat, &mut at.chat, src);
        take(&mut raw.audiences, b.audiences, &mut at.audiences, src);
        take(&mut raw.defaults, b.defaults, &mut at.defaults, src);
        take(&mut raw.storage, b.storage, &mut at.storage, src);
        raw.status_page = raw.status_page.or(b.status_page);
        raw.auth = raw.auth.or(b.auth);
    }
    (raw, at)
}

/// The default `[statuspage_push] api_base`.
pub const DEFAULT_STATUSPAGE_API: &str = "https://api.statuspage.io/v1";

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A URL with any password replaced, fit for an error message.
fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

fn timeout_message(timeout: Duration, interval: Duration) -> String {
    format!(
        "timeout ({}) is longer than interval ({})",
        humantime::format_duration(timeout),
        humantime::format_duration(interval)
    )
}

/// A route target customers are sent to: an absolute web page or a mail address.
/// Checks a route target and writes it in its one canonical form: an http(s) URL, `mailto:`
/// with an address (a bare address gets the prefix), `tel:` with a number, or `text:` with
/// instructions. Anything else is more likely a typo than a route.
fn route_target(target: &str) -> Result<String, &'static str> {
    let t = target.trim();
    let lower = t.to_ascii_lowercase();
    if let Some(number) = lower.strip_prefix("tel:") {
        let digits = number.chars().filter(char::is_ascii_digit).count();
        let allowed = number
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        return if allowed && digits >= 3 {
            Ok(t.to_string())
        } else {
            Err("is not a tel: phone number such as tel:+44 20 7946 0000")
        };
    }
    if let Some(text) = t.get(5..).filter(|_| lower.starts_with("text:")) {
        return if text.trim().is_empty() {
            Err("has no instructions after text:")
        } else {
            Ok(t.to_string())
        };
    }
    let address = lower
        .starts_with("mailto:")
        .then(|| &t[7..])
        .or_else(|| (!t.contains(['/', ':', ' ']) && t.contains('@')).then_some(t));
    if let Some(address) = address {
        return match address.parse::<lettre::Address>() {
            Ok(_) => Ok(format!("mailto:{address}")),
            Err(_) => Err("is not an e-mail address"),
        };
    }
    match Url::parse(t) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(t.to_string()),
        _ => Err("is not an http(s) URL, an e-mail address, tel: or text:"),
    }
}

/// `host:port` (IPv6 in brackets) split into its parts, if it is one.
fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && !host.contains(['/', ' '])).then(|| (host.to_string(), port))
}

/// Whether a file that failed to deserialize its [service] still has one, so its checks are
/// not reported as orphans on top of the real problem.
fn mentions_service(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("[service]") || l.starts_with("[ service ]") || l.starts_with("[service.")
    })
}

/// The key whose value starts at `offset`, read back from the text: serde's type errors
/// (`invalid type: integer `30`, expected a string`) do not name the field, and toml only
/// names it in a banner we do not print.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let prefix = text.get(..offset)?;
    let line = &prefix[prefix.rfind('\n').map_or(0, |i| i + 1)..];
    let (before, after) = line.rsplit_once('=')?;
    if !after.trim().is_empty() {
        return None;
    }
    // Inside an inline table the key is the last one before `=`.
    let key = before.rsplit([',', '{']).next()?.trim();
    (!key.is_empty()).then_some(key)
}

/// toml's message, minus its own location banner (we print `file:line:` ourselves).
fn toml_message(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

// ---------------------------------------------------------------------------------------
// Regions
// ---------------------------------------------------------------------------------------

/// Splits a TOML document into regions that each hold one top-level table (or one element
/// of an array of tables) with its sub-tables; the first region holds the root key/values.
/// Fails with the syntax error when the document is not TOML.
fn regions(text: &str) -> Result<Vec<Range<usize>>, toml::de::Error> {
    let items: BTreeMap<String, Spanned<ElementSpans>> = toml::from_str(text)?;
    let header_at = |span: &Range<usize>| text.as_bytes().get(span.start) == Some(&b'[');
    let mut starts: Vec<usize> = Vec::new();
    for item in items.values() {
        let elements = &item.get_ref().0;
        if elements.is_empty() {
            // A `[table]`: only headers start regions; an inline `key = { ... }` stays where it is.
            if header_at(&item.span()) {
                starts.push(item.span().start);
            }
        } else {
            starts.extend(elements.iter().filter(|s| header_at(s)).map(|s| s.start));
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let mut bounds = vec![0];
    bounds.extend(starts.into_iter().filter(|&s| s > 0));
    bounds.push(text.len());
    Ok(bounds.windows(2).map(|w| w[0]..w[1]).collect())
}

/// `text` with the line holding `offset` blanked, if that line is a plain key and what remains
/// is still TOML (a key whose value spans several lines cannot be removed this way).
fn without_line(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    if text[start..end].trim_start().starts_with('[') {
        // A table header: without it, its keys would land in the table above.
        return None;
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.extend(std::iter::repeat_n(' ', text[start..end].chars().count()));
    out.push_str(&text[end..]);
    out.parse::<toml::Table>().is_ok().then_some(out)
}

/// Spans of the elements when a top-level value is an array; empty otherwise. Lets one pass
/// over the document find every `[[check]]` header without knowing the schema.
struct ElementSpans(Vec<Range<usize>>);

impl<'de> Deserialize<'de> for ElementSpans {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ElementSpans;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ElementSpans, A::Error> {
                let mut spans = Vec::new();
                while let Some(e) = seq.next_element::<Spanned<IgnoredAny>>()? {
                    spans.push(e.span());
                }
                Ok(ElementSpans(spans))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ElementSpans, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<ElementSpans, E> {
                Ok(ElementSpans(Vec::new()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A domain name fit for the right-hand side of a Message-ID: dot-separated labels of
/// letters, digits and '-'.
fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_split_at_top_level_headers_only() {
        let text = "probes = \"p\"\n[server]\nlisten = \"x\"\n[[check]]\nname = \"a\"\n[check.headers]\nA = \"b\"\n[[check]]\nname = \"c\"\ninline = { a = 1 }\n";
        let got: Vec<&str> = regions(text)
            .expect("valid TOML")
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(
            got,
            [
                "probes = \"p\"\n",
                "[server]\nlisten = \"x\"\n",
                "[[check]]\nname = \"a\"\n[check.headers]\nA = \"b\"\n",
                "[[check]]\nname = \"c\"\ninline = { a = 1 }\n",
            ]
        );
    }

    /// What the loader reported before `LineIndex`: the newlines before the offset, plus one.
    fn counted_line(text: &str, offset: usize) -> usize {
        text.as_bytes()[..offset.min(text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    #[test]
    fn line_index_gives_the_same_line_as_counting_newlines_at_every_offset() {
        let texts = [
            "",
            "\n",
            "a",
            "a = 1\n[x]\nb = 2\n",
            "\n\n[[check]]\nname = \"é\"\r\nurl = \"x\"",
        ];
        for text in texts {
            let index = LineIndex::new(text);
            // Past the end counts as the end.
            for offset in 0..text.len() + 3 {
                assert_eq!(
                    index.line(offset),
                    counted_line(text, offset),
                    "{text:?} at {offset}"
                );
            }
        }
    }

    /// Every region is parsed as its own text, so the parser sees each byte of a file about
    /// twice (once whole, to find the regions; once in its region) however many checks it
    /// holds. Blanking the rest of the file for each region made it see the file once per
    /// check: 10,000 checks in one file took minutes. Counted, not timed.
    #[test]
    fn loading_parses_each_byte_a_bounded_number_of_times_however_many_checks() {
        for n in [10usize, 1_000, 4_000] {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(dir.path().join("probes")).expect("mkdir");
            let main = "probes = \"probes\"\n[server]\nlisten = \"127.0.0.1:9898\"\n";
            std::fs::write(dir.path().join("switchboard.toml"), main).expect("write");
            let mut body = String::from("[service]\nid = \"big\"\n");
            for i in 0..n {
                body.push_str(&format!(
                    "\n[[check]]\nname = \"c{i}\"\nurl = \"http://127.0.0.1/{i}\"\nconditions = [\"[STATUS] == 200\"]\n"
                ));
            }
            std::fs::write(dir.path().join("probes/big.toml"), &body).expect("write");
            let mut loader = Loader::default();
            let config = loader
                .load(&dir.path().join("switchboard.toml"))
                .expect("valid");
            assert_eq!(config.checks().count(), n);
            assert!(loader.diagnostics.is_empty(), "{:?}", loader.diagnostics);
            let size = main.len() + body.len();
            assert!(
                loader.parsed_bytes <= 2 * size,
                "{n} checks: {} bytes parsed for {size} bytes of configuration",
                loader.parsed_bytes
            );
        }
    }
}
