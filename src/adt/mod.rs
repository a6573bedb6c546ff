//! What twinload knows of the ADT data plane, shared by the client and the mock: the
//! api-version, paths, error codes and bodies, and which limit class a request falls in.
//! Facts come from `ADT-REFERENCE.md`; where the live service and the spec disagree, the live
//! service wins.

pub mod codes;
pub mod error_body;
pub mod paths;
pub mod request_class;

/// The api-version twinload speaks, and the only one the mock accepts.
pub const API_VERSION: &str = "2023-10-31";

/// Token scope for Microsoft Entra (v2 endpoint).
pub const TOKEN_SCOPE: &str = "https://digitaltwins.azure.net/.default";

pub use error_body::{AdtError, ErrorBody};
pub use request_class::{classify, RequestShape};
