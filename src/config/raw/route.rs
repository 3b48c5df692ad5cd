//! `[[route]]`: where customers go for a service, primary and backup, as written and validated.

use super::{Loader, Source, Unique};
use crate::config::RouteSpec;
use serde::Deserialize;
use toml::Spanned;
use url::Url;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique across the configuration; the `{route}` of `/go/{route}`.
    pub id: Spanned<String>,
    /// Where customers go: an http(s) URL, an e-mail address (`mailto:` optional), a phone
    /// number as `tel:…`, or instructions as `text:…`.
    pub primary: Spanned<String>,
    pub backup: Spanned<String>,
}

impl Loader {
    pub(super) fn validate_route(
        &mut self,
        source: &Source<'_>,
        raw: Spanned<RawRoute>,
        service: &str,
    ) -> Option<RouteSpec> {
        let raw = raw.into_inner();
        let mut ok = self.identifier(source, "route id", &raw.id);
        ok &= self.unique(source, Unique::Route, &raw.id);
        let mut targets = Vec::new();
        for (field, target) in [("primary", &raw.primary), ("backup", &raw.backup)] {
            match route_target(target.get_ref()) {
                Ok(normalized) => targets.push(normalized),
                Err(why) => {
                    self.report_at(
                        source,
                        target,
                        format!("{field}: \"{}\" {why}", target.get_ref()),
                    );
                    ok = false;
                }
            }
        }
        let (Some(backup), Some(primary)) = (targets.pop(), targets.pop()) else {
            return None;
        };
        ok.then(|| RouteSpec {
            id: raw.id.into_inner(),
            service: service.to_string(),
            primary,
            backup,
        })
    }
}

/// A route target customers are sent to: an absolute web page or a mail address.
/// Checks a route target and writes it in its one canonical form: an http(s) URL, `mailto:`
/// with an address (a bare address gets the prefix), `tel:` with a number, or `text:` with
/// instructions. Anything else is more likely a typo than a route.
fn route_target(target: &str) -> Result<String, &'static str> {
    let t = target.trim();
    let lower = t.to_ascii_lowercase();
    if let Some(number) = lower.strip_prefix("tel:") {
        let digits = number.chars().filter(char::is_ascii_digit).count();
        let allowed = number
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        return if allowed && digits >= 3 {
            Ok(t.to_string())
        } else {
            Err("is not a tel: phone number such as tel:+44 20 7946 0000")
        };
    }
    if let Some(text) = t.get(5..).filter(|_| lower.starts_with("text:")) {
        return if text.trim().is_empty() {
            Err("has no instructions after text:")
        } else {
            Ok(t.to_string())
        };
    }
    let address = lower
        .starts_with("mailto:")
        .then(|| &t[7..])
        .or_else(|| (!t.contains(['/', ':', ' ']) && t.contains('@')).then_some(t));
    if let Some(address) = address {
        return match address.parse::<lettre::Address>() {
            Ok(_) => Ok(format!("mailto:{address}")),
            Err(_) => Err("is not an e-mail address"),
        };
    }
    match Url::parse(t) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(t.to_string()),
        _ => Err("is not an http(s) URL, an e-mail address, tel: or text:"),
    }
}
