//! TCP probe: resolve, connect, optional TLS, optional send and expected reply, each timed.
//! Also the `tls` kind (a TCP check with `tls = true`): handshake, certificate expiry, version.

use super::condition::{Condition, Observed};
use super::tls;
use super::{ErrorClass, Outcome, Phases, ProbeError, TlsInfo};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, IpVersion, NetOptions, TcpCheck};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Bytes of reply read at most while looking for `expect`.
const MAX_REPLY: usize = 64 * 1024;

/// What a connection-level probe saw so far. It lives outside the future the timeout cancels,
/// so a timed-out probe still reports its phases, and the wait is charged to the phase it hit.
#[derive(Default)]
pub(crate) struct Seen {
    pub phases: Phases,
    pub connected: bool,
    /// The address connected to, for `[IP]`.
    pub ip: Option<String>,
    pub tls: Option<TlsInfo>,
    pub reply: Vec<u8>,
    /// The reply ended (or hit its cap) without matching `expect_regex`.
    pub failed_due_to_regex: bool,
    /// The phase running now and since when.
    current: Option<(Phase, Instant)>,
}

/// The phases a connection-level probe goes through (blackbox's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Resolve,
    Connect,
    Tls,
    /// Waiting for and reading the peer's reply or banner.
    Processing,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
        }
    }
}

impl Seen {
    /// Ends the running phase (if any) and starts `phase`.
    pub fn begin(&mut self, phase: Phase) {
        self.end();
        self.current = Some((phase, Instant::now()));
    }

    /// Ends the running phase, adding its time to that phase's total.
    pub fn end(&mut self) {
        if let Some((phase, since)) = self.current.take() {
            let slot = match phase {
                Phase::Resolve => &mut self.phases.resolve,
                Phase::Connect => &mut self.phases.connect,
                Phase::Tls => &mut self.phases.tls,
                Phase::Processing => &mut self.phases.processing,
            };
            *slot += since.elapsed();
        }
    }

    /// The error for a probe whose timeout elapsed, naming the phase it was stuck in.
    pub fn timed_out(&mut self, timeout: Duration) -> ProbeError {
        let mut e = timed_out(timeout);
        if let Some((phase, _)) = self.current {
            e.message.push_str(" during ");
            e.message.push_str(phase.as_str());
        }
        self.end();
        e
    }
}

/// The addresses of the family `version` asks for, in their order.
pub(crate) fn of_version(mut addrs: Vec<SocketAddr>, version: IpVersion) -> Vec<SocketAddr> {
    match version {
        IpVersion::Any => {}
        IpVersion::V4 => addrs.retain(SocketAddr::is_ipv4),
        IpVersion::V6 => addrs.retain(SocketAddr::is_ipv6),
        // A stable sort: the resolver's order within each family is kept.
        IpVersion::Prefer4 => addrs.sort_by_key(|a| !a.is_ipv4()),
        IpVersion::Prefer6 => addrs.sort_by_key(|a| !a.is_ipv6()),
    }
    addrs
}

/// Resolves `host:port`, timing the lookup into `seen.phases.resolve`, and keeps the
/// addresses of the family `version` asks for.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    version: IpVersion,
    seen: &mut Seen,
) -> Result<Vec<SocketAddr>, ProbeError> {
    let addrs = if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        // An IP literal needs no lookup; its resolve phase stays exactly zero, as in blackbox.
        vec![SocketAddr::new(ip, port)]
    } else {
        seen.begin(Phase::Resolve);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ProbeError {
                class: if super::is_local_resource(&e) {
                    ErrorClass::Local
                } else {
                    ErrorClass::Dns
                },
                message: format!("cannot resolve {host}: {e}"),
            })?
            .collect();
        seen.end();
        if addrs.is_empty() {
            return Err(ProbeError {
                class: ErrorClass::Dns,
                message: format!("{host} has no addresses"),
            });
        }
        addrs
    };
    let addrs = of_version(addrs, version);
    if addrs.is_empty() {
        return Err(ProbeError {
            class: ErrorClass::Dns,
            message: format!(
                "{host} has no IPv{0} address (ip_version = \"{0}\")",
                version.as_str()
            ),
        });
    }
    Ok(addrs)
}

/// Connects to the first address that answers, timing it into `seen.phases.connect`; from
/// `source` (the check's `source_address`) when given, to its address family only.
pub(crate) async fn connect(
    addrs: &[SocketAddr],
    source: Option<IpAddr>,
    seen: &mut Seen,
) -> Result<TcpStream, ProbeError> {
    seen.begin(Phase::Connect);
    let mut last = None;
    for addr in of_source(addrs, source)? {
        match open(addr, source).await {
            Ok(s) => {
                seen.end();
                seen.connected = true;
                seen.ip = Some(addr.ip().to_string());
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if super::is_local_resource(&e) => {
                seen.end();
                return Err(ProbeError {
                    class: ErrorClass::Local,
                    message: format!("no resources here to connect to {addr}: {e}"),
                });
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    seen.end();
    Err(ProbeError {
        class: ErrorClass::Connect,
        message: last.unwrap_or_else(|| "no address to connect to".into()),
    })
}

/// The addresses a connection from `source` can reach: those of its family, in order. An
/// error naming both when none is.
pub(crate) fn of_source(
    addrs: &[SocketAddr],
    source: Option<IpAddr>,
) -> Result<Vec<SocketAddr>, ProbeError> {
    let Some(from) = source else {
        return Ok(addrs.to_vec());
    };
    let fit: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| a.is_ipv4() == from.is_ipv4())
        .collect();
    if fit.is_empty() {
        let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        return Err(ProbeError {
            class: ErrorClass::Connect,
            message: format!(
                "source_address {from} cannot reach {}: no IPv{} address among them",
                shown.join(", "),
                if from.is_ipv4() { 4 } else { 6 }
            ),
        });
    }
    Ok(fit)
}

/// One TCP connection to `addr`, from `source` when given (bound to it, any port). A source
/// that is not an address of this host fails with `AddrNotAvailable`, which counts as this
/// machine's problem (`is_local_resource`), never the target's.
pub(crate) async fn open(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(from) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = if from.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(from, 0)).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot connect from source_address {from}: {e}"),
        )
    })?;
    socket.connect(addr).await
}

/// The TLS handshake over `stream`, timed into `seen.phases.tls`.
pub(crate) async fn handshake<S>(
    stream: S,
    host: &str,
    insecure: bool,
    net: &NetOptions,
    seen: &mut Seen,
) -> Result<tokio_rustls::client::TlsStream<S>, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let host = url::Host::parse(host).map_err(|e| ProbeError {
        class: ErrorClass::Tls,
        message: format!("bad host name {host:?}: {e}"),
    })?;
    let host_ref = match &host {
        url::Host::Domain(d) => url::Host::Domain(d.as_str()),
        url::Host::Ipv4(a) => url::Host::Ipv4(*a),
        url::Host::Ipv6(a) => url::Host::Ipv6(*a),
    };
    seen.begin(Phase::Tls);
    let settings = tls::Settings {
        insecure,
        ca: net.ca.as_ref(),
        server_name: net.server_name.as_deref(),
    };
    let done = tls::handshake(stream, &host_ref, &settings)
        .await
        .map_err(|e| ProbeError {
            class: ErrorClass::Tls,
            message: e.to_string(),
        })?;
    seen.end();
    seen.tls = Some(done.info);
    Ok(done.stream)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    tcp: &TcpCheck,
    seen: &mut Seen,
) -> Result<(), ProbeError> {
    seen.begin(Phase::Processing);
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
        let needle = expect.as_bytes();
        let mut buf = [0u8; 4096];
        // Bytes before this offset were searched already (minus an overlap for a match that
        // straddles two reads), so a long trickled reply costs linear, not quadratic, work.
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(needle.len().saturating_sub(1));
            if contains(&seen.reply[from..], needle) {
                break;
            }
            searched = seen.reply.len();
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
                    message: format!(
                        "connection closed before {expect:?} was seen (got {:?})",
                        shorten(&seen.reply)
                    ),
                });
            }
            let room = MAX_REPLY - seen.reply.len();
            seen.reply.extend_from_slice(&buf[..n.min(room)]);
        }
    }
    if let Some(re) = &tcp.expect_regex {
        read_until_match(&mut stream, re, seen).await?;
    }
    seen.end();
    let _ = stream.shutdown().await;
    Ok(())
}

/// Reads the reply until `re` matches it, as blackbox's `expect` does; the connection closing
/// or the cap being reached first is a failure due to the regex.
async fn read_until_match<S: AsyncRead + Unpin>(
    stream: &mut S,
    re: &regex::bytes::Regex,
    seen: &mut Seen,
) -> Result<(), ProbeError> {
    let mut buf = [0u8; 4096];
    loop {
        // Matched over the whole reply so far (a match may span reads); the reply is capped,
        // so a peer trickling bytes costs at most MAX_REPLY per read, within the timeout.
        if re.is_match(&seen.reply) {
            return Ok(());
        }
        if seen.reply.len() >= MAX_REPLY {
            seen.failed_due_to_regex = true;
            return Err(ProbeError {
                class: ErrorClass::Protocol,
                message: format!(
                    "expect_regex {:?} did not match the first {MAX_REPLY} bytes of the reply",
                    re.as_str()
                ),
            });
        }
        let n = stream.read(&mut buf).await.map_err(|e| ProbeError {
            class: ErrorClass::Connect,
            message: format!("read failed: {e}"),
        })?;
        if n == 0 {
            seen.failed_due_to_regex = true;
            return Err(ProbeError {
                class: ErrorClass::Protocol,
                message: format!(
                    "expect_regex {:?} did not match the reply {:?}",
                    re.as_str(),
                    shorten(&seen.reply)
                ),
            });
        }
        let room = MAX_REPLY - seen.reply.len();
        seen.reply.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The start of a reply, for an error message.
fn shorten(reply: &[u8]) -> String {
    String::from_utf8_lossy(&reply[..reply.len().min(80)]).into_owned()
}

async fn run(tcp: &TcpCheck, seen: &mut Seen) -> Result<(), ProbeError> {
    let addrs = resolve(&tcp.host, tcp.port, tcp.net.ip_version, seen).await?;
    let stream = connect(&addrs, tcp.net.source_address, seen).await?;
    if tcp.tls {
        let stream = handshake(stream, &tcp.host, tcp.insecure, &tcp.net, seen).await?;
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
        Err(_) => Some(seen.timed_out(check.timeout)),
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
        ip: seen.ip.as_deref(),
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
        failed_due_to_regex: seen.failed_due_to_regex,
        dns: None,
        steps: Vec::new(),
        vendor: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<SocketAddr> {
        ["[::1]:80", "127.0.0.1:80", "[::2]:80", "127.0.0.2:80"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect()
    }

    #[test]
    fn preferences_put_one_family_first_and_keep_the_other_as_fallback() {
        let v4_first = of_version(addrs(), IpVersion::Prefer4);
        assert_eq!(
            v4_first.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["127.0.0.1:80", "127.0.0.2:80", "[::1]:80", "[::2]:80"]
        );
        let v6_first = of_version(addrs(), IpVersion::Prefer6);
        assert_eq!(
            v6_first.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["[::1]:80", "[::2]:80", "127.0.0.1:80", "127.0.0.2:80"]
        );
        assert_eq!(of_version(addrs(), IpVersion::V4).len(), 2);
        assert_eq!(of_version(addrs(), IpVersion::V6).len(), 2);
        assert_eq!(of_version(addrs(), IpVersion::Any), addrs());
    }

    /// With IPv4 preferred but the service listening on ::1 only, the probe falls back to
    /// IPv6 instead of failing on the refused IPv4 address.
    #[tokio::test]
    async fn prefer4_falls_back_to_ipv6_when_ipv4_refuses() {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            panic!("::1 is not available on this machine; the test needs a real IPv6 loopback");
        };
        let port = listener.local_addr().unwrap().port();
        let both: Vec<SocketAddr> = vec![
            format!("[::1]:{port}").parse().unwrap(),
            format!("127.0.0.1:{port}").parse().unwrap(),
        ];
        let ordered = of_version(both, IpVersion::Prefer4);
        assert!(ordered[0].is_ipv4());
        let mut seen = Seen::default();
        let stream = connect(&ordered, None, &mut seen)
            .await
            .expect("falls back to ::1");
        assert_eq!(stream.peer_addr().unwrap().ip().to_string(), "::1");
        assert_eq!(seen.ip.as_deref(), Some("::1"));
    }
}
