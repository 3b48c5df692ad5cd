//! Reading PEM certificates (CA bundles) with rustls-pki-types' `PemObject`, with errors a
//! user can act on; the one PEM reader of the e-mail transport, the HTTP clients and the CLI.
//!
//! Each error reads as the end of a sentence that starts with the file's name
//! ("ca.pem holds no PEM certificate"), so callers put the path in front.

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::CertificateDer;
use std::path::Path;

/// Why a file gave no certificates.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot be read: {0}")]
    Read(#[source] std::io::Error),
    #[error("is not valid PEM: {0}")]
    Invalid(#[source] pem::Error),
    #[error("holds no PEM certificate")]
    NoCertificate,
}

/// Every `CERTIFICATE` section of `pem`, in order; other sections (keys, CRLs) are skipped.
/// At least one is required: a CA bundle without a certificate would trust nothing, which
/// is never what was meant.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::Invalid)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// [`certificates`] of the file at `path`.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = std::fs::read(path).map_err(PemError::Read)?;
    certificates(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate made for this test (any DER works: nothing verifies it here).
    fn cert_pem() -> String {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        cert.cert.pem()
    }

    #[test]
    fn every_certificate_of_a_bundle_is_read_and_other_sections_are_skipped() {
        let (a, b) = (cert_pem(), cert_pem());
        let bundle = format!(
            "{a}-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHx/\n-----END PRIVATE KEY-----\n{b}"
        );
        let certs = certificates(bundle.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_ne!(certs[0], certs[1]);
    }

    #[test]
    fn errors_say_what_is_wrong_with_the_file() {
        assert_eq!(
            certificates(b"not a certificate").unwrap_err().to_string(),
            "holds no PEM certificate"
        );
        let truncated = cert_pem().replace("-----END CERTIFICATE-----", "");
        let err = certificates(truncated.as_bytes()).unwrap_err().to_string();
        assert!(
            err.starts_with("is not valid PEM: missing section end"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = read_certificates(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot be read: "), "{err}");
        std::fs::write(dir.path().join("ca.pem"), cert_pem()).unwrap();
        assert_eq!(
            read_certificates(&dir.path().join("ca.pem")).unwrap().len(),
            1
        );
    }
}
