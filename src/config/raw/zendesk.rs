//! `[[on_switch]] kind = "zendesk_article"`: a prepared Help Center article that carries a
//! notice while the routes are on the backup, validated into `ZendeskArticleSpec`.

use super::webhook::RawWebhook;
use super::{Loader, Source};
use crate::config::{
    ZendeskArticleSpec, ZendeskOAuth, ZENDESK_DEFAULT_BODY as DEFAULT_BODY,
    ZENDESK_DEFAULT_TITLE as DEFAULT_TITLE,
};
use crate::template::webhook::{unknown_placeholders_of, ARTICLE_PLACEHOLDERS};
use std::net::IpAddr;
use std::time::Duration;
use toml::Spanned;
use url::Url;

impl Loader {
    /// The article kind's own fields; `timeout` was read by the caller (`None`: reported).
    pub(super) fn validate_zendesk_article(
        &mut self,
        source: &Source<'_>,
        raw: &RawWebhook,
        id: String,
        line: usize,
        timeout: Option<Duration>,
    ) -> Option<ZendeskArticleSpec> {
        let mut ok = true;
        let base_url = match (&raw.subdomain, &raw.base_url) {
            (Some(_), Some(b)) => {
                let message = "on_switch: give subdomain or base_url, not both";
                self.report_at(source, b, message);
                None
            }
            (None, None) => {
                let message = "on_switch: a zendesk_article needs `subdomain` (or `base_url`)";
                self.report(source.path, line, message);
                None
            }
            (Some(s), None) => {
                let name = s.get_ref();
                let plain = !name.is_empty()
                    && name.len() <= 63
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if plain {
                    Some(format!("https://{name}.zendesk.com"))
                } else {
                    let message = format!(
                        "on_switch subdomain: \"{name}\" is not a Zendesk subdomain (the NAME of NAME.zendesk.com)"
                    );
                    self.report_at(source, s, message);
                    None
                }
            }
            (None, Some(b)) => self.zendesk_base_url(source, b),
        };
        let article_id = match &raw.article_id {
            Some(a) if *a.get_ref() > 0 => u64::try_from(*a.get_ref()).ok(),
            Some(a) => {
                let message = format!(
                    "on_switch article_id: {} is not an article id (a positive number)",
                    a.get_ref()
                );
                self.report_at(source, a, message);
                None
            }
            None => {
                self.report(
                    source.path,
                    line,
                    "on_switch: a zendesk_article needs `article_id`",
                );
                None
            }
        };
        let locale = match &raw.locale {
            Some(l) => {
                let code = l.get_ref();
                let plain = !code.is_empty()
                    && code.len() <= 16
                    && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !plain {
                    let message =
                        format!("on_switch locale: \"{code}\" is not a locale such as en-us");
                    self.report_at(source, l, message);
                    ok = false;
                }
                Some(code.to_ascii_lowercase())
            }
            None => {
                let message = "on_switch: a zendesk_article needs `locale` (e.g. \"en-us\")";
                self.report(source.path, line, message);
                None
            }
        };
        for (field, template) in [("title", &raw.title), ("body", &raw.body)] {
            let Some(t) = template else { continue };
            let unknown = unknown_placeholders_of(t.get_ref(), &ARTICLE_PLACEHOLDERS);
            if !unknown.is_empty() {
                let message = format!(
                    "on_switch {field}: unknown placeholder(s) {}; known: {}",
                    unknown.join(", "),
                    ARTICLE_PLACEHOLDERS.join(", ")
                );
                self.report_at(source, t, message);
                ok = false;
            }
        }
        let client_id = match &raw.client_id {
            Some(c) if !c.get_ref().trim().is_empty() => Some(c.get_ref().clone()),
            Some(c) => {
                self.report_at(source, c, "on_switch client_id: empty");
                None
            }
            None => {
                let message = "on_switch: a zendesk_article needs `client_id` (its OAuth client)";
                self.report(source.path, line, message);
                None
            }
        };
        let client_secret = self.required_secret(
            source,
            line,
            "client_secret",
            raw.client_secret_env.as_ref(),
            raw.client_secret_file.as_ref(),
        );
        let refresh_token = self.required_secret(
            source,
            line,
            "refresh_token",
            raw.refresh_token_env.as_ref(),
            raw.refresh_token_file.as_ref(),
        );
        if !ok {
            return None;
        }
        Some(ZendeskArticleSpec {
            id,
            base_url: base_url?,
            article_id: article_id?,
            locale: locale?,
            title: raw
                .title
                .as_ref()
                .map_or(DEFAULT_TITLE, |t| t.get_ref())
                .to_owned(),
            body: raw
                .body
                .as_ref()
                .map_or(DEFAULT_BODY, |t| t.get_ref())
                .to_owned(),
            promote: raw.promote.unwrap_or(true),
            oauth: ZendeskOAuth {
                client_id: client_id?,
                client_secret: client_secret?,
                refresh_token: refresh_token?,
            },
            timeout: timeout?,
        })
    }

    /// `{field}_env` or `{field}_file`, exactly one.
    fn required_secret(
        &mut self,
        source: &Source<'_>,
        line: usize,
        field: &str,
        env: Option<&Spanned<String>>,
        file: Option<&Spanned<String>>,
    ) -> Option<crate::config::Secret> {
        match self.secret(source, "on_switch:", field, env, file)? {
            Some(secret) => Some(secret),
            None => {
                let message =
                    format!("on_switch: a zendesk_article needs {field}_env or {field}_file");
                self.report(source.path, line, message);
                None
            }
        }
    }

    /// A `base_url`: https, or plain http only to a loopback address (a local fake in tests);
    /// kept without a trailing `/`.
    fn zendesk_base_url(&mut self, source: &Source<'_>, raw: &Spanned<String>) -> Option<String> {
        let text = raw.get_ref();
        let problem = match Url::parse(text) {
            Ok(u) if !u.has_host() => "is not an absolute URL",
            Ok(u) if u.scheme() == "https" => return Some(text.trim_end_matches('/').to_owned()),
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => {
                return Some(text.trim_end_matches('/').to_owned())
            }
            Ok(u) if u.scheme() == "http" => "uses plain http off loopback; use https",
            _ => "is not an absolute https URL",
        };
        let message = format!("on_switch base_url: \"{text}\" {problem}");
        self.report_at(source, raw, message);
        None
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
