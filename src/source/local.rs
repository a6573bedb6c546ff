//! Local inputs: files, folders (walked recursively) and glob patterns, and which format each
//! file is in.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::dtdl_files::DtdlFileSource;
use super::ndjson::NdjsonSource;
use super::{InputError, Source};

/// The formats a local file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ADT Import-Jobs NDJSON.
    Ndjson,
    /// DTDL model file: one Interface or an array of them.
    DtdlModels,
}

/// How many bytes of a file without a telling extension are looked at to recognise it.
const SNIFF_BYTES: u64 = 64 * 1024;

/// Expands the given paths into a sorted list of files without repeats. A folder contributes
/// every file under it whose extension names a known format (others, such as a README, are
/// skipped); a named file or a glob match is taken whatever its extension.
pub fn expand(paths: &[String]) -> Result<Vec<PathBuf>, InputError> {
    let mut files = BTreeSet::new();
    for spec in paths {
        let path = Path::new(spec);
        if path.is_file() {
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
        if entry.file_type().is_file() && format_by_extension(entry.path()).is_some() {
            files.insert(entry.into_path());
        }
    }
    Ok(())
}

/// The format an extension names, if it names one.
pub fn format_by_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "ndjson" | "jsonl" => Some(Format::Ndjson),
        "json" => Some(Format::DtdlModels),
        _ => None,
    }
}

/// Recognises a file's format: by extension, else by its first non-blank characters (an NDJSON
/// section marker, or a JSON object/array for DTDL).
pub fn detect_format(path: &Path) -> Result<Format, InputError> {
    if let Some(format) = format_by_extension(path) {
        return Ok(format);
    }
    let io_err = |source| InputError::Io { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut reader = BufReader::new(std::io::Read::take(file, SNIFF_BYTES));
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| InputError::Unrecognised {
            path: path.display().to_string(),
            reason: format!("it does not start as UTF-8 text ({e})"),
        })?;
        if n == 0 {
            return Err(InputError::Unrecognised { path: path.display().to_string(), reason: "it is empty".into() });
        }
        let text = line.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            continue;
        }
        return format_by_first_line(text)
            .map_err(|reason| InputError::Unrecognised { path: path.display().to_string(), reason });
    }
}

/// Recognises a format by the first non-blank line of an input (a file or a blob).
pub(crate) fn format_by_first_line(text: &str) -> Result<Format, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.starts_with("{\"Section\"") {
        return Ok(Format::Ndjson);
    }
    if text.starts_with('[') || (text.starts_with('{') && text.contains("\"@")) {
        return Ok(Format::DtdlModels);
    }
    Err("its first line is neither an NDJSON section marker nor a DTDL Interface".into())
}

/// Opens one file as a source of the format it is in.
pub fn open(path: &Path) -> Result<Box<dyn Source>, InputError> {
    let format = detect_format(path)?;
    // Opened now so a missing or unreadable file is an InputError before any item is read.
    let file =
        std::fs::File::open(path).map_err(|source| InputError::Io { path: path.display().to_string(), source })?;
    let name = path.display().to_string();
    Ok(match format {
        Format::Ndjson => Box::new(NdjsonSource::new(name, Box::new(file))),
        Format::DtdlModels => Box::new(DtdlFileSource::new(name, Box::new(file))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_recursively_and_sorted_globs_expand() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/deeper")).unwrap();
        for f in ["b/deeper/z.ndjson", "a.json", "b/m.jsonl", "README.md"] {
            std::fs::write(root.join(f), "{}").unwrap();
        }
        let got = expand(&[root.display().to_string()]).unwrap();
        let names: Vec<_> = got.iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["a.json", "b/deeper/z.ndjson", "b/m.jsonl"]);

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
        let other = dir.path().join("data.csv");
        std::fs::write(&other, "a,b,c\n").unwrap();
        let err = open(&other).err().unwrap().to_string();
        assert!(err.contains("data.csv") && err.contains("cannot tell the format"), "{err}");
    }
}
