//! The mock ADT: an in-memory ADT data plane with the service's validation, error codes, rate
//! limits, faults on switches, TLS and an inspection API. See [`server::start`] for the
//! library entry point and [`cli`] for `twinload mock-adt`.
pub mod api;
pub mod auth;
pub mod cli;
pub mod faults;
pub mod inspect;
pub mod server;
pub mod store;
pub mod throttle;
pub mod tls;
