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
mod tests {
    use super::super::write_atomic;
    use super::*;
    use std::sync::Weak;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    /// A storage whose `/sim` directory exists durably.
    fn setup() -> Arc<SimStorage> {
        let sim = SimStorage::new();
        sim.create_dir_all(p("/sim")).unwrap();
        sim.sync_dir(p("/")).unwrap();
        sim
    }

    /// Creates `path` holding `bytes`, with both its data and its directory entry durable.
    fn durable_file(sim: &SimStorage, path: &str, bytes: &[u8]) {
        let f = sim.open(p(path), OpenMode::Create).unwrap();
        f.set_len(0).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f.sync_all().unwrap();
        sim.sync_dir(p(path).parent().unwrap()).unwrap();
    }

    fn read_all(f: &dyn StorageFile) -> Vec<u8> {
        let mut buf = vec![0; f.len().unwrap() as usize];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), buf.len());
        buf
    }

    fn assert_dead<T: fmt::Debug>(what: &str, r: io::Result<T>) {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::Other, "{what}: {e}");
        assert!(e.to_string().contains("simulated crash"), "{what}: {e}");
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn synced_data_survives_power_loss_and_unsynced_data_does_not() {
        let sim = setup();
        let f = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        sim.sync_dir(p("/sim")).unwrap();
        f.write_all_at(b" world", 5).unwrap();
        f.write_all_at(b"J", 0).unwrap();
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"Jello world");
        assert_eq!(sim.durable_len("/sim/a"), Some(5));

        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"hello");
        let f = sim.open(p("/sim/a"), OpenMode::Read).unwrap();
        assert_eq!(read_all(&*f), b"hello");
    }

    #[test]
    fn unsynced_set_len_reverts_and_synced_one_sticks() {
        let sim = setup();
        durable_file(&sim, "/sim/a", b"0123456789");
        let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
        f.set_len(3).unwrap();
        assert_eq!(f.len().unwrap(), 3);
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"0123456789");

        let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
        f.set_len(3).unwrap();
        f.set_len(5).unwrap(); // regrowth reads as zeros
        f.sync_all().unwrap();
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"012\0\0");
    }

    #[test]
    fn process_kill_keeps_every_completed_change() {
        let sim = setup();
        durable_file(&sim, "/sim/gone", b"x");
        sim.create_dir_all(p("/sim/d")).unwrap();
        let f = sim.open(p("/sim/d/new"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"unsynced", 0).unwrap();
        sim.rename(p("/sim/d/new"), p("/sim/d/renamed")).unwrap();
        sim.remove_file(p("/sim/gone")).unwrap();
        let before = sim.paths();
        assert_eq!(before, paths(&["/sim/d/renamed"]));

        sim.crash(CrashMode::ProcessKill);
        assert_eq!(sim.paths(), before);
        assert_eq!(sim.read_file("/sim/d/renamed").unwrap(), b"unsynced");
        // Still nothing of it is durable: a power loss now reverts to the synced state.
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.paths(), paths(&["/sim/gone"]));
    }

    #[test]
    fn created_file_survives_power_loss_only_after_sync_dir() {
        let sim = setup();
        let f = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
        f.write_all_at(b"data", 0).unwrap();
        f.sync_data().unwrap();
        assert_eq!(sim.durable_len("/sim/a"), Some(4));
        assert!(sim.durable_paths().is_empty());
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert!(sim.paths().is_empty());
        assert!(!sim.exists(p("/sim/a")).unwrap());

        durable_file(&sim, "/sim/a", b"data");
        assert_eq!(sim.durable_paths(), paths(&["/sim/a"]));
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"data");
    }

    #[test]
    fn new_directory_needs_its_parent_synced() {
        let sim = setup();
        sim.create_dir_all(p("/sim/d/e")).unwrap();
        durable_file(&sim, "/sim/d/e/f", b"x"); // syncs /sim/d/e, but not /sim nor /sim/d
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert!(!sim.exists(p("/sim/d")).unwrap());
        assert!(sim.paths().is_empty());

        sim.create_dir_all(p("/sim/d/e")).unwrap();
        durable_file(&sim, "/sim/d/e/f", b"x");
        sim.sync_dir(p("/sim/d")).unwrap();
        sim.sync_dir(p("/sim")).unwrap();
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/d/e/f").unwrap(), b"x");
    }

    #[test]
    fn rename_without_sync_dir_reverts_on_power_loss() {
        let sim = setup();
        durable_file(&sim, "/sim/meta", b"old");
        let tmp = sim.open(p("/sim/meta.tmp"), OpenMode::Create).unwrap();
        tmp.write_all_at(b"new", 0).unwrap();
        tmp.sync_all().unwrap();
        sim.rename(p("/sim/meta.tmp"), p("/sim/meta")).unwrap();
        assert_eq!(sim.read_file("/sim/meta").unwrap(), b"new");
        assert_eq!(sim.paths(), paths(&["/sim/meta"]));
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/meta").unwrap(), b"old");
        assert_eq!(sim.paths(), paths(&["/sim/meta"]));

        write_atomic(&*sim, p("/sim/meta"), b"new").unwrap();
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/meta").unwrap(), b"new");
        assert_eq!(sim.paths(), paths(&["/sim/meta"]));
    }

    #[test]
    fn removals_need_sync_dir() {
        let sim = setup();
        durable_file(&sim, "/sim/a", b"a");
        sim.remove_file(p("/sim/a")).unwrap();
        assert_eq!(sim.read_file("/sim/a"), None);
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"a");

        sim.remove_file(p("/sim/a")).unwrap();
        sim.sync_dir(p("/sim")).unwrap();
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert!(sim.paths().is_empty());

        sim.create_dir_all(p("/sim/t")).unwrap();
        sim.sync_dir(p("/sim")).unwrap();
        durable_file(&sim, "/sim/t/x", b"x");
        sim.remove_dir_all(p("/sim/t")).unwrap();
        assert!(!sim.exists(p("/sim/t/x")).unwrap());
        assert_eq!(
            sim.list_dir(p("/sim/t")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(
            sim.read_file("/sim/t/x").unwrap(),
            b"x",
            "the tree comes back"
        );
        sim.remove_dir_all(p("/sim/t")).unwrap();
        sim.sync_dir(p("/sim")).unwrap();
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert!(!sim.exists(p("/sim/t")).unwrap());
    }

    #[test]
    fn renamed_directory_keeps_its_subtree() {
        let sim = setup();
        sim.create_dir_all(p("/sim/p1")).unwrap();
        sim.sync_dir(p("/sim")).unwrap();
        durable_file(&sim, "/sim/p1/seg", b"records");
        sim.rename(p("/sim/p1"), p("/sim/p2")).unwrap();
        assert_eq!(sim.read_file("/sim/p2/seg").unwrap(), b"records");
        assert_eq!(
            sim.rename(p("/sim/p2"), p("/sim/p2/in"))
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        sim.sync_dir(p("/sim")).unwrap();
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.paths(), paths(&["/sim/p2/seg"]));
        assert_eq!(sim.read_file("/sim/p2/seg").unwrap(), b"records");
    }

    /// One unsynced operation, for the torn-crash model in the test.
    #[derive(Clone, Copy)]
    enum Op {
        Write(u64, &'static [u8]),
        SetLen(u64),
    }

    fn apply(data: &mut Vec<u8>, op: Op) {
        match op {
            Op::Write(pos, bytes) => write_into(data, pos as usize, bytes),
            Op::SetLen(len) => data.resize(len as usize, 0),
        }
    }

    #[test]
    fn torn_crash_leaves_durable_contents_plus_a_prefix_of_pending_ops() {
        const BASE: &[u8] = b"base-base-";
        let ops = [
            Op::Write(2, b"AAAA"),
            Op::Write(8, b"BBBBBBBB"),
            Op::SetLen(12),
            Op::Write(11, b"CC"),
        ];
        // Every state the model allows: k whole ops, or k whole ops and a torn next write.
        let mut allowed = Vec::new();
        for k in 0..=ops.len() {
            let mut data = BASE.to_vec();
            ops[..k].iter().for_each(|&op| apply(&mut data, op));
            allowed.push(data.clone());
            if let Some(&Op::Write(pos, bytes)) = ops.get(k) {
                for cut in 0..bytes.len() {
                    let mut torn = data.clone();
                    apply(&mut torn, Op::Write(pos, &bytes[..cut]));
                    allowed.push(torn);
                }
            }
        }
        let run = |seed| {
            let sim = setup();
            durable_file(&sim, "/sim/a", BASE);
            let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
            for op in ops {
                match op {
                    Op::Write(pos, bytes) => f.write_all_at(bytes, pos).unwrap(),
                    Op::SetLen(len) => f.set_len(len).unwrap(),
                }
            }
            sim.open(p("/sim/unsynced"), OpenMode::Create).unwrap();
            sim.crash(CrashMode::PowerLossTorn { seed });
            assert_eq!(
                sim.paths(),
                paths(&["/sim/a"]),
                "the namespace is the durable one"
            );
            assert_dead("old handle", f.len());
            sim.read_file("/sim/a").unwrap()
        };
        let mut seen = HashSet::new();
        for seed in 0..400 {
            let got = run(seed);
            assert!(
                allowed.contains(&got),
                "seed {seed}: {:?} is no prefix state",
                String::from_utf8_lossy(&got)
            );
            assert_eq!(run(seed), got, "seed {seed} is not deterministic");
            seen.insert(got);
        }
        let mut whole = vec![BASE.to_vec()];
        for &op in &ops {
            let mut next = whole.last().unwrap().clone();
            apply(&mut next, op);
            whole.push(next);
        }
        assert!(seen.contains(BASE), "some crash must keep nothing");
        assert!(
            seen.contains(whole.last().unwrap()),
            "some crash must keep everything"
        );
        assert!(
            seen.iter().any(|s| !whole.contains(s)),
            "some crash must tear a write"
        );
        assert!(
            seen.len() >= 8,
            "torn writes should show up: only {} distinct outcomes",
            seen.len()
        );
    }

    #[test]
    fn handles_mappings_and_locks_die_with_a_crash() {
        for mode in [
            CrashMode::ProcessKill,
            CrashMode::PowerLossDropUnsynced,
            CrashMode::PowerLossTorn { seed: 7 },
        ] {
            let sim = setup();
            durable_file(&sim, "/sim/a", &[0; 8]);
            let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
            // SAFETY: SimStorage maps nothing (see `map_mut`); the contract holds trivially.
            let mut region = unsafe { f.map_mut(8) }.unwrap();
            let lock = sim.try_lock(p("/sim/LOCK")).unwrap().expect("free");
            sim.crash(mode);

            assert_dead("read", f.read_at(&mut [0; 4], 0));
            assert_dead("write", f.write_all_at(b"x", 0));
            assert_dead("len", f.len());
            assert_dead("set_len", f.set_len(1));
            assert_dead("allocate", f.allocate(100));
            assert_dead("sync_data", f.sync_data());
            assert_dead("sync_all", f.sync_all());
            // SAFETY: as above.
            assert_dead("map_mut", unsafe { f.map_mut(8) });
            assert_dead("flush", region.flush());
            region.write(0, b"zz");
            assert_eq!(
                sim.read_file("/sim/a").unwrap(),
                [0; 8],
                "{mode:?}: dead mapping wrote"
            );

            // The restarted process can use everything again.
            let relock = sim.try_lock(p("/sim/LOCK")).unwrap();
            assert!(
                relock.is_some(),
                "{mode:?}: the crash must release the lock"
            );
            drop(lock); // the dead guard must not release the new holder's lock
            assert!(sim.try_lock(p("/sim/LOCK")).unwrap().is_none());
            drop((f, region));
            let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
            f.write_all_at(b"ok", 0).unwrap();
            assert_eq!(&sim.read_file("/sim/a").unwrap()[..2], b"ok");
        }
    }

    #[test]
    fn fault_hook_sees_every_op_and_a_failed_op_changes_nothing() {
        let sim = setup();
        durable_file(&sim, "/sim/a", b"abc");
        let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();

        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        sim.set_fault_hook(move |op| {
            log.lock().push(op.clone());
            None
        });
        f.write_all_at(b"xyz", 7).unwrap();
        f.read_at(&mut [0; 2], 1).unwrap();
        sim.rename(p("/sim/a"), p("/sim/b")).unwrap();
        let want = |kind, path: &str, offset, len| SimOp {
            kind,
            path: path.into(),
            offset,
            len,
        };
        assert_eq!(
            *seen.lock(),
            [
                want(SimOpKind::Write, "/sim/a", 7, 3),
                want(SimOpKind::Read, "/sim/a", 1, 2),
                want(SimOpKind::Rename, "/sim/a", 0, 0)
            ]
        );
        sim.rename(p("/sim/b"), p("/sim/a")).unwrap();
        let content = sim.read_file("/sim/a").unwrap();

        sim.fail_when(SimOpKind::Write, "/sim/a", ErrorKind::Interrupted);
        assert_eq!(
            f.write_all_at(b"!!", 0).unwrap_err().kind(),
            ErrorKind::Interrupted
        );
        assert_eq!(sim.read_file("/sim/a").unwrap(), content);
        let other = sim.open(p("/sim/other"), OpenMode::Create).unwrap();
        other.write_all_at(b"fine", 0).unwrap(); // other paths are unaffected

        sim.fail_when(SimOpKind::SyncData, "", ErrorKind::Other);
        let syncs = sim.sync_count();
        assert!(f.sync_data().is_err());
        assert_eq!(
            (sim.sync_count(), sim.durable_len("/sim/a")),
            (syncs, Some(3))
        );

        for (kind, run) in [
            (
                SimOpKind::Rename,
                Box::new(|s: &SimStorage| s.rename(p("/sim/a"), p("/sim/z")))
                    as Box<dyn Fn(&SimStorage) -> io::Result<()>>,
            ),
            (
                SimOpKind::RemoveFile,
                Box::new(|s| s.remove_file(p("/sim/a"))),
            ),
            (
                SimOpKind::Open,
                Box::new(|s| s.open(p("/sim/c"), OpenMode::Create).map(drop)),
            ),
            (
                SimOpKind::CreateDirAll,
                Box::new(|s| s.create_dir_all(p("/sim/dir"))),
            ),
            (SimOpKind::SyncDir, Box::new(|s| s.sync_dir(p("/sim")))),
        ] {
            sim.fail_when(kind, "/sim", ErrorKind::PermissionDenied);
            let before = (
                sim.paths(),
                sim.durable_paths(),
                sim.list_dir(p("/sim")).unwrap(),
            );
            assert_eq!(
                run(&sim).unwrap_err().kind(),
                ErrorKind::PermissionDenied,
                "{kind:?}"
            );
            assert_eq!(
                (
                    sim.paths(),
                    sim.durable_paths(),
                    sim.list_dir(p("/sim")).unwrap()
                ),
                before,
                "{kind:?}"
            );
        }

        sim.clear_fault_hook();
        f.write_all_at(b"!!", 0).unwrap();
        f.sync_data().unwrap();
        assert_eq!(sim.durable_len("/sim/a"), Some(10));
    }

    #[test]
    fn fault_hook_may_use_the_storage() {
        let sim = setup();
        let weak: Weak<SimStorage> = Arc::downgrade(&sim);
        sim.set_fault_hook(move |op| {
            let sim = weak.upgrade()?;
            // Fail the second write to a file: calls back into the storage while it runs.
            let has_data = sim.read_file(&op.path).is_some_and(|d| !d.is_empty());
            (op.kind == SimOpKind::Write && has_data).then(|| io::Error::other("second write"))
        });
        let f = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
        f.write_all_at(b"1", 0).unwrap();
        assert!(f.write_all_at(b"2", 1).is_err());
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"1");
    }

    #[test]
    fn capacity_fails_writes_with_storage_full_and_writes_nothing() {
        let sim = setup();
        sim.set_capacity(Some(10));
        let a = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
        a.write_all_at(b"12345678", 0).unwrap();
        a.write_all_at(b"9A", 8).unwrap();
        assert_eq!(sim.used_bytes(), 10);
        assert_eq!(
            a.write_all_at(b"B", 10).unwrap_err().kind(),
            ErrorKind::StorageFull
        );
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"123456789A");
        a.write_all_at(b"ab", 0).unwrap(); // overwriting needs no new blocks

        let b = sim.open(p("/sim/b"), OpenMode::Create).unwrap();
        assert_eq!(b.allocate(1).unwrap_err().kind(), ErrorKind::StorageFull);
        assert_eq!(b.len().unwrap(), 0);
        b.set_len(100).unwrap(); // a hole costs nothing, but filling it does
        assert_eq!(
            b.write_all_at(b"x", 50).unwrap_err().kind(),
            ErrorKind::StorageFull
        );

        // An unlinked file keeps its blocks while open, like on POSIX.
        sim.remove_file(p("/sim/a")).unwrap();
        assert_eq!(sim.used_bytes(), 10);
        drop(a);
        assert_eq!(sim.used_bytes(), 0);
        b.allocate(10).unwrap();
        b.write_all_at(b"fits", 0).unwrap();
        assert_eq!(
            b.write_all_at(b"!", 99).unwrap_err().kind(),
            ErrorKind::StorageFull
        );
        sim.set_capacity(None);
        b.write_all_at(b"!", 99).unwrap();
    }

    #[test]
    fn locks_conflict_and_release_on_drop() {
        let sim = setup();
        let guard = sim.try_lock(p("/sim/LOCK")).unwrap().expect("free");
        assert!(
            sim.exists(p("/sim/LOCK")).unwrap(),
            "try_lock creates the file"
        );
        assert!(sim.try_lock(p("/sim/LOCK")).unwrap().is_none());
        let other = sim.try_lock(p("/sim/OTHER")).unwrap();
        assert!(other.is_some(), "locks are per file");
        drop(guard);
        assert!(sim.try_lock(p("/sim/LOCK")).unwrap().is_some());
        assert_eq!(
            sim.try_lock(p("/missing/LOCK")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn mapped_writes_reach_the_file_but_are_durable_only_after_flush() {
        let sim = setup();
        durable_file(&sim, "/sim/idx", &[0; 16]);
        let f = sim.open(p("/sim/idx"), OpenMode::ReadWrite).unwrap();
        // SAFETY (every `map_mut` of this test): SimStorage maps nothing, it copies.
        assert_eq!(
            unsafe { f.map_mut(17) }.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let mut region = unsafe { f.map_mut(8) }.unwrap();
        region.write(2, b"xy");
        assert_eq!(&region.as_slice()[..4], b"\0\0xy");
        assert_eq!(&sim.read_file("/sim/idx").unwrap()[..4], b"\0\0xy");
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/sim/idx").unwrap(), [0; 16]);

        let f = sim.open(p("/sim/idx"), OpenMode::ReadWrite).unwrap();
        let mut region = unsafe { f.map_mut(8) }.unwrap();
        region.write(6, b"zz");
        let syncs = sim.sync_count();
        region.flush().unwrap();
        assert_eq!(sim.sync_count(), syncs + 1);
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(&sim.read_file("/sim/idx").unwrap()[4..10], b"\0\0zz\0\0");

        let ro = sim.open(p("/sim/idx"), OpenMode::Read).unwrap();
        assert_eq!(
            unsafe { ro.map_mut(8) }.unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn open_modes_follow_the_contract() {
        let sim = setup();
        for mode in [OpenMode::Read, OpenMode::ReadWrite] {
            assert_eq!(
                sim.open(p("/sim/a"), mode).unwrap_err().kind(),
                ErrorKind::NotFound
            );
        }
        assert_eq!(
            sim.open(p("/nope/a"), OpenMode::Create).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            sim.open(p("/sim"), OpenMode::Read).unwrap_err().kind(),
            ErrorKind::IsADirectory
        );
        let f = sim.open(p("/sim/a"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"kept", 0).unwrap();
        assert_eq!(
            sim.open(p("/sim/a"), OpenMode::CreateNew)
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            read_all(&*sim.open(p("/sim/a"), OpenMode::Create).unwrap()),
            b"kept"
        );
        assert_eq!(
            sim.open(p("/sim/a/b"), OpenMode::Create)
                .unwrap_err()
                .kind(),
            ErrorKind::NotADirectory
        );

        let ro = sim.open(p("/sim/a"), OpenMode::Read).unwrap();
        assert_eq!(
            ro.write_all_at(b"x", 0).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            ro.set_len(0).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        let mut buf = [0; 8];
        assert_eq!(
            ro.read_at(&mut buf, 2).unwrap(),
            2,
            "short read at end of file"
        );
        assert_eq!(&buf[..2], b"pt");
        assert_eq!(ro.read_at(&mut buf, 100).unwrap(), 0);
    }

    #[test]
    fn unlinked_file_lives_on_through_open_handles() {
        let sim = setup();
        durable_file(&sim, "/sim/a", b"abc");
        let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
        sim.remove_file(p("/sim/a")).unwrap();
        assert!(!sim.exists(p("/sim/a")).unwrap());
        f.write_all_at(b"d", 3).unwrap();
        assert_eq!(read_all(&*f), b"abcd");
        // A new file of the same name is a different inode.
        durable_file(&sim, "/sim/a", b"new");
        assert_eq!(read_all(&*f), b"abcd");
        assert_eq!(sim.read_file("/sim/a").unwrap(), b"new");
    }

    #[test]
    fn namespace_operations() {
        let sim = setup();
        sim.create_dir_all(p("/sim/d")).unwrap();
        durable_file(&sim, "/sim/x", b"x");
        durable_file(&sim, "/sim/y", b"y");
        let mut names = sim.list_dir(p("/sim")).unwrap();
        names.sort();
        assert_eq!(names, ["d", "x", "y"]);
        assert!(sim.list_dir(p("/")).unwrap().contains(&"sim".to_owned()));
        assert_eq!(
            sim.list_dir(p("/sim/x")).unwrap_err().kind(),
            ErrorKind::NotADirectory
        );
        assert_eq!(
            sim.create_dir_all(p("/sim/x")).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        sim.create_dir_all(p("/sim/d")).unwrap(); // existing directories are fine

        sim.rename(p("/sim/x"), p("/sim/y")).unwrap();
        assert_eq!(sim.read_file("/sim/y").unwrap(), b"x");
        assert_eq!(sim.paths(), paths(&["/sim/y"]));
        assert_eq!(
            sim.rename(p("/sim/x"), p("/sim/z")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            sim.rename(p("/sim/y"), p("/sim/d")).unwrap_err().kind(),
            ErrorKind::IsADirectory
        );
        assert_eq!(
            sim.remove_file(p("/sim/d")).unwrap_err().kind(),
            ErrorKind::IsADirectory
        );
        assert_eq!(
            sim.remove_dir_all(p("/sim/y")).unwrap_err().kind(),
            ErrorKind::NotADirectory
        );
        assert_eq!(
            sim.exists(p("/sim/../sim")).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(sim.exists(p("/")).unwrap());
    }

    #[test]
    fn counters_count_ops_and_file_syncs() {
        let sim = setup();
        let (ops, syncs, dir_syncs) = (sim.op_count(), sim.sync_count(), sim.dir_sync_count());
        let f = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
        f.write_all_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        f.sync_all().unwrap();
        sim.sync_dir(p("/sim")).unwrap();
        assert_eq!(sim.op_count(), ops + 5);
        assert_eq!(sim.sync_count(), syncs + 2);
        assert_eq!(sim.dir_sync_count(), dir_syncs + 1);
    }

    #[test]
    fn write_file_plants_durable_bytes() {
        let sim = SimStorage::new();
        sim.write_file("/x/y/z", b"planted");
        assert_eq!(sim.op_count(), 0);
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/x/y/z").unwrap(), b"planted");

        let f = sim.open(p("/x/y/z"), OpenMode::ReadWrite).unwrap();
        f.write_all_at(b"P", 0).unwrap();
        sim.write_file("/x/y/z", b"corrupt"); // replaces the unsynced write too
        assert_eq!(read_all(&*f), b"corrupt");
        sim.crash(CrashMode::PowerLossDropUnsynced);
        assert_eq!(sim.read_file("/x/y/z").unwrap(), b"corrupt");
        assert!(format!("{sim:?}").starts_with("SimStorage { files: 1"));
    }

    #[test]
    fn is_usable_from_many_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SimStorage>();
        let sim = setup();
        let log = sim.open(p("/sim/log"), OpenMode::Create).unwrap();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        log.write_all_at(&[t; 4], (u64::from(t) * 100 + i) * 4)
                            .unwrap();
                        log.sync_data().unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        sim.sync_dir(p("/sim")).unwrap();
        sim.crash(CrashMode::PowerLossDropUnsynced);
        let data = sim.read_file("/sim/log").unwrap();
        assert_eq!(data.len(), 8 * 100 * 4);
        assert!(data
            .chunks(400)
            .enumerate()
            .all(|(t, c)| c.iter().all(|&b| usize::from(b) == t)));
    }
}
