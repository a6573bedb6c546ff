//! Where a ledger's bytes live, behind [`LedgerStore`] so a Blob Storage store can plug in
//! beside the local file. A store only moves bytes; [`super::Ledger`] decides what they say.
//!
//! The local store hands every append to the OS at once (so a kill -9 of the loader loses
//! nothing recorded), and [`LedgerStore::sync`] fsyncs (the ledger calls it in batches, which
//! bounds what a machine crash can lose). Compaction writes the whole content to
//! `<path>.tmp`, fsyncs it, renames it over the ledger and fsyncs the folder: a crash at any
//! point leaves either the old ledger or the new one, never a mix.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A store that failed.
#[derive(Debug, thiserror::Error)]
#[error("ledger {location}: cannot {action}: {source}")]
pub struct StoreError {
    pub location: String,
    pub action: &'static str,
    pub source: std::io::Error,
}

/// Bytes of one ledger.
pub trait LedgerStore: Send {
    /// Where the ledger is, for messages (never with a secret in it).
    fn location(&self) -> String;
    /// The whole ledger, or `None` when there is none yet.
    fn read(&mut self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Appends bytes; they survive the process at once, a machine crash only after [`LedgerStore::sync`].
    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Replaces the whole ledger atomically (compaction) with what `content` writes; appends
    /// continue after it. The content is streamed, so a ledger of millions of items is never
    /// one buffer in memory.
    fn replace(&mut self, content: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<(), StoreError>;
}

/// A ledger in a local file.
pub struct LocalStore {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl LocalStore {
    pub fn new(path: impl Into<PathBuf>) -> LocalStore {
        LocalStore { path: path.into(), out: None }
    }

    fn err(&self, action: &'static str) -> impl Fn(std::io::Error) -> StoreError + '_ {
        move |source| StoreError { location: self.location(), action, source }
    }

    fn appender(&mut self) -> Result<&mut BufWriter<File>, StoreError> {
        if self.out.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(self.err("create its folder"))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(self.err("open it for appending"))?;
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        Ok(self.out.as_mut().expect("just opened"))
    }
}

impl LedgerStore for LocalStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("read it")(e)),
        }
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let location = self.location();
        let out = self.appender()?;
        // Handed to the OS at once: a killed process loses nothing recorded; fsync (in
        // batches) is what a machine crash needs.
        out.write_all(bytes).and_then(|()| out.flush()).map_err(|source| StoreError {
            location,
            action: "append to it",
            source,
        })
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let location = self.location();
        let Some(out) = self.out.as_mut() else { return Ok(()) };
        let err = |source| StoreError { location: location.clone(), action: "write it to disk", source };
        out.flush().map_err(err)?;
        out.get_ref().sync_data().map_err(err)
    }

    fn replace(&mut self, content: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<(), StoreError> {
        self.sync()?;
        self.out = None;
        let tmp = tmp_path(&self.path);
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(self.err("create its folder"))?;
        }
        {
            let f = File::create(&tmp).map_err(self.err("write its compacted copy"))?;
            let mut out = BufWriter::with_capacity(64 * 1024, f);
            content(&mut out).and_then(|()| out.flush()).map_err(self.err("write its compacted copy"))?;
            out.get_ref().sync_all().map_err(self.err("write its compacted copy to disk"))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(self.err("replace it with its compacted copy"))?;
        sync_dir(&self.path);
        Ok(())
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes a rename durable (best effort: not every platform can open a folder).
fn sync_dir(path: &Path) {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_then_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("l.ndjson");
        let mut s = LocalStore::new(&path);
        assert_eq!(s.read().unwrap(), None);
        s.append(b"a\n").unwrap();
        s.append(b"b\n").unwrap();
        s.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\n");
        s.replace(&mut |out| out.write_all(b"c\n")).unwrap();
        s.append(b"d\n").unwrap();
        s.sync().unwrap();
        assert_eq!(s.read().unwrap().unwrap(), b"c\nd\n");
        assert!(!tmp_path(&path).exists());
    }
}
