//! Vocabulary and little languages with no knowledge of the rest of the daemon (layer 0).
//!
//! Configuration parses these at load time and the core and probes run them later, so they
//! live below both: the condition language, step templates and extract rules, the DNS type
//! and rcode tables, and planned-window (cron) maths.

pub mod condition;
pub mod dns;
pub mod template;
pub mod window;
