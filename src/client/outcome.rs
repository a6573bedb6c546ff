//! What one ADT call came to, classified for the supervisor. The client never retries: it
//! says what happened, and the supervisor decides.
//!
//! [`classify`] is the one place that reads a reply: every call of the client (writes, setup
//! checks, sync's reads and queries, import jobs) passes what came back through it, so a
//! throttle, a redirect or an oversized answer means the same thing to every caller.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::adt::{codes, ErrorBody};

use super::retry_after;
use super::transport::TransportFailure;

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
    /// 3xx: ADT never redirects, so the endpoint is not the instance (or something between
    /// sends the request elsewhere). Never followed: the write did not happen here, and the
    /// token must not go to another host.
    Redirected { location: String },
    /// The answer was longer than `max_response_bytes` and was not read to its end: retried
    /// as a transient failure.
    TooLarge { limit: u64 },
}

impl Outcome {
    /// Whether a later attempt may succeed: a throttle (after its wait), a transient failure,
    /// an oversized answer, a twin not visible yet.
    pub fn may_succeed_later(&self) -> bool {
        matches!(
            self,
            Outcome::Throttled { .. }
                | Outcome::Transient { .. }
                | Outcome::TooLarge { .. }
                | Outcome::TwinNotVisible { .. }
        )
    }

    /// What went wrong, in a few words (empty for a success).
    pub fn detail(&self) -> String {
        match self {
            Outcome::Landed | Outcome::AlreadyExists { .. } => String::new(),
            Outcome::Throttled { .. } => "throttled".into(),
            Outcome::Transient { detail } => detail.clone(),
            Outcome::TwinNotVisible { message } | Outcome::Rejected { message } | Outcome::AuthFailed { message } => {
                message.clone()
            }
            Outcome::Redirected { location } => format!(
                "the endpoint redirects to {location} (not followed: ADT never redirects, so this is not the \
                 instance's URL, or a proxy sends the request elsewhere)"
            ),
            Outcome::TooLarge { limit } => format!(
                "the answer was longer than {limit} bytes and was cut off there (max_response_bytes, \
                 --max-response-bytes)"
            ),
        }
    }
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

/// What came back for one request.
#[derive(Debug)]
pub enum Answer<'a> {
    /// A response: its status, headers, and as much of its body as was read.
    Response { status: StatusCode, headers: &'a HeaderMap, body: Body<'a> },
    /// No response: the request failed on the way.
    NoResponse { failure: TransportFailure, detail: String },
}

/// A response's body, as far as it was read.
#[derive(Debug)]
pub enum Body<'a> {
    Read(&'a [u8]),
    /// Longer than the cap: not read further.
    TooLarge {
        limit: u64,
    },
    /// The connection failed while it came in.
    Cut {
        detail: String,
    },
}

/// Classifies what came back for one request: the one place that decides what a reply means.
pub fn classify(answer: Answer<'_>, sent: Sent) -> Reply {
    let (status, headers, body) = match answer {
        Answer::NoResponse { failure, detail } => {
            return Reply::transport(format!("{}: {detail}", failure.stats_key()));
        }
        Answer::Response { status, headers, body } => (status, headers, body),
    };
    let etag = headers.get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
    let reply = |outcome| Reply { outcome, status: Some(status.as_u16()), code: None, etag: None };
    if status.is_redirection() {
        let location = headers
            .get(reqwest::header::LOCATION)
            .map(|v| crate::redact::redact(&String::from_utf8_lossy(v.as_bytes())).into_owned())
            .unwrap_or_else(|| "nowhere (no Location header)".into());
        return reply(Outcome::Redirected { location });
    }
    let body = match body {
        Body::Read(body) => body,
        Body::TooLarge { limit } => return reply(Outcome::TooLarge { limit }),
        // The status is in; a body cut off after a 2xx still means it was written.
        Body::Cut { .. } if status.is_success() => return Reply { etag, ..reply(Outcome::Landed) },
        Body::Cut { detail } => {
            return reply(Outcome::Transient { detail: format!("HTTP {status}, then the body was cut off: {detail}") })
        }
    };
    let error = ErrorBody::parse(body).map(|b| b.error);
    let code = error.as_ref().map(|e| e.code.clone());
    // A server may echo what it was sent (the Authorization header) into its error.
    let message = crate::redact::redact(&match &error {
        Some(e) => format!("{}: {}", e.code, e.message),
        None => format!("HTTP {status}{}", body_excerpt(body)),
    })
    .into_owned();
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

    /// A response read whole.
    fn read(status: StatusCode, headers: &HeaderMap, body: &[u8], sent: Sent) -> Reply {
        classify(Answer::Response { status, headers, body: Body::Read(body) }, sent)
    }

    #[test]
    fn a_redirect_names_its_location_and_never_lands() {
        let mut h = HeaderMap::new();
        h.insert("Location", HeaderValue::from_static("http://elsewhere.example/digitaltwins/t1?sig=abc"));
        for s in [301, 302, 307, 308] {
            let r = read(status(s), &h, b"", PLAIN);
            assert_eq!(
                r.outcome,
                Outcome::Redirected { location: "http://elsewhere.example/digitaltwins/t1?sig=<redacted>".into() }
            );
            assert!(!r.outcome.may_succeed_later());
        }
        let r = read(status(302), &HeaderMap::new(), b"", PLAIN);
        assert!(matches!(r.outcome, Outcome::Redirected { ref location } if location.contains("no Location")));
    }

    #[test]
    fn an_oversized_or_cut_body_is_transient_but_a_cut_after_a_success_landed() {
        let none = HeaderMap::new();
        let big = classify(
            Answer::Response { status: status(200), headers: &none, body: Body::TooLarge { limit: 9 } },
            PLAIN,
        );
        assert_eq!(big.outcome, Outcome::TooLarge { limit: 9 });
        assert!(big.outcome.may_succeed_later() && big.outcome.detail().contains("max_response_bytes"));
        let cut = |s| {
            classify(
                Answer::Response { status: status(s), headers: &none, body: Body::Cut { detail: "reset".into() } },
                PLAIN,
            )
        };
        assert_eq!(cut(201).outcome, Outcome::Landed);
        assert!(matches!(cut(503).outcome, Outcome::Transient { .. }));
        let gone = classify(Answer::NoResponse { failure: TransportFailure::Timeout, detail: "30 s".into() }, PLAIN);
        assert_eq!((gone.outcome, gone.status), (Outcome::Transient { detail: "timeout: 30 s".into() }, None));
    }

    #[test]
    fn an_echoed_authorization_header_is_not_kept_in_the_message() {
        let r = read(status(400), &HeaderMap::new(), b"you sent Authorization: Bearer eyJhbGci.secret", PLAIN);
        assert_eq!(
            r.outcome,
            Outcome::Rejected { message: "HTTP 400 Bad Request: you sent Authorization: Bearer <redacted>".into() }
        );
        let r = read(status(400), &HeaderMap::new(), &body("BadRequest", "header was Bearer eyJhbGci.secret"), PLAIN);
        assert_eq!(r.outcome, Outcome::Rejected { message: "BadRequest: header was Bearer <redacted>".into() });
    }

    #[test]
    fn success_and_throttling() {
        let none = HeaderMap::new();
        assert_eq!(read(status(200), &none, b"{}", PLAIN).outcome, Outcome::Landed);
        assert_eq!(read(status(201), &none, b"[]", PLAIN).outcome, Outcome::Landed);
        let mut h = HeaderMap::new();
        h.insert("Retry-After", HeaderValue::from_static("1"));
        let r = read(status(429), &h, &body("QuotaReachedError", "slow down"), PLAIN);
        assert_eq!(r.outcome, Outcome::Throttled { retry_after: Some(Duration::from_secs(1)) });
        assert_eq!((r.status, r.code.as_deref()), (Some(429), Some("QuotaReachedError")));
        // azure-sdk-for-js#25647: a throttle code without 429 and without Retry-After.
        let r = read(status(200), &none, &body("QuotaExceptionError", "busy"), PLAIN);
        assert_eq!(r.outcome, Outcome::Throttled { retry_after: None });
        let r = read(status(400), &none, &body("QuotaReachedError", "busy"), PLAIN);
        assert!(matches!(r.outcome, Outcome::Throttled { .. }));
    }

    #[test]
    fn transient_auth_and_target() {
        let none = HeaderMap::new();
        for s in [500, 502, 503, 504, 408] {
            assert!(matches!(read(status(s), &none, b"", PLAIN).outcome, Outcome::Transient { .. }), "{s}");
        }
        assert!(matches!(read(status(401), &none, b"", PLAIN).outcome, Outcome::AuthFailed { .. }));
        assert!(matches!(read(status(403), &none, b"", PLAIN).outcome, Outcome::AuthFailed { .. }));
        for code in ["TargetDigitalTwinNotFound", "TargetTwinNotFound"] {
            let r = read(status(404), &none, &body(code, "The target digital twin is invalid"), PLAIN);
            assert!(matches!(r.outcome, Outcome::TwinNotVisible { .. }), "{code}");
        }
        let r = read(status(404), &none, &body("DigitalTwinNotFound", "no source"), PLAIN);
        assert!(matches!(r.outcome, Outcome::Rejected { .. }));
        // On a relationship write, a source not visible yet is the same eventual consistency.
        let r = read(
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
            let r = read(status(409), &none, &body(code, msg), PLAIN);
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
        assert_eq!(read(status(412), &none, &b, CREATE_ONLY).outcome, Outcome::AlreadyExists { ids: vec![] });
        assert!(matches!(read(status(412), &none, &b, PLAIN).outcome, Outcome::Rejected { .. }));
    }

    #[test]
    fn rejections_carry_status_code_and_message() {
        let r = read(status(400), &HeaderMap::new(), &body("ValidationFailed", "Invalid twin specified"), PLAIN);
        assert_eq!(r.outcome, Outcome::Rejected { message: "ValidationFailed: Invalid twin specified".into() });
        assert_eq!((r.status, r.code.as_deref()), (Some(400), Some("ValidationFailed")));
        let r = read(status(413), &HeaderMap::new(), b"too big", PLAIN);
        assert_eq!(r.outcome, Outcome::Rejected { message: "HTTP 413 Payload Too Large: too big".into() });
        assert_eq!(r.code, None);
    }
}
