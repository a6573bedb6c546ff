//! After a run: move each input blob whose items all landed (or were already there) to the
//! `archive` location, and upload the run's summary and dead letters next to them.
//!
//! Which blobs may move is decided from two records of the run: the blobs the parsers read to a
//! clean end ([`BlobReadLog`]) and the dead-letter file the journal wrote (each line names the
//! file, i.e. the blob URL, its item came from). A blob named by any dead letter stays where it
//! is, so the next run retries exactly what failed. A move is download, upload under the same
//! name below the archive prefix, then delete: it works with a SAS or a token on either side.
//! A task that loads one shard or one phase moves no input blob (the pipeline's other tasks still
//! read them); it uploads its summary and dead letters.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use azure_storage_blob::BlobContainerClient;
use bytes::Bytes;
use futures::StreamExt;

use super::blob_url::{redact_sas, BlobAccess, BlobLocation};
use crate::config::LoadConfig;
use crate::source::blob::ReadBlob;

/// What archiving did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveReport {
    /// Blobs moved to the archive (URLs without SAS).
    pub archived: Vec<String>,
    /// Blobs left in place because some of their items were dead-lettered.
    pub kept_with_dead_letters: Vec<String>,
    /// Blobs that could not be moved, with why (they stay in place; a re-run finds their
    /// items already there).
    pub failed: Vec<String>,
    /// Where the summary and dead letters were uploaded.
    pub uploaded: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Url(#[from] super::blob_url::BlobUrlError),
    #[error("cannot read the dead-letter file {path}: {source}")]
    DeadLetters { path: String, source: std::io::Error },
}

/// Archives the blobs `config.blob_read_log` holds to `config.archive` (nothing when unset).
pub async fn after_run(config: &LoadConfig) -> Result<ArchiveReport, ArchiveError> {
    let Some(archive) = &config.archive else { return Ok(ArchiveReport::default()) };
    let archive = BlobLocation::parse(archive)?;
    let access = BlobAccess::from_config(config);
    let target = archive.container_client(&access)?;
    let dead = files_with_dead_letters(&config.dead_letter_path)?;
    let mut report = ArchiveReport::default();

    // A shard or a phase writes only part of each blob's items, and the other tasks of the
    // pipeline read the same blobs, now or in a later phase: moving them would take their input
    // away. Such a task archives its summary and dead letters only.
    let movable = if config.selection.is_everything() { config.blob_read_log.blobs() } else { Vec::new() };
    for blob in movable {
        if dead.contains(&blob.shown) {
            report.kept_with_dead_letters.push(blob.shown);
            continue;
        }
        match move_blob(&blob, &access, &target, &archive).await {
            Ok(()) => report.archived.push(blob.shown),
            Err(why) => {
                tracing::warn!("cannot archive {}: {why}", blob.shown);
                report.failed.push(format!("{}: {why}", blob.shown));
            }
        }
    }

    let run = run_name();
    let uploads = [
        (config.summary_path.as_deref(), format!("twinload-{run}-summary.json")),
        (Some(config.dead_letter_path.as_path()), format!("twinload-{run}-dead-letters.ndjson")),
    ];
    for (path, name) in uploads {
        let Some(path) = path else { continue };
        let Ok(bytes) = std::fs::read(path) else { continue };
        let full = format!("{}{}", prefix_dir(&archive.prefix), name);
        match upload(&target, &full, Bytes::from(bytes)).await {
            Ok(()) => report.uploaded.push(archive.blob_shown(&full)),
            Err(why) => report.failed.push(format!("{}: {why}", archive.blob_shown(&full))),
        }
    }
    Ok(report)
}

/// The `file` of every line of the dead-letter file.
pub fn files_with_dead_letters(path: &Path) -> Result<HashSet<String>, ArchiveError> {
    let err = |source| ArchiveError::DeadLetters { path: path.display().to_string(), source };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(err(e)),
    };
    let mut files = HashSet::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(err)?;
        let file = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("file").and_then(|f| f.as_str()).map(str::to_string));
        match file {
            Some(f) => {
                files.insert(f);
            }
            // A line we cannot read may name any blob: keep them all in place.
            None if !line.trim().is_empty() => {
                return Err(err(std::io::Error::other(format!("a line is not a dead letter: {line}"))))
            }
            None => {}
        }
    }
    Ok(files)
}

/// `prefix` as a folder: empty, or ending in `/`.
fn prefix_dir(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

/// A name for this run's uploads: the Batch task's id when there is one, else time and pid.
fn run_name() -> String {
    let task = std::env::var("AZ_BATCH_TASK_ID").ok().filter(|t| !t.is_empty());
    let job = std::env::var("AZ_BATCH_JOB_ID").ok().filter(|t| !t.is_empty());
    match (job, task) {
        (Some(job), Some(task)) => sanitize(&format!("{job}-{task}")),
        (None, Some(task)) => sanitize(&task),
        _ => {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            format!("{secs}-{}", std::process::id())
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

async fn move_blob(
    blob: &ReadBlob,
    access: &BlobAccess,
    target: &BlobContainerClient,
    archive: &BlobLocation,
) -> Result<(), String> {
    let source = blob.location.container_client(access).map_err(|e| e.to_string())?;
    let from = source.blob_client(&blob.name);
    let mut body = from.download(None).await.map_err(sdk_error)?.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.map_err(sdk_error)?);
    }
    let name = format!("{}{}", prefix_dir(&archive.prefix), blob.name);
    upload(target, &name, Bytes::from(bytes)).await?;
    from.delete(None).await.map_err(sdk_error)?;
    Ok(())
}

async fn upload(target: &BlobContainerClient, name: &str, bytes: Bytes) -> Result<(), String> {
    target.blob_client(name).upload(bytes.into(), None).await.map_err(sdk_error)?;
    Ok(())
}

fn sdk_error(e: azure_core::Error) -> String {
    redact_sas(&super::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_files_are_collected_and_an_unreadable_line_stops_archiving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.ndjson");
        std::fs::write(
            &path,
            "{\"kind\":\"twin\",\"id\":\"a\",\"file\":\"http://h/acct/c/one\",\"line\":1}\n\n{\"file\":\"http://h/acct/c/two\"}\n",
        )
        .unwrap();
        let files = files_with_dead_letters(&path).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files.contains("http://h/acct/c/one") && files.contains("http://h/acct/c/two"));
        assert!(files_with_dead_letters(&dir.path().join("none.ndjson")).unwrap().is_empty());
        std::fs::write(&path, "not json\n").unwrap();
        assert!(files_with_dead_letters(&path).is_err());
    }

    #[test]
    fn prefixes_become_folders() {
        assert_eq!(prefix_dir(""), "");
        assert_eq!(prefix_dir("done"), "done/");
        assert_eq!(prefix_dir("done/"), "done/");
        assert_eq!(sanitize("job 1/task#2"), "job_1_task_2");
    }
}
