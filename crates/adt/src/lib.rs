//! What twinload knows of Azure Digital Twins, shared by the loader (`twinload`) and the mock
//! ADT (`twinload-mock`): the data plane's api-version, paths, error codes and bodies, and which
//! limit class a request falls in (this file and its modules); the service's limits as
//! configuration profiles ([`limits`]); and DTMI syntax and what loading needs of a DTDL
//! Interface ([`dtdl`]). The loader re-exports this crate as `twinload::adt`.
//! Facts come from `ADT-REFERENCE.md`; where the live service and the spec disagree, the live
//! service wins.

pub mod codes;
pub mod dtdl;
pub mod error_body;
pub mod limits;
pub mod paths;
pub mod request_class;

/// The api-version twinload speaks, and the only one the mock accepts.
pub const API_VERSION: &str = "2023-10-31";

/// Token scope for Microsoft Entra (v2 endpoint).
pub const TOKEN_SCOPE: &str = "https://digitaltwins.azure.net/.default";

pub use error_body::{AdtError, ErrorBody};
pub use request_class::{classify, RequestShape};
