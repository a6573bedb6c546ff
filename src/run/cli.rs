//! `twinload load`: flags, and the mapping of the run's end to an exit code
//! (`crate::cli::exit`): OK when everything landed, DEAD_LETTERS when the run finished with
//! dead letters, SETUP_FAILED when configuration, inputs, auth or connectivity failed before
//! any write, STOPPED_EARLY at the deadline or on SIGTERM/SIGINT.

use crate::cli::exit;
use crate::config::ConfigArgs;

use super::LoadError;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Input files, folders (read recursively) or glob patterns: Import-Jobs NDJSON, DTDL
    /// model files.
    #[arg(long = "input", short = 'i', required = true, num_args = 1..)]
    pub inputs: Vec<String>,
    /// Boxed: the config flags are many, and clap's command enum holds every subcommand.
    #[command(flatten)]
    pub config: Box<ConfigArgs>,
}

pub fn run(args: LoadArgs) -> anyhow::Result<u8> {
    let config = match args.config.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::SETUP_FAILED);
        }
    };
    match super::load(config, args.inputs) {
        Ok(summary) => {
            eprint!("{}", summary.human());
            Ok(summary.exit_code)
        }
        Err(LoadError::Setup(message)) => {
            eprintln!("error: {message}");
            Ok(exit::SETUP_FAILED)
        }
        Err(LoadError::Internal(e)) => Err(e),
    }
}
