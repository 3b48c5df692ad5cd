//! `kind = "smtp"`: the mail intake (220 banner, EHLO, STARTTLS offered and negotiated, or implicit TLS).

use super::{Kind, Loader, Source};
use crate::config::{CheckKind, SmtpCheck};
use crate::lang::condition::Condition;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtpCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"smtp"`.
    pub kind: Option<Spanned<String>>,
    /// `host:port`.
    pub target: Option<Spanned<String>>,
    /// Implicit TLS on connect (port 465). Default `false`.
    pub tls: Option<bool>,
    /// Require and negotiate STARTTLS. Default `true`.
    pub starttls: Option<bool>,
    /// Name sent with EHLO. Default `switchboard.invalid`.
    pub ehlo: Option<String>,
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
    pub(super) fn smtp_check(
        &mut self,
        source: &Source<'_>,
        raw: RawSmtpCheck,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let target = self.target(source, &raw.name, Kind::Smtp, raw.target.as_ref());
        let conditions = self.conditions(source, "", &raw.conditions);
        let net = self.validate_net(source, &super::net::net_fields!(raw));
        let (host, port) = target?;
        let kind = CheckKind::Smtp(SmtpCheck {
            host,
            port,
            starttls: raw.starttls.unwrap_or(true),
            tls: raw.tls.unwrap_or(false),
            insecure: raw.insecure.unwrap_or(false),
            ehlo: raw
                .ehlo
                .unwrap_or_else(|| "switchboard.invalid".to_string()),
            net: net?,
        });
        Some((kind, conditions?))
    }
}
