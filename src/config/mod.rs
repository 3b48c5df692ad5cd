//! The validated configuration: what the rest of Switchboard reads, already checked.
//!
//! Loading happens in two steps (see `raw`): serde structs that mirror the TOML exactly and
//! reject unknown fields, then `validate`, which resolves defaults, parses URLs and
//! conditions and collects *every* problem as a `file:line: message` diagnostic.

pub mod audit;
pub mod diff;
mod files;
mod net;
mod policy;
pub mod raw;
mod vendor;
pub mod vote;

pub use audit::{AuditConfig, AuditKey};
pub use files::{ConfigFiles, FileRead};
pub use net::IpRange;
pub use policy::{Confirmation, Side, Thresholds, NOISE_MAX_EXTRA};
pub use vendor::{Impact, VendorFormat};

use crate::lang::condition::Condition;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// A fully validated configuration. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Config {
    /// The main file it was loaded from.
    pub source: PathBuf,
    /// Directory of service files, resolved against the main file's directory.
    pub probes_dir: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub email: EmailConfig,
    /// `[statuspage_push]`, when configured.
    pub statuspage_push: Option<StatuspagePushConfig>,
    /// `[chat]`, when configured.
    pub chat: Option<ChatConfig>,
    /// `[cluster]`: several nodes coordinating through etcd; `None` is one node alone.
    pub cluster: Option<ClusterConfig>,
    pub audiences: Audiences,
    pub status_page: StatusPageConfig,
    pub auth: AuthConfig,
    pub defaults: Defaults,
    /// `[vantage]`: the suspect-vantage guard (`crate::vantage`).
    pub vantage: VantageConfig,
    /// Shared, so the daemon's per-service state can point at its spec without a copy.
    pub services: Vec<std::sync::Arc<ServiceSpec>>,
    /// `[audit]`: the chain's key and anchors.
    pub audit: AuditConfig,
    /// SHA-256 (hex) of every file that went into this config, in load order.
    pub version: String,
    /// Those files, byte for byte (the configuration history stores them).
    pub files: std::sync::Arc<ConfigFiles>,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base URL used in messages and printed links; defaults to `http://{listen}`.
    pub public_url: String,
    /// Probes in flight at once across all checks: protects the machine (and the targets)
    /// when thousands of checks are due together.
    pub max_concurrent_probes: u32,
    /// Reverse proxies whose `client_ip_header` is believed: behind one, every request comes
    /// from the proxy, and per-client limits must key on the address it reports instead.
    pub trusted_proxies: Vec<IpRange>,
    /// The header a trusted proxy puts the client's address in (`X-Forwarded-For` style:
    /// a comma-separated list, the nearest hop last).
    pub client_ip_header: String,
}

#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// SQLite file, resolved against the main file's directory.
    pub path: PathBuf,
    /// Where the spill file goes when it cannot be written beside the database (the disk
    /// being full is why there is one): ideally another file system. `None`: only the
    /// system temp directory is tried after the database's own.
    pub spill_dir: Option<PathBuf>,
    /// How long a stopping daemon keeps retrying transitions the store refused before it
    /// writes them to the spill file. Default 10 s.
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// RFC 5322 mailbox, e.g. `Support Status <status@example.com>`.
    pub from: String,
    /// `runbook_base_url`, ending in `/`: relative `runbook` paths become links under it.
    pub runbook_base_url: Option<String>,
    pub transport: EmailTransport,
    /// A second relay (`backup_smtp_url`), tried for a message the first one did not take.
    pub backup_smtp_url: Option<String>,
    /// File holding the SMTP password; read at start, never stored here.
    pub password_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for the relays besides the public roots, for a
    /// relay with a private CA.
    pub tls_ca_file: Option<PathBuf>,
    /// Time to reach a ready SMTP session: TCP connect, banner, EHLO, TLS and AUTH.
    pub connect_timeout: Duration,
    /// Time allowed for each SMTP command's reply once connected.
    pub command_timeout: Duration,
    /// An announcement (any channel) still failing after this long is given up.
    pub give_up_after: Duration,
    /// Directory whose templates override the built-in ones (`templates`).
    pub templates: Option<PathBuf>,
    /// At most one e-mail per audience per this window (`group_window`); zero: every change
    /// alone, at once.
    pub group_window: Duration,
    /// How long a change must last before customers hear of it (`customer_delay`), unless
    /// the service sets its own.
    pub customer_delay: Duration,
    /// The domain of Message-IDs (`message_id_domain`); `None`: the domain of `from`.
    pub message_id_domain: Option<String>,
}

/// `[email] group_window` when not set: Alertmanager's `group_wait` default.
pub const DEFAULT_GROUP_WINDOW: Duration = Duration::from_secs(30);
/// `[email] customer_delay` when not set.
pub const DEFAULT_CUSTOMER_DELAY: Duration = Duration::from_secs(120);

impl EmailConfig {
    /// The link on-call messages give for a service's `runbook`: an http(s) URL as it is, a
    /// relative path (`runbooks/x.md`) resolved against `runbook_base_url`. `None` for a
    /// relative path without a base: a relative link in an e-mail leads nowhere.
    pub fn runbook_url(&self, runbook: &str) -> Option<String> {
        let lower = runbook.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            return Some(runbook.to_owned());
        }
        let base = url::Url::parse(self.runbook_base_url.as_deref()?).ok()?;
        base.join(runbook.trim_start_matches('/'))
            .ok()
            .map(String::from)
    }

    /// `from` and `transport` with every other setting at its default.
    pub fn new(from: &str, transport: EmailTransport) -> EmailConfig {
        EmailConfig {
            from: from.to_string(),
            runbook_base_url: None,
            transport,
            backup_smtp_url: None,
            password_file: None,
            tls_ca_file: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            give_up_after: Duration::from_secs(24 * 3600),
            templates: None,
            group_window: DEFAULT_GROUP_WINDOW,
            customer_delay: DEFAULT_CUSTOMER_DELAY,
            message_id_domain: None,
        }
    }

    /// The domain Message-IDs are written under: `message_id_domain`, else the domain of
    /// `from`, else `localhost` (an address without a domain cannot pass validation, so
    /// that last case is only a safe default).
    pub fn message_id_domain(&self) -> String {
        if let Some(d) = &self.message_id_domain {
            return d.clone();
        }
        self.from
            .parse::<lettre::message::Mailbox>()
            .map(|m| m.email.domain().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned())
    }
}

/// `[statuspage_push]`: the Atlassian Statuspage management API.
#[derive(Clone, Debug, PartialEq)]
pub struct StatuspagePushConfig {
    pub page_id: String,
    /// e.g. `https://api.statuspage.io/v1`, without a trailing slash.
    pub api_base: String,
    /// The environment variable holding the API key (read at send time).
    pub api_key_env: String,
}

/// `[cluster]`: this node in a cluster of Switchboards coordinating through etcd.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// This node's unique name (also its vantage name).
    pub name: String,
    /// etcd client URLs, without credentials.
    pub etcd: Vec<String>,
    /// Key prefix of this cluster, e.g. `/switchboard`.
    pub prefix: String,
    /// The leader key's lease.
    pub lease_ttl: Duration,
    /// How peers and the CLI reach this node.
    pub advertise_url: String,
    /// etcd user, when etcd authenticates.
    pub user: Option<String>,
    /// Environment variable holding the etcd password (read at start, never stored here).
    pub password_env: String,
    /// File holding the etcd password, instead of the variable.
    pub password_file: Option<PathBuf>,
    /// CA bundle for `https://` endpoints.
    pub ca_file: Option<PathBuf>,
}

/// `[chat]`: Slack (or a Slack-compatible receiver): an incoming webhook, or a bot that keeps
/// one thread per incident.
#[derive(Clone, PartialEq)]
pub struct ChatConfig {
    /// An incoming webhook: a secret (anyone holding it can post), so `Debug` does not show
    /// it. `None` when a bot posts instead.
    pub webhook_url: Option<String>,
    /// A bot posting with `chat.postMessage`, each incident's messages in one thread.
    pub bot: Option<SlackBot>,
}

impl fmt::Debug for ChatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatConfig")
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(|_| "<redacted>"),
            )
            .field("bot", &self.bot)
            .finish()
    }
}

/// A Slack bot: where it posts and where its token is read from (at send time, so the token
/// is never held in the config, logged or stored).
#[derive(Clone, Debug, PartialEq)]
pub struct SlackBot {
    /// The channel id, e.g. `C0123456789`.
    pub channel: String,
    pub token: TokenSource,
    /// e.g. `https://slack.com/api`, without a trailing slash.
    pub api_base: String,
}

/// Where a secret is read from when it is needed.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenSource {
    /// An environment variable's name.
    Env(String),
    /// A file (resolved against the directory of the file that names it); surrounding
    /// whitespace is ignored.
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq)]
pub enum EmailTransport {
    /// Write one `.eml` file per message into this directory.
    File { dir: PathBuf },
    /// `smtp://host:port` (plain; `?tls=starttls` to upgrade) or `smtps://` (implicit TLS).
    /// The password comes from `SWITCHBOARD_SMTP_PASSWORD`, never from the file.
    Smtp { url: String },
}

#[derive(Clone, Debug, Default)]
pub struct Audiences {
    pub oncall: Vec<String>,
    pub customers: Vec<String>,
    pub drill: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct StatusPageConfig {
    pub title: String,
}

/// Control-API authentication.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthConfig {
    /// Token store (`[auth] tokens_file`), resolved against the main file's directory.
    /// `None` when not configured.
    pub tokens_file: Option<PathBuf>,
}

/// `[vantage]`: when this vantage suspects its own network (`crate::vantage::Guard`).
#[derive(Clone, Debug, PartialEq)]
pub struct VantageConfig {
    /// `guard = true` (default): judge at all. It only ever judges with at least `min_hosts`
    /// distinct hosts watched.
    pub guard: bool,
    /// Distinct hosts probed before the guard judges. Default 3.
    pub min_hosts: usize,
    /// More than this share of the probed hosts failing at their latest probe makes the
    /// vantage suspect. Default 0.5 (most of them).
    pub failing_share: f64,
    /// How long a failing check waits at most for news of other hosts before it may be
    /// confirmed down anyway. Default 30s.
    pub evidence_wait: Duration,
}

impl Default for VantageConfig {
    fn default() -> Self {
        VantageConfig {
            guard: true,
            min_hosts: 3,
            failing_share: 0.5,
            evidence_wait: Duration::from_secs(30),
        }
    }
}

/// Values every check inherits unless it sets its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub interval: Duration,
    pub timeout: Duration,
    pub retry_interval: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub confirmation: Confirmation,
    /// The local address probes connect from (`source_address`); `None` lets the system
    /// choose.
    pub source_address: Option<std::net::IpAddr>,
    /// `quorum` and `min_vantages` for services that do not set their own.
    pub vote: crate::config::vote::Rule,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            retry_interval: Duration::from_secs(5),
            failure_threshold: 3,
            success_threshold: 2,
            confirmation: Confirmation::Adaptive,
            source_address: None,
            vote: crate::config::vote::Rule::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub id: String,
    pub name: String,
    pub runbook: Option<String>,
    /// This service's component on the pushed Statuspage page (`[statuspage_push]`).
    pub statuspage_component: Option<String>,
    pub failover_when: FailoverWhen,
    pub failback: Failback,
    pub recovery_hold: Duration,
    /// Automatic failovers allowed per `flap_window` before the backup is held (0: no limit).
    pub max_failovers: u32,
    pub flap_window: Duration,
    /// Where customers go during maintenance.
    pub maintenance_side: Side,
    /// Planned maintenance windows (`[[maintenance]]`).
    pub maintenance: Vec<crate::lang::window::Window>,
    /// Webhooks called when the service's routes switch (`[[on_switch]]`).
    pub on_switch: Vec<WebhookSpec>,
    /// Help Center articles that carry a notice while the service is on its backup
    /// (`[[on_switch]] kind = "zendesk_article"`).
    pub zendesk_articles: Vec<ZendeskArticleSpec>,
    pub checks: Vec<CheckSpec>,
    pub routes: Vec<RouteSpec>,
    /// What drills of this service are timed against (`drill_targets`).
    pub drill_targets: DrillTargets,
    /// This service's own `customer_delay`; `None`: `[email] customer_delay`.
    pub customer_delay: Option<Duration>,
    /// `quorum` and `min_vantages`: how the live vantages' verdicts on each check make the
    /// one verdict the failover machine hears (cluster mode; one vantage decides alone).
    pub vote: crate::config::vote::Rule,
    /// `corroborate`: the `vendor_status` checks (of any service) whose declared outage
    /// shortens the confirmation of this service's own failing checks.
    pub corroborate: Vec<String>,
    /// `public_vendor_words`: quote the corroborating vendor's words in the public incident
    /// (customers' messages and the status page) as well as in on-call's. Default false.
    pub public_vendor_words: bool,
    /// The service file it came from.
    pub source: PathBuf,
}

impl ServiceSpec {
    pub fn primary_checks(&self) -> impl Iterator<Item = &CheckSpec> {
        self.checks.iter().filter(|c| c.role == Role::Primary)
    }
    pub fn backup_checks(&self) -> impl Iterator<Item = &CheckSpec> {
        self.checks.iter().filter(|c| c.role == Role::Backup)
    }
}

/// Targets a drill's steps are checked against (`drill_targets = { switch, notify }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrillTargets {
    /// Decision, route switch, backup verification and revert, each within this.
    pub switch: Duration,
    /// E-mail accepted, status page updated, webhooks acknowledged, within this of the start.
    pub notify: Duration,
}

impl Default for DrillTargets {
    fn default() -> Self {
        DrillTargets {
            switch: Duration::from_secs(5),
            notify: Duration::from_secs(60),
        }
    }
}

/// When the service fails over, counted over its primary checks that are down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverWhen {
    Any,
    All,
    /// `k of n`: at least `k` primary checks down (`n` is the number written, checked against the count).
    AtLeast(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failback {
    Auto,
    Manual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Backup,
    /// A `vendor_status` check: it corroborates the services that name it and never counts
    /// as a primary or backup check, so it can never cause a failover by itself.
    Vendor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::Vendor => "vendor",
        }
    }
}

#[derive(Clone, Debug)]
pub struct CheckSpec {
    /// Unique across the whole configuration.
    pub name: String,
    pub service: String,
    pub role: Role,
    pub interval: Duration,
    pub timeout: Duration,
    pub retry_interval: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub confirmation: Confirmation,
    pub conditions: Vec<Condition>,
    pub kind: CheckKind,
}

impl CheckSpec {
    /// The thresholds `health` applies to this check's outcomes.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            failure: self.failure_threshold,
            success: self.success_threshold,
            adaptive: self.confirmation == Confirmation::Adaptive,
        }
    }

    /// The `instance` label: the target as written (URL for http).
    pub fn target(&self) -> String {
        match &self.kind {
            CheckKind::Http(h) => h.url.to_string(),
            // The first step's URL as written: the page the sequence starts from.
            CheckKind::Steps(s) => s
                .steps
                .first()
                .map_or_else(String::new, |step| step.url.text().to_string()),
            CheckKind::Tcp(t) => format!("{}:{}", host_port(&t.host), t.port),
            CheckKind::Smtp(m) => format!("smtp://{}:{}", host_port(&m.host), m.port),
            // The first page opened: where the customer's journey starts.
            CheckKind::Browser(b) => b
                .steps
                .iter()
                .find_map(|s| match &s.action {
                    BrowserAction::Open(url) => Some(url.to_string()),
                    _ => None,
                })
                .unwrap_or_default(),
            CheckKind::Dns(d) => format!(
                "dns://{}:{}/{}",
                host_port(&d.server.to_string()),
                d.port,
                d.name
            ),
            CheckKind::VendorStatus(v) => v.url.to_string(),
            // The intake address: what the round trip proves reachable.
            CheckKind::MailRoundtrip(m) => format!("mailto:{}", m.to),
            // Nothing is fetched; the URL jobs report to is what the check watches.
            CheckKind::Heartbeat(_) => format!("/api/v1/heartbeats/{}", self.name),
        }
    }
}

/// IPv6 literals are bracketed next to a port.
fn host_port(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[derive(Clone, Debug)]
pub enum CheckKind {
    Http(HttpCheck),
    /// A sequence of HTTP requests sharing a cookie jar (`[[check.step]]`).
    Steps(StepsCheck),
    /// `kind = "tcp"`, or `kind = "tls"` (a TCP check with `tls = true`).
    Tcp(TcpCheck),
    Smtp(SmtpCheck),
    Dns(DnsCheck),
    /// A vendor's public status feed (`kind = "vendor_status"`).
    VendorStatus(VendorStatusCheck),
    /// `kind = "browser"`: steps in a headless Chromium.
    Browser(BrowserCheck),
    /// A canary e-mail sent to the intake and confirmed arrived (`kind = "mail_roundtrip"`).
    MailRoundtrip(MailRoundtripCheck),
    /// Reported to by jobs (`kind = "heartbeat"`).
    Heartbeat(HeartbeatCheck),
}

impl CheckKind {
    /// `[defaults] source_address` for every connection of a check that names none of its
    /// own. A browser check has none to set (Chromium cannot bind its connections to a
    /// source address), nor has a heartbeat (it opens no connection).
    pub fn default_source_address(&mut self, from: std::net::IpAddr) {
        let nets: Vec<&mut NetOptions> = match self {
            CheckKind::Http(h) => vec![&mut h.net],
            CheckKind::Steps(s) => vec![&mut s.net],
            CheckKind::Tcp(t) => vec![&mut t.net],
            CheckKind::Smtp(m) => vec![&mut m.net],
            CheckKind::VendorStatus(v) => vec![&mut v.net],
            CheckKind::MailRoundtrip(m) => {
                let mut nets = vec![&mut m.smtp.net];
                match &mut m.confirm {
                    MailConfirm::Imap(i) => nets.push(&mut i.server.net),
                    MailConfirm::Search(s) => nets.push(&mut s.net),
                }
                nets
            }
            CheckKind::Dns(d) => {
                d.source_address.get_or_insert(from);
                vec![]
            }
            CheckKind::Browser(_) | CheckKind::Heartbeat(_) => vec![],
        };
        for net in nets {
            net.source_address.get_or_insert(from);
        }
    }

    /// The host this check probes, as its target names it: the URL's host, the `host` of
    /// tcp/tls/smtp, the DNS server's address, the mail intake's host, the first page of a
    /// browser check. `None` for a heartbeat, which probes nothing.
    pub fn host(&self) -> Option<String> {
        fn of_url(url: &str) -> Option<String> {
            let url = Url::parse(url).ok()?;
            Some(
                url.host_str()?
                    .trim_matches(['[', ']'])
                    .to_ascii_lowercase(),
            )
        }
        match self {
            CheckKind::Http(h) => of_url(h.url.as_str()),
            CheckKind::Steps(s) => s.steps.first().and_then(|step| of_url(step.url.text())),
            CheckKind::Tcp(t) => Some(t.host.to_ascii_lowercase()),
            CheckKind::Smtp(m) => Some(m.host.to_ascii_lowercase()),
            CheckKind::Dns(d) => Some(d.server.to_string()),
            CheckKind::VendorStatus(v) => of_url(v.url.as_str()),
            CheckKind::MailRoundtrip(m) => Some(m.smtp.host.to_ascii_lowercase()),
            CheckKind::Browser(b) => b.steps.iter().find_map(|s| match &s.action {
                BrowserAction::Open(url) => of_url(url.as_str()),
                _ => None,
            }),
            CheckKind::Heartbeat(_) => None,
        }
    }
}

/// A canary e-mail with a unique token, sent over SMTP and looked for until the timeout.
#[derive(Clone, Debug)]
pub struct MailRoundtripCheck {
    pub from: String,
    pub to: String,
    /// Every canary's subject starts with it (`[Switchboard canary]` by default).
    pub subject_prefix: String,
    /// How often arrival is looked for.
    pub poll_interval: Duration,
    pub smtp: MailServer,
    pub confirm: MailConfirm,
}

/// How a mail server connection is secured, as `[email] smtp_url` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailTls {
    /// Plain text: loopback and test servers only (credentials travel in clear).
    None,
    /// Upgrade with STARTTLS or fail.
    StartTls,
    /// TLS from the first byte (SMTPS 465, IMAPS 993).
    Implicit,
}

/// An SMTP or IMAP server with its credentials' source.
#[derive(Clone, Debug)]
pub struct MailServer {
    pub host: String,
    pub port: u16,
    pub tls: MailTls,
    pub user: Option<String>,
    /// Where the password is read at probe time; never the password itself.
    pub password: Option<Secret>,
    pub insecure: bool,
    pub net: NetOptions,
}

/// Where a secret is read from when it is needed. `Debug` shows the variable or path only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// The secret's value now: the variable's value, or the file's first line.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Secret::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok(text.lines().next().unwrap_or("").trim_end().to_string()),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            },
        }
    }
}

/// How arrival of the canary is confirmed.
#[derive(Clone, Debug)]
pub enum MailConfirm {
    Imap(ImapConfirm),
    Search(SearchConfirm),
}

#[derive(Clone, Debug)]
pub struct ImapConfirm {
    pub server: MailServer,
    pub mailbox: String,
    pub on_arrival: OnArrival,
}

/// What happens to a canary once it is seen in the mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnArrival {
    /// Flagged `\Deleted` and expunged by UID (`UID EXPUNGE`, so nothing else is expunged).
    Delete,
    /// Flagged `\Seen`.
    Seen,
    Keep,
}

/// An HTTP search for the token (a helpdesk's search API).
#[derive(Clone, Debug)]
pub struct SearchConfirm {
    /// With `${token}`.
    pub url: crate::lang::template::Template,
    pub headers: Vec<(String, crate::lang::template::Template)>,
    /// Environment variable sent as the `Authorization` header, read at probe time.
    pub authorization_env: Option<String>,
    /// What "found" means; all must hold.
    pub conditions: Vec<Condition>,
    pub max_body_bytes: usize,
    pub insecure: bool,
    pub net: NetOptions,
}

/// A check jobs report to: failed when no heartbeat came within `deadline + grace`.
#[derive(Clone, Debug)]
pub struct HeartbeatCheck {
    pub deadline: Duration,
    pub grace: Duration,
    /// Lowercase hex SHA-256 of the job's token; the token itself is never kept.
    pub token_sha256: String,
}

/// A vendor's public status feed, read and judged: the verdict is the worst impact the vendor
/// declares for the selected components, and the check fails when it reaches `impact`.
#[derive(Clone, Debug)]
pub struct VendorStatusCheck {
    pub format: VendorFormat,
    pub url: Url,
    /// Component, service or container names or ids to judge (case-insensitive names);
    /// empty: the whole page.
    pub components: Vec<String>,
    /// The check fails when the vendor declares at least this. Default `major`.
    pub impact: Impact,
    /// `gitlab_jobs`: fail when at least this many jobs are pending.
    pub max_pending: Option<u32>,
    /// `gitlab_jobs`: fail when a job has been running at least this long.
    pub max_running: Option<Duration>,
    /// Bytes of feed read at most; a longer feed is a failed outcome, not a truncated verdict.
    pub max_body_bytes: usize,
    pub insecure: bool,
    pub net: NetOptions,
}

/// A browser check: actions a headless Chromium takes on a page, in order. Succeeds when every
/// step does; the check's timeout bounds the whole run, the browser's start included.
#[derive(Clone, Debug)]
pub struct BrowserCheck {
    pub steps: Vec<BrowserStep>,
    /// `[browser]` of the main file, shared by every browser check.
    pub settings: std::sync::Arc<BrowserSettings>,
}

/// One action of a browser check.
#[derive(Clone, Debug)]
pub struct BrowserStep {
    /// Unique within its check (default `{n}-{action}`).
    pub name: String,
    pub action: BrowserAction,
    /// How long this step may wait; what is left of the check's timeout bounds it regardless.
    pub timeout: Option<Duration>,
}

/// What a browser step does.
#[derive(Clone, Debug, PartialEq)]
pub enum BrowserAction {
    /// Load a URL and wait for the page's load event.
    Open(Url),
    /// Wait until an element matches the CSS selector.
    WaitFor(String),
    /// Focus the element and type `value` into it (replacing what it held).
    Fill { selector: String, value: String },
    /// Click the middle of the element, as a mouse does.
    Click(String),
    /// Wait until `text` is in the page's visible text (or the element's, with a selector).
    ExpectText {
        text: String,
        selector: Option<String>,
    },
}

impl BrowserAction {
    /// The `action` name, as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            BrowserAction::Open(_) => "open",
            BrowserAction::WaitFor(_) => "wait_for",
            BrowserAction::Fill { .. } => "fill",
            BrowserAction::Click(_) => "click",
            BrowserAction::ExpectText { .. } => "expect_text",
        }
    }
}

/// `[browser]`: how browser checks run Chromium.
#[derive(Clone, Debug, PartialEq)]
pub struct BrowserSettings {
    /// The Chromium binary.
    pub chromium: PathBuf,
    /// Browsers running at once across all browser checks.
    pub max_concurrent: u32,
    /// Where each check's last failure screenshot is kept, as `{check}.png`.
    pub screenshot_dir: PathBuf,
}

impl BrowserSettings {
    /// The defaults, with the screenshot directory under `base` (the main file's directory).
    pub fn with_base(base: &Path) -> BrowserSettings {
        BrowserSettings {
            chromium: PathBuf::from("/usr/bin/chromium"),
            max_concurrent: 1,
            screenshot_dir: base.join("var/screenshots"),
        }
    }
}

/// One DNS query to a given server.
#[derive(Clone, Debug)]
pub struct DnsCheck {
    pub server: std::net::IpAddr,
    pub port: u16,
    pub name: String,
    /// Record type number (A = 1, AAAA = 28, ...).
    pub qtype: u16,
    /// Default `NOERROR`.
    pub expect_rcode: String,
    /// Each must be among the answers.
    pub expect_answers: Vec<String>,
    /// The local address to query from (`source_address`); `None` lets the system choose.
    pub source_address: Option<std::net::IpAddr>,
}

/// Connect (and optionally TLS, send, expect) to `host:port`.
#[derive(Clone, Debug)]
pub struct TcpCheck {
    pub host: String,
    pub port: u16,
    pub send: Option<String>,
    /// Text the reply must contain.
    pub expect: Option<String>,
    /// A regular expression the reply must match (`expect_regex`).
    /// Matched against the raw bytes (`(?-u)` is not needed for ASCII protocols).
    pub expect_regex: Option<regex::bytes::Regex>,
    pub tls: bool,
    pub insecure: bool,
    pub net: NetOptions,
}

/// Which address family a probe connects over when a name has both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpVersion {
    /// Every address, in the resolver's order (which honours gai.conf). The default.
    #[default]
    Any,
    /// IPv4 addresses only (`ip_version = "4"`).
    V4,
    /// IPv6 addresses only (`ip_version = "6"`).
    V6,
    /// IPv4 addresses first, IPv6 when there is none or none answers (`"prefer4"`).
    Prefer4,
    /// IPv6 addresses first, IPv4 when there is none or none answers (`"prefer6"`, what
    /// blackbox_exporter does by default with `preferred_ip_protocol: ip6`).
    Prefer6,
}

impl IpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            IpVersion::Any => "any",
            IpVersion::V4 => "4",
            IpVersion::V6 => "6",
            IpVersion::Prefer4 => "prefer4",
            IpVersion::Prefer6 => "prefer6",
        }
    }
}

/// Connection settings of the kinds that connect to a host: http, steps, tcp/tls, smtp.
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    pub ip_version: IpVersion,
    /// The TLS server name (SNI and certificate verification) instead of the host's.
    pub server_name: Option<String>,
    /// Trust exactly these CAs (`ca_file`) instead of the webpki roots.
    pub ca: Option<CaBundle>,
    /// The local address to connect from (`source_address`, or `[defaults]`'s); `None` lets
    /// the system choose.
    pub source_address: Option<std::net::IpAddr>,
}

/// CA certificates read from a PEM `ca_file` at load time.
#[derive(Clone, Debug)]
pub struct CaBundle {
    /// The file, resolved against the directory of the file that names it.
    pub path: PathBuf,
    /// DER certificates, shared by every clone of the config.
    pub certs: std::sync::Arc<Vec<Vec<u8>>>,
}

/// A multi-step HTTP check: requests in order, one cookie jar, values carried from one step to
/// the next in variables. Succeeds when every step does.
#[derive(Clone, Debug)]
pub struct StepsCheck {
    pub steps: Vec<HttpStep>,
    /// Body bytes read at most, per step.
    pub max_body_bytes: usize,
    pub insecure: bool,
    pub net: NetOptions,
}

/// One request of a multi-step check. URL, header values and body may use `${var}`.
#[derive(Clone, Debug)]
pub struct HttpStep {
    /// Unique within its check.
    pub name: String,
    pub url: crate::lang::template::Template,
    pub method: String,
    pub headers: Vec<(String, crate::lang::template::Template)>,
    pub body: Option<crate::lang::template::Template>,
    /// 0 = do not follow redirects.
    pub max_redirects: u32,
    /// This step's own limit; the check's timeout bounds the whole sequence regardless.
    pub timeout: Option<Duration>,
    pub conditions: Vec<Condition>,
    /// Values taken from this step's response, in the order written.
    pub extract: Vec<crate::lang::template::Extraction>,
}

/// The mail intake: banner, EHLO, STARTTLS (or implicit TLS).
#[derive(Clone, Debug)]
pub struct SmtpCheck {
    pub host: String,
    pub port: u16,
    /// Require STARTTLS to be offered and negotiate it. Default true.
    pub starttls: bool,
    /// Implicit TLS (port 465). Default false.
    pub tls: bool,
    pub insecure: bool,
    /// The name sent with EHLO.
    pub ehlo: String,
    pub net: NetOptions,
}

#[derive(Clone, Debug)]
pub struct HttpCheck {
    pub url: Url,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// 0 = do not follow redirects.
    pub max_redirects: u32,
    /// Bytes of body read at most; the rest is never read.
    pub max_body_bytes: usize,
    /// Skip certificate verification (explicit opt-in only).
    pub insecure: bool,
    pub net: NetOptions,
}

/// A webhook called on every route switch of its service.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookSpec {
    /// Unique across the configuration.
    pub id: String,
    pub url: Url,
    pub method: String,
    /// Values may name environment variables as `${NAME}`, resolved at send time.
    pub headers: Vec<(String, String)>,
    /// A JSON template with `{{placeholders}}`; `None` sends every field.
    pub body: Option<String>,
    pub timeout: Duration,
}

/// A Help Center notice's title when `title` is not given.
pub const ZENDESK_DEFAULT_TITLE: &str = "{{ service_name }}: please use our backup";
/// A Help Center notice's body when `body` is not given (HTML; values are escaped).
pub const ZENDESK_DEFAULT_BODY: &str = "<p>{{ service_name }} is not working as it should. Until it is fixed, please use <a href=\"{{ target }}\">{{ target }}</a>.</p>{% if public_message %}\n<p>{{ public_message }}</p>{% endif %}";

/// A prepared Zendesk Help Center article that shows a notice while the service's routes are
/// on the backup and is restored when they are back on the primary (`[[on_switch]] kind =
/// "zendesk_article"`). Its secrets are read where they live when a request needs them.
#[derive(Clone, Debug, PartialEq)]
pub struct ZendeskArticleSpec {
    /// Unique across the configuration, with the webhooks' ids.
    pub id: String,
    /// `https://{subdomain}.zendesk.com`, or `base_url` (without a trailing `/`).
    pub base_url: String,
    pub article_id: u64,
    /// The translation that carries the notice, e.g. `en-us`.
    pub locale: String,
    /// Templates of the notice (`template::webhook::ARTICLE_PLACEHOLDERS`); the body is HTML
    /// and its values are HTML-escaped, the title is plain text.
    pub title: String,
    pub body: String,
    /// Promote the article while it carries the notice. Default true.
    pub promote: bool,
    pub oauth: ZendeskOAuth,
    pub timeout: Duration,
}

/// The OAuth client whose refresh token gets access tokens (`POST /oauth/tokens`).
#[derive(Clone, Debug, PartialEq)]
pub struct ZendeskOAuth {
    pub client_id: String,
    pub client_secret: Secret,
    /// The refresh token as first granted. Zendesk replaces it at every refresh; the
    /// replacement is kept in the store (see `announce::zendesk`).
    pub refresh_token: Secret,
}

#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub id: String,
    pub service: String,
    pub primary: String,
    pub backup: String,
}

/// One problem found while loading: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single line (e.g. a missing file).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// Every problem found in one load, in file order.
#[derive(Clone, Debug, thiserror::Error)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
    /// The files read before loading stopped, for the record of a rejected reload.
    pub files: ConfigFiles,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Loads and validates `path` and the service files under its `probes` directory.
    /// Returns every problem found, not just the first.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        raw::load(path)
    }

    /// Loads `path` as an auditor does: secret references (environment variables named by
    /// webhook headers, `[audit] key_file`) are kept as references, neither read nor
    /// required, so an auditor's copy of the configuration loads without production secrets.
    pub fn load_for_audit(path: &Path) -> Result<Config, ConfigError> {
        raw::load_as(path, true)
    }

    pub fn service(&self, id: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.id == id).map(|s| &**s)
    }

    pub fn checks(&self) -> impl Iterator<Item = &CheckSpec> {
        self.services.iter().flat_map(|s| s.checks.iter())
    }

    pub fn check(&self, name: &str) -> Option<&CheckSpec> {
        self.checks().find(|c| c.name == name)
    }

    /// One line for `switchboard check`: counts of services, checks and routes.
    /// What is valid but probably not meant, for `switchboard check` to print: services whose
    /// relative `runbook` cannot become a link because `[email] runbook_base_url` is unset.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.audit_key_warnings();
        out.extend(self.runbook_warnings());
        out
    }

    /// A key file others may read is a key others may have: it then authenticates nothing.
    fn audit_key_warnings(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let Some(path) = self
            .audit
            .key_file
            .as_ref()
            .filter(|_| self.audit.key.is_some())
        else {
            return Vec::new();
        };
        match std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777) {
            Ok(mode) if mode & 0o077 != 0 => vec![format!(
                "{}: [audit] key_file {} has mode {mode:04o}: group or others can read the audit key; chmod 600 it",
                self.source.display(),
                path.display()
            )],
            _ => Vec::new(),
        }
    }

    fn runbook_warnings(&self) -> Vec<String> {
        self.services
            .iter()
            .filter_map(|s| {
                let rb = s.runbook.as_deref()?;
                self.email.runbook_url(rb).is_none().then(|| {
                    format!(
                        "{}: service {}: runbook {rb:?} is a relative path and [email] runbook_base_url is not set; on-call e-mails will name it as text, without a link",
                        s.source.display(),
                        s.id
                    )
                })
            })
            .collect()
    }

    pub fn summary(&self) -> String {
        let checks = self.checks().count();
        let routes: usize = self.services.iter().map(|s| s.routes.len()).sum();
        format!(
            "{}: ok: {} services, {} checks, {} routes",
            self.source.display(),
            self.services.len(),
            checks,
            routes
        )
    }
}
