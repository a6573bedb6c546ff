//! twinload loads models, twins and relationships into Azure Digital Twins (ADT) as fast as
//! ADT's rate limits allow, with nothing lost, duplicated or written out of order. It runs as
//! the Custom activity of an Azure Data Factory pipeline on Azure Batch, or on a laptop.
//!
//! # Module map
//!
//! Shared facts
//! - [`adt`]: the ADT data plane as both sides see it: api-version, paths, error codes and
//!   bodies, and which rate-limit class a request falls in.
//! - [`dtdl`]: DTMI syntax and the parts of a DTDL Interface that loading needs.
//! - [`limits`]: ADT's service limits as configuration profiles (`config/limits.toml`).
//! - [`item`]: the items a load moves (model, twin, relationship), their identity and origin.
//!
//! The loader (`twinload load`, `plan`, `gen`)
//! - [`source`]: lists inputs (files, folders, globs, Blob Storage containers) and streams parsed items from them:
//!   Import-Jobs NDJSON, DTDL files, per-twin JSON documents, CSV, through the prototype's
//!   mapping file; and a task's share of them (`--shard`, `--phase`).
//! - [`azure`]: the Azure SDK side: identity (`--credential`), the shared HTTPS transport
//!   (`--ca-cert`), Blob Storage URLs (inputs are listed and streamed by [`source`]), archiving
//!   input blobs after a run, Key Vault secrets.
//! - [`plan`]: the dependency graph (petgraph), pre-flight checks, model batches, the ideal
//!   makespan T*, and the scheduler that releases an item once all it depends on has landed;
//!   the items' bodies wait in a temporary file (`TMPDIR`) until they are sent.
//! - [`client`]: the ADT REST client: one attempt per call, errors classified for the supervisor.
//! - [`http`]: the one HTTP stack every client starts from (reqwest over rustls with ring,
//!   the system's roots plus `--ca-cert`).
//! - [`limiter`]: the token buckets every writer shares (per limit class, per twin), with the
//!   adaptive rate that backs off when ADT is full, and tells that from 429s that come at one
//!   share whatever the rate (`throttle_share`).
//! - [`run`]: the actors of a load (ingestion, coordinator, writers, supervisor), the messages
//!   between them, the journal every item's end passes through, and the summary.
//! - [`reason`]: the dead letters' reason codes, from the planner's checks to the last retry.
//! - [`redact`]: secrets never printed: tokens, `Bearer …`, SAS signatures and SecureString
//!   values are removed from every output (the bottom layer: it imports nothing of the crate).
//! - [`observe`]: Prometheus metrics of a run (names, `/metrics` listener, Pushgateway push).
//! - [`import_job`]: big first loads through ADT's Import Jobs API (`--mode import-job`, and
//!   `auto`'s choice between it and the per-item API): NDJSON to a staging blob, poll, follow
//!   the job's log back into dead letters with file and line, cancel on SIGTERM.
//! - [`config`]: the loader's configuration: TOML file, `TWINLOAD_*` environment, flags.
//! - [`adf`]: the Azure Data Factory Custom-activity contract: settings from `activity.json`
//!   (extended properties, SecureStrings, the reference prototype's properties) and the summary
//!   as `outputs.json`.
//! - [`ledger`]: what landed, per item (content hash, ETag, target), kept across runs in a local
//!   file or a blob: resume after a crash, skip what is unchanged, scope a prune.
//! - [`sync`]: `--mode sync` (only differences: JSON Patch diff, creates, replaces), reading
//!   ADT's state by query, `--prune` planning with its `--max-deletes` guard.
//! - [`gen`]: the synthetic fleet generator.
//!
//! The mock ADT (`twinload mock-adt`)
//! - [`mock`]: an in-memory ADT data plane with the service's validation, error codes, rate
//!   limits, faults on switches, TLS and an inspection API.
//!
//! - [`verify`]: compares two graphs (input vs. what ADT holds) so a run can prove nothing was lost.
//!
//! Entry points
//! - [`cli`]: the command line; `src/main.rs` only calls [`cli::main`].
//! - [`exit`]: the exit status every subcommand returns (documented in the README).
//! - [`diag`]: messages on stderr that never panic, even on a closed pipe or a full disk.
//! - [`report`]: `twinload report`: a run's summary and timeline as one HTML page with SVG charts.
//! - [`demo`]: `twinload demo`: mock, generated fleet, full load, check, summary.

// The ADT facts shared with the mock live in their own crate (crates/adt).
pub use twinload_adt as adt;
pub use twinload_adt::{dtdl, limits};

pub mod adf;
pub mod azure;
pub mod cli;
pub mod client;
pub mod config;
#[cfg(feature = "mock")]
pub mod demo;
pub mod diag;
pub mod exit;
pub mod gen;
pub mod http;
pub mod import_job;
pub mod item;
pub mod ledger;
pub mod limiter;
pub mod observe;
#[cfg(feature = "mock")]
pub use twinload_mock as mock;
pub mod plan;
pub mod reason;
pub mod redact;
pub mod report;
pub mod run;
pub mod source;
pub mod sync;
pub mod verify;
