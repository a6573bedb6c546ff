//! What one ADT call came to, classified for the supervisor. The client never retries: it
//! says what happened, and the supervisor decides.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::adt::{codes, ErrorBody};

use super::retry_after;

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx: written.
    Landed,
    /// The thing is already there: `409 ModelIdAlreadyExists` (with the ids its message lists),
    /// or `412 PreconditionFailed` on a create-only write (no ids).
    AlreadyExists { ids: Vec<String> },
    /// 429, or a throttle error code on any status. Retry after the wait, and slow down.
    Throttled { retry_after: Option<Duration> },
    /// 5xx, 408, a timeout, a dropped/reset/refused connection. Retry (PUT is idempotent).
    Transient { detail: String },
    /// A relationship write's twin is not visible: 404 `TargetDigitalTwinNotFound` (the
    /// target), or `DigitalTwinNotFound` (the source) on a relationship write. For a twin this
    /// run created or found, that is ADT's eventual consistency, for a while.
    TwinNotVisible { message: String },
    /// Any other 4xx (and anything unexpected): the item is wrong; do not retry.
    Rejected { message: String },
    /// 401/403: the token or the role is wrong.
    AuthFailed { message: String },
}

/// An outcome with what the journal records: the HTTP status and ADT's error code, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub code: Option<String>,
    /// The `ETag` ADT answered with (a written twin or relationship's version), for the ledger.
    pub etag: Option<String>,
}

impl Reply {
    pub fn transport(detail: String) -> Reply {
        Reply { outcome: Outcome::Transient { detail }, status: None, code: None, etag: None }
    }
}

/// What the classification needs to know of the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// It carried `If-None-Match: *`, which is what makes a 412 mean "already exists".
    pub create_only: bool,
    /// It wrote a relationship, so a missing source twin (`DigitalTwinNotFound`) is a twin
    /// not visible yet rather than a bad item.
    pub relationship: bool,
}

/// Classifies a response by status, headers and body.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], sent: Sent) -> Reply {
    let error = ErrorBody::parse(body).map(|b| b.error);
    let code = error.as_ref().map(|e| e.code.clone());
    let message = match &error {
        Some(e) => format!("{}: {}", e.code, e.message),
        None => format!("HTTP {status}{}", body_excerpt(body)),
    };
    let throttle_code = code.as_deref().is_some_and(codes::is_throttle_code);
    let outcome = if status.is_success() && !throttle_code {
        Outcome::Landed
    } else if status == StatusCode::TOO_MANY_REQUESTS || throttle_code {
        Outcome::Throttled { retry_after: retry_after::parse(headers, SystemTime::now()) }
    } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        Outcome::Transient { detail: message }
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        Outcome::AuthFailed { message }
    } else if status == StatusCode::NOT_FOUND && code.as_deref().is_some_and(|c| is_twin_missing(c, sent.relationship))
    {
        Outcome::TwinNotVisible { message }
    } else if status == StatusCode::CONFLICT && code.as_deref().is_some_and(codes::is_model_exists) {
        let listed = error.as_ref().map(|e| e.message.as_str()).unwrap_or_default();
        Outcome::AlreadyExists { ids: listed_model_ids(listed) }
    } else if status == StatusCode::PRECONDITION_FAILED && sent.create_only {
        Outcome::AlreadyExists { ids: Vec::new() }
    } else {
        Outcome::Rejected { message }
    };
    let etag = headers.get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
    Reply { outcome, status: Some(status.as_u16()), code, etag }
}

fn is_twin_missing(code: &str, relationship: bool) -> bool {
    codes::is_target_missing(code) || (relationship && code == codes::DIGITAL_TWIN_NOT_FOUND)
}

/// The DTMIs a `ModelIdAlreadyExists` message lists ("Some of the model ids already exist:
/// dtmi:a;1, dtmi:b;1. Use Model_List API…"). The caller intersects them with what it sent,
/// so a stray match is harmless.
pub fn listed_model_ids(message: &str) -> Vec<String> {
    let is_dtmi_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | ';' | '.');
    let mut ids = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find("dtmi:") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_dtmi_char(c)).unwrap_or(tail.len());
        // A sentence-ending period is not part of the id (a v3 version "1.2" keeps its dot).
        let id = tail[..end].trim_end_matches('.');
        if id.contains(';') {
            ids.push(id.to_string());
        }
        rest = &tail[end..];
    }
    ids
}

/// The start of a non-ADT error body, for a message a person can read.
fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const PLAIN: Sent = Sent { create_only: false, relationship: false };
    const CREATE_ONLY: Sent = Sent { create_only: true, relationship: false };

    fn body(code: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody::new(code, message)).unwrap()
    }

    fn status(n: u16) -> StatusCode {
        StatusCode::from_u16(n).unwrap()
    }

    #[test]
    fn success_and_throttling() {
        let none = HeaderMap::new();
        assert_eq!(classify(status(200), &none, b"{}", PLAIN).outcome, Outcome::Landed);
        assert_eq!(classify(status(201), &none, b"[]", PLAIN).outcome, Outcome::Landed);
        let mut h = HeaderMap::new();
        h.insert("Retry-After", HeaderValue::from_static("1"));
        let r = classify(status(429), &h, &body("QuotaReachedError", "slow down"), PLAIN);
        assert_eq!(r.outcome, Outcome::Throttled { retry_after: Some(Duration::from_secs(1)) });
        assert_eq!((r.status, r.code.as_deref()), (Some(429), Some("QuotaReachedError")));
        // azure-sdk-for-js#25647: a throttle code without 429 and without Retry-After.
        let r = classify(status(200), &none, &body("QuotaExceptionError", "busy"), PLAIN);
        assert_eq!(r.outcome, Outcome::Throttled { retry_after: None });
        let r = classify(status(400), &none, &body("QuotaReachedError", "busy"), PLAIN);
        assert!(matches!(r.outcome, Outcome::Throttled { .. }));
    }

    #[test]
    fn transient_auth_and_target() {
        let none = HeaderMap::new();
        for s in [500, 502, 503, 504, 408] {
            assert!(matches!(classify(status(s), &none, b"", PLAIN).outcome, Outcome::Transient { .. }), "{s}");
        }
        assert!(matches!(classify(status(401), &none, b"", PLAIN).outcome, Outcome::AuthFailed { .. }));
        assert!(matches!(classify(status(403), &none, b"", PLAIN).outcome, Outcome::AuthFailed { .. }));
        for code in ["TargetDigitalTwinNotFound", "TargetTwinNotFound"] {
            let r = classify(status(404), &none, &body(code, "The target digital twin is invalid"), PLAIN);
            assert!(matches!(r.outcome, Outcome::TwinNotVisible { .. }), "{code}");
        }
        let r = classify(status(404), &none, &body("DigitalTwinNotFound", "no source"), PLAIN);
        assert!(matches!(r.outcome, Outcome::Rejected { .. }));
        // On a relationship write, a source not visible yet is the same eventual consistency.
        let r = classify(
            status(404),
            &none,
            &body("DigitalTwinNotFound", "no source"),
            Sent { create_only: false, relationship: true },
        );
        assert!(matches!(r.outcome, Outcome::TwinNotVisible { .. }));
    }

    #[test]
    fn model_conflicts_list_the_existing_ids() {
        let none = HeaderMap::new();
        let msg = "Some of the model ids already exist: dtmi:a:b;1, dtmi:c;2, dtmi:v3:x;1.2. Use Model_List API to view models that already exist.";
        for code in ["ModelIdAlreadyExists", "ModelAlreadyExists"] {
            let r = classify(status(409), &none, &body(code, msg), PLAIN);
            assert_eq!(
                r.outcome,
                Outcome::AlreadyExists { ids: vec!["dtmi:a:b;1".into(), "dtmi:c;2".into(), "dtmi:v3:x;1.2".into()] }
            );
        }
    }

    #[test]
    fn precondition_failed_means_exists_only_for_create_only() {
        let none = HeaderMap::new();
        let b = body("PreconditionFailed", "exists");
        assert_eq!(classify(status(412), &none, &b, CREATE_ONLY).outcome, Outcome::AlreadyExists { ids: vec![] });
        assert!(matches!(classify(status(412), &none, &b, PLAIN).outcome, Outcome::Rejected { .. }));
    }

    #[test]
    fn rejections_carry_status_code_and_message() {
        let r = classify(status(400), &HeaderMap::new(), &body("ValidationFailed", "Invalid twin specified"), PLAIN);
        assert_eq!(r.outcome, Outcome::Rejected { message: "ValidationFailed: Invalid twin specified".into() });
        assert_eq!((r.status, r.code.as_deref()), (Some(400), Some("ValidationFailed")));
        let r = classify(status(413), &HeaderMap::new(), b"too big", PLAIN);
        assert_eq!(r.outcome, Outcome::Rejected { message: "HTTP 413 Payload Too Large: too big".into() });
        assert_eq!(r.code, None);
    }
}
