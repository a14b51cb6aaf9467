//! Where an I/O error happened: every error that leaves the storage seam carries the operation
//! and the path it failed on, so `Error::Io` can say "could not open /data/t-0/…log" instead of
//! a bare "Permission denied".
//!
//! The path travels inside the `io::Error` itself (as its payload, with the original error's
//! kind kept), so the crate's `?` on an `io::Result` needs no change and `Error::from` lifts it
//! into [`Error::Io`](crate::Error::Io). A `Log` wraps whatever [`Storage`] it is given in
//! [`ContextStorage`], so a caller's own storage implementation gets paths too. Errors the
//! crate makes itself after a storage call (a short read, a file that is not a batch
//! boundary) are tagged with [`with_path`] where they are made.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;

use super::{LockGuard, MappedRegion, OpenMode, Storage, StorageFile};

/// An I/O error with the operation that failed and the path it named.
#[derive(Debug)]
pub(crate) struct PathError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not {} {}: {}",
            self.op,
            self.path.display(),
            self.source
        )
    }
}

impl StdError for PathError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// `err`, tagged with `op` and `path` unless it already names a path (the innermost, most
/// precise tag wins). The error kind stays what it was, so `e.kind()` matching keeps working.
pub(crate) fn with_path(err: io::Error, op: &'static str, path: &Path) -> io::Error {
    if path_of(&err).is_some() {
        return err;
    }
    io::Error::new(
        err.kind(),
        PathError {
            op,
            path: path.to_path_buf(),
            source: err,
        },
    )
}

/// The tag [`with_path`] put on `err`, if any.
pub(crate) fn path_of(err: &io::Error) -> Option<&PathError> {
    err.get_ref()?.downcast_ref::<PathError>()
}

/// Splits a tagged error into its operation, path and the original error; an untagged one comes
/// back as it is.
pub(crate) fn untag(err: io::Error) -> (Option<(&'static str, PathBuf)>, io::Error) {
    if path_of(&err).is_none() {
        return (None, err);
    }
    let inner = err.into_inner().expect("checked: it has a payload");
    let tagged = inner
        .downcast::<PathError>()
        .expect("checked: the payload is a PathError");
    let PathError { op, path, source } = *tagged;
    (Some((op, path)), source)
}

/// Extension for `io::Result`: `.at("open", &path)?`.
pub(crate) trait IoContext<T> {
    fn at(self, op: &'static str, path: &Path) -> io::Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> io::Result<T> {
        self.map_err(|e| with_path(e, op, path))
    }
}

/// Wraps a [`Storage`] so that every error it returns names its operation and path.
#[derive(Debug)]
pub(crate) struct ContextStorage {
    inner: Arc<dyn Storage>,
}

impl ContextStorage {
    pub(crate) fn wrap(inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        Arc::new(ContextStorage { inner })
    }
}

fn open_op(mode: OpenMode) -> &'static str {
    match mode {
        OpenMode::Read => "open for reading",
        OpenMode::ReadWrite => "open for writing",
        OpenMode::Create => "open or create",
        OpenMode::CreateNew => "create",
    }
}

impl Storage for ContextStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path).at("create directory", path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path).at("list directory", path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path).at("look up", path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, mode).at(open_op(mode), path)?;
        Ok(Arc::new(ContextFile {
            inner,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // One path fits the error: the source, which names the file that was being moved (the
        // destination is always a sibling annals derives from it).
        self.inner.rename(from, to).at("rename", from)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path).at("remove", path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path).at("remove directory", path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path).at("sync directory", path)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.inner.try_lock(path).at("lock", path)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        // As for a rename, the source names the file being linked.
        self.inner
            .hard_link(original, link)
            .at("hard-link", original)
    }
}

#[derive(Debug)]
struct ContextFile {
    inner: Arc<dyn StorageFile>,
    path: PathBuf,
}

impl StorageFile for ContextFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos).at("read", &self.path)
    }

    fn read_exact_at_into(&self, buf: &mut BytesMut, pos: u64, len: usize) -> io::Result<()> {
        self.inner
            .read_exact_at_into(buf, pos, len)
            .at("read", &self.path)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos).at("write", &self.path)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len().at("read the length of", &self.path)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len).at("set the length of", &self.path)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner
            .allocate(len)
            .at("allocate space for", &self.path)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data().at("sync", &self.path)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all().at("sync", &self.path)
    }

    #[allow(unsafe_code)] // forwards the mmap contract to the wrapped file
    unsafe fn map_mut(&self, len: usize) -> io::Result<Box<dyn MappedRegion>> {
        // SAFETY: forwarded unchanged: our caller's guarantee for this file is the guarantee
        // the inner file needs.
        let inner = unsafe { self.inner.map_mut(len) }.at("map", &self.path)?;
        Ok(Box::new(ContextRegion {
            inner,
            path: self.path.clone(),
        }))
    }
}

#[derive(Debug)]
struct ContextRegion {
    inner: Box<dyn MappedRegion>,
    path: PathBuf,
}

impl MappedRegion for ContextRegion {
    fn as_slice(&self) -> &[u8] {
        self.inner.as_slice()
    }

    fn write(&mut self, pos: usize, bytes: &[u8]) {
        self.inner.write(pos, bytes)
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flush().at("flush the mapping of", &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_keeps_the_kind_and_the_innermost_path_wins() {
        let raw = io::Error::from_raw_os_error(24);
        let kind = raw.kind();
        let tagged = with_path(raw, "open", Path::new("/a/b"));
        assert_eq!(tagged.kind(), kind);
        let again = with_path(tagged, "scan", Path::new("/elsewhere"));
        assert_eq!(
            again.to_string(),
            format!("could not open /a/b: {}", io::Error::from_raw_os_error(24))
        );
        let (tag, source) = untag(again);
        assert_eq!(tag, Some(("open", PathBuf::from("/a/b"))));
        assert_eq!(source.raw_os_error(), Some(24));
        let (tag, plain) = untag(io::Error::other("x"));
        assert!(tag.is_none());
        assert_eq!(plain.to_string(), "x");
    }
}
