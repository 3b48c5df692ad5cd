//! Time as the rest of Switchboard sees it: a millisecond timestamp and the one place that reads the wall clock.
//!
//! The decision core (`health`, `failover`) never reads a clock; it is handed `Timestamp`s.
//! The shell reads `Timestamp::now()` and passes it in. Tests construct timestamps directly.
//!
//! The daemon's clock is the wall clock read once, at the first call, and advanced from then
//! on by the monotonic clock. So while the process runs, a hold (recovery hold, drill, pin,
//! maintenance, flap window) lasts exactly its duration whatever happens to the wall clock: a
//! step back cannot keep customers on the backup, a step forward cannot end a recovery hold
//! early. Across a restart the wall clock is all there is: stored ends are compared with the
//! wall clock read at the next start. A step of the system clock while the daemon runs shows
//! as `switchboard_clock_offset_seconds` (`wall_offset`) until the next start re-reads it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC).
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// The wall clock at the process's first reading, and the monotonic instant it was taken at.
static ANCHOR: OnceLock<(Timestamp, Instant)> = OnceLock::new();

fn anchor() -> (Timestamp, Instant) {
    *ANCHOR.get_or_init(|| (Timestamp::wall(), Instant::now()))
}

impl Timestamp {
    /// The daemon's clock: the wall clock at the first reading plus the monotonic time since.
    /// It never goes back and never jumps, whatever the system clock does (see the module
    /// header). Only the shell calls this; the core is given timestamps.
    pub fn now() -> Timestamp {
        let (wall, at) = anchor();
        wall.plus(at.elapsed())
    }

    /// The system's wall clock as it reads now, steps and all. Used only to show how far it
    /// has moved from the daemon's clock (`wall_offset`).
    pub fn wall() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(d.as_millis() as i64)
    }

    /// How far the wall clock has been stepped since the daemon's clock was anchored:
    /// positive when it is ahead of the daemon's clock. Near zero unless someone set the
    /// clock (NTP's slewing moves both clocks alike).
    pub fn wall_offset() -> Duration {
        Duration::from_millis(
            Timestamp::wall()
                .as_millis()
                .abs_diff(Timestamp::now().as_millis()),
        )
    }

    /// `wall_offset` with its sign, in seconds: negative when the wall clock was set back.
    pub fn wall_offset_secs() -> f64 {
        (Timestamp::wall().as_millis() - Timestamp::now().as_millis()) as f64 / 1000.0
    }

    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// This instant moved forward by `d` (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis() as i64))
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// RFC 3339 with milliseconds, UTC, e.g. `2026-11-28T17:38:41.123Z`.
    pub fn rfc3339(self) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }
}

/// Serde for a `Timestamp` written as RFC 3339 text (`2026-11-28T17:38:41.123Z`) rather than
/// milliseconds, for records people read (the grounds of a decision in the audit chain).
/// `#[serde(with = "crate::clock::rfc3339_text")]`; an `Option` takes `rfc3339_text::option`.
pub mod rfc3339_text {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    fn parse(s: &str) -> Result<Timestamp, String> {
        let t = humantime::parse_rfc3339(s).map_err(|e| e.to_string())?;
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_millis();
        i64::try_from(ms).map(Timestamp).map_err(|e| e.to_string())
    }

    /// The same for an `Option<Timestamp>` (`null` when absent).
    pub mod option {
        use super::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&t.rfc3339()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| super::parse(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_utc_with_millis() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(1_500).rfc3339(), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn now_never_goes_back() {
        let mut last = Timestamp::now();
        for _ in 0..1000 {
            let t = Timestamp::now();
            assert!(t >= last);
            last = t;
        }
        // Anchored to the wall clock: the two agree unless the clock was stepped meanwhile.
        assert!(Timestamp::wall_offset() < Duration::from_secs(5));
    }

    #[test]
    fn since_saturates_at_zero() {
        assert_eq!(Timestamp(10).since(Timestamp(20)), Duration::ZERO);
        assert_eq!(
            Timestamp(20).since(Timestamp(10)),
            Duration::from_millis(10)
        );
    }
}
