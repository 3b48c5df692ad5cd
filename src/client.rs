//! The HTTP client behind `switchboard status`, `drill ...`, `failover` and `failback`: one request to the control API, answered as JSON.
//!
//! The shared reqwest client (`announce::http::client`: HTTP/1.1, no redirects, no proxy)
//! to `SWITCHBOARD_URL`: plain `http://` (the daemon listens on loopback by default), or
//! `https://` to a daemon behind a TLS proxy, verified against the webpki roots or, with
//! `SWITCHBOARD_CA_FILE`, a private CA. The token is never sent in clear text to an
//! `https://` URL: there is no fallback.

use crate::announce::http::{self, HttpError, Roots};
use std::path::Path;
use std::time::Duration;

/// The default daemon address (`[server] listen` default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9898";
/// How long one request may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("SWITCHBOARD_URL {0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    #[error("CA file {path}: {detail}")]
    BadCa { path: String, detail: String },
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
}

/// An HTTP answer: status and body text.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The `message` of an error body, or the raw body.
    pub fn error_message(&self) -> String {
        self.json()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| self.body.trim().to_string())
    }
}

/// The daemon to talk to and the token to present.
#[derive(Clone, Debug)]
pub struct Client {
    /// `host:port`, as errors name it.
    host: String,
    /// `scheme://host:port` plus the URL's path without its trailing `/`.
    base: String,
    https: bool,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let u = url::Url::parse(url).map_err(|_| ClientError::BadUrl(url.to_string()))?;
        let https = match u.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(ClientError::BadUrl(url.to_string())),
        };
        let host = u
            .host_str()
            .ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
        let port = u.port_or_known_default().unwrap_or(80);
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let base_path = u.path().trim_end_matches('/').to_string();
        Ok(Client {
            base: format!("{}://{host}{base_path}", u.scheme()),
            host,
            https,
            token: token.filter(|t| !t.is_empty()),
            http: build(&Roots::Webpki)?,
        })
    }

    /// Verifies an `https://` daemon against the CA certificates in `path` (PEM) instead of
    /// the webpki roots; no effect on `http://`.
    pub fn with_ca_file(mut self, path: &Path) -> Result<Client, ClientError> {
        if self.https {
            let certs = crate::pem::read_certificates(path).map_err(|e| ClientError::BadCa {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
            self.http = build(&Roots::Certificates(certs)).map_err(|e| match e {
                ClientError::BadUrl(detail) => ClientError::BadCa {
                    path: path.display().to_string(),
                    detail,
                },
                other => other,
            })?;
        }
        Ok(self)
    }

    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// Sends one request; `body` is JSON.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        tokio::time::timeout(TIMEOUT, self.send_inner(method, path, body))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Unreachable {
                    url: self.host.clone(),
                    detail: format!("no answer within {}s", TIMEOUT.as_secs()),
                })
            })
    }

    async fn send_inner(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        let origin = format!("{}://{}", self.scheme(), self.host);
        let unreachable = |detail: String| ClientError::Unreachable {
            url: origin.clone(),
            detail,
        };
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| unreachable(e.to_string()))?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let failed = |e: reqwest::Error| {
            unreachable(match http::classify(e, &origin) {
                HttpError::Tls(_, detail) => format!("TLS: {detail}"),
                HttpError::Connect(_, detail)
                | HttpError::Http(_, detail)
                | HttpError::Url(detail) => detail,
                other => other.to_string(),
            })
        };
        let res = req.send().await.map_err(failed)?;
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(failed)?;
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// The shared client for `roots`; a TLS set-up failure is reported like a bad URL was.
fn build(roots: &Roots) -> Result<reqwest::Client, ClientError> {
    http::client(roots).map_err(|e| ClientError::BadUrl(e.to_string()))
}

/// Exit codes of the client commands (documented in README.md).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The daemon refused (409) or the drill failed.
    pub const REFUSED: u8 = 1;
    /// Usage: bad arguments, unknown service or drill, invalid values.
    pub const USAGE: u8 = 2;
    /// Unreachable, or not authenticated / authorised.
    pub const UNREACHABLE: u8 = 3;

    /// The exit code for an HTTP status.
    pub fn of_status(status: u16) -> u8 {
        match status {
            200..=299 => OK,
            401 | 403 | 429 => UNREACHABLE,
            409 => REFUSED,
            400..=499 => USAGE,
            _ => REFUSED,
        }
    }
}

/// One line per service for `switchboard status`.
pub fn format_services(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let services = v["services"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "{:<24} {:<12} {:<8} {:<26} {}\n",
        "SERVICE", "STATE", "SIDE", "SINCE", "CAUSE / HOLDS"
    ));
    for s in services {
        let mut holds = Vec::new();
        if let Some(p) = s["holds"]["pin"].as_object() {
            holds.push(format!(
                "pinned to {} by {}",
                p.get("side").and_then(|x| x.as_str()).unwrap_or("?"),
                p.get("actor").and_then(|x| x.as_str()).unwrap_or("?")
            ));
        }
        if let Some(d) = s["holds"]["drill"].as_object() {
            holds.push(format!(
                "drill {} ({}) until {}",
                d.get("id").and_then(|x| x.as_str()).unwrap_or("?"),
                d.get("mode").and_then(|x| x.as_str()).unwrap_or("?"),
                d.get("until").and_then(|x| x.as_str()).unwrap_or("?")
            ));
        }
        if s["holds"]["maintenance"].is_object() {
            holds.push("maintenance".to_string());
        }
        // Holds that change what the automatic rules do, with their end: "until ...".
        for h in s["holds"]["in_force"].as_array().into_iter().flatten() {
            holds.push(format!(
                "{} {}",
                h["hold"].as_str().unwrap_or("?"),
                h["until"]
                    .as_str()
                    .map(|t| format!("until {t}"))
                    .unwrap_or_else(|| "until an operator ends it".into())
            ));
        }
        let down: Vec<String> = s["checks"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|c| c["health"] != "healthy")
                    .map(|c| {
                        format!(
                            "{} {}",
                            c["name"].as_str().unwrap_or("?"),
                            c["health"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut tail = s["cause"].as_str().unwrap_or("").to_string();
        if !holds.is_empty() {
            tail.push_str(&format!(" [{}]", holds.join("; ")));
        }
        if !down.is_empty() {
            tail.push_str(&format!(" (checks: {})", down.join(", ")));
        }
        out.push_str(&format!(
            "{:<24} {:<12} {:<8} {:<26} {}\n",
            s["id"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["side"].as_str().unwrap_or("?"),
            s["since"].as_str().unwrap_or("?"),
            tail
        ));
        out.push_str(&format_thresholds(&s));
    }
    out
}

/// An indented line naming each check's failure threshold in force, and how it was set:
/// `  thresholds: ticket-form 5 of 3..6 (adaptive), backup-form 3 (fixed)`.
fn format_thresholds(s: &serde_json::Value) -> String {
    let checks = s["checks"].as_array().cloned().unwrap_or_default();
    let parts: Vec<String> = checks
        .iter()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            let effective = c["effective_failure_threshold"].as_u64()?;
            let configured = c["failure_threshold"].as_u64()?;
            Some(match c["confirmation"].as_str() {
                Some("adaptive") => format!(
                    "{name} {effective} of {configured}..{} (adaptive)",
                    configured + u64::from(crate::health::NOISE_MAX_EXTRA)
                ),
                _ => format!("{name} {effective} (fixed)"),
            })
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!("  failure thresholds: {}\n", parts.join(", "))
}

/// `GET /api/v1/audit`'s JSON lines as a table for `switchboard audit list`: one line per
/// record, a `*` marking an automatic transition still pending review.
/// `GET /api/v1/cluster` as `switchboard status` prints it: the leader, this node's lease,
/// and one line per node with its role, applied log entry and sync state.
pub fn format_cluster(v: &serde_json::Value) -> String {
    let mut out = String::from("\ncluster");
    let leader = v["leader"].as_str().unwrap_or("none");
    out.push_str(&format!(
        " (seen from {}): leader {leader}; etcd {}; lease renewed {} ago\n",
        v["node"].as_str().unwrap_or("?"),
        if v["etcd_up"].as_bool() == Some(true) {
            "reachable"
        } else {
            "UNREACHABLE"
        },
        v["lease_age_seconds"]
            .as_f64()
            .map_or_else(|| "never".to_string(), |s| format!("{s:.1}s")),
    ));
    out.push_str(&format!(
        "  {:<16} {:<9} {:>8}  {:<8} {}\n",
        "NODE", "ROLE", "APPLIED", "SYNC", "URL"
    ));
    for n in v["nodes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<16} {:<9} {:>8}  {:<8} {}\n",
            n["name"].as_str().unwrap_or("?"),
            n["role"].as_str().unwrap_or("?"),
            n["applied"].as_u64().unwrap_or(0),
            if n["in_sync"].as_bool() == Some(true) {
                "in sync"
            } else {
                "behind"
            },
            n["url"].as_str().unwrap_or(""),
        ));
    }
    let vantages: Vec<String> = v["vantages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let name = x["name"].as_str().unwrap_or("?");
            if x["suspect"].as_bool() == Some(true) {
                format!("{name} (SUSPECT: own network; not counted)")
            } else {
                name.to_string()
            }
        })
        .collect();
    if !vantages.is_empty() {
        out.push_str(&format!("vantages: {}\n", vantages.join(", ")));
    }
    for d in v["disagreements"].as_array().into_iter().flatten() {
        let votes: Vec<String> = d["votes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                format!(
                    "{} {}{}",
                    x["vantage"].as_str().unwrap_or("?"),
                    x["health"].as_str().unwrap_or("?"),
                    if x["counted"].as_bool() == Some(false) {
                        " (not counted)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        out.push_str(&format!(
            "  vantages disagree on {}/{}: {}; decided {} ({} needed of {} counted){}\n",
            d["service"].as_str().unwrap_or("?"),
            d["check"].as_str().unwrap_or("?"),
            votes.join(", "),
            d["decided"].as_str().unwrap_or("nothing"),
            d["needed"],
            d["counted"],
            d["blocked"]
                .as_str()
                .map(|b| format!(": {b}"))
                .unwrap_or_default(),
        ));
    }
    out
}

pub fn format_audit(jsonl: &str) -> String {
    let mut out = format!(
        "{:<6} {:<26} {:<16} {:<24} {:<28} {:<16} {}\n",
        "ID", "AT", "KIND", "SERVICE", "CHANGE", "ACTOR", "REASON"
    );
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let change = match (r["from"].as_str(), r["to"].as_str()) {
            (Some(f), Some(t)) => format!("{f} -> {t}"),
            _ => r["detail"]["command"].as_str().unwrap_or("").to_string(),
        };
        let pending = if r["pending_review"] == true { "*" } else { "" };
        out.push_str(&format!(
            "{:<6} {:<26} {:<16} {:<24} {:<28} {:<16} {}\n",
            format!("{}{pending}", r["id"]),
            r["at"].as_str().unwrap_or("?"),
            r["kind"].as_str().unwrap_or("?"),
            r["service"].as_str().unwrap_or("-"),
            change,
            r["actor"].as_str().unwrap_or("?"),
            r["reason"]
                .as_str()
                .or(r["unreadable"].as_str())
                .unwrap_or("")
        ));
    }
    out
}

/// A drill report as text: header, then one line per step.
pub fn format_drill(v: &serde_json::Value) -> String {
    let mut out = format!(
        "drill {} of {} ({}): {}\n  by {} — {}{}\n  started {}, deadline {}{}\n",
        v["id"].as_str().unwrap_or("?"),
        v["service"].as_str().unwrap_or("?"),
        v["mode"].as_str().unwrap_or("?"),
        v["status"].as_str().unwrap_or("?"),
        v["actor"].as_str().unwrap_or("?"),
        v["reason"].as_str().unwrap_or(""),
        v["ticket"]
            .as_str()
            .map(|t| format!(" (ticket {t})"))
            .unwrap_or_default(),
        v["started_at"].as_str().unwrap_or("?"),
        v["deadline"].as_str().unwrap_or("?"),
        v["ended_at"]
            .as_str()
            .map(|t| format!(", ended {t}"))
            .unwrap_or_default(),
    );
    if let Some(why) = v["interruption"].as_str() {
        out.push_str(&format!("  interrupted: {why}\n"));
    }
    for s in v["steps"].as_array().cloned().unwrap_or_default() {
        let timing = match (s["duration_seconds"].as_f64(), s["target_seconds"].as_f64()) {
            (Some(d), Some(t)) => format!("{d:.2}s / target {t:.0}s"),
            (Some(d), None) => format!("{d:.2}s"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<8} {:<22} {:<22} {}\n",
            s["status"].as_str().unwrap_or("?"),
            s["name"].as_str().unwrap_or("?"),
            timing,
            s["detail"].as_str().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https_and_keep_their_path() {
        let c = Client::new("http://127.0.0.1:9999/sb/", None).unwrap();
        assert_eq!(c.host, "127.0.0.1:9999");
        assert_eq!(c.base, "http://127.0.0.1:9999/sb");
        assert!(!c.https);
        let s = Client::new("https://status.example.com/", None).unwrap();
        assert_eq!(s.host, "status.example.com:443");
        assert_eq!(s.base, "https://status.example.com:443");
        assert!(s.https);
        assert!(Client::new("ftp://example.com", None).is_err());
        assert!(Client::new("not a url", None).is_err());
        assert_eq!(
            Client::new("http://localhost", None).unwrap().host,
            "localhost:80"
        );
    }

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        assert_eq!(exit::of_status(200), 0);
        assert_eq!(exit::of_status(201), 0);
        assert_eq!(exit::of_status(409), 1);
        assert_eq!(exit::of_status(404), 2);
        assert_eq!(exit::of_status(422), 2);
        assert_eq!(exit::of_status(401), 3);
        assert_eq!(exit::of_status(403), 3);
        assert_eq!(exit::of_status(500), 1);
    }
}
