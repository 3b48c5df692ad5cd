//! E-mail transport: turns an outbox row into a MIME message and hands it to lettre (file or SMTP).
//!
//! A thin shell on purpose: the content was rendered and stored before this runs, so all
//! that happens here is building headers and talking to the transport. The SMTP password
//! comes from `SWITCHBOARD_SMTP_PASSWORD` (or `password_file`) and is never formatted into a
//! log line or error.
//!
//! SMTP sessions are driven step by step with lettre's `AsyncSmtpConnection` (connect,
//! STARTTLS, AUTH, MAIL/RCPT/DATA, QUIT) rather than its pooled transport, for two reasons:
//! the connect phase and each command get their own timeouts, and a message the primary
//! relay did not take (refused connection, TLS failure, 4xx/5xx) is offered to the backup
//! relay in the same attempt.

use crate::config::{EmailConfig, EmailTransport};
use crate::store::OutboxItem;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable holding the SMTP password (design.md: never in the config file).
pub const PASSWORD_ENV: &str = "SWITCHBOARD_SMTP_PASSWORD";

/// The default connect timeout (`[email] connect_timeout`), also used by callers that
/// bound a whole pass of the outbox.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid From address {address:?}: {reason}")]
    InvalidFrom { address: String, reason: String },
    #[error("invalid recipient address {address:?}: {reason}")]
    InvalidRecipient { address: String, reason: String },
    #[error("the message has no recipients")]
    NoRecipients,
    #[error("invalid smtp_url: {0}")]
    InvalidUrl(String),
    #[error("smtp_url must not contain a password; set {PASSWORD_ENV} instead")]
    PasswordInUrl,
    #[error("smtp_url names the user {user:?} but {PASSWORD_ENV} is not set (nor password_file)")]
    MissingPassword { user: String },
    #[error("cannot read the SMTP password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the SMTP password file {0} is empty")]
    EmptyPasswordFile(PathBuf),
    #[error("tls_ca_file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("TLS setup for {host} failed: {message}")]
    Tls { host: String, message: String },
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("cannot create the mail directory {path}: {source}")]
    MailDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the message into {dir} failed: {message}")]
    File { dir: PathBuf, message: String },
    #[error("SMTP delivery via {endpoint} failed: {message}")]
    Smtp {
        endpoint: String,
        message: String,
        /// The server refused for good (5xx): retrying the same message will not help.
        permanent: bool,
    },
    #[error("{primary}; backup relay: {backup}")]
    BothRelays {
        primary: Box<EmailError>,
        backup: Box<EmailError>,
    },
}

/// Sends messages through the configured transport. Cheap to share behind an `Arc`.
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

enum Transport {
    File {
        dir: PathBuf,
        transport: AsyncFileTransport<Tokio1Executor>,
    },
    /// The primary relay first, then the backup relay if one is configured. One connection
    /// per message: announcements are rare, and a fresh session never reuses a stale one.
    Smtp {
        relays: Vec<Relay>,
        timeouts: Timeouts,
    },
}

#[derive(Clone, Copy, Debug)]
struct Timeouts {
    connect: Duration,
    command: Duration,
}

/// One SMTP relay, ready to connect to.
struct Relay {
    /// `scheme://host:port`, safe to print: never carries credentials.
    endpoint: String,
    host: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
}

impl fmt::Debug for Mailer {
    // Hand-written so that the SMTP credentials inside the transport can never be printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("transport", &self.describe())
            .finish()
    }
}

impl Mailer {
    /// Builds the mailer of `[email]`, reading the SMTP password from
    /// `SWITCHBOARD_SMTP_PASSWORD`, or else from `password_file` (first line, trimmed).
    pub fn from_config(cfg: &EmailConfig) -> Result<Mailer, EmailError> {
        let password = match (std::env::var(PASSWORD_ENV).ok(), &cfg.password_file) {
            (Some(p), _) => Some(p),
            (None, Some(path)) => Some(read_password_file(path)?),
            (None, None) => None,
        };
        Mailer::with_password(cfg, password)
    }

    /// Like `from_config` with the password given explicitly (tests, `email test`).
    pub fn with_password(
        cfg: &EmailConfig,
        password: Option<String>,
    ) -> Result<Mailer, EmailError> {
        let from: Mailbox = cfg.from.parse().map_err(|e| EmailError::InvalidFrom {
            address: cfg.from.clone(),
            reason: format!("{e}"),
        })?;
        let transport = match &cfg.transport {
            EmailTransport::File { dir } => Transport::File {
                dir: dir.clone(),
                transport: AsyncFileTransport::new(dir),
            },
            EmailTransport::Smtp { url } => {
                let ca = match &cfg.tls_ca_file {
                    Some(path) => Some(read_ca_file(path)?),
                    None => None,
                };
                let mut relays = vec![relay(url, password.clone(), ca.as_deref())?];
                if let Some(backup) = &cfg.backup_smtp_url {
                    relays.push(relay(backup, password, ca.as_deref())?);
                }
                Transport::Smtp {
                    relays,
                    timeouts: Timeouts {
                        connect: cfg.connect_timeout,
                        command: cfg.command_timeout,
                    },
                }
            }
        };
        Ok(Mailer { from, transport })
    }

    /// Where messages go, for logs and the demo: the mail directory or `smtp://host:port`.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::File { dir, .. } => format!("file:{}", dir.display()),
            Transport::Smtp { relays, .. } => {
                relays
                    .iter()
                    .map(|r| r.endpoint.as_str())
                    .collect::<Vec<_>>()
                    .join(" (backup: ")
                    + if relays.len() > 1 { ")" } else { "" }
            }
        }
    }

    /// Sends one outbox item. Returns what the transport said: the path of the written
    /// `.eml` file, or the SMTP server's final reply (e.g. `250 OK queued as ...`).
    pub async fn send(&self, item: &OutboxItem) -> Result<String, EmailError> {
        let message = self.build(item)?;
        match &self.transport {
            Transport::File { dir, transport } => {
                // Created on each send, not once at start-up, so that a directory removed
                // while running (log rotation, an operator) does not turn into lost mail.
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|source| EmailError::MailDir {
                        path: dir.clone(),
                        source,
                    })?;
                let id = transport
                    .send(message)
                    .await
                    .map_err(|e| EmailError::File {
                        dir: dir.clone(),
                        message: e.to_string(),
                    })?;
                Ok(dir.join(format!("{id}.eml")).display().to_string())
            }
            Transport::Smtp { relays, timeouts } => {
                let envelope = message.envelope().clone();
                let bytes = message.formatted();
                let mut first_error = None;
                for (i, relay) in relays.iter().enumerate() {
                    match relay.send(&envelope, &bytes, *timeouts).await {
                        Ok(reply) if i == 0 => return Ok(reply),
                        Ok(reply) => {
                            return Ok(format!("{reply} (backup relay {})", relay.endpoint))
                        }
                        Err(e) => match first_error.take() {
                            None => first_error = Some(e),
                            Some(primary) => {
                                return Err(EmailError::BothRelays {
                                    primary: Box::new(primary),
                                    backup: Box::new(e),
                                })
                            }
                        },
                    }
                }
                Err(first_error.unwrap_or(EmailError::NoRecipients))
            }
        }
    }

    /// Sends a test message to `to` (`switchboard email test`); returns what the server said.
    pub async fn send_test(&self, to: &str) -> Result<String, EmailError> {
        let now = crate::clock::Timestamp::now();
        let row = crate::store::NewAnnouncement {
            audience: "test".into(),
            channel: "email".into(),
            kind: "test".into(),
            recipients: vec![to.to_owned()],
            subject: "[Switchboard] Test message".into(),
            text: format!(
                "This is a test message from Switchboard, sent at {} through {}.\n\nIf you can read it, failover announcements can reach this address.\n",
                now.rfc3339(),
                self.describe()
            ),
            html: None,
        };
        // Not stored, so the time alone makes it unique; the sender's domain, as every
        // other Message-ID.
        let message_id = format!("<test.{}@{}>", now.as_millis(), self.from.email.domain());
        let item = OutboxItem::unstored("test", row, message_id, now);
        self.send(&item).await
    }

    /// The MIME message of `item`: its stored subject, bodies and stable Message-ID.
    pub fn build(&self, item: &OutboxItem) -> Result<Message, EmailError> {
        if item.recipients.is_empty() {
            return Err(EmailError::NoRecipients);
        }
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(item.subject.clone())
            // The stored id, not a fresh one: a re-send after a crash must be recognisable
            // as the same message.
            .message_id(Some(item.message_id.clone()))
            .date_now()
            .header(AutoSubmitted);
        for r in &item.recipients {
            let to: Mailbox = r.parse().map_err(|e| EmailError::InvalidRecipient {
                address: r.clone(),
                reason: format!("{e}"),
            })?;
            builder = builder.to(to);
        }
        let built = match &item.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                item.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(SinglePart::plain(item.text.clone())),
        };
        built.map_err(|e| EmailError::Build(e.to_string()))
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834), so that vacation responders and ticket
/// systems do not answer a failover notice, which during an outage could loop.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// How the SMTP connection is secured, from the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Security {
    /// `smtp://` without `tls`: plain text, for loopback relays and test servers.
    None,
    /// `smtp://...?tls=starttls` (or `required`): upgrade with STARTTLS or fail.
    StartTls,
    /// `smtp://...?tls=opportunistic`: STARTTLS if offered.
    Opportunistic,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// The parts of `smtp_url` that matter, parsed without ever holding a password.
#[derive(Debug, PartialEq, Eq)]
struct SmtpUrl {
    host: String,
    port: u16,
    security: Security,
    user: Option<String>,
}

impl SmtpUrl {
    fn endpoint(&self) -> String {
        let scheme = if self.security == Security::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

fn parse_smtp_url(raw: &str) -> Result<SmtpUrl, EmailError> {
    // Errors here never echo `raw`: it could hold a password the user put there by mistake.
    let url = url::Url::parse(raw).map_err(|e| EmailError::InvalidUrl(e.to_string()))?;
    if url.password().is_some() {
        return Err(EmailError::PasswordInUrl);
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| EmailError::InvalidUrl("no host".into()))?
        // IPv6 literals come back bracketed; the resolver wants them bare.
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let mut tls = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "tls" => tls = Some(v.into_owned()),
            other => {
                return Err(EmailError::InvalidUrl(format!(
                    "unknown parameter {other:?} (only \"tls\" is known)"
                )))
            }
        }
    }
    let security = match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("none")) => Security::None,
        ("smtp", Some("starttls" | "required")) => Security::StartTls,
        ("smtp", Some("opportunistic")) => Security::Opportunistic,
        ("smtps", None) => Security::Implicit,
        ("smtp" | "smtps", Some(other)) => {
            return Err(EmailError::InvalidUrl(format!(
                "tls={other:?} is not one of none, starttls, opportunistic (smtps:// takes none)"
            )))
        }
        (scheme, _) => {
            return Err(EmailError::InvalidUrl(format!(
                "scheme {scheme:?} is not smtp or smtps"
            )))
        }
    };
    let port = url.port().unwrap_or(match security {
        Security::None => 25,
        Security::StartTls | Security::Opportunistic => 587,
        Security::Implicit => 465,
    });
    let user = match url.username() {
        "" => None,
        u => Some(percent_decode(u)?),
    };
    Ok(SmtpUrl {
        host,
        port,
        security,
        user,
    })
}

fn percent_decode(s: &str) -> Result<String, EmailError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| EmailError::InvalidUrl("bad %-escape in the user name".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| EmailError::InvalidUrl("user name is not UTF-8".into()))
}

fn read_password_file(path: &std::path::Path) -> Result<String, EmailError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmailError::PasswordFile {
        path: path.to_path_buf(),
        source,
    })?;
    // The first line, without its newline: files written by `echo` or secret mounts end
    // with one, and a password with a trailing newline is never what was meant.
    let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if password.is_empty() {
        return Err(EmailError::EmptyPasswordFile(path.to_path_buf()));
    }
    Ok(password.to_owned())
}

/// The certificates of a PEM file, as DER.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, EmailError> {
    let certs = crate::pem::read_certificates(path).map_err(|e| EmailError::CaFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(certs.iter().map(|der| der.as_ref().to_vec()).collect())
}

fn relay(raw: &str, password: Option<String>, ca: Option<&[Vec<u8>]>) -> Result<Relay, EmailError> {
    let u = parse_smtp_url(raw)?;
    let tls_err = |e: lettre::transport::smtp::Error| EmailError::Tls {
        host: u.host.clone(),
        message: e.to_string(),
    };
    let tls = match u.security {
        Security::None => None,
        _ => {
            let mut b = TlsParameters::builder(u.host.clone());
            for der in ca.unwrap_or_default() {
                b = b.add_root_certificate(
                    lettre::transport::smtp::client::Certificate::from_der(der.clone())
                        .map_err(tls_err)?,
                );
            }
            Some(b.build().map_err(tls_err)?)
        }
    };
    let credentials = match &u.user {
        Some(user) => {
            let password =
                password.ok_or_else(|| EmailError::MissingPassword { user: user.clone() })?;
            Some(Credentials::new(user.clone(), password))
        }
        None => None,
    };
    Ok(Relay {
        endpoint: u.endpoint(),
        host: u.host,
        port: u.port,
        security: u.security,
        tls,
        credentials,
    })
}

impl Relay {
    /// One SMTP session: connect (bounded by the connect timeout, which covers the banner,
    /// EHLO, STARTTLS and AUTH too), then MAIL/RCPT/DATA with the command timeout on each
    /// reply, then QUIT. Returns the server's reply to the message, e.g. `250 OK`.
    async fn send(
        &self,
        envelope: &lettre::address::Envelope,
        message: &[u8],
        timeouts: Timeouts,
    ) -> Result<String, EmailError> {
        let fail = |message: String, permanent: bool| EmailError::Smtp {
            endpoint: self.endpoint.clone(),
            message,
            permanent,
        };
        let smtp_err = |e: lettre::transport::smtp::Error| EmailError::Smtp {
            endpoint: self.endpoint.clone(),
            permanent: e.is_permanent(),
            message: e.to_string(),
        };
        let connect = async {
            let hello = ClientId::default();
            let wrapper = match self.security {
                Security::Implicit => self.tls.clone(),
                _ => None,
            };
            let mut conn = AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(timeouts.connect),
                &hello,
                wrapper,
                None,
            )
            .await
            .map_err(smtp_err)?;
            match (&self.security, &self.tls) {
                (Security::StartTls, Some(tls)) => {
                    if !conn.can_starttls() {
                        return Err(fail(
                            "the server does not offer STARTTLS, which tls=starttls requires"
                                .into(),
                            false,
                        ));
                    }
                    conn.starttls(tls.clone(), &hello).await.map_err(smtp_err)?;
                }
                (Security::Opportunistic, Some(tls)) if conn.can_starttls() => {
                    conn.starttls(tls.clone(), &hello).await.map_err(smtp_err)?;
                }
                _ => {}
            }
            if let Some(credentials) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(smtp_err)?;
            }
            Ok::<_, EmailError>(conn)
        };
        let mut conn = tokio::time::timeout(timeouts.connect, connect)
            .await
            .map_err(|_| {
                fail(
                    format!(
                        "no ready SMTP session within the connect timeout ({})",
                        humantime::format_duration(timeouts.connect)
                    ),
                    false,
                )
            })??;
        // lettre's async connection applies no timeout after connecting, so the message
        // transaction is bounded here: one command timeout per reply it waits for (MAIL, each
        // RCPT, DATA, and the final reply to the content).
        let replies = u32::try_from(envelope.to().len())
            .unwrap_or(u32::MAX)
            .saturating_add(3);
        let budget = timeouts.command.saturating_mul(replies);
        let sent = match tokio::time::timeout(budget, conn.send(envelope, message)).await {
            Ok(sent) => sent,
            Err(_) => {
                // Not `abort()`: it sends QUIT and waits for a reply a silent server never
                // gives. Dropping the connection closes the socket.
                drop(conn);
                return Err(fail(
                    format!(
                        "no reply within the command timeout ({} per command)",
                        humantime::format_duration(timeouts.command)
                    ),
                    false,
                ));
            }
        };
        match sent {
            Ok(response) => {
                // The message is taken; a failed or unanswered QUIT changes nothing about that.
                let _ = tokio::time::timeout(timeouts.command, conn.quit()).await;
                let text: Vec<&str> = response.message().collect();
                Ok(format!("{} {}", response.code(), text.join(" ")))
            }
            Err(e) => {
                let _ = tokio::time::timeout(timeouts.command, conn.abort()).await;
                Err(smtp_err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::store::OutboxStatus;

    fn cfg(transport: EmailTransport) -> EmailConfig {
        EmailConfig::new("Support Status <status@example.com>", transport)
    }

    fn smtp(url: &str) -> EmailConfig {
        cfg(EmailTransport::Smtp { url: url.into() })
    }

    fn item() -> OutboxItem {
        OutboxItem {
            id: 1,
            transition_id: 7,
            service: "ticket-submission".into(),
            audience: "customers".into(),
            channel: "email".into(),
            kind: "failover".into(),
            message_id: "<t7.customers.ticket-submission@switchboard>".into(),
            recipients: vec!["a@example.com".into(), "B <b@example.com>".into()],
            subject: "[Switchboard] Ticket submission: switched to backup".into(),
            text: "use the backup".into(),
            html: Some("<p>use the backup</p>".into()),
            status: OutboxStatus::Pending,
            attempts: 0,
            created_at: Timestamp(0),
            next_attempt_at: Timestamp(0),
            last_attempt_at: None,
            last_error: None,
            delivered_at: None,
            detail: None,
            given_up_at: None,
        }
    }

    #[test]
    fn smtp_urls_parse_into_host_port_security_and_user() {
        let p = |s: &str| parse_smtp_url(s).unwrap();
        assert_eq!(
            p("smtp://127.0.0.1:2525"),
            SmtpUrl {
                host: "127.0.0.1".into(),
                port: 2525,
                security: Security::None,
                user: None
            }
        );
        assert_eq!(
            p("smtp://relay.example.com?tls=starttls").security,
            Security::StartTls
        );
        assert_eq!(p("smtp://relay.example.com?tls=starttls").port, 587);
        assert_eq!(p("smtps://relay.example.com").port, 465);
        assert_eq!(
            p("smtps://alerts%40example.com@relay.example.com:4650").user,
            Some("alerts@example.com".into())
        );
        assert_eq!(p("smtp://[::1]:25").host, "::1");
        assert_eq!(
            p("smtps://relay.example.com").endpoint(),
            "smtps://relay.example.com:465"
        );
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_echoing_secrets() {
        let err =
            Mailer::with_password(&smtp("smtp://bob:hunter2@relay.example.com"), None).unwrap_err();
        assert!(matches!(err, EmailError::PasswordInUrl));
        assert!(!err.to_string().contains("hunter2"));
        for bad in [
            "http://relay.example.com",
            "smtp://relay.example.com?tls=maybe",
            "smtps://relay.example.com?tls=starttls",
            "smtp://relay.example.com?verify=no",
            "not a url",
        ] {
            assert!(
                matches!(
                    Mailer::with_password(&smtp(bad), None),
                    Err(EmailError::InvalidUrl(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_user_without_a_password_is_an_error_and_the_password_never_shows() {
        let err = Mailer::with_password(&smtp("smtp://alerts@127.0.0.1:2525"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "smtp_url names the user \"alerts\" but SWITCHBOARD_SMTP_PASSWORD is not set (nor password_file)"
        );
        let m = Mailer::with_password(
            &smtp("smtp://alerts@127.0.0.1:2525"),
            Some("s3cret-pw".into()),
        )
        .unwrap();
        assert!(!format!("{m:?}").contains("s3cret-pw"));
        assert_eq!(m.describe(), "smtp://127.0.0.1:2525");
    }

    #[test]
    fn the_password_file_gives_its_first_line_and_errors_never_show_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtp-password");
        std::fs::write(&path, "s3cret-pw\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap(), "s3cret-pw");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_password_file(&path),
            Err(EmailError::EmptyPasswordFile(_))
        ));
        let err = read_password_file(&dir.path().join("missing")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot read the SMTP password file"));
        // Used when the environment has none, for the user named in the URL.
        std::fs::write(&path, "s3cret-pw\n").unwrap();
        let mut c = smtp("smtp://alerts@127.0.0.1:2525");
        c.password_file = Some(path);
        if std::env::var_os(PASSWORD_ENV).is_none() {
            let m = Mailer::from_config(&c).unwrap();
            assert!(!format!("{m:?}").contains("s3cret-pw"));
        }
    }

    #[test]
    fn smtp_mailer_can_be_built_and_dropped_outside_a_tokio_runtime() {
        // Regression: holding a built lettre transport made this abort the process, because
        // its connection pool spawns tasks on build and on drop.
        let m = Mailer::with_password(&smtp("smtp://127.0.0.1:2525"), None).unwrap();
        drop(m);
    }

    #[test]
    fn an_invalid_from_address_is_refused_at_start() {
        let mut c = smtp("smtp://127.0.0.1:2525");
        c.from = "not an address".into();
        assert!(matches!(
            Mailer::with_password(&c, None),
            Err(EmailError::InvalidFrom { .. })
        ));
    }

    #[test]
    fn built_message_carries_the_stored_headers_and_both_parts() {
        let m = Mailer::with_password(&smtp("smtp://127.0.0.1:2525"), None).unwrap();
        let raw = String::from_utf8(m.build(&item()).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <t7.customers.ticket-submission@switchboard>\r\n"),
            "{raw}"
        );
        assert!(
            raw.contains("From: \"Support Status\" <status@example.com>\r\n"),
            "{raw}"
        );
        assert!(
            raw.contains("To: a@example.com, B <b@example.com>\r\n"),
            "{raw}"
        );
        assert!(raw.contains("Auto-Submitted: auto-generated\r\n"));
        assert!(raw.contains("Date: "));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(raw.contains("Content-Type: text/html; charset=utf-8"));
    }

    #[test]
    fn bad_recipients_and_empty_lists_fail_to_build() {
        let m = Mailer::with_password(&smtp("smtp://127.0.0.1:2525"), None).unwrap();
        let mut i = item();
        i.recipients = vec!["nobody".into()];
        assert!(matches!(
            m.build(&i),
            Err(EmailError::InvalidRecipient { .. })
        ));
        i.recipients.clear();
        assert!(matches!(m.build(&i), Err(EmailError::NoRecipients)));
    }
}
