//! A minimal Chrome DevTools Protocol client over the browser's pipe: one command at a time,
//! its reply awaited, events read past and dropped (the probe polls the page instead of
//! following events, which keeps this client a request/reply loop with no task of its own).

use super::process::Browser;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest message believed: a full-page PNG screenshot in base64 is a few MiB; a browser
/// sending more is broken, and the probe's memory stays bounded.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// What went wrong talking to the browser.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    #[error("the browser closed its DevTools pipe")]
    Closed,
    #[error("DevTools pipe: {0}")]
    Io(#[from] std::io::Error),
    #[error("the browser sent a message over {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("the browser sent a message that is not JSON")]
    Malformed,
    #[error("{method}: {message}")]
    Command { method: String, message: String },
}

pub struct Cdp {
    browser: Browser,
    next_id: u64,
    buffer: Vec<u8>,
    /// The page's target and session (`Target.attachToTarget` with `flatten`).
    target: Option<String>,
    session: Option<String>,
    /// The HTTP status of the last document the page received (`Network.responseReceived`),
    /// the one event this client keeps: a failed navigation reports only an error name.
    pub document_status: Option<u16>,
}

impl Cdp {
    pub fn new(browser: Browser) -> Cdp {
        Cdp {
            browser,
            next_id: 1,
            buffer: Vec::with_capacity(64 * 1024),
            target: None,
            session: None,
            document_status: None,
        }
    }

    /// The browser, back for closing.
    pub fn into_browser(self) -> Browser {
        self.browser
    }

    /// Opens a new tab and attaches to it; later `page` commands go to it.
    pub async fn open_page(&mut self) -> Result<(), CdpError> {
        let target = self
            .browser_command("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let id = target["targetId"].as_str().ok_or(CdpError::Malformed)?;
        self.target = Some(id.to_string());
        self.attach().await?;
        self.page("Network.enable", json!({})).await?;
        Ok(())
    }

    /// Attaches (again) to the tab. A failed navigation moves the tab to an error page in
    /// another renderer, which ends the old session: taking the screenshot then needs a new one.
    pub async fn attach(&mut self) -> Result<(), CdpError> {
        let id = self.target.clone().ok_or(CdpError::Malformed)?;
        let attached = self
            .browser_command(
                "Target.attachToTarget",
                json!({ "targetId": id, "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"].as_str().ok_or(CdpError::Malformed)?;
        self.session = Some(session.to_string());
        Ok(())
    }

    /// A command to the browser itself.
    pub async fn browser_command(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Value, CdpError> {
        self.call(method, params, None).await
    }

    /// A command to the attached page.
    pub async fn page(&mut self, method: &str, params: Value) -> Result<Value, CdpError> {
        let session = self.session.clone();
        self.call(method, params, session).await
    }

    /// Evaluates a JavaScript expression in the page and returns its value (JSON). An exception
    /// thrown by the expression (a selector the browser cannot parse, say) is an error.
    pub async fn evaluate(&mut self, expression: &str) -> Result<Value, CdpError> {
        let reply = self
            .page(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await?;
        if let Some(details) = reply.get("exceptionDetails") {
            let message = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("exception")
                .lines()
                .next()
                .unwrap_or("exception")
                .to_string();
            return Err(CdpError::Command {
                method: "Runtime.evaluate".to_string(),
                message,
            });
        }
        Ok(reply["result"]["value"].clone())
    }

    async fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<String>,
    ) -> Result<Value, CdpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = Value::String(s);
        }
        let mut bytes = serde_json::to_vec(&message).map_err(|_| CdpError::Malformed)?;
        bytes.push(0);
        self.browser.to_browser.write_all(&bytes).await?;
        loop {
            let reply = self.read_message().await?;
            // Events and replies to other sessions' commands are not ours, but for the status
            // of the page's document.
            if reply.get("id").and_then(Value::as_u64) != Some(id) {
                if reply["method"] == "Network.responseReceived"
                    && reply["params"]["type"] == "Document"
                {
                    self.document_status = reply["params"]["response"]["status"]
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok());
                }
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(CdpError::Command {
                    method: method.to_string(),
                    message: error["message"].as_str().unwrap_or("error").to_string(),
                });
            }
            return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// The next NUL-terminated message from the browser.
    async fn read_message(&mut self) -> Result<Value, CdpError> {
        let mut scanned = 0;
        loop {
            if let Some(end) = self.buffer[scanned..].iter().position(|b| *b == 0) {
                let end = scanned + end;
                let parsed = serde_json::from_slice(&self.buffer[..end]);
                self.buffer.drain(..=end);
                return parsed.map_err(|_| CdpError::Malformed);
            }
            scanned = self.buffer.len();
            if self.buffer.len() > MAX_MESSAGE {
                return Err(CdpError::TooLarge);
            }
            // Read straight into the buffer: a chunk array held across this await would sit
            // in every enclosing future, and debug builds copy those through the stack.
            self.buffer.reserve(64 * 1024);
            let n = self.browser.from_browser.read_buf(&mut self.buffer).await?;
            if n == 0 {
                return Err(CdpError::Closed);
            }
        }
    }
}
