//! A ledger in Blob Storage (`--ledger https://<account>.blob.core.windows.net/<container>/<blob>`,
//! with a SAS in the URL or the configured identity). A Batch task's disk goes with its node, so
//! a scheduled sync in Data Factory keeps its ledger next to its input.
//!
//! The store works on a local copy (a [`LocalStore`] in a temporary folder): appends go there at
//! once, as for a local ledger. The whole copy is uploaded with one Put Blob, which replaces the
//! blob atomically, so the blob always holds a ledger that some moment of the run had. That
//! happens at every compaction (when the ledger is opened and when the run finishes) and, while
//! the run goes, at most every [`UPLOAD_EVERY`] in the background. So a task killed midway loses at
//! most that much of its record, and the next run sends those items again, which is safe.
//! Nothing in the blob ever claims an item that did not land: the copy only holds confirmed
//! items.
//!
//! The Blob SDK is async and the ledger is not (the coordinator records as replies settle), so
//! the transfers run on a thread of their own with its own runtime. A background upload that
//! finds one already queued is dropped: the queued one reads the copy when it runs, so it carries
//! the newer records too.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use azure_storage_blob::BlobContainerClient;
use bytes::Bytes;
use futures::StreamExt;

use super::store::{LedgerStore, LocalStore, StoreError};
use crate::azure::blob_url::{redact_sas, BlobAccess, BlobLocation};

/// Longest time records wait in the local copy before an upload (a killed task loses at most
/// this much of its record).
pub const UPLOAD_EVERY: Duration = Duration::from_secs(30);
/// How long one transfer may take before the ledger gives up on it.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What the transfer thread is asked to do.
enum Transfer {
    /// Download the blob: its bytes, or `None` when it does not exist yet.
    Download(mpsc::Sender<Result<Option<Vec<u8>>, String>>),
    /// Upload the local copy; `Some` waits for the outcome.
    Upload(Option<mpsc::Sender<Result<(), String>>>),
}

pub struct BlobStore {
    /// The blob's URL without its SAS, for messages.
    shown: String,
    local: LocalStore,
    /// Holds the local copy's folder for as long as the store lives.
    _dir: tempfile::TempDir,
    requests: mpsc::SyncSender<Transfer>,
    last_upload: Instant,
    appended: bool,
}

impl BlobStore {
    /// A store for the blob at `url`. Nothing is transferred until the ledger reads.
    pub fn new(url: &str, access: &BlobAccess) -> Result<BlobStore, StoreError> {
        let shown = redact_sas(url.split('?').next().unwrap_or(url));
        let fail = |action: &'static str, detail: String| StoreError {
            location: shown.clone(),
            action,
            source: std::io::Error::other(detail),
        };
        let location = BlobLocation::parse(url).map_err(|e| fail("use it as a ledger", e.to_string()))?;
        if location.prefix.is_empty() || location.prefix.ends_with('/') {
            return Err(fail(
                "use it as a ledger",
                "the URL names a container or a folder, not a blob: add the ledger's blob name".into(),
            ));
        }
        let container = location.container_client(access).map_err(|e| fail("reach it", e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| fail("make a local copy of it", e.to_string()))?;
        let copy = dir.path().join("ledger.ndjson");
        let (requests, jobs) = mpsc::sync_channel(1);
        let (blob, copy_path) = (location.prefix.clone(), copy.clone());
        std::thread::Builder::new()
            .name("ledger-blob".into())
            .spawn(move || transfers(container, blob, copy_path, jobs))
            .map_err(|e| fail("start its transfers", e.to_string()))?;
        Ok(BlobStore {
            shown,
            local: LocalStore::new(copy),
            _dir: dir,
            requests,
            last_upload: Instant::now(),
            appended: false,
        })
    }

    fn error(&self, action: &'static str, detail: String) -> StoreError {
        StoreError { location: self.shown.clone(), action, source: std::io::Error::other(detail) }
    }

    /// Uploads the local copy and waits for it.
    fn upload_now(&mut self) -> Result<(), StoreError> {
        let (reply, outcome) = mpsc::channel();
        self.requests
            .send(Transfer::Upload(Some(reply)))
            .map_err(|_| self.error("upload it", "the transfer thread ended".into()))?;
        let result = outcome
            .recv_timeout(TRANSFER_TIMEOUT)
            .map_err(|_| self.error("upload it", format!("no answer within {} s", TRANSFER_TIMEOUT.as_secs())))?;
        result.map_err(|e| self.error("upload it", e))?;
        self.last_upload = Instant::now();
        self.appended = false;
        Ok(())
    }
}

impl LedgerStore for BlobStore {
    fn location(&self) -> String {
        self.shown.clone()
    }

    fn read(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        let (reply, outcome) = mpsc::channel();
        self.requests
            .send(Transfer::Download(reply))
            .map_err(|_| self.error("read it", "the transfer thread ended".into()))?;
        outcome
            .recv_timeout(TRANSFER_TIMEOUT)
            .map_err(|_| self.error("read it", format!("no answer within {} s", TRANSFER_TIMEOUT.as_secs())))?
            .map_err(|e| self.error("read it", e))
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.local.append(bytes)?;
        self.appended = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.local.sync()?;
        if self.appended && self.last_upload.elapsed() >= UPLOAD_EVERY {
            // In the background; one already queued carries these records too.
            if self.requests.try_send(Transfer::Upload(None)).is_ok() {
                self.last_upload = Instant::now();
                self.appended = false;
            }
        }
        Ok(())
    }

    fn replace(&mut self, content: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<(), StoreError> {
        self.local.replace(content)?;
        self.upload_now()
    }
}

/// The transfer thread: one request at a time, until the store is dropped.
fn transfers(container: BlobContainerClient, blob: String, copy: PathBuf, jobs: mpsc::Receiver<Transfer>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let client = container.blob_client(&blob);
    for job in jobs {
        match job {
            Transfer::Download(reply) => {
                let _ = reply.send(runtime.block_on(download(&client)));
            }
            Transfer::Upload(reply) => {
                let outcome = match std::fs::read(&copy) {
                    Ok(bytes) => runtime.block_on(async {
                        client.upload(Bytes::from(bytes).into(), None).await.map(|_| ()).map_err(sdk_error)
                    }),
                    Err(e) => Err(format!("cannot read the local copy: {e}")),
                };
                match reply {
                    Some(reply) => {
                        let _ = reply.send(outcome);
                    }
                    None => {
                        if let Err(e) = outcome {
                            tracing::warn!(
                                "ledger {blob}: a background upload failed ({e}); the next one carries its records"
                            );
                        }
                    }
                }
            }
        }
    }
}

async fn download(client: &azure_storage_blob::BlobClient) -> Result<Option<Vec<u8>>, String> {
    let mut body = match client.download(None).await {
        Ok(response) => response.body,
        Err(e) if e.http_status() == Some(azure_core::http::StatusCode::NotFound) => return Ok(None),
        Err(e) => return Err(sdk_error(e)),
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.map_err(sdk_error)?);
    }
    Ok(Some(bytes))
}

fn sdk_error(e: azure_core::Error) -> String {
    redact_sas(&crate::azure::error_chain(&e))
}
