//! A real SMTP server for tests: aiosmtpd writing a Maildir, as a child process on a loopback port.
//!
//! The tests that use it must fail, not skip, when aiosmtpd is missing: a test suite that
//! passes without an SMTP server proves nothing about e-mail delivery.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

const MISSING: &str = "aiosmtpd is not installed, and these tests need a real SMTP server. \
Run the project's test script (it installs what is missing), or install it by hand: \
`apt-get install python3-aiosmtpd` or `pip install aiosmtpd`.";

/// Panics with instructions unless `python3 -m aiosmtpd` can run here.
pub fn require_aiosmtpd() {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{MISSING}");
}

/// A running aiosmtpd that stores every message it accepts in a Maildir. Killed on drop.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    log: PathBuf,
}

impl SmtpServer {
    pub fn start(maildir: &Path) -> SmtpServer {
        SmtpServer::start_on(free_port(), maildir)
    }

    /// Starts on `port` and waits until it accepts connections.
    pub fn start_on(port: u16, maildir: &Path) -> SmtpServer {
        require_aiosmtpd();
        let log = maildir.with_extension(format!("aiosmtpd-{port}.log"));
        // Output goes to a file, not a pipe nobody drains, so the server can never block on it.
        let out = File::create(&log).expect("create aiosmtpd log");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 -m aiosmtpd: {e}. {MISSING}"));
        let mut server = SmtpServer {
            child,
            port,
            maildir: maildir.to_path_buf(),
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("aiosmtpd exited early ({status}):\n{log}\n{MISSING}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not accept connections on {addr} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages delivered so far (Maildir `new/`), in file-name order.
    pub fn messages(&self) -> Vec<PathBuf> {
        maildir_messages(&self.maildir)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn maildir_messages(maildir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(maildir.join("new")) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// A message as an independent MIME parser (Python's `email` package) reads it: headers
/// decoded (RFC 2047), and every leaf part decoded from its transfer encoding.
#[derive(Debug)]
pub struct ParsedMail {
    pub headers: Vec<(String, String)>,
    pub content_type: String,
    /// (content type, decoded content) of every non-multipart part.
    pub parts: Vec<(String, String)>,
}

impl ParsedMail {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn part(&self, content_type: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(ct, _)| ct == content_type)
            .map(|(_, c)| c.as_str())
    }
}

const PARSE_PY: &str = r#"
import email, json, sys
from email import policy
with open(sys.argv[1], 'rb') as f:
    m = email.message_from_binary_file(f, policy=policy.default)
parts = [[p.get_content_type(), p.get_content()] for p in m.walk() if not p.is_multipart()]
print(json.dumps({"headers": [[k, str(v)] for k, v in m.items()],
                  "content_type": m.get_content_type(), "parts": parts}))
"#;

pub fn parse_mail(path: &Path) -> ParsedMail {
    let out = Command::new("python3")
        .args(["-c", PARSE_PY])
        .arg(path)
        .output()
        .expect("run python3 to parse the message");
    assert!(
        out.status.success(),
        "python3 could not parse {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parser output is JSON");
    let pairs = |v: &serde_json::Value| -> Vec<(String, String)> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().expect("string").to_owned(),
                    p[1].as_str().expect("string").to_owned(),
                )
            })
            .collect()
    };
    ParsedMail {
        headers: pairs(&v["headers"]),
        content_type: v["content_type"].as_str().expect("string").to_owned(),
        parts: pairs(&v["parts"]),
    }
}

/// An aiosmtpd that refuses every message (`mode` "rcpt": 554 on RCPT) or speaks implicit
/// TLS with a certificate no client trusts (`mode` "tls"). Killed on drop.
pub struct RefusingServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl RefusingServer {
    pub fn start(dir: &Path, mode: &str) -> RefusingServer {
        require_aiosmtpd();
        let port = free_port();
        let log = dir.join(format!("refusing-{port}.log"));
        let out = File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log handle");
        let script = super::script("refusing_smtp.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(port.to_string()).arg(mode);
        if mode == "tls" {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
                .expect("self-signed certificate");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&c, cert.cert.pem()).expect("write cert");
            std::fs::write(&k, cert.key_pair.serialize_pem()).expect("write key");
            cmd.arg(c).arg(k);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start refusing_smtp.py: {e}. {MISSING}"));
        let mut s = RefusingServer { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !s.log_text().contains("ready") {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("refusing_smtp.py exited ({status}):\n{}", s.log_text());
            }
            assert!(Instant::now() < deadline, "refusing_smtp.py not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RefusingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An aiosmtpd with TLS (`mode` "starttls" or "smtps") that requires AUTH as `user` /
/// `password` and stores what it takes in a Maildir. Its certificate is signed by a test CA
/// whose PEM is at `ca_pem`. Killed on drop.
pub struct TlsSmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    pub ca_pem: PathBuf,
    log: PathBuf,
}

impl TlsSmtpServer {
    pub fn start(dir: &Path, mode: &str, user: &str, password: &str) -> TlsSmtpServer {
        require_aiosmtpd();
        let port = free_port();
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA cert");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("leaf")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf cert");
        let (cert, key, ca_pem) = (
            dir.join(format!("{mode}-cert.pem")),
            dir.join(format!("{mode}-key.pem")),
            dir.join(format!("{mode}-ca.pem")),
        );
        std::fs::write(&cert, leaf.pem()).expect("write cert");
        std::fs::write(&key, leaf_key.serialize_pem()).expect("write key");
        std::fs::write(&ca_pem, ca.pem()).expect("write CA");
        let maildir = dir.join(format!("{mode}-maildir"));
        let log = dir.join(format!("tls-smtp-{port}.log"));
        let out = File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log handle");
        let script = super::script("tls_smtp.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(mode)
            .arg(&cert)
            .arg(&key)
            .arg(&maildir)
            .arg(user)
            .arg(password)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tls_smtp.py: {e}. {MISSING}"));
        let mut s = TlsSmtpServer {
            child,
            port,
            maildir,
            ca_pem,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !s.log_text().contains("ready") {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("tls_smtp.py exited ({status}):\n{}", s.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "tls_smtp.py not ready:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn messages(&self) -> Vec<PathBuf> {
        maildir_messages(&self.maildir)
    }
}

impl Drop for TlsSmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a `TlsSink` speaks TLS.
#[derive(Clone, Copy, Debug)]
pub enum SinkTls {
    /// Plain at first, STARTTLS offered in its EHLO reply.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// aiosmtpd that takes mail and discards it, speaking TLS with the certificate and key given
/// (PEM), for the probe tests. Killed on drop.
pub struct TlsSink {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl TlsSink {
    pub fn start(cert_pem: &str, key_pem: &str, tls: SinkTls) -> TlsSink {
        require_aiosmtpd();
        let dir = tempfile::tempdir().expect("tempdir");
        let (crt, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&crt, cert_pem).expect("write cert");
        std::fs::write(&key, key_pem).expect("write key");
        let port = free_port();
        let [cert_flag, key_flag] = match tls {
            SinkTls::Starttls => ["--tlscert", "--tlskey"],
            SinkTls::Implicit => ["--smtpscert", "--smtpskey"],
        };
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Sink", "--no-requiretls"])
            .arg(cert_flag)
            .arg(&crt)
            .arg(key_flag)
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 -m aiosmtpd: {e}. {MISSING}"));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "aiosmtpd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsSink {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for TlsSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
