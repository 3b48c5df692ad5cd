//! HTTP probe: resolve, connect, TLS, request, response, body (capped), with each phase timed.
//!
//! Built directly on hyper's client connections rather than a pooled client so that every
//! phase is observed where it happens, as blackbox_exporter's httptrace does:
//!
//! - `resolve`: name lookup (zero for IP literals),
//! - `connect`: TCP connect,
//! - `tls`: the TLS handshake (zero for `http://`),
//! - `processing`: connection ready → response headers received (request written, server working),
//! - `transfer`: response headers → body read done (or the cap reached).
//!
//! Phases add up over redirect hops, as blackbox does. Every probe opens fresh connections and
//! keeps nothing afterwards; a multi-step check (`steps`) hands in a cookie jar, which every
//! hop reads and every response's `Set-Cookie` fills. The whole probe, redirects included, runs under the check's
//! timeout; what was learned before a timeout (phases, status) is kept in the outcome.

use super::condition::{Condition, Observed};
use super::tls::{self, TlsError};
use super::{ConditionResult, ErrorClass, Outcome, Phases, ProbeError, TlsInfo};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, HttpCheck, IpVersion};
use cookie_store::CookieStore;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, SET_COOKIE, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::{Host, Position, Url};

/// The `User-Agent` every probe sends unless the check sets its own.
pub const USER_AGENT_VALUE: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

/// Largest response head (status line and headers) accepted over HTTP/1, and header list over
/// HTTP/2. Bounds memory against a peer that streams headers forever.
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// HTTP/2 flow-control window per stream. The peer cannot push more than this past the body
/// cap before we stop reading, so it bounds memory per probe.
const H2_STREAM_WINDOW: u32 = 256 * 1024;

/// Why one HTTP exchange failed. Mapped to an `ErrorClass` for the outcome.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("unsupported URL {0:?}: need http:// or https:// with a host")]
    BadUrl(String),
    #[error("DNS lookup of {host} failed: {source}")]
    Dns {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS lookup of {0} returned no addresses")]
    NoAddress(String),
    #[error("{host} has no IPv{version} address (ip_version = \"{version}\")")]
    NoAddressOfVersion { host: String, version: &'static str },
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid request: {0}")]
    Request(String),
    #[error("{}", chain(.0))]
    Http(#[from] hyper::Error),
    #[error("stopped after {0} redirects")]
    TooManyRedirects(u32),
    #[error("redirect with unusable Location {0:?}")]
    BadRedirect(String),
}

impl HttpError {
    fn class(&self) -> ErrorClass {
        match self {
            HttpError::Dns { .. }
            | HttpError::NoAddress(_)
            | HttpError::NoAddressOfVersion { .. } => ErrorClass::Dns,
            HttpError::Connect { source, .. } if super::is_local_resource(source) => {
                ErrorClass::Local
            }
            HttpError::Connect { .. } => ErrorClass::Connect,
            HttpError::Tls(_) => ErrorClass::Tls,
            HttpError::TooManyRedirects(_) => ErrorClass::TooManyRedirects,
            HttpError::BadUrl(_)
            | HttpError::Request(_)
            | HttpError::Http(_)
            | HttpError::BadRedirect(_) => ErrorClass::Protocol,
        }
    }
}

/// `error: cause: cause`, because hyper's top-level message alone ("connection error") rarely
/// tells on-call what happened.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Resolve,
    Connect,
    Tls,
    Processing,
    Transfer,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
        }
    }
}

/// What the probe has learned so far. It lives outside the future that the timeout cancels,
/// so a timed-out probe still reports its phases and whatever response it saw.
#[derive(Default)]
struct Progress {
    phases: Phases,
    /// The phase running now and since when, so a timeout or error charges the wait to it.
    current: Option<(Phase, Instant)>,
    status: Option<u16>,
    http_version: Option<f64>,
    /// TLS of the last hop (`None` when the last hop was plain HTTP).
    tls: Option<TlsInfo>,
    /// The last hop got a TCP connection.
    connected: bool,
    body: Vec<u8>,
    /// The body was longer than the cap; `body` holds its first `max_body_bytes`.
    body_truncated: bool,
    redirects: u32,
    /// Headers of the last response, for `[HEADER].Name` conditions.
    headers: Option<hyper::HeaderMap>,
    /// The address of the last connection, for `[IP]`.
    ip: Option<String>,
    /// Cookies kept across hops and steps (multi-step checks only; single checks keep none).
    jar: Option<CookieStore>,
}

impl Progress {
    /// Ends the running phase (if any) and starts `phase`.
    fn begin(&mut self, phase: Phase) {
        self.end();
        self.current = Some((phase, Instant::now()));
    }

    /// Ends the running phase, adding its time to the total for that phase.
    fn end(&mut self) {
        if let Some((phase, since)) = self.current.take() {
            let slot = match phase {
                Phase::Resolve => &mut self.phases.resolve,
                Phase::Connect => &mut self.phases.connect,
                Phase::Tls => &mut self.phases.tls,
                Phase::Processing => &mut self.phases.processing,
                Phase::Transfer => &mut self.phases.transfer,
            };
            *slot += since.elapsed();
        }
    }
}

/// Runs one HTTP check once. Never takes (much) longer than `check.timeout`, never panics on
/// what a peer sends, and reads at most `max_body_bytes` of body.
pub async fn probe(check: &CheckSpec, http: &HttpCheck) -> Outcome {
    exchange_step(&check.name, &check.conditions, check.timeout, http, None)
        .await
        .outcome
}

/// One HTTP exchange (redirects included) as a multi-step check's step sees it: the outcome,
/// and the final response's body and headers to extract values from.
pub(crate) struct StepExchange {
    pub outcome: Outcome,
    pub body: Vec<u8>,
    pub headers: Option<hyper::HeaderMap>,
    /// The cookie jar handed in, with this exchange's `Set-Cookie`s added.
    pub jar: Option<CookieStore>,
}

/// Runs one HTTP exchange under `timeout` and evaluates `conditions` on it. With a `jar`,
/// cookies it holds are sent and cookies set by every response (redirects too) are kept.
pub(crate) async fn exchange_step(
    name: &str,
    conditions: &[Condition],
    timeout: Duration,
    http: &HttpCheck,
    jar: Option<CookieStore>,
) -> StepExchange {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let mut progress = Progress {
        jar,
        ..Progress::default()
    };
    let result = tokio::time::timeout(timeout, run(http, &mut progress)).await;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(ProbeError {
            class: e.class(),
            message: e.to_string(),
        }),
        Err(_elapsed) => Some(ProbeError {
            class: ErrorClass::Timeout,
            message: format!(
                "timed out after {}{}",
                humantime::format_duration(timeout),
                progress
                    .current
                    .map(|(p, _)| format!(" during {}", p.as_str()))
                    .unwrap_or_default()
            ),
        }),
    };
    progress.end();
    let duration = start.elapsed();
    let outcome = finish(name, conditions, started_at, duration, &mut progress, error);
    StepExchange {
        outcome,
        body: std::mem::take(&mut progress.body),
        headers: progress.headers.take(),
        jar: progress.jar.take(),
    }
}

/// Evaluates conditions and assembles the outcome.
fn finish(
    name: &str,
    check_conditions: &[Condition],
    started_at: Timestamp,
    duration: Duration,
    progress: &mut Progress,
    mut error: Option<ProbeError>,
) -> Outcome {
    let conditions: Vec<ConditionResult> = if check_conditions.is_empty() {
        Vec::new()
    } else {
        let observed = Observed {
            status: progress.status,
            body: progress.status.map(|_| progress.body.as_slice()),
            response_time_ms: Some(duration.as_millis() as u64),
            connected: Some(progress.connected),
            certificate_expiration_ms: progress.tls.as_ref().map(|t| {
                t.earliest_cert_expiry
                    .saturating_mul(1000)
                    .saturating_sub(started_at.as_millis())
            }),
            dns_rcode: None,
            headers: progress.headers.as_ref(),
            ip: progress.ip.as_deref(),
        };
        // One pass, so a JSON body is parsed once for all conditions.
        Condition::evaluate_all(check_conditions, &observed)
    };
    if error.is_none() {
        if let Some(failed) = conditions.iter().find(|c| !c.success) {
            error = Some(ProbeError {
                class: ErrorClass::Conditions,
                message: format!("condition failed: {}", failed.resolved),
            });
        } else if conditions.is_empty() && !progress.status.is_some_and(is_success_status) {
            // Without conditions the implicit one is "the final status is 2xx or 3xx".
            error = Some(ProbeError {
                class: ErrorClass::Conditions,
                message: format!(
                    "status {} is not 200..=399 (no conditions configured)",
                    progress
                        .status
                        .map_or_else(|| "none".to_string(), |s| s.to_string())
                ),
            });
        }
    }
    Outcome {
        check: name.to_string(),
        success: error.is_none(),
        conditions,
        status: progress.status,
        duration,
        phases: progress.phases,
        error,
        started_at,
        tls: progress.tls.take(),
        http_version: progress.http_version,
        content_length: progress.body.len() as u64,
        body_truncated: progress.body_truncated,
        redirects: progress.redirects,
        failed_due_to_regex: false,
        dns: None,
        steps: Vec::new(),
    }
}

fn is_success_status(status: u16) -> bool {
    (200..=399).contains(&status)
}

/// One request to send: it changes across redirects (303 turns a POST into a GET).
struct Hop {
    url: Url,
    method: Method,
    body: Option<Bytes>,
    /// Configured headers still sent on this hop (credentials are dropped on cross-origin redirects).
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// What a hop ended with.
enum Next {
    Done,
    Redirect(String),
}

/// Follows the check's URL through its redirects, recording into `progress`.
async fn run(http: &HttpCheck, progress: &mut Progress) -> Result<(), HttpError> {
    let method = Method::from_bytes(http.method.as_bytes())
        .map_err(|_| HttpError::Request(format!("invalid method {:?}", http.method)))?;
    let headers = http
        .headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::Request(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| HttpError::Request(format!("invalid value for header {name}")))?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, HttpError>>()?;
    let mut hop = Hop {
        url: http.url.clone(),
        method,
        body: http.body.clone().map(Bytes::from),
        headers,
    };
    loop {
        let follow = http.max_redirects > 0;
        let cookie = progress
            .jar
            .as_ref()
            .and_then(|jar| cookie_header(jar, &hop));
        let next = exchange_once(&hop, cookie, http, follow, progress).await?;
        if let (Some(jar), Some(headers)) = (progress.jar.as_mut(), progress.headers.as_ref()) {
            // Cookies set on a redirect count, as in a browser: a login answered with a 302 and
            // a session cookie is the usual shape of a form flow.
            keep_cookies(jar, headers, &hop.url);
        }
        match next {
            Next::Done => return Ok(()),
            Next::Redirect(location) => {
                if progress.redirects >= http.max_redirects {
                    return Err(HttpError::TooManyRedirects(progress.redirects));
                }
                let next = hop
                    .url
                    .join(&location)
                    .map_err(|_| HttpError::BadRedirect(location.clone()))?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(HttpError::BadRedirect(location));
                }
                progress.redirects += 1;
                // Browsers and Go's client turn 301/302/303 into a body-less GET; 307/308 repeat
                // the request as it was.
                let status = progress.status.unwrap_or_default();
                if matches!(status, 301..=303) && hop.method != Method::HEAD {
                    hop.method = Method::GET;
                    hop.body = None;
                }
                if next.origin() != hop.url.origin() {
                    // Credentials and a Host override belong to the origin they were written for.
                    hop.headers.retain(|(name, _)| {
                        !matches!(name.as_str(), "authorization" | "cookie" | "host")
                    });
                }
                hop.url = next;
            }
        }
    }
}

/// The `Cookie` header for `hop` from `jar`, merged with a configured `Cookie` header (one
/// header, as RFC 6265 asks), or `None` when there is nothing to add.
fn cookie_header(jar: &CookieStore, hop: &Hop) -> Option<HeaderValue> {
    let mut pairs: Vec<String> = hop
        .headers
        .iter()
        .filter(|(name, _)| *name == COOKIE)
        .filter_map(|(_, v)| v.to_str().ok().map(str::to_string))
        .collect();
    let from_jar = pairs.len();
    pairs.extend(
        jar.get_request_values(&hop.url)
            .map(|(name, value)| format!("{name}={value}")),
    );
    if pairs.len() == from_jar {
        return None;
    }
    HeaderValue::from_str(&pairs.join("; ")).ok()
}

/// Stores every `Set-Cookie` of a response to `url` in `jar`; malformed ones are ignored, as
/// browsers ignore them.
fn keep_cookies(jar: &mut CookieStore, headers: &hyper::HeaderMap, url: &Url) {
    for value in headers.get_all(SET_COOKIE) {
        if let Ok(text) = value.to_str() {
            let _ = jar.parse(text, url);
        }
    }
}

/// One request on one fresh connection: resolve, connect, TLS, exchange.
async fn exchange_once(
    hop: &Hop,
    cookie: Option<HeaderValue>,
    http: &HttpCheck,
    follow_redirects: bool,
    progress: &mut Progress,
) -> Result<Next, HttpError> {
    let url = &hop.url;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(HttpError::BadUrl(url.to_string())),
    };
    let host = url
        .host()
        .ok_or_else(|| HttpError::BadUrl(url.to_string()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| HttpError::BadUrl(url.to_string()))?;
    progress.connected = false;
    progress.tls = None;

    if matches!(host, Host::Domain(_)) {
        // An IP literal needs no lookup; its resolve phase stays exactly zero, as in blackbox.
        progress.begin(Phase::Resolve);
    }
    let addrs = resolve(&host, port, http.net.ip_version).await?;

    progress.begin(Phase::Connect);
    // The address comes back from `connect`: asking the socket (getpeername) would cost a
    // system call per probe for what we already know.
    let (stream, addr) = connect(&addrs).await?;
    progress.connected = true;
    progress.ip = Some(addr.ip().to_string());
    // Requests are small and written once; waiting for Nagle would only add latency to measure.
    let _ = stream.set_nodelay(true);

    if https {
        progress.begin(Phase::Tls);
        let settings = tls::Settings {
            insecure: http.insecure,
            ca: http.net.ca.as_ref(),
            server_name: http.net.server_name.as_deref(),
        };
        let mut done = tls::handshake(Coalesce::new(stream), &host, &settings).await?;
        done.stream.get_mut().0.arm();
        progress.tls = Some(done.info);
        progress.begin(Phase::Processing);
        let request = build_request(hop, cookie, done.h2)?;
        exchange(
            done.stream,
            done.h2,
            request,
            http.max_body_bytes,
            follow_redirects,
            progress,
        )
        .await
    } else {
        progress.begin(Phase::Processing);
        let request = build_request(hop, cookie, false)?;
        exchange(
            stream,
            false,
            request,
            http.max_body_bytes,
            follow_redirects,
            progress,
        )
        .await
    }
}

async fn resolve(
    host: &Host<&str>,
    port: u16,
    version: IpVersion,
) -> Result<Vec<SocketAddr>, HttpError> {
    let (addrs, name) = match host {
        Host::Ipv4(ip) => (vec![SocketAddr::new((*ip).into(), port)], ip.to_string()),
        Host::Ipv6(ip) => (vec![SocketAddr::new((*ip).into(), port)], ip.to_string()),
        Host::Domain(name) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((*name, port))
                .await
                .map_err(|source| HttpError::Dns {
                    host: (*name).to_string(),
                    source,
                })?
                .collect();
            if addrs.is_empty() {
                return Err(HttpError::NoAddress((*name).to_string()));
            }
            (addrs, (*name).to_string())
        }
    };
    let addrs = super::tcp::of_version(addrs, version);
    if addrs.is_empty() {
        return Err(HttpError::NoAddressOfVersion {
            host: name,
            version: version.as_str(),
        });
    }
    Ok(addrs)
}

/// Connects to the first address that accepts, in resolver order (which honours the system's
/// address preference, e.g. gai.conf); the last error is reported when none does.
async fn connect(addrs: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), HttpError> {
    let mut last = None;
    for &addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok((stream, addr)),
            Err(source) => last = Some(HttpError::Connect { addr, source }),
        }
    }
    // `resolve` never returns an empty list, so `last` is set; the fallback keeps it total.
    Err(last.unwrap_or_else(|| HttpError::NoAddress("(no addresses)".to_string())))
}

fn build_request(
    hop: &Hop,
    cookie: Option<HeaderValue>,
    h2: bool,
) -> Result<Request<Full<Bytes>>, HttpError> {
    let url = &hop.url;
    // HTTP/1 sends origin-form (`/path?query`) with a Host header; HTTP/2 needs the absolute
    // URI because hyper derives `:scheme` and `:authority` from it. Fragments are never sent.
    let target = if h2 {
        &url[..Position::AfterQuery]
    } else {
        &url[Position::BeforePath..Position::AfterQuery]
    };
    let uri: Uri = target
        .parse()
        .map_err(|_| HttpError::Request(format!("invalid request target {target:?}")))?;
    let body = hop.body.clone().unwrap_or_default();
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = hop.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let headers = request.headers_mut();
    if !h2 {
        let authority = &url[Position::BeforeHost..Position::BeforePath];
        let host = HeaderValue::from_str(authority)
            .map_err(|_| HttpError::Request(format!("invalid host {authority:?}")))?;
        headers.insert(HOST, host);
        // Each probe uses its connection once; saying so lets the server free it at once.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    let mut overridden: Vec<&HeaderName> = Vec::new();
    for (name, value) in &hop.headers {
        if h2 && *name == HOST {
            // HTTP/2 carries the authority in the URI; a Host header there is malformed.
            continue;
        }
        // The first configured value of a name replaces the default; later ones add to it.
        if overridden.contains(&name) {
            headers.append(name.clone(), value.clone());
        } else {
            headers.insert(name.clone(), value.clone());
            overridden.push(name);
        }
    }
    if let Some(cookie) = cookie {
        // Already merged with any configured Cookie header, which it replaces.
        headers.insert(COOKIE, cookie);
    }
    Ok(request)
}

/// Speaks HTTP over an established (and possibly TLS) stream: send, await the head, read the body.
async fn exchange<S>(
    stream: S,
    h2: bool,
    request: Request<Full<Bytes>>,
    max_body: usize,
    follow_redirects: bool,
    progress: &mut Progress,
) -> Result<Next, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(NoShutdown(stream));
    if h2 {
        let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            .handshake(io)
            .await?;
        let work = async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            read_response(response, max_body, follow_redirects, progress).await
        };
        drive(conn, work).await
    } else {
        let (mut sender, conn) = http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .handshake(io)
            .await?;
        let work = async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let next = read_response(response, max_body, follow_redirects, progress).await;
            // Keep the sender alive until the body is read: dropping it tells the connection
            // task that no more requests come, which must not cut the body short.
            drop(sender);
            next
        };
        drive(conn, work).await
    }
}

/// A TCP stream that sends the client's last handshake flight together with the first request.
///
/// tokio-rustls writes and flushes the client's `Finished` before handing over the stream, and
/// hyper then writes the request: two writes and two loopback segments where one would do.
///
/// During the handshake, writes that follow a read (the client's answer to the server's flight)
/// are held and flushes skipped, but everything held leaves before the next read, so the peer
/// is never left waiting for us (TLS 1.2 reads again after its Finished). Once `arm`ed (the
/// handshake is done and a request is about to be written), held bytes stay until the first
/// write of the request and leave with it at its flush. Bytes always leave in the order written.
struct Coalesce<S> {
    inner: S,
    pending: Vec<u8>,
    /// Data was read since the last write went out: hold writes.
    hold: bool,
    /// The handshake is complete; the request comes next.
    armed: bool,
    /// Something was written since `arm`: the next flush (or read) sends everything.
    written: bool,
}

impl<S> Coalesce<S> {
    fn new(inner: S) -> Self {
        Coalesce {
            inner,
            pending: Vec::new(),
            hold: false,
            armed: false,
            written: false,
        }
    }

    fn arm(&mut self) {
        self.armed = true;
    }

    /// Whether held bytes must leave now: always during the handshake, and after it once the
    /// request has started.
    fn must_send(&self) -> bool {
        !self.armed || self.written
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out everything held, in order.
    fn poll_drain(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pending.is_empty() {
            return std::task::Poll::Ready(Ok(()));
        }
        while !self.pending.is_empty() {
            let n = std::task::ready!(
                std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.pending)
            )?;
            if n == 0 {
                return std::task::Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        self.hold = false;
        std::task::Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.must_send() {
            // The peer may be waiting for what we hold: send it before waiting for the peer.
            std::task::ready!(self.poll_drain(cx))?;
        }
        let before = buf.filled().len();
        std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.hold = true;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.armed {
            self.written = true;
        }
        if self.hold || !self.pending.is_empty() {
            self.pending.extend_from_slice(buf);
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.armed {
            self.written = true;
        }
        if self.hold || !self.pending.is_empty() {
            let mut n = 0;
            for b in bufs {
                self.pending.extend_from_slice(b);
                n += b.len();
            }
            return std::task::Poll::Ready(Ok(n));
        }
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.pending.is_empty() && (!self.armed || !self.written) {
            // The handshake's own flush (or one before the request): what it would send
            // leaves with the request, or before the next read, instead.
            return std::task::Poll::Ready(Ok(()));
        }
        std::task::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The probe's stream as hyper sees it, minus `shutdown`. Hyper shuts the write side down when
/// it closes a `Connection: close` exchange: over TLS that is a close_notify alert to encrypt
/// and write, then a shutdown(2), per probe. By then the response has been read, and the socket
/// is dropped (closed) right after, so the shutdown is skipped: it would only cost CPU.
struct NoShutdown<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for NoShutdown<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoShutdown<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Polls the connection and the request together on this task instead of spawning the
/// connection: when the probe's timeout drops this future, the socket goes with it, and no task
/// outlives the probe.
async fn drive<C, W>(conn: C, work: W) -> Result<Next, HttpError>
where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future<Output = Result<Next, HttpError>>,
{
    tokio::pin!(conn);
    tokio::pin!(work);
    let mut conn_result: Option<Result<(), hyper::Error>> = None;
    loop {
        tokio::select! {
            biased;
            next = &mut work => {
                return match (next, conn_result) {
                    // The connection's own error says more than the request's "connection closed".
                    (Err(HttpError::Http(_)), Some(Err(conn_error))) => Err(conn_error.into()),
                    (next, _) => next,
                };
            }
            // After the connection ends, the body may still be buffered in the response channel,
            // so the request side keeps being polled until it finishes on its own.
            done = &mut conn, if conn_result.is_none() => conn_result = Some(done),
        }
    }
}

async fn read_response(
    response: Response<Incoming>,
    max_body: usize,
    follow_redirects: bool,
    progress: &mut Progress,
) -> Result<Next, HttpError> {
    progress.begin(Phase::Transfer);
    // Taken apart rather than cloned: the headers move into the progress for conditions,
    // cookies and extraction, with no copy per probe.
    let (parts, body) = response.into_parts();
    let status = parts.status;
    progress.status = Some(status.as_u16());
    progress.http_version = Some(match parts.version {
        Version::HTTP_09 => 0.9,
        Version::HTTP_10 => 1.0,
        Version::HTTP_2 => 2.0,
        Version::HTTP_3 => 3.0,
        _ => 1.1,
    });
    progress.body.clear();
    progress.body_truncated = false;
    progress.headers = Some(parts.headers);
    if follow_redirects && is_redirect(status) {
        if let Some(location) = progress
            .headers
            .as_ref()
            .and_then(|h| h.get(hyper::header::LOCATION))
        {
            let location = location
                .to_str()
                .map_err(|_| {
                    HttpError::BadRedirect(
                        String::from_utf8_lossy(location.as_bytes()).into_owned(),
                    )
                })?
                .to_string();
            // A redirect's body is not read: its connection is dropped with it.
            progress.end();
            return Ok(Next::Redirect(location));
        }
    }
    let mut body = body;
    // Reserve for what the server announces, but never more than the cap: a lying or huge
    // Content-Length must not make us allocate.
    let hint = body.size_hint().exact().unwrap_or(0);
    progress
        .body
        .reserve(usize::try_from(hint).unwrap_or(usize::MAX).min(max_body));
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame?.into_data() else {
            continue; // trailers carry nothing conditions look at
        };
        let room = max_body - progress.body.len();
        if data.len() > room {
            progress.body.extend_from_slice(&data[..room]);
            progress.body_truncated = true;
            break;
        }
        progress.body.extend_from_slice(&data);
        if progress.body.len() == max_body && !body.is_end_stream() {
            // Exactly at the cap with more announced: stop without waiting for another frame.
            progress.body_truncated = true;
            break;
        }
    }
    progress.end();
    Ok(Next::Done)
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(url: &str, headers: &[(&str, &str)]) -> Hop {
        Hop {
            url: Url::parse(url).unwrap(),
            method: Method::GET,
            body: None,
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn http1_request_uses_origin_form_and_host_with_port() {
        let r =
            build_request(&hop("http://127.0.0.1:8080/a/b?c=d#frag", &[]), None, false).unwrap();
        assert_eq!(r.uri().to_string(), "/a/b?c=d");
        assert_eq!(r.headers()[HOST], "127.0.0.1:8080");
        assert_eq!(r.headers()[USER_AGENT], USER_AGENT_VALUE);
    }

    #[test]
    fn h2_request_uses_absolute_uri_without_host_header() {
        let r = build_request(
            &hop("https://example.com/x?y#z", &[("Host", "other")]),
            None,
            true,
        )
        .unwrap();
        assert_eq!(r.uri().to_string(), "https://example.com/x?y");
        assert!(r.headers().get(HOST).is_none());
    }

    #[test]
    fn configured_headers_replace_defaults_and_repeat() {
        let r = build_request(
            &hop(
                "http://example.com/",
                &[("User-Agent", "custom"), ("X-A", "1"), ("X-A", "2")],
            ),
            None,
            false,
        )
        .unwrap();
        assert_eq!(r.headers()[USER_AGENT], "custom");
        let values: Vec<_> = r.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
    }

    #[test]
    fn progress_charges_time_to_the_running_phase() {
        let mut p = Progress::default();
        p.begin(Phase::Connect);
        std::thread::sleep(Duration::from_millis(2));
        p.begin(Phase::Processing);
        p.end();
        assert!(p.phases.connect >= Duration::from_millis(2));
        assert_eq!(p.phases.resolve, Duration::ZERO);
        assert!(p.current.is_none());
    }
}
