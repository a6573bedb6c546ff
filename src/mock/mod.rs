//! The mock ADT (owned by the mock issue). See `server` for the entry point.
pub mod cli;
