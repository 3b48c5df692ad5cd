//! `[[check]]`: the kind is read first, then each check deserializes into its kind's own struct.
//!
//! Every kind has its own file with its struct (`deny_unknown_fields`, doc comments as the
//! reference) and its validation, all of the same shape: the settings every kind shares are
//! resolved here (`Settled`), the kind resolves the rest into its `CheckKind`. A field of
//! another kind is an unknown field of this one; its message says which kinds have it. The
//! field lists come from the structs themselves (`fields_of`), so no list is kept by hand.

mod browser;
mod dns;
mod heartbeat;
mod http;
mod mail_roundtrip;
mod net;
mod smtp;
mod steps;
mod tcp;
mod tls;
mod vendor_status;

pub use browser::{RawBrowser, RawBrowserCheck, RawBrowserStep};
pub use dns::RawDnsCheck;
pub use heartbeat::RawHeartbeatCheck;
pub use http::RawHttpCheck;
pub use mail_roundtrip::RawMailRoundtripCheck;
pub use smtp::RawSmtpCheck;
pub use steps::{RawStep, RawStepsCheck};
pub use tcp::RawTcpCheck;
pub use tls::RawTlsCheck;
pub use vendor_status::RawVendorStatusCheck;

use super::regions::RegionError;
use super::service::RawServiceFile;
use super::{timeout_message, Loader, Source, Unique};
use crate::config::{CheckSpec, Confirmation, Defaults, Role};
use crate::lang::condition::Condition;
use serde::de::{DeserializeOwned, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use std::time::Duration;
use toml::Spanned;

/// The kinds of check, as `kind = "..."` names them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum Kind {
    Http,
    Steps,
    Tcp,
    Tls,
    Smtp,
    Dns,
    #[strum(serialize = "vendor_status")]
    VendorStatus,
    Browser,
    #[strum(serialize = "mail_roundtrip")]
    MailRoundtrip,
    Heartbeat,
}

impl Kind {
    pub const ALL: &'static [Kind] = <Kind as strum::VariantArray>::VARIANTS;

    pub fn name(self) -> &'static str {
        self.into()
    }

    fn parse(name: &str) -> Option<Kind> {
        name.parse().ok()
    }

    /// "an http check", "a dns check": for messages.
    fn a_check(self) -> String {
        let article = if matches!(self, Kind::Http | Kind::Smtp) {
            "an"
        } else {
            "a"
        };
        format!("{article} {} check", self.name())
    }

    /// The fields this kind's struct accepts, in its order.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Http => fields_of::<RawHttpCheck>(),
            Kind::Steps => fields_of::<RawStepsCheck>(),
            Kind::Tcp => fields_of::<RawTcpCheck>(),
            Kind::Tls => fields_of::<RawTlsCheck>(),
            Kind::Smtp => fields_of::<RawSmtpCheck>(),
            Kind::Dns => fields_of::<RawDnsCheck>(),
            Kind::VendorStatus => fields_of::<RawVendorStatusCheck>(),
            Kind::Browser => fields_of::<RawBrowserCheck>(),
            Kind::MailRoundtrip => fields_of::<RawMailRoundtripCheck>(),
            Kind::Heartbeat => fields_of::<RawHeartbeatCheck>(),
        }
    }

    /// A clearer message than serde's for a field this kind does not have, when the field
    /// belongs elsewhere: on each step of a multi-step check, or to other kinds. `None` for a
    /// field no kind has (a typo), whose serde message lists this kind's fields.
    fn misplaced(self, field: &str) -> Option<String> {
        if self == Kind::Steps && fields_of::<RawStep>().contains(&field) {
            return Some(format!(
                "`{field}` is not a field of a steps check: it belongs on each [[check.step]]"
            ));
        }
        let owners: Vec<&str> = Kind::ALL
            .iter()
            .copied()
            .filter(|k| k.fields().contains(&field))
            .map(Kind::name)
            .collect();
        let owners = match owners.as_slice() {
            [] => return None,
            [one] => one.to_string(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        };
        Some(format!(
            "`{field}` is not a field of {}; only {owners} checks have it",
            self.a_check()
        ))
    }
}

/// A check as written, in its kind's struct. `Unknown` is a check whose `kind` names no kind:
/// only its name is read, so it can still be reported as a duplicate.
#[derive(Debug)]
pub enum RawCheck {
    Http(RawHttpCheck),
    Steps(RawStepsCheck),
    Tcp(RawTcpCheck),
    Tls(RawTlsCheck),
    Smtp(RawSmtpCheck),
    Dns(RawDnsCheck),
    VendorStatus(RawVendorStatusCheck),
    Browser(RawBrowserCheck),
    /// Boxed: its server tables make it several times larger than the other kinds.
    MailRoundtrip(Box<RawMailRoundtripCheck>),
    Heartbeat(RawHeartbeatCheck),
    Unknown(RawUnknownCheck),
}

impl RawCheck {
    pub fn name(&self) -> &Spanned<String> {
        match self {
            RawCheck::Http(c) => &c.name,
            RawCheck::Steps(c) => &c.name,
            RawCheck::Tcp(c) => &c.name,
            RawCheck::Tls(c) => &c.name,
            RawCheck::Smtp(c) => &c.name,
            RawCheck::Dns(c) => &c.name,
            RawCheck::VendorStatus(c) => &c.name,
            RawCheck::Browser(c) => &c.name,
            RawCheck::MailRoundtrip(c) => &c.name,
            RawCheck::Heartbeat(c) => &c.name,
            RawCheck::Unknown(c) => &c.name,
        }
    }
}

/// A check whose `kind` is not one of ours: every other field is ignored, since which
/// fields it may have depends on the kind that was meant.
#[derive(Debug, Deserialize)]
pub struct RawUnknownCheck {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
}

/// What is read of a region's checks before their kinds are known: `kind`, of any type (the
/// kind's struct rejects a wrong type), and whether the check has steps. Nothing is denied.
#[derive(Deserialize)]
struct Heads {
    #[serde(default)]
    check: Vec<Spanned<Head>>,
}

#[derive(Deserialize)]
struct Head {
    kind: Option<toml::Value>,
    step: Option<IgnoredAny>,
}

impl Head {
    /// The kind whose struct reads this check; `None` when `kind` names no kind. A check with
    /// `[[check.step]]` is a multi-step check unless it names another kind.
    fn kind(&self) -> Option<Kind> {
        let named = match &self.kind {
            None => Kind::Http,
            Some(toml::Value::String(s)) => Kind::parse(s)?,
            // Not a string: the http struct reports the type.
            Some(_) => Kind::Http,
        };
        Some(match named {
            Kind::Http if self.step.is_some() => Kind::Steps,
            other => other,
        })
    }
}

/// Parses one region of a service file: the kinds of its checks first, then the region with
/// that kind's struct for them. A region holds at most one `[[check]]` table; only an inline
/// array (`check = [{...}, {...}]`) can hold several, and those must be of one kind.
pub(super) fn parse_service_region(
    text: &str,
    parsed: &mut usize,
) -> Result<RawServiceFile, RegionError> {
    *parsed += text.len();
    let heads = toml::from_str::<Heads>(text).map_or_else(|_| Vec::new(), |h| h.check);
    let kinds: Vec<Option<Kind>> = heads.iter().map(|h| h.get_ref().kind()).collect();
    if let Some(at) = kinds.iter().position(|k| *k != kinds[0]) {
        return Err(RegionError {
            span: Some(heads[at].span()),
            message:
                "checks of different kinds in one array: write each as its own [[check]] table"
                    .to_string(),
            unknown_field: false,
        });
    }
    *parsed += text.len();
    match kinds.first().copied() {
        None | Some(Some(Kind::Http)) => parse_as(text, Kind::Http, RawCheck::Http),
        Some(Some(Kind::Steps)) => parse_as(text, Kind::Steps, RawCheck::Steps),
        Some(Some(Kind::Tcp)) => parse_as(text, Kind::Tcp, RawCheck::Tcp),
        Some(Some(Kind::Tls)) => parse_as(text, Kind::Tls, RawCheck::Tls),
        Some(Some(Kind::Smtp)) => parse_as(text, Kind::Smtp, RawCheck::Smtp),
        Some(Some(Kind::Dns)) => parse_as(text, Kind::Dns, RawCheck::Dns),
        Some(Some(Kind::VendorStatus)) => {
            parse_as(text, Kind::VendorStatus, RawCheck::VendorStatus)
        }
        Some(Some(Kind::Browser)) => parse_as(text, Kind::Browser, RawCheck::Browser),
        Some(Some(Kind::MailRoundtrip)) => parse_as(text, Kind::MailRoundtrip, |c| {
            RawCheck::MailRoundtrip(Box::new(c))
        }),
        Some(Some(Kind::Heartbeat)) => parse_as(text, Kind::Heartbeat, RawCheck::Heartbeat),
        Some(None) => toml::from_str::<RawServiceFile<RawUnknownCheck>>(text)
            .map(|f| f.map_checks(RawCheck::Unknown))
            .map_err(|e| RegionError::new(text, &e, |_, _| None)),
    }
}

/// The region with checks read as `C`, the struct of `kind`. An unknown field of the check
/// itself (serde lists exactly `kind`'s fields) is explained when another kind has it.
fn parse_as<C: DeserializeOwned>(
    text: &str,
    kind: Kind,
    wrap: fn(C) -> RawCheck,
) -> Result<RawServiceFile, RegionError> {
    toml::from_str::<RawServiceFile<C>>(text)
        .map(|f| f.map_checks(wrap))
        .map_err(|e| {
            RegionError::new(text, &e, |field, message| {
                let listed: Vec<String> = kind.fields().iter().map(|f| format!("`{f}`")).collect();
                let of_check = message.ends_with(&format!("expected one of {}", listed.join(", ")));
                of_check.then(|| kind.misplaced(field)).flatten()
            })
        })
}

/// The field names a derived `Deserialize` struct accepts, read from the derive itself: it
/// hands them to `deserialize_struct`, which here records them and stops.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields(&'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields recorded")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields = Fields(&[]);
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// The fields every kind has, borrowed from its struct for the validation they share.
pub(super) struct Common<'r> {
    pub(super) name: &'r Spanned<String>,
    pub(super) role: Option<&'r Spanned<String>>,
    pub(super) interval: Option<&'r Spanned<String>>,
    pub(super) timeout: Option<&'r Spanned<String>>,
    pub(super) retry_interval: Option<&'r Spanned<String>>,
    pub(super) failure_threshold: Option<&'r Spanned<i64>>,
    pub(super) success_threshold: Option<&'r Spanned<i64>>,
    pub(super) confirmation: Option<&'r Spanned<String>>,
    /// False for a kind judged without I/O (heartbeat): its timeout is its interval's.
    pub(super) has_timeout: bool,
}

/// `Common` of any kind's struct: they all name these fields alike.
macro_rules! common {
    ($raw:expr) => {
        $crate::config::raw::check::Common {
            name: &$raw.name,
            role: $raw.role.as_ref(),
            interval: $raw.interval.as_ref(),
            timeout: $raw.timeout.as_ref(),
            retry_interval: $raw.retry_interval.as_ref(),
            failure_threshold: $raw.failure_threshold.as_ref(),
            success_threshold: $raw.success_threshold.as_ref(),
            confirmation: $raw.confirmation.as_ref(),
            has_timeout: true,
        }
    };
}

/// `Common` of a kind's struct that has no `timeout` (a heartbeat is judged, not fetched).
macro_rules! common_but_timeout {
    ($raw:expr) => {
        $crate::config::raw::check::Common {
            name: &$raw.name,
            role: $raw.role.as_ref(),
            interval: $raw.interval.as_ref(),
            timeout: None,
            retry_interval: $raw.retry_interval.as_ref(),
            failure_threshold: $raw.failure_threshold.as_ref(),
            success_threshold: $raw.success_threshold.as_ref(),
            confirmation: $raw.confirmation.as_ref(),
            has_timeout: false,
        }
    };
}

/// The shared settings, resolved with `[defaults]`; `ok` is false once anything was reported.
pub(super) struct Settled {
    pub(super) role: Option<Role>,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) retry_interval: Duration,
    pub(super) failure_threshold: u32,
    pub(super) success_threshold: u32,
    pub(super) confirmation: Confirmation,
    pub(super) ok: bool,
}

impl Loader {
    pub(in crate::config::raw) fn validate_check(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawCheck>,
        service: &str,
        defaults: &Defaults,
    ) -> Option<CheckSpec> {
        let raw = raw.into_inner();
        let name = raw.name().get_ref().clone();
        let (settled, kind) = match raw {
            RawCheck::Http(r) => {
                let settled = self.settle(source, common!(r), defaults);
                let kind = self.http_check(source, r);
                (settled, kind)
            }
            RawCheck::Steps(r) => {
                let settled = self.settle(source, common!(r), defaults);
                let kind = self.steps_check(source, r, settled.timeout);
                (settled, kind)
            }
            RawCheck::Tcp(r) => {
                let settled = self.settle(source, common!(r), defaults);
                let kind = self.tcp_check(source, r);
                (settled, kind)
            }
            RawCheck::Tls(r) => {
                let settled = self.settle(source, common!(r), defaults);
                let kind = self.tls_check(source, r);
                (settled, kind)
            }
            RawCheck::Smtp(r) => {
                let settled = self.settle(source, common!(r), defaults);
                let kind = self.smtp_check(source, r);
                (settled, kind)
            }
            RawCheck::Dns(r) => {
                let settled = self.settle(source, common!(r), defaults);
                let kind = self.dns_check(source, r);
                (settled, kind)
            }
            RawCheck::VendorStatus(r) => {
                let mut settled = self.settle(source, r.common(), defaults);
                // A vendor's declaration needs no fast confirmation: unless the check says
                // otherwise it is re-probed at its interval, which respects the vendor's limit.
                if r.retry_interval.is_none() {
                    settled.retry_interval = settled.interval;
                }
                settled.role = settled.role.map(|_| Role::Vendor);
                let kind = self
                    .vendor_status_check(
                        source,
                        r,
                        settled.interval,
                        settled.retry_interval,
                        defaults,
                    )
                    .map(|k| (k, Vec::new()));
                (settled, kind)
            }
            RawCheck::Browser(r) => {
                let settled = self.settle(source, common!(r), defaults);
                let kind = self.browser_check(source, r, settled.timeout);
                (settled, kind)
            }
            RawCheck::MailRoundtrip(r) => {
                let settled = self.settle(source, common!(r), defaults);
                let kind = self.mail_roundtrip_check(source, *r);
                (settled, kind)
            }
            RawCheck::Heartbeat(r) => {
                // A heartbeat is judged, not fetched: it has no timeout of its own.
                let settled = self.settle(source, common_but_timeout!(r), defaults);
                let kind = self.heartbeat_check(source, r);
                (settled, kind)
            }
            RawCheck::Unknown(r) => {
                self.identifier(source, "check name", &r.name);
                self.unique(source, Unique::Check, &r.name);
                let names: Vec<String> = Kind::ALL
                    .iter()
                    .map(|k| format!("\"{}\"", k.name()))
                    .collect();
                let message = format!(
                    "kind \"{}\" is not one of {}",
                    r.kind.get_ref(),
                    names.join(", ")
                );
                self.report_at(source, &r.kind, message);
                return None;
            }
        };
        let (mut kind, conditions) = kind?;
        if !settled.ok {
            return None;
        }
        if let Some(from) = defaults.source_address {
            kind.default_source_address(from);
        }
        Some(CheckSpec {
            name,
            service: service.to_string(),
            role: settled.role?,
            interval: settled.interval,
            timeout: settled.timeout,
            retry_interval: settled.retry_interval,
            failure_threshold: settled.failure_threshold,
            success_threshold: settled.success_threshold,
            confirmation: settled.confirmation,
            conditions,
            kind,
        })
    }

    /// The name and the settings every kind shares, checked and resolved with `[defaults]`.
    fn settle(&mut self, source: &Source<'_>, raw: Common<'_>, defaults: &Defaults) -> Settled {
        let mut ok = self.identifier(source, "check name", raw.name);
        ok &= self.unique(source, Unique::Check, raw.name);
        let role = match raw.role.map(|r| r.get_ref().as_str()) {
            None | Some("primary") => Some(Role::Primary),
            Some("backup") => Some(Role::Backup),
            Some(other) => {
                let message = format!("role must be \"primary\" or \"backup\", not \"{other}\"");
                if let Some(r) = raw.role {
                    self.report_at(source, r, message);
                }
                None
            }
        };
        let interval = self.duration(source, "interval", raw.interval, false);
        let timeout = self.duration(source, "timeout", raw.timeout, false);
        let retry_interval = self.duration(source, "retry_interval", raw.retry_interval, false);
        let failure_threshold = self.threshold(source, "failure_threshold", raw.failure_threshold);
        let success_threshold = self.threshold(source, "success_threshold", raw.success_threshold);
        ok &= raw.interval.is_none() || interval.is_some();
        ok &= raw.timeout.is_none() || timeout.is_some();
        ok &= raw.retry_interval.is_none() || retry_interval.is_some();
        ok &= raw.failure_threshold.is_none() || failure_threshold.is_some();
        ok &= raw.success_threshold.is_none() || success_threshold.is_some();
        let confirmation = self.confirmation(source, raw.confirmation);
        ok &= raw.confirmation.is_none() || confirmation.is_some();
        let interval = interval.unwrap_or(defaults.interval);
        let timeout = match raw.has_timeout {
            true => timeout.unwrap_or(defaults.timeout),
            false => defaults.timeout.min(interval),
        };
        if timeout > interval {
            // When both come from [defaults] the problem was reported there, once.
            if let Some(at) = raw.timeout.or(raw.interval) {
                self.report_at(source, at, timeout_message(timeout, interval));
                ok = false;
            }
        }
        Settled {
            role,
            interval,
            timeout,
            retry_interval: retry_interval.unwrap_or(defaults.retry_interval),
            failure_threshold: failure_threshold.unwrap_or(defaults.failure_threshold),
            success_threshold: success_threshold.unwrap_or(defaults.success_threshold),
            confirmation: confirmation.unwrap_or(defaults.confirmation),
            ok,
        }
    }

    /// Parses each condition; `None` after reporting any that cannot mean anything.
    /// `prefix` names the step, for a step's conditions.
    fn conditions(
        &mut self,
        source: &Source<'_>,
        prefix: &str,
        raw: &[Spanned<String>],
    ) -> Option<Vec<Condition>> {
        let mut ok = true;
        let mut conditions = Vec::new();
        for c in raw {
            match Condition::parse(c.get_ref()) {
                Ok(condition) => conditions.push(condition),
                Err(e) => {
                    let message = format!("{prefix}condition \"{}\": {e}", c.get_ref());
                    self.report_at(source, c, message);
                    ok = false;
                }
            }
        }
        ok.then_some(conditions)
    }

    /// `method`, upper-cased; default `GET`.
    fn http_method(
        &mut self,
        source: &Source<'_>,
        prefix: &str,
        raw: Option<&Spanned<String>>,
    ) -> Option<String> {
        let Some(m) = raw else {
            return Some("GET".to_string());
        };
        let upper = m.get_ref().to_ascii_uppercase();
        if hyper::Method::from_bytes(upper.as_bytes()).is_ok() && !upper.is_empty() {
            Some(upper)
        } else {
            let message = format!("{prefix}method: \"{}\" is not an HTTP method", m.get_ref());
            self.report_at(source, m, message);
            None
        }
    }

    /// `max_redirects`, 0 when redirects are not followed; default 10.
    fn max_redirects(
        &mut self,
        source: &Source<'_>,
        prefix: &str,
        raw: Option<&Spanned<i64>>,
        follow: Option<bool>,
    ) -> Option<u32> {
        let max = match raw {
            None => Some(super::DEFAULT_MAX_REDIRECTS),
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(n) => Some(n),
                Err(_) => {
                    let message = format!(
                        "{prefix}max_redirects must be 0 or more, not {}",
                        m.get_ref()
                    );
                    self.report_at(source, m, message);
                    None
                }
            },
        }?;
        Some(if follow.unwrap_or(true) { max } else { 0 })
    }

    /// `max_body_bytes`; default 1 MiB.
    fn max_body_bytes(&mut self, source: &Source<'_>, raw: Option<&Spanned<i64>>) -> Option<usize> {
        let Some(m) = raw else {
            return Some(super::DEFAULT_MAX_BODY_BYTES);
        };
        match usize::try_from(*m.get_ref()) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                let message = format!("max_body_bytes must be at least 1, not {}", m.get_ref());
                self.report_at(source, m, message);
                None
            }
        }
    }

    /// The required `target`, as host and port.
    fn target(
        &mut self,
        source: &Source<'_>,
        name: &Spanned<String>,
        kind: Kind,
        raw: Option<&Spanned<String>>,
    ) -> Option<(String, u16)> {
        let Some(t) = raw else {
            let message = format!(
                "check \"{}\" of kind \"{}\" needs a target (host:port)",
                name.get_ref(),
                kind.name()
            );
            self.report_at(source, name, message);
            return None;
        };
        let hp = split_host_port(t.get_ref());
        if hp.is_none() {
            let message = format!(
                "target: \"{}\" is not host:port, such as mail.example.com:25",
                t.get_ref()
            );
            self.report_at(source, t, message);
        }
        hp
    }
}

/// `host:port` (IPv6 in brackets) split into its parts, if it is one.
fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && !host.contains(['/', ' '])).then(|| (host.to_string(), port))
}
