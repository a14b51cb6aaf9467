//! [`MeteredStorage`]: counts what a log's storage does that an operator watches — fsyncs
//! (how many, how long, how many failed), files open and bytes mapped — for
//! [`Log::metrics`](crate::Log::metrics).
//!
//! `Log::open` wraps its storage in it, so every fsync and every open file of the log passes
//! through here whichever code path asks (segments, indexes, checkpoints, metadata,
//! compaction, backups), with no counting code in those paths. What it adds to each call is a
//! forwarding call; to an fsync, two clock reads and four relaxed atomic adds.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::{LockGuard, MappedRegion, OpenMode, Storage, StorageFile};
use crate::metrics::{IoCounters, SyncKind};

/// Wraps a [`Storage`], counting into `counters`.
#[derive(Debug)]
pub(crate) struct MeteredStorage {
    inner: Arc<dyn Storage>,
    counters: Arc<IoCounters>,
}

impl MeteredStorage {
    pub(crate) fn wrap(inner: Arc<dyn Storage>, counters: Arc<IoCounters>) -> Arc<dyn Storage> {
        Arc::new(MeteredStorage { inner, counters })
    }
}

/// Runs one sync and counts it, failed or not.
fn timed(
    counters: &IoCounters,
    kind: SyncKind,
    sync: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let started = Instant::now();
    let result = sync();
    counters.synced(kind, started.elapsed(), result.is_ok());
    result
}

impl Storage for MeteredStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, mode)?;
        self.counters.file_opened();
        Ok(Arc::new(MeteredFile {
            inner,
            counters: self.counters.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        timed(&self.counters, SyncKind::Directory, || {
            self.inner.sync_dir(path)
        })
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.inner.hard_link(original, link)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.inner.try_lock(path)
    }
}

/// An open file, counted open until it is dropped (when the last `Arc` of it goes, so the
/// count is of files, not of handles to them).
#[derive(Debug)]
struct MeteredFile {
    inner: Arc<dyn StorageFile>,
    counters: Arc<IoCounters>,
}

impl Drop for MeteredFile {
    fn drop(&mut self) {
        self.counters.file_closed();
    }
}

impl StorageFile for MeteredFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }

    fn read_exact_at_into(&self, buf: &mut BytesMut, pos: u64, len: usize) -> io::Result<()> {
        self.inner.read_exact_at_into(buf, pos, len)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        timed(&self.counters, SyncKind::File, || self.inner.sync_data())
    }

    fn sync_all(&self) -> io::Result<()> {
        timed(&self.counters, SyncKind::File, || self.inner.sync_all())
    }

    #[allow(unsafe_code)] // forwards the mmap contract to the wrapped file
    unsafe fn map_mut(&self, len: usize) -> io::Result<Box<dyn MappedRegion>> {
        // SAFETY: forwarded unchanged: our caller's guarantee for this file is the guarantee
        // the inner file needs.
        let inner = unsafe { self.inner.map_mut(len) }?;
        self.counters.mapped(len);
        Ok(Box::new(MeteredRegion {
            inner,
            len,
            counters: self.counters.clone(),
        }))
    }
}

/// A mapping, counted until it is dropped (unmapped).
#[derive(Debug)]
struct MeteredRegion {
    inner: Box<dyn MappedRegion>,
    len: usize,
    counters: Arc<IoCounters>,
}

impl Drop for MeteredRegion {
    fn drop(&mut self) {
        self.counters.unmapped(self.len);
    }
}

impl MappedRegion for MeteredRegion {
    fn as_slice(&self) -> &[u8] {
        self.inner.as_slice()
    }

    fn write(&mut self, pos: usize, bytes: &[u8]) {
        self.inner.write(pos, bytes)
    }

    fn flush(&self) -> io::Result<()> {
        timed(&self.counters, SyncKind::File, || self.inner.flush())
    }
}
