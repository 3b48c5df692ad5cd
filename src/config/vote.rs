//! `quorum` and `min_vantages`: how many of a cluster's vantages must agree on a check's verdict (decided by `cluster::votes`).

/// How many vantages must agree: `"majority"` of the live ones (the default) or `"k of n"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    Majority,
    /// At least k counted vantages; `n` is the cluster's intended size, for the reader.
    AtLeast {
        k: u32,
        n: u32,
    },
}

impl Quorum {
    /// Parses `"majority"` or `"k of n"` (1 ≤ k ≤ n).
    pub fn parse(text: &str) -> Result<Quorum, String> {
        let text = text.trim();
        if text == "majority" {
            return Ok(Quorum::Majority);
        }
        let parsed = text.split_once(" of ").and_then(|(k, n)| {
            Some((k.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
        });
        match parsed {
            None => Err(format!(
                "quorum must be \"majority\" or \"k of n\" (such as \"2 of 3\"), not \"{text}\""
            )),
            Some((0, _)) => Err(format!("quorum \"{text}\": k must be at least 1")),
            Some((k, n)) if k > n => {
                Err(format!("quorum \"{text}\": k ({k}) is larger than n ({n})"))
            }
            Some((k, n)) => Ok(Quorum::AtLeast { k, n }),
        }
    }

    /// The votes a verdict needs among `live` counted vantages.
    pub fn needed(self, live: u32) -> u32 {
        match self {
            Quorum::Majority => live / 2 + 1,
            Quorum::AtLeast { k, .. } => k,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Quorum::Majority => "majority".into(),
            Quorum::AtLeast { k, n } => format!("{k} of {n}"),
        }
    }
}

/// A service's voting rule: `quorum` and `min_vantages` in its `[service]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub quorum: Quorum,
    /// Fewer counted vantages than this: no automatic decision (and an alert).
    pub min_vantages: u32,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            quorum: Quorum::Majority,
            min_vantages: 1,
        }
    }
}
