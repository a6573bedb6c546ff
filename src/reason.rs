//! Why an item did not land: the `reason_code` of every dead letter, from the planner's
//! checks to the run's last retry, and the tallies of the summary. Pipelines branch on these
//! slugs (the dead-letter file is NDJSON they parse), so they are one enum, serialized in
//! snake_case, and never renamed; the README lists them.

use serde::{Deserialize, Serialize};

/// A dead letter's stable reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    // The planner (`twinload plan` says the same before a load).
    /// The line could not be read as an item (bad JSON, missing fields, wrong section…).
    ParseError,
    /// The same model id, twin id, or (source, relationship id) appeared before.
    Duplicate,
    /// A DTMI that breaks the DTMI syntax.
    BadDtmi,
    /// A twin or relationship id ADT cannot take in a URL path (empty, `.`, `..`, control
    /// characters).
    BadId,
    /// A model ADT would not accept (not an Interface, Commands, bad names, …).
    InvalidModel,
    /// Models that depend on each other in a loop.
    Cycle,
    /// Larger than ADT takes in one request.
    TooLarge,
    /// A model neither in the input nor in ADT.
    MissingModel,
    /// A twin neither in the input nor in ADT.
    MissingTwin,
    /// Beyond ADT's limit of relationships out of, or into, one twin.
    TooManyRelationships,
    /// A relationship from a twin to itself (ADT answers `OperationNotAllowed`).
    SelfRelationship,
    /// Something it depends on was rejected or failed.
    DependencyFailed,

    // The run.
    /// ADT refused the write for good (a 4xx other than throttling and auth).
    WriteFailed,
    /// ADT refused the credentials (401/403).
    AuthFailed,
    /// The endpoint answered with a redirect (3xx), which twinload never follows: not written.
    Redirected,
    /// Failed (5xx, timeout, dropped connection) on every one of its `max_attempts`.
    RetriesExhausted,
    /// ADT still did not see a relationship's twin after the grace period.
    TwinNotFound,
    /// Never sent: the run stopped first (deadline, signal, watchdog). Counted apart from
    /// the dead-lettered items: nothing is wrong with it, load it again.
    NotAttempted,
    /// Sent, failed, and the run stopped before it could be retried: it may have landed.
    StoppedEarly,
    /// In flight when the run stopped, and no answer came within the shutdown grace.
    InFlightAtStop,
    /// A bug of ours (a writer reported on the wrong work, the scheduler never released it).
    Internal,

    // `--mode sync`.
    /// A sync write (patch, replace, delete) that ADT refused or that kept failing.
    SyncWriteFailed,

    // `--mode import-job`.
    /// The import job refused the item (its error line in the job's log).
    ImportRejected,
    /// The import job ended (failed) before the item's section.
    ImportJobFailed,
}

impl ReasonCode {
    /// The slug as written in the dead-letter file and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::ParseError => "parse_error",
            ReasonCode::Duplicate => "duplicate",
            ReasonCode::BadDtmi => "bad_dtmi",
            ReasonCode::BadId => "bad_id",
            ReasonCode::InvalidModel => "invalid_model",
            ReasonCode::Cycle => "cycle",
            ReasonCode::TooLarge => "too_large",
            ReasonCode::MissingModel => "missing_model",
            ReasonCode::MissingTwin => "missing_twin",
            ReasonCode::TooManyRelationships => "too_many_relationships",
            ReasonCode::SelfRelationship => "self_relationship",
            ReasonCode::DependencyFailed => "dependency_failed",
            ReasonCode::WriteFailed => "write_failed",
            ReasonCode::AuthFailed => "auth_failed",
            ReasonCode::Redirected => "redirected",
            ReasonCode::RetriesExhausted => "retries_exhausted",
            ReasonCode::TwinNotFound => "twin_not_found",
            ReasonCode::NotAttempted => "not_attempted",
            ReasonCode::StoppedEarly => "stopped_early",
            ReasonCode::InFlightAtStop => "in_flight_at_stop",
            ReasonCode::Internal => "internal",
            ReasonCode::SyncWriteFailed => "sync_write_failed",
            ReasonCode::ImportRejected => "import_rejected",
            ReasonCode::ImportJobFailed => "import_job_failed",
        }
    }

    /// Every code, in declaration order (for the README's table and its test).
    pub const ALL: [ReasonCode; 24] = [
        ReasonCode::ParseError,
        ReasonCode::Duplicate,
        ReasonCode::BadDtmi,
        ReasonCode::BadId,
        ReasonCode::InvalidModel,
        ReasonCode::Cycle,
        ReasonCode::TooLarge,
        ReasonCode::MissingModel,
        ReasonCode::MissingTwin,
        ReasonCode::TooManyRelationships,
        ReasonCode::SelfRelationship,
        ReasonCode::DependencyFailed,
        ReasonCode::WriteFailed,
        ReasonCode::AuthFailed,
        ReasonCode::Redirected,
        ReasonCode::RetriesExhausted,
        ReasonCode::TwinNotFound,
        ReasonCode::NotAttempted,
        ReasonCode::StoppedEarly,
        ReasonCode::InFlightAtStop,
        ReasonCode::Internal,
        ReasonCode::SyncWriteFailed,
        ReasonCode::ImportRejected,
        ReasonCode::ImportJobFailed,
    ];
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tests and tools compare a code with its slug as read from a dead-letter file.
impl PartialEq<str> for ReasonCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ReasonCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_writes_the_same_slug_as_as_str_and_reads_it_back() {
        for code in ReasonCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_string()));
            assert_eq!(serde_json::from_value::<ReasonCode>(json).unwrap(), code);
        }
    }

    #[test]
    fn the_readme_lists_every_reason_code() {
        let readme = include_str!("../README.md");
        for code in ReasonCode::ALL {
            assert!(readme.contains(&format!("| `{}` |", code.as_str())), "README.md lacks reason code {code}");
        }
    }
}
