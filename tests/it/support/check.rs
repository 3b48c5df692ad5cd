//! Check specs for the probe tests, built one way: a constructor per probe kind that fills in
//! every field with a test's defaults, builder methods for the fields tests set, and the
//! guarded `run` that every probe test calls. A new probe kind adds its constructor here.
//! Multi-step checks (`steps`) are the exception: they are written as TOML and read with
//! `load`, because their templates and extract rules only exist once the loader parsed them.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use switchboard::config::{
    CheckKind, CheckSpec, Config, DnsCheck, HttpCheck, ImapConfirm, Impact, MailConfirm,
    MailRoundtripCheck, MailServer, MailTls, OnArrival, Role, Secret, SmtpCheck, TcpCheck,
    VendorFormat, VendorStatusCheck,
};
use switchboard::probe::condition::Condition;
use switchboard::probe::{self, ErrorClass, Outcome};

/// The default timeout: generous, because a probe that should finish does so long before
/// this on any machine. Tests that wait for a timeout on purpose set a short one.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What a timed-out probe may overrun its timeout by on a loaded machine.
pub const SLACK: Duration = Duration::from_secs(3);

/// A check under construction; `spec()` gives the config's `CheckSpec`.
#[derive(Clone, Debug)]
pub struct Check(CheckSpec);

fn with_kind(kind: CheckKind) -> Check {
    Check(CheckSpec {
        name: "test-check".into(),
        service: "test-service".into(),
        role: Role::Primary,
        interval: Duration::from_secs(30),
        timeout: TIMEOUT,
        retry_interval: Duration::from_secs(5),
        failure_threshold: 3,
        success_threshold: 2,
        confirmation: Default::default(),
        conditions: Vec::new(),
        kind,
    })
}

/// `kind = "http"`: GET `url`, following up to 10 redirects, reading up to 1 MiB of body.
pub fn http(url: &str) -> Check {
    with_kind(CheckKind::Http(HttpCheck {
        url: url.parse().expect("test URL"),
        method: "GET".into(),
        headers: Vec::new(),
        body: None,
        max_redirects: 10,
        max_body_bytes: 1 << 20,
        insecure: false,
        net: Default::default(),
    }))
}

/// `kind = "tcp"` to 127.0.0.1:`port`: connect only, until `send`/`expect` say more.
pub fn tcp(port: u16) -> Check {
    with_kind(CheckKind::Tcp(TcpCheck {
        host: "127.0.0.1".into(),
        port,
        send: None,
        expect: None,
        expect_regex: None,
        tls: false,
        insecure: false,
        net: Default::default(),
    }))
}

/// `kind = "tls"` to 127.0.0.1:`port`: a TCP check with a verified TLS handshake.
pub fn tls(port: u16) -> Check {
    tcp(port).with_tcp(|t| t.tls = true)
}

/// `kind = "smtp"` to 127.0.0.1:`port`: banner and EHLO, certificates not verified (the test
/// servers' are self-signed) until `verified()` says otherwise.
pub fn smtp(port: u16) -> Check {
    with_kind(CheckKind::Smtp(SmtpCheck {
        host: "127.0.0.1".into(),
        port,
        starttls: false,
        tls: false,
        insecure: true,
        ehlo: "probe.switchboard.test".into(),
        net: Default::default(),
    }))
}

/// `kind = "dns"`: an A query for `name` to 127.0.0.1:`port`, expecting `NOERROR`.
pub fn dns(port: u16, name: &str) -> Check {
    with_kind(CheckKind::Dns(DnsCheck {
        server: IpAddr::from([127, 0, 0, 1]),
        port,
        name: name.into(),
        qtype: 1,
        expect_rcode: "NOERROR".into(),
        expect_answers: Vec::new(),
        source_address: None,
    }))
}

/// `kind = "vendor_status"` reading `url` as `format`: the whole page judged, failing at a
/// `major` impact, reading up to 1 MiB.
pub fn vendor_status(format: VendorFormat, url: &str) -> Check {
    let mut check = with_kind(CheckKind::VendorStatus(VendorStatusCheck {
        format,
        url: url.parse().expect("test URL"),
        components: Vec::new(),
        impact: Impact::Major,
        max_pending: None,
        max_running: None,
        max_body_bytes: 1 << 20,
        insecure: false,
        net: Default::default(),
    }));
    check.0.role = Role::Vendor;
    check
}

/// `kind = "mail_roundtrip"`: a canary from `canary@example.com` to `support@example.com`
/// through plain SMTP on 127.0.0.1:`smtp_port`, looked for every 100 ms over plain IMAP on
/// 127.0.0.1:`imap_port` as `user`, whose password is the first line of `password_file`;
/// deleted once seen.
pub fn mail_roundtrip(smtp_port: u16, imap_port: u16, user: &str, password_file: &Path) -> Check {
    let server = |port, user: Option<&str>, password: Option<Secret>| MailServer {
        host: "127.0.0.1".into(),
        port,
        tls: MailTls::None,
        user: user.map(str::to_string),
        password,
        insecure: false,
        net: Default::default(),
    };
    with_kind(CheckKind::MailRoundtrip(MailRoundtripCheck {
        from: "canary@example.com".into(),
        to: "support@example.com".into(),
        subject_prefix: "[Switchboard canary]".into(),
        poll_interval: Duration::from_millis(100),
        smtp: server(smtp_port, None, None),
        confirm: MailConfirm::Imap(ImapConfirm {
            server: server(
                imap_port,
                Some(user),
                Some(Secret::File(password_file.to_path_buf())),
            ),
            mailbox: "INBOX".into(),
            on_arrival: OnArrival::Delete,
        }),
    }))
}

impl Check {
    /// The spec, ready for `probe::run`.
    pub fn spec(self) -> CheckSpec {
        self.0
    }

    pub fn timeout(mut self, timeout: Duration) -> Check {
        self.0.timeout = timeout;
        self
    }

    /// Adds a condition, parsed as the config loader parses it.
    pub fn condition(mut self, text: &str) -> Check {
        let condition = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        self.0.conditions.push(condition);
        self
    }

    /// Edits the fields of an http check.
    pub fn with_http(mut self, edit: impl FnOnce(&mut HttpCheck)) -> Check {
        let CheckKind::Http(h) = &mut self.0.kind else {
            panic!("not an http check: {:?}", self.0.kind)
        };
        edit(h);
        self
    }

    /// Edits the fields of a tcp or tls check.
    pub fn with_tcp(mut self, edit: impl FnOnce(&mut TcpCheck)) -> Check {
        let CheckKind::Tcp(t) = &mut self.0.kind else {
            panic!("not a tcp check: {:?}", self.0.kind)
        };
        edit(t);
        self
    }

    /// Edits the fields of an smtp check.
    pub fn with_smtp(mut self, edit: impl FnOnce(&mut SmtpCheck)) -> Check {
        let CheckKind::Smtp(s) = &mut self.0.kind else {
            panic!("not an smtp check: {:?}", self.0.kind)
        };
        edit(s);
        self
    }

    /// Edits the fields of a vendor_status check.
    pub fn with_vendor(mut self, edit: impl FnOnce(&mut VendorStatusCheck)) -> Check {
        let CheckKind::VendorStatus(v) = &mut self.0.kind else {
            panic!("not a vendor_status check: {:?}", self.0.kind)
        };
        edit(v);
        self
    }

    /// Edits the fields of a dns check.
    pub fn with_dns(mut self, edit: impl FnOnce(&mut DnsCheck)) -> Check {
        let CheckKind::Dns(d) = &mut self.0.kind else {
            panic!("not a dns check: {:?}", self.0.kind)
        };
        edit(d);
        self
    }

    /// Skips certificate verification (http, tcp/tls, smtp).
    pub fn with_mail(mut self, edit: impl FnOnce(&mut MailRoundtripCheck)) -> Check {
        match &mut self.0.kind {
            CheckKind::MailRoundtrip(m) => edit(m),
            other => panic!("with_mail on a {other:?} check"),
        }
        self
    }

    pub fn insecure(self, insecure: bool) -> Check {
        match self.0.kind {
            CheckKind::Http(_) => self.with_http(|h| h.insecure = insecure),
            CheckKind::Tcp(_) => self.with_tcp(|t| t.insecure = insecure),
            CheckKind::Smtp(_) => self.with_smtp(|s| s.insecure = insecure),
            _ => panic!("no certificate to verify: {:?}", self.0.kind),
        }
    }

    /// What a tcp check sends after connecting.
    pub fn send(self, text: &str) -> Check {
        self.with_tcp(|t| t.send = Some(text.into()))
    }

    /// Text the reply of a tcp check must contain.
    pub fn expect(self, text: &str) -> Check {
        self.with_tcp(|t| t.expect = Some(text.into()))
    }

    /// Requires STARTTLS of an smtp check.
    pub fn starttls(self) -> Check {
        self.with_smtp(|s| s.starttls = true)
    }

    /// The rcode a dns check expects (`NOERROR` unless set).
    pub fn rcode(self, rcode: &str) -> Check {
        self.with_dns(|d| d.expect_rcode = rcode.into())
    }

    /// The query type of a dns check by name (`A` unless set).
    pub fn qtype(self, qtype: &str) -> Check {
        let number = switchboard::probe::dns::type_number(qtype).expect("known type");
        self.with_dns(|d| d.qtype = number)
    }

    /// Answers a dns check expects among the reply's.
    pub fn answers(self, answers: &[impl AsRef<str>]) -> Check {
        self.with_dns(|d| {
            d.expect_answers = answers.iter().map(|a| a.as_ref().to_string()).collect()
        })
    }
}

/// Runs the probe, guarded so a probe that ignores its timeout fails the test instead of
/// hanging it.
pub async fn run(check: &CheckSpec) -> Outcome {
    tokio::time::timeout(check.timeout + SLACK, probe::run(check))
        .await
        .expect("probe outlived its timeout plus slack")
}

/// The top-level fields of an outcome's JSON (`switchboard probe --json`), the contract every
/// kind keeps.
pub const OUTCOME_FIELDS: &[&str] = &[
    "check",
    "success",
    "conditions",
    "status",
    "duration_seconds",
    "phases",
    "error",
];

/// The outcome's error class (`None` on success).
pub fn class(o: &Outcome) -> Option<ErrorClass> {
    o.error.as_ref().map(|e| e.class)
}

/// The outcome's error message (empty on success).
pub fn message(o: &Outcome) -> &str {
    o.error.as_ref().map_or("", |e| e.message.as_str())
}

/// Writes `service` (a service file's TOML after its `[service]` table: checks, routes) and
/// `files` (such as a CA bundle) under `probes/` of a temporary directory, loads it as the
/// daemon would, and returns the checks in name order with the directory that holds them.
pub fn load(service: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<CheckSpec>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let probes = dir.path().join("probes");
    std::fs::create_dir_all(&probes).expect("mkdir");
    write(
        &dir.path().join("switchboard.toml"),
        "probes = \"probes\"\n",
    );
    write(
        &probes.join("s.toml"),
        &format!("[service]\nid = \"s\"\n\n{service}"),
    );
    for (name, text) in files {
        write(&probes.join(name), text);
    }
    let config =
        Config::load(&dir.path().join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"));
    let checks = config.checks().cloned().collect();
    (dir, checks)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
