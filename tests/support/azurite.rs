//! Azurite 3.35.0 (the newest that runs on Node 20) serving Blob Storage on a free loopback
//! port, in memory, stopped when dropped. `tests/run.sh` installs it (npm) into
//! `$CARGO_TARGET_DIR/azurite`; `TWINLOAD_AZURITE_BLOB` names another `azurite-blob`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::sas::{azurite_sas, AZURITE_ACCOUNT};

/// How long Azurite may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Azurite {
    child: Child,
    workspace: Option<tempfile::TempDir>,
    /// `http://127.0.0.1:<port>/devstoreaccount1`
    pub account_url: String,
    /// An account SAS query string (no `?`) with every permission.
    pub sas: String,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TWINLOAD_AZURITE_BLOB") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("azurite/node_modules/.bin/azurite-blob")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

impl Azurite {
    /// Starts Azurite and waits until it accepts connections. Panics with what to do when
    /// Azurite is not installed.
    pub fn start() -> Azurite {
        let binary = binary();
        assert!(
            binary.exists(),
            "Azurite is not installed at {}: run tests/run.sh (it runs `npm install azurite@3.35.0` into $CARGO_TARGET_DIR/azurite) or set TWINLOAD_AZURITE_BLOB",
            binary.display()
        );
        let port = free_port();
        // Azurite writes its debug log and a small config into its working directory.
        let workspace = tempfile::tempdir().expect("azurite workspace");
        let child = Command::new(&binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--loose"])
            .current_dir(workspace.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let azurite = Azurite {
            child,
            workspace: Some(workspace),
            account_url: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
            sas: azurite_sas(),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "Azurite did not listen on port {port} within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        azurite
    }

    /// `<account>/<container>` without a SAS.
    pub fn container_url(&self, container: &str) -> String {
        format!("{}/{container}", self.account_url)
    }

    /// A blob's URL with the SAS.
    pub fn blob_url_with_sas(&self, container: &str, blob: &str) -> String {
        format!("{}/{container}/{blob}?{}", self.account_url, self.sas)
    }

    /// Creates a container (Create Container with the account SAS).
    pub async fn create_container(&self, http: &reqwest::Client, container: &str) {
        let url = format!("{}/{container}?restype=container&{}", self.account_url, self.sas);
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
