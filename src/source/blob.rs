//! Blob Storage inputs: every blob of a container under a prefix, listed page by page and read
//! as a stream, so the planner starts on the first blob while the listing goes on (a container
//! may hold millions of blobs).
//!
//! The SDK is async and the parsers read a `std::io::Read`, so a thread of its own (with a
//! small tokio runtime) lists the container and downloads one blob at a time into bounded
//! channels; the parsing side blocks on those channels. A blob is recorded in the
//! [`BlobReadLog`] when its parser read it to a clean end: only such blobs may be archived.
//! Every name shown (origins, errors, dead letters) is the blob's URL without the SAS.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use azure_storage_blob::models::BlobContainerClientListBlobsOptions;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;

use super::local::{format_by_extension, format_by_head, short_name, Format};
use super::{open_reader, InputOptions, Source, SourceError};
use crate::azure::blob_url::{redact_sas, BlobAccess, BlobLocation};
use crate::item::{Item, Origin};

/// Blobs per listing page (the service's maximum; `blob_page_size` in the config).
pub const DEFAULT_LIST_PAGE_SIZE: u32 = 5000;
/// Chunks of one blob buffered between the download and the parser (a chunk is what the
/// HTTP stack hands over, typically 8–64 KB), so memory stays bounded for any blob size.
const CHUNKS_IN_FLIGHT: usize = 64;
/// How much of a blob's start is looked at to recognise its format.
const SNIFF_BYTES: usize = 64 * 1024;
/// Listed blobs waiting for the parser.
const BLOBS_IN_FLIGHT: usize = 16;

/// One input blob read to the end.
#[derive(Debug, Clone)]
pub struct ReadBlob {
    pub location: BlobLocation,
    /// The blob's name in its container.
    pub name: String,
    /// Its URL without SAS (the `file` of its items' origins).
    pub shown: String,
}

/// Which input blobs the run read to a clean end. Shared by clones.
#[derive(Clone, Default)]
pub struct BlobReadLog(Arc<Mutex<Vec<ReadBlob>>>);

impl std::fmt::Debug for BlobReadLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobReadLog({} blobs)", self.0.lock().len())
    }
}

impl BlobReadLog {
    fn record(&self, blob: ReadBlob) {
        self.0.lock().push(blob);
    }
    /// The blobs read so far, in reading order.
    pub fn blobs(&self) -> Vec<ReadBlob> {
        self.0.lock().clone()
    }
}

/// How blob inputs are reached and where what was read is recorded.
#[derive(Debug, Clone)]
pub struct BlobInputs {
    pub access: BlobAccess,
    pub log: BlobReadLog,
    pub page_size: u32,
}

impl Default for BlobInputs {
    fn default() -> Self {
        BlobInputs { access: BlobAccess::default(), log: BlobReadLog::default(), page_size: DEFAULT_LIST_PAGE_SIZE }
    }
}

/// All blobs under one container URL and prefix, as one input unit whose items name their blob.
pub struct BlobListSource {
    location: BlobLocation,
    shown: String,
    options: InputOptions,
}

impl BlobListSource {
    /// `options.blobs` says how to reach the container and where to record what was read.
    pub fn new(location: BlobLocation, options: InputOptions) -> BlobListSource {
        BlobListSource { shown: location.shown(), location, options }
    }
}

/// What the listing thread hands to the parsing side.
enum Event {
    /// The next blob, and the channel its bytes come through (closed at its end).
    Blob { name: String, chunks: Receiver<Result<Bytes, String>> },
    /// The listing itself failed; nothing more comes.
    ListingFailed(String),
}

impl Source for BlobListSource {
    fn name(&self) -> &str {
        &self.shown
    }

    fn items(self: Box<Self>) -> Box<dyn Iterator<Item = Result<Item, SourceError>> + Send> {
        let (tx, rx) = sync_channel(BLOBS_IN_FLIGHT);
        let location = self.location.clone();
        let inputs = self.options.blobs.clone();
        let spawned = std::thread::Builder::new()
            .name("blob-lister".into())
            .spawn(move || list_and_download(location, inputs.access, inputs.page_size, tx));
        let failed = spawned.err().map(|e| format!("cannot start the blob reader thread: {e}"));
        Box::new(BlobItems { source: *self, events: rx, current: None, failed })
    }
}

/// The listing thread: pages of the listing, each blob streamed in turn.
fn list_and_download(location: BlobLocation, access: BlobAccess, page_size: u32, tx: SyncSender<Event>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Event::ListingFailed(format!("cannot start the blob reader: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let shown = location.shown();
        let failed = |detail: String| Event::ListingFailed(format!("cannot list {shown}: {}", redact_sas(&detail)));
        let client = match location.container_client(&access) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Event::ListingFailed(e.to_string()));
                return;
            }
        };
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(location.prefix.clone()).filter(|p| !p.is_empty()),
            maxresults: i32::try_from(page_size).ok(),
            ..Default::default()
        };
        let mut listing = match client.list_blobs(Some(options)) {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(failed(crate::azure::error_chain(&e)));
                return;
            }
        };
        while let Some(listed) = listing.next().await {
            let name = match listed {
                Ok(blob) => match blob.name {
                    Some(name) if location.names(&name) => name,
                    _ => continue,
                },
                Err(e) => {
                    let _ = tx.send(failed(crate::azure::error_chain(&e)));
                    return;
                }
            };
            let (chunk_tx, chunks) = sync_channel(CHUNKS_IN_FLIGHT);
            if tx.send(Event::Blob { name: name.clone(), chunks }).is_err() {
                return; // the parsing side stopped reading
            }
            let shown = location.blob_shown(&name);
            let download_error = |e: azure_core::Error| {
                Err(format!("cannot read {shown}: {}", redact_sas(&crate::azure::error_chain(&e))))
            };
            match client.blob_client(&name).download(None).await {
                Err(e) => {
                    let _ = chunk_tx.send(download_error(e));
                }
                Ok(download) => {
                    let mut body = download.body;
                    while let Some(chunk) = body.next().await {
                        let stop = chunk.is_err();
                        // A send fails when the parser dropped this blob (an unknown format).
                        if chunk_tx.send(chunk.or_else(download_error)).is_err() || stop {
                            break;
                        }
                    }
                }
            }
        }
    });
}

/// The parsing side: the items of each blob in listing order.
struct BlobItems {
    source: BlobListSource,
    events: Receiver<Event>,
    current: Option<Box<dyn Iterator<Item = Result<Item, SourceError>> + Send>>,
    failed: Option<String>,
}

impl Iterator for BlobItems {
    type Item = Result<Item, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(message) = self.failed.take() {
            return Some(Err(self.problem(&self.source.shown.clone(), message)));
        }
        loop {
            if let Some(items) = &mut self.current {
                if let Some(item) = items.next() {
                    return Some(item);
                }
                self.current = None;
            }
            match self.events.recv() {
                Ok(Event::Blob { name, chunks }) => match self.open(name, chunks) {
                    Ok(items) => self.current = Some(items),
                    Err(problem) => return Some(Err(problem)),
                },
                Ok(Event::ListingFailed(message)) => {
                    return Some(Err(self.problem(&self.source.shown.clone(), message)));
                }
                Err(_) => return None,
            }
        }
    }
}

impl BlobItems {
    fn problem(&self, file: &str, message: String) -> SourceError {
        SourceError::new(Origin { file: file.into(), line: 0 }, message, None, None)
    }

    /// A parser over one blob's bytes, by the name's extension or else its first line.
    fn open(
        &self,
        name: String,
        chunks: Receiver<Result<Bytes, String>>,
    ) -> Result<Box<dyn Iterator<Item = Result<Item, SourceError>> + Send>, SourceError> {
        let shown = self.source.location.blob_shown(&name);
        let read = ReadBlob { location: self.source.location.clone(), name: name.clone(), shown: shown.clone() };
        let log = self.source.options.blobs.log.clone();
        let reader = ChunkReader { chunks, pending: Bytes::new(), at_end: Some((log, read)) };
        let mut reader = BufReader::with_capacity(SNIFF_BYTES, reader);
        let format = match format_by_extension(Path::new(&name)) {
            // A `.json` blob is a model file or a twin document: the content tells.
            Some(f) if f != Format::DtdlModels => f,
            _ => sniff(&mut reader).map_err(|reason| {
                self.problem(
                    &shown,
                    format!(
                        "cannot tell the format of blob {shown}: {reason}. twinload reads Import-Jobs NDJSON, DTDL \
                         model files, per-twin JSON documents and CSV"
                    ),
                )
            })?,
        };
        let short = short_name(Path::new(&name));
        Ok(open_reader(format, shown, short, Box::new(reader), &self.source.options).items())
    }
}

/// The format by the first bytes of a blob (its first chunk, up to [`SNIFF_BYTES`]).
fn sniff(reader: &mut impl BufRead) -> Result<Format, String> {
    let head = reader.fill_buf().map_err(|e| e.to_string())?;
    format_by_head(&String::from_utf8_lossy(head))
}

/// A blob's bytes as `Read`, from the download's channel. A clean end records the blob in the
/// read log; a download error is an I/O error (and the blob is never recorded).
struct ChunkReader {
    chunks: Receiver<Result<Bytes, String>>,
    pending: Bytes,
    at_end: Option<(BlobReadLog, ReadBlob)>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => self.pending = chunk,
                Ok(Err(message)) => {
                    self.at_end = None;
                    return Err(std::io::Error::other(message));
                }
                Err(_) => {
                    if let Some((log, blob)) = self.at_end.take() {
                        log.record(blob);
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of(parts: Vec<Result<&'static str, &'static str>>) -> (ChunkReader, BlobReadLog) {
        let (tx, rx) = sync_channel(parts.len() + 1);
        for p in parts {
            tx.send(p.map(|s| Bytes::from_static(s.as_bytes())).map_err(str::to_string)).unwrap();
        }
        drop(tx);
        let log = BlobReadLog::default();
        let location = BlobLocation::parse("http://127.0.0.1:1/devstoreaccount1/c").unwrap();
        let blob = ReadBlob { location, name: "b".into(), shown: "http://127.0.0.1:1/devstoreaccount1/c/b".into() };
        (ChunkReader { chunks: rx, pending: Bytes::new(), at_end: Some((log.clone(), blob)) }, log)
    }

    #[test]
    fn a_blob_read_to_a_clean_end_is_logged_and_one_cut_short_is_not() {
        let (mut reader, log) = reader_of(vec![Ok("{\"Section\":"), Ok(" \"Header\"}\n")]);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"Section\": \"Header\"}\n");
        assert_eq!(log.blobs().len(), 1);

        let (mut reader, log) = reader_of(vec![Ok("{\"Sec"), Err("cannot read blob: connection reset")]);
        let err = reader.read_to_string(&mut String::new()).unwrap_err();
        assert!(err.to_string().contains("connection reset"));
        assert!(log.blobs().is_empty());
    }

    #[test]
    fn the_format_of_a_blob_without_extension_comes_from_its_first_line() {
        let (reader, _) = reader_of(vec![Ok("\n  {\"Section\": \"Header\"}\n")]);
        assert_eq!(sniff(&mut BufReader::new(reader)).unwrap(), Format::Ndjson);
        let (reader, _) = reader_of(vec![Ok("[{\"@id\":\"dtmi:a;1\"}]")]);
        assert_eq!(sniff(&mut BufReader::new(reader)).unwrap(), Format::DtdlModels);
        let (reader, _) = reader_of(vec![]);
        assert_eq!(sniff(&mut BufReader::new(reader)).unwrap_err(), "it is empty");
    }
}
