//! `kind = "tls"`: a tcp check over TLS (the handshake, certificate facts, then the same
//! optional send and expected reply).

use super::tcp::TcpParts;
use super::{Kind, Loader, Source};
use crate::config::CheckKind;
use crate::lang::condition::Condition;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"tls"`.
    pub kind: Option<Spanned<String>>,
    /// `host:port`.
    pub target: Option<Spanned<String>>,
    /// Sent after the handshake.
    pub send: Option<String>,
    /// Text the reply must contain.
    pub expect: Option<String>,
    /// A regular expression the reply must match.
    pub expect_regex: Option<Spanned<String>>,
    /// Skip certificate verification. Default `false`.
    pub insecure: Option<bool>,
    /// PEM file of the CAs to trust instead of the webpki roots, relative to this file.
    pub ca_file: Option<Spanned<String>>,
    /// TLS server name (SNI and verification) instead of the host's.
    pub server_name: Option<Spanned<String>>,
    /// `"any"` (default), `"4"`, `"6"`, `"prefer4"` or `"prefer6"`.
    pub ip_version: Option<Spanned<String>>,
    /// The local address to connect from (an IPv4 or IPv6 address of this host); default
    /// `[defaults] source_address`, else the system's choice.
    pub source_address: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Confirmation re-probes while the check is suspect.
    pub retry_interval: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    /// `"adaptive"` or `"fixed"`; default from `[defaults]`.
    pub confirmation: Option<Spanned<String>>,
    /// Without conditions, the kind's own checks decide success.
    #[serde(default)]
    pub conditions: Vec<Spanned<String>>,
}

impl Loader {
    pub(super) fn tls_check(
        &mut self,
        source: &Source<'_>,
        raw: RawTlsCheck,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let net = super::net::net_fields!(raw);
        let parts = TcpParts {
            kind: Kind::Tls,
            name: &raw.name,
            target: raw.target.as_ref(),
            send: raw.send.clone(),
            expect: raw.expect.clone(),
            expect_regex: raw.expect_regex.as_ref(),
            tls: true,
            insecure: raw.insecure,
            conditions: &raw.conditions,
        };
        self.connect_check(source, parts, &net)
    }
}
