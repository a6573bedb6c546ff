//! Key Vault secret references resolved through `azure_security_keyvault_secrets` 1.x against a
//! small fake Key Vault on loopback over HTTPS (trusting a test CA, as `--ca-cert` does), with
//! the token of a managed identity from a fake token endpoint: the SDK's challenge flow (a first
//! request without a token, a 401 naming the resource, the request again with a token).

mod azure_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use azure_support::{test_ca, TokenEndpoint, TokenPolicy};
use parking_lot::Mutex;
use twinload::azure::identity::{CredentialKind, IdentitySettings};
use twinload::azure::keyvault::{resolve_secret_blocking, SecretReference};

const SECRET_VALUE: &str = "kv-s3cret-value-do-not-print";

/// A fake vault holding one secret, `linked-sas` version `v2`: 401 with Key Vault's challenge
/// without a bearer token, the secret with one. Records each request's path and whether it
/// carried a token.
/// Each request's path and whether it carried a bearer token.
type RequestLog = Arc<Mutex<Vec<(String, bool)>>>;

fn fake_vault(ca: &azure_support::TestCa) -> (String, RequestLog) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    twinload::http::install_crypto_provider();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(ca.leaf_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.leaf_key_der.clone())),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (vault, log) = (url.clone(), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (config, vault, log) = (config.clone(), vault.clone(), log.clone());
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut reader = BufReader::new(&mut tls);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let (mut bearer, mut length) = (false, 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    bearer |= lower.starts_with("authorization: bearer fake-mi-token");
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().push((path.clone(), bearer));
                let (status, extra, body) = if !bearer {
                    (
                        "401 Unauthorized",
                        "WWW-Authenticate: Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\"\r\n",
                        "{\"error\":{\"code\":\"Unauthorized\",\"message\":\"AKV10000: Request is missing a Bearer token.\"}}".to_string(),
                    )
                } else if path.starts_with("/secrets/linked-sas/v2?") {
                    let body =
                        serde_json::json!({"value": SECRET_VALUE, "id": format!("{vault}/secrets/linked-sas/v2")});
                    ("200 OK", "", body.to_string())
                } else {
                    (
                        "404 Not Found",
                        "",
                        "{\"error\":{\"code\":\"SecretNotFound\",\"message\":\"no such secret\"}}".to_string(),
                    )
                };
                let _ = write!(
                    tls,
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (url, seen)
}

#[test]
fn a_key_vault_reference_resolves_with_the_managed_identity_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let (vault, seen) = fake_vault(&ca);
    let endpoint = TokenEndpoint::start(TokenPolicy {
        lifetime_s: 3600,
        accept_file: None,
        withhold_first: 0,
        jwt_for_storage: false,
        refused_storage_tokens: 0,
    });
    // This test binary holds this one test, so setting the process environment is safe.
    for (k, v) in endpoint.env() {
        std::env::set_var(k, v);
    }
    let identity =
        IdentitySettings { kind: CredentialKind::ManagedIdentity, client_id: None, ca_cert: Some(ca.ca_pem.clone()) };

    let reference = SecretReference {
        vault_url: vault.clone(),
        secret_name: "linked-sas".into(),
        secret_version: Some("v2".into()),
    };
    let secret = resolve_secret_blocking(&reference, &identity).expect("the secret resolves");
    assert_eq!(secret.secret(), SECRET_VALUE);
    assert!(!format!("{secret:?}").contains(SECRET_VALUE), "a Secret never prints its value");
    assert_eq!(endpoint.requests_for("https://vault.azure.net"), 1, "one token for Key Vault's scope");
    let requests = seen.lock().clone();
    assert!(requests.iter().any(|(p, bearer)| p.starts_with("/secrets/linked-sas/v2") && *bearer), "{requests:?}");

    // A missing secret is an error naming the vault and the secret, and what to check.
    let missing = SecretReference { secret_name: "nope".into(), secret_version: None, ..reference };
    let err = resolve_secret_blocking(&missing, &identity).unwrap_err().to_string();
    assert!(err.contains("'nope'") && err.contains(&vault) && err.contains("Key Vault Secrets User"), "{err}");
    assert!(!err.contains(SECRET_VALUE));
}
