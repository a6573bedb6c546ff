//! The HTTP client every Azure SDK client of twinload uses (Blob Storage, Key Vault, the token
//! endpoints): reqwest 0.13 over rustls with the ring provider, trusting the system's roots plus
//! the `--ca-cert` bundle. Handed to the SDK as its `Transport`, so a private CA (a proxy, a test
//! server) is trusted the same way by every client.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};

/// Connect timeout of the Azure clients (token endpoint, Blob, Key Vault). Requests themselves
/// have no overall timeout: a blob download may stream for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot use CA certificate bundle {path}: {detail}")]
    CaCert { path: String, detail: String },
    #[error("cannot build the HTTP client for Azure: {0}")]
    Build(String),
}

/// ring as rustls' process-wide provider (reqwest 0.13 is built without one, so that no
/// aws-lc C build is needed). Installing twice is harmless: the first one stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every certificate of a PEM bundle (one or more). An empty bundle is an error: a `--ca-cert`
/// that trusts nothing is a mistake.
pub fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest13::Certificate>, TransportError> {
    let err = |detail: String| TransportError::CaCert { path: path.display().to_string(), detail };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = reqwest13::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("it holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The reqwest 0.13 client for the Azure SDK clients.
pub fn http_client(ca_cert: Option<&Path>) -> Result<reqwest13::Client, TransportError> {
    install_crypto_provider();
    let mut builder = reqwest13::Client::builder().connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true);
    if let Some(path) = ca_cert {
        builder = builder.tls_certs_merge(read_ca_bundle(path)?);
    }
    builder.build().map_err(|e| TransportError::Build(crate::azure::error_chain(&e)))
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
pub fn client_options(ca_cert: Option<&Path>) -> Result<ClientOptions, TransportError> {
    let client = http_client(ca_cert)?;
    let retry = RetryOptions::exponential(ExponentialRetryOptions {
        max_retries: AZURE_SDK_MAX_RETRIES,
        initial_delay: AZURE_SDK_FIRST_DELAY,
        ..Default::default()
    });
    Ok(ClientOptions { transport: Some(Transport::new(Arc::new(client))), retry, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_of_two_certificates_is_read_and_an_empty_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bundle = String::new();
        for name in ["one", "two"] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
            bundle.push_str(&cert.pem());
        }
        let path = dir.path().join("bundle.pem");
        std::fs::write(&path, bundle).unwrap();
        assert_eq!(read_ca_bundle(&path).unwrap().len(), 2);
        http_client(Some(&path)).unwrap();

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = read_ca_bundle(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.pem") && err.contains("no PEM certificate"), "{err}");
    }
}
