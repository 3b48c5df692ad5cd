//! SMTP probe for the support mail intake: the 220 banner, EHLO, STARTTLS offered and
//! negotiated (or implicit TLS), certificate expiry and version, then QUIT. Every read is
//! capped, so a hostile peer cannot make it hang past the timeout or hold much memory.

use super::tcp::{self, Seen};
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
async fn reply<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
) -> Result<(u16, Vec<String>), ProbeError> {
    let mut lines = Vec::new();
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
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| protocol(format!("not an SMTP reply: {:?}", shorten(&line))))?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Ok((code, lines));
        }
        if lines.len() >= MAX_LINES {
            return Err(protocol(format!("reply longer than {MAX_LINES} lines")));
        }
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    line: &str,
) -> Result<(u16, Vec<String>), ProbeError> {
    r.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| protocol(format!("write failed: {e}")))?;
    reply(r).await
}

/// Banner, EHLO, and (optionally) STARTTLS on `stream`. Returns whether STARTTLS should
/// follow, with the reader to continue on.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    smtp: &SmtpCheck,
    seen: &mut Seen,
) -> Result<Vec<String>, ProbeError> {
    let start = Instant::now();
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
    seen.phases.processing += start.elapsed();
    Ok(ehlo)
}

async fn quit<S: AsyncRead + AsyncWrite + Unpin>(r: &mut BufReader<S>) {
    let _ = command(r, "QUIT").await;
}

async fn run(smtp: &SmtpCheck, seen: &mut Seen) -> Result<(), ProbeError> {
    let addrs = tcp::resolve(&smtp.host, smtp.port, seen).await?;
    let stream = tcp::connect(&addrs, seen).await?;
    if smtp.tls {
        let stream = tcp::handshake(stream, &smtp.host, smtp.insecure, seen).await?;
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
    let (code, lines) = command(&mut r, "STARTTLS").await?;
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
    let stream = tcp::handshake(r.into_inner(), &smtp.host, smtp.insecure, seen).await?;
    let mut r = BufReader::new(stream);
    let (code, lines) = command(&mut r, &format!("EHLO {}", smtp.ehlo)).await?;
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
        Err(_) => Some(tcp::timed_out(check.timeout)),
    };
    let status = seen
        .reply
        .get(..3)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok());
    tcp::finish(check, started_at, start.elapsed(), seen, error, status)
}
