//! The mock ADT (`twinload mock-adt`): an in-memory ADT data plane with the service's
//! validation, error codes, rate limits and faults.
//!
//! - [`store`]: the graph (models, twins, relationships), eventual consistency, export.
//! - [`validate`]: property values against DTDL schemas.
//! - [`query`]: the subset of the ADT query language the mock answers.
//! - [`api`]: the actix-web handlers of the data plane (`api::configure`).
//! - [`throttle`]: rate limits and the 429 answer.
pub mod api;
pub mod cli;
pub mod query;
pub mod store;
pub mod throttle;
pub mod validate;
