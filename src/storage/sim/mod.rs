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
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// An `io::Error` of kind `ErrorKind::$kind` whose message says it comes from the simulation.
macro_rules! fail {
    ($kind:ident, $($fmt:tt)+) => {
        io::Error::new(ErrorKind::$kind, format!("SimStorage: {}", format_args!($($fmt)+)))
    };
}

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
    /// renamed since); for a rename, the source.
    pub path: PathBuf,
    /// Start of the byte range of a read or write; 0 otherwise.
    pub offset: u64,
    /// Length of a read or write, or the length asked of `set_len`/`allocate`/`map_mut`; else 0.
    pub len: u64,
}

type FaultHook = dyn Fn(&SimOp) -> Option<io::Error> + Send + Sync;

/// Files are whole `Vec`s in memory: a buggy huge offset should fail, not abort the test run.
const MAX_FILE_LEN: u64 = 1 << 32;
const ROOT: u64 = 0;

/// An operation applied to a file since its last sync, kept so a torn crash can replay a prefix.
enum Pending {
    Write { pos: usize, bytes: Vec<u8> },
    SetLen(usize),
}

impl Pending {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Pending::Write { pos, bytes } => write_into(data, *pos, bytes),
            Pending::SetLen(len) => data.resize(*len, 0),
        }
    }
}

fn write_into(data: &mut Vec<u8>, pos: usize, bytes: &[u8]) {
    if bytes.is_empty() {
        return; // a zero-length write never extends a file
    }
    let end = pos + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[pos..end].copy_from_slice(bytes);
}

struct FileNode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
    /// Bytes that own blocks, for the disk-full model: writes and `allocate` grow it, growing
    /// `set_len` does not (it makes a hole), shrinking frees.
    backed: u64,
    /// Live handles, mappings and lock guards; keeps an unlinked inode alive, as on POSIX.
    open: usize,
}

impl FileNode {
    fn new(bytes: Vec<u8>) -> FileNode {
        let backed = bytes.len() as u64;
        FileNode {
            durable: bytes.clone(),
            data: bytes,
            pending: Vec::new(),
            backed,
            open: 0,
        }
    }

    fn push(&mut self, op: Pending) {
        op.apply(&mut self.data);
        self.pending.push(op);
    }

    fn sync(&mut self) {
        // Replaying onto `durable` costs the bytes written, not the file size (which matters
        // for large preallocated files synced often).
        for op in self.pending.drain(..) {
            op.apply(&mut self.durable);
        }
        debug_assert!(self.durable == self.data);
    }
}

#[derive(Default)]
struct DirNode {
    entries: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Default)]
struct State {
    /// A `BTreeMap` so a torn crash visits inodes in a fixed order, reproducible by seed.
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    /// Bumped by every crash; a handle from an older epoch is dead.
    epoch: u64,
    locks: HashSet<u64>,
    hook: Option<Arc<FaultHook>>,
    capacity: Option<u64>,
    ops: u64,
    syncs: u64,
    dir_syncs: u64,
}

type Shared = Arc<Mutex<State>>;

fn crashed() -> io::Error {
    io::Error::other("SimStorage: handle was opened before a simulated crash and is dead")
}

fn to_usize(n: u64) -> io::Result<usize> {
    match n <= MAX_FILE_LEN {
        true => Ok(n as usize),
        false => Err(fail!(
            FileTooLarge,
            "files are limited to {MAX_FILE_LEN} bytes"
        )),
    }
}

/// The names along `path`, root first.
fn split(path: &Path) -> io::Result<Vec<&str>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(n) => out.push(
                n.to_str()
                    .ok_or_else(|| fail!(InvalidInput, "non-UTF-8 {path:?}"))?,
            ),
            Component::ParentDir => return Err(fail!(InvalidInput, "`..` in {path:?}")),
        }
    }
    Ok(out)
}

impl State {
    fn file(&mut self, ino: u64) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(io::Error::other(
                "SimStorage: inode of a live handle vanished",
            )),
        }
    }

    fn dir(&mut self, ino: u64) -> &mut DirNode {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => d,
            _ => unreachable!("callers only pass inodes they resolved as directories"),
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.nodes.get(&ino), Some(Node::Dir(_)))
    }

    fn add(&mut self, node: Node) -> u64 {
        self.next_ino += 1;
        self.nodes.insert(self.next_ino, node);
        self.next_ino
    }

    /// The current entry `name` of directory `dir`.
    fn entry(&self, dir: u64, name: &str) -> Option<u64> {
        match self.nodes.get(&dir) {
            Some(Node::Dir(d)) => d.entries.get(name).copied(),
            _ => None,
        }
    }

    /// Resolves `names` in the current (or the durable) namespace.
    fn lookup(&self, names: &[&str], durable: bool) -> Option<u64> {
        let mut cur = ROOT;
        for name in names {
            let Some(Node::Dir(d)) = self.nodes.get(&cur) else {
                return None;
            };
            cur = *if durable { &d.durable } else { &d.entries }.get(*name)?;
        }
        Some(cur)
    }

    /// Resolves `names` to a directory of the current namespace.
    fn dir_at(&self, names: &[&str], path: &Path) -> io::Result<u64> {
        match self.lookup(names, false) {
            Some(ino) if self.is_dir(ino) => Ok(ino),
            Some(_) => Err(fail!(NotADirectory, "{path:?} or a parent of it is a file")),
            None => Err(fail!(NotFound, "no directory {path:?}")),
        }
    }

    /// The directory holding the last name of `names` (`path`), and that name.
    fn parent<'a>(&self, names: &[&'a str], path: &Path) -> io::Result<(u64, &'a str)> {
        let (name, dirs) = names
            .split_last()
            .ok_or_else(|| fail!(InvalidInput, "{path:?} is the root"))?;
        Ok((self.dir_at(dirs, path)?, name))
    }

    /// `mkdir -p`; the new entries are durable too if `durable` (for planting files).
    fn mkdirs(&mut self, names: &[&str], path: &Path, durable: bool) -> io::Result<u64> {
        let mut dir = ROOT;
        for (i, name) in names.iter().enumerate() {
            dir = match self.entry(dir, name) {
                Some(ino) if self.is_dir(ino) => ino,
                Some(_) if i + 1 == names.len() => {
                    return Err(fail!(AlreadyExists, "{path:?} is a file"))
                }
                Some(_) => return Err(fail!(NotADirectory, "a parent of {path:?} is a file")),
                None => {
                    let ino = self.add(Node::Dir(DirNode::default()));
                    let parent = self.dir(dir);
                    parent.entries.insert((*name).to_owned(), ino);
                    if durable {
                        parent.durable.insert((*name).to_owned(), ino);
                    }
                    ino
                }
            };
        }
        Ok(dir)
    }

    /// Resolves (or, per `mode`, creates) the file at `path`.
    fn open_ino(&mut self, path: &Path, mode: OpenMode) -> io::Result<u64> {
        let names = split(path)?;
        let (dir, name) = self.parent(&names, path)?;
        match (self.entry(dir, name), mode) {
            (Some(ino), _) if self.is_dir(ino) => {
                Err(fail!(IsADirectory, "{path:?} is a directory"))
            }
            (Some(_), OpenMode::CreateNew) => Err(fail!(AlreadyExists, "{path:?} exists")),
            (Some(ino), _) => Ok(ino),
            (None, OpenMode::Read | OpenMode::ReadWrite) => {
                Err(fail!(NotFound, "no file {path:?}"))
            }
            (None, OpenMode::Create | OpenMode::CreateNew) => {
                let ino = self.add(Node::File(FileNode::new(Vec::new())));
                self.dir(dir).entries.insert(name.to_owned(), ino);
                Ok(ino)
            }
        }
    }

    /// Inodes reachable from the root through current entries (and durable ones, if asked).
    fn reachable(&self, with_durable: bool) -> HashSet<u64> {
        let mut seen = HashSet::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if let (true, Some(Node::Dir(d))) = (seen.insert(ino), self.nodes.get(&ino)) {
                stack.extend(d.entries.values());
                if with_durable {
                    stack.extend(d.durable.values());
                }
            }
        }
        seen
    }

    /// Frees inodes that neither namespace nor any live handle can reach any more.
    fn gc(&mut self) {
        let live = self.reachable(true);
        self.nodes
            .retain(|ino, n| live.contains(ino) || matches!(n, Node::File(f) if f.open > 0));
    }

    /// Bytes of files linked in the current namespace or still open (an unlinked but open file
    /// keeps its blocks, as on POSIX).
    fn used(&self) -> u64 {
        let linked = self.reachable(false);
        let mut used = 0;
        for (ino, node) in &self.nodes {
            if let Node::File(f) = node {
                if f.open > 0 || linked.contains(ino) {
                    used += f.backed;
                }
            }
        }
        used
    }

    /// Grows `ino`'s blocks to `backed`, or fails with `StorageFull` (changing nothing).
    fn reserve(&mut self, ino: u64, backed: u64) -> io::Result<()> {
        let cur = self.file(ino)?.backed;
        if let Some(cap) = self.capacity {
            if backed > cur && self.used() + (backed - cur) > cap {
                return Err(fail!(StorageFull, "no space left ({cap}-byte capacity)"));
            }
        }
        self.file(ino)?.backed = backed.max(cur);
        Ok(())
    }

    fn release(&mut self, ino: u64) {
        if let Ok(f) = self.file(ino) {
            f.open -= 1;
            if f.open == 0 {
                self.gc();
            }
        }
    }

    /// Paths of the files in the current or the durable namespace, sorted.
    fn files(&self, durable: bool) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![(ROOT, PathBuf::from("/"))];
        while let Some((ino, path)) = stack.pop() {
            match self.nodes.get(&ino) {
                Some(Node::Dir(d)) => {
                    let entries = if durable { &d.durable } else { &d.entries };
                    stack.extend(entries.iter().map(|(name, &i)| (i, path.join(name))));
                }
                Some(Node::File(_)) => out.push(path),
                None => {}
            }
        }
        out.sort();
        out
    }

    fn crash(&mut self, mode: CrashMode) {
        self.epoch += 1;
        self.locks.clear();
        let mut rng = SplitMix64(match mode {
            CrashMode::PowerLossTorn { seed } => seed,
            _ => 0,
        });
        for node in self.nodes.values_mut() {
            let f = match (node, mode) {
                (Node::File(f), CrashMode::ProcessKill) => {
                    f.open = 0;
                    continue;
                }
                (Node::Dir(_), CrashMode::ProcessKill) => continue,
                (Node::Dir(d), _) => {
                    d.entries.clone_from(&d.durable);
                    continue;
                }
                (Node::File(f), _) => f,
            };
            let pending = std::mem::take(&mut f.pending);
            if let CrashMode::PowerLossTorn { .. } = mode {
                let kept = rng.below(pending.len() + 1);
                for (i, op) in pending[..kept].iter().enumerate() {
                    match op {
                        Pending::Write { pos, bytes } if i + 1 == kept => {
                            let cut = rng.below(bytes.len() + 1);
                            write_into(&mut f.durable, *pos, &bytes[..cut]);
                        }
                        op => op.apply(&mut f.durable),
                    }
                }
            }
            // Whatever reached the disk is simply the file's contents after the reboot.
            f.data.clone_from(&f.durable);
            f.backed = f.data.len() as u64;
            f.open = 0;
        }
        self.gc();
    }
}

/// A tiny deterministic PRNG (SplitMix64), so torn crashes need no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    /// A number in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
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

/// What every kind of handle holds: an inode, and the life of the process it belongs to.
struct Handle {
    shared: Shared,
    ino: u64,
    epoch: u64,
    path: PathBuf,
}

impl Handle {
    /// Runs the fault hook, then `f` if this handle has survived every crash so far.
    fn op<R>(
        &self,
        kind: SimOpKind,
        offset: u64,
        len: u64,
        f: impl FnOnce(&mut State) -> io::Result<R>,
    ) -> io::Result<R> {
        check(&self.shared, kind, &self.path, offset, len)?;
        let mut st = self.shared.lock();
        if st.epoch != self.epoch {
            return Err(crashed());
        }
        f(&mut st)
    }

    fn sync(&self, kind: SimOpKind) -> io::Result<()> {
        self.op(kind, 0, 0, |st| {
            st.file(self.ino)?.sync();
            st.syncs += 1;
            Ok(())
        })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        // A crash already dropped the references of the handles it killed.
        if st.epoch == self.epoch {
            st.release(self.ino);
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} (inode {}, epoch {})",
            self.path, self.ino, self.epoch
        )
    }
}

#[derive(Debug)]
struct SimFile {
    handle: Handle,
    writable: bool,
}

impl SimFile {
    /// Runs a modifying operation: like [`Handle::op`], but refused on a read-only handle.
    fn write_op(
        &self,
        kind: SimOpKind,
        offset: u64,
        len: u64,
        f: impl FnOnce(&mut State) -> io::Result<()>,
    ) -> io::Result<()> {
        let path = &self.handle.path;
        let writable = || {
            self.writable
                .then_some(())
                .ok_or_else(|| fail!(PermissionDenied, "{path:?} is read-only"))
        };
        self.handle
            .op(kind, offset, len, |st| writable().and_then(|()| f(st)))
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let ino = self.handle.ino;
        self.handle
            .op(SimOpKind::Read, pos, buf.len() as u64, |st| {
                let data = &st.file(ino)?.data;
                let start = usize::try_from(pos).unwrap_or(usize::MAX).min(data.len());
                let n = buf.len().min(data.len() - start);
                buf[..n].copy_from_slice(&data[start..start + n]);
                Ok(n)
            })
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let ino = self.handle.ino;
        self.write_op(SimOpKind::Write, pos, buf.len() as u64, |st| {
            if buf.is_empty() {
                return Ok(());
            }
            let end = pos.saturating_add(buf.len() as u64);
            to_usize(end)?;
            st.reserve(ino, end)?;
            st.file(ino)?.push(Pending::Write {
                pos: pos as usize,
                bytes: buf.to_vec(),
            });
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        let ino = self.handle.ino;
        self.handle.op(SimOpKind::Len, 0, 0, |st| {
            Ok(st.file(ino)?.data.len() as u64)
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let ino = self.handle.ino;
        self.write_op(SimOpKind::SetLen, 0, len, |st| {
            let f = st.file(ino)?;
            f.push(Pending::SetLen(to_usize(len)?));
            f.backed = f.backed.min(len); // growth makes a hole; shrinking frees blocks
            Ok(())
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let ino = self.handle.ino;
        self.write_op(SimOpKind::Allocate, 0, len, |st| {
            let new_len = to_usize(len)?;
            st.reserve(ino, len)?;
            let f = st.file(ino)?;
            if f.data.len() < new_len {
                f.push(Pending::SetLen(new_len));
            }
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.handle.sync(SimOpKind::SyncData)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.handle.sync(SimOpKind::SyncAll)
    }

    // Nothing is mapped: the region is a private copy kept in step with the file by its
    // `write`, so this needs none of the contract. It is `unsafe` because the trait is.
    unsafe fn map_mut(&self, len: usize) -> io::Result<Box<dyn MappedRegion>> {
        let mut region = None;
        self.write_op(SimOpKind::MapMut, 0, len as u64, |st| {
            let f = st.file(self.handle.ino)?;
            if f.data.len() < len {
                return Err(fail!(
                    InvalidInput,
                    "cannot map {len} bytes of a {}-byte file",
                    f.data.len()
                ));
            }
            f.open += 1;
            let h = &self.handle;
            let handle = Handle {
                shared: h.shared.clone(),
                ino: h.ino,
                epoch: h.epoch,
                path: h.path.clone(),
            };
            region = Some(SimRegion {
                handle,
                buf: f.data[..len].to_vec(),
            });
            Ok(())
        })?;
        Ok(Box::new(region.expect("set on success")))
    }
}

/// A mapping: a private copy for `as_slice`, with every write also applied to the inode as an
/// unsynced write — the way a `MAP_SHARED` mapping dirties the page cache.
struct SimRegion {
    handle: Handle,
    buf: Vec<u8>,
}

impl fmt::Debug for SimRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRegion")
            .field("file", &self.handle)
            .field("len", &self.buf.len())
            .finish()
    }
}

impl MappedRegion for SimRegion {
    fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    fn write(&mut self, pos: usize, bytes: &[u8]) {
        let mut st = self.handle.shared.lock();
        if st.epoch != self.handle.epoch {
            return; // the process that mapped this is dead: its stores go nowhere
        }
        self.buf[pos..pos + bytes.len()].copy_from_slice(bytes);
        if let Ok(f) = st.file(self.handle.ino) {
            f.push(Pending::Write {
                pos,
                bytes: bytes.to_vec(),
            });
        }
    }

    fn flush(&self) -> io::Result<()> {
        self.handle.sync(SimOpKind::RegionFlush)
    }
}

#[derive(Debug)]
struct SimLock {
    handle: Handle,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        // A crash released the locks of the dead process, and someone may have retaken this
        // one since: only a guard of the current life may release it.
        let mut st = self.handle.shared.lock();
        if st.epoch == self.handle.epoch {
            st.locks.remove(&self.handle.ino);
        }
    }
}

#[cfg(test)]
mod tests;
