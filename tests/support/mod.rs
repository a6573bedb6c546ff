//! Helpers for tests that need Blob Storage: Azurite on a free loopback port, and SAS tokens
//! signed with Azurite's well-known account key.
//!
//! A minimal helper written for issue 10 while issue 7b's shared Azurite helper is not yet on
//! main; swap to theirs once it lands.

#![allow(dead_code)] // each test binary uses its own subset

pub mod azurite;
pub mod sas;
