//! `[email]`, `[statuspage_push]` and `[chat]` of the main file: the announcement channels' settings as written and their validation.

use super::{Loader, Source, DEFAULT_FROM};
use crate::config::{
    ChatConfig, EmailConfig, EmailTransport, SlackBot, StatuspagePushConfig, TokenSource,
};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;
use url::Url;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatuspagePush {
    pub page_id: Option<Spanned<String>>,
    /// Default `https://api.statuspage.io/v1`.
    pub api_base: Option<Spanned<String>>,
    /// Environment variable holding the API key. Default `STATUSPAGE_API_KEY`.
    pub api_key_env: Option<Spanned<String>>,
}

/// `[chat]`: Slack hears what on-call hears, through an incoming webhook (`webhook_url`) or,
/// with one thread per incident, a bot (`channel` and its token).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChat {
    /// An incoming webhook URL (a secret: whoever has it can post).
    pub webhook_url: Option<Spanned<String>>,
    /// The channel a bot posts to (`C0123456789`); set instead of `webhook_url`.
    pub channel: Option<Spanned<String>>,
    /// Environment variable holding the bot token (`xoxb-...`). Default `SLACK_BOT_TOKEN`.
    pub bot_token_env: Option<Spanned<String>>,
    /// File holding the bot token instead, relative to this file.
    pub bot_token_file: Option<Spanned<String>>,
    /// The Web API's base. Default `https://slack.com/api`.
    pub api_base: Option<Spanned<String>>,
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

impl Loader {
    pub(super) fn validate_email(
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
            match crate::template::Templates::load(&dir) {
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

    pub(super) fn validate_statuspage_push(
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

    pub(super) fn validate_chat(
        &mut self,
        source: &Source<'_>,
        base: &Path,
        raw: Option<Spanned<RawChat>>,
    ) -> Option<Option<ChatConfig>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let line = source.line(raw.span());
        let raw = raw.into_inner();
        let webhook_url = match &raw.webhook_url {
            None => None,
            Some(u) => match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Some(Some(u.get_ref().clone()))
                }
                // The URL is a secret (whoever has it can post): not echoed.
                _ => {
                    self.report_at(source, u, "chat.webhook_url is not an absolute http(s) URL");
                    Some(None)
                }
            },
        };
        let bot_fields = [&raw.bot_token_env, &raw.bot_token_file, &raw.api_base];
        let Some(channel) = &raw.channel else {
            if let Some(field) = bot_fields.iter().find_map(|f| f.as_ref()) {
                self.report_at(
                    source,
                    field,
                    "chat: bot_token_env, bot_token_file and api_base belong to a bot: set channel too",
                );
                return None;
            }
            return match webhook_url {
                None => {
                    self.report(
                        source.path,
                        line,
                        "chat: set webhook_url (an incoming webhook) or channel (a bot with its token)",
                    );
                    None
                }
                Some(url) => Some(Some(ChatConfig {
                    webhook_url: Some(url?),
                    bot: None,
                })),
            };
        };
        let mut ok = true;
        if let Some(u) = &raw.webhook_url {
            self.report_at(
                source,
                u,
                "chat: set either webhook_url (an incoming webhook) or channel (a bot), not both",
            );
            ok = false;
        }
        if channel.get_ref().trim().is_empty() || channel.get_ref().contains(char::is_whitespace) {
            self.report_at(
                source,
                channel,
                "chat.channel must be a channel id such as C0123456789",
            );
            ok = false;
        }
        let token = match (&raw.bot_token_env, &raw.bot_token_file) {
            (Some(e), Some(_)) => {
                self.report_at(
                    source,
                    e,
                    "chat: set bot_token_env or bot_token_file, not both",
                );
                None
            }
            (None, Some(f)) => Some(TokenSource::File(base.join(f.get_ref()))),
            (Some(e), None) if !is_env_name(e.get_ref()) => {
                let message = format!(
                    "chat.bot_token_env: \"{}\" is not an environment variable name",
                    e.get_ref()
                );
                self.report_at(source, e, message);
                None
            }
            (Some(e), None) => Some(TokenSource::Env(e.get_ref().clone())),
            (None, None) => Some(TokenSource::Env(DEFAULT_SLACK_TOKEN_ENV.to_string())),
        };
        let api_base = match &raw.api_base {
            None => Some(DEFAULT_SLACK_API.to_string()),
            Some(u) => match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Some(u.get_ref().trim_end_matches('/').to_string())
                }
                _ => {
                    let message = format!(
                        "chat.api_base: \"{}\" is not an absolute http(s) URL",
                        redact_url(u.get_ref())
                    );
                    self.report_at(source, u, message);
                    None
                }
            },
        };
        if !ok {
            return None;
        }
        Some(Some(ChatConfig {
            webhook_url: None,
            bot: Some(SlackBot {
                channel: channel.get_ref().clone(),
                token: token?,
                api_base: api_base?,
            }),
        }))
    }
}

/// The default `[chat] bot_token_env`.
pub const DEFAULT_SLACK_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";
/// The default `[chat] api_base`.
pub const DEFAULT_SLACK_API: &str = "https://slack.com/api";

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
