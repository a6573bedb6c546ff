//! Where the ADT client's bearer token comes from: nothing (a `--no-auth` mock), a static
//! token, or an Entra ID credential (`azure_identity`) asked on every request. The credential
//! caches its token and refreshes it within 5 minutes of expiry; after a 401 the client asks
//! for a forced refresh ([`TokenProvider::refresh_after_unauthorized`]) and retries once.
//!
//! `azure_identity` 1.x has no "bypass the cache" option, so a forced refresh builds a fresh
//! credential (with an empty cache): [`RefreshableCredential`], which the Blob clients use too.
//! Each token handed out carries the generation of the credential that made it; a 401
//! refreshes only if its token is of the current generation, and only once per 401 episode
//! (until a token is accepted again), so the many requests in flight when a token goes bad
//! cause exactly one refresh, not one each, and a fresh token refused too causes none: the
//! run stops with an error that names the identity and the role it needs.

use reqwest::header::HeaderValue;

use crate::azure::identity::{self, IdentitySettings, ADT_SCOPE};
use crate::azure::reauth::{Refresh, RefreshableCredential};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token has characters an HTTP header cannot carry")]
    BadHeader,
    #[error("cannot get a token for {scope}: {detail}")]
    Credential { scope: &'static str, detail: String },
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}

/// The `Authorization` header for one request, and which credential generation made it.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub header: Option<HeaderValue>,
    pub generation: u64,
}

pub enum TokenProvider {
    None,
    Static(HeaderValue),
    Credential(Refreshing),
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenProvider::None => "TokenProvider::None",
            TokenProvider::Static(_) => "TokenProvider::Static(<redacted>)",
            TokenProvider::Credential(_) => "TokenProvider::Credential",
        })
    }
}

/// An Entra ID credential for one scope that can be replaced by a fresh one.
pub struct Refreshing {
    credential: RefreshableCredential,
    scope: &'static str,
}

impl TokenProvider {
    /// A static `Bearer <token>`.
    pub fn fixed(token: &str) -> Result<TokenProvider, TokenError> {
        crate::redact::register(token);
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| TokenError::BadHeader)?;
        value.set_sensitive(true);
        Ok(TokenProvider::Static(value))
    }

    /// Tokens for ADT's scope from a credential built from `settings`.
    pub fn credential(settings: IdentitySettings) -> Result<TokenProvider, TokenError> {
        Ok(TokenProvider::Credential(Refreshing {
            credential: RefreshableCredential::new(settings)?,
            scope: ADT_SCOPE,
        }))
    }

    /// The header for the next request (the credential's cached token while it is fresh).
    pub async fn authorization(&self) -> Result<Authorization, TokenError> {
        match self {
            TokenProvider::None => Ok(Authorization { header: None, generation: 0 }),
            TokenProvider::Static(value) => Ok(Authorization { header: Some(value.clone()), generation: 0 }),
            TokenProvider::Credential(r) => {
                let (credential, generation) = r.credential.current();
                let token = credential
                    .get_token(&[r.scope], None)
                    .await
                    .map_err(|e| TokenError::Credential { scope: r.scope, detail: crate::azure::error_chain(&e) })?;
                crate::redact::register(token.token.secret());
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.token.secret()))
                    .map_err(|_| TokenError::BadHeader)?;
                value.set_sensitive(true);
                Ok(Authorization { header: Some(value), generation })
            }
        }
    }

    /// After a 401 to a request made with `used`: replaces the credential (once per 401
    /// episode) and says whether a retry with a new token may help.
    pub fn refresh_after_unauthorized(&self, used: &Authorization) -> bool {
        let TokenProvider::Credential(r) = self else { return false };
        match r.credential.refresh(used.generation) {
            Ok(refresh) => {
                match refresh {
                    Refresh::Replaced => tracing::info!("ADT answered 401; refreshing the token once and retrying"),
                    Refresh::AlreadyReplaced => {}
                    Refresh::RefusedAgain => {
                        tracing::debug!("ADT refused the refreshed token too; not fetching another")
                    }
                }
                refresh.retry()
            }
            Err(e) => {
                tracing::warn!("ADT answered 401 and the credential cannot be rebuilt: {e}");
                false
            }
        }
    }

    /// After an answer to a request made with `auth` that was not a 401: its token was
    /// accepted, which ends a 401 episode.
    pub fn accepted_if_answered(&self, auth: &Authorization, answer: &reqwest::Result<reqwest::Response>) {
        if let (TokenProvider::Credential(r), Ok(response)) = (self, answer) {
            if response.status() != reqwest::StatusCode::UNAUTHORIZED {
                r.credential.accepted(auth.generation);
            }
        }
    }

    /// What to check when ADT refuses the token: whose it is and the role it needs (never the
    /// token itself).
    pub fn refused_hint(&self) -> String {
        let whose = match self {
            TokenProvider::None => {
                "no token was sent (the endpoint needs one: give --token or --credential)".to_string()
            }
            TokenProvider::Static(_) => "the token of --token / TWINLOAD_TOKEN was refused".to_string(),
            TokenProvider::Credential(r) => {
                format!("the token of {} was refused", r.credential.identity_shown())
            }
        };
        format!("{whose}: check that the identity has the 'Azure Digital Twins Data Owner' role on the instance and that its token is for https://digitaltwins.azure.net")
    }

    /// How many forced refreshes happened (for tests and the logs).
    pub fn forced_refreshes(&self) -> u64 {
        match self {
            TokenProvider::Credential(r) => r.credential.forced_refreshes(),
            _ => 0,
        }
    }
}
