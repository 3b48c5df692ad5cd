//! `[[on_switch]]`: what a service does when its routes switch, as written and validated: call
//! a webhook (`kind = "webhook"`, the default) or put a notice on a Zendesk Help Center
//! article (`kind = "zendesk_article"`, validated in `zendesk.rs`).
//!
//! One struct holds the fields of both kinds (they share `id`, `body` and `timeout`), so a
//! field of the other kind is reported by name instead of as unknown.

use super::{Loader, Source, Unique};
use crate::config::{WebhookSpec, ZendeskArticleSpec};
use crate::template::webhook;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;
use url::Url;

/// What a service does when its routes switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// `"webhook"` (default) or `"zendesk_article"`.
    pub kind: Option<Spanned<String>>,
    /// Unique across the configuration; default `{service}-{n}`.
    pub id: Option<Spanned<String>>,
    /// The webhook's URL (webhook only).
    pub url: Option<Spanned<String>>,
    /// Default `POST`.
    pub method: Option<Spanned<String>>,
    /// Values may name environment variables as `${NAME}` (secrets stay out of the file).
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// A webhook's JSON template with `{{service}}`, `{{to}}`, `{{side}}`, `{{routes}}`, ...;
    /// an article's HTML notice with `{{service_name}}`, `{{target}}`, `{{public_message}}`, ...
    pub body: Option<Spanned<String>>,
    /// Default `10s`.
    pub timeout: Option<Spanned<String>>,
    /// `kind = "zendesk_article"`: the Zendesk account, as `{subdomain}.zendesk.com`...
    pub subdomain: Option<Spanned<String>>,
    /// ... or its base URL (https, or http on a loopback address for tests).
    pub base_url: Option<Spanned<String>>,
    /// The prepared article that carries the notice.
    pub article_id: Option<Spanned<i64>>,
    /// Its translation to change, e.g. `en-us`.
    pub locale: Option<Spanned<String>>,
    /// The notice's title (plain text template).
    pub title: Option<Spanned<String>>,
    /// Promote the article while it carries the notice. Default true.
    pub promote: Option<bool>,
    /// The OAuth client's identifier.
    pub client_id: Option<Spanned<String>>,
    pub client_secret_env: Option<Spanned<String>>,
    pub client_secret_file: Option<Spanned<String>>,
    /// The refresh token first granted to the client; Zendesk rotates it at each refresh.
    pub refresh_token_env: Option<Spanned<String>>,
    pub refresh_token_file: Option<Spanned<String>>,
}

impl RawWebhook {
    /// The fields set that only `kind = "zendesk_article"` has, by name.
    fn article_fields(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let strings = [
            ("subdomain", &self.subdomain),
            ("base_url", &self.base_url),
            ("locale", &self.locale),
            ("title", &self.title),
            ("client_id", &self.client_id),
            ("client_secret_env", &self.client_secret_env),
            ("client_secret_file", &self.client_secret_file),
            ("refresh_token_env", &self.refresh_token_env),
            ("refresh_token_file", &self.refresh_token_file),
        ];
        let mut set: Vec<_> = strings
            .into_iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| (name, v.span())))
            .collect();
        if let Some(a) = &self.article_id {
            set.push(("article_id", a.span()));
        }
        set
    }

    /// The fields set that only webhooks have, by name.
    fn webhook_fields(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut set = Vec::new();
        if let Some(u) = &self.url {
            set.push(("url", u.span()));
        }
        if let Some(m) = &self.method {
            set.push(("method", m.span()));
        }
        if let Some((_, v)) = self.headers.iter().next() {
            set.push(("headers", v.span()));
        }
        set
    }
}

/// One validated `[[on_switch]]` entry.
pub enum OnSwitch {
    Webhook(WebhookSpec),
    ZendeskArticle(ZendeskArticleSpec),
}

impl Loader {
    pub(super) fn validate_webhook(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawWebhook>,
        service: &str,
        n: usize,
    ) -> Option<OnSwitch> {
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
        let article = match raw.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("webhook") => false,
            Some("zendesk_article") => true,
            Some(other) => {
                let message = format!(
                    "on_switch kind: \"{other}\" is not a kind; use \"webhook\" or \"zendesk_article\""
                );
                self.report_at(source, raw.kind.as_ref().expect("matched"), message);
                return None;
            }
        };
        let (misplaced, owner) = if article {
            (raw.webhook_fields(), "webhook")
        } else {
            (raw.article_fields(), "zendesk_article")
        };
        for (field, span) in misplaced {
            let message =
                format!("on_switch: `{field}` belongs to kind = \"{owner}\", not to this kind");
            self.report(source.path, source.line(span), message);
            ok = false;
        }
        let timeout = match &raw.timeout {
            None => Some(Duration::from_secs(10)),
            Some(t) => self.duration(source, "timeout", Some(t), false),
        };
        if article {
            let spec = self.validate_zendesk_article(source, &raw, id, line, timeout);
            return spec.filter(|_| ok).map(OnSwitch::ZendeskArticle);
        }
        let Some(raw_url) = &raw.url else {
            self.report(source.path, line, "on_switch: a webhook needs `url`");
            return None;
        };
        let url = match Url::parse(raw_url.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
            _ => {
                let message = format!(
                    "on_switch url: \"{}\" is not an absolute http(s) URL",
                    raw_url.get_ref()
                );
                self.report_at(source, raw_url, message);
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
                if !self.auditor && std::env::var(var).is_err() {
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
        (ok && url.is_some() && timeout.is_some()).then(|| {
            OnSwitch::Webhook(WebhookSpec {
                id,
                url: url.expect("checked"),
                method,
                headers,
                body: raw.body.map(Spanned::into_inner),
                timeout: timeout.expect("checked"),
            })
        })
    }
}
