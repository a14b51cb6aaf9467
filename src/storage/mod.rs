//! The storage seam: the only way annals touches files.
//!
//! Every file and directory operation of the crate goes through [`Storage`] and [`StorageFile`].
//! Production uses [`FsStorage`] (the real file system). Tests — the crate's own and yours — can
//! pass a [`SimStorage`] to [`LogBuilder::storage`](crate::LogBuilder::storage) to inject I/O
//! errors and to simulate a crash that drops or tears every write that was not synced.
//!
//! The contract mirrors POSIX durability rules, and the crate is written against it:
//! - data written to a file survives a *process* crash as soon as the write returns, but survives
//!   a *power loss* only after [`StorageFile::sync_data`] (or `sync_all`);
//! - a created, renamed or removed directory entry survives a power loss only after
//!   [`Storage::sync_dir`] on its parent directory.

mod context;
mod fs;
mod metered;
mod open_file_budget;
mod sim;

pub(crate) use context::{untag, with_path, ContextStorage, IoContext};
pub(crate) use metered::MeteredStorage;
pub(crate) use open_file_budget::{OpenFileBudget, DEFAULT_MAX_OPEN_FILES, MIN_MAX_OPEN_FILES};

pub use fs::FsStorage;
pub use sim::{CrashMode, SimOp, SimOpKind, SimStorage};

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading only.
    Read,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Create the file if missing (keeping existing contents), for reading and writing.
    Create,
    /// Create a new file; fail with `AlreadyExists` if it exists.
    CreateNew,
}

/// A directory-level file system, as annals needs it.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Creates `path` and any missing parents (like `mkdir -p`).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries directly inside `path`, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` exists (file or directory).
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes `link` a second name of the file at `original` (a hard link: both names reach the
    /// same data). `link` must not exist; like any new entry it survives a power loss only
    /// after [`sync_dir`](Self::sync_dir) of its parent.
    /// [`Log::checkpoint`](crate::Log::checkpoint) links sealed segments into a backup this
    /// way, and copies them when it fails (`CrossesDevices` when the backup is on another file
    /// system, or any other error).
    ///
    /// The provided implementation fails with `Unsupported`, so a storage that cannot link
    /// needs nothing for it: its backups copy every segment.
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        let _ = (original, link);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this storage cannot make hard links",
        ))
    }
    /// Takes an exclusive advisory lock on the file at `path` (created if missing). Returns
    /// `Ok(None)` when someone — another process or another handle in this one — holds it.
    /// The lock is held until the returned guard is dropped.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>>;
}

/// Held while a directory lock is held; dropping it releases the lock.
pub trait LockGuard: Send + Sync + Debug {}

/// An open file.
pub trait StorageFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Appends exactly `len` bytes read at `pos` to `buf`, or fails (with `UnexpectedEof` if the
    /// file ends first) leaving `buf` as it was.
    ///
    /// The provided implementation zero-fills the new bytes and reads over them with
    /// [`read_at`](Self::read_at). One that can read into uninitialised memory, as
    /// [`FsStorage`]'s does, saves that pass over large reads.
    fn read_exact_at_into(&self, buf: &mut BytesMut, pos: u64, len: usize) -> io::Result<()> {
        let start = buf.len();
        buf.resize(start + len, 0);
        let result = read_exact_at(self, &mut buf[start..], pos);
        if result.is_err() {
            buf.truncate(start);
        }
        result
    }
    /// Writes all of `buf` at `pos`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) the file to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves real blocks so the file is at least `len` bytes long with no holes
    /// (`fallocate`), so later writes into that range cannot fail for lack of space.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data (and the size needed to read it) durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's data and all metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
    /// Maps the first `len` bytes of the file for reading and writing. Fails (`InvalidInput`)
    /// if the file is shorter than `len`.
    ///
    /// # Safety
    ///
    /// A memory mapping is memory the compiler believes nobody else touches, backed by a file
    /// that anybody could change. While the returned region (or anything borrowed from it)
    /// lives, the caller must guarantee that:
    /// - the file is not truncated below `len` bytes, through this handle or any other, in this
    ///   process or another (a real mapping then faults with `SIGBUS` on the next access);
    /// - the mapped bytes change only through [`MappedRegion::write`] of this region: no
    ///   [`write_all_at`](Self::write_all_at), [`set_len`](Self::set_len) or second mapping of
    ///   the range, and no other process writing the file (the slice from
    ///   [`MappedRegion::as_slice`] would change under its borrow).
    ///
    /// annals meets this for its index files: they live in a directory whose lock the `Log`
    /// holds, are written only through their mapping, and are truncated only after it is
    /// dropped. An implementation that does not map at all (as [`SimStorage`], which copies)
    /// is still reached only through this contract.
    ///
    /// Safe code cannot call it:
    ///
    /// ```compile_fail,E0133
    /// use annals::storage::{OpenMode, SimStorage, Storage};
    /// let sim = SimStorage::new();
    /// let file = sim.open("/f".as_ref(), OpenMode::CreateNew).unwrap();
    /// file.set_len(8).unwrap();
    /// let region = file.map_mut(8).unwrap();
    /// ```
    ///
    /// It takes an `unsafe` block whose argument is the contract above:
    ///
    /// ```
    /// use annals::storage::{OpenMode, SimStorage, Storage};
    /// let sim = SimStorage::new();
    /// let file = sim.open("/f".as_ref(), OpenMode::CreateNew).unwrap();
    /// file.set_len(8).unwrap();
    /// // SAFETY: nothing else touches `/f` until `region` is dropped at the end of this block.
    /// let mut region = unsafe { file.map_mut(8) }.unwrap();
    /// region.write(0, b"annals");
    /// assert_eq!(&region.as_slice()[..6], b"annals");
    /// ```
    #[allow(unsafe_code)] // the mmap contract, stated above, is the reason this is unsafe
    unsafe fn map_mut(&self, len: usize) -> io::Result<Box<dyn MappedRegion>>;
}

/// A writable memory mapping of (the start of) a file. Writes go through [`MappedRegion::write`]
/// so a simulated storage can observe them exactly as the page cache would.
pub trait MappedRegion: Send + Sync + Debug {
    /// The mapped bytes.
    fn as_slice(&self) -> &[u8];
    /// Copies `bytes` into the mapping at `pos`. The caller guarantees `pos + bytes.len()` is
    /// within the mapping.
    fn write(&mut self, pos: usize, bytes: &[u8]);
    /// Makes what was written through the mapping durable (`msync`).
    fn flush(&self) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes at `pos`, or fails with `UnexpectedEof`.
pub(crate) fn read_exact_at<F: StorageFile + ?Sized>(
    file: &F,
    buf: &mut [u8],
    mut pos: u64,
) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], pos)?;
        if n == 0 {
            return Err(short_read(buf.len() - done));
        }
        done += n;
        pos += n as u64;
    }
    Ok(())
}

/// The error of a read that found the file `missing` bytes shorter than the range it wanted.
pub(crate) fn short_read(missing: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("file ends {missing} bytes short of the requested range"),
    )
}

/// Reads a whole (small) file.
pub(crate) fn read_whole(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, OpenMode::Read)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))
        .at("read", path)?;
    let mut buf = vec![0u8; len];
    read_exact_at(&*file, &mut buf, 0).at("read", path)?;
    Ok(buf)
}

/// Replaces the file at `path` with `contents` so that a crash at any moment leaves either the
/// old or the new contents: write `<path>.tmp`, fsync it, rename over `path`, fsync the directory.
pub(crate) fn write_atomic(storage: &dyn Storage, path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))
        .at("replace", path)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let file = storage.open(&tmp, OpenMode::Create)?;
        file.set_len(0)?;
        file.write_all_at(contents, 0)?;
        file.sync_all()?;
    }
    storage.rename(&tmp, path)?;
    storage.sync_dir(dir)
}
