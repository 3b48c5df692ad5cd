//! `kind = "mail_roundtrip"`: a canary e-mail with a unique token is handed to the intake's SMTP
//! server, then looked for until the check's timeout, in a mailbox over IMAP (`imap.rs`) or
//! through an HTTP search (a helpdesk's search API, run as the HTTP probe).
//!
//! The canary is marked so rules can file and auto-close it: the subject starts with
//! `subject_prefix` (`[Switchboard canary]`) followed by the token, and the header
//! `X-Switchboard-Canary: <token>` carries it too. Two phases are timed and kept as the
//! outcome's steps: `accepted` (from the SMTP connect to the 250 after DATA) and `arrived`
//! (from that 250 to the token seen). The outcome's connection phases are the SMTP session's.
//!
//! With IMAP, the session is opened and logged in before the canary is sent: a mailbox that
//! cannot be read fails the check without sending a canary nobody would clean up.

use super::imap::Session;
use super::smtp::{command, reply, shorten};
use super::tcp::{self, Phase, Seen};
use super::{ErrorClass, Outcome, Phases, ProbeError, StepResult};
use crate::clock::Timestamp;
use crate::config::{
    CheckSpec, HttpCheck, ImapConfirm, MailConfirm, MailRoundtripCheck, MailServer, MailTls,
    OnArrival, SearchConfirm,
};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The header that carries the token.
pub const CANARY_HEADER: &str = "X-Switchboard-Canary";

/// What the run has reached, kept outside the future the timeout cancels.
#[derive(Default)]
struct Progress {
    /// What is being done now, for a timeout's message.
    stage: &'static str,
    /// When the SMTP session began.
    smtp_start: Option<Instant>,
    /// Time from the SMTP connect to the 250 after DATA.
    accepted: Option<Duration>,
    /// When the 250 after DATA came.
    accepted_at: Option<Instant>,
    /// Time from the 250 to the token seen.
    arrived: Option<Duration>,
    /// How many times arrival was looked for.
    looks: u32,
    /// Why the last search did not find the canary, when it said more than "not yet".
    last_search: Option<String>,
}

/// A fresh token: 128 random bits in hex, unguessable, so only this canary matches it.
fn new_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Runs one mail round trip, bounded by the check's timeout.
pub async fn probe(check: &CheckSpec, m: &MailRoundtripCheck) -> Outcome {
    let started_at = Timestamp::now();
    let start = Instant::now();
    let token = new_token();
    let mut seen = Seen::default();
    let mut progress = Progress::default();
    let run = run(m, &token, &mut seen, &mut progress);
    let error = match tokio::time::timeout(check.timeout, run).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) if progress.accepted.is_some() => {
            seen.end();
            Some(ProbeError {
                class: ErrorClass::Timeout,
                message: format!(
                    "the canary (token {token}) did not arrive within {} (looked {} time{}{})",
                    humantime::format_duration(check.timeout),
                    progress.looks,
                    if progress.looks == 1 { "" } else { "s" },
                    progress
                        .last_search
                        .as_ref()
                        .map(|why| format!("; last search: {why}"))
                        .unwrap_or_default()
                ),
            })
        }
        Err(_) => {
            let mut e = seen.timed_out(check.timeout);
            if !progress.stage.is_empty() {
                e.message = format!(
                    "timed out after {} while {}",
                    humantime::format_duration(check.timeout),
                    progress.stage
                );
            }
            Some(e)
        }
    };
    let duration = start.elapsed();
    let steps = steps(&progress, error.as_ref());
    let mut outcome = tcp::finish(check, started_at, duration, seen, error, None);
    outcome.steps = steps;
    outcome
}

/// The two timed phases as steps: each with its time, or failed with the run's error and the
/// time it ran. None when the SMTP session never began (the IMAP login failed first).
fn steps(p: &Progress, error: Option<&ProbeError>) -> Vec<StepResult> {
    let step = |name: &str, took: Duration, failed: Option<&ProbeError>| StepResult {
        name: name.to_string(),
        success: failed.is_none(),
        conditions: Vec::new(),
        status: None,
        duration: took,
        phases: Phases::default(),
        error: failed.cloned(),
        extracted: Vec::new(),
    };
    let Some(smtp_start) = p.smtp_start else {
        return Vec::new();
    };
    let Some(accepted) = p.accepted else {
        return vec![step("accepted", smtp_start.elapsed(), error)];
    };
    let arrived = match (p.arrived, p.accepted_at) {
        (Some(d), _) => step("arrived", d, None),
        (None, at) => step(
            "arrived",
            at.map(|a| a.elapsed()).unwrap_or_default(),
            error,
        ),
    };
    vec![step("accepted", accepted, None), arrived]
}

/// `e` with its message starting `which: `, so an error names the server it came from (the
/// connection steps shared with other kinds do not).
fn from_server(which: &str, mut e: ProbeError) -> ProbeError {
    if !e.message.starts_with(&format!("{which}: ")) {
        e.message = format!("{which}: {}", e.message);
    }
    e
}

async fn run(
    m: &MailRoundtripCheck,
    token: &str,
    seen: &mut Seen,
    progress: &mut Progress,
) -> Result<(), ProbeError> {
    match &m.confirm {
        MailConfirm::Imap(imap) => {
            progress.stage = "connecting to the IMAP server";
            let mut imap_seen = Seen::default();
            let mut session = Session::connect(&imap.server, &mut imap_seen)
                .await
                .map_err(|e| from_server("imap", e))?;
            progress.stage = "logging in to the IMAP server";
            let user = imap.server.user.as_deref().unwrap_or_default();
            let password = password(&imap.server, "imap")?;
            session.login(user, &password).await?;
            drop(password);
            session.select(&imap.mailbox).await?;
            send(m, token, seen, progress)
                .await
                .map_err(|e| from_server("smtp", e))?;
            let found = wait_imap(&mut session, imap, m, token, progress).await;
            // LOGOUT is a courtesy: whatever it answers, the result stands.
            let _ = tokio::time::timeout(Duration::from_secs(1), session.logout()).await;
            found
        }
        MailConfirm::Search(search) => {
            send(m, token, seen, progress)
                .await
                .map_err(|e| from_server("smtp", e))?;
            wait_search(search, m, token, progress).await
        }
    }
}

fn password(server: &MailServer, table: &str) -> Result<String, ProbeError> {
    let Some(secret) = &server.password else {
        return Ok(String::new());
    };
    secret.read().map_err(|why| ProbeError {
        class: ErrorClass::Local,
        message: format!("{table}: the password cannot be read: {why}"),
    })
}

async fn wait_imap(
    session: &mut Session,
    imap: &ImapConfirm,
    m: &MailRoundtripCheck,
    token: &str,
    progress: &mut Progress,
) -> Result<(), ProbeError> {
    progress.stage = "waiting for the canary";
    loop {
        progress.looks += 1;
        session.noop().await?;
        let uids = session.search_header(CANARY_HEADER, token).await?;
        if !uids.is_empty() {
            arrived(progress);
            match imap.on_arrival {
                OnArrival::Delete => session.delete(&uids).await?,
                OnArrival::Seen => session.add_flag(&uids, "\\Seen").await?,
                OnArrival::Keep => {}
            }
            return Ok(());
        }
        tokio::time::sleep(m.poll_interval).await;
    }
}

async fn wait_search(
    search: &SearchConfirm,
    m: &MailRoundtripCheck,
    token: &str,
    progress: &mut Progress,
) -> Result<(), ProbeError> {
    progress.stage = "waiting for the canary";
    let http = search_request(search, token)?;
    loop {
        progress.looks += 1;
        // Each search is bounded by the poll interval and, above it, by the check's timeout.
        let timeout = m.poll_interval.max(Duration::from_secs(1));
        let done =
            super::http::exchange_step("search", &search.conditions, timeout, &http, None).await;
        let o = done.outcome;
        if o.success {
            arrived(progress);
            return Ok(());
        }
        // A search that does not find the canary yet (conditions) is looked at again; a
        // refusal such as 401 is reported at once, since waiting will not change it.
        if let Some(status) = o.status.filter(|s| matches!(s, 401 | 403 | 404)) {
            return Err(ProbeError {
                class: ErrorClass::Conditions,
                message: format!("search: the search API answered {status}"),
            });
        }
        // Kept for the deadline's message: a search API that errs looks like mail that never
        // came unless it is named.
        progress.last_search = o.error.map(|e| e.message);
        tokio::time::sleep(m.poll_interval).await;
    }
}

fn search_request(search: &SearchConfirm, token: &str) -> Result<HttpCheck, ProbeError> {
    use crate::lang::template::Context;
    let vars = HashMap::from([("token".to_string(), token.to_string())]);
    let fill = |t: &crate::lang::template::Template, c| {
        t.render(&vars, c).map_err(|v| ProbeError {
            class: ErrorClass::Conditions,
            message: format!("search: unknown variable ${{{v}}}"),
        })
    };
    let url_text = fill(&search.url, Context::Url)?;
    let url = url::Url::parse(&url_text).map_err(|e| ProbeError {
        class: ErrorClass::Protocol,
        message: format!("search: the url is not a URL once filled in: {e}"),
    })?;
    let mut headers = Vec::with_capacity(search.headers.len() + 1);
    for (name, value) in &search.headers {
        headers.push((name.clone(), fill(value, Context::Text)?));
    }
    if let Some(env) = &search.authorization_env {
        let value = std::env::var(env).map_err(|_| ProbeError {
            class: ErrorClass::Local,
            message: format!("search: environment variable {env} is not set"),
        })?;
        headers.push(("Authorization".to_string(), value));
    }
    Ok(HttpCheck {
        url,
        method: "GET".to_string(),
        headers,
        body: None,
        max_redirects: 0,
        max_body_bytes: search.max_body_bytes,
        insecure: search.insecure,
        net: search.net.clone(),
    })
}

fn arrived(progress: &mut Progress) {
    progress.arrived = progress.accepted_at.map(|at| at.elapsed());
}

/// `X-Switchboard-Canary: <token>`.
#[derive(Clone)]
struct CanaryHeader(String);

impl Header for CanaryHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(CANARY_HEADER)
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(CanaryHeader(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The canary as sent: RFC 5322 text with CRLF line ends.
pub fn message(m: &MailRoundtripCheck, token: &str) -> Result<Vec<u8>, String> {
    let from: Mailbox = m.from.parse().map_err(|e| format!("from: {e}"))?;
    let to: Mailbox = m.to.parse().map_err(|e| format!("to: {e}"))?;
    let body = format!(
        "This is a canary from Switchboard, which checks that mail sent to {} arrives.\r\n\
         It can be closed without an answer; rules may close it by its subject prefix\r\n\
         or its {CANARY_HEADER} header.\r\n\r\nToken: {token}\r\n",
        m.to
    );
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(format!("{} {token}", m.subject_prefix))
        .header(CanaryHeader(token.to_string()))
        .date_now()
        .body(body)
        .map(|msg| msg.formatted())
        .map_err(|e| e.to_string())
}

/// The message body made safe for DATA: lines starting with `.` get another (RFC 5321
/// 4.5.2), and the end marker follows.
fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn smtp_error(class: ErrorClass, message: String) -> ProbeError {
    ProbeError {
        class,
        message: format!("smtp: {message}"),
    }
}

/// Hands the canary to the SMTP server; records `accepted` on its 250 after DATA.
async fn send(
    m: &MailRoundtripCheck,
    token: &str,
    seen: &mut Seen,
    progress: &mut Progress,
) -> Result<(), ProbeError> {
    progress.stage = "sending the canary";
    progress.smtp_start = Some(Instant::now());
    let message = message(m, token).map_err(|e| smtp_error(ErrorClass::Local, e))?;
    let s = &m.smtp;
    let helo = m
        .from
        .rsplit_once('@')
        .map_or("switchboard.invalid", |(_, d)| d);
    let addrs = tcp::resolve(&s.host, s.port, s.net.ip_version, seen).await?;
    let stream = tcp::connect(&addrs, s.net.source_address, seen).await?;
    match s.tls {
        MailTls::Implicit => {
            let tls = tcp::handshake(stream, &s.host, s.insecure, &s.net, seen).await?;
            let mut r = BufReader::new(tls);
            greet(&mut r, helo, seen).await?;
            transaction(&mut r, m, &message, seen, progress).await
        }
        MailTls::None => {
            let mut r = BufReader::new(stream);
            greet(&mut r, helo, seen).await?;
            transaction(&mut r, m, &message, seen, progress).await
        }
        MailTls::StartTls => {
            let mut r = BufReader::new(stream);
            let ehlo = greet(&mut r, helo, seen).await?;
            let offered = ehlo.iter().any(|l| {
                l.get(4..)
                    .is_some_and(|ext| ext.trim().eq_ignore_ascii_case("STARTTLS"))
            });
            if !offered {
                return Err(smtp_error(
                    ErrorClass::Tls,
                    "the server does not offer STARTTLS, which tls = \"starttls\" requires".into(),
                ));
            }
            seen.begin(Phase::Processing);
            let (code, lines) = command(&mut r, "STARTTLS").await?;
            seen.end();
            if code != 220 {
                return Err(smtp_error(
                    ErrorClass::Tls,
                    format!("STARTTLS refused: {}", shorten(&lines[0])),
                ));
            }
            if !r.buffer().is_empty() {
                return Err(smtp_error(
                    ErrorClass::Protocol,
                    "data after the STARTTLS reply (possible injection)".into(),
                ));
            }
            let tls = tcp::handshake(r.into_inner(), &s.host, s.insecure, &s.net, seen).await?;
            let mut r = BufReader::new(tls);
            seen.begin(Phase::Processing);
            let (code, lines) = command(&mut r, &format!("EHLO {helo}")).await?;
            seen.end();
            if code != 250 {
                return Err(smtp_error(
                    ErrorClass::Protocol,
                    format!("EHLO after STARTTLS refused: {}", shorten(&lines[0])),
                ));
            }
            transaction(&mut r, m, &message, seen, progress).await
        }
    }
}

/// The banner (220) and EHLO (250); returns the EHLO reply's lines.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    helo: &str,
    seen: &mut Seen,
) -> Result<Vec<String>, ProbeError> {
    seen.begin(Phase::Processing);
    let (code, banner) = reply(r).await?;
    if code != 220 {
        return Err(smtp_error(
            ErrorClass::Protocol,
            format!("banner is not 220: {}", shorten(&banner[0])),
        ));
    }
    let (code, ehlo) = command(r, &format!("EHLO {helo}")).await?;
    seen.end();
    if code != 250 {
        return Err(smtp_error(
            ErrorClass::Protocol,
            format!("EHLO refused: {}", shorten(&ehlo[0])),
        ));
    }
    Ok(ehlo)
}

/// AUTH (when a user is set), MAIL, RCPT, DATA and the message; then QUIT.
async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut BufReader<S>,
    m: &MailRoundtripCheck,
    message: &[u8],
    seen: &mut Seen,
    progress: &mut Progress,
) -> Result<(), ProbeError> {
    seen.begin(Phase::Processing);
    if let Some(user) = &m.smtp.user {
        use base64::Engine;
        let password = password(&m.smtp, "smtp")?;
        let plain = format!("\0{user}\0{password}");
        let line = format!(
            "AUTH PLAIN {}",
            base64::engine::general_purpose::STANDARD.encode(plain)
        );
        let (code, lines) = command(r, &line).await?;
        if code != 235 {
            return Err(smtp_error(
                ErrorClass::Protocol,
                format!("AUTH refused for user {user:?}: {}", shorten(&lines[0])),
            ));
        }
    }
    let refused = |what: &str, lines: &[String]| {
        smtp_error(
            ErrorClass::Protocol,
            format!("{what} refused: {}", shorten(&lines[0])),
        )
    };
    let (code, lines) = command(r, &format!("MAIL FROM:<{}>", m.from)).await?;
    if code != 250 {
        return Err(refused("MAIL FROM", &lines));
    }
    let (code, lines) = command(r, &format!("RCPT TO:<{}>", m.to)).await?;
    if !matches!(code, 250 | 251) {
        return Err(refused("RCPT TO", &lines));
    }
    let (code, lines) = command(r, "DATA").await?;
    if code != 354 {
        return Err(refused("DATA", &lines));
    }
    r.get_mut()
        .write_all(&dot_stuffed(message))
        .await
        .map_err(|e| smtp_error(ErrorClass::Protocol, format!("write failed: {e}")))?;
    let (code, lines) = reply(r).await?;
    seen.end();
    if code != 250 {
        return Err(refused("the message", &lines));
    }
    let now = Instant::now();
    progress.accepted = progress.smtp_start.map(|s| now - s);
    progress.accepted_at = Some(now);
    // The message is taken; QUIT's answer changes nothing, so it is not waited for long.
    let _ = tokio::time::timeout(Duration::from_secs(1), command(r, "QUIT")).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_the_data() {
        assert_eq!(dot_stuffed(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n".to_vec());
        assert_eq!(dot_stuffed(b".x"), b"..x\r\n.\r\n".to_vec());
    }

    #[test]
    fn tokens_are_unique_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
