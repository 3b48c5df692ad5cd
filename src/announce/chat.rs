//! Slack (`[chat]`): on-call's news as a Block Kit message — a header, what the service is
//! doing now, the state change, the routes, the evidence and links to the status page and
//! runbook — delivered from the outbox like e-mail.
//!
//! Two ways to post, by configuration:
//! - an incoming webhook (`webhook_url`): every message stands alone in the channel;
//! - a bot (`channel` and a token): `chat.postMessage`, one thread per incident. The first
//!   message about a service's incident opens the thread and its `ts` is kept in the store
//!   (`chat_threads`, migration 0012); later messages about it are replies (`thread_ts`),
//!   after a restart too; the message that ends it (failback, outage resolved, the end of a
//!   drill or maintenance) is the last reply, and the next incident opens a new thread. A crash
//!   between Slack's answer and the `ts` being kept makes the retry post a second top-level
//!   message: delivery is at least once, like every outbox channel.
//!
//! The webhook URL and the bot token are secrets: never logged, stored or put in an error
//! (the token is read from the environment or its file at send time).

use super::http;
use super::render::{Kind, Message, MessageContext};
use super::transport::{Failure, Receipt};
use crate::clock::Timestamp;
use crate::config::{ChatConfig, SlackBot, TokenSource};
use crate::failover::Transition;
use crate::store::{NewAnnouncement, OutboxItem, StoreError, StoreHandle};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// Each request's timeout.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Slack's limits: a header's text, a section's text and a field's text.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;

/// The chat row for an on-call message of `kind` about `t`: the Block Kit payload (without a
/// channel, which a bot adds at send time), with the subject as the notification text.
pub fn plan(kind: Kind, t: &Transition, ctx: &MessageContext, oncall: &Message) -> NewAnnouncement {
    NewAnnouncement {
        audience: "oncall".to_owned(),
        channel: "chat".to_owned(),
        kind: kind.as_str().to_owned(),
        recipients: vec!["chat".to_owned()],
        subject: oncall.subject.clone(),
        text: payload(t, ctx, oncall).to_string(),
        html: None,
    }
}

/// The message as Slack's Block Kit: pure, so its every kind is a snapshot
/// (`testdata/snapshots/messages/{kind}.chat.json`).
pub fn payload(t: &Transition, ctx: &MessageContext, oncall: &Message) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": cut(&oncall.subject, HEADER_MAX), "emoji": false },
    })];
    // The message's first paragraph says in words what happened.
    let lead = oncall.text.split("\n\n").next().unwrap_or("").trim();
    if !lead.is_empty() {
        blocks.push(section(&escape(lead)));
    }
    let mut fields = vec![
        field(
            "State",
            &format!("`{}` → `{}`", t.from.as_str(), t.to.as_str()),
        ),
        field("Cause", &format!("`{}`", t.cause.as_str())),
        field("Actor", &escape(&t.actor)),
        field("Time", &escape(&t.at.rfc3339())),
    ];
    fields.retain(|f| !f.is_null());
    blocks.push(json!({ "type": "section", "fields": fields }));
    let mut why = format!("*Reason*\n{}", escape(&t.reason));
    if let Some(m) = t.public_message.as_deref().filter(|m| !m.trim().is_empty()) {
        why.push_str(&format!("\n*Public message*\n{}", escape(m)));
    }
    blocks.push(section(&why));
    if !ctx.routes.is_empty() {
        let mut routes = String::from(if ctx.routes.len() == 1 {
            "*Route*"
        } else {
            "*Routes*"
        });
        for r in &ctx.routes {
            let go = if ctx.go_base_url.ends_with('/') {
                format!("{}{}", ctx.go_base_url, r.id)
            } else {
                format!("{}/{}", ctx.go_base_url, r.id)
            };
            routes.push_str(&format!(
                "\n• *{}*: {} ({}) · always the current one: {}",
                escape(&r.id),
                link(r.active_target(), r.active_target()),
                r.active.as_str(),
                link(&go, &go)
            ));
        }
        blocks.push(section(&routes));
    }
    let mut evidence = String::from("*Evidence*");
    if t.evidence.is_empty() {
        evidence.push_str("\n(none recorded)");
    }
    for e in &t.evidence {
        evidence.push_str(&format!("\n• {}", escape(e)));
    }
    for h in &ctx.holds {
        evidence.push_str(&format!("\n• hold: {}", escape(h)));
    }
    blocks.push(section(&evidence));
    let mut links = vec![link(&ctx.status_url, "Status page")];
    if let Some(rb) = &ctx.runbook {
        links.push(if is_http(rb) {
            link(rb, "Runbook")
        } else {
            format!("Runbook: {}", escape(rb))
        });
    }
    if !ctx.api_url.is_empty() {
        let api = ctx.api_url.trim_end_matches('/');
        links.push(link(
            &format!("{api}/services/{}", t.service),
            "Service API",
        ));
        links.push(link(
            &format!("{api}/audit?service={}", t.service),
            "Audit log",
        ));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": cut(&links.join(" · "), SECTION_MAX) }],
    }));
    json!({ "text": oncall.subject, "blocks": blocks })
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": cut(text, SECTION_MAX) } })
}

fn field(name: &str, value: &str) -> Value {
    json!({ "type": "mrkdwn", "text": cut(&format!("*{name}*\n{value}"), FIELD_MAX) })
}

/// Slack's mrkdwn escaping: `&`, `<` and `>` only.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn is_http(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// `<url|label>` for an http(s) URL; anything else (a `mailto:` route, a hostile string) is
/// escaped text, never a link.
fn link(url: &str, label: &str) -> String {
    if !is_http(url) {
        return escape(label);
    }
    let url = url
        .replace('|', "%7C")
        .replace('<', "%3C")
        .replace('>', "%3E");
    format!("<{url}|{}>", escape(label).replace('|', "¦"))
}

/// At most `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

/// Whether a message of this kind ends the incident (its thread gets no more replies).
fn ends_incident(kind: &str) -> bool {
    matches!(
        kind,
        "failback" | "outage_resolved" | "drill_end" | "maintenance_end"
    )
}

/// Sends `chat` rows.
pub struct Chat {
    cfg: ChatConfig,
    /// Where a bot keeps its threads; without it a bot posts every message top-level.
    store: Option<StoreHandle>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").field("cfg", &self.cfg).finish()
    }
}

impl Chat {
    pub fn new(cfg: ChatConfig) -> Chat {
        Chat { cfg, store: None }
    }

    /// A chat whose bot keeps one thread per incident in `store`.
    pub fn with_store(cfg: ChatConfig, store: StoreHandle) -> Chat {
        Chat {
            cfg,
            store: Some(store),
        }
    }

    pub async fn send(&self, item: &OutboxItem) -> Result<Receipt, Failure> {
        match (&self.cfg.bot, &self.cfg.webhook_url) {
            (Some(bot), _) => self.post_as_bot(bot, item).await,
            (None, Some(url)) => webhook(url, item).await,
            (None, None) => Err(Failure::from(
                "[chat] has neither a webhook nor a bot".to_owned(),
            )),
        }
    }

    async fn post_as_bot(&self, bot: &SlackBot, item: &OutboxItem) -> Result<Receipt, Failure> {
        let token = read_token(&bot.token)?;
        let mut body: Value = serde_json::from_str(&item.text)
            .map_err(|e| Failure::from(format!("unreadable chat row: {e}")))?;
        // Rows written before Block Kit hold `{"text": ...}`: they are sent as they are.
        body["channel"] = Value::String(bot.channel.clone());
        let thread = match &self.store {
            Some(store) => {
                let (service, channel) = (item.service.clone(), bot.channel.clone());
                store
                    .read(move |s| s.chat_thread(&service, &channel))
                    .await
                    .map_err(|e: StoreError| Failure::from(e.to_string()))?
            }
            None => None,
        };
        let ends = ends_incident(&item.kind);
        if let Some(ts) = &thread {
            body["thread_ts"] = Value::String(ts.clone());
            // The end of an incident is also shown in the channel, so nobody has to open
            // the thread to learn that it is over.
            if ends {
                body["reply_broadcast"] = Value::Bool(true);
            }
        }
        let url = format!("{}/chat.postMessage", bot.api_base);
        let r = http::request(
            Method::POST,
            &url,
            &[("Authorization", format!("Bearer {token}"))],
            Some(body.to_string()),
            TIMEOUT,
        )
        .await
        .map_err(|e| Failure::from(format!("chat.postMessage: {e}")))?;
        if r.status == 429 {
            return Err(Failure {
                message: "chat.postMessage: 429 rate limited".to_owned(),
                retry_after: r.retry_after,
            });
        }
        if !(200..=299).contains(&r.status) {
            return Err(Failure::from(format!(
                "chat.postMessage answered {}",
                r.status
            )));
        }
        // Slack answers 200 with `ok: false` and an error code for refusals.
        let answer: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        if answer["ok"] != Value::Bool(true) {
            let error = answer["error"].as_str().unwrap_or("an unreadable answer");
            let error: String = error.chars().take(100).collect();
            return Err(Failure::from(format!("chat.postMessage refused: {error}")));
        }
        let ts = answer["ts"].as_str().unwrap_or("").to_owned();
        let keep = match (&thread, ends) {
            // The incident is over: its thread gets no more replies.
            (Some(_), true) => Some(None),
            // The first message about an incident opens its thread. A vendor's note is about
            // no incident of ours (our checks pass), nor is a vantage's about itself, so they
            // open none.
            (None, false)
                if !ts.is_empty()
                    && !matches!(
                        item.kind.as_str(),
                        "vendor_notice" | "vantage_suspect" | "vantage_clear"
                    ) =>
            {
                Some(Some(ts.clone()))
            }
            _ => None,
        };
        if let (Some(keep), Some(store)) = (keep, &self.store) {
            let (service, channel) = (item.service.clone(), bot.channel.clone());
            let now = Timestamp::now();
            let kept = store
                .write(move |s| s.set_chat_thread(&service, &channel, keep.as_deref(), now))
                .await;
            if kept.is_err() {
                tracing::error!("chat: could not record the incident's thread");
            }
        }
        let reply = match thread {
            Some(parent) => format!("posted ts {ts} in thread {parent}"),
            None => format!("posted ts {ts}"),
        };
        Ok(Receipt::http(r.status, reply))
    }
}

/// The bot token, read now from its environment variable or file. Errors name the variable
/// or file, never the token.
fn read_token(source: &TokenSource) -> Result<String, Failure> {
    let token = match source {
        TokenSource::Env(name) => std::env::var(name).map_err(|_| {
            Failure::from(format!(
                "environment variable {name} (the Slack bot token) is not set"
            ))
        })?,
        TokenSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
            Failure::from(format!(
                "cannot read the Slack bot token file {}: {}",
                path.display(),
                e.kind()
            ))
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() || token.contains(|c: char| c.is_control() || c == ' ') {
        return Err(Failure::from(
            "the Slack bot token is empty or not one line of text".to_owned(),
        ));
    }
    Ok(token)
}

/// A row through the incoming webhook, as it is.
async fn webhook(url: &str, item: &OutboxItem) -> Result<Receipt, Failure> {
    let r = http::request(Method::POST, url, &[], Some(item.text.clone()), TIMEOUT)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_at_send_time_and_errors_never_show_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slack.token");
        std::fs::write(&file, "  xoxb-file-secret\n").unwrap();
        assert_eq!(
            read_token(&TokenSource::File(file.clone())).unwrap(),
            "xoxb-file-secret"
        );
        std::fs::write(&file, "xoxb-a\nxoxb-b\n").unwrap();
        let e = read_token(&TokenSource::File(file.clone())).unwrap_err();
        assert!(!e.message.contains("xoxb"), "{}", e.message);
        let e = read_token(&TokenSource::File(dir.path().join("missing"))).unwrap_err();
        assert!(e.message.contains("missing"), "{}", e.message);
        let e = read_token(&TokenSource::Env("SWITCHBOARD_TEST_NO_SUCH_TOKEN".into())).unwrap_err();
        assert_eq!(
            e.message,
            "environment variable SWITCHBOARD_TEST_NO_SUCH_TOKEN (the Slack bot token) is not set"
        );
    }

    #[test]
    fn debug_shows_neither_the_webhook_nor_a_token() {
        let chat = Chat::new(ChatConfig {
            webhook_url: Some("https://hooks.slack.com/services/T/B/s3cr3t".into()),
            bot: None,
        });
        let shown = format!("{chat:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn only_the_end_of_an_incident_closes_its_thread() {
        for kind in [
            "failback",
            "outage_resolved",
            "drill_end",
            "maintenance_end",
        ] {
            assert!(ends_incident(kind), "{kind}");
        }
        for kind in [
            "failover",
            "outage",
            "recovering",
            "flapping",
            "drill_start",
        ] {
            assert!(!ends_incident(kind), "{kind}");
        }
    }

    #[test]
    fn long_values_are_cut_to_slack_s_limits() {
        let long = "é".repeat(200);
        let cut = cut(&long, HEADER_MAX);
        assert_eq!(cut.chars().count(), HEADER_MAX);
        assert!(cut.ends_with('…'));
    }
}
