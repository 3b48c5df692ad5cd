//! Connection options against real loopback peers: a per-check CA bundle and `server_name`
//! (an HTTPS and a TLS server whose certificate is signed by a CA made here with rcgen),
//! `ip_version` (servers on 127.0.0.1 and ::1), and tcp `expect_regex` (a socket server that
//! answers in pieces). Checks are loaded from TOML, so `ca_file` is read the way users give it.

use crate::support::check::{load, message, run};
use crate::support::smtp::{SinkTls, TlsSink};
use crate::support::tls;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use switchboard::config::CheckSpec;
use switchboard::probe::{self, ErrorClass};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A private CA and a server certificate it signed for `support.test` only.
struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
    leaf_der: rustls::pki_types::CertificateDer<'static>,
    leaf_key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Switchboard Test CA");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let leaf = rcgen::CertificateParams::new(vec!["support.test".to_string()]).expect("leaf");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("signed leaf");
    Pki {
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf_cert.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_der: leaf_cert.der().clone(),
        leaf_key: rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
            .expect("key"),
    }
}

/// A TLS server on 127.0.0.1 with the leaf certificate: it answers an HTTP request with 200,
/// or (for a tcp check, which sends nothing) greets with a line.
async fn tls_server(pki: &Pki) -> u16 {
    tls_server_with(pki, rustls::DEFAULT_VERSIONS).await
}

async fn tls_server_with(pki: &Pki, versions: &[&'static rustls::SupportedProtocolVersion]) -> u16 {
    let identity = tls::Identity {
        cert: pki.leaf_der.clone(),
        key: pki.leaf_key.clone_key(),
    };
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(identity, versions)));
    tls::serve(acceptor, |mut tls| async move {
        let mut buf = [0u8; 2048];
        let got = tokio::time::timeout(Duration::from_millis(300), tls.read(&mut buf))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        let reply: &[u8] = if got > 0 {
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nprivate"
        } else {
            b"hello from the private CA\n"
        };
        let _ = tls.write_all(reply).await;
        let _ = tls.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_through_ca_file_and_only_for_its_name() {
    let pki = pki();
    let port = tls_server(&pki).await;
    let (_dir, checks) = load(
        &format!(
            r#"[[check]]
name = "a-webpki-only"
url = "https://127.0.0.1:{port}/"
server_name = "support.test"
timeout = "3s"

[[check]]
name = "b-with-ca"
url = "https://127.0.0.1:{port}/"
ca_file = "private-ca.pem"
server_name = "support.test"
timeout = "3s"
conditions = ["[STATUS] == 200", "[BODY] == private"]

[[check]]
name = "c-wrong-name"
url = "https://127.0.0.1:{port}/"
ca_file = "private-ca.pem"
server_name = "other.test"
timeout = "3s"

[[check]]
name = "d-tls-kind"
kind = "tls"
target = "127.0.0.1:{port}"
ca_file = "private-ca.pem"
server_name = "support.test"
expect = "private CA"
timeout = "3s"

[[check]]
name = "e-no-server-name"
url = "https://127.0.0.1:{port}/"
ca_file = "private-ca.pem"
timeout = "3s"
"#
        ),
        &[("private-ca.pem", &pki.ca_pem)],
    );
    let by = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .expect("check loaded")
    };

    let o = run(by("a-webpki-only")).await;
    assert_eq!(
        o.error.as_ref().map(|e| e.class),
        Some(ErrorClass::Tls),
        "{o:?}"
    );
    assert!(message(&o).contains("UnknownIssuer"), "{}", message(&o));

    let o = run(by("b-with-ca")).await;
    assert!(o.success, "the bundle's CA signed it: {o:?}");
    assert!(o.tls.is_some());

    let o = run(by("c-wrong-name")).await;
    assert_eq!(
        o.error.as_ref().map(|e| e.class),
        Some(ErrorClass::Tls),
        "{o:?}"
    );
    assert!(
        message(&o).contains("not valid for name \"other.test\""),
        "{}",
        message(&o)
    );

    let o = run(by("d-tls-kind")).await;
    assert!(
        o.success,
        "tcp with TLS uses the same bundle and name: {o:?}"
    );

    let o = run(by("e-no-server-name")).await;
    assert_eq!(
        o.error.as_ref().map(|e| e.class),
        Some(ErrorClass::Tls),
        "without server_name the URL's host (127.0.0.1) is verified, which the certificate does not name: {o:?}"
    );
}

/// Binds 127.0.0.1 and ::1 on one port, each answering with its own family's name.
async fn dual_stack() -> Option<u16> {
    for _ in 0..20 {
        let v4 = TcpListener::bind("127.0.0.1:0").await.expect("bind v4");
        let port = v4.local_addr().expect("addr").port();
        let Ok(v6) = TcpListener::bind(("::1", port)).await else {
            continue; // that port is taken on ::1; try another
        };
        for (l, body) in [(v4, "v4"), (v6, "v6")] {
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{body}"
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                }
            });
        }
        return Some(port);
    }
    None
}

#[tokio::test]
async fn ip_version_picks_the_address_family() {
    // ::1 must really be bindable here; the brief forbids pretending otherwise.
    let port = dual_stack()
        .await
        .expect("::1 and 127.0.0.1 are both bindable on this machine");
    let localhost_has_v6 = ("localhost", port)
        .to_socket_addrs()
        .map(|mut a| a.any(|a: SocketAddr| a.is_ipv6()))
        .unwrap_or(false);
    let (_dir, checks) = load(
        &format!(
            r#"[[check]]
name = "a-v4"
url = "http://localhost:{port}/"
ip_version = "4"
timeout = "2s"

[[check]]
name = "b-v6"
url = "http://localhost:{port}/"
ip_version = "6"
timeout = "2s"

[[check]]
name = "c-v6-literal"
url = "http://[::1]:{port}/"
timeout = "2s"
conditions = ["[BODY] == v6", "[IP] == ::1"]

[[check]]
name = "d-v6-literal-asked-for-v4"
url = "http://[::1]:{port}/"
ip_version = "4"
timeout = "2s"
"#
        ),
        &[],
    );

    let o = run(&checks[0]).await;
    assert!(o.success, "{o:?}");
    let o4 = probe::run(&CheckSpec {
        conditions: vec![
            switchboard::probe::condition::Condition::parse("[BODY] == v4").expect("condition"),
        ],
        ..checks[0].clone()
    })
    .await;
    assert!(
        o4.success,
        "ip_version 4 reached the 127.0.0.1 server: {o4:?}"
    );

    let o = run(&checks[1]).await;
    if localhost_has_v6 {
        let o6 = probe::run(&CheckSpec {
            conditions: vec![
                switchboard::probe::condition::Condition::parse("[BODY] == v6").expect("condition"),
            ],
            ..checks[1].clone()
        })
        .await;
        assert!(o6.success, "ip_version 6 reached the ::1 server: {o6:?}");
    } else {
        // This machine's resolver maps localhost to 127.0.0.1 only (no `::1 localhost` in
        // /etc/hosts), so asking for IPv6 must fail as a DNS problem, never fall back to IPv4.
        println!("note: localhost has no IPv6 address here; checking the refusal instead");
        assert_eq!(
            o.error.as_ref().map(|e| e.class),
            Some(ErrorClass::Dns),
            "{o:?}"
        );
        assert!(
            message(&o).contains("localhost has no IPv6 address"),
            "{}",
            message(&o)
        );
    }

    let o = run(&checks[2]).await;
    assert!(o.success, "the ::1 server answered over IPv6: {o:?}");

    let o = run(&checks[3]).await;
    assert_eq!(
        o.error.as_ref().map(|e| e.class),
        Some(ErrorClass::Dns),
        "{o:?}"
    );
    assert!(
        message(&o).contains("has no IPv4 address"),
        "{}",
        message(&o)
    );
}

#[tokio::test]
async fn tcp_expect_regex_matches_across_reads_or_fails_due_to_regex() {
    // The banner arrives in two pieces: a match must see both.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"220 mx.support.test").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = s.write_all(b" ESMTP Postfix\r\n").await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    let (_dir, checks) = load(
        &format!(
            r#"[[check]]
name = "a-match"
kind = "tcp"
target = "127.0.0.1:{port}"
expect_regex = "^220 [a-z.]+ ESMTP"
timeout = "2s"

[[check]]
name = "b-mismatch"
kind = "tcp"
target = "127.0.0.1:{port}"
expect_regex = "^220 .* Exim"
timeout = "2s"
"#
        ),
        &[],
    );
    let o = run(&checks[0]).await;
    assert!(o.success, "{o:?}");
    assert!(!o.failed_due_to_regex);

    let o = run(&checks[1]).await;
    assert!(!o.success);
    assert!(o.failed_due_to_regex, "{o:?}");
    assert_eq!(
        o.error.as_ref().map(|e| e.class),
        Some(ErrorClass::Protocol)
    );
    assert!(
        message(&o).contains("ESMTP Postfix"),
        "shows what came: {}",
        message(&o)
    );
}

#[tokio::test]
async fn smtp_starttls_verifies_against_the_check_ca_file_and_server_name() {
    let pki = pki();
    // aiosmtpd offering STARTTLS with the private CA's certificate for `support.test`.
    let server = TlsSink::start(&pki.leaf_pem, &pki.leaf_key_pem, SinkTls::Starttls);
    let port = server.port;
    let (_dir, checks) = load(
        &format!(
            r#"[[check]]
name = "a-with-ca"
kind = "smtp"
target = "127.0.0.1:{port}"
ca_file = "private-ca.pem"
server_name = "support.test"
timeout = "5s"

[[check]]
name = "b-without-ca"
kind = "smtp"
target = "127.0.0.1:{port}"
server_name = "support.test"
timeout = "5s"
"#
        ),
        &[("private-ca.pem", &pki.ca_pem)],
    );
    let o = run(&checks[0]).await;
    assert!(o.success, "STARTTLS verified with the private CA: {o:?}");
    assert!(o.tls.is_some());
    let o = run(&checks[1]).await;
    assert_eq!(
        o.error.as_ref().map(|e| e.class),
        Some(ErrorClass::Tls),
        "{o:?}"
    );
    assert!(message(&o).contains("UnknownIssuer"), "{}", message(&o));
}

#[tokio::test]
async fn https_over_tls_1_2_and_1_3_both_complete() {
    // TLS 1.2 reads the server's Finished after sending its own, TLS 1.3 does not: the probe
    // holds the client's last flight back to send it with the request, and must never leave
    // the server waiting for it in either.
    let pki = pki();
    for (versions, expect) in [
        (&[&rustls::version::TLS12][..], "TLS 1.2"),
        (&[&rustls::version::TLS13][..], "TLS 1.3"),
    ] {
        let port = tls_server_with(&pki, versions).await;
        let (_dir, checks) = load(
            &format!(
                r#"[[check]]
name = "private"
url = "https://127.0.0.1:{port}/"
ca_file = "private-ca.pem"
server_name = "support.test"
timeout = "3s"
conditions = ["[STATUS] == 200", "[BODY] == private"]
"#
            ),
            &[("private-ca.pem", &pki.ca_pem)],
        );
        let o = run(&checks[0]).await;
        assert!(o.success, "{expect}: {o:?}");
        assert_eq!(o.tls.as_ref().map(|t| t.version.as_str()), Some(expect));
    }
}

/// What a loopback peer that serves only one source address speaks to the peers it serves.
#[derive(Clone, Copy)]
enum Speaks {
    /// Reads a request head, answers 200 `ok`.
    Http,
    /// Says one line at once.
    Line,
    /// A mail intake: banner, then 250 to EHLO and 221 to QUIT.
    Smtp,
}

/// A server on 127.0.0.1 that looks at the peer address of every accepted connection: a peer
/// from `allowed` is served as `speaks` says; any other is closed at once, unanswered, as a
/// firewall rule on the source would. Returns its port and the sources it saw, in order.
async fn serving_only(
    allowed: std::net::IpAddr,
    speaks: Speaks,
) -> (u16, Arc<std::sync::Mutex<Vec<std::net::IpAddr>>>) {
    let l = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, peer)) = l.accept().await {
            log.lock().expect("log").push(peer.ip());
            if peer.ip() != allowed {
                drop(s);
                continue;
            }
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(s);
                let mut line = String::new();
                match speaks {
                    Speaks::Http => {
                        use tokio::io::AsyncBufReadExt;
                        while r.read_line(&mut line).await.unwrap_or(0) > 2 {
                            line.clear();
                        }
                        let _ = r
                            .get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                    }
                    Speaks::Line => {
                        let _ = r.get_mut().write_all(b"hello from the only source\n").await;
                    }
                    Speaks::Smtp => {
                        use tokio::io::AsyncBufReadExt;
                        let _ = r
                            .get_mut()
                            .write_all(b"220 mx.support.test ESMTP\r\n")
                            .await;
                        while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                            let answer: &[u8] = if line.to_ascii_uppercase().starts_with("QUIT") {
                                b"221 bye\r\n"
                            } else {
                                b"250 mx.support.test\r\n"
                            };
                            let _ = r.get_mut().write_all(answer).await;
                            line.clear();
                        }
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Acceptance 1 of issue 15 needs each node to probe from its own address: a target that
/// serves only 127.0.0.3 is reached with `source_address = "127.0.0.3"` and refused with
/// `"127.0.0.2"`, for http, tcp and smtp checks; the server saw exactly those sources.
#[tokio::test]
async fn source_address_is_the_address_the_target_sees() {
    let only: std::net::IpAddr = "127.0.0.3".parse().expect("ip");
    let (http, http_seen) = serving_only(only, Speaks::Http).await;
    let (tcp, tcp_seen) = serving_only(only, Speaks::Line).await;
    let (smtp, smtp_seen) = serving_only(only, Speaks::Smtp).await;
    let checks = |from: &str| {
        format!(
            r#"[[check]]
name = "http-from-{from}"
url = "http://127.0.0.1:{http}/"
source_address = "{from}"
conditions = ["[STATUS] == 200"]
timeout = "3s"

[[check]]
name = "smtp-from-{from}"
kind = "smtp"
target = "127.0.0.1:{smtp}"
starttls = false
source_address = "{from}"
timeout = "3s"

[[check]]
name = "tcp-from-{from}"
kind = "tcp"
target = "127.0.0.1:{tcp}"
expect = "only source"
source_address = "{from}"
timeout = "3s"
"#
        )
    };
    let (_dir, allowed) = load(&checks("127.0.0.3"), &[]);
    let (_dir2, refused) = load(&checks("127.0.0.2"), &[]);
    for c in &allowed {
        let o = run(c).await;
        assert!(o.success, "{} from 127.0.0.3: {o:?}", c.name);
    }
    for c in &refused {
        let o = run(c).await;
        assert!(!o.success, "{} from 127.0.0.2 must fail: {o:?}", c.name);
        assert_ne!(
            o.error.as_ref().map(|e| e.class),
            Some(ErrorClass::Local),
            "the target refused, not this machine: {o:?}"
        );
    }
    for (kind, seen) in [("http", http_seen), ("tcp", tcp_seen), ("smtp", smtp_seen)] {
        let seen = seen.lock().expect("seen").clone();
        let want: Vec<std::net::IpAddr> = vec![only, "127.0.0.2".parse().expect("ip")];
        assert_eq!(seen, want, "{kind}: the sources the server saw");
    }
}

/// A source address this host does not have is this machine's problem (`local`, which the
/// daemon counts as no outcome), named in the message; never a failure of the target.
#[tokio::test]
async fn a_source_address_not_on_this_host_is_a_local_error() {
    let (port, seen) = serving_only("127.0.0.1".parse().expect("ip"), Speaks::Line).await;
    let (_dir, checks) = load(
        &format!(
            r#"[[check]]
name = "http-from-elsewhere"
url = "http://127.0.0.1:{port}/"
source_address = "192.0.2.77"
timeout = "3s"

[[check]]
name = "tcp-from-elsewhere"
kind = "tcp"
target = "127.0.0.1:{port}"
source_address = "192.0.2.77"
timeout = "3s"
"#
        ),
        &[],
    );
    for c in &checks {
        let o = run(c).await;
        assert!(!o.success, "{o:?}");
        assert_eq!(
            o.error.as_ref().map(|e| e.class),
            Some(ErrorClass::Local),
            "{o:?}"
        );
        assert!(message(&o).contains("192.0.2.77"), "{}", message(&o));
    }
    assert!(
        seen.lock().expect("seen").is_empty(),
        "nothing left this host"
    );
}

/// A DNS query leaves from `source_address` too: a server answering only 127.0.0.3 answers
/// the check that asks from there, and the other times out.
#[tokio::test]
async fn dns_queries_leave_from_source_address() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = sock.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            if peer.ip() != std::net::IpAddr::from([127, 0, 0, 3]) || n < 12 {
                continue;
            }
            // The question echoed back as an answerless NOERROR reply.
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80;
            let _ = sock.send_to(&reply, peer).await;
        }
    });
    let (_dir, checks) = load(
        &format!(
            r#"[[check]]
name = "a-dns-from-3"
kind = "dns"
target = "127.0.0.1:{port}"
query_name = "support.test"
source_address = "127.0.0.3"
timeout = "2s"

[[check]]
name = "b-dns-from-2"
kind = "dns"
target = "127.0.0.1:{port}"
query_name = "support.test"
source_address = "127.0.0.2"
timeout = "1s"
"#
        ),
        &[],
    );
    let o = run(&checks[0]).await;
    assert!(o.success, "{o:?}");
    let o = run(&checks[1]).await;
    assert!(!o.success, "{o:?}");
}
