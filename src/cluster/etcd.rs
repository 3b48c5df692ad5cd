//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/...`): leases, ranges, transactions and watches.
//!
//! Why the gateway and not gRPC: the gRPC client crates generate their code with `protoc` at
//! build time, which a fresh machine with only the Rust toolchain does not have, and the
//! gateway is part of every etcd server since 3.3 (`/v3/` paths since 3.4). The daemon needs
//! only a handful of calls, all of them plain request/response except `watch`, which the
//! gateway streams as one JSON object per event batch. Keys and values are base64 in the
//! JSON, and 64-bit integers are strings; both are hidden here.
//!
//! Endpoints are tried in turn: a request that cannot reach one member (refused, timed out,
//! 5xx) goes to the next, and the one that answered is used first next time. Each request
//! has its own deadline, so a hung member costs at most that.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered: the cluster (or this node's network) is unreachable.
    #[error("etcd unreachable ({0})")]
    Unreachable(String),
    /// etcd answered with an error (a bad request, no quorum, authentication).
    #[error("etcd refused {path}: HTTP {status}: {message}")]
    Refused {
        path: &'static str,
        status: u16,
        message: String,
    },
    /// The answer was not the JSON etcd sends.
    #[error("etcd answered {path} with something unexpected: {0}", path = .1)]
    Protocol(String, &'static str),
}

/// One key-value pair as etcd stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A transaction's condition.
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key was created at this revision (0: the key does not exist).
    CreateRevision(Vec<u8>, i64),
}

/// A request inside a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
}

/// What a transaction did.
#[derive(Clone, Debug)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// The pairs each `Op::Get` of the branch that ran found, in order.
    pub gets: Vec<Vec<Kv>>,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Put(Kv),
    Delete { key: Vec<u8>, mod_revision: i64 },
}

/// What a watch delivers: changes in revision order, or the reason it ended.
#[derive(Debug)]
pub enum WatchItem {
    Events(Vec<Event>),
    /// The watch stopped (stream closed, member gone, history compacted); start a new one
    /// from the last revision seen + 1.
    Ended(String),
}

/// A client for one etcd cluster.
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    timeout: Duration,
}

impl Etcd {
    /// A client for `endpoints` (`http(s)://host:port`), each request bounded by `timeout`.
    /// `ca_pem` adds a private CA for `https://` endpoints.
    pub fn new(
        endpoints: Vec<String>,
        credentials: Option<(String, String)>,
        ca_pem: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Etcd, EtcdError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy();
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| EtcdError::Protocol(format!("ca_file: {e}"), "client"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| EtcdError::Protocol(e.to_string(), "client"))?;
        Ok(Etcd {
            http,
            endpoints,
            current: AtomicUsize::new(0),
            credentials,
            token: Mutex::new(None),
            timeout,
        })
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Grants a lease of `ttl` seconds; its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", json!({ "TTL": ttl.as_secs().max(1) }))
            .await?;
        int(&v["ID"]).ok_or_else(|| EtcdError::Protocol("no lease ID".into(), "/v3/lease/grant"))
    }

    /// Renews a lease; its remaining TTL in seconds, or `None` when it has expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        let ttl = int(&v["result"]["TTL"]).unwrap_or(0);
        Ok((ttl > 0).then_some(ttl))
    }

    /// Ends a lease now, deleting the keys attached to it.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
            .map(|_| ())
    }

    /// The pairs under `prefix` (or the one `key` when `prefix` is false), and the store's
    /// revision they were read at.
    pub async fn get(&self, key: &[u8], prefix: bool) -> Result<(Vec<Kv>, i64), EtcdError> {
        let mut body = json!({ "key": B64.encode(key) });
        if prefix {
            body["range_end"] = json!(B64.encode(prefix_end(key)));
        }
        let v = self.call("/v3/kv/range", body).await?;
        Ok((kvs(&v["kvs"]), int(&v["header"]["revision"]).unwrap_or(0)))
    }

    /// Puts a pair (attached to `lease` unless it is 0); the new revision.
    pub async fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let mut body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        let v = self.call("/v3/kv/put", body).await?;
        Ok(int(&v["header"]["revision"]).unwrap_or(0))
    }

    /// Deletes a key (nothing happens if it is absent).
    pub async fn delete(&self, key: &[u8]) -> Result<(), EtcdError> {
        self.call("/v3/kv/deleterange", json!({ "key": B64.encode(key) }))
            .await
            .map(|_| ())
    }

    /// If every compare holds, runs `success`, else `failure`, atomically.
    pub async fn txn(
        &self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResult, EtcdError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::CreateRevision(key, rev) => json!({
                    "key": B64.encode(key),
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": rev.to_string(),
                }),
            })
            .collect();
        let body = json!({
            "compare": compare,
            "success": success.iter().map(op_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
        });
        let v = self.call("/v3/kv/txn", body).await?;
        let gets = v["responses"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter(|r| r.get("response_range").is_some())
                    .map(|r| kvs(&r["response_range"]["kvs"]))
                    .collect()
            })
            .unwrap_or_default();
        Ok(TxnResult {
            // proto3 JSON leaves out `false`.
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            revision: int(&v["header"]["revision"]).unwrap_or(0),
            gets,
        })
    }

    /// Watches `key` (a prefix when `prefix`), from `start_revision` on. Changes arrive on
    /// the returned channel in revision order; the last item is `Ended` when the stream
    /// stops for any reason, and the caller starts another watch from where it got to.
    pub fn watch(
        self: &std::sync::Arc<Self>,
        key: &[u8],
        prefix: bool,
        start_revision: i64,
    ) -> mpsc::Receiver<WatchItem> {
        let (tx, rx) = mpsc::channel(64);
        let mut create =
            json!({ "key": B64.encode(key), "start_revision": start_revision.to_string() });
        if prefix {
            create["range_end"] = json!(B64.encode(prefix_end(key)));
        }
        let me = self.clone();
        tokio::spawn(async move {
            let why = me
                .stream_watch(json!({ "create_request": create }), &tx)
                .await;
            let _ = tx.send(WatchItem::Ended(why)).await;
        });
        rx
    }

    async fn stream_watch(&self, body: Value, tx: &mpsc::Sender<WatchItem>) -> String {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no endpoint");
        for i in 0..self.endpoints.len() {
            let at = (start + i) % self.endpoints.len();
            let url = format!("{}/v3/watch", self.endpoints[at]);
            let mut req = self.http.post(&url).json(&body);
            if let Some(t) = self.token().await {
                req = req.header("Authorization", t);
            }
            // The connect is bounded; the stream itself lives as long as the watch.
            let resp = match tokio::time::timeout(self.timeout, req.send()).await {
                Ok(Ok(r)) if r.status().is_success() => r,
                Ok(Ok(r)) => {
                    last = format!("{url}: HTTP {}", r.status().as_u16());
                    continue;
                }
                Ok(Err(e)) => {
                    last = format!("{url}: {}", plain(&e));
                    continue;
                }
                Err(_) => {
                    last = format!("{url}: no answer within {:?}", self.timeout);
                    continue;
                }
            };
            self.current.store(at, Ordering::Relaxed);
            return read_watch(resp, tx).await;
        }
        last
    }

    /// One request, tried on each endpoint in turn until one answers.
    async fn call(&self, path: &'static str, body: Value) -> Result<Value, EtcdError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..self.endpoints.len() {
            let at = (start + i) % self.endpoints.len();
            let url = format!("{}{path}", self.endpoints[at]);
            let mut retried_auth = false;
            loop {
                let mut req = self.http.post(&url).timeout(self.timeout).json(&body);
                if let Some(t) = self.token().await {
                    req = req.header("Authorization", t);
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let text = match resp.text().await {
                            Ok(t) => t,
                            Err(e) => {
                                last = format!("{url}: {}", plain(&e));
                                break;
                            }
                        };
                        if status == 200 {
                            self.current.store(at, Ordering::Relaxed);
                            return serde_json::from_str(&text)
                                .map_err(|e| EtcdError::Protocol(e.to_string(), path));
                        }
                        let message = serde_json::from_str::<Value>(&text)
                            .ok()
                            .and_then(|v| {
                                v["message"]
                                    .as_str()
                                    .or(v["error"].as_str())
                                    .map(str::to_string)
                            })
                            .unwrap_or_else(|| text.chars().take(200).collect());
                        // An expired token is renewed once; other refusals are answers.
                        if message.contains("auth token")
                            && !retried_auth
                            && self.credentials.is_some()
                        {
                            *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                            retried_auth = true;
                            continue;
                        }
                        // A member without quorum or leader says so with 5xx: try another.
                        if status >= 500 {
                            last = format!("{url}: HTTP {status}: {message}");
                            break;
                        }
                        return Err(EtcdError::Refused {
                            path,
                            status,
                            message,
                        });
                    }
                    Err(e) => {
                        last = format!("{url}: {}", plain(&e));
                        break;
                    }
                }
            }
        }
        Err(EtcdError::Unreachable(last))
    }

    /// The authentication token, fetched once per expiry when credentials are configured.
    async fn token(&self) -> Option<String> {
        let (user, password) = self.credentials.as_ref()?;
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Some(t);
        }
        for endpoint in &self.endpoints {
            let resp = self
                .http
                .post(format!("{endpoint}/v3/auth/authenticate"))
                .timeout(self.timeout)
                .json(&json!({ "name": user, "password": password }))
                .send()
                .await;
            if let Ok(resp) = resp {
                if let Ok(v) = resp.json::<Value>().await {
                    if let Some(t) = v["token"].as_str() {
                        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.to_string());
                        return Some(t.to_string());
                    }
                }
            }
        }
        None
    }
}

/// Reads a watch stream: one JSON object per batch, objects back to back (the gateway
/// separates them with newlines, but a chunk boundary can fall anywhere).
async fn read_watch(mut resp: reqwest::Response, tx: &mpsc::Sender<WatchItem>) -> String {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return "watch stream closed".into(),
            Err(e) => return format!("watch stream broke: {}", plain(&e)),
        };
        buf.extend_from_slice(&chunk);
        // A watch batch is at most etcd's request limit (1.5 MiB by default) of values; a
        // peer sending more without a complete object is not etcd.
        if buf.len() > 16 << 20 {
            return "watch message over 16 MiB".into();
        }
        let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
        let mut consumed = 0;
        loop {
            match stream.next() {
                Some(Ok(v)) => {
                    consumed = stream.byte_offset();
                    let result = &v["result"];
                    if !v["error"].is_null() {
                        return format!("watch error: {}", v["error"]);
                    }
                    if result["canceled"].as_bool() == Some(true) {
                        let why = result["cancel_reason"].as_str().unwrap_or("canceled");
                        return format!("watch canceled: {why}");
                    }
                    if int(&result["compact_revision"]).unwrap_or(0) > 0 {
                        return "watch start revision compacted".into();
                    }
                    let events: Vec<Event> = result["events"]
                        .as_array()
                        .map(|es| es.iter().filter_map(event).collect())
                        .unwrap_or_default();
                    if !events.is_empty() && tx.send(WatchItem::Events(events)).await.is_err() {
                        return "watcher gone".into();
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return format!("watch stream is not JSON: {e}"),
                None => break,
            }
        }
        buf.drain(..consumed);
    }
}

fn event(e: &Value) -> Option<Event> {
    let kv = &e["kv"];
    let key = b64(&kv["key"])?;
    match e["type"].as_str() {
        Some("DELETE") => Some(Event::Delete {
            key,
            mod_revision: int(&kv["mod_revision"]).unwrap_or(0),
        }),
        _ => Some(Event::Put(self::kv(kv)?)),
    }
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => {
            let mut put = json!({ "key": B64.encode(key), "value": B64.encode(value) });
            if *lease != 0 {
                put["lease"] = json!(lease.to_string());
            }
            json!({ "request_put": put })
        }
        Op::Delete { key } => json!({ "request_delete_range": { "key": B64.encode(key) } }),
        Op::Get { key } => json!({ "request_range": { "key": B64.encode(key) } }),
    }
}

fn kvs(v: &Value) -> Vec<Kv> {
    v.as_array()
        .map(|a| a.iter().filter_map(kv).collect())
        .unwrap_or_default()
}

fn kv(v: &Value) -> Option<Kv> {
    Some(Kv {
        key: b64(&v["key"])?,
        value: b64(&v["value"]).unwrap_or_default(),
        create_revision: int(&v["create_revision"]).unwrap_or(0),
        mod_revision: int(&v["mod_revision"]).unwrap_or(0),
        lease: int(&v["lease"]).unwrap_or(0),
    })
}

fn b64(v: &Value) -> Option<Vec<u8>> {
    B64.decode(v.as_str()?).ok()
}

/// An int64 as the gateway writes it (a string), or a plain number.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The end of the range of keys starting with `prefix`: the prefix with its last byte
/// below 0xff incremented (etcd's `clientv3.GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff (or empty): the range runs to the end of the key space.
    vec![0]
}

/// A reqwest error without the URL's query or credentials, and with its cause.
fn plain(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_increment_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/sb/log/"), b"/sb/log0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn gateway_integers_are_strings_or_numbers() {
        assert_eq!(int(&json!("42")), Some(42));
        assert_eq!(int(&json!(7)), Some(7));
        assert_eq!(int(&json!(null)), None);
    }

    #[test]
    fn events_decode_puts_and_deletes() {
        let put = json!({"kv": {"key": B64.encode("k"), "value": B64.encode("v"),
            "create_revision": "2", "mod_revision": "3", "lease": "9"}});
        assert_eq!(
            event(&put),
            Some(Event::Put(Kv {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                lease: 9
            }))
        );
        let del = json!({"type": "DELETE", "kv": {"key": B64.encode("k"), "mod_revision": "4"}});
        assert_eq!(
            event(&del),
            Some(Event::Delete {
                key: b"k".to_vec(),
                mod_revision: 4
            })
        );
    }
}
