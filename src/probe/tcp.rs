//! TCP probe: resolve, connect, optional TLS, optional send and expected reply, each timed.
//! Also the `tls` kind (a TCP check with `tls = true`): handshake, certificate expiry, version.

use super::condition::{Condition, Observed};
use super::tls;
use super::{ErrorClass, Outcome, Phases, ProbeError, TlsInfo};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, TcpCheck};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of reply read at most while looking for `expect`.
const MAX_REPLY: usize = 64 * 1024;

/// What a connection-level probe saw so far, so a timeout still reports what happened.
#[derive(Default)]
pub(crate) struct Seen {
    pub phases: Phases,
    pub connected: bool,
    pub tls: Option<TlsInfo>,
    pub reply: Vec<u8>,
}

/// Resolves `host:port`, timing the lookup into `seen.phases.resolve`.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    seen: &mut Seen,
) -> Result<Vec<SocketAddr>, ProbeError> {
    let start = Instant::now();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ProbeError {
            class: ErrorClass::Dns,
            message: format!("cannot resolve {host}: {e}"),
        })?
        .collect();
    seen.phases.resolve = start.elapsed();
    if addrs.is_empty() {
        return Err(ProbeError {
            class: ErrorClass::Dns,
            message: format!("{host} has no addresses"),
        });
    }
    Ok(addrs)
}

/// Connects to the first address that answers, timing it into `seen.phases.connect`.
pub(crate) async fn connect(
    addrs: &[SocketAddr],
    seen: &mut Seen,
) -> Result<TcpStream, ProbeError> {
    let start = Instant::now();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                seen.phases.connect = start.elapsed();
                seen.connected = true;
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(ProbeError {
        class: ErrorClass::Connect,
        message: last.unwrap_or_else(|| "no address to connect to".into()),
    })
}

/// The TLS handshake over `stream`, timed into `seen.phases.tls`.
pub(crate) async fn handshake<S>(
    stream: S,
    host: &str,
    insecure: bool,
    seen: &mut Seen,
) -> Result<tokio_rustls::client::TlsStream<S>, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let host = url::Host::parse(host).map_err(|e| ProbeError {
        class: ErrorClass::Tls,
        message: format!("bad host name {host:?}: {e}"),
    })?;
    let host_ref = match &host {
        url::Host::Domain(d) => url::Host::Domain(d.as_str()),
        url::Host::Ipv4(a) => url::Host::Ipv4(*a),
        url::Host::Ipv6(a) => url::Host::Ipv6(*a),
    };
    let done = tls::handshake(stream, &host_ref, insecure)
        .await
        .map_err(|e| ProbeError {
            class: ErrorClass::Tls,
            message: e.to_string(),
        })?;
    seen.phases.tls = start.elapsed();
    seen.tls = Some(done.info);
    Ok(done.stream)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    tcp: &TcpCheck,
    seen: &mut Seen,
) -> Result<(), ProbeError> {
    let start = Instant::now();
    if let Some(send) = &tcp.send {
        stream
            .write_all(send.as_bytes())
            .await
            .map_err(|e| ProbeError {
                class: ErrorClass::Connect,
                message: format!("send failed: {e}"),
            })?;
    }
    if let Some(expect) = &tcp.expect {
        let mut buf = [0u8; 4096];
        loop {
            if String::from_utf8_lossy(&seen.reply).contains(expect.as_str()) {
                break;
            }
            if seen.reply.len() >= MAX_REPLY {
                return Err(ProbeError {
                    class: ErrorClass::Protocol,
                    message: format!("{expect:?} not in the first {MAX_REPLY} bytes of the reply"),
                });
            }
            let n = stream.read(&mut buf).await.map_err(|e| ProbeError {
                class: ErrorClass::Connect,
                message: format!("read failed: {e}"),
            })?;
            if n == 0 {
                return Err(ProbeError {
                    class: ErrorClass::Protocol,
                    message: format!("connection closed before {expect:?} was seen"),
                });
            }
            let room = MAX_REPLY - seen.reply.len();
            seen.reply.extend_from_slice(&buf[..n.min(room)]);
        }
    }
    seen.phases.processing = start.elapsed();
    let _ = stream.shutdown().await;
    Ok(())
}

async fn run(tcp: &TcpCheck, seen: &mut Seen) -> Result<(), ProbeError> {
    let addrs = resolve(&tcp.host, tcp.port, seen).await?;
    let stream = connect(&addrs, seen).await?;
    if tcp.tls {
        let stream = handshake(stream, &tcp.host, tcp.insecure, seen).await?;
        exchange(stream, tcp, seen).await
    } else {
        exchange(stream, tcp, seen).await
    }
}

/// Runs one TCP (or TLS) check once, bounded by its timeout.
pub async fn probe(check: &CheckSpec, tcp: &TcpCheck) -> Outcome {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let mut seen = Seen::default();
    let error = match tokio::time::timeout(check.timeout, run(tcp, &mut seen)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(timed_out(check.timeout)),
    };
    finish(check, started_at, start.elapsed(), seen, error, None)
}

pub(crate) fn timed_out(timeout: Duration) -> ProbeError {
    ProbeError {
        class: ErrorClass::Timeout,
        message: format!("timed out after {}", humantime::format_duration(timeout)),
    }
}

/// Evaluates conditions (`[CONNECTED]`, `[CERTIFICATE_EXPIRATION]`, `[RESPONSE_TIME]`,
/// `[BODY]` = the reply) and assembles the outcome. Without conditions, no error = success.
pub(crate) fn finish(
    check: &CheckSpec,
    started_at: Timestamp,
    duration: Duration,
    seen: Seen,
    mut error: Option<ProbeError>,
    status: Option<u16>,
) -> Outcome {
    let observed = Observed {
        status,
        body: Some(seen.reply.as_slice()),
        response_time_ms: Some(duration.as_millis() as u64),
        connected: Some(seen.connected),
        certificate_expiration_ms: seen.tls.as_ref().map(|t| {
            t.earliest_cert_expiry
                .saturating_mul(1000)
                .saturating_sub(started_at.as_millis())
        }),
        ..Default::default()
    };
    let conditions = Condition::evaluate_all(&check.conditions, &observed);
    if error.is_none() {
        if let Some(failed) = conditions.iter().find(|c| !c.success) {
            error = Some(ProbeError {
                class: ErrorClass::Conditions,
                message: format!("condition failed: {}", failed.resolved),
            });
        }
    }
    Outcome {
        check: check.name.clone(),
        success: error.is_none(),
        conditions,
        status,
        duration,
        phases: seen.phases,
        error,
        started_at,
        tls: seen.tls,
        http_version: None,
        content_length: seen.reply.len() as u64,
        body_truncated: false,
        redirects: 0,
    }
}
