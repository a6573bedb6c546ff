//! Azure integration through Microsoft's SDK crates (`azure_core`, `azure_identity`,
//! `azure_storage_blob` 1.x): which identity twinload uses, the HTTP transport they share,
//! Blob Storage URLs, and archiving input blobs after a run.
//!
//! - [`transport`]: the reqwest 0.13 client (rustls, `--ca-cert`) every Azure SDK client uses.
//! - [`identity`]: `--credential`: static token, managed identity, workload identity, Azure CLI,
//!   client secret; the token scopes.
//! - [`blob_url`]: parsing an input or archive URL (account, container, prefix, SAS) and the
//!   container client for it; SAS signatures redacted wherever a URL is shown.
//! - [`keyvault`]: Key Vault secret references (`AzureKeyVaultSecret`) resolved as the identity.
//! - [`reauth`]: the Blob clients' token policy: a 401 gets one fresh token and one retry.
//! - [`archive`]: after a run, moving each fully landed input blob to `archive`, and uploading
//!   the summary and dead letters next to it.

pub mod archive;
pub mod blob_url;
pub mod identity;
pub mod keyvault;
pub mod reauth;
pub mod transport;

/// An error and its causes on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
