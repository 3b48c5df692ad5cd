//! One request on one fresh connection: resolve, connect, TLS, then HTTP/1.1 or HTTP/2 over
//! hyper's client connection, driven on the probe's own task.

use super::body::read_response;
use super::redirects::{Hop, Next};
use super::request::build_request;
use super::stream::{Coalesce, NoShutdown};
use super::{HttpError, Phase, Progress};
use crate::config::{HttpCheck, IpVersion};
use crate::probe::tls;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper::header::HeaderValue;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Host;

/// Largest response head (status line and headers) accepted over HTTP/1, and header list over
/// HTTP/2. Bounds memory against a peer that streams headers forever.
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// HTTP/2 flow-control window per stream. The peer cannot push more than this past the body
/// cap before we stop reading, so it bounds memory per probe.
const H2_STREAM_WINDOW: u32 = 256 * 1024;

/// One request on one fresh connection: resolve, connect, TLS, exchange.
pub(super) async fn exchange_once(
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
    let (stream, addr) = connect(&addrs, http.net.source_address).await?;
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

/// The target's addresses of the check's `ip_version`, in resolver order; an IP literal is
/// its own answer.
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
    let addrs = crate::probe::tcp::of_version(addrs, version);
    if addrs.is_empty() {
        return Err(HttpError::NoAddressOfVersion {
            host: name,
            version: version.as_str(),
        });
    }
    Ok(addrs)
}

/// Connects to the first address that accepts, in resolver order (which honours the system's
/// address preference, e.g. gai.conf), from `source` when the check names one; the last error
/// is reported when none does.
async fn connect(
    addrs: &[SocketAddr],
    source: Option<std::net::IpAddr>,
) -> Result<(TcpStream, SocketAddr), HttpError> {
    let mut last = None;
    let addrs =
        crate::probe::tcp::of_source(addrs, source).map_err(|e| HttpError::Source(e.message))?;
    for addr in addrs {
        match crate::probe::tcp::open(addr, source).await {
            Ok(stream) => return Ok((stream, addr)),
            Err(source) => last = Some(HttpError::Connect { addr, source }),
        }
    }
    // `resolve` never returns an empty list, so `last` is set; the fallback keeps it total.
    Err(last.unwrap_or_else(|| HttpError::NoAddress("(no addresses)".to_string())))
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
