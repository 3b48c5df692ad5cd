//! HTTP probe against real local servers on 127.0.0.1, friendly and hostile.
//!
//! Servers speak raw HTTP by hand over tokio sockets so they can misbehave exactly: hang, trickle,
//! flood, lie, reset. Assertions are about classes, ordering and bounds, never tight durations,
//! so the tests hold on a slow, shared machine.

use crate::support::check::{self, class, SLACK};
use crate::support::http as peer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard::probe::ErrorClass;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// For tests that wait for the timeout on purpose.
const SHORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves every accepted connection on 127.0.0.1 with `handler`; returns the address.
async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    });
    addr
}

/// Answers every request with a fixed response.
async fn fixed(response: &'static str) -> SocketAddr {
    serve(move |mut s| async move {
        let _ = peer::read_async(&mut s).await;
        let _ = s.write_all(response.as_bytes()).await;
        let _ = s.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn ok_200_is_success_with_measured_phases() {
    let addr = fixed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
    // `localhost` so that the resolve phase really happens (answered from /etc/hosts; if it
    // lists ::1 first, the probe falls back to 127.0.0.1).
    let o =
        check::run(&check::http(&format!("http://localhost:{}/form", addr.port())).spec()).await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.error, None);
    assert_eq!(o.status, Some(200));
    assert_eq!(o.http_version, Some(1.1));
    assert_eq!(o.content_length, 5);
    assert!(!o.body_truncated);
    assert_eq!(o.redirects, 0);
    assert_eq!(o.check, "test-check");
    assert!(o.tls.is_none());
    let p = o.phases;
    assert!(p.resolve > Duration::ZERO, "{p:?}");
    assert!(p.connect > Duration::ZERO, "{p:?}");
    assert!(p.processing > Duration::ZERO, "{p:?}");
    assert_eq!(p.tls, Duration::ZERO);
    assert!(p.resolve + p.connect + p.processing + p.transfer <= o.duration);
}

#[tokio::test]
async fn ip_literal_skips_resolve() {
    let addr = fixed("HTTP/1.1 204 No Content\r\n\r\n").await;
    let o = check::run(&check::http(&format!("http://{addr}/")).spec()).await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.status, Some(204));
    assert_eq!(o.phases.resolve, Duration::ZERO);
}

#[tokio::test]
async fn status_500_is_failure_without_conditions() {
    let addr = fixed("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops").await;
    let o = check::run(&check::http(&format!("http://{addr}/")).spec()).await;
    assert!(!o.success);
    assert_eq!(o.status, Some(500));
    assert_eq!(class(&o), Some(ErrorClass::Conditions));
    assert!(o.error.unwrap().message.contains("500"));
}

#[tokio::test]
async fn connection_refused_is_connect_error() {
    // Bind to learn a free port, then close it so nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let o = check::run(&check::http(&format!("http://{addr}/")).spec()).await;
    assert!(!o.success);
    assert_eq!(class(&o), Some(ErrorClass::Connect), "{o:?}");
    assert_eq!(o.status, None);
    assert!(o.error.unwrap().message.contains(&addr.to_string()));
}

#[tokio::test]
async fn server_that_never_answers_times_out_within_the_timeout() {
    let addr = serve(|s| async move {
        // Hold the connection open and say nothing.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(s);
    })
    .await;
    let check = check::http(&format!("http://{addr}/"))
        .timeout(SHORT_TIMEOUT)
        .spec();
    let o = check::run(&check).await;
    assert!(!o.success);
    assert_eq!(class(&o), Some(ErrorClass::Timeout), "{o:?}");
    assert!(o.duration >= SHORT_TIMEOUT);
    assert!(o.duration < SHORT_TIMEOUT + SLACK);
    assert!(
        o.error.as_ref().unwrap().message.contains("processing"),
        "{o:?}"
    );
    // The wait is charged to the phase it happened in.
    assert!(o.phases.processing >= SHORT_TIMEOUT / 2, "{:?}", o.phases);
}

#[tokio::test]
async fn slow_loris_body_times_out_keeping_status() {
    let addr = serve(|mut s| async move {
        let _ = peer::read_async(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            .await;
        for _ in 0..1000 {
            if s.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let check = check::http(&format!("http://{addr}/"))
        .timeout(SHORT_TIMEOUT)
        .spec();
    let o = check::run(&check).await;
    assert_eq!(class(&o), Some(ErrorClass::Timeout), "{o:?}");
    assert_eq!(o.status, Some(200), "the head arrived before the timeout");
    assert!(
        o.error.as_ref().unwrap().message.contains("transfer"),
        "{o:?}"
    );
    assert!(o.phases.transfer > Duration::ZERO);
    assert!(o.duration < SHORT_TIMEOUT + SLACK);
}

#[tokio::test]
async fn huge_body_is_read_only_up_to_the_cap() {
    const ANNOUNCED: u64 = 100 * 1024 * 1024;
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (w, d) = (written.clone(), done.clone());
    let addr = serve(move |mut s| {
        let (written, done) = (w.clone(), d.clone());
        async move {
            let _ = peer::read_async(&mut s).await;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {ANNOUNCED}\r\n\r\n");
            let _ = s.write_all(head.as_bytes()).await;
            let chunk = vec![b'a'; 64 * 1024];
            while written.load(Ordering::Relaxed) < ANNOUNCED {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
                written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            done.store(true, Ordering::Relaxed);
        }
    })
    .await;
    let check = check::http(&format!("http://{addr}/"))
        .with_http(|h| h.max_body_bytes = 1 << 20)
        .spec();
    let o = check::run(&check).await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.content_length, 1 << 20);
    assert!(o.body_truncated);
    // The probe hung up once it had enough: the server's writes fail long before 100 MiB.
    for _ in 0..100 {
        if done.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done.load(Ordering::Relaxed), "server still writing");
    assert!(written.load(Ordering::Relaxed) < ANNOUNCED / 4);
}

#[tokio::test]
async fn body_exactly_at_the_cap_is_not_truncated() {
    let addr = fixed("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n12345678").await;
    let o = check::run(
        &check::http(&format!("http://{addr}/"))
            .with_http(|h| h.max_body_bytes = 8)
            .spec(),
    )
    .await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.content_length, 8);
    assert!(!o.body_truncated);
}

#[tokio::test]
async fn redirect_loop_is_too_many_redirects() {
    let addr = fixed("HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n").await;
    let o = check::run(
        &check::http(&format!("http://{addr}/"))
            .with_http(|h| h.max_redirects = 3)
            .spec(),
    )
    .await;
    assert!(!o.success);
    assert_eq!(class(&o), Some(ErrorClass::TooManyRedirects), "{o:?}");
    assert_eq!(o.redirects, 3);
    assert_eq!(o.status, Some(302));
}

/// Redirects `/start` to `/final` (302), which answers 200 with the method it saw.
async fn redirecting_server() -> SocketAddr {
    serve(|mut s| async move {
        let req = peer::read_async(&mut s).await.unwrap_or_default();
        let response = if req.path == "/start" {
            "HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 0\r\n\r\n".to_string()
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                req.method.len(),
                req.method
            )
        };
        let _ = s.write_all(response.as_bytes()).await;
    })
    .await
}

#[tokio::test]
async fn redirect_is_followed_to_the_final_response() {
    let addr = redirecting_server().await;
    let o = check::run(&check::http(&format!("http://{addr}/start")).spec()).await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.status, Some(200));
    assert_eq!(o.redirects, 1);
    assert_eq!(o.content_length, 3, "GET");
}

#[tokio::test]
async fn post_redirected_by_302_becomes_get() {
    let addr = redirecting_server().await;
    let check = check::http(&format!("http://{addr}/start"))
        .with_http(|h| {
            h.method = "POST".to_string();
            h.body = Some("a=1".to_string());
        })
        .spec();
    let o = check::run(&check).await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.content_length, 3, "the final request was a GET");
}

#[tokio::test]
async fn max_redirects_zero_reports_the_redirect_itself() {
    let addr = redirecting_server().await;
    let o = check::run(
        &check::http(&format!("http://{addr}/start"))
            .with_http(|h| h.max_redirects = 0)
            .spec(),
    )
    .await;
    assert!(o.success, "a 302 is within 200..=399: {o:?}");
    assert_eq!(o.status, Some(302));
    assert_eq!(o.redirects, 0);
}

#[tokio::test]
async fn garbage_response_is_protocol_error() {
    let addr = fixed("SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 this is not http\r\n\r\n").await;
    let o = check::run(&check::http(&format!("http://{addr}/")).spec()).await;
    assert!(!o.success);
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
    assert_eq!(o.status, None);
}

#[tokio::test]
async fn connection_reset_mid_body_is_a_failure() {
    let addr = serve(|mut s| async move {
        let _ = peer::read_async(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Zero linger makes close send RST instead of FIN.
        let _ = s.set_zero_linger();
        drop(s);
    })
    .await;
    let o = check::run(&check::http(&format!("http://{addr}/")).spec()).await;
    assert!(!o.success, "{o:?}");
    assert_eq!(class(&o), Some(ErrorClass::Protocol), "{o:?}");
    assert_eq!(o.status, Some(200));
}

#[tokio::test]
async fn method_headers_and_body_are_sent_as_configured() {
    let (tx, rx) = tokio::sync::oneshot::channel::<peer::Request>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let addr = serve(move |mut s| {
        let tx = tx.clone();
        async move {
            let req = peer::read_async(&mut s).await.unwrap_or_default();
            let _ = s
                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .await;
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(req);
            }
        }
    })
    .await;
    let check = check::http(&format!("http://{addr}/api/tickets?canary=1"))
        .with_http(|h| {
            h.method = "POST".to_string();
            h.headers = vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("X-Canary".to_string(), "yes".to_string()),
            ];
            h.body = Some(r#"{"subject":"canary"}"#.to_string());
        })
        .spec();
    let o = check::run(&check).await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.status, Some(201));
    let req = rx.await.expect("server saw the request");
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/tickets?canary=1");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-canary"), Some("yes"));
    assert_eq!(req.header("host"), Some(addr.to_string().as_str()));
    let ua = req.header("user-agent").unwrap_or_default();
    assert!(ua.starts_with("Switchboard/"), "{ua}");
    assert_eq!(req.body, br#"{"subject":"canary"}"#);
}

#[tokio::test]
async fn outcome_json_uses_contract_field_names() {
    let addr = fixed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    let o = check::run(&check::http(&format!("http://{addr}/")).spec()).await;
    let json = serde_json::to_value(&o).unwrap();
    for key in check::OUTCOME_FIELDS {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(json["phases"][phase].is_f64(), "phase {phase} in {json}");
    }
}

mod tls {
    //! HTTPS targets with a self-signed certificate generated per test.

    use super::*;
    use crate::support::tls as support_tls;
    use rustls::pki_types::CertificateDer;
    use tokio_rustls::TlsAcceptor;

    struct TlsServer {
        addr: SocketAddr,
        /// `notAfter` of the served certificate, Unix seconds.
        not_after: i64,
    }

    /// An HTTPS server for `localhost` with a fresh self-signed certificate, speaking HTTP/1.1.
    async fn tls_server(versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsServer {
        tls_server_with(support_tls::self_signed(&["localhost"]), versions).await
    }

    async fn tls_server_with(
        identity: support_tls::Identity,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsServer {
        let not_after = x509_not_after(&identity.cert);
        let mut config = support_tls::server_config(identity, versions);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let addr = serve(move |s| {
            let acceptor = acceptor.clone();
            async move {
                // A client that rejects the certificate aborts the handshake: nothing to serve.
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let _ = peer::read_async(&mut s).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = s.shutdown().await;
            }
        })
        .await;
        TlsServer { addr, not_after }
    }

    fn x509_not_after(cert: &CertificateDer<'_>) -> i64 {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
        parsed.validity().not_after.timestamp()
    }

    /// An HTTPS server that offers only `h2` by ALPN and answers with HTTP/2: `/big` streams
    /// 10 MiB, anything else echoes `METHOD path?query` as the body.
    async fn h2_server() -> SocketAddr {
        let identity = support_tls::self_signed(&["localhost"]);
        let mut config = support_tls::server_config(identity, rustls::DEFAULT_VERSIONS);
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        serve(move |s| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    let response = hyper::Response::builder().status(200).body(()).unwrap();
                    let Ok(mut send) = respond.send_response(response, false) else {
                        return;
                    };
                    let uri = request.uri();
                    if uri.path() == "/big" {
                        tokio::spawn(async move {
                            let chunk = hyper::body::Bytes::from(vec![b'b'; 64 * 1024]);
                            for _ in 0..160 {
                                if send.send_data(chunk.clone(), false).is_err() {
                                    return;
                                }
                                tokio::task::yield_now().await;
                            }
                            let _ = send.send_data(hyper::body::Bytes::new(), true);
                        });
                    } else {
                        let echo = format!(
                            "{} {}",
                            request.method(),
                            uri.path_and_query().map_or("", |p| p.as_str())
                        );
                        let _ = send.send_data(echo.into(), true);
                    }
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn h2_is_used_when_alpn_negotiates_it() {
        let addr = h2_server().await;
        let url = format!("https://localhost:{}/h2?x=1", addr.port());
        let o = check::run(&check::http(&url).insecure(true).spec()).await;
        assert!(o.success, "{o:?}");
        assert_eq!(o.http_version, Some(2.0));
        assert_eq!(o.status, Some(200));
        assert_eq!(o.content_length, "GET /h2?x=1".len() as u64);
    }

    #[tokio::test]
    async fn h2_body_is_read_only_up_to_the_cap() {
        let addr = h2_server().await;
        let url = format!("https://localhost:{}/big", addr.port());
        let o = check::run(
            &check::http(&url)
                .with_http(|h| {
                    h.insecure = true;
                    h.max_body_bytes = 100_000;
                })
                .spec(),
        )
        .await;
        assert!(o.success, "{o:?}");
        assert_eq!(o.content_length, 100_000);
        assert!(o.body_truncated);
    }

    #[tokio::test]
    async fn self_signed_certificate_fails_verification_by_default() {
        let server = tls_server(rustls::DEFAULT_VERSIONS).await;
        let url = format!("https://localhost:{}/", server.addr.port());
        let o = check::run(&check::http(&url).spec()).await;
        assert!(!o.success);
        assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
        assert_eq!(o.status, None);
        assert!(o.phases.tls > Duration::ZERO);
    }

    #[tokio::test]
    async fn insecure_accepts_self_signed_and_reports_tls() {
        let server = tls_server(rustls::DEFAULT_VERSIONS).await;
        let url = format!("https://localhost:{}/", server.addr.port());
        let o = check::run(&check::http(&url).insecure(true).spec()).await;
        assert!(o.success, "{o:?}");
        assert_eq!(o.status, Some(200));
        assert_eq!(o.http_version, Some(1.1), "ALPN chose http/1.1");
        let tls = o.tls.expect("TLS info");
        assert_eq!(tls.version, "TLS 1.3");
        assert_eq!(tls.earliest_cert_expiry, server.not_after);
        assert!(o.phases.tls > Duration::ZERO);
    }

    #[tokio::test]
    async fn expired_certificate_fails_by_default_and_shows_its_expiry_when_insecure() {
        let expired = support_tls::certificate(&["localhost"], Some(((2020, 1, 1), (2021, 1, 1))));
        let server = tls_server_with(expired, rustls::DEFAULT_VERSIONS).await;
        let url = format!("https://localhost:{}/", server.addr.port());
        let o = check::run(&check::http(&url).spec()).await;
        assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
        // With verification off the probe succeeds, and the expiry in the past is what
        // `[CERTIFICATE_EXPIRATION]` conditions and `probe_ssl_earliest_cert_expiry` alerts see.
        let o = check::run(&check::http(&url).insecure(true).spec()).await;
        assert!(o.success, "{o:?}");
        let expiry = o.tls.expect("TLS info").earliest_cert_expiry;
        assert_eq!(expiry, server.not_after);
        assert!(expiry < o.started_at.as_millis() / 1000);
    }

    #[tokio::test]
    async fn certificate_for_another_host_fails() {
        let other = support_tls::self_signed(&["support.example.com"]);
        let server = tls_server_with(other, rustls::DEFAULT_VERSIONS).await;
        let url = format!("https://localhost:{}/", server.addr.port());
        let o = check::run(&check::http(&url).spec()).await;
        assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
    }

    #[tokio::test]
    async fn tls_handshake_with_a_plain_http_server_is_a_tls_failure() {
        // Like nginx on a plain port: read what arrives (a ClientHello), answer 400, close.
        let addr = serve(|mut s| async move {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        })
        .await;
        let o =
            check::run(&check::http(&format!("https://localhost:{}/", addr.port())).spec()).await;
        assert_eq!(class(&o), Some(ErrorClass::Tls), "{o:?}");
    }

    #[tokio::test]
    async fn tls12_server_reports_tls_1_2() {
        let server = tls_server(&[&rustls::version::TLS12]).await;
        let url = format!("https://localhost:{}/", server.addr.port());
        let o = check::run(&check::http(&url).insecure(true).spec()).await;
        assert!(o.success, "{o:?}");
        assert_eq!(o.tls.expect("TLS info").version, "TLS 1.2");
    }
}

// ---- Tests with conditions.

#[tokio::test]
async fn failing_condition_names_the_resolved_condition() {
    let addr = fixed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
    let check = check::http(&format!("http://{addr}/"))
        .condition("[STATUS] == 200")
        .condition("[BODY] == pat(*request_subject*)")
        .spec();
    let o = check::run(&check).await;
    assert!(!o.success);
    assert_eq!(o.conditions.len(), 2);
    assert!(o.conditions[0].success);
    assert!(!o.conditions[1].success);
    let e = o.error.expect("error");
    assert_eq!(e.class, ErrorClass::Conditions);
    assert!(e.message.contains("[BODY]"), "{}", e.message);
}

#[tokio::test]
async fn network_error_fails_even_when_conditions_hold() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let check = check::http(&format!("http://{addr}/"))
        .condition("[CONNECTED] == false")
        .spec();
    let o = check::run(&check).await;
    assert!(!o.success);
    assert_eq!(class(&o), Some(ErrorClass::Connect));
}
