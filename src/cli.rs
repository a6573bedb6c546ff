//! The command line. Each subcommand's flags live beside the code that runs it; this file only
//! composes them, sets up logging, and maps outcomes to exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::ExitStatus;

#[derive(Debug, Parser)]
#[command(
    name = "twinload",
    version,
    about = "Load models, twins and relationships into Azure Digital Twins, as fast as its limits allow, losing nothing."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load models, twins and relationships into an ADT instance.
    Load(crate::run::cli::LoadArgs),
    /// Dry run: read the inputs, check them, and explain what a load would do. Writes nothing.
    Plan(crate::plan::cli::PlanArgs),
    /// Generate a synthetic fleet as Import-Jobs NDJSON.
    Gen(crate::gen::GenArgs),
    /// Render a finished run's summary and timeline as one HTML page with charts.
    Report(crate::report::cli::ReportArgs),
    /// Run a whole load against an in-process mock ADT and print the summary.
    #[cfg(feature = "mock")]
    Demo(crate::demo::DemoArgs),
    /// Serve a mock of the ADT data plane on loopback.
    #[cfg(feature = "mock")]
    MockAdt(Box<crate::mock::cli::MockAdtArgs>),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitStatus::Usage } else { ExitStatus::Ok }.into();
        }
    };
    init_logging();
    let result = match cli.command {
        Command::Load(args) => crate::run::cli::run(args),
        Command::Plan(args) => crate::plan::cli::run(args),
        Command::Gen(args) => crate::gen::run(args),
        Command::Report(args) => crate::report::cli::run(args),
        #[cfg(feature = "mock")]
        Command::Demo(args) => crate::demo::run(args),
        #[cfg(feature = "mock")]
        Command::MockAdt(args) => crate::mock::cli::run(*args).map(|()| ExitStatus::Ok),
    };
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            crate::diag!("error: {e:#}");
            ExitStatus::Internal.into()
        }
    }
}

/// Logs go to stderr (stdout is for machine-readable output such as the mock's listening line).
/// `RUST_LOG` overrides the default level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn,actix_web=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::redact::Redacting(std::io::stderr()))
        // Its default reports a failed write with eprintln!, which panics on a closed stderr.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
