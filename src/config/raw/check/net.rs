//! The connection settings of the kinds that connect to a host (all but dns): `ip_version`,
//! `server_name`, `ca_file` (with `insecure`, which contradicts a `ca_file`) and
//! `source_address` (dns has that one too).

use super::{Loader, Source};
use crate::config::{CaBundle, IpVersion, NetOptions};
use sha2::Digest;
use std::net::IpAddr;
use std::path::Path;
use toml::Spanned;

/// The connection fields, borrowed from a kind's struct.
pub(super) struct NetFields<'r> {
    pub(super) ip_version: Option<&'r Spanned<String>>,
    pub(super) server_name: Option<&'r Spanned<String>>,
    pub(super) ca_file: Option<&'r Spanned<String>>,
    pub(super) insecure: Option<bool>,
    pub(super) source_address: Option<&'r Spanned<String>>,
}

/// `NetFields` of any kind's struct that has them: they all name these fields alike.
macro_rules! net_fields {
    ($raw:expr) => {
        $crate::config::raw::check::net::NetFields {
            ip_version: $raw.ip_version.as_ref(),
            server_name: $raw.server_name.as_ref(),
            ca_file: $raw.ca_file.as_ref(),
            insecure: $raw.insecure,
            source_address: $raw.source_address.as_ref(),
        }
    };
}
pub(super) use net_fields;

impl Loader {
    /// `ip_version`, `server_name` and `ca_file` (read and parsed now, so a missing or broken
    /// bundle is a config error rather than a failing probe). `None` after reporting.
    pub(super) fn validate_net(
        &mut self,
        source: &Source<'_>,
        raw: &NetFields<'_>,
    ) -> Option<NetOptions> {
        let mut ok = true;
        let ip_version = match raw.ip_version.map(|v| v.get_ref().as_str()) {
            None | Some("any") => IpVersion::Any,
            Some("4" | "ip4") => IpVersion::V4,
            Some("6" | "ip6") => IpVersion::V6,
            Some("prefer4") => IpVersion::Prefer4,
            Some("prefer6") => IpVersion::Prefer6,
            Some(other) => {
                let message = format!(
                    "ip_version must be \"any\", \"4\", \"6\", \"prefer4\" or \"prefer6\", not \"{other}\""
                );
                if let Some(v) = raw.ip_version {
                    self.report_at(source, v, message);
                }
                ok = false;
                IpVersion::Any
            }
        };
        let server_name = match raw.server_name {
            None => None,
            Some(n) => {
                if rustls::pki_types::ServerName::try_from(n.get_ref().as_str()).is_err() {
                    let message = format!(
                        "server_name: \"{}\" is not a DNS name or an IP address",
                        n.get_ref()
                    );
                    self.report_at(source, n, message);
                    ok = false;
                }
                Some(n.get_ref().clone())
            }
        };
        let ca = match raw.ca_file {
            None => None,
            Some(f) if raw.insecure == Some(true) => {
                // Trusting a named CA and trusting anything cannot both be meant.
                let message = format!(
                    "ca_file: \"{}\" and insecure = true contradict each other; remove one",
                    f.get_ref()
                );
                self.report_at(source, f, message);
                ok = false;
                None
            }
            Some(f) => {
                let base = source.path.parent().unwrap_or(Path::new(""));
                let path = base.join(f.get_ref());
                match self.ca_bundle(&path) {
                    Ok(certs) => Some(CaBundle {
                        path,
                        certs: std::sync::Arc::new(certs),
                    }),
                    Err(why) => {
                        self.report_at(source, f, format!("ca_file: \"{}\" {why}", f.get_ref()));
                        ok = false;
                        None
                    }
                }
            }
        };
        let source_address = match raw.source_address {
            None => None,
            Some(a) => match self.source_address(source, a) {
                Some(ip) if !fits(ip_version, ip) => {
                    let message = format!(
                        "source_address {ip} is an IPv{} address, but ip_version = \"{}\" connects over IPv{} only",
                        if ip.is_ipv4() { 4 } else { 6 },
                        ip_version.as_str(),
                        if ip.is_ipv4() { 6 } else { 4 },
                    );
                    self.report_at(source, a, message);
                    ok = false;
                    None
                }
                Some(ip) => Some(ip),
                None => {
                    ok = false;
                    None
                }
            },
        };
        ok.then_some(NetOptions {
            ip_version,
            server_name,
            ca,
            source_address,
        })
    }

    /// A `source_address`: one IPv4 or IPv6 address, not a name, a range or a broadcast or
    /// multicast address. `None` after reporting.
    pub(in crate::config::raw) fn source_address(
        &mut self,
        source: &Source<'_>,
        raw: &Spanned<String>,
    ) -> Option<IpAddr> {
        let text = raw.get_ref().trim();
        let problem = match text.parse::<IpAddr>() {
            Err(_) => "is not an IPv4 or IPv6 address",
            Ok(ip) if ip.is_multicast() => "is a multicast address",
            Ok(IpAddr::V4(v4)) if v4.is_broadcast() => "is the broadcast address",
            Ok(ip) => return Some(ip),
        };
        let message =
            format!("source_address: \"{text}\" {problem}; give one address of this host, such as \"192.0.2.10\" or \"2001:db8::10\"");
        self.report_at(source, raw, message);
        None
    }

    /// The DER certificates of a PEM file, each checked to be usable as a trust anchor.
    fn ca_bundle(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
        self.hasher.update(&bytes);
        self.files.add(&self.base, path, &bytes);
        let mut certs = Vec::new();
        for (n, cert) in crate::pem::certificates(&bytes)
            .map_err(|e| e.to_string())?
            .into_iter()
            .enumerate()
        {
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| format!("certificate {} is not a usable CA: {e}", n + 1))?;
            certs.push(cert.as_ref().to_vec());
        }
        Ok(certs)
    }
}

/// Whether a connection from `source` can honour `version`: an IPv4 source reaches IPv4
/// targets only, an IPv6 one IPv6 targets.
fn fits(version: IpVersion, source: IpAddr) -> bool {
    !matches!(
        (version, source),
        (IpVersion::V6, IpAddr::V4(_)) | (IpVersion::V4, IpAddr::V6(_))
    )
}
