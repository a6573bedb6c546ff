//! The settings of sync, prune and the ledger, as the configuration resolves them: where the
//! ledger is, whether to read ADT's state anyway (`--verify`), whether and where to prune, and
//! the guard against deleting too much.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// Default `--max-deletes`: a prune that would delete more than this share of its scope stops
/// before any write (exit 4). A deliberate big clean-up says so with `--max-deletes 100%`.
pub const DEFAULT_MAX_DELETES: MaxDeletes = MaxDeletes::Percent(10.0);

/// What `--prune` may delete: what left the source, within this scope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PruneScope {
    /// What the ledger records this source as having loaded (the default).
    Ledger,
    /// Twins of this model (or a model extending it), and their relationships.
    Model(String),
    /// Twins whose id starts with this, and their relationships.
    Prefix(String),
}

impl PruneScope {
    /// True when a twin with this id and model is in a stated scope (always for `Ledger`,
    /// whose scope is the ledger's own items).
    pub fn holds_twin(&self, id: &str, model: Option<&str>) -> bool {
        match self {
            PruneScope::Ledger => true,
            PruneScope::Model(m) => model == Some(m.as_str()),
            PruneScope::Prefix(p) => id.starts_with(p.as_str()),
        }
    }
}

impl FromStr for PruneScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "ledger" => Ok(PruneScope::Ledger),
            Some(("model", m)) if m.starts_with("dtmi:") => Ok(PruneScope::Model(m.to_string())),
            Some(("prefix", p)) if !p.is_empty() => Ok(PruneScope::Prefix(p.to_string())),
            _ => Err(format!("'{s}' is not a prune scope: give ledger, model:<dtmi> or prefix:<id-prefix>")),
        }
    }
}

impl fmt::Display for PruneScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PruneScope::Ledger => f.write_str("ledger"),
            PruneScope::Model(m) => write!(f, "model:{m}"),
            PruneScope::Prefix(p) => write!(f, "prefix:{p}"),
        }
    }
}

/// `--max-deletes <n|p%>`: at most n deletions, or p percent of the scope.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub enum MaxDeletes {
    Count(u64),
    Percent(f64),
}

impl MaxDeletes {
    /// The most deletions allowed in a scope of `scope` items.
    pub fn allowed(self, scope: u64) -> u64 {
        match self {
            MaxDeletes::Count(n) => n,
            MaxDeletes::Percent(p) => (scope as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl FromStr for MaxDeletes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a deletion limit: give a count (e.g. 50) or a percentage (e.g. 5%)");
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(MaxDeletes::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse::<u64>().map(MaxDeletes::Count).map_err(|_| bad()),
        }
    }
}

impl fmt::Display for MaxDeletes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxDeletes::Count(n) => write!(f, "{n}"),
            MaxDeletes::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The resolved sync settings of a load.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    /// The ledger's path (`--ledger`); `None`: no ledger.
    pub ledger: Option<String>,
    /// The name of the source the ledger belongs to (`--source`); `None`: its inputs.
    pub source: Option<String>,
    /// Read ADT's current state through the query API even with a ledger (`--verify`).
    pub verify: bool,
    pub prune: bool,
    pub prune_scope: PruneScope,
    pub max_deletes: MaxDeletes,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            ledger: None,
            source: None,
            verify: false,
            prune: false,
            prune_scope: PruneScope::Ledger,
            max_deletes: DEFAULT_MAX_DELETES,
        }
    }
}

/// The config file spells scopes and limits as the command line does.
macro_rules! from_string {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
    };
}
from_string!(PruneScope);
from_string!(MaxDeletes);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_limits_parse_or_say_what_to_give() {
        assert_eq!("model:dtmi:a:B;1".parse(), Ok(PruneScope::Model("dtmi:a:B;1".into())));
        assert_eq!("prefix:plant-1/".parse(), Ok(PruneScope::Prefix("plant-1/".into())));
        assert_eq!("ledger".parse(), Ok(PruneScope::Ledger));
        assert!("model:x".parse::<PruneScope>().unwrap_err().contains("model:<dtmi>"));
        assert_eq!("50".parse(), Ok(MaxDeletes::Count(50)));
        assert_eq!("5%".parse(), Ok(MaxDeletes::Percent(5.0)));
        assert!("150%".parse::<MaxDeletes>().is_err());
        assert!("-1".parse::<MaxDeletes>().unwrap_err().contains("count"));
        assert_eq!(MaxDeletes::Percent(10.0).allowed(1005), 100);
        assert_eq!(MaxDeletes::Count(3).allowed(1), 3);
    }
}
