//! TLS client side shared by probes: cached rustls configs, a timed handshake, and what the peer presented.
//!
//! The `ClientConfig`s are built once per process because building one (root store, provider)
//! costs far more than a handshake's bookkeeping, and probe CPU is a product goal. Session
//! resumption is disabled so that every probe does a full handshake, as blackbox_exporter
//! does: a probe that resumes a session would measure a cheaper path than customers take.

use super::TlsInfo;
use crate::config::CaBundle;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::Host;

/// ALPN protocol id for HTTP/2.
const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id for HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a TLS session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The rustls configuration itself could not be built (should not happen with ring).
    #[error("TLS setup failed: {0}")]
    Config(String),
    /// The host cannot be used as a TLS server name.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// The handshake failed: certificate rejected, protocol mismatch, peer hung up.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
}

/// How to verify the peer: what a check's `insecure`, `ca_file` and `server_name` say.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings<'a> {
    /// Accept any certificate (explicit opt-in).
    pub insecure: bool,
    /// Trust exactly these CAs instead of the webpki roots.
    pub ca: Option<&'a CaBundle>,
    /// Send and verify this name instead of the host's.
    pub server_name: Option<&'a str>,
}

/// A finished handshake: the stream to speak HTTP over and what the peer showed.
pub struct Handshake<S> {
    pub stream: TlsStream<S>,
    pub info: TlsInfo,
    /// The server chose HTTP/2 by ALPN.
    pub h2: bool,
}

static VERIFYING: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
static INSECURE: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();

/// The shared client config: verifying against webpki-roots, or (`insecure`) accepting any certificate.
pub fn client_config(insecure: bool) -> Result<Arc<ClientConfig>, TlsError> {
    let cell = if insecure { &INSECURE } else { &VERIFYING };
    cell.get_or_init(|| build_config(insecure).map(Arc::new))
        .clone()
        .map_err(TlsError::Config)
}

/// Client configs for checks with their own `ca_file`, by the SHA-256 of the certificates:
/// built once per bundle like the shared ones, and kept across config reloads that do not
/// change the file.
static BY_CA: OnceLock<Mutex<HashMap<[u8; 32], Arc<ClientConfig>>>> = OnceLock::new();

/// Bundles kept at most; past that the cache starts over (a reload storm must not grow it).
const MAX_CA_CONFIGS: usize = 256;

/// The same configs by the bundle's allocation (`CaBundle::certs`, shared by every clone of
/// a loaded config), so that a probe finds its config without hashing the certificates: the
/// first probe of a check hashes, later ones look up a pointer. The `Weak` keeps the
/// allocation's address from being reused while the entry exists, so a hit is always the
/// same bundle; an entry whose bundle is gone (a reload dropped it) is simply stale.
type ByBundle = HashMap<usize, (Weak<Vec<Vec<u8>>>, Arc<ClientConfig>)>;
static BY_BUNDLE: OnceLock<Mutex<ByBundle>> = OnceLock::new();

/// The client config for `settings`: the shared ones, or one that trusts the check's CA bundle.
pub fn config_for(settings: &Settings<'_>) -> Result<Arc<ClientConfig>, TlsError> {
    let Some(ca) = settings.ca.filter(|_| !settings.insecure) else {
        return client_config(settings.insecure);
    };
    let by_bundle = BY_BUNDLE.get_or_init(Mutex::default);
    let ptr = Arc::as_ptr(&ca.certs) as usize;
    if let Some((weak, config)) = by_bundle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&ptr)
    {
        if weak.strong_count() > 0 {
            return Ok(config.clone());
        }
    }
    let config = config_by_hash(ca)?;
    let mut map = by_bundle.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_CA_CONFIGS {
        map.retain(|_, (weak, _)| weak.strong_count() > 0);
        if map.len() >= MAX_CA_CONFIGS {
            map.clear();
        }
    }
    map.insert(ptr, (Arc::downgrade(&ca.certs), config.clone()));
    Ok(config)
}

/// The config for `ca` by the SHA-256 of its certificates, built on first use.
fn config_by_hash(ca: &CaBundle) -> Result<Arc<ClientConfig>, TlsError> {
    let key: [u8; 32] = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for der in ca.certs.iter() {
            h.update((der.len() as u64).to_be_bytes());
            h.update(der);
        }
        h.finalize().into()
    };
    let cache = BY_CA.get_or_init(Mutex::default);
    if let Some(config) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(config.clone());
    }
    let mut roots = RootCertStore::empty();
    for der in ca.certs.iter() {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsError::Config(format!("{}: {e}", ca.path.display())))?;
    }
    let config = Arc::new(build_config_with(false, Some(roots)).map_err(TlsError::Config)?);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_CA_CONFIGS {
        map.clear();
    }
    map.insert(key, config.clone());
    Ok(config)
}

fn build_config(insecure: bool) -> Result<ClientConfig, String> {
    build_config_with(insecure, None)
}

/// ring's provider with AES-128-GCM/SHA-256 offered first, as Go's crypto/tls (and so
/// blackbox_exporter) does on machines with AES instructions. rustls's default offers
/// AES-256-GCM/SHA-384 first, and a server that honours the client's order then makes every
/// handshake hash with SHA-384, which has no hardware help where SHA-256 has (SHA-NI): a
/// measurable share of an HTTPS probe's CPU. The suites offered are the same, only the order.
fn probe_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut provider = ring::default_provider();
    let first = [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    let rest: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| !first.iter().any(|f| f.suite() == s.suite()))
        .copied()
        .collect();
    provider.cipher_suites = first.into_iter().chain(rest).collect();
    provider
}

/// `roots`: the trust anchors when verifying; `None` means the webpki roots.
fn build_config_with(insecure: bool, roots: Option<RootCertStore>) -> Result<ClientConfig, String> {
    // The provider is named explicitly so that no process-wide default has to be installed
    // (and no other crate's choice of provider can change what probes negotiate).
    let provider = Arc::new(probe_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let roots = roots.unwrap_or_else(|| RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RememberedChains::new(webpki)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// Runs a TLS handshake over `stream` for `host`, and reports version, ALPN and chain expiry.
pub async fn handshake<S>(
    stream: S,
    host: &Host<&str>,
    settings: &Settings<'_>,
) -> Result<Handshake<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = config_for(settings)?;
    let name = match settings.server_name {
        Some(name) => ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::ServerName(name.to_string()))?,
        None => server_name(host)?,
    };
    let stream = TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(TlsError::Handshake)?;
    let (_, conn) = stream.get_ref();
    let info = TlsInfo {
        version: version_name(conn.protocol_version()),
        earliest_cert_expiry: conn
            .peer_certificates()
            .and_then(earliest_expiry)
            // A chain none of whose certificates parse can only pass with `insecure`; report it
            // as long expired so that expiry alerts fire rather than stay silent.
            .unwrap_or(0),
    };
    let h2 = conn.alpn_protocol() == Some(ALPN_H2);
    Ok(Handshake { stream, info, h2 })
}

fn server_name(host: &Host<&str>) -> Result<ServerName<'static>, TlsError> {
    match host {
        Host::Domain(d) => {
            ServerName::try_from(d.to_string()).map_err(|_| TlsError::ServerName((*d).to_string()))
        }
        Host::Ipv4(ip) => Ok(ServerName::IpAddress((*ip).into())),
        Host::Ipv6(ip) => Ok(ServerName::IpAddress((*ip).into())),
    }
}

/// The names blackbox_exporter uses in `probe_tls_version_info{version}`.
pub fn version_name(version: Option<ProtocolVersion>) -> String {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(ProtocolVersion::TLSv1_1) => "TLS 1.1".to_string(),
        Some(ProtocolVersion::TLSv1_0) => "TLS 1.0".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    }
}

/// Earliest `notAfter` (Unix seconds) over the certificates that parse; `None` if none do.
pub fn earliest_expiry(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

/// Chains verified at most this long ago are taken as verified without checking their
/// signatures again (if still within every certificate's validity).
const REMEMBER_CHAIN: std::time::Duration = std::time::Duration::from_secs(3600);

/// Chains remembered at most; past that the memory starts over.
const MAX_REMEMBERED_CHAINS: usize = 4096;

/// A chain that verified: until when that verdict may be reused.
#[derive(Debug)]
struct Verified {
    /// The latest `notBefore` and earliest `notAfter` of the certificates presented (Unix
    /// seconds): outside that window the chain is verified again (and fails as expired).
    valid_from: u64,
    valid_until: u64,
    /// When it was verified, on the monotonic clock.
    at: std::time::Instant,
}

/// rustls's webpki verifier, remembering the chains it accepted. Verifying a chain (path
/// building and a signature check per certificate: for a private CA one ECDSA verification,
/// for a public chain two or three) gives the same answer every time for the same bytes, the
/// same trust anchors (fixed per config) and the same server name, except as time passes a
/// certificate's `notBefore` or `notAfter`; no revocation lists are configured. So a probe
/// that meets exactly the chain a previous probe verified, within every presented
/// certificate's validity and at most `REMEMBER_CHAIN` later, skips the signature checks.
/// The handshake signature (that the server holds the certificate's key) is checked on every
/// probe, and a chain that failed is never remembered: it is verified again each time.
#[derive(Debug)]
struct RememberedChains {
    inner: Arc<WebPkiServerVerifier>,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

impl RememberedChains {
    fn new(inner: Arc<WebPkiServerVerifier>) -> RememberedChains {
        RememberedChains {
            inner,
            verified: Mutex::default(),
        }
    }

    /// SHA-256 of the server name and every certificate, each length-prefixed.
    fn key(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
    ) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let name = server_name.to_str();
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        for der in std::iter::once(end_entity).chain(intermediates) {
            h.update((der.len() as u64).to_be_bytes());
            h.update(der.as_ref());
        }
        h.finalize().into()
    }
}

/// The validity window every one of `chain`'s certificates shares, in Unix seconds; `None`
/// when one does not parse (such a chain is never remembered).
fn shared_validity(chain: &[&CertificateDer<'_>]) -> Option<(u64, u64)> {
    let mut window = (0u64, u64::MAX);
    for der in chain {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let v = cert.validity();
        let from = u64::try_from(v.not_before.timestamp()).unwrap_or(0);
        let until = u64::try_from(v.not_after.timestamp()).ok()?;
        window = (window.0.max(from), window.1.min(until));
    }
    Some(window)
}

impl ServerCertVerifier for RememberedChains {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = Self::key(end_entity, intermediates, server_name);
        let secs = now.as_secs();
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = verified.get(&key) {
                if (v.valid_from..=v.valid_until).contains(&secs) && v.at.elapsed() < REMEMBER_CHAIN
                {
                    return Ok(ServerCertVerified::assertion());
                }
            }
        }
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let chain: Vec<&CertificateDer<'_>> =
            std::iter::once(end_entity).chain(intermediates).collect();
        if let Some((valid_from, valid_until)) = shared_validity(&chain) {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= MAX_REMEMBERED_CHAINS {
                verified.clear();
            }
            verified.insert(
                key,
                Verified {
                    valid_from,
                    valid_until,
                    at: std::time::Instant::now(),
                },
            );
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// Accepts any certificate chain: the explicit `insecure = true` opt-in.
///
/// Handshake signatures are still checked, so the peer must hold the key of the certificate it
/// sent; only the question "do we trust this certificate" is skipped.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_offer_aes128_sha256_first_and_drop_no_suite() {
        let ours = probe_provider().cipher_suites;
        let default = ring::default_provider().cipher_suites;
        assert_eq!(
            ours[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(ours.len(), default.len());
        for s in &default {
            assert!(
                ours.iter().any(|o| o.suite() == s.suite()),
                "{:?}",
                s.suite()
            );
        }
    }

    #[test]
    fn both_configs_build_and_offer_h2_then_http11() {
        for insecure in [false, true] {
            let config = client_config(insecure).expect("config builds");
            assert_eq!(
                config.alpn_protocols,
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            );
        }
    }

    /// A private CA and a leaf for 127.0.0.1 it signed, valid through the 2020s.
    fn chain() -> (RootCertStore, CertificateDer<'static>) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).expect("params");
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).expect("leaf");
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).expect("root");
        (roots, leaf.der().clone())
    }

    fn remembering(roots: RootCertStore) -> RememberedChains {
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(probe_provider()),
        )
        .build()
        .expect("verifier");
        RememberedChains::new(webpki)
    }

    /// January 2027, within the leaf's validity.
    const NOW: u64 = 1_800_000_000;
    /// January 2031, after it.
    const LATER: u64 = 1_925_000_000;

    #[test]
    fn a_verified_chain_is_remembered_only_within_its_validity_and_for_its_name() {
        let (roots, leaf) = chain();
        let v = remembering(roots);
        let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let at = |s| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
        v.verify_server_cert(&leaf, &[], &ip, &[], at(NOW))
            .expect("verifies");
        assert_eq!(v.verified.lock().unwrap().len(), 1, "remembered");
        v.verify_server_cert(&leaf, &[], &ip, &[], at(NOW + 60))
            .expect("still good");
        // Past its notAfter the memory does not apply: verified again, and it fails.
        let err = v
            .verify_server_cert(&leaf, &[], &ip, &[], at(LATER))
            .expect_err("expired");
        assert!(err.to_string().contains("expired"), "{err}");
        // Another name is another question: not answered from memory.
        let other = ServerName::try_from("example.org").expect("name");
        v.verify_server_cert(&leaf, &[], &other, &[], at(NOW))
            .expect_err("wrong name");
    }

    #[test]
    fn a_chain_that_failed_is_not_remembered() {
        let (_, leaf) = chain();
        let (other_roots, _) = chain();
        let v = remembering(other_roots);
        let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW));
        for _ in 0..2 {
            v.verify_server_cert(&leaf, &[], &ip, &[], at)
                .expect_err("signed by another CA");
        }
        assert!(v.verified.lock().unwrap().is_empty());
    }

    #[test]
    fn version_names_match_blackbox() {
        assert_eq!(version_name(Some(ProtocolVersion::TLSv1_3)), "TLS 1.3");
        assert_eq!(version_name(Some(ProtocolVersion::TLSv1_2)), "TLS 1.2");
    }

    #[test]
    fn earliest_expiry_of_unparseable_chain_is_none() {
        let junk = CertificateDer::from(vec![1u8, 2, 3]);
        assert_eq!(earliest_expiry(&[junk]), None);
    }
}
