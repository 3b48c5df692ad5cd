//! `on_switch` webhooks: a templated JSON body rendered with the transition (pure), delivered
//! through the outbox like e-mail, so a help-centre banner or a CDN redirect rule follows the
//! switch even across a crash.
//!
//! Header values may name environment variables as `${NAME}`; they are resolved when the
//! request is sent and never stored, logged or shown in errors.

use super::http;
use crate::config::WebhookSpec;
use crate::failover::Transition;
use crate::store::{NewAnnouncement, OutboxItem, Receipt};
use crate::template::webhook::{self as template, BodyValues};
use crate::view::RouteView;
use reqwest::Method;
use std::collections::HashMap;

pub use crate::template::webhook::{env_refs, unknown_placeholders, DEFAULT_BODY, PLACEHOLDERS};

/// Renders `template` for `t` (see `crate::template::webhook`: string placeholders are
/// escaped for the inside of a JSON string, `{{routes}}` is a JSON object of route id to the
/// target now in use). A template that fails at send time (it passed validation) is logged
/// and the default body is sent, so the receiver still hears of the switch.
pub fn render(template: &str, t: &Transition, service_name: &str, routes: &[RouteView]) -> String {
    let values = values(t, service_name, routes);
    template::render(template, &values).unwrap_or_else(|e| {
        tracing::warn!(error = %e, service = %t.service, "webhook body template failed; sending the default body");
        template::render(DEFAULT_BODY, &values).unwrap_or_default()
    })
}

/// The placeholders' values for `t`: those of webhook bodies, and `target` (the first
/// route's target in use) for Help Center notices (`announce::zendesk`).
pub(super) fn values(t: &Transition, service_name: &str, routes: &[RouteView]) -> BodyValues {
    let side = routes.first().map_or(t.to.routes_side(), |r| r.active);
    let mut values = BodyValues::new();
    values
        .string("service", t.service.as_str())
        .string("service_name", service_name)
        .string("from", t.from.as_str())
        .string("to", t.to.as_str())
        .string("side", side.as_str())
        .string("cause", t.cause.as_str())
        .string("reason", t.reason.as_str())
        .string("at", t.at.rfc3339())
        .map(
            "routes",
            routes
                .iter()
                .map(|r| (r.id.clone(), r.active_target().to_owned())),
        )
        // For a hook that shows text to customers (a help-centre banner): the operator's
        // public words, empty when there are none; `reason` is internal.
        .string("public_message", t.public_message.as_deref().unwrap_or(""))
        .string(
            "target",
            routes.first().map_or("", |r| r.active_target()).to_owned(),
        );
    values
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
        self.deliver(item).await.map(|r| r.reply)
    }

    /// [`Webhooks::send`], answering the receiver's HTTP status beside its reply.
    pub async fn deliver(&self, item: &OutboxItem) -> Result<Receipt, WebhookError> {
        let id = item.recipients.first().cloned().unwrap_or_default();
        let hook = self
            .hooks
            .get(&id)
            .ok_or_else(|| WebhookError::Unknown(id.clone()))?;
        let mut headers = vec![("Content-Type", "application/json".to_string())];
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
            headers.push((name.as_str(), resolved));
        }
        let failed = |detail: String| WebhookError::Failed {
            hook: id.clone(),
            detail,
        };
        let method = Method::from_bytes(hook.method.as_bytes())
            .map_err(|_| failed(format!("{:?} is not an HTTP method", hook.method)))?;
        // A webhook is a message, not a probe: one request through the shared client (no
        // redirects followed, the receiver's answer read and capped), 2xx is delivered.
        let r = http::request(
            method,
            hook.url.as_str(),
            &headers,
            Some(item.text.clone()),
            hook.timeout,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
        match r.status {
            200..=299 => Ok(Receipt::http(
                r.status,
                format!("{} from {}", r.status, hook.url),
            )),
            status => Err(failed(format!("answered {status}, not 2xx"))),
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
            ["(syntax error: unexpected end of input, expected end of variable block, line 1)"]
        );
    }

    fn item(hook: &str, body: &str) -> OutboxItem {
        OutboxItem {
            id: 1,
            transition_id: 1,
            service: "ticket-submission".into(),
            audience: format!("hook-{hook}"),
            channel: "webhook".into(),
            kind: "failover".into(),
            message_id: "<m@example.com>".into(),
            recipients: vec![hook.into()],
            subject: String::new(),
            text: body.into(),
            html: None,
            status: crate::store::OutboxStatus::Pending,
            attempts: 0,
            created_at: Timestamp(0),
            next_attempt_at: Timestamp(0),
            last_attempt_at: None,
            last_error: None,
            delivered_at: None,
            detail: None,
            given_up_at: None,
        }
    }

    /// A receiver on loopback answering each connection with the next of `replies`;
    /// returns its base URL and every request it read.
    async fn receiver(
        replies: Vec<&'static str>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for reply in replies {
                let (mut s, _) = l.accept().await.unwrap();
                // The head, then as much body as Content-Length says.
                let mut got = Vec::new();
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    let done = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
                        body.len() >= len
                    });
                    if n == 0 || done {
                        break;
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&got).into_owned());
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (base, seen)
    }

    #[tokio::test]
    async fn a_webhook_is_one_request_with_its_secret_header_and_only_2xx_delivers() {
        let (base, seen) = receiver(vec![
            "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        ])
        .await;
        std::env::set_var("SB_UNIT_WEBHOOK_TOKEN", "s3cr3t");
        let spec = WebhookSpec {
            id: "banner".into(),
            url: format!("{base}/hooks/banner").parse().unwrap(),
            method: "PUT".into(),
            headers: vec![(
                "Authorization".into(),
                "Bearer ${SB_UNIT_WEBHOOK_TOKEN}".into(),
            )],
            body: None,
            timeout: std::time::Duration::from_secs(5),
        };
        let hooks = Webhooks::new([&spec]);
        // A redirect is not followed: the receiver has not taken the message.
        let err = hooks
            .send(&item("banner", "{\"a\":1}"))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "webhook \"banner\": answered 302, not 2xx");
        let ok = hooks.send(&item("banner", "{\"a\":1}")).await.unwrap();
        assert_eq!(ok, format!("204 from {base}/hooks/banner"));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for req in &seen {
            assert!(req.starts_with("PUT /hooks/banner HTTP/1.1\r\n"), "{req}");
            assert!(req.contains("authorization: Bearer s3cr3t\r\n"), "{req}");
            assert!(req.contains("content-type: application/json\r\n"), "{req}");
            assert!(req.ends_with("{\"a\":1}"), "{req}");
        }
        let err = hooks
            .send(&item("gone", "{}"))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "webhook \"gone\" is no longer configured");
    }
}
