//! The items' bodies while they wait to be written. A load of millions of items cannot hold
//! them all in memory (1,000,000 twins and 2,000,000 relationships are 550 MB of JSON, and
//! 1.3 GB once each is an owned item), so they are appended to an unnamed temporary file as they
//! are read and read back by offset when a writer needs one. Memory holds 8 bytes per item; the
//! bytes themselves sit in the OS page cache, which gives them back under pressure. Without a
//! writable temporary folder (`TMPDIR`) the bodies are kept in one buffer in memory instead,
//! with a warning.
//!
//! The OS deletes the file when the process ends, however it ends.

use std::fs::File;
use std::io::Write;

use serde_json::value::RawValue;

use super::ItemId;

/// Bytes gathered before they are written to the file in one call.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// A body that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("internal: cannot read item {item}'s body back from the temporary file that holds the bodies: {source}")]
pub struct BodyError {
    pub item: ItemId,
    pub source: std::io::Error,
}

/// Every item's body, by item id. See the module doc.
pub(crate) struct Bodies {
    /// The temporary file; `None` keeps everything in `pending`.
    file: Option<File>,
    /// Bytes in the file; the rest are in `pending`.
    written: u64,
    /// Bytes not yet written to the file (all of them without a file).
    pending: Vec<u8>,
    /// By item id: where its body ends (and the next one starts).
    ends: Vec<u64>,
}

impl Bodies {
    /// Bodies in a new temporary file (in memory if none can be made).
    pub fn new() -> Bodies {
        let file = tempfile::tempfile()
            .map_err(|e| {
                tracing::warn!(
                    "cannot create a temporary file for the items' bodies ({e}); keeping them in memory (set TMPDIR to a writable folder)"
                )
            })
            .ok();
        Bodies { file, written: 0, pending: Vec::new(), ends: Vec::new() }
    }

    /// Bodies in memory only (for tests and small inputs).
    #[cfg(test)]
    pub fn in_memory() -> Bodies {
        Bodies { file: None, written: 0, pending: Vec::new(), ends: Vec::new() }
    }

    /// Appends the body of the next item (item ids are dense, in input order).
    pub fn push(&mut self, body: &RawValue) {
        self.pending.extend_from_slice(body.get().as_bytes());
        self.ends.push(self.written + self.pending.len() as u64);
        if self.pending.len() >= WRITE_CHUNK_BYTES {
            self.write_pending();
        }
    }

    /// The bytes of an item's body.
    fn bytes(&self, id: ItemId) -> Result<Vec<u8>, BodyError> {
        let i = id as usize;
        let fail = |source| BodyError { item: id, source };
        let end = *self.ends.get(i).ok_or_else(|| fail(std::io::ErrorKind::NotFound.into()))?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        if start >= self.written {
            let (from, to) = ((start - self.written) as usize, (end - self.written) as usize);
            return Ok(self.pending[from..to].to_vec());
        }
        // `write_pending` writes whole bodies, so a body is wholly in the file or wholly pending.
        let file = self.file.as_ref().expect("bytes were written, so there is a file");
        let mut buf = vec![0; (end - start) as usize];
        read_exact_at(file, &mut buf, start).map_err(fail)?;
        Ok(buf)
    }

    /// An item's body as read from the input.
    pub fn get(&self, id: ItemId) -> Result<Box<RawValue>, BodyError> {
        let invalid = |e: Box<dyn std::error::Error + Send + Sync>| BodyError {
            item: id,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        };
        let text = String::from_utf8(self.bytes(id)?).map_err(|e| invalid(e.into()))?;
        RawValue::from_string(text).map_err(|e| invalid(e.into()))
    }

    /// An item's body as text (for a dead letter), `None` if it cannot be read back.
    pub fn text(&self, id: ItemId) -> Option<String> {
        self.bytes(id).ok().and_then(|b| String::from_utf8(b).ok())
    }

    /// Moves the pending bytes to the file. If the file cannot take them (a full disk), the
    /// bodies already written are read back and everything stays in memory from then on.
    fn write_pending(&mut self) {
        let Some(file) = self.file.as_mut() else { return };
        match file.write_all(&self.pending) {
            Ok(()) => {
                self.written += self.pending.len() as u64;
                self.pending.clear();
            }
            Err(e) => {
                tracing::warn!("cannot write the items' bodies to a temporary file ({e}); keeping them in memory");
                let mut all = vec![0; self.written as usize];
                if let Err(e) = read_exact_at(file, &mut all, 0) {
                    // Unreachable in practice (the bytes were just written); the items whose body is
                    // lost fail with BodyError when sent, as dead letters naming file and line.
                    tracing::error!("cannot read back the items' bodies from the temporary file: {e}");
                    return;
                }
                all.append(&mut self.pending);
                self.pending = all;
                self.written = 0;
                self.file = None;
            }
        }
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn bodies_come_back_from_the_file_and_from_what_is_still_pending() {
        let mut b = Bodies::new();
        assert!(b.file.is_some(), "the test machine has a writable TMPDIR");
        let big = format!("{{\"v\":\"{}\"}}", "x".repeat(WRITE_CHUNK_BYTES));
        b.push(&raw(r#"{"a":1}"#));
        b.push(&raw(&big));
        b.push(&raw(r#"[{"op":"add"}]"#));
        assert!(b.written > 0 && !b.pending.is_empty(), "one body in the file, one pending");
        assert_eq!(b.get(0).unwrap().get(), r#"{"a":1}"#);
        assert_eq!(b.get(1).unwrap().get(), big);
        assert_eq!(b.text(2).as_deref(), Some(r#"[{"op":"add"}]"#));
        assert_eq!(b.text(3), None, "an id it does not hold");
    }

    #[test]
    fn in_memory_bodies_work_the_same() {
        let mut b = Bodies::in_memory();
        b.push(&raw(r#"{"a":1}"#));
        b.push(&raw(r#"{"b":2}"#));
        assert_eq!(b.get(1).unwrap().get(), r#"{"b":2}"#);
    }
}
