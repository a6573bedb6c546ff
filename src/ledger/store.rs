//! Where a ledger's bytes live, behind [`LedgerStore`] so a Blob Storage store can plug in
//! beside the local file. A store only moves bytes; [`super::Ledger`] decides what they say.
//!
//! The local store hands every append to the OS at once (so a kill -9 of the loader loses
//! nothing recorded), and [`LedgerStore::sync`] fsyncs (the ledger calls it in batches, which
//! bounds what a machine crash can lose). Compaction writes the whole content to a temporary
//! file of its own (`<name>.<random>.tmp` beside the ledger), fsyncs it, renames it over the
//! ledger and fsyncs the folder: a crash at any point leaves either the old ledger or the new
//! one, never a mix.
//!
//! A run holds a local ledger through an OS lock on `<path>.lock` beside it (the ledger itself
//! is replaced at each compaction, so it cannot carry the lock), which the OS releases when the
//! process ends however it ends. The lock file holds the [`Holder`] record for a second run to
//! name; it stays in place (removing it would let two runs lock two different files).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::holder::Holder;

/// A store that failed.
#[derive(Debug, thiserror::Error)]
#[error("ledger {location}: cannot {action}: {source}")]
pub struct StoreError {
    pub location: String,
    pub action: &'static str,
    pub source: std::io::Error,
}

/// Whether a run got a ledger for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Taken,
    /// Another run holds it (named when it left its record).
    HeldBy(Option<Holder>),
}

/// Bytes of one ledger.
pub trait LedgerStore: Send {
    /// Where the ledger is, for messages (never with a secret in it).
    fn location(&self) -> String;
    /// Takes the ledger for this run alone until the store is dropped, leaving `me` for a
    /// second run to name; [`Claim::HeldBy`] when another run has it.
    fn claim(&mut self, me: &Holder) -> Result<Claim, StoreError>;
    /// What another run would be told about who holds the ledger and how that ends.
    fn when_held(&self) -> &'static str;
    /// The whole ledger, to read a line at a time, or `None` when there is none yet.
    fn read(&mut self) -> Result<Option<Box<dyn BufRead>>, StoreError>;
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
    /// The lock file, locked, while this run holds the ledger.
    lock: Option<File>,
}

impl LocalStore {
    pub fn new(path: impl Into<PathBuf>) -> LocalStore {
        LocalStore { path: path.into(), out: None, lock: None }
    }

    fn create_folder(&self) -> Result<(), StoreError> {
        match self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => std::fs::create_dir_all(parent).map_err(self.err("create its folder")),
            None => Ok(()),
        }
    }

    fn err(&self, action: &'static str) -> impl Fn(std::io::Error) -> StoreError + '_ {
        move |source| StoreError { location: self.location(), action, source }
    }

    fn appender(&mut self) -> Result<&mut BufWriter<File>, StoreError> {
        if self.out.is_none() {
            self.create_folder()?;
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

    fn claim(&mut self, me: &Holder) -> Result<Claim, StoreError> {
        self.create_folder()?;
        let path = lock_path(&self.path);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(self.err("open its lock file"))?;
        match file.try_lock() {
            Ok(()) => {
                let record = super::record::line(me);
                file.set_len(0).and_then(|()| file.write_all(&record)).map_err(self.err("write its lock file"))?;
                self.lock = Some(file);
                Ok(Claim::Taken)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                // Empty while the holder is still starting.
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Ok(Claim::HeldBy(serde_json::from_str(text.trim()).ok()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(self.err("lock it")(e)),
        }
    }

    fn when_held(&self) -> &'static str {
        "its lock is released the moment that run ends"
    }

    fn read(&mut self) -> Result<Option<Box<dyn BufRead>>, StoreError> {
        match File::open(&self.path) {
            Ok(file) => Ok(Some(Box::new(BufReader::with_capacity(256 * 1024, file)))),
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
        self.create_folder()?;
        // A name of its own: never a file another process (a read-only plan, a crashed run's
        // leftover) has open.
        let mut prefix = self.path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        prefix.push(".");
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(folder_of(&self.path))
            .map_err(self.err("write its compacted copy"))?;
        {
            let mut out = BufWriter::with_capacity(64 * 1024, tmp.as_file_mut());
            content(&mut out).and_then(|()| out.flush()).map_err(self.err("write its compacted copy"))?;
        }
        tmp.as_file().sync_all().map_err(self.err("write its compacted copy to disk"))?;
        tmp.persist(&self.path).map_err(|e| self.err("replace it with its compacted copy")(e.error))?;
        sync_dir(&self.path);
        Ok(())
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // The holder's record goes with the lock (the OS drops the lock with the file).
        if let Some(lock) = &self.lock {
            let _ = lock.set_len(0);
        }
    }
}

/// `<ledger>.lock`, beside the ledger.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Makes a rename durable (best effort: not every platform can open a folder).
fn sync_dir(path: &Path) {
    if let Ok(d) = File::open(folder_of(path)) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(s: &mut LocalStore) -> Vec<u8> {
        let mut bytes = Vec::new();
        s.read().unwrap().unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn appends_then_replaces_atomically_through_a_temporary_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("l.ndjson");
        let mut s = LocalStore::new(&path);
        assert!(s.read().unwrap().is_none());
        s.append(b"a\n").unwrap();
        s.append(b"b\n").unwrap();
        s.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\n");
        // A leftover of the old fixed name is neither used nor in the way.
        std::fs::write(path.with_file_name("l.ndjson.tmp"), b"stale").unwrap();
        s.replace(&mut |out| out.write_all(b"c\n")).unwrap();
        s.append(b"d\n").unwrap();
        s.sync().unwrap();
        assert_eq!(read_all(&mut s), b"c\nd\n");
        let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["l.ndjson", "l.ndjson.tmp"], "no temporary file is left behind");
    }

    #[test]
    fn one_store_holds_the_ledger_until_dropped_and_a_second_is_told_who() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.ndjson");
        let me = Holder { task: Some("job/t1".into()), host: "h".into(), pid: 7, since: "2026-12-02T18:00:00Z".into() };
        let mut first = LocalStore::new(&path);
        assert_eq!(first.claim(&me).unwrap(), Claim::Taken);
        let mut second = LocalStore::new(&path);
        assert_eq!(second.claim(&Holder::this_process()).unwrap(), Claim::HeldBy(Some(me)));
        drop(first);
        assert_eq!(second.claim(&Holder::this_process()).unwrap(), Claim::Taken, "freed when its holder ends");
    }
}
