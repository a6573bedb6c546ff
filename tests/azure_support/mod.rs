//! Real Azure-side parts for tests, on loopback: Azurite (the Blob Storage emulator, from npm,
//! installed by tests/run.sh) started per test on a free port, account SASes signed with
//! Azurite's well-known key, blob upload/listing through `azure_storage_blob`, and a fake
//! managed-identity token endpoint (App Service protocol) that counts its requests.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_storage_blob::BlobContainerClient;
use futures::StreamExt;

/// Azurite's well-known development account and key (public: printed in Microsoft's docs).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// How long Azurite may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The `azurite-blob` that tests/run.sh installed (TWINLOAD_AZURITE), or the default place.
pub fn azurite_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TWINLOAD_AZURITE") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target.join("azurite/node_modules/.bin/azurite-blob");
    assert!(path.exists(), "{} is missing: run tests/run.sh, which installs azurite@3.35.0", path.display());
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running Azurite blob service; stopped on drop.
pub struct Azurite {
    child: Child,
    pub port: u16,
    /// `http(s)://127.0.0.1:<port>/devstoreaccount1`
    pub account_url: String,
    _dir: tempfile::TempDir,
}

/// TLS material for Azurite over HTTPS: a test CA (what clients trust) and a leaf for 127.0.0.1.
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub leaf_pem: PathBuf,
    pub leaf_key: PathBuf,
    /// The leaf certificate and its key, DER, for a test server of its own.
    pub leaf_der: Vec<u8>,
    pub leaf_key_der: Vec<u8>,
}

pub fn test_ca(dir: &Path) -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "twinload test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let files = TestCa {
        ca_pem: dir.join("ca.pem"),
        leaf_pem: dir.join("leaf.pem"),
        leaf_key: dir.join("leaf.key"),
        leaf_der: leaf.der().to_vec(),
        leaf_key_der: leaf_key.serialize_der(),
    };
    std::fs::write(&files.ca_pem, ca.pem()).unwrap();
    std::fs::write(&files.leaf_pem, leaf.pem()).unwrap();
    std::fs::write(&files.leaf_key, leaf_key.serialize_pem()).unwrap();
    files
}

impl Azurite {
    /// Over plain HTTP (SAS auth).
    pub fn start() -> Azurite {
        Azurite::start_with(None)
    }

    /// Over HTTPS with OAuth (bearer tokens) as well as SAS, with the CA's leaf certificate.
    pub fn start_https(ca: &TestCa) -> Azurite {
        Azurite::start_with(Some(ca))
    }

    fn start_with(tls: Option<&TestCa>) -> Azurite {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(azurite_binary());
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(ca) = tls {
            cmd.args(["--oauth", "basic", "--cert"]).arg(&ca.leaf_pem).arg("--key").arg(&ca.leaf_key);
        }
        let child = cmd.spawn().expect("azurite-blob starts");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let azurite = Azurite { child, port, account_url: format!("{scheme}://127.0.0.1:{port}/{ACCOUNT}"), _dir: dir };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < READY_WITHIN, "Azurite did not listen on {port} within {READY_WITHIN:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        azurite
    }

    /// A container's URL with an account SAS granting everything.
    pub fn container_url(&self, container: &str, prefix: &str) -> String {
        let path = if prefix.is_empty() { container.to_string() } else { format!("{container}/{prefix}") };
        format!("{}/{path}?{}", self.account_url, self.sas())
    }

    /// An account SAS query string (no `?`) granting everything, valid for years.
    pub fn sas(&self) -> String {
        account_sas("2099-01-01T00:00:00Z")
    }

    /// A blob's URL with [`Azurite::sas`].
    pub fn blob_url_with_sas(&self, container: &str, blob: &str) -> String {
        format!("{}/{container}/{blob}?{}", self.account_url, self.sas())
    }

    // Plain Blob REST over reqwest, for async tests (the helpers below the impl run their own
    // runtime, which cannot start inside a test's).

    /// Creates a container (Create Container with the account SAS).
    pub async fn create_container_async(&self, http: &reqwest::Client, container: &str) {
        let url = format!("{}/{container}?restype=container&{}", self.account_url, self.sas());
        let response = http.put(url).header("x-ms-version", "2021-12-02").send().await.expect("create container");
        assert_eq!(response.status(), 201, "create container: {}", response.text().await.unwrap_or_default());
    }

    /// Uploads a block blob (Put Blob with the account SAS).
    pub async fn put_blob(&self, http: &reqwest::Client, container: &str, blob: &str, data: Vec<u8>) {
        let response = http
            .put(self.blob_url_with_sas(container, blob))
            .header("x-ms-version", "2021-12-02")
            .header("x-ms-blob-type", "BlockBlob")
            .body(data)
            .send()
            .await
            .expect("put blob");
        assert_eq!(response.status(), 201, "put blob: {}", response.text().await.unwrap_or_default());
    }

    /// Reads a blob (Get Blob with the account SAS); `None` when it does not exist.
    pub async fn get_blob(&self, http: &reqwest::Client, container: &str, blob: &str) -> Option<String> {
        let response = http
            .get(self.blob_url_with_sas(container, blob))
            .header("x-ms-version", "2021-12-02")
            .send()
            .await
            .expect("get blob");
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200, "get blob {blob}");
        Some(response.text().await.expect("blob text"))
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An account SAS (services: blob; resource types: service, container, object; permissions
/// read, write, delete, list, add, create) signed with Azurite's key: HMAC-SHA256 over the
/// string-to-sign of sv=2019-12-12 (account name, sp, ss, srt, st, se, sip, spr, sv, each on a
/// line of its own).
pub fn account_sas(expiry: &str) -> String {
    account_sas_signed_with(ACCOUNT_KEY, expiry)
}

/// [`account_sas`] signed with another key (base64): a forged SAS that Azurite must refuse.
pub fn account_sas_signed_with(key_base64: &str, expiry: &str) -> String {
    use base64::Engine;
    let (sv, ss, srt, sp) = ("2019-12-12", "b", "sco", "rwdlac");
    let to_sign = format!("{ACCOUNT}\n{sp}\n{ss}\n{srt}\n\n{expiry}\n\n\n{sv}\n");
    let sig = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key_base64, &to_sign));
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    format!("sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={}&sig={}", enc(expiry), enc(&sig))
}

/// HMAC-SHA256 with a base64 key.
pub fn hmac_sha256(key_base64: &str, message: &str) -> Vec<u8> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.decode(key_base64).expect("key is base64");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    ring::hmac::sign(&key, message.as_bytes()).as_ref().to_vec()
}

/// The SAS signature of a SAS URL (what must never be printed).
pub fn signature_of(url: &str) -> String {
    let sig = url.split(['?', '&']).find_map(|p| p.strip_prefix("sig=")).expect("the URL has a sig");
    percent_encoding::percent_decode_str(sig).decode_utf8_lossy().into_owned()
}

thread_local! {
    /// The CA the helpers' Blob clients trust (see [`trust_ca`]).
    static TEST_CA: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Makes the Blob helpers of this thread trust `ca` (for Azurite over HTTPS).
pub fn trust_ca(ca: &Path) {
    TEST_CA.with(|c| *c.borrow_mut() = Some(ca.to_path_buf()));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A container client with the SAS of the URL, trusting `TWINLOAD_TEST_CA` if set by the test
/// (Azurite over HTTPS with the test CA).
fn client(container_url_with_sas: &str) -> BlobContainerClient {
    twinload::http::install_crypto_provider();
    let url = container_url_with_sas.parse().unwrap();
    let ca = TEST_CA.with(|ca| ca.borrow().clone());
    let options = azure_storage_blob::BlobContainerClientOptions {
        client_options: twinload::azure::transport::client_options(ca.as_deref()).unwrap(),
        ..Default::default()
    };
    BlobContainerClient::new(url, None, Some(options)).unwrap()
}

/// Creates the container (the URL's SAS must allow it) and uploads the blobs.
pub fn upload(container_url_with_sas: &str, blobs: &[(String, Vec<u8>)]) {
    runtime().block_on(async {
        let c = client(container_url_with_sas);
        let _ = c.create(None).await; // already there is fine
        futures::stream::iter(blobs)
            .for_each_concurrent(16, |(name, bytes)| {
                let c = &c;
                async move {
                    c.blob_client(name).upload(bytes::Bytes::from(bytes.clone()).into(), None).await.expect("upload");
                }
            })
            .await;
    })
}

/// Creates an empty container.
pub fn create_container(container_url_with_sas: &str) {
    runtime().block_on(async {
        let _ = client(container_url_with_sas).create(None).await;
    })
}

/// The names of every blob in the container, sorted.
pub fn list(container_url_with_sas: &str) -> Vec<String> {
    runtime().block_on(async {
        let c = client(container_url_with_sas);
        let mut names = Vec::new();
        let mut pager = c.list_blobs(None).unwrap();
        while let Some(blob) = pager.next().await {
            names.push(blob.expect("listing").name.unwrap_or_default());
        }
        names.sort();
        names
    })
}

/// One blob's bytes.
pub fn download(container_url_with_sas: &str, name: &str) -> Vec<u8> {
    runtime().block_on(async {
        let c = client(container_url_with_sas);
        let mut body = c.blob_client(name).download(None).await.expect("download").body;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        out
    })
}

/// A blob's lease state (`Leased`, `Available`, …) and metadata; `None` when it does not exist.
pub fn lease_and_metadata(
    container_url_with_sas: &str,
    name: &str,
) -> Option<(String, std::collections::HashMap<String, String>)> {
    use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;
    runtime().block_on(async {
        let properties = client(container_url_with_sas).blob_client(name).get_properties(None).await.ok()?;
        let state = properties.lease_state().ok().flatten().map(|s| format!("{s:?}")).unwrap_or_default();
        Some((state, properties.metadata().unwrap_or_default()))
    })
}

// ---------------------------------------------------------------------------------------------
// A fake managed-identity endpoint (App Service protocol, as azure_identity speaks it when
// IDENTITY_ENDPOINT and IDENTITY_HEADER are set).

/// How the fake endpoint issues tokens.
#[derive(Clone)]
pub struct TokenPolicy {
    /// Seconds until `expires_on` of each token (azure_identity refreshes within 300 s of it).
    pub lifetime_s: u64,
    /// Append each token issued to this file (what the mock's TokenFile auth accepts), except
    /// the first `withhold_first` tokens (issued but never valid: the mock answers 401).
    pub accept_file: Option<PathBuf>,
    pub withhold_first: u64,
    /// Makes a token an Azurite-acceptable JWT (aud storage, iss sts.windows.net) when the
    /// requested resource is Storage.
    pub jwt_for_storage: bool,
    /// The first this many Storage tokens carry a foreign audience: Azurite refuses them (401)
    /// though they are not near expiry, as Storage refuses a revoked token.
    pub refused_storage_tokens: u64,
}

/// A running fake token endpoint.
pub struct TokenEndpoint {
    pub url: String,
    pub header_secret: String,
    /// Requests served, per resource asked for.
    pub requests: Arc<parking_lot::Mutex<Vec<String>>>,
    pub issued: Arc<AtomicU64>,
}

impl TokenEndpoint {
    pub fn start(policy: TokenPolicy) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/msi/token", listener.local_addr().unwrap().port());
        let header_secret = "fake-identity-header".to_string();
        let requests = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let issued = Arc::new(AtomicU64::new(0));
        let (r, n, secret) = (requests.clone(), issued.clone(), header_secret.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (r, n, secret, policy) = (r.clone(), n.clone(), secret.clone(), policy.clone());
                std::thread::spawn(move || serve_token(stream, &r, &n, &secret, &policy));
            }
        });
        TokenEndpoint { url, header_secret, requests, issued }
    }

    /// The environment that points azure_identity's managed identity at this endpoint.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("IDENTITY_ENDPOINT".into(), self.url.clone()), ("IDENTITY_HEADER".into(), self.header_secret.clone())]
    }

    pub fn requests_for(&self, resource: &str) -> usize {
        self.requests.lock().iter().filter(|r| r.as_str() == resource).count()
    }
}

/// The n-th token (1-based) for a resource: a recognisable value, or a JWT Azurite accepts.
pub fn token_value(n: u64, resource: &str, policy: &TokenPolicy, expires_on: u64, storage_n: u64) -> String {
    if policy.jwt_for_storage && resource.starts_with("https://storage.azure.com") {
        let audience = if storage_n <= policy.refused_storage_tokens {
            "https://elsewhere.example"
        } else {
            "https://storage.azure.com"
        };
        use base64::Engine;
        let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let now = expires_on.saturating_sub(policy.lifetime_s);
        let header = serde_json::json!({"alg": "none", "typ": "JWT"});
        let claims = serde_json::json!({
            "aud": audience,
            "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
            "nbf": now - 60, "iat": now - 60, "exp": expires_on, "oid": format!("oid-{n}"), "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        });
        format!("{}.{}.", b64(&header), b64(&claims))
    } else {
        format!("fake-mi-token-{n}-{}", "x".repeat(16))
    }
}

fn serve_token(
    mut stream: TcpStream,
    requests: &parking_lot::Mutex<Vec<String>>,
    issued: &AtomicU64,
    secret: &str,
    policy: &TokenPolicy,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut header_ok = false;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("x-identity-header:") && line.trim_end().ends_with(secret) {
            header_ok = true;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length];
    let _ = reader.read_exact(&mut body);
    let target = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let resource = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "resource")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let (status, body) = if !header_ok {
        ("401 Unauthorized", "{\"error\":\"missing X-IDENTITY-HEADER\"}".to_string())
    } else {
        let storage_n = {
            let mut requests = requests.lock();
            requests.push(resource.clone());
            requests.iter().filter(|r| r.starts_with("https://storage.azure.com")).count() as u64
        };
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let expires_on = now + policy.lifetime_s;
        let token = token_value(n, &resource, policy, expires_on, storage_n);
        if let Some(file) = &policy.accept_file {
            if n > policy.withhold_first {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file).unwrap();
                writeln!(f, "{token}").unwrap();
            }
        }
        let body = serde_json::json!({
            "access_token": token, "expires_on": expires_on.to_string(), "resource": resource, "token_type": "Bearer",
        });
        ("200 OK", body.to_string())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Runs the twinload binary with arguments and extra environment; returns (exit code, stdout, stderr).
pub fn run_twinload(args: &[String], env: &[(String, String)], cwd: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinload"));
    cmd.args(args).current_dir(cwd).stdin(Stdio::null());
    for var in ["IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "AZ_BATCH_TASK_WORKING_DIR", "TWINLOAD_TOKEN"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("twinload starts");
    let out = wait_bounded(child, Duration::from_secs(180));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for a child at most `limit`, killing it after.
pub fn wait_bounded(mut child: Child, limit: Duration) -> std::process::Output {
    let started = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("twinload did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output { status, stdout: out_thread.join().unwrap(), stderr: err_thread.join().unwrap() }
}
