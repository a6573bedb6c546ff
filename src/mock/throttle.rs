//! STUB by mock-api, to be replaced by mock-ops' real `throttle.rs` (same API): per-twin write
//! admission and the shared 429 answer. This stub admits everything.

use std::time::Duration;

use actix_web::HttpResponse;

use crate::adt::{codes, ErrorBody};

/// Per-instance rate limits. The stub has none.
#[derive(Debug, Default)]
pub struct Throttle {}

/// Held while a write to the admitted twins is in flight.
#[derive(Debug)]
pub struct TwinWritePermit {}

impl Throttle {
    pub fn new(_limits: &crate::limits::Limits) -> Throttle {
        Throttle {}
    }

    pub fn unlimited() -> Throttle {
        Throttle {}
    }

    /// Spends one write of each twin's per-second budget; `Err(retry_after)` means answer 429.
    pub fn admit_twin_writes(&self, _twins: &[&str]) -> Result<TwinWritePermit, Duration> {
        Ok(TwinWritePermit {})
    }
}

/// The 429 answer: `Retry-After` in whole seconds (rounded up, at least 1) and ADT's body.
pub fn too_many_requests(retry_after: Duration, what: &str) -> HttpResponse {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let body = ErrorBody::new(codes::QUOTA_REACHED_ERROR, format!("Too many requests for {what}. Retry after {seconds} s."));
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", seconds.to_string()))
        .insert_header(("x-ms-retry-after-ms", retry_after.as_millis().to_string()))
        .json(body)
}
