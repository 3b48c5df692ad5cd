//! A small HTTP/1.1 client for the pushes (Statuspage API, chat webhook): one request per
//! connection, bounded by a timeout, the response body capped, `Retry-After` read.
//!
//! Why not the HTTP probe, as `on_switch` webhooks use: a push must read the response (the
//! incident id the Statuspage API returns, its `Retry-After` on 420/429), which a probe
//! reduces to an outcome. Why not reqwest: hyper is already here, and this needs one verb.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::{Position, Url};

/// Responses longer than this are cut: we only ever need a small JSON object from them.
const MAX_BODY: usize = 256 * 1024;

/// What came back.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// `Retry-After` in seconds (the HTTP-date form is not used by these APIs).
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// Why a request got no response. Never contains a header value (they carry keys).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL: {0}")]
    Url(String),
    #[error("connect to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP exchange with {0} failed: {1}")]
    Http(String, String),
    #[error("no response from {0} within {1:?}")]
    Timeout(String, Duration),
}

/// Sends one request with a JSON body (or none) and the given extra headers.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    json: Option<String>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let parsed = Url::parse(url).map_err(|e| HttpError::Url(e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| HttpError::Url("no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| HttpError::Url("no port".into()))?;
    // Only scheme://host:port in errors: a chat webhook's path is its secret.
    let origin = format!("{}://{}:{port}", parsed.scheme(), host);
    let https = match parsed.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(HttpError::Url(format!("scheme {other:?} is not http(s)"))),
    };
    let target = &parsed[Position::BeforePath..Position::AfterQuery];
    let authority = &parsed[Position::BeforeHost..Position::BeforePath];

    let mut req = Request::new(Full::new(Bytes::from(json.clone().unwrap_or_default())));
    *req.method_mut() = method;
    *req.uri_mut() = target
        .parse()
        .map_err(|_| HttpError::Url("invalid path".into()))?;
    let h = req.headers_mut();
    h.insert(
        HOST,
        HeaderValue::from_str(authority).map_err(|_| HttpError::Url("invalid host".into()))?,
    );
    h.insert(
        USER_AGENT,
        HeaderValue::from_static(crate::probe::http::USER_AGENT_VALUE),
    );
    if json.is_some() {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::Url(format!("invalid header name {name:?}")))?;
        // The value may be a key: the error does not repeat it.
        let value = HeaderValue::from_str(value)
            .map_err(|_| HttpError::Url(format!("header {name} has an invalid value")))?;
        h.insert(name, value);
    }

    let work = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect(origin.clone(), e))?;
        if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| HttpError::Url("invalid TLS server name".into()))?;
            let config = tls_config()
                .map_err(|e| HttpError::Tls(origin.clone(), std::io::Error::other(e)))?;
            let tls = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(origin.clone(), e))?;
            exchange(tls, req, &origin).await
        } else {
            exchange(tcp, req, &origin).await
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| HttpError::Timeout(origin.clone(), timeout))?
}

async fn exchange<S>(
    stream: S,
    req: Request<Full<Bytes>>,
    origin: &str,
) -> Result<Response, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| HttpError::Http(origin.to_owned(), e.to_string());
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    // The connection task ends with the exchange: it is dropped when the request is done.
    let conn = tokio::spawn(conn);
    let res = sender.send_request(req).await.map_err(http);
    let result = match res {
        Ok(res) => {
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut body = Vec::new();
            let mut incoming = res.into_body();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(http)?;
                if let Some(data) = frame.data_ref() {
                    let room = MAX_BODY.saturating_sub(body.len());
                    body.extend_from_slice(&data[..data.len().min(room)]);
                    if body.len() >= MAX_BODY {
                        break;
                    }
                }
            }
            Ok(Response {
                status,
                retry_after,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        }
        Err(e) => Err(e),
    };
    drop(sender);
    conn.abort();
    result
}

fn tls_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // No ALPN: this client speaks HTTP/1.1 only.
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
}
