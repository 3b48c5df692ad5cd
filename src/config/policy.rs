//! The policy vocabulary configuration shares with the core: which side routes point at, how
//! many outcomes confirm a change of health, and whether noise raises that number.
//!
//! Defined here, below `health` and `failover`, so that config can name them without knowing
//! the core; `health` and `failover` re-export them under their old paths.

use serde::{Deserialize, Serialize};

/// Which target of its routes a service sends customers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Side {
    Primary,
    Backup,
}

impl Side {
    /// As configuration, metrics and the API write it (the same words as serde's).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether a noisy target needs more consecutive failures than `failure_threshold`
/// (`confirmation = "adaptive" | "fixed"`); `health` explains the rule and its cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Confirmation {
    /// `failure_threshold`, raised by at most `health::NOISE_MAX_EXTRA` on a noisy target.
    #[default]
    Adaptive,
    /// Exactly `failure_threshold`.
    Fixed,
}

impl Confirmation {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The thresholds `health` applies to one check's outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
    /// Raise the failure threshold on noisy targets (see the module docs).
    pub adaptive: bool,
}

impl Thresholds {
    pub fn new(failure: u32, success: u32) -> Thresholds {
        Thresholds {
            failure,
            success,
            adaptive: true,
        }
    }

    /// The most consecutive failures a check can ever need: the cap of adaptive confirmation.
    pub fn max_failures(self) -> u32 {
        if self.adaptive {
            self.failure.max(1) + NOISE_MAX_EXTRA
        } else {
            self.failure.max(1)
        }
    }
}

/// At most this many failures are added to `failure_threshold` on a noisy target.
pub const NOISE_MAX_EXTRA: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    /// The words `as_str` gives (metrics, API, status) are the ones serde writes and reads.
    #[test]
    fn names_are_the_serialized_words() {
        for side in [Side::Primary, Side::Backup] {
            let json = serde_json::to_string(&side).expect("serializes");
            assert_eq!(json, format!("\"{}\"", side.as_str()));
        }
        assert_eq!(Side::Primary.as_str(), "primary");
        for c in [Confirmation::Adaptive, Confirmation::Fixed] {
            let json = serde_json::to_string(&c).expect("serializes");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(Confirmation::Fixed.as_str(), "fixed");
    }
}
