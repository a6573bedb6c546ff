//! Local inputs: files, folders (walked recursively) and glob patterns, and which format each
//! file is in.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{InputError, InputOptions, Source};

/// The formats a local file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ADT Import-Jobs NDJSON.
    Ndjson,
    /// DTDL model file: one Interface or an array of them.
    DtdlModels,
    /// One JSON object per twin (not a DTDL Interface).
    TwinDocument,
    /// CSV with a header row: twins or relationships.
    Csv,
}

/// How many bytes of a file without a telling extension are looked at to recognise it.
const SNIFF_BYTES: u64 = 64 * 1024;

/// The input name that reads standard input (`cat fleet.ndjson | twinload load --input -`).
pub const STDIN: &str = "-";

/// Expands the given paths into a sorted list of files without repeats. A folder contributes
/// every file under it whose extension names a known format, and every file without an extension
/// whose content is a known format (per-twin documents are named by their twin id); others, such
/// as a README, a LICENSE or a dot-file, are skipped, and so are pipes, sockets and devices
/// (with a warning naming them: opening a pipe nobody writes to waits for ever). A named file or
/// a glob match is taken whatever its extension; `-` (standard input) or a pipe named directly
/// is read once, as a stream ([`open`]).
pub fn expand(paths: &[String]) -> Result<Vec<PathBuf>, InputError> {
    let mut files = BTreeSet::new();
    for spec in paths {
        let path = Path::new(spec);
        if spec == STDIN || is_stream(path) || path.is_file() {
            files.insert(path.to_path_buf());
        } else if path.is_dir() {
            walk_folder(path, &mut files)?;
        } else if is_glob(spec) {
            let matches = glob::glob(spec)
                .map_err(|e| InputError::BadPattern { pattern: spec.clone(), message: e.to_string() })?;
            let mut matched = 0usize;
            for entry in matches {
                let found =
                    entry.map_err(|e| InputError::Io { path: e.path().display().to_string(), source: e.into() })?;
                matched += 1;
                if found.is_dir() {
                    walk_folder(&found, &mut files)?;
                } else {
                    files.insert(found);
                }
            }
            if matched == 0 {
                return Err(InputError::NoMatch { pattern: spec.clone() });
            }
        } else {
            return Err(InputError::NotFound { path: spec.clone() });
        }
    }
    Ok(files.into_iter().collect())
}

fn is_glob(spec: &str) -> bool {
    spec.contains(['*', '?', '['])
}

fn walk_folder(folder: &Path, files: &mut BTreeSet<PathBuf>) -> Result<(), InputError> {
    for entry in walkdir::WalkDir::new(folder).follow_links(true) {
        let entry = entry.map_err(|e| InputError::Io {
            path: e.path().unwrap_or(folder).display().to_string(),
            source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("filesystem loop")),
        })?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let file_type = entry.file_type();
        if file_type.is_dir() || hidden {
            continue;
        }
        // Checked before the content is looked at: opening a FIFO waits for a writer.
        if !file_type.is_file() {
            tracing::warn!(
                "skipping {}: not a regular file (a pipe, socket or device); give it as --input by itself to read it as a stream",
                entry.path().display()
            );
            continue;
        }
        // A file without extension is taken when its content is one of ours (a per-twin
        // document named by its twin id), so a LICENSE beside the data does not stop the load.
        let known = match entry.path().extension() {
            None => detect_format(entry.path()).is_ok(),
            Some(_) => format_by_extension(entry.path()).is_some(),
        };
        if known {
            files.insert(entry.into_path());
        }
    }
    Ok(())
}

/// Whether a path names something that is read as a stream: it exists and is neither a
/// regular file nor a folder (a FIFO, `/dev/stdin`, a character device).
fn is_stream(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The format an extension names, if it names one.
pub fn format_by_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "ndjson" | "jsonl" => Some(Format::Ndjson),
        "json" => Some(Format::DtdlModels),
        "csv" => Some(Format::Csv),
        _ => None,
    }
}

/// Whether a JSON object's text is a DTDL Interface rather than a twin document (a DTDL
/// document has `@context`, `@id` or `@type` keys; a twin has none of them at the top).
fn looks_like_dtdl(head: &str) -> bool {
    ["\"@context\"", "\"@id\"", "\"@type\""].iter().any(|k| head.contains(k))
}

/// Recognises a file's format: by extension, else by its first non-blank characters (an NDJSON
/// section marker, or a JSON object/array for DTDL).
pub fn detect_format(path: &Path) -> Result<Format, InputError> {
    match format_by_extension(path) {
        // A `.json` file is a model file or a twin document; the content tells.
        Some(Format::DtdlModels) => {}
        Some(format) => return Ok(format),
        None => {}
    }
    let file =
        std::fs::File::open(path).map_err(|source| InputError::Io { path: path.display().to_string(), source })?;
    let (format, _) = sniff(Box::new(file), &path.display().to_string())?;
    Ok(format)
}

/// Recognises a reader's format by its first [`SNIFF_BYTES`]; gives back the format and a
/// reader that starts again at the first byte (the bytes looked at, then the rest).
fn sniff(mut reader: Box<dyn Read + Send>, name: &str) -> Result<(Format, Box<dyn Read + Send>), InputError> {
    let mut head = Vec::new();
    reader
        .by_ref()
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .map_err(|source| InputError::Io { path: name.to_string(), source })?;
    let unrecognised = |reason: String| InputError::Unrecognised { path: name.to_string(), reason };
    let text = match std::str::from_utf8(&head) {
        Ok(text) => text,
        // Cut inside a character at the end of the sniffed bytes: the part before it is fine.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
        Err(e) => return Err(unrecognised(format!("it does not start as UTF-8 text ({e})"))),
    };
    let format = format_by_head(text).map_err(unrecognised)?;
    Ok((format, Box::new(std::io::Cursor::new(head).chain(reader))))
}

/// Recognises a format by the first bytes of an input (a file or a blob): an NDJSON section
/// marker, a JSON array (DTDL), or a JSON object (a DTDL Interface or a per-twin document).
pub(crate) fn format_by_head(head: &str) -> Result<Format, String> {
    let text = head.trim_start_matches('\u{feff}').trim_start();
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Err("it is empty".into());
    };
    let compact: String = first.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.starts_with("{\"Section\"") {
        return Ok(Format::Ndjson);
    }
    if first.starts_with('[') {
        return Ok(Format::DtdlModels);
    }
    if first.starts_with('{') {
        // The rest of the sniffed bytes decide: an Interface's keys may come after line one.
        return Ok(if looks_like_dtdl(text) { Format::DtdlModels } else { Format::TwinDocument });
    }
    Err("its first line is neither an NDJSON section marker nor a JSON object or array".into())
}

/// Opens one file as a source of the format it is in. Standard input (`-`) and a pipe or
/// device named directly are read once, as a stream: their format is the name's extension when
/// it tells (`fleet.csv`), else it is recognised from the first bytes (Import-Jobs NDJSON, DTDL,
/// a twin document), which are then read again from memory. CSV on standard input cannot be
/// recognised: give it as a file.
pub fn open(path: &Path, options: &InputOptions) -> Result<Box<dyn Source>, InputError> {
    if path == Path::new(STDIN) || is_stream(path) {
        return open_stream(path, options);
    }
    let format = detect_format(path)?;
    // Opened now so a missing or unreadable file is an InputError before any item is read.
    let file =
        std::fs::File::open(path).map_err(|source| InputError::Io { path: path.display().to_string(), source })?;
    let name = path.display().to_string();
    Ok(super::open_reader(format, name, short_name(path), Box::new(file), options))
}

fn open_stream(path: &Path, options: &InputOptions) -> Result<Box<dyn Source>, InputError> {
    let stdin = path == Path::new(STDIN);
    let name = if stdin { "stdin".to_string() } else { path.display().to_string() };
    let reader: Box<dyn Read + Send> = if stdin {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|source| InputError::Io { path: name.clone(), source })?)
    };
    let (format, reader) = match format_by_extension(path) {
        // A `.json` stream is a model file or a twin document; the content tells.
        Some(format) if format != Format::DtdlModels => (format, reader),
        _ => sniff(reader, &name)?,
    };
    let short = if stdin { name.clone() } else { short_name(path) };
    Ok(super::open_reader(format, name, short, reader, options))
}

/// A file's short name: its name without folders, and without a `.json` extension (a per-twin
/// document `org1.json` is twin `org1`, as blob `org1` is).
pub fn short_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_suffix(".json") {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_recursively_and_sorted_globs_expand() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/deeper")).unwrap();
        for f in ["b/deeper/z.ndjson", "a.json", "b/m.jsonl", "README.md", "b/org1", ".hidden"] {
            std::fs::write(root.join(f), "{}").unwrap();
        }
        std::fs::write(root.join("LICENSE"), "MIT License\n").unwrap();
        let got = expand(&[root.display().to_string()]).unwrap();
        let names: Vec<_> = got.iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["a.json", "b/deeper/z.ndjson", "b/m.jsonl", "b/org1"]);

        let pattern = format!("{}/b/**/*.ndjson", root.display());
        let got = expand(&[pattern.clone(), pattern]).unwrap();
        assert_eq!(got.len(), 1, "a file named twice is read once");
    }

    #[test]
    fn missing_paths_and_empty_globs_name_the_path() {
        let err = expand(&["/no/such/file.ndjson".into()]).unwrap_err().to_string();
        assert!(err.contains("/no/such/file.ndjson") && err.contains("does not exist"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let pattern = format!("{}/*.ndjson", dir.path().display());
        let err = expand(std::slice::from_ref(&pattern)).unwrap_err().to_string();
        assert!(err.contains(&pattern) && err.contains("matched no files"), "{err}");
    }

    #[test]
    fn format_is_recognised_by_extension_or_content() {
        let dir = tempfile::tempdir().unwrap();
        let nd = dir.path().join("export.txt");
        std::fs::write(&nd, "\n{ \"Section\" : \"Header\" }\n").unwrap();
        assert_eq!(detect_format(&nd).unwrap(), Format::Ndjson);
        let dtdl = dir.path().join("model");
        std::fs::write(&dtdl, "[{\"@id\":\"dtmi:a;1\"}]").unwrap();
        assert_eq!(detect_format(&dtdl).unwrap(), Format::DtdlModels);
        let twin = dir.path().join("org1");
        std::fs::write(&twin, "{\"OrgID\":\"org1\",\n \"Division\":\"Sales\"}").unwrap();
        assert_eq!(detect_format(&twin).unwrap(), Format::TwinDocument);
        let interface = dir.path().join("room.json");
        std::fs::write(&interface, "{\n\"@context\":\"dtmi:dtdl:context;3\",\"@id\":\"dtmi:a;1\"}").unwrap();
        assert_eq!(detect_format(&interface).unwrap(), Format::DtdlModels);
        let doc = dir.path().join("org2.json");
        std::fs::write(&doc, "{\"$dtId\":\"org2\"}").unwrap();
        assert_eq!(detect_format(&doc).unwrap(), Format::TwinDocument);
        assert_eq!(short_name(&doc), "org2");
        assert_eq!(detect_format(&dir.path().join("data.csv")).unwrap(), Format::Csv);
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, "a,b,c\n").unwrap();
        let err = open(&other, &InputOptions::default()).err().unwrap().to_string();
        assert!(err.contains("notes.txt") && err.contains("cannot tell the format"), "{err}");
    }
}
