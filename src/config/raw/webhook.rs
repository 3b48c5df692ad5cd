//! `[[on_switch]]`: a webhook a service calls when its routes switch, as written and validated.

use super::{Loader, Source, Unique};
use crate::config::WebhookSpec;
use crate::template::webhook;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;
use url::Url;

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

impl Loader {
    pub(super) fn validate_webhook(
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
}
