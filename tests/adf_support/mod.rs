//! Data Factory and Batch as the shipped pipelines meet them, for tests: the factory's files in
//! config/adf ([`factory`]), the expression language subset they use ([`expression`]), the ARM
//! template that deploys them ([`arm`]), and a pipeline run that lays out and
//! starts each Custom activity's task as Batch does ([`batch`]).

#![allow(dead_code)] // each test binary uses its own subset

pub mod arm;
pub mod batch;
pub mod expression;
pub mod factory;
