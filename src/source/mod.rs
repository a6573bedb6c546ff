//! Input sources: where items come from and how they are read.
//!
//! [`open_inputs`] expands the paths a user gives (files, folders walked recursively, glob
//! patterns) into input units, each a [`Source`] that streams parsed [`Item`]s one at a time.
//! A bad line never stops the stream: it comes out as a [`SourceError`] naming the file and line
//! and what to fix, and the next line is read. A file whose format cannot be recognised at all is
//! an [`InputError`] before anything is read.
//!
//! Formats today (recognised by extension, or by content when the extension says nothing):
//! - `.ndjson` / `.jsonl`: the ADT Import-Jobs NDJSON format ([`ndjson`]).
//! - `.json`: DTDL model files, one Interface or an array of them ([`dtdl_files`]).
//!
//! An input that is an `http(s)://` URL is a Blob Storage container (and prefix): every blob
//! under it is an input, in the formats above, named by its URL without the SAS ([`blob`]).

pub mod blob;
pub mod dtdl_files;
mod items;
pub mod local;
pub mod ndjson;

use crate::item::{Item, ItemKey, Origin};

/// The longest line (NDJSON) or file (DTDL) read into memory at once. A longer one is reported
/// as an error and skipped; ADT's largest accepted document is a 1 MB model, so this leaves room.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How much of an offending line an error keeps (enough to recognise it, not to fill memory).
pub const RAW_EXCERPT_BYTES: usize = 1024;

/// A line (or document) that could not be read as an item. The stream goes on after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct SourceError {
    pub origin: Origin,
    /// What is wrong and what to fix.
    pub message: String,
    /// The offending line, truncated to about [`RAW_EXCERPT_BYTES`].
    pub raw: Option<String>,
    /// The identity of the item the line was meant to be, as far as it could be read: the kind
    /// from its section or shape, and the id when readable (an empty id when not). `None` when
    /// the error is about the file's structure rather than an item (a missing header, a section
    /// marker out of order or unknown).
    pub key: Option<ItemKey>,
}

impl SourceError {
    pub(crate) fn new(
        origin: Origin,
        message: impl Into<String>,
        raw: Option<&str>,
        key: Option<ItemKey>,
    ) -> SourceError {
        SourceError { origin, message: message.into(), raw: raw.map(excerpt), key }
    }
}

/// The first [`RAW_EXCERPT_BYTES`] of a line, cut on a character boundary.
pub(crate) fn excerpt(line: &str) -> String {
    if line.len() <= RAW_EXCERPT_BYTES {
        return line.to_string();
    }
    let mut end = RAW_EXCERPT_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// Why the inputs could not be opened. Each names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input {path} does not exist; check the path")]
    NotFound { path: String },
    #[error("input pattern {pattern} matched no files; check the pattern and the folder")]
    NoMatch { pattern: String },
    #[error("input pattern {pattern} is not a valid glob: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("cannot read input {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot tell the format of input {path}: {reason}. twinload reads Import-Jobs NDJSON (.ndjson, .jsonl, starting with {{\"Section\": \"Header\"}}) and DTDL model files (.json)")]
    Unrecognised { path: String, reason: String },
    #[error("no inputs given; pass --input <file, folder, glob or Blob Storage URL>")]
    Empty,
    #[error(transparent)]
    BlobUrl(#[from] crate::azure::blob_url::BlobUrlError),
}

/// One input unit (a file today, a blob later) that streams items.
pub trait Source: Send {
    /// The file path (later: the blob URL); the `file` of every item's origin.
    fn name(&self) -> &str;
    /// Streams items one at a time; a bad line is an Err and the stream goes on.
    fn items(self: Box<Self>) -> Box<dyn Iterator<Item = Result<Item, SourceError>> + Send>;
}

/// Expands paths (files, folders recursively, glob patterns) into input units, sorted by path
/// and without repeats; Blob Storage URLs (reached without a credential: a SAS or none) after them.
pub fn open_inputs(paths: &[String]) -> Result<Vec<Box<dyn Source>>, InputError> {
    open_inputs_with(paths, &blob::BlobInputs::default())
}

/// [`open_inputs`], reaching Blob Storage as `blobs` says and recording there what was read.
pub fn open_inputs_with(paths: &[String], blobs: &blob::BlobInputs) -> Result<Vec<Box<dyn Source>>, InputError> {
    use crate::azure::blob_url::BlobLocation;
    if paths.is_empty() {
        return Err(InputError::Empty);
    }
    let (urls, locals): (Vec<String>, Vec<String>) = paths.iter().cloned().partition(|p| BlobLocation::is_blob_url(p));
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if !locals.is_empty() {
        for file in local::expand(&locals)? {
            sources.push(local::open(&file)?);
        }
    }
    for url in &urls {
        sources.push(Box::new(blob::BlobListSource::new(BlobLocation::parse(url)?, blobs.clone())));
    }
    Ok(sources)
}

/// Every item of every input, in input order: the sources one after another.
pub fn read_all(sources: Vec<Box<dyn Source>>) -> impl Iterator<Item = Result<Item, SourceError>> + Send {
    sources.into_iter().flat_map(|s| s.items())
}
