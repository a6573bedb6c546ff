//! The actors of a load.
pub mod cli;
