//! The DNS vocabulary a `dns` check is written in: record types by name and number, and rcode names.
//!
//! Config checks `query_type` and `expect_rcode` against these tables at load time; the probe
//! encodes the type number and names the rcode of a reply with them.

/// Record types by name and number.
pub const TYPES: [(&str, u16); 7] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
];

pub const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

pub fn type_number(name: &str) -> Option<u16> {
    TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// The name of an rcode as a reply carries it; codes beyond the table read `RCODE{n}`.
pub fn rcode_name(code: u8) -> String {
    RCODES
        .get(code as usize)
        .map_or_else(|| format!("RCODE{code}"), |s| s.to_string())
}
