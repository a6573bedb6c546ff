//! The process's exit status, documented in the README: scripts (Data Factory, Batch) branch
//! on it. Every subcommand returns one; [`crate::cli`] turns it into the process's exit code,
//! and the run summary carries it as a number (`exit_code`).

use serde::Serialize;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u8")]
#[repr(u8)]
pub enum ExitStatus {
    /// Everything landed (or was already there, unchanged).
    Ok = 0,
    /// An unexpected internal error.
    Internal = 1,
    /// The command line was wrong (clap's own code).
    Usage = 2,
    /// The run finished, but some items are in the dead-letter file (`plan`: some items would
    /// be rejected).
    DeadLetters = 3,
    /// Configuration, inputs, auth or connectivity failed before anything was written.
    SetupFailed = 4,
    /// The run stopped early (deadline, SIGTERM/SIGINT, the no-progress watchdog); items not
    /// attempted are listed.
    StoppedEarly = 5,
    /// The run finished, but a file it must leave could not be written: the summary
    /// (`--summary`), the dead-letter file, or `plan --json` (a full disk, a closed file). The
    /// error names the file; the summary is still printed on stderr. Replaces `Ok` and
    /// `DeadLetters` only: `SetupFailed` and `StoppedEarly` say more about the run.
    OutputFailed = 6,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// This status once an output file could not be written ([`ExitStatus::OutputFailed`]
    /// unless the status already says the run did not finish).
    pub fn with_output_failure(self) -> ExitStatus {
        match self {
            ExitStatus::Ok | ExitStatus::DeadLetters => ExitStatus::OutputFailed,
            other => other,
        }
    }
}

impl From<ExitStatus> for u8 {
    fn from(status: ExitStatus) -> u8 {
        status.code()
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> std::process::ExitCode {
        std::process::ExitCode::from(status.code())
    }
}
