//! ADT's service limits as configuration: one profile per documented generation of limits.
//!
//! The loader and the mock read the same file (`config/limits.toml`, embedded as the default),
//! so a load test runs against exactly the limits the loader believes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The limits file shipped with twinload, embedded so the binary works from any directory.
pub const DEFAULT_LIMITS_TOML: &str = include_str!("../../../config/limits.toml");

/// One complete set of per-instance limits (see `config/limits.toml` for units and sources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub create_delete_per_s: u32,
    pub patch_per_s: u32,
    pub read_per_s: u32,
    pub models_per_s: u32,
    pub query_per_s: u32,
    pub jobs_per_s: u32,
    pub per_twin_writes_per_s: u32,
    pub per_twin_in_flight: u32,
    pub max_models_per_call: usize,
    pub max_payload_bytes: usize,
    pub max_string_value_bytes: usize,
    pub max_relationships_per_twin: usize,
    pub max_twins: usize,
    pub max_models: usize,
    pub models_page_size: usize,
    pub query_page_size: usize,
    pub max_concurrent_jobs: usize,
}

/// The rate-limit classes ADT meters separately. Which operation falls in which class is
/// ADT-REFERENCE.md §3's inference: PUT/DELETE create-delete, PATCH patch, GET read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitClass {
    CreateDelete,
    Patch,
    Read,
    Models,
    Query,
    Jobs,
}

impl LimitClass {
    pub const ALL: [LimitClass; 6] = [
        LimitClass::CreateDelete,
        LimitClass::Patch,
        LimitClass::Read,
        LimitClass::Models,
        LimitClass::Query,
        LimitClass::Jobs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitClass::CreateDelete => "create_delete",
            LimitClass::Patch => "patch",
            LimitClass::Read => "read",
            LimitClass::Models => "models",
            LimitClass::Query => "query",
            LimitClass::Jobs => "jobs",
        }
    }
}

impl std::fmt::Display for LimitClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Limits {
    /// Requests per second allowed for a class, instance-wide.
    pub fn rate_of(&self, class: LimitClass) -> u32 {
        match class {
            LimitClass::CreateDelete => self.create_delete_per_s,
            LimitClass::Patch => self.patch_per_s,
            LimitClass::Read => self.read_per_s,
            LimitClass::Models => self.models_per_s,
            LimitClass::Query => self.query_per_s,
            LimitClass::Jobs => self.jobs_per_s,
        }
    }

    /// ADT's documented defaults (the `default_profile` of the embedded file).
    pub fn adt_default() -> Limits {
        LimitsFile::embedded()
            .resolve(None)
            .expect("the embedded config/limits.toml names a default profile that exists")
    }

    /// Resolves `--limits <profile-or-file>`: a profile name from the embedded file, or a path
    /// to a limits file (its `default_profile`, or `path#profile`).
    pub fn from_spec(spec: &str) -> Result<Limits, LimitsError> {
        let (path_part, profile) = match spec.split_once('#') {
            Some((p, prof)) => (p, Some(prof)),
            None => (spec, None),
        };
        let looks_like_path = path_part.ends_with(".toml") || path_part.contains('/');
        if looks_like_path {
            let file = LimitsFile::load(Path::new(path_part))?;
            file.resolve(profile)
        } else {
            LimitsFile::embedded().resolve(Some(spec))
        }
    }
}

/// The whole limits file: named profiles and the default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub default_profile: String,
    pub profiles: BTreeMap<String, Limits>,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("cannot read limits file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("limits file {path} is not valid: {message} (compare with config/limits.toml)")]
    Parse { path: String, message: String },
    #[error("unknown limits profile '{name}'; known profiles: {known}")]
    UnknownProfile { name: String, known: String },
}

impl LimitsFile {
    pub fn embedded() -> LimitsFile {
        toml::from_str(DEFAULT_LIMITS_TOML).expect("embedded config/limits.toml parses")
    }

    pub fn load(path: &Path) -> Result<LimitsFile, LimitsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| LimitsError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text)
            .map_err(|e| LimitsError::Parse { path: path.display().to_string(), message: e.to_string() })
    }

    pub fn resolve(&self, profile: Option<&str>) -> Result<Limits, LimitsError> {
        let name = profile.unwrap_or(&self.default_profile);
        self.profiles.get(name).cloned().ok_or_else(|| LimitsError::UnknownProfile {
            name: name.to_string(),
            known: self.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_is_todays_documented_limits() {
        let l = Limits::adt_default();
        assert_eq!(l.create_delete_per_s, 500);
        assert_eq!(l.per_twin_writes_per_s, 10);
        assert_eq!(l.max_models_per_call, 250);
        assert_eq!(l.rate_of(LimitClass::Jobs), 1);
    }

    #[test]
    fn older_profile_has_fifty_creates_per_second() {
        assert_eq!(Limits::from_spec("adt-2021").unwrap().create_delete_per_s, 50);
    }

    #[test]
    fn unknown_profile_names_the_known_ones() {
        let err = Limits::from_spec("adt-1999").unwrap_err().to_string();
        assert!(err.contains("adt-2025") && err.contains("adt-2021"), "{err}");
    }

    #[test]
    fn a_typo_in_a_limits_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.toml");
        let bad = DEFAULT_LIMITS_TOML.replace("patch_per_s", "pach_per_s");
        std::fs::write(&path, bad).unwrap();
        let err = Limits::from_spec(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("pach_per_s"), "{err}");
    }
}
