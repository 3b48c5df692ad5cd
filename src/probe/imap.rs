//! A small IMAP client for the mail round trip: connect (plain, STARTTLS or implicit TLS),
//! LOGIN, SELECT, UID SEARCH for a header, UID STORE / UID EXPUNGE, LOGOUT. Only what the
//! round trip needs (RFC 9051 / 3501 subsets), written here rather than taken from a crate
//! because every read must be bounded: a line is capped, a response is capped, a literal is
//! read only within what is left of that cap, so a hostile server can neither make the probe
//! hold much memory nor keep it past its timeout (the caller bounds the whole session).
//!
//! Credentials are sent and never formatted into an error: errors quote the server's words,
//! which only ever follow the password, never contain it.

use super::tcp::{self, Phase, Seen};
use super::{ErrorClass, ProbeError};
use crate::config::{MailServer, MailTls};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest response line read (RFC 9051 recommends clients accept at least 8 KiB).
const MAX_LINE: usize = 64 * 1024;
/// Bytes of one command's response read at most, literals included.
const MAX_RESPONSE: usize = 1024 * 1024;

/// A byte stream of either kind, so one session type serves plain and TLS connections.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A logged-in (or about to be) IMAP session.
pub(crate) struct Session {
    r: BufReader<Box<dyn Io>>,
    tag: u32,
    /// Capabilities, upper-cased, as last announced.
    caps: Vec<String>,
}

/// One command's response: the untagged lines and the tagged status.
#[derive(Debug)]
pub(crate) struct Response {
    pub untagged: Vec<String>,
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    /// The tagged line's text after the status.
    pub text: String,
}

fn protocol(message: String) -> ProbeError {
    ProbeError {
        class: ErrorClass::Protocol,
        message: format!("imap: {message}"),
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Reads one line (CRLF or LF ended) of at most `MAX_LINE` bytes, counting it against `budget`.
async fn line<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
    budget: &mut usize,
) -> Result<String, ProbeError> {
    let cap = MAX_LINE.min(*budget) as u64;
    let mut raw = Vec::new();
    let n = (&mut *r)
        .take(cap)
        .read_until(b'\n', &mut raw)
        .await
        .map_err(|e| protocol(format!("read failed: {e}")))?;
    if n == 0 {
        return Err(protocol("the server closed the connection".into()));
    }
    if raw.last() != Some(&b'\n') {
        return Err(protocol(format!(
            "response line longer than {} bytes or cut short",
            cap
        )));
    }
    *budget -= n;
    Ok(String::from_utf8_lossy(&raw).trim_end().to_string())
}

/// One response line with any literals (`{n}` at the end of a line, then n bytes) folded in,
/// each literal read only within the response budget.
async fn logical_line<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
    budget: &mut usize,
) -> Result<String, ProbeError> {
    let mut out = line(r, budget).await?;
    while let Some(n) = literal_len(&out) {
        if n > *budget {
            return Err(protocol(format!(
                "a literal of {n} bytes exceeds what is left of the {MAX_RESPONSE}-byte response cap"
            )));
        }
        let mut data = vec![0u8; n];
        r.read_exact(&mut data)
            .await
            .map_err(|e| protocol(format!("read failed inside a literal: {e}")))?;
        *budget -= n;
        out.push_str(&String::from_utf8_lossy(&data));
        out.push_str(&line(r, budget).await?);
    }
    Ok(out)
}

/// `n` when `line` ends with a literal announcement `{n}` (or `{n+}`).
fn literal_len(line: &str) -> Option<usize> {
    let rest = line.strip_suffix('}')?;
    let open = rest.rfind('{')?;
    rest[open + 1..].trim_end_matches('+').parse().ok()
}

/// A quoted string, or an error for what a quoted string cannot carry (CR, LF, NUL, 8-bit).
fn quoted(what: &str, s: &str) -> Result<String, ProbeError> {
    if s.bytes()
        .any(|b| matches!(b, b'\r' | b'\n' | 0) || !b.is_ascii())
    {
        return Err(ProbeError {
            class: ErrorClass::Protocol,
            message: format!("imap: the {what} has characters an IMAP quoted string cannot carry"),
        });
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Upper-cased capability names from a `CAPABILITY ...` text (untagged or a response code).
fn capabilities(text: &str) -> Option<Vec<String>> {
    let at = text.to_ascii_uppercase().find("CAPABILITY ")?;
    let rest = &text[at + "CAPABILITY ".len()..];
    let rest = rest.split(']').next().unwrap_or(rest);
    Some(
        rest.split_whitespace()
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    )
}

impl Session {
    /// Connects to `server`, reads the greeting and upgrades with STARTTLS when asked to. The
    /// connection's phases go into `seen`.
    pub(crate) async fn connect(
        server: &MailServer,
        seen: &mut Seen,
    ) -> Result<Session, ProbeError> {
        let addrs = tcp::resolve(&server.host, server.port, server.net.ip_version, seen).await?;
        let stream = tcp::connect(&addrs, server.net.source_address, seen).await?;
        let io: Box<dyn Io> = match server.tls {
            MailTls::Implicit => Box::new(
                tcp::handshake(stream, &server.host, server.insecure, &server.net, seen).await?,
            ),
            MailTls::None => Box::new(stream),
            MailTls::StartTls => {
                let mut r = BufReader::new(stream);
                seen.begin(Phase::Processing);
                greeting(&mut r).await?;
                let mut budget = MAX_RESPONSE;
                r.get_mut()
                    .write_all(b"s0 STARTTLS\r\n")
                    .await
                    .map_err(|e| protocol(format!("write failed: {e}")))?;
                loop {
                    let l = logical_line(&mut r, &mut budget).await?;
                    if l.starts_with("* ") {
                        continue;
                    }
                    let ok = l.get(3..6).is_some_and(|s| s.eq_ignore_ascii_case("OK "));
                    if !l.starts_with("s0 ") || !ok {
                        return Err(ProbeError {
                            class: ErrorClass::Tls,
                            message: format!("imap: STARTTLS refused: {}", shorten(&l)),
                        });
                    }
                    break;
                }
                seen.end();
                // Nothing the server sent before the upgrade may be read after it (RFC 9051 11.1).
                if !r.buffer().is_empty() {
                    return Err(protocol(
                        "data after the STARTTLS reply (possible injection)".into(),
                    ));
                }
                let tls = tcp::handshake(
                    r.into_inner(),
                    &server.host,
                    server.insecure,
                    &server.net,
                    seen,
                )
                .await?;
                let mut s = Session {
                    r: BufReader::new(Box::new(tls)),
                    tag: 0,
                    caps: Vec::new(),
                };
                s.refresh_caps().await?;
                return Ok(s);
            }
        };
        let mut r = BufReader::new(io);
        seen.begin(Phase::Processing);
        let caps = greeting(&mut r).await?;
        seen.end();
        Ok(Session {
            r,
            tag: 0,
            caps: caps.unwrap_or_default(),
        })
    }

    /// Sends one command (a line without CRLF) and reads its whole response.
    pub(crate) async fn command(&mut self, cmd: &str) -> Result<Response, ProbeError> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.r
            .get_mut()
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await
            .map_err(|e| protocol(format!("write failed: {e}")))?;
        let mut budget = MAX_RESPONSE;
        let mut untagged = Vec::new();
        loop {
            let l = logical_line(&mut self.r, &mut budget).await?;
            if let Some(rest) = l.strip_prefix("* ") {
                if rest
                    .get(..4)
                    .is_some_and(|b| b.eq_ignore_ascii_case("BYE "))
                    && !cmd.starts_with("LOGOUT")
                {
                    return Err(protocol(format!(
                        "the server said goodbye: {}",
                        shorten(&l)
                    )));
                }
                if let Some(caps) = capabilities(rest) {
                    self.caps = caps;
                }
                untagged.push(rest.to_string());
                continue;
            }
            if l.starts_with('+') {
                return Err(protocol(format!(
                    "unexpected continuation request: {}",
                    shorten(&l)
                )));
            }
            let Some(rest) = l.strip_prefix(&format!("{tag} ")) else {
                return Err(protocol(format!("not an IMAP response: {:?}", shorten(&l))));
            };
            let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let status = status.to_ascii_uppercase();
            if !matches!(status.as_str(), "OK" | "NO" | "BAD") {
                return Err(protocol(format!("not an IMAP response: {:?}", shorten(&l))));
            }
            if let Some(caps) = capabilities(text) {
                self.caps = caps;
            }
            return Ok(Response {
                untagged,
                status,
                text: text.to_string(),
            });
        }
    }

    /// `command`, with anything but OK an error that names `what` and quotes the server.
    async fn ok(&mut self, what: &str, cmd: &str) -> Result<Response, ProbeError> {
        let r = self.command(cmd).await?;
        if r.status != "OK" {
            return Err(protocol(format!(
                "{what} failed: {} {}",
                r.status,
                shorten(&r.text)
            )));
        }
        Ok(r)
    }

    async fn refresh_caps(&mut self) -> Result<(), ProbeError> {
        self.ok("CAPABILITY", "CAPABILITY").await.map(|_| ())
    }

    /// LOGIN with the user and password. A refusal names the user and quotes the server.
    pub(crate) async fn login(&mut self, user: &str, password: &str) -> Result<(), ProbeError> {
        let cmd = format!(
            "LOGIN {} {}",
            quoted("user name", user)?,
            quoted("password", password)?
        );
        let r = self.command(&cmd).await?;
        if r.status != "OK" {
            return Err(ProbeError {
                class: ErrorClass::Protocol,
                message: format!(
                    "imap: login refused for user {user:?}: {} {}",
                    r.status,
                    shorten(&r.text)
                ),
            });
        }
        if !self.caps.iter().any(|c| c == "UIDPLUS") {
            // The login reply usually carries the capabilities; ask when it did not.
            self.refresh_caps().await?;
        }
        Ok(())
    }

    pub(crate) async fn select(&mut self, mailbox: &str) -> Result<(), ProbeError> {
        let cmd = format!("SELECT {}", quoted("mailbox name", mailbox)?);
        self.ok(&format!("SELECT {mailbox}"), &cmd)
            .await
            .map(|_| ())
    }

    /// NOOP: the standard poll (RFC 9051 6.1.2). Servers look for new mail at it; a SEARCH
    /// alone may be answered from what the server had already seen.
    pub(crate) async fn noop(&mut self) -> Result<(), ProbeError> {
        self.ok("NOOP", "NOOP").await.map(|_| ())
    }

    /// The UIDs of messages whose `header` contains `value`.
    pub(crate) async fn search_header(
        &mut self,
        header: &str,
        value: &str,
    ) -> Result<Vec<u32>, ProbeError> {
        let cmd = format!(
            "UID SEARCH HEADER {header} {}",
            quoted("search value", value)?
        );
        let r = self.ok("UID SEARCH", &cmd).await?;
        let mut uids = Vec::new();
        for l in &r.untagged {
            let Some(rest) = l
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case("SEARCH "))
                .map(|_| &l[7..])
            else {
                continue;
            };
            for n in rest.split_whitespace() {
                let uid = n
                    .parse::<u32>()
                    .map_err(|_| protocol(format!("bad UID {n:?} in a SEARCH response")))?;
                uids.push(uid);
            }
        }
        Ok(uids)
    }

    /// Adds `flag` to the messages `uids`.
    pub(crate) async fn add_flag(&mut self, uids: &[u32], flag: &str) -> Result<(), ProbeError> {
        let set = uid_set(uids);
        self.ok(
            "UID STORE",
            &format!("UID STORE {set} +FLAGS.SILENT ({flag})"),
        )
        .await
        .map(|_| ())
    }

    /// Deletes the messages `uids`: flagged `\Deleted`, then expunged by UID when the server
    /// has UIDPLUS. Without it they stay flagged: a plain EXPUNGE would also remove what
    /// other clients flagged in a shared intake mailbox.
    pub(crate) async fn delete(&mut self, uids: &[u32]) -> Result<(), ProbeError> {
        self.add_flag(uids, "\\Deleted").await?;
        if self.caps.iter().any(|c| c == "UIDPLUS") {
            let set = uid_set(uids);
            self.ok("UID EXPUNGE", &format!("UID EXPUNGE {set}"))
                .await?;
        }
        Ok(())
    }

    /// LOGOUT, answered or not: the caller bounds how long it waits.
    pub(crate) async fn logout(&mut self) {
        let _ = self.command("LOGOUT").await;
    }
}

/// The greeting: `* OK` (or `* PREAUTH`); `* BYE` or anything else is an error. Returns the
/// capabilities when the greeting lists them.
async fn greeting<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
) -> Result<Option<Vec<String>>, ProbeError> {
    let mut budget = MAX_RESPONSE;
    let l = logical_line(r, &mut budget).await?;
    let upper = l.to_ascii_uppercase();
    if upper.starts_with("* OK") || upper.starts_with("* PREAUTH") {
        Ok(capabilities(&l))
    } else if upper.starts_with("* BYE") {
        Err(protocol(format!(
            "the server refused the connection: {}",
            shorten(&l)
        )))
    } else {
        Err(protocol(format!("not an IMAP greeting: {:?}", shorten(&l))))
    }
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_announced_at_the_end_of_a_line() {
        assert_eq!(literal_len("* 1 FETCH (BODY[HEADER] {42}"), Some(42));
        assert_eq!(literal_len("* 1 FETCH (BODY[HEADER] {42+}"), Some(42));
        assert_eq!(literal_len("* OK [UIDNEXT 2] {x}"), None);
        assert_eq!(literal_len("* SEARCH 1 2"), None);
    }

    #[test]
    fn quoted_strings_escape_and_refuse_what_they_cannot_carry() {
        assert_eq!(quoted("p", r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        let e = quoted("password", "s3cret\r\nA LOGOUT").unwrap_err();
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    }

    #[test]
    fn capabilities_come_from_untagged_lines_and_response_codes() {
        assert_eq!(
            capabilities("OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in"),
            Some(vec!["IMAP4REV1".to_string(), "UIDPLUS".to_string()])
        );
        assert_eq!(
            capabilities("CAPABILITY IMAP4rev1 STARTTLS").unwrap().len(),
            2
        );
        assert_eq!(capabilities("OK Logged in"), None);
    }

    #[tokio::test]
    async fn a_response_larger_than_the_cap_is_refused_not_buffered() {
        // A literal announcing more than the cap is refused before anything is allocated for it.
        let data = format!("* 1 FETCH (BODY[] {{{}}}\r\n", MAX_RESPONSE * 4);
        let mut r = BufReader::new(data.as_bytes());
        let mut budget = MAX_RESPONSE;
        let e = logical_line(&mut r, &mut budget).await.unwrap_err();
        assert!(e.message.contains("exceeds"), "{}", e.message);
    }
}
