//! `kind = "steps"`, or any check with `[[check.step]]`: HTTP requests in order, one cookie jar,
//! values carried from one step to the next by `${var}` templates and `extract` rules.

use super::{Loader, Source};
use crate::config::{CheckKind, HttpStep, StepsCheck};
use crate::lang::condition::Condition;
use crate::lang::template::{Context, Extraction, Template};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use toml::Spanned;
use url::Url;

/// A multi-step check. Requests, their conditions and redirects belong on each step; the
/// check's `timeout` bounds the whole sequence.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStepsCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"steps"`; a check with `[[check.step]]` and no `kind` is one too.
    pub kind: Option<Spanned<String>>,
    /// The requests (`[[check.step]]`), in order.
    #[serde(default)]
    pub step: Vec<Spanned<RawStep>>,
    /// Default 1 MiB per response; the rest of a body is never read.
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

impl Loader {
    pub(super) fn steps_check(
        &mut self,
        source: &Source<'_>,
        raw: RawStepsCheck,
        timeout: Duration,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let mut ok = true;
        if raw.step.is_empty() {
            let message = format!(
                "check \"{}\" of kind \"steps\" needs at least one [[check.step]]",
                raw.name.get_ref()
            );
            self.report_at(source, &raw.name, message);
            ok = false;
        }
        let max_body_bytes = self.max_body_bytes(source, raw.max_body_bytes.as_ref());
        let net = self.validate_net(source, &super::net::net_fields!(raw));
        let steps = self.validate_steps(source, &raw.step, timeout);
        if !ok {
            return None;
        }
        let kind = CheckKind::Steps(StepsCheck {
            steps: steps?,
            max_body_bytes: max_body_bytes?,
            insecure: raw.insecure.unwrap_or(false),
            net: net?,
        });
        // Conditions belong to each step.
        Some((kind, Vec::new()))
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
                let filled = t.render(&stand_in, Context::Url).unwrap_or_default();
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
                        let filled = t.render(&stand_in, Context::Text).unwrap_or_default();
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
            let method = self.http_method(source, &format!("{prefix}: "), step.method.as_ref());
            let max_redirects = self.max_redirects(
                source,
                &format!("{prefix}: "),
                step.max_redirects.as_ref(),
                step.follow_redirects,
            );
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
            let conditions = self.conditions(source, &format!("{prefix}: "), &step.conditions);
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
            match (url, body, method, max_redirects, timeout, conditions) {
                (
                    Some(url),
                    Some(body),
                    Some(method),
                    Some(max_redirects),
                    Some(timeout),
                    Some(conditions),
                ) if headers_ok && extract_ok => {
                    steps.push(HttpStep {
                        name,
                        url,
                        method,
                        headers,
                        body,
                        max_redirects,
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
}
