//! The HTTP client every Azure SDK client of twinload uses (Blob Storage, Key Vault, the token
//! endpoints): twinload's one HTTP stack ([`crate::http`]), handed to the SDK as its `Transport`,
//! with the SDK's own retries tuned.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};

/// Connect timeout of the Azure clients (token endpoint, Blob, Key Vault). Requests themselves
/// have no overall timeout: a blob download may stream for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

use crate::http::HttpSetupError;

/// The client for the Azure SDK clients: [`crate::http::client_builder`] with a connect timeout.
pub fn http_client(ca_cert: Option<&Path>) -> Result<reqwest::Client, HttpSetupError> {
    crate::http::build(crate::http::client_builder(ca_cert)?.connect_timeout(CONNECT_TIMEOUT))
}

/// Retries of the Azure SDK's own pipeline (Blob Storage, Key Vault) after a first attempt that
/// failed: 200 ms doubling, about 13 s in all (with [`AZURE_SDK_FIRST_DELAY`]). The SDK's default (8, capped at a minute) made a
/// mistyped storage URL (connection refused) take a minute to report; a Blob outage longer than
/// this fails the task, which Data Factory's activity retry is for.
pub const AZURE_SDK_MAX_RETRIES: u32 = 6;

/// The SDK waits `initial_delay × 2^n` (plus up to 255 ms of jitter) before retry n, counting
/// from 1: an `initial_delay` of 100 ms makes the first wait 200 ms and six retries about
/// 12.6 s. (The SDK's default of 200 ms doubled that: a refused storage URL took 26 s to report.)
pub const AZURE_SDK_FIRST_DELAY: azure_core::time::Duration = azure_core::time::Duration::milliseconds(100);

/// `ClientOptions` whose transport is [`http_client`], with [`AZURE_SDK_MAX_RETRIES`].
pub fn client_options(ca_cert: Option<&Path>) -> Result<ClientOptions, HttpSetupError> {
    let client = http_client(ca_cert)?;
    let retry = RetryOptions::exponential(ExponentialRetryOptions {
        max_retries: AZURE_SDK_MAX_RETRIES,
        initial_delay: AZURE_SDK_FIRST_DELAY,
        ..Default::default()
    });
    Ok(ClientOptions { transport: Some(Transport::new(Arc::new(client))), retry, ..Default::default() })
}
