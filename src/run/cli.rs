//! `twinload load`: flags, and the mapping of the run's end to an exit code
//! (`crate::cli::exit`): OK when everything landed, DEAD_LETTERS when the run finished with
//! dead letters, SETUP_FAILED when configuration, inputs, auth or connectivity failed before
//! any write, STOPPED_EARLY at the deadline or on SIGTERM/SIGINT. As an ADF Custom activity
//! (`--activity`, or inside a Batch task without `--input`) the settings come from activity.json
//! and the summary also goes to outputs.json (`crate::adf`).

use crate::adf;
use crate::config::ConfigArgs;
use crate::diag;
use crate::exit::ExitStatus;

use super::LoadError;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Input files, folders (read recursively) or glob patterns: Import-Jobs NDJSON, DTDL
    /// model files, per-twin JSON documents, CSV. Required unless activity.json gives `input`.
    #[arg(long = "input", short = 'i', num_args = 1..)]
    pub inputs: Vec<String>,
    /// ADF's activity.json: settings from typeProperties.extendedProperties (flags and
    /// TWINLOAD_* still win). Inside a Batch task, $AZ_BATCH_TASK_WORKING_DIR/activity.json is
    /// read without this flag when no --input is given.
    #[arg(long, env = "TWINLOAD_ACTIVITY")]
    pub activity: Option<std::path::PathBuf>,
    /// Boxed: the config flags are many, and clap's command enum holds every subcommand.
    #[command(flatten)]
    pub config: Box<ConfigArgs>,
}

pub fn run(args: LoadArgs) -> anyhow::Result<ExitStatus> {
    let working_dir = std::env::var(adf::WORKING_DIR_VAR).ok();
    let resolved = match adf::resolve(args.activity.as_deref(), args.inputs, &args.config, working_dir.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            crate::diag!("error: {}", e.message);
            write_setup_failure(e.outputs_path.as_deref(), &e.message, &adf::Redactor::default());
            return Ok(ExitStatus::SetupFailed);
        }
    };
    let adf::Resolved { config, inputs, redactor } = resolved;
    let outputs_path = config.outputs_path.clone();
    if inputs.is_empty() {
        let message = "no inputs: give --input <file, folder or glob>, or `input` in activity.json";
        crate::diag!("error: {message}");
        write_setup_failure(outputs_path.as_deref(), message, &redactor);
        return Ok(ExitStatus::SetupFailed);
    }
    // The actors of the load run on this System; SIGTERM/SIGINT are the run's stop.
    let system = actix::System::new();
    let loaded = system.block_on(async { super::load(config, inputs, super::supervisor::signals::on_signal()).await });
    match loaded {
        Ok(summary) => {
            // The files first: what a pipeline reads must not depend on stderr being open.
            if let Some(path) = &outputs_path {
                let value = serde_json::to_value(&summary).unwrap_or_default();
                if let Err(e) = adf::outputs::write(path, value, &redactor) {
                    crate::diag!("warning: cannot write {}: {e}", path.display());
                }
            }
            diag::text(&redactor.redact(&summary.human()));
            if let Some(e) = &summary.journal_error {
                crate::diag!("error: {}; the run's dead letters are incomplete", redactor.redact(e));
            }
            Ok(summary.exit_code)
        }
        Err(LoadError::Setup(message)) => {
            let message = redactor.redact(&message);
            crate::diag!("error: {message}");
            write_setup_failure(outputs_path.as_deref(), &message, &redactor);
            Ok(ExitStatus::SetupFailed)
        }
        Err(LoadError::Internal(e)) => Err(anyhow::anyhow!(redactor.redact(&format!("{e:#}")))),
    }
}

/// outputs.json for a run that could not start, so the pipeline sees why.
fn write_setup_failure(path: Option<&std::path::Path>, message: &str, redactor: &adf::Redactor) {
    if let Some(path) = path {
        let value =
            serde_json::json!({"outcome": "setup_failed", "exit_code": ExitStatus::SetupFailed, "error": message});
        if let Err(e) = adf::outputs::write(path, value, redactor) {
            crate::diag!("warning: cannot write {}: {e}", path.display());
        }
    }
}
