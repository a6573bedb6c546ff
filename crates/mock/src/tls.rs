//! HTTPS for the mock: a rustls server config from certificate and key PEM files, or from a
//! freshly generated self-signed CA and a leaf certificate for `127.0.0.1` and `localhost`
//! (rcgen), whose CA PEM clients are given to trust (the Python SDK verifies TLS for real).
//!
//! rustls runs on the `ring` provider, passed to the builder explicitly (no process-wide
//! default is needed, and no aws-lc).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How the mock serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP.
    #[default]
    Off,
    /// HTTPS with a generated CA and leaf; the CA PEM is written to `ca_out` when given (before
    /// the server reports it is listening) and is always in `MockHandle::ca_cert_pem`.
    SelfSigned { ca_out: Option<PathBuf> },
    /// HTTPS with this certificate chain and private key (PEM files).
    Files { cert: PathBuf, key: PathBuf },
}

/// How long a generated certificate is valid, counted from one day before now (so clock skew
/// between the mock and its clients does not matter).
pub const SELF_SIGNED_VALIDITY_DAYS: i64 = 365;

/// The names the generated leaf certificate is valid for: the mock serves on loopback only.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("{path} holds no PEM {what}; give a PEM file that starts with '-----BEGIN {begin}'")]
    NoPem { what: &'static str, path: String, begin: &'static str },
    #[error("cannot write the CA certificate to {path}: {source}")]
    WriteCa { path: String, source: std::io::Error },
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A ready server config, and the CA PEM clients should trust when the mock generated it.
pub struct ServerTls {
    pub config: rustls::ServerConfig,
    pub ca_cert_pem: Option<String>,
}

/// Builds the server's TLS configuration for `mode`; `None` for plain HTTP.
pub fn server_tls(mode: &TlsMode) -> Result<Option<ServerTls>, TlsError> {
    match mode {
        TlsMode::Off => Ok(None),
        TlsMode::SelfSigned { ca_out } => {
            let generated = generate_self_signed()?;
            if let Some(path) = ca_out {
                write_ca(path, &generated.ca_pem)?;
            }
            let config = rustls_config(vec![generated.leaf_der, generated.ca_der], generated.leaf_key)?;
            Ok(Some(ServerTls { config, ca_cert_pem: Some(generated.ca_pem) }))
        }
        TlsMode::Files { cert, key } => {
            let chain = read_cert_chain(cert)?;
            let key = read_private_key(key)?;
            Ok(Some(ServerTls { config: rustls_config(chain, key)?, ca_cert_pem: None }))
        }
    }
}

/// ring as rustls' process-wide provider, for the mock's own HTTP clients (import jobs read and
/// write blobs): reqwest is built without a provider and panics if none is installed.
pub fn install_client_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn rustls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(config)
}

struct SelfSigned {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    leaf_der: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
    /// The leaf certificate and key as PEM, for writing them out as `--tls-cert/--tls-key` files.
    #[cfg_attr(not(test), allow(dead_code))]
    leaf_pem: String,
    #[cfg_attr(not(test), allow(dead_code))]
    leaf_key_pem: String,
}

fn generate_self_signed() -> Result<SelfSigned, TlsError> {
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(SELF_SIGNED_VALIDITY_DAYS);

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = distinguished_name("twinload mock ADT CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let leaf_key = KeyPair::generate()?;
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
    let mut leaf_params = CertificateParams::new(names)?;
    leaf_params.distinguished_name = distinguished_name("twinload mock ADT");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.not_before = not_before;
    leaf_params.not_after = not_after;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;

    Ok(SelfSigned {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        leaf_der: leaf_cert.der().clone(),
        leaf_key: PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        leaf_pem: leaf_cert.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
    })
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "twinload");
    name
}

fn write_ca(path: &Path, pem: &str) -> Result<(), TlsError> {
    let err = |source| TlsError::WriteCa { path: path.display().to_string(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::write(path, pem).map_err(err)
}

fn read_pem_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.display().to_string(), source })
}

fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem_file(path, "certificate")?;
    let chain: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut pem.as_slice()).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoPem { what: "certificate", path: path.display().to_string(), begin: "CERTIFICATE" });
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem_file(path, "private key")?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(key)) => Ok(key),
        _ => Err(TlsError::NoPem { what: "private key", path: path.display().to_string(), begin: "PRIVATE KEY" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_writes_the_ca_and_builds_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let ca_out = dir.path().join("sub/ca.pem");
        let tls = server_tls(&TlsMode::SelfSigned { ca_out: Some(ca_out.clone()) }).unwrap().unwrap();
        let written = std::fs::read_to_string(&ca_out).unwrap();
        assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(Some(written), tls.ca_cert_pem);
    }

    #[test]
    fn files_that_are_not_pem_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let err = server_tls(&TlsMode::Files { cert: cert.clone(), key: cert.clone() }).err().unwrap().to_string();
        assert!(err.contains("cert.pem") && err.contains("BEGIN CERTIFICATE"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = server_tls(&TlsMode::Files { cert: missing, key: cert }).err().unwrap().to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn generated_files_round_trip_through_the_files_mode() {
        let generated = generate_self_signed().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), &generated.leaf_pem).unwrap();
        std::fs::write(dir.path().join("k.pem"), &generated.leaf_key_pem).unwrap();
        let mode = TlsMode::Files { cert: dir.path().join("c.pem"), key: dir.path().join("k.pem") };
        let tls = server_tls(&mode).unwrap().unwrap();
        assert!(tls.ca_cert_pem.is_none());
    }
}
