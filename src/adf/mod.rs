//! The Azure Data Factory Custom-activity contract (FIELD.md §2): settings from
//! `activity.json` ([`activity`]), found by itself inside a Batch task
//! (`$AZ_BATCH_TASK_WORKING_DIR/activity.json` when no `--input` is given), and the run's
//! summary as `outputs.json` in the working directory ([`outputs`]). SecureString values never
//! reach a message twinload writes ([`Redactor`]).

pub mod activity;
pub mod outputs;

use std::path::{Path, PathBuf};

use crate::config::{ConfigArgs, LoadConfig};

/// The variable Batch sets to the task's working directory (where ADF puts activity.json).
pub const WORKING_DIR_VAR: &str = "AZ_BATCH_TASK_WORKING_DIR";
pub const ACTIVITY_FILE: &str = "activity.json";
pub const OUTPUTS_FILE: &str = "outputs.json";
/// What a redacted secret is replaced with.
pub const REDACTED: &str = crate::redact::REDACTED;

/// Replaces known secret values in text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: Vec<String>) -> Redactor {
        // Longest first, so a secret that contains another is replaced whole.
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    /// `text` without this activity's secrets, nor anything [`crate::redact`] removes.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        crate::redact::redact(&out).into_owned()
    }
}

/// A load's configuration and inputs from flags, environment, activity.json and the config file.
#[derive(Debug)]
pub struct Resolved {
    pub config: LoadConfig,
    pub inputs: Vec<String>,
    pub redactor: Redactor,
}

/// Why the settings could not be resolved (message already redacted), and where outputs.json
/// goes if it can be told.
#[derive(Debug)]
pub struct ResolveError {
    pub message: String,
    pub outputs_path: Option<PathBuf>,
}

/// Which activity.json to read: `--activity`, else the Batch task's own when no `--input` is
/// given.
pub fn activity_path(flag: Option<&Path>, inputs: &[String], working_dir: Option<&str>) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(path.to_path_buf());
    }
    match working_dir {
        Some(wd) if inputs.is_empty() && !wd.is_empty() => Some(Path::new(wd).join(ACTIVITY_FILE)),
        _ => None,
    }
}

/// Resolves `twinload load`: flags > TWINLOAD_* > activity.json > config file > defaults. Inputs
/// from `--input` replace the activity's. outputs.json goes to the Batch working directory, or
/// next to an activity.json given with `--activity` outside Batch.
pub fn resolve(
    activity_flag: Option<&Path>,
    inputs: Vec<String>,
    args: &ConfigArgs,
    working_dir: Option<&str>,
) -> Result<Resolved, ResolveError> {
    let Some(path) = activity_path(activity_flag, &inputs, working_dir) else {
        let config = args.resolve().map_err(|e| ResolveError { message: e.to_string(), outputs_path: None })?;
        return Ok(Resolved { config, inputs, redactor: Redactor::default() });
    };
    let outputs_path = match working_dir.filter(|wd| !wd.is_empty()) {
        Some(wd) => Path::new(wd).join(OUTPUTS_FILE),
        None => path.parent().unwrap_or(Path::new(".")).join(OUTPUTS_FILE),
    };
    let fail = |message: String, redactor: &Redactor| ResolveError {
        message: redactor.redact(&message),
        outputs_path: Some(outputs_path.clone()),
    };
    let settings = activity::read(&path).map_err(|e| fail(e.to_string(), &Redactor::default()))?;
    let redactor = Redactor::new(settings.secrets.clone());
    let mut args = args.clone();
    if args.token.is_none() {
        args.token = settings.token.clone();
    }
    let mut config =
        args.resolve_over(settings.config, &path.display().to_string()).map_err(|e| fail(e.to_string(), &redactor))?;
    config.outputs_path = Some(outputs_path.clone());
    let inputs = if inputs.is_empty() { settings.inputs } else { inputs };
    Ok(Resolved { config, inputs, redactor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_working_dir_is_read_only_without_inputs() {
        let wd = Some("/mnt/batch/tasks/t1/wd");
        assert_eq!(activity_path(None, &[], wd), Some(PathBuf::from("/mnt/batch/tasks/t1/wd/activity.json")));
        assert_eq!(activity_path(None, &["x.ndjson".into()], wd), None, "--input wins over the task's activity");
        assert_eq!(activity_path(None, &[], None), None);
        assert_eq!(activity_path(Some(Path::new("a.json")), &["x".into()], wd), Some(PathBuf::from("a.json")));
    }

    #[test]
    fn redaction_replaces_every_secret() {
        let r = Redactor::new(vec!["abc".into(), "abcdef".into(), String::new()]);
        assert_eq!(r.redact("x abcdef y abc"), "x <redacted> y <redacted>");
    }
}
