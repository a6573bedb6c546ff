//! The planner (owned by the loader issue).
pub mod cli;
