//! `IpRange`: an address or CIDR block from the config (`"10.0.0.0/8"`, `"::1"`), for `[server] trusted_proxies`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block: every address whose first `prefix` bits equal `addr`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` lies in the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
    /// dual-stack listener reports IPv4 peers) is matched as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<IpRange, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| {
            format!("\"{s}\" is not an IP address or CIDR block such as 10.0.0.0/8")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("\"{s}\": the prefix length must be 0 to {max}")),
            },
        };
        Ok(IpRange { addr, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(range: &str, ip: &str, expect: bool) {
        let r: IpRange = range.parse().expect(range);
        assert_eq!(
            r.contains(ip.parse().expect(ip)),
            expect,
            "{range} contains {ip}"
        );
    }

    #[test]
    fn blocks_match_by_prefix_and_family() {
        check("10.0.0.0/8", "10.200.3.4", true);
        check("10.0.0.0/8", "11.0.0.1", false);
        check("127.0.0.1", "127.0.0.1", true);
        check("127.0.0.1", "127.0.0.2", false);
        check("0.0.0.0/0", "203.0.113.9", true);
        check("::1", "::1", true);
        check("fd00::/8", "fd12::1", true);
        check("fd00::/8", "fe80::1", false);
        check("10.0.0.0/8", "::1", false);
        // A dual-stack listener reports IPv4 peers as mapped IPv6 addresses.
        check("192.168.0.0/16", "::ffff:192.168.1.1", true);
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        assert!("10.0.0.0/33"
            .parse::<IpRange>()
            .unwrap_err()
            .contains("0 to 32"));
        assert!("proxy.local"
            .parse::<IpRange>()
            .unwrap_err()
            .contains("not an IP"));
        assert!("::/129".parse::<IpRange>().is_err());
    }
}
