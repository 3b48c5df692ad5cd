//! Certificates and server configs for the tests that play a TLS server: rcgen makes the
//! certificate, rustls (ring) serves it without asking for a client certificate.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, SupportedProtocolVersion};
use std::future::Future;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// (year, month, day).
pub type Ymd = (i32, u8, u8);

/// A certificate and its private key, as a server presents them.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// A certificate rcgen made (self-signed, or signed by a test CA) with its key.
    pub fn from_rcgen(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Identity {
        Identity {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// A fresh self-signed certificate for `names` (DNS names or IP addresses).
pub fn self_signed(names: &[&str]) -> Identity {
    certificate(names, None)
}

/// A fresh self-signed certificate for `names`, valid from `not_before` to `not_after` (rcgen's
/// defaults when `None`).
pub fn certificate(names: &[&str], validity: Option<(Ymd, Ymd)>) -> Identity {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("certificate params");
    if let Some(((y0, m0, d0), (y1, m1, d1))) = validity {
        params.not_before = rcgen::date_time_ymd(y0, m0, d0);
        params.not_after = rcgen::date_time_ymd(y1, m1, d1);
    }
    let key = rcgen::KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    Identity::from_rcgen(&cert, &key)
}

/// A server config presenting `identity` over the given TLS versions
/// (`rustls::DEFAULT_VERSIONS`: 1.3 and 1.2).
pub fn server_config(
    identity: Identity,
    versions: &[&'static SupportedProtocolVersion],
) -> ServerConfig {
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert], identity.key)
        .expect("server config")
}

/// A tokio acceptor presenting `identity` over TLS 1.3 and 1.2.
pub fn acceptor(identity: Identity) -> TlsAcceptor {
    TlsAcceptor::from(Arc::new(server_config(identity, rustls::DEFAULT_VERSIONS)))
}

/// Serves TLS through `acceptor` on a port of 127.0.0.1, handing every connection whose
/// handshake completes to `handler` (one task each); returns the port.
pub async fn serve<F, Fut>(acceptor: TlsAcceptor, handler: F) -> u16
where
    F: Fn(TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                // A client that rejects the certificate aborts the handshake: nothing to serve.
                if let Ok(tls) = acceptor.accept(stream).await {
                    handler(tls).await;
                }
            });
        }
    });
    port
}
