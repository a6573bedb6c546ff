//! Bearer-token auth on the data plane, as ADT requires `Authorization: Bearer <token>`.
//!
//! The mock cannot check a Microsoft Entra token, so it accepts any non-empty bearer token, or
//! only one expected value when told. A refusal is `401` with ADT's error body; neither the
//! answer nor any log line carries the token that was sent.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use super::server::pass_on;
use crate::adt::{codes, ErrorBody};

/// Which requests the mock lets in.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum AuthConfig {
    /// No token needed (`--no-auth`).
    Off,
    /// Any non-empty bearer token (the default: clients must send one, as for ADT).
    #[default]
    AnyBearer,
    /// Only this bearer token (`--token`).
    Token(String),
    /// Only the tokens listed in this file, one a line, read at every request
    /// (`--token-file`): a test's token endpoint adds the tokens it issues and removes the
    /// ones it revokes, so tokens that change on refresh can be checked.
    TokenFile(std::path::PathBuf),
}

impl std::fmt::Debug for AuthConfig {
    /// Never prints the expected token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthConfig::Off => f.write_str("Off"),
            AuthConfig::AnyBearer => f.write_str("AnyBearer"),
            AuthConfig::Token(_) => f.write_str("Token(<redacted>)"),
            AuthConfig::TokenFile(path) => write!(f, "TokenFile({})", path.display()),
        }
    }
}

/// Why a request was refused (the message is safe to send and log: it never holds the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    Missing,
    NotBearer,
    WrongToken,
}

impl AuthRefusal {
    fn message(self) -> &'static str {
        match self {
            AuthRefusal::Missing => "The request has no Authorization header. Send 'Authorization: Bearer <token>' with a token for https://digitaltwins.azure.net.",
            AuthRefusal::NotBearer => "The Authorization header is not a bearer token. Send 'Authorization: Bearer <token>'.",
            AuthRefusal::WrongToken => "The bearer token is not valid for this instance.",
        }
    }
}

impl AuthConfig {
    /// Checks an `Authorization` header value against the rule.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), AuthRefusal> {
        let expected = match self {
            AuthConfig::Off => return Ok(()),
            AuthConfig::AnyBearer => None,
            AuthConfig::Token(t) => Some(t.as_bytes()),
            AuthConfig::TokenFile(path) => {
                let value = authorization.ok_or(AuthRefusal::Missing)?;
                let token = bearer_token(value).ok_or(AuthRefusal::NotBearer)?;
                // An unreadable file accepts nothing.
                let listed = std::fs::read(path).unwrap_or_default();
                let known = listed.split(|b| *b == b'\n').any(|line| constant_time_eq(line.trim_ascii(), token));
                return if known { Ok(()) } else { Err(AuthRefusal::WrongToken) };
            }
        };
        let value = authorization.ok_or(AuthRefusal::Missing)?;
        let token = bearer_token(value).ok_or(AuthRefusal::NotBearer)?;
        match expected {
            None => Ok(()),
            Some(expected) if constant_time_eq(expected, token) => Ok(()),
            Some(_) => Err(AuthRefusal::WrongToken),
        }
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, as RFC 6750 allows); `None` when the
/// scheme is not Bearer or the token is empty.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = value[SCHEME.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares without stopping at the first difference, so response timing says nothing about
/// how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 401 ADT-style answer.
pub fn unauthorized(refusal: AuthRefusal) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(ErrorBody::new(codes::UNAUTHORIZED, refusal.message()))
}

/// Middleware: refuses data-plane requests without an acceptable bearer token.
pub async fn require_bearer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(auth) = req.app_data::<web::Data<AuthConfig>>() {
        let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if let Err(refusal) = auth.check(header) {
            return Ok(req.into_response(unauthorized(refusal)));
        }
    }
    pass_on(req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bearer_needs_a_non_empty_bearer_token() {
        let auth = AuthConfig::AnyBearer;
        assert_eq!(auth.check(None), Err(AuthRefusal::Missing));
        assert_eq!(auth.check(Some(b"Basic abc")), Err(AuthRefusal::NotBearer));
        assert_eq!(auth.check(Some(b"Bearer ")), Err(AuthRefusal::NotBearer));
        assert_eq!(auth.check(Some(b"Bearer    ")), Err(AuthRefusal::NotBearer));
        assert_eq!(auth.check(Some(b"Bearer eyJ0eXAi")), Ok(()));
        assert_eq!(auth.check(Some(b"bearer eyJ0eXAi")), Ok(()));
    }

    #[test]
    fn an_expected_token_must_match_exactly() {
        let auth = AuthConfig::Token("s3cret".into());
        assert_eq!(auth.check(Some(b"Bearer s3cret")), Ok(()));
        assert_eq!(auth.check(Some(b"Bearer s3cre")), Err(AuthRefusal::WrongToken));
        assert_eq!(auth.check(Some(b"Bearer s3cretX")), Err(AuthRefusal::WrongToken));
    }

    #[test]
    fn a_token_file_accepts_the_tokens_listed_at_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let auth = AuthConfig::TokenFile(path.clone());
        assert_eq!(auth.check(Some(b"Bearer one")), Err(AuthRefusal::WrongToken), "no file: nothing accepted");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(auth.check(Some(b"Bearer two")), Ok(()));
        std::fs::write(&path, "two\n").unwrap();
        assert_eq!(auth.check(Some(b"Bearer one")), Err(AuthRefusal::WrongToken));
        assert_eq!(auth.check(None), Err(AuthRefusal::Missing));
        assert!(!format!("{auth:?}").contains("two"));
    }

    #[test]
    fn off_lets_everything_in() {
        assert_eq!(AuthConfig::Off.check(None), Ok(()));
    }

    #[test]
    fn the_token_is_never_printed() {
        let auth = AuthConfig::Token("s3cret".into());
        assert!(!format!("{auth:?}").contains("s3cret"));
        for refusal in [AuthRefusal::Missing, AuthRefusal::NotBearer, AuthRefusal::WrongToken] {
            assert!(!refusal.message().contains("s3cret"));
        }
    }
}
