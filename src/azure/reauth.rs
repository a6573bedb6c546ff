//! Entra ID tokens for Blob Storage: one pipeline policy that authorizes each request and,
//! when Storage refuses the token, gets a fresh one (bypassing the credential's cache) and tries
//! the request once more. A second refusal is an error that names the account and container
//! and what to check, never the token.
//!
//! "Refused" is a 401 (Azure Storage's answer to an expired or otherwise invalid token:
//! `InvalidAuthenticationInfo`, with a `WWW-Authenticate` challenge), or a 403 whose error code
//! is `AuthenticationFailed` (Azurite's answer to any token it refuses, and Storage's when the
//! request's authentication, not its permissions, failed). A 403 `AuthorizationPermissionMismatch`
//! (the identity lacks a role) is not retried: a fresh token carries no new role.
//!
//! The SDK's own `BearerTokenAuthorizationPolicy` drops its cached token on a 401 but does not
//! retry, and the `azure_identity` credential behind it would hand the same (refused) token out
//! again until it nears expiry. So twinload gives the container client no credential and puts
//! this policy among the client's per-try policies instead: it owns the token from request to
//! retry. `azure_identity` 1.x has no "bypass the cache" option; a forced refresh builds a fresh
//! credential (with an empty cache), once per 401 episode: the many requests in flight when a
//! token goes bad (a revocation, a clock skew) cause one refresh, not one each, and when the
//! fresh token is refused too (the identity lost its role, or was never given it) no further
//! token is fetched until a token has been accepted again: the caller stops with an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::headers::{Headers, AUTHORIZATION, ERROR_CODE};
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request, StatusCode};
use parking_lot::Mutex;

use super::identity::{self, IdentitySettings, STORAGE_SCOPE};

/// An Entra ID credential that can be replaced by a fresh one (an empty token cache).
pub struct RefreshableCredential {
    settings: IdentitySettings,
    current: Mutex<Current>,
    refreshes: AtomicU64,
}

/// The credential in use, its generation, and whether it was made by a refresh whose tokens
/// no server has accepted yet (an open 401 episode).
struct Current {
    credential: Arc<dyn TokenCredential>,
    generation: u64,
    unproven: bool,
}

/// What [`RefreshableCredential::refresh`] did after a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// This 401 opened an episode: the credential was replaced. Retry with its token.
    Replaced,
    /// Another request already replaced the refused token's credential. Retry with the new one.
    AlreadyReplaced,
    /// The token refused came from this episode's refresh: a fresh token was refused too, and
    /// another cannot help. Give up.
    RefusedAgain,
}

impl Refresh {
    /// Whether a retry with the current credential's token may help.
    pub fn retry(self) -> bool {
        self != Refresh::RefusedAgain
    }
}

impl std::fmt::Debug for RefreshableCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshableCredential").field("kind", &self.settings.kind).finish_non_exhaustive()
    }
}

impl RefreshableCredential {
    pub fn new(settings: IdentitySettings) -> Result<RefreshableCredential, identity::IdentityError> {
        let credential = identity::credential(&settings)?;
        Ok(RefreshableCredential {
            settings,
            current: Mutex::new(Current { credential, generation: 0, unproven: false }),
            refreshes: AtomicU64::new(0),
        })
    }

    /// The credential in use and its generation.
    pub(crate) fn current(&self) -> (Arc<dyn TokenCredential>, u64) {
        let current = self.current.lock();
        (Arc::clone(&current.credential), current.generation)
    }

    /// After a 401 to a token of `generation`: a fresh credential once per episode (see
    /// [`Refresh`]).
    pub(crate) fn refresh(&self, generation: u64) -> Result<Refresh, identity::IdentityError> {
        let mut current = self.current.lock();
        if current.generation != generation {
            return Ok(Refresh::AlreadyReplaced);
        }
        if current.unproven {
            return Ok(Refresh::RefusedAgain);
        }
        *current =
            Current { credential: identity::credential(&self.settings)?, generation: generation + 1, unproven: true };
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        Ok(Refresh::Replaced)
    }

    /// A server accepted a token of `generation`: the 401 episode, if any, is over, and the
    /// next 401 may refresh again.
    pub(crate) fn accepted(&self, generation: u64) {
        let mut current = self.current.lock();
        if current.generation == generation {
            current.unproven = false;
        }
    }

    /// How many forced refreshes happened.
    pub fn forced_refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// A token of the current credential (its cache while fresh), and the generation.
    async fn token(&self, scope: &str) -> azure_core::Result<(AccessToken, u64)> {
        let (credential, generation) = self.current();
        let token = credential.get_token(&[scope], None).await?;
        Ok((token, generation))
    }

    /// What a 401 message says about the identity (never a secret).
    pub(crate) fn identity_shown(&self) -> String {
        let kind = clap::ValueEnum::to_possible_value(&self.settings.kind)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        match &self.settings.client_id {
            Some(id) => format!("--credential {kind} (client id {id})"),
            None => format!("--credential {kind}"),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for RefreshableCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let (credential, _) = self.current();
        credential.get_token(scopes, options).await
    }
}

/// The per-try policy of a Blob container client reached with a credential (see the module
/// documentation).
#[derive(Debug)]
pub struct StorageAuthorization {
    credential: Arc<RefreshableCredential>,
    /// The storage account and container, for the error after a second 401.
    account: String,
    container: String,
}

impl StorageAuthorization {
    pub fn new(credential: Arc<RefreshableCredential>, account: String, container: String) -> StorageAuthorization {
        StorageAuthorization { credential, account, container }
    }

    fn authorize(request: &mut Request, token: &AccessToken) {
        request.insert_header(AUTHORIZATION, format!("Bearer {}", token.token.secret()));
    }

    fn refused_twice(&self, status: StatusCode, error_code: Option<String>) -> azure_core::Error {
        let code = error_code.map(|c| format!(" {c}")).unwrap_or_default();
        azure_core::Error::with_message(
            ErrorKind::Credential,
            format!(
                "Blob Storage account `{account}` refused the token of {identity} for container `{container}` \
                 twice (HTTP {status}{code}), the second time with a freshly issued token: check that the identity \
                 belongs to the storage account's tenant and has the role \"Storage Blob Data Reader\" on the \
                 input (\"Storage Blob Data Contributor\" on an archive or ledger container), or give the URL \
                 a SAS",
                account = self.account,
                container = self.container,
                status = u16::from(status),
                identity = self.credential.identity_shown(),
            ),
        )
    }
}

#[async_trait::async_trait]
impl Policy for StorageAuthorization {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        if request.url().scheme() != "https" {
            return Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "a token is only sent over https: give the Blob URL as https://, or a SAS",
            ));
        }
        let (token, generation) = self.credential.token(STORAGE_SCOPE).await?;
        Self::authorize(request, &token);
        let response = next[0].send(ctx, request, &next[1..]).await?;
        if !token_refused(response.status(), response.headers()) {
            self.credential.accepted(generation);
            return Ok(response);
        }

        let refresh = self
            .credential
            .refresh(generation)
            .map_err(|e| azure_core::Error::with_message(ErrorKind::Credential, e.to_string()))?;
        if !refresh.retry() {
            return Err(self.refused_twice(response.status(), response.headers().get_optional_string(&ERROR_CODE)));
        }
        if refresh == Refresh::Replaced {
            tracing::info!(
                "Blob Storage account {} refused the token ({}); getting a fresh one and retrying once",
                self.account,
                u16::from(response.status())
            );
        }
        let (token, generation) = self.credential.token(STORAGE_SCOPE).await?;
        Self::authorize(request, &token);
        request.body_mut().reset().await?;
        let response = next[0].send(ctx, request, &next[1..]).await?;
        if token_refused(response.status(), response.headers()) {
            return Err(self.refused_twice(response.status(), response.headers().get_optional_string(&ERROR_CODE)));
        }
        self.credential.accepted(generation);
        Ok(response)
    }
}

/// Whether Storage refused the request's token (see the module documentation).
fn token_refused(status: StatusCode, headers: &Headers) -> bool {
    status == StatusCode::Unauthorized
        || (status == StatusCode::Forbidden && headers.get_optional_str(&ERROR_CODE) == Some("AuthenticationFailed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::identity::CredentialKind;

    #[test]
    fn many_401s_to_one_generation_replace_the_credential_once() {
        let settings = IdentitySettings { kind: CredentialKind::ManagedIdentity, client_id: None, ca_cert: None };
        let credential = RefreshableCredential::new(settings).unwrap();
        let (_, first) = credential.current();
        assert_eq!(credential.refresh(first).unwrap(), Refresh::Replaced, "the first 401 of a generation refreshes");
        assert_eq!(
            credential.refresh(first).unwrap(),
            Refresh::AlreadyReplaced,
            "later 401s of the same generation do not"
        );
        let (_, second) = credential.current();
        assert_eq!((second, credential.forced_refreshes()), (first + 1, 1));
        // Once a token of the fresh credential was accepted, a later 401 is a new episode.
        credential.accepted(second);
        assert_eq!(
            credential.refresh(second).unwrap(),
            Refresh::Replaced,
            "a 401 to an accepted token refreshes again"
        );
        assert_eq!(credential.forced_refreshes(), 2);
    }

    #[test]
    fn a_fresh_token_refused_too_ends_the_episode_without_another_refresh() {
        let settings = IdentitySettings { kind: CredentialKind::ManagedIdentity, client_id: None, ca_cert: None };
        let credential = RefreshableCredential::new(settings).unwrap();
        let (_, first) = credential.current();
        assert_eq!(credential.refresh(first).unwrap(), Refresh::Replaced);
        let (_, second) = credential.current();
        // However many requests see the fresh token refused, none fetches another.
        for _ in 0..32 {
            assert_eq!(credential.refresh(second).unwrap(), Refresh::RefusedAgain);
        }
        assert_eq!(credential.forced_refreshes(), 1);
        // An accepted token of an older generation does not end the episode of the new one.
        credential.accepted(first);
        assert_eq!(credential.refresh(second).unwrap(), Refresh::RefusedAgain);
    }

    #[test]
    fn the_second_401_names_account_container_role_and_identity_but_no_secret() {
        let settings = IdentitySettings {
            kind: CredentialKind::ManagedIdentity,
            client_id: Some("1111-client".into()),
            ca_cert: None,
        };
        let policy = StorageAuthorization::new(
            Arc::new(RefreshableCredential::new(settings).unwrap()),
            "acct".into(),
            "input".into(),
        );
        let err = crate::azure::error_chain(
            &policy.refused_twice(StatusCode::Unauthorized, Some("InvalidAuthenticationInfo".into())),
        );
        for part in ["`acct`", "`input`", "managed-identity", "1111-client", "Storage Blob Data Reader", "401"] {
            assert!(err.contains(part), "{part}: {err}");
        }
    }

    #[test]
    fn a_401_or_a_failed_authentication_is_a_refused_token_and_a_missing_role_is_not() {
        let with_code = |code: &str| {
            let mut h = Headers::new();
            h.insert(ERROR_CODE, code.to_string());
            h
        };
        assert!(token_refused(StatusCode::Unauthorized, &Headers::new()));
        assert!(token_refused(StatusCode::Forbidden, &with_code("AuthenticationFailed")));
        assert!(!token_refused(StatusCode::Forbidden, &with_code("AuthorizationPermissionMismatch")));
        assert!(!token_refused(StatusCode::Forbidden, &Headers::new()));
        assert!(!token_refused(StatusCode::NotFound, &Headers::new()));
    }
}
