//! The one HTTP stack of the loader: reqwest 0.13 over rustls with the ring provider, trusting
//! the system's roots plus the `--ca-cert` bundle.
//!
//! Every client twinload builds starts from [`client_builder`]: the ADT client, the Azure SDK
//! clients (Blob Storage, Key Vault, the token endpoints, through [`crate::azure::transport`]),
//! import-job staging and the Pushgateway push. So a private CA (a proxy, a test server) is
//! trusted the same way by all of them, and the lean binary links one HTTP and TLS stack (azure_core
//! 1.x implements its `HttpClient` for reqwest 0.13).

use std::path::Path;

/// Why an HTTP client could not be made: a configuration error (exit 4).
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("cannot use CA certificate bundle {path}: {detail}")]
    CaCert { path: String, detail: String },
    #[error("cannot build an HTTP client: {0}")]
    Build(String),
}

/// ring as rustls' process-wide provider. reqwest is built without one (`rustls-no-provider`),
/// so that no aws-lc C build is needed, and panics when it builds a client with none installed:
/// [`client_builder`] installs it first. Installing twice is harmless: the first one stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every certificate of a PEM bundle (one or more). An empty bundle is an error: a `--ca-cert`
/// that trusts nothing is a mistake.
pub fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpSetupError> {
    let err = |detail: String| HttpSetupError::CaCert { path: path.display().to_string(), detail };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("it holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A client builder with the crypto provider installed, `TCP_NODELAY` on (small JSON requests
/// should not wait for Nagle), and the system's roots plus `ca_cert`'s certificates trusted.
pub fn client_builder(ca_cert: Option<&Path>) -> Result<reqwest::ClientBuilder, HttpSetupError> {
    install_crypto_provider();
    let builder = reqwest::Client::builder().tcp_nodelay(true);
    Ok(match ca_cert {
        Some(path) => builder.tls_certs_merge(read_ca_bundle(path)?),
        None => builder,
    })
}

/// `builder.build()`, its error with the whole chain of causes, and what to do when the system
/// has no CA store (rustls-platform-verifier reads it when the client is built).
pub fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, HttpSetupError> {
    builder.build().map_err(|e| {
        let mut detail = crate::azure::error_chain(&e);
        if detail.contains("No CA certificates were loaded") {
            detail.push_str(
                ". Install the system's CA certificates (Debian and Ubuntu: the ca-certificates package), \
                 point SSL_CERT_FILE at a PEM bundle, or give --ca-cert",
            );
        }
        HttpSetupError::Build(detail)
    })
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
        build(client_builder(Some(&path)).unwrap()).unwrap();

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_builder(Some(&empty)).unwrap_err().to_string();
        assert!(err.contains("empty.pem") && err.contains("no PEM certificate"), "{err}");
    }
}
