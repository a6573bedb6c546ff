//! Key Vault secret references: the `AzureKeyVaultSecret` values that Data Factory leaves
//! unresolved in `linkedServices.json`, read with `azure_security_keyvault_secrets` 1.x as the
//! task's identity. The activity.json code turns a reference and its Key Vault linked service
//! into a [`SecretReference`] and calls [`resolve_secret`]. The value comes back as a
//! [`Secret`], which never prints itself.

use azure_core::credentials::Secret;
use azure_security_keyvault_secrets::{models::SecretClientGetSecretOptions, SecretClient, SecretClientOptions};

use super::identity::{self, IdentitySettings};
use super::transport;

/// A secret in a vault: `baseUrl` of the Key Vault linked service, and the reference's
/// `secretName` and optional `secretVersion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub vault_url: String,
    pub secret_name: String,
    pub secret_version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("cannot read secret '{name}' from Key Vault {vault}: {detail}. Check the vault URL and that the identity has the 'Key Vault Secrets User' role")]
    Read { vault: String, name: String, detail: String },
    #[error("secret '{name}' in Key Vault {vault} has no value")]
    Empty { vault: String, name: String },
}

/// Reads the secret as the configured identity (trusting the `--ca-cert` bundle).
pub async fn resolve_secret(reference: &SecretReference, identity: &IdentitySettings) -> Result<Secret, KeyVaultError> {
    let read_error = |detail: String| KeyVaultError::Read {
        vault: reference.vault_url.clone(),
        name: reference.secret_name.clone(),
        detail,
    };
    let credential = identity::credential(identity)?;
    let options = SecretClientOptions {
        client_options: transport::client_options(identity.ca_cert.as_deref())
            .map_err(|e| read_error(e.to_string()))?,
        // The SDK checks that the vault's challenge names the vault's domain; a vault on
        // loopback (a test double) has no such domain.
        verify_challenge_resource: Some(!is_loopback(&reference.vault_url)),
        ..Default::default()
    };
    let client = SecretClient::new(&reference.vault_url, credential, Some(options))
        .map_err(|e| read_error(super::error_chain(&e)))?;
    let options =
        SecretClientGetSecretOptions { secret_version: reference.secret_version.clone(), ..Default::default() };
    let response = client
        .get_secret(&reference.secret_name, Some(options))
        .await
        .map_err(|e| read_error(super::error_chain(&e)))?;
    let secret = response.into_model().map_err(|e| read_error(super::error_chain(&e)))?;
    match secret.value {
        Some(value) => Ok(Secret::new(value)),
        None => Err(KeyVaultError::Empty { vault: reference.vault_url.clone(), name: reference.secret_name.clone() }),
    }
}

/// [`resolve_secret`] for synchronous callers (configuration is read before any runtime
/// starts): runs it on a thread of its own with a small runtime.
pub fn resolve_secret_blocking(
    reference: &SecretReference,
    identity: &IdentitySettings,
) -> Result<Secret, KeyVaultError> {
    let (reference, identity) = (reference.clone(), identity.clone());
    let worker = std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| KeyVaultError::Read {
                vault: reference.vault_url.clone(),
                name: reference.secret_name.clone(),
                detail: format!("cannot start a runtime: {e}"),
            })?;
        runtime.block_on(resolve_secret(&reference, &identity))
    });
    worker.join().unwrap_or_else(|_| {
        Err(KeyVaultError::Read {
            vault: String::new(),
            name: String::new(),
            detail: "the reader thread panicked".into(),
        })
    })
}

fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]"))
        .unwrap_or(false)
}
