//! STUB (mock-ops), to be REPLACED by mock-api's `src/mock/api/` on merge: when merging, keep
//! mock-api's files and drop this one. It registers no route, so every data-plane path answers
//! 404 until the real handlers land.

/// STUB: registers nothing.
pub fn configure(_cfg: &mut actix_web::web::ServiceConfig) {}
