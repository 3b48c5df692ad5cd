//! TCP, TLS, SMTP and DNS probes against real peers on loopback: a banner server, a closed port, a
//! silent server, a flood, self-signed / expired / wrong-host TLS servers, aiosmtpd (plain,
//! STARTTLS, implicit TLS), hostile SMTP and DNS peers, and dnsmasq.

use crate::support::smtp;

use crate::support::check::{self, class, run};
use crate::support::tls;
use smtp::{SinkTls, SmtpServer, TlsSink};
use std::time::Duration;
use switchboard::probe::ErrorClass;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// For the tests that wait for a timeout on purpose.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A server that answers each connection with `reply` after reading one chunk (or at once).
async fn serve(reply: &'static [u8], read_first: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if read_first {
                    let mut buf = [0u8; 256];
                    let _ = s.read(&mut buf).await;
                }
                let _ = s.write_all(reply).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn tcp_connects_sends_and_finds_the_expected_reply() {
    let port = serve(b"+OK support intake ready\r\n", true).await;
    let t = check::tcp(port).send("HELLO\r\n").expect("intake ready");
    let o = run(&t.spec()).await;
    assert!(o.success, "{o:?}");
    assert!(o.phases.connect > Duration::ZERO);
}

#[tokio::test]
async fn tcp_expect_mismatch_refused_port_and_silence_fail_with_their_class() {
    let port = serve(b"-ERR go away\r\n", false).await;
    let o = run(&check::tcp(port).expect("ready").spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let o = run(&check::tcp(closed).spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Connect), "{o:?}");

    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let t = check::tcp(port).expect("anything").timeout(TIMEOUT);
    let started = std::time::Instant::now();
    let o = run(&t.spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Timeout), "{o:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the 2 s timeout"
    );
    assert!(
        o.error
            .as_ref()
            .is_some_and(|e| e.message.ends_with("during processing")),
        "the timeout names the phase it hit: {o:?}"
    );
    assert!(
        o.phases.processing >= Duration::from_secs(1),
        "the wait is charged to processing: {:?}",
        o.phases
    );
}

#[tokio::test]
async fn tls_kind_verifies_certificates_and_reports_expiry_when_insecure() {
    let acceptor = tls::acceptor(tls::self_signed(&["localhost"]));
    let port = tls::serve(acceptor, |mut tls| async move {
        let _ = tls.write_all(b"hello over tls\n").await;
        let _ = tls.shutdown().await;
    })
    .await;
    let t = check::tls(port);
    let o = run(&t.clone().spec()).await;
    assert_eq!(
        class(&o),
        Some(ErrorClass::Tls),
        "self-signed fails verification: {o:?}"
    );
    let o = run(&t.insecure(true).expect("hello over tls").spec()).await;
    assert!(o.success, "{o:?}");
    let tls = o.tls.expect("TLS info");
    assert!(tls.version.starts_with("TLS 1."), "{}", tls.version);
    assert!(tls.earliest_cert_expiry > 1_700_000_000, "expiry captured");
}

#[tokio::test]
async fn smtp_reads_the_banner_and_ehlo_of_a_real_server_and_requires_starttls_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = SmtpServer::start(&dir.path().join("maildir"));
    let port: u16 = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let o = run(&check::smtp(port).spec()).await;
    assert!(o.success, "banner + EHLO against aiosmtpd: {o:?}");
    assert_eq!(o.status, Some(220));
    let o = run(&check::smtp(port).starttls().spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
    assert!(
        o.error
            .as_ref()
            .is_some_and(|e| e.message.contains("does not offer STARTTLS")),
        "{o:?}"
    );
}

#[tokio::test]
async fn smtp_refusing_banner_and_garbage_fail_as_protocol_errors() {
    let port = serve(b"554 5.3.2 intake closed for maintenance\r\n", false).await;
    let o = run(&check::smtp(port).spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
    assert_eq!(o.status, Some(554));
    assert!(
        o.error
            .as_ref()
            .is_some_and(|e| e.message.contains("intake closed")),
        "{o:?}"
    );

    let port = serve(b"\x00\x01garbage that is not smtp\r\n", false).await;
    let o = run(&check::smtp(port).spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
}

/// aiosmtpd with a self-signed certificate: STARTTLS on one port, implicit TLS on another.
struct TlsSmtp {
    starttls: TlsSink,
    smtps: TlsSink,
}

impl TlsSmtp {
    fn start() -> TlsSmtp {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let (crt, key) = (cert.cert.pem(), cert.key_pair.serialize_pem());
        TlsSmtp {
            starttls: TlsSink::start(&crt, &key, SinkTls::Starttls),
            smtps: TlsSink::start(&crt, &key, SinkTls::Implicit),
        }
    }
}

#[tokio::test]
async fn smtp_negotiates_starttls_and_implicit_tls_with_a_real_server() {
    let server = TlsSmtp::start();
    let o = run(&check::smtp(server.starttls.port).starttls().spec()).await;
    assert!(o.success, "STARTTLS negotiated: {o:?}");
    let tls = o.tls.as_ref().expect("TLS info after STARTTLS");
    assert!(tls.version.starts_with("TLS 1."), "{}", tls.version);
    assert!(o.phases.tls > Duration::ZERO);

    let verified = check::smtp(server.starttls.port).starttls().insecure(false);
    let o = run(&verified.spec()).await;
    assert_eq!(
        class(&o),
        Some(ErrorClass::Tls),
        "a self-signed certificate fails verification: {o:?}"
    );

    let implicit = check::smtp(server.smtps.port).with_smtp(|s| s.tls = true);
    let o = run(&implicit.spec()).await;
    assert!(o.success, "implicit TLS (SMTPS): {o:?}");
    assert!(o.tls.is_some());
}

/// A real DNS server: dnsmasq on loopback, answering support.example.com with 127.0.0.7 and
/// NXDOMAIN for anything under example.net; killed on drop.
struct Dnsmasq {
    child: std::process::Child,
    port: u16,
}

impl Dnsmasq {
    /// Starts it on a port free for both UDP and TCP, trying another port when it cannot bind
    /// (a socket of a test running beside this one may take the port in between).
    fn start() -> Dnsmasq {
        for _ in 0..5 {
            if let Some(server) = Dnsmasq::start_on(udp_and_tcp_port()) {
                return server;
            }
        }
        panic!("dnsmasq did not start on any of five ports");
    }

    /// `None` when dnsmasq exits at once, as it does when its port is taken.
    fn start_on(port: u16) -> Option<Dnsmasq> {
        let mut child = std::process::Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--conf-file=/dev/null",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--address=/support.example.com/127.0.0.7",
                "--address=/example.net/",
                "--mx-host=example.org,mail.example.org,10",
                "--pid-file=",
            ])
            // More than 512 bytes of TXT: over UDP without EDNS the reply is truncated, and
            // the probe must ask again over TCP.
            .arg(format!("--txt-record=big.example.org,{}", big_txt_args()))
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq is required: run ./scripts/test.sh to install Debian's dnsmasq-base");
        // Ready once it answers over TCP (dnsmasq serves both).
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "dnsmasq did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Dnsmasq { child, port })
    }
}

/// A loopback port that was free for TCP and UDP a moment ago (dnsmasq serves both on one).
fn udp_and_tcp_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Four 200-byte character-strings, comma-separated as dnsmasq's `--txt-record` takes them.
fn big_txt_args() -> String {
    (b'a'..=b'd')
        .map(|c| (c as char).to_string().repeat(200))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn dns_checks_rcode_and_answers_against_a_real_server() {
    let server = Dnsmasq::start();
    let o = run(&check::dns(server.port, "support.example.com")
        .answers(&["127.0.0.7"])
        .spec())
    .await;
    assert!(o.success, "{o:?}");
    // As in blackbox: the server is an IP address, so nothing is resolved; the query itself
    // is the request phase, and the reply's record counts are kept.
    assert_eq!(o.phases.resolve, Duration::ZERO);
    assert!(
        o.phases.processing > Duration::ZERO,
        "request time measured"
    );
    let counts = o.dns.expect("a reply's record counts");
    assert_eq!(counts.answer_rrs, 1, "{o:?}");

    let o = run(&check::dns(server.port, "support.example.com")
        .answers(&["10.9.9.9"])
        .spec())
    .await;
    assert_eq!(class(&o), Some(ErrorClass::Dns), "{o:?}");
    assert!(
        o.error
            .as_ref()
            .is_some_and(|e| e.message.contains("answer 10.9.9.9 missing")),
        "{o:?}"
    );

    let o = run(&check::dns(server.port, "nope.example.net").spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Dns), "{o:?}");
    assert!(
        o.error
            .as_ref()
            .is_some_and(|e| e.message.contains("rcode NXDOMAIN")),
        "{o:?}"
    );

    let o = run(&check::dns(server.port, "nope.example.net")
        .rcode("NXDOMAIN")
        .spec())
    .await;
    assert!(o.success, "NXDOMAIN expected and seen: {o:?}");

    let with_condition = check::dns(server.port, "support.example.com")
        .condition("[DNS_RCODE] == NOERROR")
        .spec();
    let o = run(&with_condition).await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.conditions[0].resolved, "[DNS_RCODE] (NOERROR) == NOERROR");
}

#[tokio::test]
async fn dns_to_a_silent_server_times_out_within_the_timeout() {
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let started = std::time::Instant::now();
    let o = run(&check::dns(port, "support.example.com")
        .timeout(TIMEOUT)
        .spec())
    .await;
    assert_eq!(class(&o), Some(ErrorClass::Timeout), "{o:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(silent);
}

#[tokio::test]
async fn dns_truncated_reply_is_asked_again_over_tcp_and_mx_reads_like_dig() {
    let server = Dnsmasq::start();
    // First make sure this really exercises the fallback: over UDP the reply is truncated.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut query = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["big", "example", "org"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 16, 0, 1]);
    udp.send_to(&query, ("127.0.0.1", server.port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = udp.recv(&mut buf).expect("dnsmasq answers over UDP");
    assert!(n >= 4 && buf[2] & 0x02 != 0, "TC set over UDP");

    let whole: String = (b'a'..=b'd')
        .map(|c| (c as char).to_string().repeat(200))
        .collect();
    let o = run(&check::dns(server.port, "big.example.org")
        .qtype("TXT")
        .answers(std::slice::from_ref(&whole))
        .spec())
    .await;
    assert!(o.success, "the whole 800-byte TXT arrives over TCP: {o:?}");
    assert_eq!(o.content_length, 800);

    let o = run(&check::dns(server.port, "example.org")
        .qtype("MX")
        .answers(&["10 mail.example.org".to_string()])
        .spec())
    .await;
    assert!(o.success, "{o:?}");
}

/// A UDP "server" that answers every datagram with what `reply` makes of it.
fn udp_responder(reply: fn(&[u8]) -> Vec<Vec<u8>>) -> u16 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            for datagram in reply(&buf[..n]) {
                let _ = sock.send_to(&datagram, from);
            }
        }
    });
    port
}

#[tokio::test]
async fn dns_garbage_is_a_protocol_error_and_stray_replies_are_not_believed() {
    // Our id, then bytes that are not a DNS message.
    let port = udp_responder(|q| vec![[&q[..2], b"\x81\x80garbage".as_slice()].concat()]);
    let o = run(&check::dns(port, "support.example.com").spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");

    // A well-formed NOERROR reply, but with another id, and one for another name: neither
    // is the answer, so the probe keeps waiting and times out instead of passing.
    let port = udp_responder(|q| {
        let mut other_id = q.to_vec();
        other_id[0] ^= 0xFF;
        other_id[2] |= 0x80;
        let mut other_name = q.to_vec();
        other_name[2] |= 0x80;
        other_name[13] = b'x';
        vec![other_id, other_name]
    });
    let o = run(&check::dns(port, "support.example.com")
        .timeout(TIMEOUT)
        .spec())
    .await;
    assert_eq!(class(&o), Some(ErrorClass::Timeout), "{o:?}");
    assert!(
        o.error
            .as_ref()
            .is_some_and(|e| e.message.contains("waiting for a DNS reply")),
        "{o:?}"
    );
}

#[tokio::test]
async fn tcp_connected_and_ip_conditions_see_the_connection() {
    let port = serve(b"", false).await;
    let c = check::tcp(port)
        .condition("[CONNECTED] == true")
        .condition("[IP] == 127.0.0.1");
    let o = run(&c.spec()).await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.conditions[0].resolved, "[CONNECTED] (true) == true");
    assert_eq!(
        o.phases.resolve,
        Duration::ZERO,
        "an IP literal is not looked up"
    );
}

/// A server that writes `x` forever to every connection, as fast as the probe reads.
async fn flood() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let chunk = vec![b'x'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    port
}

#[tokio::test]
async fn tcp_endless_reply_without_the_expected_text_stops_at_the_cap() {
    let port = flood().await;
    let o = run(&check::tcp(port).expect("ready").spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
    assert!(
        o.content_length <= 64 * 1024,
        "read at most the cap: {}",
        o.content_length
    );
}

/// A TLS server with a self-signed certificate for `names`, valid in the given years.
async fn tls_server(names: &[&str], valid: (i32, i32)) -> u16 {
    let identity = tls::certificate(names, Some(((valid.0, 1, 1), (valid.1, 1, 1))));
    tls::serve(tls::acceptor(identity), |mut tls| async move {
        let _ = tls.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn tls_kind_expired_certificate_fails_verification_and_its_expiry_condition() {
    let port = tls_server(&["localhost", "127.0.0.1"], (2020, 2021)).await;
    let t = check::tls(port);
    let o = run(&t.clone().spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
    assert!(o.tls.is_none(), "no TLS info without a handshake");

    // With verification off the handshake completes, and the expiry tells the truth.
    let c = t
        .insecure(true)
        .condition("[CERTIFICATE_EXPIRATION] > 168h");
    let o = run(&c.spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Conditions), "{o:?}");
    let tls = o.tls.as_ref().expect("TLS info");
    assert!(
        tls.earliest_cert_expiry < 1_700_000_000,
        "expired in 2021: {}",
        tls.earliest_cert_expiry
    );
    assert!(o.phases.tls > Duration::ZERO);
}

#[tokio::test]
async fn tls_kind_wrong_host_certificate_fails_as_tls() {
    let port = tls_server(&["other.example.net"], (2020, 2100)).await;
    let t = check::tls(port).with_tcp(|t| t.host = "localhost".into());
    let o = run(&t.spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
}

/// A hand-written SMTP peer: sends `banner`, then answers each line it reads with the next
/// entry of `replies` (and closes after the last one).
async fn smtp_peer(banner: &'static [u8], replies: &'static [&'static [u8]]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = tokio::io::BufReader::new(r);
                if w.write_all(banner).await.is_err() {
                    return;
                }
                for reply in replies {
                    let mut line = String::new();
                    use tokio::io::AsyncBufReadExt;
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn smtp_multi_line_banner_and_ehlo_are_read_whole() {
    let port = smtp_peer(
        b"220-mx.example.com ESMTP\r\n220-Support intake, be nice\r\n220 ready\r\n",
        &[
            b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
            b"221 bye\r\n",
        ],
    )
    .await;
    let o = run(&check::smtp(port).condition("[STATUS] == 220").spec()).await;
    assert!(o.success, "{o:?}");

    // The same server asked for STARTTLS, which its EHLO does not list.
    let o = run(&check::smtp(port).starttls().spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
}

#[tokio::test]
async fn smtp_hostile_replies_fail_as_protocol_errors() {
    // Each of these would pass a lenient reader, because the peer then accepts EHLO and QUIT.
    let long: &'static [u8] = Box::leak(
        [b"220 ".as_slice(), &[b'x'; 100_000]]
            .concat()
            .into_boxed_slice(),
    );
    for (what, banner) in [
        ("line longer than the cap", long),
        (
            "code changes mid-reply",
            b"554-closed\r\n220 ok\r\n".as_slice(),
        ),
        ("no separator after the code", b"220hello\r\n".as_slice()),
        ("sign before the code", b"+22 hello\r\n".as_slice()),
    ] {
        let port = smtp_peer(banner, &[b"250 ok\r\n", b"221 bye\r\n"]).await;
        let o = run(&check::smtp(port).spec()).await;
        assert_eq!(class(&o), Some(ErrorClass::Protocol), "{what}: {o:?}");
    }

    // An endless multi-line banner is cut at the line limit, not read forever.
    let endless: &'static [u8] = Box::leak(b"220-more\r\n".repeat(10_000).into_boxed_slice());
    let port = smtp_peer(endless, &[]).await;
    let o = run(&check::smtp(port).spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
    assert!(
        o.error
            .as_ref()
            .is_some_and(|e| e.message.contains("lines")),
        "{o:?}"
    );

    // EHLO refused.
    let port = smtp_peer(b"220 hi\r\n", &[b"502 5.5.1 not here\r\n"]).await;
    let o = run(&check::smtp(port).spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
}

#[tokio::test]
async fn smtp_server_that_never_greets_times_out_during_processing() {
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let o = run(&check::smtp(port).starttls().timeout(TIMEOUT).spec()).await;
    assert_eq!(class(&o), Some(ErrorClass::Timeout), "{o:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        o.error
            .as_ref()
            .is_some_and(|e| e.message.ends_with("during processing")),
        "{o:?}"
    );
}
