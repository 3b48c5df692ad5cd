//! `kind = "tcp"`: connect to `host:port` (with TLS when `tls = true`), optionally send a line,
//! and check the reply by text or regex. `kind = "tls"` (`tls.rs`) is the same probe over TLS.

use super::{Kind, Loader, Source};
use crate::config::{CheckKind, TcpCheck};
use crate::lang::condition::Condition;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"tcp"`.
    pub kind: Option<Spanned<String>>,
    /// `host:port`.
    pub target: Option<Spanned<String>>,
    /// Sent after connecting.
    pub send: Option<String>,
    /// Text the reply must contain.
    pub expect: Option<String>,
    /// A regular expression the reply must match.
    pub expect_regex: Option<Spanned<String>>,
    /// TLS on connect. Default `false`.
    pub tls: Option<bool>,
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

/// What a tcp or tls check is made of, once read.
pub(super) struct TcpParts<'r> {
    pub(super) kind: Kind,
    pub(super) name: &'r Spanned<String>,
    pub(super) target: Option<&'r Spanned<String>>,
    pub(super) send: Option<String>,
    pub(super) expect: Option<String>,
    pub(super) expect_regex: Option<&'r Spanned<String>>,
    pub(super) tls: bool,
    pub(super) insecure: Option<bool>,
    pub(super) conditions: &'r [Spanned<String>],
}

impl Loader {
    pub(super) fn tcp_check(
        &mut self,
        source: &Source<'_>,
        raw: RawTcpCheck,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let net = super::net::net_fields!(raw);
        let parts = TcpParts {
            kind: Kind::Tcp,
            name: &raw.name,
            target: raw.target.as_ref(),
            send: raw.send.clone(),
            expect: raw.expect.clone(),
            expect_regex: raw.expect_regex.as_ref(),
            tls: raw.tls.unwrap_or(false),
            insecure: raw.insecure,
            conditions: &raw.conditions,
        };
        self.connect_check(source, parts, &net)
    }

    /// The validation tcp and tls checks share.
    pub(super) fn connect_check(
        &mut self,
        source: &Source<'_>,
        raw: TcpParts<'_>,
        net: &super::net::NetFields<'_>,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let target = self.target(source, raw.name, raw.kind, raw.target);
        let conditions = self.conditions(source, "", raw.conditions);
        let net = self.validate_net(source, net);
        let expect_regex = match raw.expect_regex {
            None => Some(None),
            Some(r) => match regex::bytes::Regex::new(r.get_ref()) {
                Ok(re) => Some(Some(re)),
                Err(e) => {
                    let why = match &e {
                        regex::Error::Syntax(s) => s
                            .lines()
                            .last()
                            .unwrap_or(s)
                            .trim()
                            .trim_start_matches("error: ")
                            .to_string(),
                        other => other.to_string(),
                    };
                    let message = format!("expect_regex: bad regex `{}`: {why}", r.get_ref());
                    self.report_at(source, r, message);
                    None
                }
            },
        };
        let (host, port) = target?;
        let kind = CheckKind::Tcp(TcpCheck {
            host,
            port,
            send: raw.send,
            expect: raw.expect,
            expect_regex: expect_regex?,
            tls: raw.tls,
            insecure: raw.insecure.unwrap_or(false),
            net: net?,
        });
        Some((kind, conditions?))
    }
}
