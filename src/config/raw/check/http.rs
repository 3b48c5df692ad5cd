//! `kind = "http"` (the default): one HTTP request, its answer checked by status or conditions.

use super::{Loader, Source};
use crate::config::{CheckKind, HttpCheck};
use crate::lang::condition::Condition;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;
use url::Url;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"http"`, the default.
    pub kind: Option<Spanned<String>>,
    /// The page probed.
    pub url: Option<Spanned<String>>,
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
    /// PEM file of the CAs to trust instead of the webpki roots, relative to this file.
    pub ca_file: Option<Spanned<String>>,
    /// TLS server name (SNI and verification) instead of the host's.
    pub server_name: Option<Spanned<String>>,
    /// `"any"` (default), `"4"`, `"6"`, `"prefer4"` or `"prefer6"`.
    pub ip_version: Option<Spanned<String>>,
    /// The local address to connect from (an IPv4 or IPv6 address of this host); default
    /// `[defaults] source_address`, else the system's choice.
    pub source_address: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Confirmation re-probes while the check is suspect.
    pub retry_interval: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    /// `"adaptive"` or `"fixed"`; default from `[defaults]`.
    pub confirmation: Option<Spanned<String>>,
    /// Without conditions, a 2xx or 3xx answer is a success.
    #[serde(default)]
    pub conditions: Vec<Spanned<String>>,
}

impl Loader {
    pub(super) fn http_check(
        &mut self,
        source: &Source<'_>,
        raw: RawHttpCheck,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let mut ok = true;
        let url = match &raw.url {
            Some(u) => match Url::parse(u.get_ref()) {
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
            None => {
                let message = format!("check \"{}\" needs a url", raw.name.get_ref());
                self.report_at(source, &raw.name, message);
                None
            }
        };
        let method = self.http_method(source, "", raw.method.as_ref());
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
        let max_redirects =
            self.max_redirects(source, "", raw.max_redirects.as_ref(), raw.follow_redirects);
        let max_body_bytes = self.max_body_bytes(source, raw.max_body_bytes.as_ref());
        let conditions = self.conditions(source, "", &raw.conditions);
        let net = self.validate_net(source, &super::net::net_fields!(raw));
        if !ok {
            return None;
        }
        let kind = CheckKind::Http(HttpCheck {
            url: url?,
            method: method?,
            headers,
            body: raw.body,
            max_redirects: max_redirects?,
            max_body_bytes: max_body_bytes?,
            insecure: raw.insecure.unwrap_or(false),
            net: net?,
        });
        Some((kind, conditions?))
    }
}
