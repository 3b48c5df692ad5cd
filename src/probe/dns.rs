//! DNS probe: one query (UDP) for a name and record type to a configured server; the rcode and
//! answers are checked. The message is encoded and parsed here with bounds checks on every
//! read, so a hostile server can only produce a failed outcome.

use super::condition::{Condition, Observed};
use super::{ErrorClass, Outcome, Phases, ProbeError};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, DnsCheck};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;
use tokio::net::UdpSocket;

/// Record types by name and number.
pub const TYPES: [(&str, u16); 7] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
];

pub const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

pub fn type_number(name: &str) -> Option<u16> {
    TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn rcode_name(code: u8) -> String {
    RCODES
        .get(code as usize)
        .map_or_else(|| format!("RCODE{code}"), |s| s.to_string())
}

/// The query message for `name`/`qtype` with id `id`, recursion desired.
fn encode(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad DNS name {name:?}"));
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    Ok(m)
}

/// Reads a (possibly compressed) name at `pos`; returns it and the position after it.
fn read_name(m: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
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

/// (rcode, answers as text) of a response to query `id`.
fn decode(m: &[u8], id: u16) -> Result<(String, Vec<String>), String> {
    let bad = || "malformed DNS response".to_string();
    if u16_at(m, 0).ok_or_else(bad)? != id {
        return Err("response id does not match the query".into());
    }
    let flags = u16_at(m, 2).ok_or_else(bad)?;
    let rcode = rcode_name((flags & 0x0F) as u8);
    let qd = u16_at(m, 4).ok_or_else(bad)?;
    let an = u16_at(m, 6).ok_or_else(bad)?;
    let mut pos = 12;
    for _ in 0..qd {
        let (_, after) = read_name(m, pos).ok_or_else(bad)?;
        pos = after + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..an.min(256) {
        let (_, after) = read_name(m, pos).ok_or_else(bad)?;
        let rtype = u16_at(m, after).ok_or_else(bad)?;
        let rdlen = u16_at(m, after + 8).ok_or_else(bad)? as usize;
        let rdata_at = after + 10;
        let rdata = m.get(rdata_at..rdata_at + rdlen).ok_or_else(bad)?;
        let text = match rtype {
            1 if rdlen == 4 => {
                IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])).to_string()
            }
            28 if rdlen == 16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                IpAddr::V6(Ipv6Addr::from(b)).to_string()
            }
            2 | 5 => read_name(m, rdata_at).ok_or_else(bad)?.0,
            15 => {
                let pref = u16_at(m, rdata_at).ok_or_else(bad)?;
                format!("{pref} {}", read_name(m, rdata_at + 2).ok_or_else(bad)?.0)
            }
            16 => {
                let mut out = String::new();
                let mut i = 0;
                while i < rdata.len() {
                    let l = rdata[i] as usize;
                    out.push_str(&String::from_utf8_lossy(
                        rdata.get(i + 1..i + 1 + l).ok_or_else(bad)?,
                    ));
                    i += 1 + l;
                }
                out
            }
            _ => format!("type{rtype} ({rdlen} bytes)"),
        };
        answers.push(text);
        pos = rdata_at + rdlen;
    }
    Ok((rcode, answers))
}

async fn query(dns: &DnsCheck) -> Result<(String, Vec<String>), ProbeError> {
    let server = SocketAddr::new(dns.server, dns.port);
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let proto = |message: String| ProbeError {
        class: ErrorClass::Protocol,
        message,
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| proto(format!("bind: {e}")))?;
    sock.connect(server).await.map_err(|e| ProbeError {
        class: ErrorClass::Connect,
        message: format!("{server}: {e}"),
    })?;
    let id = rand::random::<u16>();
    let msg = encode(id, &dns.name, dns.qtype).map_err(proto)?;
    sock.send(&msg).await.map_err(|e| ProbeError {
        class: ErrorClass::Connect,
        message: format!("send to {server}: {e}"),
    })?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| ProbeError {
            class: ErrorClass::Connect,
            message: format!("{server}: {e}"),
        })?;
        match decode(&buf[..n], id) {
            // A stray datagram with another id is skipped, not believed.
            Err(e) if e.contains("id does not match") => continue,
            other => return other.map_err(proto),
        }
    }
}

/// Runs one DNS check once, bounded by its timeout.
pub async fn probe(check: &CheckSpec, dns: &DnsCheck) -> Outcome {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let result = tokio::time::timeout(check.timeout, query(dns)).await;
    let duration = start.elapsed();
    let (mut error, rcode, answers) = match result {
        Ok(Ok((rcode, answers))) => (None, Some(rcode), answers),
        Ok(Err(e)) => (Some(e), None, Vec::new()),
        Err(_) => (Some(super::tcp::timed_out(check.timeout)), None, Vec::new()),
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
        phases: Phases {
            resolve: duration,
            ..Phases::default()
        },
        error,
        started_at,
        tls: None,
        http_version: None,
        content_length: body.len() as u64,
        body_truncated: false,
        redirects: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips_through_the_decoder_with_compressed_answers() {
        let q = encode(0x1234, "support.example.com", 1).expect("encode");
        // The response: the query with QR set and one A answer whose name points at offset 12.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 7]);
        assert_eq!(
            decode(&r, 0x1234),
            Ok(("NOERROR".to_string(), vec!["127.0.0.7".to_string()]))
        );
        assert!(decode(&r, 0x9999).is_err(), "another id is not our answer");
        assert!(
            decode(&r[..20], 0x1234).is_err(),
            "truncated is malformed, never a panic"
        );
    }

    #[test]
    fn a_pointer_loop_is_malformed_not_a_hang() {
        let mut m = vec![0u8; 12];
        m[5] = 1;
        m.extend_from_slice(&[0xC0, 12]);
        assert!(decode(&m, 0).is_err());
    }
}
