//! `kind = "dns"`: one query to a given server (by address), its rcode and answers checked.

use super::{Kind, Loader, Source};
use crate::config::{CheckKind, DnsCheck};
use crate::lang::condition::Condition;
use crate::lang::dns::{type_number, RCODES, TYPES};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"dns"`.
    pub kind: Option<Spanned<String>>,
    /// The DNS server's `ip:port`.
    pub target: Option<Spanned<String>>,
    /// The name asked for.
    pub query_name: Option<String>,
    /// `A` (default), `AAAA`, `CNAME`, `MX`, `NS`, `SOA`, `TXT`.
    pub query_type: Option<Spanned<String>>,
    /// `NOERROR` (default), `NXDOMAIN`, ...
    pub expect_rcode: Option<Spanned<String>>,
    /// Answers that must all be present.
    pub expect_answers: Option<Vec<String>>,
    /// The local address to query from (an IPv4 or IPv6 address of this host); default
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
    pub(super) fn dns_check(
        &mut self,
        source: &Source<'_>,
        raw: RawDnsCheck,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let mut ok = true;
        let target = self.target(source, &raw.name, Kind::Dns, raw.target.as_ref());
        let server = match &target {
            Some((host, _)) => match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    // The server is given by address: resolving it would need DNS itself.
                    let message =
                        format!("target: the DNS server must be an IP address, not \"{host}\"");
                    self.report_at(source, &raw.name, message);
                    None
                }
            },
            None => None,
        };
        let qtype = match &raw.query_type {
            None => Some(1),
            Some(t) => match type_number(t.get_ref()) {
                Some(n) => Some(n),
                None => {
                    let names: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
                    let message = format!(
                        "query_type \"{}\" is not one of {}",
                        t.get_ref(),
                        names.join(", ")
                    );
                    self.report_at(source, t, message);
                    None
                }
            },
        };
        let expect_rcode = match &raw.expect_rcode {
            None => Some("NOERROR".to_string()),
            Some(r) if RCODES.contains(&r.get_ref().to_ascii_uppercase().as_str()) => {
                Some(r.get_ref().to_ascii_uppercase())
            }
            Some(r) => {
                let message = format!(
                    "expect_rcode \"{}\" is not one of {}",
                    r.get_ref(),
                    RCODES.join(", ")
                );
                self.report_at(source, r, message);
                None
            }
        };
        if raw.query_name.as_deref().is_none_or(str::is_empty) {
            let message = format!(
                "check \"{}\" of kind \"dns\" needs a query_name",
                raw.name.get_ref()
            );
            self.report_at(source, &raw.name, message);
            ok = false;
        }
        let source_address = match &raw.source_address {
            None => Some(None),
            Some(a) => match (self.source_address(source, a), server) {
                (Some(from), Some(to)) if from.is_ipv4() != to.is_ipv4() => {
                    let message = format!(
                        "source_address {from} cannot reach the DNS server {to}: one is IPv4, the other IPv6"
                    );
                    self.report_at(source, a, message);
                    None
                }
                (Some(from), _) => Some(Some(from)),
                (None, _) => None,
            },
        };
        let conditions = self.conditions(source, "", &raw.conditions);
        if !ok {
            return None;
        }
        let (_, port) = target?;
        let kind = CheckKind::Dns(DnsCheck {
            server: server?,
            port,
            name: raw.query_name.filter(|n| !n.is_empty())?,
            qtype: qtype?,
            expect_rcode: expect_rcode?,
            expect_answers: raw.expect_answers.unwrap_or_default(),
            source_address: source_address?,
        });
        Some((kind, conditions?))
    }
}
