//! A segment's aborted-transaction index (`<base>.txnindex`, Kafka's byte for byte): one
//! 34-byte entry per transaction aborted by a marker in this segment (`format::AbortedTxn`).
//!
//! The file exists only once a segment holds an ABORT marker. Appends go to its end without an
//! fsync of their own; the file is fsynced when the segment is sealed and whenever recovery
//! rewrites it. Like the other indexes it is a cache of the `.log`: recovery trusts the entries
//! of segments below the recovery point and rebuilds the rest from the markers it replays
//! (`partition/recovery.rs`); a file that does not parse makes recovery replay the whole
//! partition.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::file_name;
use crate::format::{AbortedTxn, ABORTED_TXN_LEN};
use crate::storage::{read_whole, with_path, write_atomic, OpenMode, Storage, StorageFile};

/// The file extension.
pub(crate) const TXN_INDEX_EXT: &str = "txnindex";

#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    /// The open file and its length, once something was appended since the segment opened.
    file: Mutex<Option<(Arc<dyn StorageFile>, u64)>>,
}

impl TxnIndex {
    pub(crate) fn new(dir: &Path, base_offset: u64) -> TxnIndex {
        TxnIndex {
            path: dir.join(file_name(base_offset, TXN_INDEX_EXT)),
            file: Mutex::new(None),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry (creating the file on the first).
    pub(crate) fn append(&self, storage: &dyn Storage, entry: &AbortedTxn) -> io::Result<()> {
        let mut slot = self.file.lock();
        if slot.is_none() {
            let file = storage.open(&self.path, OpenMode::Create)?;
            let len = file.len()?;
            // A torn entry at the end (a crash mid-append, before recovery rewrote the file)
            // would shift every later one.
            let len = len - len % ABORTED_TXN_LEN as u64;
            *slot = Some((file, len));
        }
        let (file, len) = slot.as_mut().expect("just opened");
        file.write_all_at(&entry.encode(), *len)
            .map_err(|e| with_path(e, "append to", &self.path))?;
        *len += ABORTED_TXN_LEN as u64;
        Ok(())
    }

    /// Makes appended entries durable (nothing to do if none were appended).
    pub(crate) fn sync(&self) -> io::Result<()> {
        match &*self.file.lock() {
            Some((file, _)) => file
                .sync_data()
                .map_err(|e| with_path(e, "fsync", &self.path)),
            None => Ok(()),
        }
    }

    /// The file's bytes, `None` if there is no file.
    pub(crate) fn read(&self, storage: &dyn Storage) -> io::Result<Option<Vec<u8>>> {
        if !storage.exists(&self.path)? {
            return Ok(None);
        }
        read_whole(storage, &self.path).map(Some)
    }

    /// The entries in `bytes` (a file's, `None` for no file: no entries), or `None` if they are
    /// damaged (not whole entries, or an entry that does not parse).
    pub(crate) fn parse(bytes: Option<&[u8]>) -> Option<Vec<AbortedTxn>> {
        let Some(bytes) = bytes else {
            return Some(Vec::new());
        };
        if bytes.len() % ABORTED_TXN_LEN != 0 {
            return None;
        }
        bytes
            .chunks_exact(ABORTED_TXN_LEN)
            .map(AbortedTxn::decode)
            .collect::<Result<Vec<_>, _>>()
            .ok()
    }

    /// Replaces the file with exactly `entries` (durably: temp file, fsync, rename), or removes
    /// it when there are none.
    pub(crate) fn replace(&self, storage: &dyn Storage, entries: &[AbortedTxn]) -> io::Result<()> {
        let mut slot = self.file.lock();
        *slot = None;
        if entries.is_empty() {
            return match storage.remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
        write_atomic(storage, &self.path, &bytes)
    }
}
