//! The mock ADT (`twinload mock-adt`): an in-memory ADT data plane with the service's
//! validation, error codes, rate limits, faults on switches, TLS and an inspection API.
//! A crate of its own so that the loader's lean build (`--no-default-features`) carries no
//! server; the full `twinload` binary re-exports it as `twinload::mock`.
//! [`server::start`] is the library entry point; [`cli`] is `twinload mock-adt`.
//!
//! - [`store`]: the graph (models, twins, relationships), eventual consistency, export.
//! - [`validate`]: property values against DTDL schemas.
//! - [`query`]: the subset of the ADT query language the mock answers.
//! - [`api`]: the actix-web handlers of the data plane (`api::configure`), the Jobs API included.
//! - [`jobs`]: Import and Delete Jobs: the one-bulk-job slot, the job runner (NDJSON input from
//!   Blob Storage, applied through the store at a server-side rate), the output log blob.
//! - [`throttle`]: rate limits per class and per twin, and the 429 answer.
//! - [`faults`]: seeded 429/5xx, latency, dropped connections.
//! - [`auth`]: the bearer-token check.
//! - [`tls`]: HTTPS with given or generated certificates.
//! - [`inspect`]: `/_mock/*` (stats, export, reset) and `/metrics`.
//! - [`server`]: assembles the app and runs it on its own thread.
// The ADT facts this crate shares with the loader, under the names the modules use.
pub(crate) use twinload_adt as adt;
pub(crate) use twinload_adt::{dtdl, limits};

pub mod api;
pub mod auth;
pub mod cli;
pub mod faults;
pub mod inspect;
pub mod jobs;
pub mod query;
pub mod server;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod validate;
