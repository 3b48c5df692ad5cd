//! SMTP probe for the support mail intake: the 220 banner, EHLO, STARTTLS offered and
//! negotiated (or implicit TLS), certificate expiry and version, then QUIT. Every read is
//! capped, so a hostile peer cannot make it hang past the timeout or hold much memory.

use super::tcp::{self, Phase, Seen};
use super::{ErrorClass, Outcome, ProbeError};
use crate::clock::Timestamp;
use crate::config::{CheckSpec, SmtpCheck};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// RFC 5321 caps a reply line at 512 octets; some servers are generous, so allow more.
const MAX_LINE: usize = 2048;
/// Lines of one (multi-line) reply read at most.
const MAX_LINES: usize = 100;

fn protocol(message: String) -> ProbeError {
    ProbeError {
        class: ErrorClass::Protocol,
        message,
    }
}

/// Reads one reply: its code and its lines (multi-line replies use `250-` before the last).
///
/// Strict where a lenient reader would be fooled: a line must end within `MAX_LINE` bytes and
/// start with three digits followed by a space, a hyphen or the end, and every line of one
/// reply must carry the same code (RFC 5321 4.2.1).
pub(super) async fn reply<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
) -> Result<(u16, Vec<String>), ProbeError> {
    let mut lines = Vec::new();
    let mut code = None;
    loop {
        let mut raw = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(|e| protocol(format!("read failed: {e}")))?;
        if n == 0 {
            return Err(protocol("connection closed before a complete reply".into()));
        }
        if raw.last() != Some(&b'\n') {
            // Either the cap was hit or the peer closed mid-line: not a reply either way.
            let line = String::from_utf8_lossy(&raw);
            return Err(protocol(format!(
                "reply line longer than {MAX_LINE} bytes or cut short: {:?}",
                shorten(&line)
            )));
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        let bytes = line.as_bytes();
        let this = bytes
            .get(..3)
            .filter(|c| c.iter().all(u8::is_ascii_digit))
            .filter(|_| matches!(bytes.get(3), None | Some(b' ' | b'-')))
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| protocol(format!("not an SMTP reply: {:?}", shorten(&line))))?;
        if *code.get_or_insert(this) != this {
            return Err(protocol(format!(
                "reply changes its code mid-way: {:?}",
                shorten(&line)
            )));
        }
        let last = bytes.get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Ok((this, lines));
        }
        if lines.len() >= MAX_LINES {
            return Err(protocol(format!("reply longer than {MAX_LINES} lines")));
        }
    }
}

pub(super) fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

pub(super) async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    line: &str,
) -> Result<(u16, Vec<String>), ProbeError> {
    r.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| protocol(format!("write failed: {e}")))?;
    reply(r).await
}

/// Reads the banner (which must be 220) and sends EHLO (which must be accepted); returns the
/// EHLO reply's lines, where the extensions (STARTTLS among them) are listed.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    smtp: &SmtpCheck,
    seen: &mut Seen,
) -> Result<Vec<String>, ProbeError> {
    seen.begin(Phase::Processing);
    let (code, banner) = reply(r).await?;
    seen.reply.extend_from_slice(banner.join("\n").as_bytes());
    if code != 220 {
        return Err(protocol(format!(
            "banner is not 220: {}",
            shorten(&banner[0])
        )));
    }
    let (code, ehlo) = command(r, &format!("EHLO {}", smtp.ehlo)).await?;
    if code != 250 {
        return Err(protocol(format!("EHLO refused: {}", shorten(&ehlo[0]))));
    }
    seen.end();
    Ok(ehlo)
}

async fn quit<S: AsyncRead + AsyncWrite + Unpin>(r: &mut BufReader<S>) {
    let _ = command(r, "QUIT").await;
}

async fn run(smtp: &SmtpCheck, seen: &mut Seen) -> Result<(), ProbeError> {
    let addrs = tcp::resolve(&smtp.host, smtp.port, smtp.net.ip_version, seen).await?;
    let stream = tcp::connect(&addrs, smtp.net.source_address, seen).await?;
    if smtp.tls {
        let stream = tcp::handshake(stream, &smtp.host, smtp.insecure, &smtp.net, seen).await?;
        let mut r = BufReader::new(stream);
        greet(&mut r, smtp, seen).await?;
        quit(&mut r).await;
        return Ok(());
    }
    let mut r = BufReader::new(stream);
    let ehlo = greet(&mut r, smtp, seen).await?;
    if !smtp.starttls {
        quit(&mut r).await;
        return Ok(());
    }
    let offered = ehlo.iter().any(|l| {
        l.get(4..)
            .is_some_and(|ext| ext.trim().eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        quit(&mut r).await;
        return Err(ProbeError {
            class: ErrorClass::Tls,
            message: "the server does not offer STARTTLS".into(),
        });
    }
    seen.begin(Phase::Processing);
    let (code, lines) = command(&mut r, "STARTTLS").await?;
    seen.end();
    if code != 220 {
        return Err(ProbeError {
            class: ErrorClass::Tls,
            message: format!("STARTTLS refused: {}", shorten(&lines[0])),
        });
    }
    // Nothing the server sent before the upgrade may be read after it (RFC 3207).
    if !r.buffer().is_empty() {
        return Err(protocol(
            "data after the STARTTLS reply (possible injection)".into(),
        ));
    }
    let stream = tcp::handshake(r.into_inner(), &smtp.host, smtp.insecure, &smtp.net, seen).await?;
    let mut r = BufReader::new(stream);
    // The server's work after the upgrade (the second EHLO) is processing time too.
    seen.begin(Phase::Processing);
    let (code, lines) = command(&mut r, &format!("EHLO {}", smtp.ehlo)).await?;
    seen.end();
    if code != 250 {
        return Err(protocol(format!(
            "EHLO after STARTTLS refused: {}",
            shorten(&lines[0])
        )));
    }
    quit(&mut r).await;
    Ok(())
}

/// Runs one SMTP check once, bounded by its timeout. `[STATUS]` is the banner's code.
pub async fn probe(check: &CheckSpec, smtp: &SmtpCheck) -> Outcome {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let mut seen = Seen::default();
    let error = match tokio::time::timeout(check.timeout, run(smtp, &mut seen)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(seen.timed_out(check.timeout)),
    };
    let status = seen
        .reply
        .get(..3)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok());
    tcp::finish(check, started_at, start.elapsed(), seen, error, status)
}
