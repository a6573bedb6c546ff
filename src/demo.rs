//! `twinload demo`: the whole job on an embedded default. It starts the mock ADT in this
//! process with ADT's documented limits, generates a fleet, loads it exactly as `twinload load`
//! would (over HTTP, with a bearer token), then proves the mock holds exactly the input graph
//! and prints the summary. It is the README's first command.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Auth, LoadConfig, SecretToken};
use crate::exit::ExitStatus;
use crate::gen::{generate, GenOptions};
use crate::limits::Limits;
use crate::mock::auth::AuthConfig;
use crate::mock::server::{self, MockConfig};
use crate::verify::{diff, Graph};

/// Twins in the demo fleet: big enough to exercise ordering, batching and the per-twin limit,
/// small enough to finish in well under a minute at ADT's 500 creates/s.
pub const DEFAULT_DEMO_TWINS: u64 = 3_000;
pub const DEFAULT_DEMO_SEED: u64 = 42;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Twins in the generated fleet (relationships are about twice as many).
    #[arg(long, default_value_t = DEFAULT_DEMO_TWINS)]
    pub twins: u64,
    /// Seed of the generated fleet (same seed, same fleet).
    #[arg(long, default_value_t = DEFAULT_DEMO_SEED)]
    pub seed: u64,
    /// Limits the mock enforces and the loader obeys: a profile of config/limits.toml
    /// ("adt-2025", "adt-2021") or a limits file.
    #[arg(long, default_value = "adt-2025")]
    pub limits: String,
    /// Keep the fleet, summary and dead letters in this folder (default: a temporary folder
    /// that is removed afterwards).
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitStatus> {
    let limits = Limits::from_spec(&args.limits)?;
    let temp;
    let workdir: &Path = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path()
        }
    };

    // A token of this run only: the mock demands exactly it, as ADT demands a valid one.
    let token = format!("demo-{}", uuid::Uuid::new_v4());
    let mock = server::start(MockConfig {
        limits: Some(limits.clone()),
        auth: AuthConfig::Token(token.clone()),
        ..MockConfig::default()
    })
    .context("starting the in-process mock ADT")?;
    eprintln!(
        "demo: mock ADT listening on {} with limits '{}' ({} creates/s)",
        mock.url, args.limits, limits.create_delete_per_s
    );

    let fleet_path = workdir.join("fleet.ndjson");
    let stats = generate(
        &GenOptions::new(args.twins, args.seed),
        File::create(&fleet_path).context("creating the fleet file")?,
    )
    .context("generating the fleet")?;
    eprintln!(
        "demo: generated {} models, {} twins, {} relationships into {}",
        stats.models,
        stats.twins,
        stats.relationships,
        fleet_path.display()
    );

    let mut config = LoadConfig::new(mock.url.clone());
    config.auth = Auth::BearerToken { token: SecretToken::new(token) };
    config.limits = limits;
    config.summary_path = Some(workdir.join("summary.json"));
    config.dead_letter_path = workdir.join("dead-letters.ndjson");
    let inputs = vec![fleet_path.display().to_string()];
    // The loader runs on an actix System of its own, so it gets a thread of its own.
    let summary = std::thread::spawn(move || {
        actix::System::new()
            .block_on(async { crate::run::load(config, inputs, crate::run::supervisor::signals::on_signal()).await })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    eprint!("{}", summary.human());

    let expected = Graph::from_ndjson(BufReader::new(File::open(&fleet_path)?)).context("reading the fleet back")?;
    let mut exported = Vec::new();
    mock.store().export_ndjson(&mut exported).context("exporting the mock's graph")?;
    let actual = Graph::from_ndjson(exported.as_slice()).context("reading the mock's export")?;
    let difference = diff(&expected, &actual);
    let (models, twins, relationships) = actual.counts();
    let violations = mock.store().order_violations_total();
    mock.stop();

    if difference.is_empty() && violations == 0 {
        eprintln!(
            "demo: verified: the mock holds exactly the input graph ({models} models, {twins} twins, {relationships} relationships), and no write came out of dependency order"
        );
    } else {
        eprintln!("demo: VERIFICATION FAILED: {}; out-of-order writes: {violations}", difference.describe());
        return Ok(ExitStatus::DeadLetters);
    }
    if args.keep.is_some() {
        eprintln!("demo: fleet, summary.json and dead-letters.ndjson are in {}", workdir.display());
    }
    // The report outlives a temporary work folder: without --keep it goes to a folder of its own.
    let report_dir = match &args.keep {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("twinload-demo-{}", uuid::Uuid::new_v4())),
    };
    std::fs::create_dir_all(&report_dir).with_context(|| format!("creating {}", report_dir.display()))?;
    let report = report_dir.join("report.html");
    let page = crate::report::render_files(&workdir.join("summary.json"))?;
    std::fs::write(&report, page).with_context(|| format!("writing {}", report.display()))?;
    eprintln!("demo: run report: {}", report.display());
    Ok(summary.exit_code)
}
