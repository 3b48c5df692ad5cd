//! A Slack-compatible incoming webhook (`[chat] webhook_url`): on-call's news as one short
//! chat message, `{"text": ...}`, delivered from the outbox like e-mail.
//!
//! The URL is the secret (whoever has it can post), so it is never logged or put in an
//! error; only the receiver's scheme, host and port are.

use super::http;
use super::render::{Kind, Message};
use super::transport::{Failure, Receipt};
use crate::config::ChatConfig;
use crate::store::{NewAnnouncement, OutboxItem};
use reqwest::Method;
use std::time::Duration;

/// Each request's timeout.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The chat row for an on-call message of `kind`: the subject in bold, then the body
/// without the signature.
pub fn plan(kind: Kind, oncall: &Message) -> NewAnnouncement {
    let body = oncall.text.split("\n-- \n").next().unwrap_or("").trim_end();
    let payload = serde_json::json!({ "text": format!("*{}*\n{body}", oncall.subject) });
    NewAnnouncement {
        audience: "oncall".to_owned(),
        channel: "chat".to_owned(),
        kind: kind.as_str().to_owned(),
        recipients: vec!["chat".to_owned()],
        subject: oncall.subject.clone(),
        text: payload.to_string(),
        html: None,
    }
}

/// Sends `chat` rows.
pub struct Chat {
    cfg: ChatConfig,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chat { webhook_url: <redacted> }")
    }
}

impl Chat {
    pub fn new(cfg: ChatConfig) -> Chat {
        Chat { cfg }
    }

    pub async fn send(&self, item: &OutboxItem) -> Result<Receipt, Failure> {
        let r = http::request(
            Method::POST,
            &self.cfg.webhook_url,
            &[],
            Some(item.text.clone()),
            TIMEOUT,
        )
        .await
        .map_err(|e| Failure::from(format!("chat webhook: {e}")))?;
        match r.status {
            200..=299 => Ok(Receipt::http(
                r.status,
                format!("{} from the chat webhook", r.status),
            )),
            429 => Err(Failure {
                message: "chat webhook: 429 rate limited".to_owned(),
                retry_after: r.retry_after,
            }),
            status => Err(Failure::from(format!(
                "chat webhook answered {status}: {}",
                r.body.chars().take(200).collect::<String>()
            ))),
        }
    }
}
