//! `twinload report <summary.json> [--out page.html]`.

use std::path::PathBuf;

use anyhow::Context;

use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run's JSON summary (`twinload load --summary`); its timeline is read from next to it.
    pub summary: PathBuf,
    /// Where to write the page. Default: the summary's path with `.html`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Renders the page and prints its path on stdout.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitStatus> {
    let page = match super::render_files(&args.summary) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitStatus::Usage);
        }
    };
    let out = args.out.unwrap_or_else(|| args.summary.with_extension("html"));
    std::fs::write(&out, crate::redact::redact(&page).as_bytes())
        .with_context(|| format!("writing the report {}", out.display()))?;
    println!("{}", out.display());
    Ok(ExitStatus::Ok)
}
