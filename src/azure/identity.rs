//! Which identity twinload authenticates as (`--credential`), built on `azure_identity` 1.x.
//!
//! `auto` (the default) picks, in order: a static token if one is given; workload identity
//! when its variables are set (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`,
//! `AZURE_TENANT_ID`); managed identity inside an Azure Batch task (`AZ_BATCH_TASK_WORKING_DIR`)
//! or wherever a managed-identity endpoint is advertised (`IDENTITY_ENDPOINT`, `MSI_ENDPOINT`);
//! else the Azure CLI for an `https://` endpoint. An endpoint on loopback (a mock; ADT never
//! is) gets no credential unless one is asked for.
//!
//! A user-assigned identity is chosen by `--identity-client-id` (`identityClientId` in
//! activity.json) or else `AZURE_CLIENT_ID`. The credentials cache their tokens per scope and
//! refresh them within 5 minutes of expiry; a forced refresh (after a 401) builds a fresh
//! credential ([`super::reauth::RefreshableCredential`], used by the ADT client's
//! [`crate::client::token`] and the Blob clients' [`super::reauth::StorageAuthorization`]).

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use serde::Deserialize;

use super::transport::client_options;
use crate::http::HttpSetupError;

/// The scope of ADT's data plane.
pub const ADT_SCOPE: &str = "https://digitaltwins.azure.net/.default";
/// The scope of Blob Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// The scope of Key Vault.
pub const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";

/// `--credential`: how twinload gets its tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// A static token if given, else workload identity, else managed identity (in Batch),
    /// else the Azure CLI (see the module documentation).
    #[default]
    Auto,
    /// The VM's or pool's managed identity (IMDS; App Service's endpoint when
    /// `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` are set).
    ManagedIdentity,
    /// Workload identity federation (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`).
    WorkloadIdentity,
    /// `az account get-access-token` (a laptop).
    AzureCli,
    /// A service principal's secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
    ClientSecret,
    /// The static token of `--token` / `TWINLOAD_TOKEN`.
    Token,
    /// No authentication (a mock started with `--no-auth`).
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Transport(#[from] HttpSetupError),
    #[error("cannot set up the {kind} credential: {detail}")]
    Credential { kind: &'static str, detail: String },
    #[error("--credential client-secret needs the environment variable {0}")]
    MissingVariable(&'static str),
}

/// What building a credential needs (cheap to clone: a forced refresh builds a new one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    /// Resolved: never `Auto`, `Token` or `None` when a credential is built.
    pub kind: CredentialKind,
    /// A user-assigned identity's client id.
    pub client_id: Option<String>,
    /// Trusted by the token endpoint's client too.
    pub ca_cert: Option<PathBuf>,
}

/// What `auto` means here, given whether a static token was configured, the ADT endpoint and
/// the environment (a function, so tests need not touch the process environment).
pub fn resolve_auto(has_token: bool, endpoint: &str, env: &dyn Fn(&str) -> Option<String>) -> CredentialKind {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    if has_token {
        CredentialKind::Token
    } else if is_loopback(endpoint) {
        // ADT is never on loopback: this is a mock (or a tunnel) that takes no Entra token.
        CredentialKind::None
    } else if set("AZURE_FEDERATED_TOKEN_FILE") && set("AZURE_CLIENT_ID") && set("AZURE_TENANT_ID") {
        CredentialKind::WorkloadIdentity
    } else if set("AZ_BATCH_TASK_WORKING_DIR") || set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT") {
        CredentialKind::ManagedIdentity
    } else if endpoint.starts_with("https://") && !is_loopback(endpoint) {
        CredentialKind::AzureCli
    } else {
        CredentialKind::None
    }
}

fn is_loopback(endpoint: &str) -> bool {
    match reqwest::Url::parse(endpoint).ok().and_then(|u| u.host_str().map(str::to_string)) {
        Some(host) => host == "localhost" || host == "[::1]" || host.starts_with("127."),
        None => false,
    }
}

/// The process environment, for [`resolve_auto`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A fresh credential of the configured kind. Tokens are fetched lazily (on the first request).
pub fn credential(settings: &IdentitySettings) -> Result<Arc<dyn TokenCredential>, IdentityError> {
    let failed =
        |kind: &'static str| move |e: azure_core::Error| IdentityError::Credential { kind, detail: e.to_string() };
    let options = || client_options(settings.ca_cert.as_deref());
    let credential: Arc<dyn TokenCredential> = match settings.kind {
        CredentialKind::ManagedIdentity => ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: settings.client_id.clone().map(UserAssignedId::ClientId),
            client_options: options()?,
        }))
        .map_err(failed("managed identity"))?,
        CredentialKind::WorkloadIdentity => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions { client_options: options()? },
            client_id: settings.client_id.clone(),
            ..Default::default()
        }))
        .map_err(failed("workload identity"))?,
        CredentialKind::AzureCli => AzureCliCredential::new(None).map_err(failed("Azure CLI"))?,
        CredentialKind::ClientSecret => {
            let var = |name: &'static str| process_env(name).ok_or(IdentityError::MissingVariable(name));
            let tenant = var("AZURE_TENANT_ID")?;
            let client_id = match &settings.client_id {
                Some(id) => id.clone(),
                None => var("AZURE_CLIENT_ID")?,
            };
            let secret = Secret::new(var("AZURE_CLIENT_SECRET")?);
            ClientSecretCredential::new(
                &tenant,
                client_id,
                secret,
                Some(ClientSecretCredentialOptions { client_options: options()? }),
            )
            .map_err(failed("client secret"))?
        }
        CredentialKind::Auto | CredentialKind::Token | CredentialKind::None => {
            return Err(IdentityError::Credential {
                kind: "static",
                detail: "no Entra ID credential is configured (internal: resolve `auto` first)".into(),
            })
        }
    };
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn auto_prefers_token_then_workload_then_managed_then_cli() {
        let adt = "https://x.api.wcus.digitaltwins.azure.net";
        let workload: &[(&str, &str)] =
            &[("AZURE_FEDERATED_TOKEN_FILE", "/t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_TENANT_ID", "t")];
        assert_eq!(resolve_auto(true, adt, &env_of(workload)), CredentialKind::Token);
        assert_eq!(resolve_auto(false, adt, &env_of(workload)), CredentialKind::WorkloadIdentity);
        let batch: &[(&str, &str)] =
            &[("AZ_BATCH_TASK_WORKING_DIR", "/mnt/batch/tasks/x/wd"), ("AZURE_CLIENT_ID", "c")];
        assert_eq!(resolve_auto(false, adt, &env_of(batch)), CredentialKind::ManagedIdentity);
        let app_service: &[(&str, &str)] = &[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token")];
        assert_eq!(resolve_auto(false, adt, &env_of(app_service)), CredentialKind::ManagedIdentity);
        assert_eq!(resolve_auto(false, "http://127.0.0.1:8080", &env_of(batch)), CredentialKind::None);
        assert_eq!(resolve_auto(false, adt, &env_of(&[])), CredentialKind::AzureCli);
        assert_eq!(resolve_auto(false, "http://127.0.0.1:8080", &env_of(&[])), CredentialKind::None);
        assert_eq!(resolve_auto(false, "https://127.0.0.1:8443", &env_of(&[])), CredentialKind::None);
    }

    #[test]
    fn client_secret_without_its_variables_names_the_missing_one() {
        if process_env("AZURE_TENANT_ID").is_some() {
            return; // a developer's shell with a service principal: nothing to check here
        }
        let settings = IdentitySettings { kind: CredentialKind::ClientSecret, client_id: None, ca_cert: None };
        let err = credential(&settings).unwrap_err().to_string();
        assert!(err.contains("AZURE_TENANT_ID"), "{err}");
    }
}
