//! Input sources: where items come from and how they are read.
//!
//! [`open_inputs`] expands the paths a user gives (files, folders walked recursively, glob
//! patterns) into input units, each a [`Source`] that streams parsed [`Item`]s one at a time.
//! A bad line never stops the stream: it comes out as a [`SourceError`] naming the file and line
//! and what to fix, and the next line is read. A file whose format cannot be recognised at all is
//! an [`InputError`] before anything is read.
//!
//! Formats (recognised by extension, or by content when the extension says nothing):
//! - `.ndjson` / `.jsonl`: the ADT Import-Jobs NDJSON format ([`ndjson`]).
//! - `.json` or no extension: DTDL model files, one Interface or an array of them
//!   ([`dtdl_files`]), or one JSON document per twin ([`twin_doc`]) when the object is not a
//!   DTDL Interface.
//! - `.csv`: twins or relationships, one per row ([`csv_rows`]).
//!
//! Per-twin documents and CSV rows go through the reference prototype's [`mapping`] file when
//! one is configured ([`InputOptions`]). [`select`] keeps a task's share (`--shard`, `--phase`).
//! Parsers take a unit name, a short name and a reader, never a path, so a blob plugs in as a
//! local file does ([`open_reader`]).
//!
//! An input that is an `http(s)://` URL is a Blob Storage container (and prefix): every blob
//! under it is an input, in the formats above, named by its URL without the SAS ([`blob`]).

pub mod blob;
pub mod csv_rows;
pub mod dtdl_files;
mod items;
pub mod local;
pub mod mapping;
pub mod ndjson;
pub mod select;
pub mod twin_doc;

use std::sync::Arc;

use crate::azure::blob_url::BlobLocation;
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
    #[error("cannot tell the format of input {path}: {reason}. twinload reads Import-Jobs NDJSON (.ndjson, .jsonl, starting with {{\"Section\": \"Header\"}}), DTDL model files (.json), one JSON object per twin, and CSV (.csv)")]
    Unrecognised { path: String, reason: String },
    #[error("no inputs given; pass --input <file, folder, glob or Blob Storage URL>")]
    Empty,
    #[error(transparent)]
    BlobUrl(#[from] crate::azure::blob_url::BlobUrlError),
}

/// How inputs are read beyond their format: the mapping file and the model for per-twin documents
/// and CSV rows.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// The reference prototype's mapping file, already read.
    pub mapping: Option<Arc<mapping::Mapping>>,
    /// The model of twins whose input does not name one. With a mapping and no model, the
    /// mapping patches existing twins.
    pub model: Option<String>,
    /// How Blob Storage inputs are reached, and the record of the blobs read to the end.
    pub blobs: blob::BlobInputs,
}

/// One input unit (a file, or the blobs under a container URL) that streams items.
pub trait Source: Send {
    /// The file path or container URL (without SAS); a blob's items name their blob's URL.
    fn name(&self) -> &str;
    /// Streams items one at a time; a bad line is an Err and the stream goes on.
    fn items(self: Box<Self>) -> Box<dyn Iterator<Item = Result<Item, SourceError>> + Send>;
}

/// Expands paths (files, folders recursively, glob patterns) into input units, sorted by path
/// and without repeats.
pub fn open_inputs(paths: &[String]) -> Result<Vec<Box<dyn Source>>, InputError> {
    open_inputs_with(paths, &InputOptions::default())
}

/// [`open_inputs`] with a mapping and a default model.
pub fn open_inputs_with(paths: &[String], options: &InputOptions) -> Result<Vec<Box<dyn Source>>, InputError> {
    if paths.is_empty() {
        return Err(InputError::Empty);
    }
    // An http(s) URL is a Blob Storage container (and prefix); everything else is local.
    let (urls, locals): (Vec<&String>, Vec<&String>) = paths.iter().partition(|p| BlobLocation::is_blob_url(p));
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if !locals.is_empty() {
        let locals: Vec<String> = locals.into_iter().cloned().collect();
        for file in local::expand(&locals)? {
            sources.push(local::open(&file, options)?);
        }
    }
    for url in urls {
        sources.push(Box::new(blob::BlobListSource::new(BlobLocation::parse(url)?, options.clone())));
    }
    Ok(sources)
}

/// Opens one input unit of a known format from a reader: `name` names it in errors and origins
/// (a path or blob URL), `short_name` is its file or blob name (`$FILENAME`, and the twin id of a
/// per-twin document without `$dtId`).
pub fn open_reader(
    format: local::Format,
    name: String,
    short_name: String,
    reader: Box<dyn std::io::Read + Send>,
    options: &InputOptions,
) -> Box<dyn Source> {
    match format {
        local::Format::Ndjson => Box::new(ndjson::NdjsonSource::new(name, reader)),
        local::Format::DtdlModels => Box::new(dtdl_files::DtdlFileSource::new(name, reader)),
        local::Format::TwinDocument => {
            Box::new(twin_doc::TwinDocSource::new(name, short_name, reader, options.clone()))
        }
        local::Format::Csv => Box::new(csv_rows::CsvSource::new(name, short_name, reader, options.clone())),
    }
}

/// Every item of every input, in input order: the sources one after another.
pub fn read_all(sources: Vec<Box<dyn Source>>) -> impl Iterator<Item = Result<Item, SourceError>> + Send {
    sources.into_iter().flat_map(|s| s.items())
}
