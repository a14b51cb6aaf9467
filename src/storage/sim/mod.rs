//! [`SimStorage`]: an in-memory file system that models POSIX durability, for crash tests.
//!
//! The model is the one the crate is written against (see the `storage` module docs):
//! - a file is an inode holding `data` (what reads see now: the page cache) and `durable` (what
//!   is on the platter), plus the operations applied since its last sync, so that a torn crash
//!   can replay a prefix of them;
//! - a directory is an inode holding its current entries and its durable entries, and only
//!   [`Storage::sync_dir`] copies the former onto the latter. Because directories are inodes, not
//!   path prefixes, renaming a directory moves its subtree, and a directory whose own entry was
//!   never made durable takes its children with it on power loss — as on a real disk.
//!
//! Paths are resolved from a single root: root and `.` components are skipped and `..` is
//! refused, so `/sim/log` and `sim/log` name the same file. The root always exists, durably.

use super::{LockGuard, MappedRegion, OpenMode, Storage, StorageFile};
use file::{Handle, SimFile, SimLock};
use model::{split, DirNode, FileNode, Node, Shared, State, ROOT};
use parking_lot::Mutex;
use std::fmt;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An `io::Error` of kind `ErrorKind::$kind` whose message says it comes from the simulation.
macro_rules! fail {
    ($kind:ident, $($fmt:tt)+) => {
        std::io::Error::new(
            std::io::ErrorKind::$kind,
            format!("SimStorage: {}", format_args!($($fmt)+)),
        )
    };
}

mod file;
mod model;

/// How [`SimStorage::crash`] kills the "machine".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// `kill -9`: the kernel survives, so every completed write and namespace change is kept.
    /// Only the handles, mappings and locks of the dead process go away.
    ProcessKill,
    /// Power loss: the namespace reverts to what `sync_dir` made durable and every file to what
    /// `sync_data`/`sync_all`/`flush` made durable.
    PowerLossDropUnsynced,
    /// Power loss during writeback: like `PowerLossDropUnsynced`, but each file keeps a
    /// random-length prefix of its unsynced operations, the last kept write possibly torn to a
    /// random prefix of its bytes. Deterministic for a given seed and history.
    PowerLossTorn {
        /// Seed of the random choices.
        seed: u64,
    },
}

/// What a [`SimOp`] is about to do; fault hooks match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimOpKind {
    /// [`Storage::open`].
    Open,
    /// [`StorageFile::read_at`].
    Read,
    /// [`StorageFile::write_all_at`].
    Write,
    /// [`StorageFile::len`].
    Len,
    /// [`StorageFile::set_len`].
    SetLen,
    /// [`StorageFile::allocate`].
    Allocate,
    /// [`StorageFile::sync_data`].
    SyncData,
    /// [`StorageFile::sync_all`].
    SyncAll,
    /// [`Storage::sync_dir`].
    SyncDir,
    /// [`Storage::rename`].
    Rename,
    /// [`Storage::remove_file`].
    RemoveFile,
    /// [`Storage::remove_dir_all`].
    RemoveDirAll,
    /// [`Storage::create_dir_all`].
    CreateDirAll,
    /// [`Storage::list_dir`].
    ListDir,
    /// [`Storage::exists`].
    Exists,
    /// [`Storage::try_lock`].
    TryLock,
    /// [`Storage::hard_link`].
    HardLink,
    /// [`StorageFile::map_mut`].
    MapMut,
    /// [`MappedRegion::flush`].
    RegionFlush,
}

/// One operation, shown to the fault hook before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOp {
    /// Which operation.
    pub kind: SimOpKind,
    /// The path it names: for handle operations, the path the file was opened under (even if
    /// renamed since); for a rename or a hard link, the source.
    pub path: PathBuf,
    /// Start of the byte range of a read or write; 0 otherwise.
    pub offset: u64,
    /// Length of a read or write, or the length asked of `set_len`/`allocate`/`map_mut`; else 0.
    pub len: u64,
}

/// Counts the operation and asks the fault hook — outside the lock, so a hook may itself use
/// the storage.
fn check(
    shared: &Mutex<State>,
    kind: SimOpKind,
    path: &Path,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let hook = {
        let mut st = shared.lock();
        st.ops += 1;
        st.hook.clone()
    };
    let op = || SimOp {
        kind,
        path: path.to_path_buf(),
        offset,
        len,
    };
    hook.and_then(|hook| hook(&op())).map_or(Ok(()), Err)
}

/// An in-memory [`Storage`] that can crash and fail on demand. See the module docs.
pub struct SimStorage {
    shared: Shared,
}

impl SimStorage {
    /// An empty file system: just the root directory.
    pub fn new() -> Arc<SimStorage> {
        let mut state = State::default();
        state.nodes.insert(ROOT, Node::Dir(DirNode::default()));
        Arc::new(SimStorage {
            shared: Arc::new(Mutex::new(state)),
        })
    }

    /// Simulates the process or the machine dying. Every handle, mapping and lock guard that
    /// exists now is dead afterwards; the storage itself is ready for the "restarted" process.
    pub fn crash(&self, mode: CrashMode) {
        self.shared.lock().crash(mode);
    }

    /// Runs `hook` before every operation; when it returns `Some(err)` the operation fails with
    /// `err` and changes nothing. Replaces any previous hook.
    pub fn set_fault_hook(
        &self,
        hook: impl Fn(&SimOp) -> Option<io::Error> + Send + Sync + 'static,
    ) {
        self.shared.lock().hook = Some(Arc::new(hook));
    }

    /// Removes the fault hook.
    pub fn clear_fault_hook(&self) {
        self.shared.lock().hook = None;
    }

    /// A ready-made hook: every `kind` operation whose path contains `path_contains` fails with
    /// an error of kind `err_kind`. Replaces any previous hook.
    pub fn fail_when(&self, kind: SimOpKind, path_contains: &str, err_kind: ErrorKind) {
        let needle = path_contains.to_owned();
        self.set_fault_hook(move |op| {
            let hit = op.kind == kind && op.path.to_string_lossy().contains(&needle);
            hit.then(|| io::Error::new(err_kind, format!("SimStorage: injected fault: {op:?}")))
        });
    }

    /// Limits the total bytes of all files (`None`: unlimited). Writes and `allocate` that would
    /// need more fail with `StorageFull` and write nothing.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.shared.lock().capacity = bytes;
    }

    /// Bytes counted against the capacity now.
    pub fn used_bytes(&self) -> u64 {
        self.shared.lock().used()
    }

    /// The files of the current namespace, sorted, as absolute paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.shared.lock().files(false)
    }

    /// The files that a power loss now would leave, sorted, as absolute paths.
    pub fn durable_paths(&self) -> Vec<PathBuf> {
        self.shared.lock().files(true)
    }

    /// The current contents of the file at `path`, if there is one.
    pub fn read_file(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        let mut st = self.shared.lock();
        let ino = st.lookup(&split(path.as_ref()).ok()?, false)?;
        st.file(ino).ok().map(|f| f.data.clone())
    }

    /// The length of the durable contents of the file now at `path` (whether its entry is
    /// durable is [`durable_paths`](Self::durable_paths)' business).
    pub fn durable_len(&self, path: impl AsRef<Path>) -> Option<u64> {
        let mut st = self.shared.lock();
        let ino = st.lookup(&split(path.as_ref()).ok()?, false)?;
        st.file(ino).ok().map(|f| f.durable.len() as u64)
    }

    /// Plants `bytes` as the durable contents of `path`, creating the file and any missing
    /// parents with durable entries. Bypasses hooks, counters and capacity: it is meant for
    /// corrupting files between runs. Open handles of an existing file see the new bytes.
    ///
    /// # Panics
    /// If `path` is the root, contains `..`, or crosses or names a directory.
    pub fn write_file(&self, path: impl AsRef<Path>, bytes: &[u8]) {
        let path = path.as_ref();
        let names = split(path).expect("SimStorage::write_file: bad path");
        let (name, dirs) = names
            .split_last()
            .expect("SimStorage::write_file: path is the root");
        let mut st = self.shared.lock();
        let dir = st
            .mkdirs(dirs, path, true)
            .expect("SimStorage::write_file: parent is a file");
        let ino = match st.entry(dir, name) {
            Some(ino) if st.is_dir(ino) => {
                panic!("SimStorage::write_file: {path:?} is a directory")
            }
            Some(ino) => {
                let f = st.file(ino).expect("an existing file");
                let open = f.open;
                *f = FileNode {
                    open,
                    ..FileNode::new(bytes.to_vec())
                };
                ino
            }
            None => st.add(Node::File(FileNode::new(bytes.to_vec()))),
        };
        let d = st.dir(dir);
        d.entries.insert((*name).to_owned(), ino);
        d.durable.insert((*name).to_owned(), ino);
        st.gc();
    }

    /// Operations attempted so far, including those a hook failed.
    pub fn op_count(&self) -> u64 {
        self.shared.lock().ops
    }

    /// Successful file syncs so far: `sync_data`, `sync_all` and mapping `flush`.
    pub fn sync_count(&self) -> u64 {
        self.shared.lock().syncs
    }

    /// Successful `sync_dir` calls so far.
    pub fn dir_sync_count(&self) -> u64 {
        self.shared.lock().dir_syncs
    }

    fn handle(&self, st: &State, ino: u64, path: &Path) -> Handle {
        Handle {
            shared: self.shared.clone(),
            ino,
            epoch: st.epoch,
            path: path.to_path_buf(),
        }
    }
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        let files = st.nodes.values().filter_map(|n| match n {
            Node::File(file) => Some(file.data.len()),
            Node::Dir(_) => None,
        });
        let (count, bytes) = files.fold((0, 0), |(c, b), len| (c + 1, b + len));
        f.debug_struct("SimStorage")
            .field("files", &count)
            .field("bytes", &bytes)
            .field("crashes", &st.epoch)
            .field("ops", &st.ops)
            .finish_non_exhaustive()
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        check(&self.shared, SimOpKind::CreateDirAll, path, 0, 0)?;
        self.shared
            .lock()
            .mkdirs(&split(path)?, path, false)
            .map(drop)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        check(&self.shared, SimOpKind::ListDir, path, 0, 0)?;
        let mut st = self.shared.lock();
        let dir = st.dir_at(&split(path)?, path)?;
        Ok(st.dir(dir).entries.keys().cloned().collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        check(&self.shared, SimOpKind::Exists, path, 0, 0)?;
        Ok(self.shared.lock().lookup(&split(path)?, false).is_some())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        check(&self.shared, SimOpKind::Open, path, 0, 0)?;
        let mut st = self.shared.lock();
        let ino = st.open_ino(path, mode)?;
        st.file(ino)?.open += 1;
        let handle = self.handle(&st, ino, path);
        Ok(Arc::new(SimFile {
            handle,
            writable: mode != OpenMode::Read,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        check(&self.shared, SimOpKind::Rename, from, 0, 0)?;
        let (src, dst) = (split(from)?, split(to)?);
        let mut st = self.shared.lock();
        let (from_dir, from_name) = st.parent(&src, from)?;
        let (to_dir, to_name) = st.parent(&dst, to)?;
        let ino = st
            .entry(from_dir, from_name)
            .ok_or_else(|| fail!(NotFound, "no {from:?}"))?;
        if src == dst {
            return Ok(());
        }
        if st.is_dir(ino) && dst.starts_with(&src) {
            return Err(fail!(InvalidInput, "cannot move {from:?} into itself"));
        }
        if let Some(target) = st.entry(to_dir, to_name) {
            match (st.is_dir(ino), st.is_dir(target)) {
                (false, true) => return Err(fail!(IsADirectory, "{to:?} is a directory")),
                (true, false) => return Err(fail!(NotADirectory, "{to:?} is a file")),
                (true, true) if !st.dir(target).entries.is_empty() => {
                    return Err(fail!(DirectoryNotEmpty, "{to:?} is not empty"))
                }
                _ => {}
            }
        }
        st.dir(from_dir).entries.remove(from_name);
        st.dir(to_dir).entries.insert(to_name.to_owned(), ino);
        st.gc();
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        check(&self.shared, SimOpKind::RemoveFile, path, 0, 0)?;
        let names = split(path)?;
        let mut st = self.shared.lock();
        let (dir, name) = st.parent(&names, path)?;
        match st.entry(dir, name) {
            None => return Err(fail!(NotFound, "no file {path:?}")),
            Some(ino) if st.is_dir(ino) => {
                return Err(fail!(IsADirectory, "{path:?} is a directory"))
            }
            Some(_) => st.dir(dir).entries.remove(name),
        };
        st.gc();
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        check(&self.shared, SimOpKind::RemoveDirAll, path, 0, 0)?;
        let names = split(path)?;
        let mut st = self.shared.lock();
        let (dir, name) = st.parent(&names, path)?;
        match st.entry(dir, name) {
            None => return Err(fail!(NotFound, "no directory {path:?}")),
            Some(ino) if !st.is_dir(ino) => return Err(fail!(NotADirectory, "{path:?} is a file")),
            // Unlinking the directory suffices: its subtree is unreachable in the current view,
            // and stays reachable in the durable one until the parent is synced.
            Some(_) => st.dir(dir).entries.remove(name),
        };
        st.gc();
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        check(&self.shared, SimOpKind::SyncDir, path, 0, 0)?;
        let mut st = self.shared.lock();
        let dir = st.dir_at(&split(path)?, path)?;
        let d = st.dir(dir);
        d.durable.clone_from(&d.entries);
        st.dir_syncs += 1;
        st.gc();
        Ok(())
    }

    /// A real link in the model: the new entry names the same inode, so both names see every
    /// write and a power loss keeps for both what the inode made durable; the entry itself is
    /// durable only after `sync_dir` of its parent, as any other.
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        check(&self.shared, SimOpKind::HardLink, original, 0, 0)?;
        let (src, dst) = (split(original)?, split(link)?);
        let mut st = self.shared.lock();
        let (from_dir, from_name) = st.parent(&src, original)?;
        let (to_dir, to_name) = st.parent(&dst, link)?;
        let ino = st
            .entry(from_dir, from_name)
            .ok_or_else(|| fail!(NotFound, "no {original:?}"))?;
        if st.is_dir(ino) {
            // As POSIX: directories cannot be hard-linked.
            return Err(fail!(PermissionDenied, "{original:?} is a directory"));
        }
        if st.entry(to_dir, to_name).is_some() {
            return Err(fail!(AlreadyExists, "{link:?} exists"));
        }
        st.dir(to_dir).entries.insert(to_name.to_owned(), ino);
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        check(&self.shared, SimOpKind::TryLock, path, 0, 0)?;
        let mut st = self.shared.lock();
        let ino = st.open_ino(path, OpenMode::Create)?;
        if !st.locks.insert(ino) {
            return Ok(None);
        }
        st.file(ino)?.open += 1;
        Ok(Some(Box::new(SimLock {
            handle: self.handle(&st, ino, path),
        })))
    }
}

#[cfg(test)]
mod tests;
