//! DNS probe: one query for a name and record type to a configured server (UDP, then TCP when
//! the reply is truncated); the rcode and answers are checked. The message is encoded and parsed
//! here with bounds checks on every read, so a hostile server can only produce a failed outcome.
//!
//! Hand-rolled rather than hickory-proto: the probe needs one question and seven record types,
//! which is ~200 lines with no new dependency tree to build and audit.

use super::condition::{Condition, Observed};
use super::tcp::{Phase, Seen};
use super::{DnsInfo, ErrorClass, Outcome, ProbeError};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, DnsCheck};
use crate::lang::dns::rcode_name;
pub use crate::lang::dns::{type_number, RCODES, TYPES};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// UDP receive buffer. Without EDNS a server answers in at most 512 bytes over UDP; the
/// larger buffer tolerates servers that ignore that, and anything longer is cut by the kernel.
const UDP_BUFFER: usize = 4096;
/// Answers decoded at most: enough for any real record set, and a bound on the work a hostile
/// reply can cause.
const MAX_ANSWERS: u16 = 256;
/// Compression pointers and labels followed per name at most, so a pointer loop ends.
const MAX_NAME_STEPS: usize = 128;

/// The query message for `name`/`qtype` with id `id`, recursion desired.
fn encode(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let trimmed = name.trim_end_matches('.');
    // The root (`.`) is the empty name: no labels at all.
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("bad DNS name {name:?}"));
            }
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
    }
    m.push(0);
    // RFC 1035 limits a name to 255 octets on the wire (the 12-byte header is not part of it).
    if m.len() - 12 > 255 {
        return Err(format!("DNS name {name:?} is longer than 255 octets"));
    }
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    Ok(m)
}

/// Reads a (possibly compressed) name at `pos`; returns it and the position after it.
fn read_name(m: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..MAX_NAME_STEPS {
        let len = *m.get(pos)? as usize;
        if len == 0 {
            return Some((labels.join("."), end.unwrap_or(pos + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let ptr = ((len & 0x3F) << 8) | *m.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        let label = m.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    None
}

fn u16_at(m: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(pos)?, *m.get(pos + 1)?]))
}

fn u32_at(m: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *m.get(pos)?,
        *m.get(pos + 1)?,
        *m.get(pos + 2)?,
        *m.get(pos + 3)?,
    ]))
}

/// Why a datagram is not the answer to our query.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum DecodeError {
    /// Not a reply to this query (other id, not a response, other question): over UDP it is
    /// skipped, because anyone can send a datagram to our port, and believing it would let a
    /// stray packet decide the check.
    #[error("{0}")]
    Stray(&'static str),
    /// A reply to our query that cannot be read.
    #[error("malformed DNS response")]
    Malformed,
}

/// A reply to our query, read.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    rcode: String,
    /// Each answer record's data as text (`127.0.0.7`, `10 mail.example.com`, ...).
    answers: Vec<String>,
    /// TC: the server had more to say than fits in a datagram; ask again over TCP.
    truncated: bool,
    /// Record counts from the header (ANCOUNT, NSCOUNT, ARCOUNT).
    counts: DnsInfo,
}

/// The query a reply must match.
struct Query<'a> {
    id: u16,
    name: &'a str,
    qtype: u16,
}

/// Reads `m` as the reply to `q`, with bounds checks on every read.
fn decode(m: &[u8], q: &Query<'_>) -> Result<Reply, DecodeError> {
    use DecodeError::{Malformed, Stray};
    if u16_at(m, 0).ok_or(Malformed)? != q.id {
        return Err(Stray("response id does not match the query"));
    }
    let flags = u16_at(m, 2).ok_or(Malformed)?;
    if flags & 0x8000 == 0 {
        return Err(Stray("a query, not a response"));
    }
    let truncated = flags & 0x0200 != 0;
    let rcode = rcode_name((flags & 0x0F) as u8);
    let qd = u16_at(m, 4).ok_or(Malformed)?;
    let an = u16_at(m, 6).ok_or(Malformed)?;
    let counts = DnsInfo {
        answer_rrs: an,
        authority_rrs: u16_at(m, 8).ok_or(Malformed)?,
        additional_rrs: u16_at(m, 10).ok_or(Malformed)?,
    };
    let mut pos = 12;
    for i in 0..qd {
        let (name, after) = read_name(m, pos).ok_or(Malformed)?;
        let qtype = u16_at(m, after).ok_or(Malformed)?;
        // The first question must be ours. Servers may omit it (some FORMERR replies do).
        if i == 0 && (!name.eq_ignore_ascii_case(q.name.trim_end_matches('.')) || qtype != q.qtype)
        {
            return Err(Stray("response is for another question"));
        }
        pos = after + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..an.min(MAX_ANSWERS) {
        let Some((_, after)) = read_name(m, pos) else {
            // A truncated reply may stop mid-record; TCP will give the whole of it.
            return if truncated {
                Ok(Reply {
                    rcode,
                    answers,
                    truncated,
                    counts,
                })
            } else {
                Err(Malformed)
            };
        };
        let rtype = u16_at(m, after).ok_or(Malformed)?;
        let rdlen = u16_at(m, after + 8).ok_or(Malformed)? as usize;
        let rdata_at = after + 10;
        let rdata = m.get(rdata_at..rdata_at + rdlen).ok_or(Malformed)?;
        answers.push(rdata_text(m, rtype, rdata_at, rdata).ok_or(Malformed)?);
        pos = rdata_at + rdlen;
    }
    Ok(Reply {
        rcode,
        answers,
        truncated,
        counts,
    })
}

/// One answer's data as `dig +short` would show it (names without the final dot).
fn rdata_text(m: &[u8], rtype: u16, at: usize, rdata: &[u8]) -> Option<String> {
    Some(match rtype {
        1 if rdata.len() == 4 => {
            IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])).to_string()
        }
        28 if rdata.len() == 16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(rdata);
            IpAddr::V6(Ipv6Addr::from(b)).to_string()
        }
        2 | 5 => read_name(m, at)?.0,
        15 => format!("{} {}", u16_at(m, at)?, read_name(m, at + 2)?.0),
        6 => {
            // SOA: mname rname serial refresh retry expire minimum.
            let (mname, after) = read_name(m, at)?;
            let (rname, after) = read_name(m, after)?;
            let numbers: Vec<String> = (0..5)
                .map(|i| u32_at(m, after + 4 * i).map(|n| n.to_string()))
                .collect::<Option<_>>()?;
            format!("{mname} {rname} {}", numbers.join(" "))
        }
        16 => {
            // TXT: one or more character-strings, joined as one text (as SPF readers do).
            let mut out = String::new();
            let mut i = 0;
            while i < rdata.len() {
                let l = rdata[i] as usize;
                out.push_str(&String::from_utf8_lossy(rdata.get(i + 1..i + 1 + l)?));
                i += 1 + l;
            }
            out
        }
        _ => format!("type{rtype} ({} bytes)", rdata.len()),
    })
}

fn protocol(message: String) -> ProbeError {
    ProbeError {
        class: ErrorClass::Protocol,
        message,
    }
}

fn connect_error(message: String) -> ProbeError {
    ProbeError {
        class: ErrorClass::Connect,
        message,
    }
}

/// Asks over UDP; on a truncated reply asks again over TCP, as stub resolvers do. Socket set-up
/// is the `connect` phase and the exchange the `request` phase (`processing` in `seen`), as
/// blackbox's `probe_dns_duration_seconds` splits them.
async fn query(
    dns: &DnsCheck,
    transport: &mut &'static str,
    seen: &mut Seen,
) -> Result<Reply, ProbeError> {
    let server = SocketAddr::new(dns.server, dns.port);
    let q = Query {
        id: rand::random::<u16>(),
        name: &dns.name,
        qtype: dns.qtype,
    };
    let msg = encode(q.id, &dns.name, dns.qtype).map_err(protocol)?;
    let reply = query_udp(server, dns.source_address, &msg, &q, seen).await?;
    if !reply.truncated {
        return Ok(reply);
    }
    *transport = "TCP";
    query_tcp(server, dns.source_address, &msg, &q, seen).await
}

async fn query_udp(
    server: SocketAddr,
    source: Option<IpAddr>,
    msg: &[u8],
    q: &Query<'_>,
    seen: &mut Seen,
) -> Result<Reply, ProbeError> {
    seen.begin(Phase::Connect);
    let bind = match source {
        Some(from) => SocketAddr::new(from, 0),
        None if server.is_ipv4() => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        None => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| match source {
        // A source address this host does not have is our problem, not the server's.
        Some(from) if crate::probe::is_local_resource(&e) => ProbeError {
            class: ErrorClass::Local,
            message: format!("cannot query from source_address {from}: {e}"),
        },
        _ => protocol(format!("bind: {e}")),
    })?;
    // A connected socket only receives datagrams from the server's address and port.
    sock.connect(server)
        .await
        .map_err(|e| connect_error(format!("{server}: {e}")))?;
    seen.begin(Phase::Processing);
    sock.send(msg)
        .await
        .map_err(|e| connect_error(format!("send to {server}: {e}")))?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        // A refused port shows up here (ICMP port unreachable) as a receive error.
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| connect_error(format!("{server}: {e}")))?;
        match decode(&buf[..n], q) {
            Err(DecodeError::Stray(_)) => continue,
            other => {
                seen.end();
                return other.map_err(|e| protocol(format!("{e} from {server}")));
            }
        }
    }
}

/// DNS over TCP (RFC 1035 4.2.2): each message is preceded by its length in two bytes, so a
/// reply is at most 65535 bytes and memory stays bounded whatever the server sends.
async fn query_tcp(
    server: SocketAddr,
    source: Option<IpAddr>,
    msg: &[u8],
    q: &Query<'_>,
    seen: &mut Seen,
) -> Result<Reply, ProbeError> {
    seen.begin(Phase::Connect);
    let mut stream = crate::probe::tcp::open(server, source).await.map_err(|e| {
        let message = format!("reply truncated over UDP, and TCP to {server} failed: {e}");
        if crate::probe::is_local_resource(&e) {
            ProbeError {
                class: ErrorClass::Local,
                message,
            }
        } else {
            connect_error(message)
        }
    })?;
    seen.begin(Phase::Processing);
    let len = u16::try_from(msg.len()).map_err(|_| protocol("query too long".into()))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    let io = |e: std::io::Error| connect_error(format!("DNS over TCP to {server}: {e}"));
    stream.write_all(&framed).await.map_err(io)?;
    let len = stream.read_u16().await.map_err(io)?;
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await.map_err(io)?;
    seen.end();
    // Over TCP nobody else can inject a message, so a mismatch is the server's fault.
    decode(&reply, q).map_err(|e| protocol(format!("{e} from {server} over TCP")))
}

/// Runs one DNS check once, bounded by its timeout.
///
/// The server is an IP address, so the `resolve` phase (blackbox's
/// `probe_dns_lookup_time_seconds`, the time to resolve the *target*) is zero; socket set-up is
/// `connect` and the exchange (UDP, and TCP after a truncated reply) is `processing`, exported
/// as `probe_dns_duration_seconds{phase="request"}`. The answers, one per line, are `[BODY]`.
pub async fn probe(check: &CheckSpec, dns: &DnsCheck) -> Outcome {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let mut transport = "UDP";
    let mut seen = Seen::default();
    let result = tokio::time::timeout(check.timeout, query(dns, &mut transport, &mut seen)).await;
    seen.end();
    let duration = start.elapsed();
    let (mut error, rcode, answers, counts) = match result {
        Ok(Ok(reply)) => (None, Some(reply.rcode), reply.answers, Some(reply.counts)),
        Ok(Err(e)) => (Some(e), None, Vec::new(), None),
        Err(_) => {
            let mut e = super::tcp::timed_out(check.timeout);
            e.message.push_str(&format!(
                " waiting for a DNS reply from {} over {transport}",
                SocketAddr::new(dns.server, dns.port)
            ));
            (Some(e), None, Vec::new(), None)
        }
    };
    if error.is_none() {
        let got = rcode.as_deref().unwrap_or("");
        if !got.eq_ignore_ascii_case(&dns.expect_rcode) {
            error = Some(ProbeError {
                class: ErrorClass::Dns,
                message: format!("rcode {got}, expected {}", dns.expect_rcode),
            });
        } else if let Some(missing) = dns.expect_answers.iter().find(|a| !answers.contains(a)) {
            error = Some(ProbeError {
                class: ErrorClass::Dns,
                message: format!("answer {missing} missing (got {})", answers.join(", ")),
            });
        }
    }
    let body = answers.join("\n");
    let observed = Observed {
        body: Some(body.as_bytes()),
        response_time_ms: Some(duration.as_millis() as u64),
        dns_rcode: rcode.as_deref(),
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
        status: None,
        duration,
        phases: seen.phases,
        error,
        started_at,
        tls: None,
        http_version: None,
        content_length: body.len() as u64,
        body_truncated: false,
        redirects: 0,
        failed_due_to_regex: false,
        dns: counts,
        steps: Vec::new(),
        vendor: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Query<'static> = Query {
        id: 0x1234,
        name: "support.example.com",
        qtype: 1,
    };

    /// The query for `Q` turned into a response with `flags` and the given answer records.
    fn response(flags: [u8; 2], answers: &[&[u8]]) -> Vec<u8> {
        let mut r = encode(Q.id, Q.name, Q.qtype).expect("encode");
        r[2] = flags[0];
        r[3] = flags[1];
        r[7] = answers.len() as u8;
        for a in answers {
            r.extend_from_slice(a);
        }
        r
    }

    /// An answer record whose owner name points at the question (offset 12).
    fn record(rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut a = vec![0xC0, 12];
        a.extend_from_slice(&rtype.to_be_bytes());
        a.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        a.extend_from_slice(rdata);
        a
    }

    #[test]
    fn a_query_round_trips_through_the_decoder_with_compressed_answers() {
        let r = response([0x81, 0x80], &[&record(1, &[127, 0, 0, 7])]);
        assert_eq!(
            decode(&r, &Q),
            Ok(Reply {
                rcode: "NOERROR".to_string(),
                answers: vec!["127.0.0.7".to_string()],
                truncated: false,
                counts: DnsInfo {
                    answer_rrs: 1,
                    authority_rrs: 0,
                    additional_rrs: 0,
                },
            })
        );
        let other = Query { id: 0x9999, ..Q };
        assert!(
            matches!(decode(&r, &other), Err(DecodeError::Stray(_))),
            "another id is not our answer"
        );
        for cut in 0..r.len() {
            assert!(
                decode(&r[..cut], &Q).is_err(),
                "cut at {cut} is malformed or stray, never a panic"
            );
        }
    }

    #[test]
    fn a_pointer_loop_is_malformed_not_a_hang() {
        let mut m = vec![0x12, 0x34, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xC0, 12]);
        assert_eq!(decode(&m, &Q), Err(DecodeError::Malformed));
    }

    #[test]
    fn a_query_or_an_answer_to_another_question_is_stray() {
        let as_query = response([0x01, 0x00], &[]);
        assert_eq!(
            decode(&as_query, &Q),
            Err(DecodeError::Stray("a query, not a response"))
        );
        let other_type = Query { qtype: 28, ..Q };
        let r = response([0x81, 0x80], &[]);
        assert!(matches!(
            decode(&r, &other_type),
            Err(DecodeError::Stray(_))
        ));
        let upper = Query {
            name: "SUPPORT.Example.COM.",
            ..Q
        };
        assert!(
            decode(&r, &upper).is_ok(),
            "names compare case-insensitively"
        );
    }

    #[test]
    fn truncation_flag_and_rcode_are_read() {
        let r = response([0x83, 0x83], &[]);
        let reply = decode(&r, &Q).expect("decodes");
        assert!(reply.truncated);
        assert_eq!(reply.rcode, "NXDOMAIN");
        // A truncated reply may end in the middle of its answers.
        let mut cut = response([0x83, 0x80], &[]);
        cut[7] = 3;
        assert!(decode(&cut, &Q).expect("decodes").truncated);
    }

    #[test]
    fn mx_txt_and_soa_read_as_dig_shows_them() {
        let mx = record(15, &[0, 10, 4, b'm', b'a', b'i', b'l', 0xC0, 20]);
        let txt = record(16, b"\x07v=spf1 \x04-all");
        let mut soa_data = vec![2, b'n', b's', 0xC0, 20, 4, b'h', b'o', b's', b't', 0xC0, 20];
        for n in [2026u32, 3600, 600, 86400, 300] {
            soa_data.extend_from_slice(&n.to_be_bytes());
        }
        let soa = record(6, &soa_data);
        let r = response([0x81, 0x80], &[&mx, &txt, &soa]);
        assert_eq!(
            decode(&r, &Q).expect("decodes").answers,
            [
                "10 mail.example.com",
                "v=spf1 -all",
                "ns.example.com host.example.com 2026 3600 600 86400 300"
            ]
        );
    }

    #[test]
    fn names_longer_than_dns_allows_are_refused_before_sending() {
        assert!(encode(1, &"a".repeat(64), 1).is_err());
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(encode(1, &long, 1).is_err());
        assert!(encode(1, ".", 2).is_ok(), "the root is a name");
    }
}
