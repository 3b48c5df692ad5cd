//! A bare HTTP/1.1 peer for the tests that play the server: one request read exactly (head,
//! then as many body bytes as `Content-Length` says, nothing beyond, so a kept-alive
//! connection's next request stays unread) from a blocking or a tokio stream, and a webhook
//! receiver that records what it is sent.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A request as the peer received it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The request line and header lines, as sent.
    pub head: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the head; the body follows, `content_length()` bytes of it.
    fn from_head(head: &[u8]) -> Request {
        let head = String::from_utf8_lossy(head)
            .trim_end_matches("\r\n")
            .to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let path = first.next().unwrap_or_default().to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Request {
            head,
            method,
            path,
            headers,
            body: Vec::new(),
        }
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads one request from a blocking stream; `None` if the peer closes (or the stream's read
/// timeout passes) before the head is complete.
pub fn read(stream: &mut impl Read) -> Option<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let mut request = Request::from_head(&head);
    request.body = vec![0u8; request.content_length()];
    stream.read_exact(&mut request.body).ok()?;
    Some(request)
}

/// `read` for a tokio stream.
pub async fn read_async(stream: &mut (impl AsyncRead + Unpin)) -> Option<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let mut request = Request::from_head(&head);
    request.body = vec![0u8; request.content_length()];
    stream.read_exact(&mut request.body).await.ok()?;
    Some(request)
}

/// A webhook receiver on 127.0.0.1 at `/hooks/banner` that records every whole request it
/// is sent; it answers the first `refuse` with 503, as a receiver that is briefly down does,
/// and 200 after.
pub struct Receiver {
    pub url: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub fn start(refuse: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/hooks/banner",
            listener.local_addr().expect("addr")
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(request) = read(&mut s) else {
                    continue;
                };
                let n = {
                    let mut seen = log.lock().expect("lock");
                    seen.push(request);
                    seen.len()
                };
                let status = if n <= refuse {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, seen }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Slack's Web API on 127.0.0.1 as far as a bot uses it: `POST /api/chat.postMessage`
/// answered like Slack (`200 {"ok": true, "ts": ...}` with a new `ts` each time, or
/// `{"ok": false, "error": "invalid_auth"}` when the bearer token is not `token`), every
/// request recorded. `base` is the API base (`http://127.0.0.1:PORT/api`).
pub struct SlackApi {
    pub base: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl SlackApi {
    pub fn start(token: &str) -> SlackApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}/api", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let bearer = format!("Bearer {token}");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(request) = read(&mut s) else {
                    continue;
                };
                let authorised = request.header("authorization") == Some(bearer.as_str());
                let n = {
                    let mut seen = log.lock().expect("lock");
                    seen.push(request);
                    seen.len()
                };
                let body = if authorised {
                    format!(r#"{{"ok":true,"channel":"C0SUPPORT","ts":"1700000000.{n:06}"}}"#)
                } else {
                    r#"{"ok":false,"error":"invalid_auth"}"#.to_string()
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        SlackApi { base, seen }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().expect("lock").clone()
    }
}
