//! `kind = "mail_roundtrip"`: a canary e-mail sent to the intake over SMTP and confirmed
//! arrived, through IMAP (`[check.imap]`) or a helpdesk search API (`[check.search]`).

use super::{Loader, Source};
use crate::config::{
    CheckKind, ImapConfirm, MailConfirm, MailRoundtripCheck, MailServer, MailTls, OnArrival,
    SearchConfirm,
};
use crate::lang::condition::Condition;
use crate::lang::template::Template;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

/// The subject every canary starts with unless `subject_prefix` says otherwise.
pub const DEFAULT_SUBJECT_PREFIX: &str = "[Switchboard canary]";
/// How often arrival is looked for, unless `poll_interval` says otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Body bytes of a search response read at most.
const SEARCH_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMailRoundtripCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"mail_roundtrip"`.
    pub kind: Option<Spanned<String>>,
    /// The canary's sender (`From` and `MAIL FROM`), e.g. `canary@example.com`.
    pub from: Option<Spanned<String>>,
    /// The intake address the canary is sent to (`To` and `RCPT TO`).
    pub to: Option<Spanned<String>>,
    /// The start of every canary's subject, so rules can file and auto-close them. Default
    /// `[Switchboard canary]`.
    pub subject_prefix: Option<Spanned<String>>,
    /// How often arrival is looked for within the timeout. Default `5s`.
    pub poll_interval: Option<Spanned<String>>,
    /// The SMTP server the canary is handed to.
    pub smtp: Option<Spanned<RawMailServer>>,
    /// Arrival confirmed by searching a mailbox over IMAP for the token.
    pub imap: Option<Spanned<RawImap>>,
    /// Arrival confirmed by an HTTP search (a helpdesk's search API) for the token.
    pub search: Option<Spanned<RawSearch>>,
    pub interval: Option<Spanned<String>>,
    /// The deadline: from connecting to the SMTP server to the canary seen.
    pub timeout: Option<Spanned<String>>,
    /// Confirmation re-probes while the check is suspect.
    pub retry_interval: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    /// `"adaptive"` or `"fixed"`; default from `[defaults]`.
    pub confirmation: Option<Spanned<String>>,
}

/// `[check.smtp]`: where the canary is sent, in the mailer's terms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMailServer {
    pub host: Option<Spanned<String>>,
    /// Default 25 (`tls = "none"`), 587 (`"starttls"`) or 465 (`"implicit"`).
    pub port: Option<Spanned<i64>>,
    /// `"starttls"` (default), `"implicit"` or `"none"`.
    pub tls: Option<Spanned<String>>,
    /// AUTH user; without it no AUTH is attempted.
    pub user: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<Spanned<String>>,
    /// File holding the password (first line), relative to this file.
    pub password_file: Option<Spanned<String>>,
    pub insecure: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub ip_version: Option<Spanned<String>>,
    /// The local address to connect from (an IPv4 or IPv6 address of this host); default
    /// `[defaults] source_address`, else the system's choice.
    pub source_address: Option<Spanned<String>>,
}

/// `[check.imap]`: the mailbox the intake delivers into.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImap {
    pub host: Option<Spanned<String>>,
    /// Default 993 (`tls = "implicit"`) or 143.
    pub port: Option<Spanned<i64>>,
    /// `"implicit"` (default), `"starttls"` or `"none"`.
    pub tls: Option<Spanned<String>>,
    /// LOGIN user (required).
    pub user: Option<String>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    /// Default `INBOX`.
    pub mailbox: Option<String>,
    /// What happens to a canary once seen: `"delete"` (default), `"seen"` or `"keep"`.
    pub on_arrival: Option<Spanned<String>>,
    pub insecure: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub ip_version: Option<Spanned<String>>,
    /// The local address to connect from (an IPv4 or IPv6 address of this host); default
    /// `[defaults] source_address`, else the system's choice.
    pub source_address: Option<Spanned<String>>,
}

/// `[check.search]`: an HTTP search for the token, e.g. a helpdesk search API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// URL with `${token}` where the canary's token goes.
    pub url: Option<Spanned<String>>,
    /// Extra request headers; values may use `${token}`.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Environment variable whose value is sent as the `Authorization` header.
    pub authorization_env: Option<Spanned<String>>,
    /// Conditions on the response that mean "found" (required), e.g. `[BODY].count > 0`.
    #[serde(default)]
    pub conditions: Vec<Spanned<String>>,
    pub insecure: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub ip_version: Option<Spanned<String>>,
    /// The local address to connect from (an IPv4 or IPv6 address of this host); default
    /// `[defaults] source_address`, else the system's choice.
    pub source_address: Option<Spanned<String>>,
}

/// The server fields `[check.smtp]` and `[check.imap]` share, borrowed.
struct ServerFields<'r> {
    table: &'static str,
    host: Option<&'r Spanned<String>>,
    port: Option<&'r Spanned<i64>>,
    tls: Option<&'r Spanned<String>>,
    default_tls: MailTls,
    user: Option<&'r String>,
    password_env: Option<&'r Spanned<String>>,
    password_file: Option<&'r Spanned<String>>,
    net: super::net::NetFields<'r>,
    insecure: Option<bool>,
}

macro_rules! server_fields {
    ($table:expr, $raw:expr, $default:expr) => {
        ServerFields {
            table: $table,
            host: $raw.host.as_ref(),
            port: $raw.port.as_ref(),
            tls: $raw.tls.as_ref(),
            default_tls: $default,
            user: $raw.user.as_ref(),
            password_env: $raw.password_env.as_ref(),
            password_file: $raw.password_file.as_ref(),
            net: super::net::net_fields!($raw),
            insecure: $raw.insecure,
        }
    };
}

impl Loader {
    pub(super) fn mail_roundtrip_check(
        &mut self,
        source: &Source<'_>,
        raw: RawMailRoundtripCheck,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let mut ok = true;
        let name = &raw.name;
        let address = |this: &mut Self, field: &str, v: Option<&Spanned<String>>| match v {
            None => {
                let message = format!(
                    "check \"{}\" of kind \"mail_roundtrip\" needs `{field}` (an e-mail address)",
                    name.get_ref()
                );
                this.report_at(source, name, message);
                None
            }
            Some(a) if a.get_ref().parse::<lettre::Address>().is_err() => {
                let message = format!("{field}: \"{}\" is not an e-mail address", a.get_ref());
                this.report_at(source, a, message);
                None
            }
            Some(a) => Some(a.get_ref().clone()),
        };
        let from = address(self, "from", raw.from.as_ref());
        let to = address(self, "to", raw.to.as_ref());
        let subject_prefix = match &raw.subject_prefix {
            None => DEFAULT_SUBJECT_PREFIX.to_string(),
            Some(p) if p.get_ref().trim().is_empty() || p.get_ref().contains(['\r', '\n']) => {
                let message = "subject_prefix must be one line of text, not empty";
                self.report_at(source, p, message);
                ok = false;
                String::new()
            }
            Some(p) => p.get_ref().trim().to_string(),
        };
        let poll_interval = match &raw.poll_interval {
            None => Some(DEFAULT_POLL_INTERVAL),
            Some(p) => self.duration(source, "poll_interval", Some(p), false),
        };
        let smtp = match &raw.smtp {
            None => {
                let message = format!(
                    "check \"{}\" of kind \"mail_roundtrip\" needs a [check.smtp] table (host, port, tls, ...)",
                    name.get_ref()
                );
                self.report_at(source, name, message);
                None
            }
            Some(s) => self.mail_server(
                source,
                s,
                &server_fields!("smtp", s.get_ref(), MailTls::StartTls),
            ),
        };
        let confirm = match (&raw.imap, &raw.search) {
            (Some(i), None) => self.imap_confirm(source, i).map(MailConfirm::Imap),
            (None, Some(s)) => self.search_confirm(source, s).map(MailConfirm::Search),
            (Some(_), Some(s)) => {
                let message = "give either [check.imap] or [check.search], not both: arrival is confirmed one way";
                self.report_at(source, s, message);
                None
            }
            (None, None) => {
                let message = format!(
                    "check \"{}\" of kind \"mail_roundtrip\" needs [check.imap] or [check.search] to confirm arrival",
                    name.get_ref()
                );
                self.report_at(source, name, message);
                None
            }
        };
        if !ok {
            return None;
        }
        let kind = CheckKind::MailRoundtrip(MailRoundtripCheck {
            from: from?,
            to: to?,
            subject_prefix,
            poll_interval: poll_interval?,
            smtp: smtp?,
            confirm: confirm?,
        });
        Some((kind, Vec::new()))
    }

    /// One server table: host, port, TLS mode, credentials and connection settings.
    fn mail_server<T>(
        &mut self,
        source: &Source<'_>,
        table: &Spanned<T>,
        raw: &ServerFields<'_>,
    ) -> Option<MailServer> {
        let mut ok = true;
        let host = match raw.host {
            Some(h) if !h.get_ref().trim().is_empty() => Some(h.get_ref().trim().to_string()),
            _ => {
                let message = format!("[check.{}] needs `host`", raw.table);
                match raw.host {
                    Some(h) => self.report_at(source, h, message),
                    None => self.report_at(source, table, message),
                }
                None
            }
        };
        let tls = match raw.tls.map(|t| t.get_ref().as_str()) {
            None => Some(raw.default_tls),
            Some("none") => Some(MailTls::None),
            Some("starttls") => Some(MailTls::StartTls),
            Some("implicit") => Some(MailTls::Implicit),
            Some(other) => {
                let message = format!(
                    "[check.{}] tls must be \"starttls\", \"implicit\" or \"none\", not \"{other}\"",
                    raw.table
                );
                if let Some(t) = raw.tls {
                    self.report_at(source, t, message);
                }
                None
            }
        };
        let port = match raw.port {
            None => tls.map(|t| default_port(raw.table, t)),
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    let message = format!(
                        "[check.{}] port must be 1 to 65535, not {}",
                        raw.table,
                        p.get_ref()
                    );
                    self.report_at(source, p, message);
                    None
                }
            },
        };
        let password = self.secret(
            source,
            &format!("[check.{}]", raw.table),
            "password",
            raw.password_env,
            raw.password_file,
        );
        ok &= password.is_some();
        let password = password.flatten();
        if raw.user.is_some() && password.is_none() && ok {
            let message = format!(
                "[check.{}] names a user but no password: set password_env or password_file",
                raw.table
            );
            self.report_at(source, table, message);
            ok = false;
        }
        let net = self.validate_net(source, &raw.net);
        if !ok {
            return None;
        }
        Some(MailServer {
            host: host?,
            port: port?,
            tls: tls?,
            user: raw.user.cloned(),
            password,
            insecure: raw.insecure.unwrap_or(false),
            net: net?,
        })
    }

    fn imap_confirm(&mut self, source: &Source<'_>, raw: &Spanned<RawImap>) -> Option<ImapConfirm> {
        let r = raw.get_ref();
        let server = self.mail_server(source, raw, &server_fields!("imap", r, MailTls::Implicit));
        let mut ok = true;
        if r.user.is_none() {
            self.report_at(source, raw, "[check.imap] needs `user` (and a password)");
            ok = false;
        }
        let on_arrival = match r.on_arrival.as_ref().map(|o| o.get_ref().as_str()) {
            None | Some("delete") => OnArrival::Delete,
            Some("seen") => OnArrival::Seen,
            Some("keep") => OnArrival::Keep,
            Some(other) => {
                let message = format!(
                    "[check.imap] on_arrival must be \"delete\", \"seen\" or \"keep\", not \"{other}\""
                );
                if let Some(o) = &r.on_arrival {
                    self.report_at(source, o, message);
                }
                ok = false;
                OnArrival::Keep
            }
        };
        let mailbox = r.mailbox.clone().unwrap_or_else(|| "INBOX".to_string());
        if mailbox.is_empty() || mailbox.contains(['\r', '\n', '\0']) {
            self.report_at(source, raw, "[check.imap] mailbox must be a mailbox name");
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(ImapConfirm {
            server: server?,
            mailbox,
            on_arrival,
        })
    }

    fn search_confirm(
        &mut self,
        source: &Source<'_>,
        raw: &Spanned<RawSearch>,
    ) -> Option<SearchConfirm> {
        let r = raw.get_ref();
        let mut ok = true;
        let template = |this: &mut Self, what: &str, t: &Spanned<String>| match Template::parse(
            t.get_ref(),
        ) {
            Ok(tpl) => {
                if let Some(other) = tpl.vars().find(|v| *v != "token") {
                    let message = format!(
                            "[check.search] {what}: unknown variable ${{{other}}}; only ${{token}} is known"
                        );
                    this.report_at(source, t, message);
                    return None;
                }
                Some(tpl)
            }
            Err(e) => {
                this.report_at(source, t, format!("[check.search] {what}: {}", e.0));
                None
            }
        };
        let url = match &r.url {
            None => {
                self.report_at(source, raw, "[check.search] needs `url` (with ${token})");
                None
            }
            Some(u) => {
                let tpl = template(self, "url", u);
                let filled = u.get_ref().replace("${token}", "token");
                let valid = url::Url::parse(&filled)
                    .ok()
                    .filter(|x| matches!(x.scheme(), "http" | "https") && x.has_host());
                if tpl.is_some() && valid.is_none() {
                    let message = format!(
                        "[check.search] url: \"{}\" is not an http(s) URL",
                        u.get_ref()
                    );
                    self.report_at(source, u, message);
                    None
                } else if tpl.as_ref().is_some_and(|t| t.vars().next().is_none()) {
                    let message =
                        "[check.search] url must contain ${token}: the search is for this canary";
                    self.report_at(source, u, message);
                    None
                } else {
                    tpl
                }
            }
        };
        let mut headers = Vec::new();
        for (name, value) in &r.headers {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                let message =
                    format!("[check.search] headers: \"{name}\" is not a valid header name");
                self.report_at(source, value, message);
                ok = false;
                continue;
            }
            match template(self, "headers", value) {
                Some(t) => headers.push((name.clone(), t)),
                None => ok = false,
            }
        }
        let authorization_env = match &r.authorization_env {
            None => None,
            Some(e) if std::env::var_os(e.get_ref()).is_none() => {
                let message = format!(
                    "[check.search] authorization_env: environment variable {} is not set",
                    e.get_ref()
                );
                self.report_at(source, e, message);
                ok = false;
                None
            }
            Some(e) => Some(e.get_ref().clone()),
        };
        if r.conditions.is_empty() {
            let message = "[check.search] needs conditions that mean \"found\", such as \"[BODY].count > 0\": a search answers 200 whether it found the canary or not";
            self.report_at(source, raw, message);
            ok = false;
        }
        let conditions = self.conditions(source, "[check.search] ", &r.conditions);
        let net = self.validate_net(source, &super::net::net_fields!(r));
        if !ok {
            return None;
        }
        Some(SearchConfirm {
            url: url?,
            headers,
            authorization_env,
            conditions: conditions?,
            max_body_bytes: SEARCH_BODY_BYTES,
            insecure: r.insecure.unwrap_or(false),
            net: net?,
        })
    }
}

fn default_port(table: &str, tls: MailTls) -> u16 {
    match (table, tls) {
        ("imap", MailTls::Implicit) => 993,
        ("imap", _) => 143,
        (_, MailTls::None) => 25,
        (_, MailTls::StartTls) => 587,
        (_, MailTls::Implicit) => 465,
    }
}
