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
//!
//! One writer: a run takes a lease of [`LEASE_SECONDS`] on the blob before reading it (creating
//! an empty blob first if there is none), renews it every [`RENEW_EVERY`] while it runs, and
//! releases it when the store is dropped; after a crash the lease expires by itself. Every
//! upload carries the lease, so no other writer can replace the blob meanwhile. The blob's
//! metadata names the holder (see [`super::holder`]) for a second run to report.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use azure_core::http::StatusCode;
use azure_storage_blob::models::{
    BlobClientAcquireLeaseResultHeaders, BlobClientGetPropertiesResultHeaders, BlobClientSetMetadataOptions,
    BlobClientUploadOptions,
};
use azure_storage_blob::{BlobClient, BlobContainerClient};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;

use super::holder::Holder;
use super::store::{Claim, LedgerStore, LocalStore, StoreError};
use crate::azure::blob_url::{redact_sas, BlobAccess, BlobLocation};

/// How long a lease lasts unless renewed (Blob Storage allows 15 to 60 seconds, or infinite,
/// which a crashed run would never give back).
pub const LEASE_SECONDS: i32 = 60;
/// How often a held lease is renewed: three chances before it would expire.
const RENEW_EVERY: Duration = Duration::from_secs(15);
/// How long dropping the store waits for the lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest time records wait in the local copy before an upload (a killed task loses at most
/// this much of its record).
pub const UPLOAD_EVERY: Duration = Duration::from_secs(30);
/// How long one transfer may take before the ledger gives up on it.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What the transfer thread is asked to do.
enum Transfer {
    /// Take the lease for this run, naming it in the blob's metadata.
    Claim(Holder, mpsc::Sender<Result<Claim, String>>),
    /// Download the blob into the local copy; `false` when it does not exist yet.
    Download(mpsc::Sender<Result<bool, String>>),
    /// Upload the local copy; `Some` waits for the outcome.
    Upload(Option<mpsc::Sender<Result<(), String>>>),
    /// Give the lease back (the store is being dropped).
    Release(mpsc::Sender<()>),
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

    fn claim(&mut self, me: &Holder) -> Result<Claim, StoreError> {
        let (reply, outcome) = mpsc::channel();
        self.requests
            .send(Transfer::Claim(me.clone(), reply))
            .map_err(|_| self.error("lease it", "the transfer thread ended".into()))?;
        outcome
            .recv_timeout(TRANSFER_TIMEOUT)
            .map_err(|_| self.error("lease it", format!("no answer within {} s", TRANSFER_TIMEOUT.as_secs())))?
            .map_err(|e| self.error("lease it", e))
    }

    fn when_held(&self) -> &'static str {
        "its lease is released when that run ends, and expires within 60 s of a crash"
    }

    fn read(&mut self) -> Result<Option<Box<dyn BufRead>>, StoreError> {
        let (reply, outcome) = mpsc::channel();
        self.requests
            .send(Transfer::Download(reply))
            .map_err(|_| self.error("read it", "the transfer thread ended".into()))?;
        let exists = outcome
            .recv_timeout(TRANSFER_TIMEOUT)
            .map_err(|_| self.error("read it", format!("no answer within {} s", TRANSFER_TIMEOUT.as_secs())))?
            .map_err(|e| self.error("read it", e))?;
        if exists {
            self.local.read()
        } else {
            Ok(None)
        }
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

impl Drop for BlobStore {
    fn drop(&mut self) {
        // The next run need not wait for the lease to expire.
        let (reply, released) = mpsc::channel();
        if self.requests.send(Transfer::Release(reply)).is_ok() {
            let _ = released.recv_timeout(RELEASE_TIMEOUT);
        }
    }
}

/// The transfer thread: one request at a time, until the store is dropped. The runtime has a
/// worker of its own, so the lease is renewed while the thread waits for requests.
fn transfers(container: BlobContainerClient, blob: String, copy: PathBuf, jobs: mpsc::Receiver<Transfer>) {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() else {
        return;
    };
    let client = Arc::new(container.blob_client(&blob));
    let lease = Lease::default();
    for job in jobs {
        match job {
            Transfer::Claim(me, reply) => {
                let outcome = runtime.block_on(claim(&client, &me));
                if let Ok((Claim::Taken, Some(id))) = &outcome {
                    *lease.id.lock() = Some(id.clone());
                    *lease.holder.lock() = me.to_metadata();
                    runtime.spawn(renew(client.clone(), lease.clone(), blob.clone()));
                }
                let _ = reply.send(outcome.map(|(claim, _)| claim));
            }
            Transfer::Download(reply) => {
                let _ = reply.send(runtime.block_on(download(&client, &copy)));
            }
            Transfer::Upload(reply) => {
                let outcome = match std::fs::read(&copy) {
                    Ok(bytes) => runtime.block_on(upload(&client, bytes, &lease)),
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
            Transfer::Release(reply) => {
                let id = lease.id.lock().take();
                if let Some(id) = id {
                    if let Err(e) = runtime.block_on(client.release_lease(id, None)) {
                        tracing::warn!(
                            "ledger {blob}: cannot release its lease ({}); it expires within {LEASE_SECONDS} s",
                            sdk_error(e)
                        );
                    }
                }
                let _ = reply.send(());
                return;
            }
        }
    }
}

/// The lease this run holds, shared with its renewal.
#[derive(Clone, Default)]
struct Lease {
    id: Arc<Mutex<Option<String>>>,
    /// The holder's record, carried by every upload (a Put Blob replaces the metadata).
    holder: Arc<Mutex<std::collections::HashMap<String, String>>>,
}

/// Creates the blob if there is none (so there is something to lease), then takes the lease;
/// when another run has it, names that run from the blob's metadata.
async fn claim(client: &BlobClient, me: &Holder) -> Result<(Claim, Option<String>), String> {
    let create = BlobClientUploadOptions { metadata: Some(me.to_metadata()), ..Default::default() }.if_not_exists();
    match client.upload(Bytes::new().into(), Some(create)).await {
        Ok(_) => {}
        // There is one already (leased or not).
        Err(e) if matches!(e.http_status(), Some(StatusCode::Conflict | StatusCode::PreconditionFailed)) => {}
        Err(e) => return Err(sdk_error(e)),
    }
    match client.acquire_lease(LEASE_SECONDS, None).await {
        Ok(response) => {
            let id = response.lease_id().map_err(sdk_error)?.ok_or("the lease came without its id")?;
            let options = BlobClientSetMetadataOptions { lease_id: Some(id.clone()), ..Default::default() };
            client.set_metadata(&me.to_metadata(), Some(options)).await.map_err(sdk_error)?;
            Ok((Claim::Taken, Some(id)))
        }
        Err(e) if e.http_status() == Some(StatusCode::Conflict) => {
            let holder = match client.get_properties(None).await {
                Ok(properties) => properties.metadata().ok().and_then(|meta| Holder::from_metadata(&meta)),
                Err(_) => None,
            };
            Ok((Claim::HeldBy(holder), None))
        }
        Err(e) => Err(sdk_error(e)),
    }
}

/// Renews the lease until it is released (the id taken away).
async fn renew(client: Arc<BlobClient>, lease: Lease, blob: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Some(id) = lease.id.lock().clone() else { return };
        if let Err(e) = client.renew_lease(id, None).await {
            tracing::warn!(
                "ledger {blob}: cannot renew its lease ({}); trying again in {} s",
                sdk_error(e),
                RENEW_EVERY.as_secs()
            );
        }
    }
}

async fn upload(client: &BlobClient, bytes: Vec<u8>, lease: &Lease) -> Result<(), String> {
    let lease_id = lease.id.lock().clone();
    let metadata = lease_id.as_ref().map(|_| lease.holder.lock().clone());
    let options = BlobClientUploadOptions { lease_id, metadata, ..Default::default() };
    client.upload(Bytes::from(bytes).into(), Some(options)).await.map(|_| ()).map_err(sdk_error)
}

/// Streams the blob into the local copy (never the whole ledger in memory).
async fn download(client: &BlobClient, copy: &std::path::Path) -> Result<bool, String> {
    let mut body = match client.download(None).await {
        Ok(response) => response.body,
        Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(false),
        Err(e) => return Err(sdk_error(e)),
    };
    let local = |e: std::io::Error| format!("cannot write the local copy: {e}");
    let mut out = std::io::BufWriter::new(std::fs::File::create(copy).map_err(local)?);
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk.map_err(sdk_error)?).map_err(local)?;
    }
    out.flush().map_err(local)?;
    Ok(true)
}

fn sdk_error(e: azure_core::Error) -> String {
    redact_sas(&crate::azure::error_chain(&e))
}
