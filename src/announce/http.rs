//! The one HTTP client stack outside the probe: reqwest on rustls, for the pushes
//! (Statuspage API, chat webhook), the `on_switch` webhooks and the CLI client (`client.rs`).
//!
//! [`client`] is the one constructor: TLS verified against the webpki roots or the
//! certificates of a CA file, HTTP/1.1, no redirects followed (a push or webhook that
//! answers 3xx has not taken the message), no proxy from the environment, the Switchboard
//! `User-Agent`, one connection per request. [`request`] sends one request bounded by a
//! timeout, caps the response body and reads `Retry-After`.
//!
//! Errors never carry a URL's path or query, nor a header value: a chat webhook's URL is
//! its secret and headers carry keys, so reqwest's errors are stripped of their URL
//! (`without_url`) and name only the origin (scheme, host, port).
//!
//! The probe keeps its own hyper connector: it times every phase of a request, which a
//! general client hides.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use rustls_pki_types::CertificateDer;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use url::Url;

/// The `User-Agent` of every request Switchboard makes (the probe's too).
pub const USER_AGENT: &str = crate::probe::http::USER_AGENT_VALUE;

/// Responses longer than this are cut: we only ever need a small JSON object from them.
const MAX_BODY: usize = 256 * 1024;

/// What certificates a TLS server must chain to.
#[derive(Clone, Debug)]
pub enum Roots {
    /// The public web PKI (Mozilla's roots, compiled in).
    Webpki,
    /// Only these CA certificates (a private CA, e.g. `SWITCHBOARD_CA_FILE`).
    Certificates(Vec<CertificateDer<'static>>),
}

/// What came back.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// `Retry-After` in seconds (the HTTP-date form is not used by these APIs).
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// Why a request got no response. Never contains a URL's path or a header value.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL: {0}")]
    Url(String),
    #[error("connect to {0} failed: {1}")]
    Connect(String, String),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    #[error("HTTP exchange with {0} failed: {1}")]
    Http(String, String),
    #[error("no response from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("HTTP client set-up failed: {0}")]
    Setup(String),
}

/// A verifying rustls configuration for `roots` that offers HTTP/1.1 only.
pub fn tls_config(roots: &Roots) -> Result<rustls::ClientConfig, HttpError> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Roots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::Certificates(certs) => {
            for cert in certs {
                store
                    .add(cert.clone())
                    .map_err(|e| HttpError::Setup(format!("CA certificate: {e}")))?;
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Setup(format!("TLS: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The one constructor of an HTTP client (see the module header for its policy).
pub fn client(roots: &Roots) -> Result<reqwest::Client, HttpError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(roots)?)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(USER_AGENT)
        .http1_only()
        // One request per connection, as before: receivers that close without saying so
        // never meet a reused, half-dead connection.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| HttpError::Setup(e.without_url().to_string()))
}

/// The client of the pushes and webhooks (webpki roots), built once.
fn shared() -> Result<reqwest::Client, HttpError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| client(&Roots::Webpki).map_err(|e| e.to_string()))
        .clone()
        .map_err(HttpError::Setup)
}

/// `scheme://host:port` of `url`: what errors and logs may name.
pub fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Sends one request with a JSON body (or none) and the given extra headers, which
/// replace a default of the same name (`Content-Type`).
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    json: Option<String>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let parsed = Url::parse(url).map_err(|e| HttpError::Url(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(HttpError::Url(format!("scheme {other:?} is not http(s)"))),
    }
    if parsed.host_str().is_none() {
        return Err(HttpError::Url("no host".into()));
    }
    let origin = origin(&parsed);
    let mut map = HeaderMap::new();
    if json.is_some() {
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::Url(format!("invalid header name {name:?}")))?;
        // The value may be a key: the error does not repeat it.
        let value = HeaderValue::from_str(value)
            .map_err(|_| HttpError::Url(format!("header {name} has an invalid value")))?;
        map.insert(name, value);
    }
    let mut req = shared()?.request(method, parsed).headers(map);
    if let Some(body) = json {
        req = req.body(body);
    }
    let work = async {
        let mut res = req.send().await.map_err(|e| classify(e, &origin))?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| classify(e, &origin))? {
            let room = MAX_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
        Ok(Response {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| HttpError::Timeout(origin.clone(), timeout))?
}

/// The error of a request that got no response, naming only `origin`: connection refused,
/// a TLS failure (with rustls's reason, e.g. `UnknownIssuer`), or a broken exchange.
pub fn classify(e: reqwest::Error, origin: &str) -> HttpError {
    let e = e.without_url();
    if e.is_builder() {
        return HttpError::Url(innermost(&e));
    }
    if let Some(tls) = tls_cause(&e) {
        return HttpError::Tls(origin.to_owned(), tls);
    }
    if e.is_connect() {
        return HttpError::Connect(origin.to_owned(), innermost(&e));
    }
    HttpError::Http(origin.to_owned(), causes(&e))
}

/// The text of the deepest cause: the operating system's or the peer's words.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Every cause below reqwest's own summary, joined: "connection closed before message
/// completed", and whatever hyper says under it.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// The rustls error somewhere in the chain. tokio-rustls wraps it in an `io::Error`, and
/// hyper-rustls wraps that in another, whose `source` skips both: so each `io::Error` is
/// opened too.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    fn within<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        within(inner)
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        if let Some(tls) = within(cause) {
            return Some(tls.to_string());
        }
        next = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot server on loopback that answers every connection with `reply` and returns
    /// what it read from the first one.
    async fn server(reply: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if body.len() >= len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn a_request_carries_json_the_user_agent_and_reads_retry_after() {
        let (base, seen) = server(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
        )
        .await;
        let r = request(
            Method::POST,
            &format!("{base}/hook?token=s3cr3t"),
            &[("Authorization", "OAuth k".into())],
            Some("{\"a\":1}".into()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(r.body, "slow");
        let head = seen.await.unwrap();
        assert!(
            head.starts_with("POST /hook?token=s3cr3t HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("user-agent: {USER_AGENT}\r\n")),
            "{head}"
        );
        assert!(
            head.contains("content-type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains("authorization: OAuth k\r\n"), "{head}");
        assert!(head.ends_with("{\"a\":1}"), "{head}");
    }

    #[tokio::test]
    async fn redirects_are_answers_not_followed() {
        let (base, _seen) = server(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        let r = request(Method::GET, &base, &[], None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 302);
    }

    #[tokio::test]
    async fn errors_name_the_origin_never_the_path_or_query() {
        // Port 9 on loopback ("discard") is closed in test environments: connection refused.
        let err = request(
            Method::POST,
            "http://127.0.0.1:9/services/T000/B000/s3cr3t?key=k3y",
            &[],
            Some("{}".into()),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("connect to http://127.0.0.1:9 failed: "),
            "{err}"
        );
        assert!(!err.contains("s3cr3t") && !err.contains("k3y"), "{err}");

        // A silent peer: the timeout, again with the origin only.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let err = request(
            Method::GET,
            &format!("http://{addr}/s3cr3t"),
            &[],
            None,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(err, format!("no response from http://{addr} within 200ms"));
        drop(l);

        let err = request(Method::GET, "ftp://x/", &[], None, Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid URL: scheme \"ftp\" is not http(s)");
        let err = request(
            Method::GET,
            "http://127.0.0.1:9/",
            &[("Authorization", "Bearer a\nb".into())],
            None,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "invalid URL: header authorization has an invalid value"
        );
    }

    /// A TLS server on loopback for `localhost`, its certificate signed by a CA made here;
    /// answers one request per connection with 204. Returns its port and the CA.
    async fn tls_server() -> (u16, CertificateDer<'static>) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, ca_cert.der().clone())
    }

    #[tokio::test]
    async fn tls_is_verified_against_the_webpki_roots_or_the_given_ca_only() {
        let (port, ca) = tls_server().await;
        let url = format!("https://localhost:{port}/x");
        let private = client(&Roots::Certificates(vec![ca])).unwrap();
        let r = private.get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
        // The public roots do not know the private CA: a TLS error naming rustls's reason.
        let err = request(Method::GET, &url, &[], None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HttpError::Tls(origin, why) if origin == &format!("https://localhost:{port}") && why.contains("UnknownIssuer")),
            "{err:?}"
        );
    }
}
