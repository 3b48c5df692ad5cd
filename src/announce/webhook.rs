//! `on_switch` webhooks: a templated JSON body rendered with the transition (pure), delivered
//! through the outbox like e-mail, so a help-centre banner or a CDN redirect rule follows the
//! switch even across a crash.
//!
//! Header values may name environment variables as `${NAME}`; they are resolved when the
//! request is sent and never stored, logged or shown in errors.

use crate::config::{CheckKind, CheckSpec, HttpCheck, Role, WebhookSpec};
use crate::failover::Transition;
use crate::probe::condition::Condition;
use crate::store::{NewAnnouncement, OutboxItem};
use crate::view::RouteView;
use std::collections::HashMap;

/// The placeholders a body template may use.
pub const PLACEHOLDERS: [&str; 10] = [
    "service",
    "service_name",
    "from",
    "to",
    "side",
    "cause",
    "reason",
    "at",
    "routes",
    "public_message",
];

/// The body sent when a webhook has no template: every placeholder, as JSON.
pub const DEFAULT_BODY: &str = r#"{"service":"{{service}}","service_name":"{{service_name}}","from":"{{from}}","to":"{{to}}","side":"{{side}}","cause":"{{cause}}","reason":"{{reason}}","at":"{{at}}","routes":{{routes}}}"#;

/// The placeholders used in `template` that are not known, for load-time validation.
pub fn unknown_placeholders(template: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            unknown.push(rest[start..].to_string());
            break;
        };
        let name = rest[start + 2..start + 2 + len].trim();
        if !PLACEHOLDERS.contains(&name) {
            unknown.push(name.to_string());
        }
        rest = &rest[start + 2 + len + 2..];
    }
    unknown
}

/// The environment variables named as `${NAME}` in `value`.
pub fn env_refs(value: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        match rest[start + 2..].find('}') {
            Some(len) => {
                names.push(&rest[start + 2..start + 2 + len]);
                rest = &rest[start + 3 + len..];
            }
            None => break,
        }
    }
    names
}

/// Text for a JSON string's inside: quotes, backslashes and control characters escaped.
fn json_inner(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// Renders `template` for `t`: string placeholders are JSON-escaped (write them inside quotes),
/// `{{routes}}` becomes a JSON object of route id to the target now in use.
pub fn render(template: &str, t: &Transition, service_name: &str, routes: &[RouteView]) -> String {
    let side = routes.first().map_or(t.to.routes_side(), |r| r.active);
    let route_map: serde_json::Map<String, serde_json::Value> = routes
        .iter()
        .map(|r| (r.id.clone(), r.active_target().into()))
        .collect();
    let values: HashMap<&str, String> = HashMap::from([
        ("service", json_inner(&t.service)),
        ("service_name", json_inner(service_name)),
        ("from", t.from.as_str().to_string()),
        ("to", t.to.as_str().to_string()),
        ("side", side.as_str().to_string()),
        ("cause", t.cause.as_str().to_string()),
        ("reason", json_inner(&t.reason)),
        ("at", t.at.rfc3339()),
        ("routes", serde_json::Value::Object(route_map).to_string()),
        // For a hook that shows text to customers (a help-centre banner): the operator's
        // public words, empty when there are none; `reason` is internal.
        (
            "public_message",
            json_inner(t.public_message.as_deref().unwrap_or("")),
        ),
    ]);
    let mut out = String::with_capacity(template.len() + 128);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("}}") {
            Some(len) => {
                let name = rest[start + 2..start + 2 + len].trim();
                match values.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 4 + len]),
                }
                rest = &rest[start + 4 + len..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The outbox rows for a route switch: one per webhook of the service.
pub fn plan(
    hooks: &[WebhookSpec],
    t: &Transition,
    service_name: &str,
    routes: &[RouteView],
) -> Vec<NewAnnouncement> {
    hooks
        .iter()
        .map(|h| NewAnnouncement {
            // One audience per hook keeps each row's Message-ID (the idempotency key) unique.
            audience: format!("hook-{}", h.id),
            channel: "webhook".to_string(),
            kind: super::Kind::of(t).as_str().to_string(),
            recipients: vec![h.id.clone()],
            subject: format!("{} {}", h.method, h.url),
            text: render(
                h.body.as_deref().unwrap_or(DEFAULT_BODY),
                t,
                service_name,
                routes,
            ),
            html: None,
        })
        .collect()
}

/// Why a webhook was not delivered. Never contains a header value.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {0:?} is no longer configured")]
    Unknown(String),
    #[error("environment variable {var} (for header {header} of webhook {hook:?}) is not set")]
    MissingEnv {
        var: String,
        header: String,
        hook: String,
    },
    #[error("webhook {hook:?}: {detail}")]
    Failed { hook: String, detail: String },
}

/// Every configured webhook by id, ready to send.
#[derive(Clone, Debug, Default)]
pub struct Webhooks {
    hooks: HashMap<String, WebhookSpec>,
}

impl Webhooks {
    pub fn new<'a>(hooks: impl IntoIterator<Item = &'a WebhookSpec>) -> Webhooks {
        Webhooks {
            hooks: hooks
                .into_iter()
                .map(|h| (h.id.clone(), h.clone()))
                .collect(),
        }
    }

    /// Sends one webhook row; 2xx is delivered, anything else is retried by the outbox.
    pub async fn send(&self, item: &OutboxItem) -> Result<String, WebhookError> {
        let id = item.recipients.first().cloned().unwrap_or_default();
        let hook = self
            .hooks
            .get(&id)
            .ok_or_else(|| WebhookError::Unknown(id.clone()))?;
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        for (name, value) in &hook.headers {
            let mut resolved = value.clone();
            for var in env_refs(value) {
                let v = std::env::var(var).map_err(|_| WebhookError::MissingEnv {
                    var: var.to_string(),
                    header: name.clone(),
                    hook: id.clone(),
                })?;
                resolved = resolved.replace(&format!("${{{var}}}"), &v);
            }
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), resolved));
        }
        // A webhook call is an HTTP request with one condition: the HTTP probe already does
        // timeouts, TLS, capped bodies and hostile peers right, so it is reused, not copied.
        let check = CheckSpec {
            name: format!("webhook {id}"),
            service: item.service.clone(),
            role: Role::Primary,
            interval: hook.timeout,
            timeout: hook.timeout,
            retry_interval: hook.timeout,
            failure_threshold: 1,
            success_threshold: 1,
            confirmation: Default::default(),
            conditions: vec![Condition::parse("[STATUS] < 300").map_err(|e| {
                WebhookError::Failed {
                    hook: id.clone(),
                    detail: e.to_string(),
                }
            })?],
            kind: CheckKind::Http(HttpCheck {
                url: hook.url.clone(),
                method: hook.method.clone(),
                headers,
                body: Some(item.text.clone()),
                max_redirects: 0,
                max_body_bytes: 64 * 1024,
                insecure: false,
                net: Default::default(),
            }),
        };
        let outcome = crate::probe::run(&check).await;
        match (outcome.success, outcome.status) {
            (true, Some(status)) => Ok(format!("{status} from {}", hook.url)),
            _ => Err(WebhookError::Failed {
                hook: id,
                detail: outcome.summary(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::failover::{Cause, Side, State};

    fn transition() -> Transition {
        Transition {
            service: "ticket-submission".into(),
            from: State::Operational,
            to: State::FailedOver,
            cause: Cause::PrimaryDown,
            at: Timestamp(1_700_000_000_000),
            actor: "system".into(),
            reason: "primary down; \"form\" answers 503".into(),
            evidence: vec![],
            public_message: None,
        }
    }

    fn routes() -> Vec<RouteView> {
        vec![RouteView {
            id: "submit-ticket".into(),
            service: "ticket-submission".into(),
            primary: "https://support.example.com/new".into(),
            backup: "https://forms.example.net/support".into(),
            active: Side::Backup,
        }]
    }

    #[test]
    fn the_default_body_is_valid_json_with_every_field() {
        let body = render(
            DEFAULT_BODY,
            &transition(),
            "Ticket \"submission\"",
            &routes(),
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["service"], "ticket-submission");
        assert_eq!(v["service_name"], "Ticket \"submission\"");
        assert_eq!(v["to"], "failed_over");
        assert_eq!(v["side"], "backup");
        assert_eq!(v["reason"], "primary down; \"form\" answers 503");
        assert_eq!(v["at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(
            v["routes"]["submit-ticket"],
            "https://forms.example.net/support"
        );
    }

    #[test]
    fn a_banner_hook_gets_the_public_message_escaped_for_json() {
        let t = Transition {
            public_message: Some("Use the \"backup\" form".into()),
            ..transition()
        };
        let body = render(
            r#"{"banner": "{{public_message}}"}"#,
            &t,
            "Tickets",
            &routes(),
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["banner"], "Use the \"backup\" form");
        let body = render(
            r#"{"banner": "{{public_message}}"}"#,
            &transition(),
            "T",
            &routes(),
        );
        assert_eq!(body, r#"{"banner": ""}"#);
    }

    #[test]
    fn templates_fill_known_placeholders_and_validation_names_unknown_ones() {
        let t = r#"{"banner": "{{ service_name }} is on its {{side}} route", "state": "{{to}}"}"#;
        assert!(unknown_placeholders(t).is_empty());
        assert_eq!(
            render(t, &transition(), "Tickets", &routes()),
            r#"{"banner": "Tickets is on its backup route", "state": "failed_over"}"#
        );
        assert_eq!(
            unknown_placeholders("{{state}} {{service}} {{oops"),
            ["state", "{{oops"]
        );
    }

    #[test]
    fn env_references_are_found() {
        assert_eq!(env_refs("Bearer ${CDN_TOKEN}"), ["CDN_TOKEN"]);
        assert_eq!(env_refs("${A}:${B}"), ["A", "B"]);
        assert!(env_refs("plain").is_empty());
    }
}
