//! The main file, `switchboard.toml`: its tables as written and their validation (`[server]`,
//! `[storage]`, `[audiences]`, `[status_page]`, `[auth]`, `[defaults]`; `[email]` and the
//! pushes are in `email.rs`).

use super::audit::RawAudit;
use super::check::RawBrowser;
use super::cluster::RawCluster;
use super::email::{RawChat, RawEmail, RawStatuspagePush};
use super::regions::parse_plain;
use super::{
    timeout_message, LineIndex, Loader, Source, DEFAULT_LISTEN, DEFAULT_MAX_CONCURRENT_PROBES,
};
use crate::config::{
    Audiences, AuthConfig, ChatConfig, ClusterConfig, Config, Defaults, EmailConfig, ServerConfig,
    StatusPageConfig, StatuspagePushConfig, StorageConfig, VantageConfig,
};
use serde::Deserialize;
use sha2::Digest;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use url::Url;

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
    pub audit: Option<RawAudit>,
    pub cluster: Option<Spanned<RawCluster>>,
    /// How browser checks run Chromium.
    pub browser: Option<RawBrowser>,
    /// The suspect-vantage guard.
    pub vantage: Option<RawVantage>,
}

/// `[statuspage_push]`: keep an Atlassian Statuspage page in step with failovers.

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
    /// The local address every probe connects from (an IPv4 or IPv6 address of this host),
    /// unless the check names its own. Default: the system's choice. Browser checks ignore it.
    pub source_address: Option<Spanned<String>>,
    /// Cluster mode: how many vantages must agree on a check, `"majority"` (default) or
    /// `"k of n"`; a `[service]` may set its own.
    pub quorum: Option<Spanned<String>>,
    /// Cluster mode: fewer vantages able to vote and no automatic decision. Default 1.
    pub min_vantages: Option<Spanned<i64>>,
}

/// `[vantage]`: when this vantage suspects its own network rather than its targets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVantage {
    /// Judge at all. Default `true`; it only judges with at least `min_hosts` distinct hosts.
    pub guard: Option<bool>,
    /// Distinct hosts probed before the guard judges. Default 3.
    pub min_hosts: Option<Spanned<i64>>,
    /// More than this share of the probed hosts failing at once makes the vantage suspect.
    /// Default 0.5.
    pub failing_share: Option<Spanned<f64>>,
    /// How long a failing check waits at most for news of other hosts. Default `30s`.
    pub evidence_wait: Option<Spanned<String>>,
}

impl Loader {
    pub(super) fn load(&mut self, path: &Path) -> Option<Config> {
        self.base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let text = self.read(path)?;
        let lines = LineIndex::new(&text);
        let source = Source {
            path,
            text: &text,
            lines: &lines,
            base: 0,
        };
        let (parts, _) = self.parse_regions(&source, parse_plain::<RawMain>)?;
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
            cluster: main.cluster?,
            audiences: main.audiences,
            status_page: main.status_page,
            auth: main.auth,
            defaults: main.defaults,
            vantage: main.vantage,
            audit: main.audit,
            services: services.into_iter().map(std::sync::Arc::new).collect(),
            version: hex::encode(std::mem::take(&mut self.hasher).finalize()),
            files: std::sync::Arc::new(std::mem::take(&mut self.files)),
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
        let chat = self.validate_chat(&at.chat, base, raw.chat);
        let listen_url = server.as_ref().map(|s| format!("http://{}", s.listen));
        let cluster = self.validate_cluster(&at.cluster, raw.cluster, base, listen_url.as_deref());

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
        let audit = self.validate_audit(&at.audit, base, raw.audit);
        self.validate_browser(&at.browser, base, raw.browser);
        let vantage = self.validate_vantage(&at.vantage, raw.vantage.unwrap_or_default());

        Main {
            probes_dir,
            probes_line,
            server,
            storage,
            email,
            statuspage_push,
            chat,
            cluster,
            audiences,
            status_page,
            auth,
            defaults,
            vantage,
            audit,
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
            source_address: raw
                .source_address
                .as_ref()
                .and_then(|a| self.source_address(source, a)),
            vote: self
                .vote_rule(
                    source,
                    raw.quorum.as_ref(),
                    raw.min_vantages.as_ref(),
                    builtin.vote,
                )
                .unwrap_or(builtin.vote),
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
}

impl Loader {
    /// `[vantage]`, each invalid value reported and replaced by its default.
    fn validate_vantage(&mut self, source: &Source<'_>, raw: RawVantage) -> VantageConfig {
        let builtin = VantageConfig::default();
        let min_hosts = match &raw.min_hosts {
            None => builtin.min_hosts,
            Some(n) if *n.get_ref() >= 2 && *n.get_ref() <= 1_000_000 => *n.get_ref() as usize,
            Some(n) => {
                let message = format!(
                    "vantage.min_hosts must be at least 2 (one host failing alone is the case the guard must tell apart), not {}",
                    n.get_ref()
                );
                self.report_at(source, n, message);
                builtin.min_hosts
            }
        };
        let failing_share = match &raw.failing_share {
            None => builtin.failing_share,
            Some(f) if (0.0..1.0).contains(f.get_ref()) => *f.get_ref(),
            Some(f) => {
                let message = format!(
                    "vantage.failing_share must be at least 0 and below 1 (more than this share of the hosts failing makes the vantage suspect), not {}",
                    f.get_ref()
                );
                self.report_at(source, f, message);
                builtin.failing_share
            }
        };
        VantageConfig {
            guard: raw.guard.unwrap_or(builtin.guard),
            min_hosts,
            failing_share,
            evidence_wait: self
                .duration(
                    source,
                    "vantage.evidence_wait",
                    raw.evidence_wait.as_ref(),
                    false,
                )
                .unwrap_or(builtin.evidence_wait),
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
    cluster: Option<Option<ClusterConfig>>,
    audiences: Audiences,
    status_page: StatusPageConfig,
    auth: AuthConfig,
    defaults: Defaults,
    vantage: VantageConfig,
    audit: crate::config::AuditConfig,
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
    cluster: Source<'a>,
    audiences: Source<'a>,
    defaults: Source<'a>,
    audit: Source<'a>,
    browser: Source<'a>,
    vantage: Source<'a>,
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
        cluster: whole,
        audiences: whole,
        defaults: whole,
        audit: whole,
        browser: whole,
        vantage: whole,
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
        take(&mut raw.cluster, b.cluster, &mut at.cluster, src);
        take(&mut raw.audiences, b.audiences, &mut at.audiences, src);
        take(&mut raw.defaults, b.defaults, &mut at.defaults, src);
        take(&mut raw.storage, b.storage, &mut at.storage, src);
        take(&mut raw.audit, b.audit, &mut at.audit, src);
        take(&mut raw.browser, b.browser, &mut at.browser, src);
        take(&mut raw.vantage, b.vantage, &mut at.vantage, src);
        raw.status_page = raw.status_page.or(b.status_page);
        raw.auth = raw.auth.or(b.auth);
    }
    (raw, at)
}
