//! `twinload plan`: a dry run. Reads and checks the inputs, and explains what a load would do:
//! counts by kind, what would be rejected and why (grouped by reason, with examples and
//! file:line), what must already exist in ADT, the model upload batches, and the ideal makespan
//! T* with what binds it. It never contacts ADT.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::{KindCounts, Makespan, Plan, PlanCounts, PlanOptions, ReasonCode, Rejected};
use crate::diag;
use crate::exit::ExitStatus;
use crate::item::ItemKind;
use crate::limits::Limits;
use crate::source::{open_inputs_with, read_all};

/// Examples shown per rejection code unless told otherwise.
pub const DEFAULT_EXAMPLES: usize = 5;
/// External ids listed in the report before "… and N more".
const LISTED_EXTERNALS: usize = 10;
/// Batches listed one by one in the report before the rest are summarised.
const LISTED_BATCHES: usize = 10;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Input files, folders (read recursively) or glob patterns; repeat or list several.
    #[arg(long = "input", short = 'i', required = true, num_args = 1..)]
    pub inputs: Vec<String>,
    /// ADT limits: a profile of config/limits.toml (adt-2025, adt-2021) or a limits file
    /// (`path.toml` or `path.toml#profile`). Default: ADT's documented limits of today.
    #[arg(long)]
    pub limits: Option<String>,
    /// Also write the whole plan as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Models per upload call (at most the limits' max_models_per_call).
    #[arg(long, default_value_t = PlanOptions::DEFAULT_MODEL_BATCH_SIZE)]
    pub model_batch_size: usize,
    /// Examples shown per kind of rejection.
    #[arg(long, default_value_t = DEFAULT_EXAMPLES)]
    pub examples: usize,
    /// The reference prototype's mapping file for per-twin documents and CSV (as `load`).
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Model of twins whose input names none (as `load`).
    #[arg(long)]
    pub model: Option<String>,
    /// A ledger (`load --ledger`): also show what `load --mode sync` would send, judged by the
    /// ledger alone (read, never written). Needs --endpoint, the instance the ledger belongs to.
    #[arg(long, requires = "endpoint")]
    pub ledger: Option<String>,
    /// The instance of --ledger (only checked against the ledger; plan never contacts ADT).
    #[arg(long, env = "TWINLOAD_ENDPOINT")]
    pub endpoint: Option<String>,
    /// The source --ledger belongs to (as `load --source`).
    #[arg(long, env = "TWINLOAD_SOURCE")]
    pub source: Option<String>,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitStatus> {
    let limits = match &args.limits {
        Some(spec) => match Limits::from_spec(spec) {
            Ok(l) => l,
            Err(e) => {
                crate::diag!("error: {e}");
                return Ok(ExitStatus::SetupFailed);
            }
        },
        None => Limits::adt_default(),
    };
    if args.model_batch_size == 0 || args.model_batch_size > limits.max_models_per_call {
        crate::diag!(
            "error: --model-batch-size must be between 1 and {} (ADT's models per call)",
            limits.max_models_per_call
        );
        return Ok(ExitStatus::SetupFailed);
    }
    let mapping = match args.mapping.as_deref().map(crate::source::mapping::Mapping::load).transpose() {
        Ok(m) => m.map(std::sync::Arc::new),
        Err(e) => {
            crate::diag!("error: {e}");
            return Ok(ExitStatus::SetupFailed);
        }
    };
    let input_options = crate::source::InputOptions { mapping, model: args.model.clone(), ..Default::default() };
    let sources = match open_inputs_with(&args.inputs, &input_options) {
        Ok(s) => s,
        Err(e) => {
            crate::diag!("error: {e}");
            return Ok(ExitStatus::SetupFailed);
        }
    };
    let files: Vec<String> = sources.iter().map(|s| s.name().to_string()).collect();
    let limits_for_mode = limits.clone();
    let opts = PlanOptions { limits, model_batch_size: args.model_batch_size, keep_bodies: false };
    let mut stage = match (&args.ledger, &args.endpoint) {
        (Some(ledger), Some(endpoint)) => {
            let identity = crate::ledger::Identity::new(endpoint, args.source.as_deref(), &args.inputs);
            match crate::ledger::Ledger::read_only(ledger, identity, &crate::azure::blob_url::BlobAccess::default()) {
                Ok(l) => crate::sync::Stage::offline(l),
                Err(e) => {
                    crate::diag!("error: {e}");
                    return Ok(ExitStatus::SetupFailed);
                }
            }
        }
        _ => crate::sync::Stage::inert(),
    };
    let started = Instant::now();
    let plan = Plan::build(stage.filter(read_all(sources)), &opts);
    let elapsed_s = started.elapsed().as_secs_f64();

    let status = if plan.rejected().is_empty() { ExitStatus::Ok } else { ExitStatus::DeadLetters };
    // The file first: it must not depend on stderr being open.
    let json_written = match &args.json {
        Some(path) => write_json(path, &PlanDocument::of(&plan, files.clone(), elapsed_s))
            .map_err(|e| format!("cannot write the plan {}: {e}; check the path and the free space", path.display())),
        None => Ok(()),
    };
    diag::text(&report(&plan, &files, elapsed_s, args.examples));
    crate::diag!("{}", load_mode_line(&plan, &limits_for_mode));
    if let Some(sync) = stage.report() {
        crate::diag!("{}", sync.plan_line());
    }
    match json_written {
        Ok(()) => Ok(status),
        Err(message) => {
            crate::diag!("error: {message}");
            Ok(status.with_output_failure())
        }
    }
}

/// The plan as JSON, flushed: a buffered writer dropped unflushed would lose the error.
fn write_json(path: &std::path::Path, document: &PlanDocument) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut out, document)?;
    std::io::Write::flush(&mut out)
}

/// How `load --mode auto` (the default) would write this plan: per item, or one import job,
/// and why. Only an empty instance is left to check, which `plan` cannot (it never contacts
/// ADT).
fn load_mode_line(plan: &Plan, limits: &Limits) -> String {
    let counts = plan.counts();
    let items = counts.models.to_write + counts.twins.to_write + counts.relationships.to_write;
    let mut config = crate::config::LoadConfig::new("https://plan.invalid");
    config.limits = limits.clone();
    config.mode = crate::config::WriteMode::Auto;
    config.import_job.staging = Some(crate::config::SecretUrl::new("https://staging.invalid/container"));
    match crate::import_job::choice::choose_offline(&config, items, plan.makespan().t_star_s) {
        Ok(per_item) => format!("Load mode (load --mode auto, the default): per item: {}", per_item.reason),
        Err(job) => format!(
            "Load mode (load --mode auto, the default): one import job if the instance holds no twins yet and --staging names a container ({}); per item otherwise",
            job.reason
        ),
    }
}

/// The plan as JSON (`--json`).
#[derive(Debug, Serialize)]
pub struct PlanDocument<'a> {
    pub inputs: Vec<String>,
    pub elapsed_s: f64,
    pub counts: PlanCounts,
    pub rejected_by_code: BTreeMap<ReasonCode, u64>,
    pub rejected: &'a [Rejected],
    /// Referenced but not in the input: must already exist in ADT.
    pub external_models: Vec<String>,
    pub external_twins: Vec<String>,
    pub model_batches: Vec<Vec<String>>,
    pub makespan: Makespan,
}

impl<'a> PlanDocument<'a> {
    pub fn of(plan: &'a Plan, inputs: Vec<String>, elapsed_s: f64) -> PlanDocument<'a> {
        PlanDocument {
            inputs,
            elapsed_s,
            counts: plan.counts(),
            rejected_by_code: by_code(plan.rejected())
                .into_iter()
                .map(|(code, list)| (code, list.len() as u64))
                .collect(),
            rejected: plan.rejected(),
            external_models: plan.external_models(),
            external_twins: plan.external_twins(),
            model_batches: plan.model_batches(),
            makespan: plan.makespan(),
        }
    }
}

fn by_code(rejected: &[Rejected]) -> BTreeMap<ReasonCode, Vec<&Rejected>> {
    let mut groups: BTreeMap<ReasonCode, Vec<&Rejected>> = BTreeMap::new();
    for r in rejected {
        groups.entry(r.code).or_default().push(r);
    }
    groups
}

/// The human report `twinload plan` prints on stderr.
pub fn report(plan: &Plan, files: &[String], elapsed_s: f64, examples: usize) -> String {
    let mut out = String::new();
    let counts = plan.counts();
    let _ = writeln!(
        out,
        "twinload plan: read {} input file(s) in {elapsed_s:.2} s; nothing was sent to ADT.",
        files.len()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "  {:<15}{:>12}{:>12}{:>12}", "", "read", "to write", "rejected");
    for kind in ItemKind::ALL {
        let KindCounts { read, to_write, rejected } = *counts.of(kind);
        let _ = writeln!(out, "  {:<15}{read:>12}{to_write:>12}{rejected:>12}", kind.plural());
    }
    if counts.file_errors > 0 {
        let _ = writeln!(out, "  {:<15}{:>36}", "file errors", counts.file_errors);
    }

    let groups = by_code(plan.rejected());
    if !groups.is_empty() {
        let _ = writeln!(
            out,
            "\nRejected: {} (a load would dead-letter these with the same reasons)",
            plan.rejected().len()
        );
        for (code, list) in &groups {
            let _ = writeln!(out, "  {code} ({})", list.len());
            for r in list.iter().take(examples) {
                let what = if r.is_item() { format!("{}: ", r.key) } else { String::new() };
                let _ = writeln!(out, "    {}: {what}{}", r.origin, r.reason);
            }
            if list.len() > examples {
                let _ = writeln!(out, "    … and {} more", list.len() - examples);
            }
        }
    }

    let models = plan.external_models();
    let twins = plan.external_twins();
    if !models.is_empty() || !twins.is_empty() {
        let _ = writeln!(out, "\nMust already exist in ADT (referenced, not in the input):");
        list_some(&mut out, "models", &models);
        list_some(&mut out, "twins", &twins);
    }

    let batches = plan.model_batches();
    let limits = &plan.options().limits;
    if !batches.is_empty() {
        let _ = writeln!(
            out,
            "\nModel uploads: {} batch(es) of at most {} models and {} bytes, each after the batches it needs:",
            batches.len(),
            plan.options().effective_batch_size(),
            limits.max_payload_bytes
        );
        for (i, b) in batches.iter().enumerate().take(LISTED_BATCHES) {
            let first = b.first().map(String::as_str).unwrap_or("");
            let last = b.last().map(String::as_str).unwrap_or("");
            let span = if b.len() > 1 { format!("{first} … {last}") } else { first.to_string() };
            let _ = writeln!(out, "  batch {}: {} model(s): {span}", i + 1, b.len());
        }
        if batches.len() > LISTED_BATCHES {
            let _ = writeln!(out, "  … and {} more batches", batches.len() - LISTED_BATCHES);
        }
    }

    let m = plan.makespan();
    let _ = writeln!(out, "\nIdeal makespan T* = {:.1} s, bound by {}:", m.t_star_s, m.bound_by);
    for c in &m.classes {
        let _ = writeln!(
            out,
            "  {:<15}{:>10} requests at {:>5}/s = {:>10.1} s",
            c.class.as_str(),
            c.writes,
            c.rate,
            c.seconds
        );
    }
    if let Some(b) = &m.busiest_twin {
        let _ = writeln!(
            out,
            "  {:<15}{:>10} writes   at {:>5}/s = {:>10.1} s  (twin {})",
            "busiest twin", b.writes, limits.per_twin_writes_per_s, b.seconds, b.id
        );
    }
    out
}

fn list_some(out: &mut String, what: &str, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let shown: Vec<&str> = ids.iter().take(LISTED_EXTERNALS).map(String::as_str).collect();
    let more = if ids.len() > LISTED_EXTERNALS {
        format!(", … and {} more", ids.len() - LISTED_EXTERNALS)
    } else {
        String::new()
    };
    let _ = writeln!(out, "  {} {what}: {}{more}", ids.len(), shown.join(", "));
}
