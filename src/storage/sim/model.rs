//! The simulated file system itself: inodes holding what reads see and what is durable, the
//! directory tree, and what a crash keeps of them. Everything here runs under `State`'s lock;
//! the handles in `file.rs` and `SimStorage` in `mod.rs` are the ways in.

use super::{CrashMode, OpenMode, SimOp};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub(super) type FaultHook = dyn Fn(&SimOp) -> Option<io::Error> + Send + Sync;

/// Files are whole `Vec`s in memory: a buggy huge offset should fail, not abort the test run.
pub(super) const MAX_FILE_LEN: u64 = 1 << 32;
pub(super) const ROOT: u64 = 0;

/// An operation applied to a file since its last sync, kept so a torn crash can replay a prefix.
pub(super) enum Pending {
    Write { pos: usize, bytes: Vec<u8> },
    SetLen(usize),
}

impl Pending {
    pub(super) fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Pending::Write { pos, bytes } => write_into(data, *pos, bytes),
            Pending::SetLen(len) => data.resize(*len, 0),
        }
    }
}

pub(super) fn write_into(data: &mut Vec<u8>, pos: usize, bytes: &[u8]) {
    if bytes.is_empty() {
        return; // a zero-length write never extends a file
    }
    let end = pos + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[pos..end].copy_from_slice(bytes);
}

pub(super) struct FileNode {
    pub(super) data: Vec<u8>,
    pub(super) durable: Vec<u8>,
    pub(super) pending: Vec<Pending>,
    /// Bytes that own blocks, for the disk-full model: writes and `allocate` grow it, growing
    /// `set_len` does not (it makes a hole), shrinking frees.
    pub(super) backed: u64,
    /// Live handles, mappings and lock guards; keeps an unlinked inode alive, as on POSIX.
    pub(super) open: usize,
}

impl FileNode {
    pub(super) fn new(bytes: Vec<u8>) -> FileNode {
        let backed = bytes.len() as u64;
        FileNode {
            durable: bytes.clone(),
            data: bytes,
            pending: Vec::new(),
            backed,
            open: 0,
        }
    }

    pub(super) fn push(&mut self, op: Pending) {
        op.apply(&mut self.data);
        self.pending.push(op);
    }

    pub(super) fn sync(&mut self) {
        // Replaying onto `durable` costs the bytes written, not the file size (which matters
        // for large preallocated files synced often).
        for op in self.pending.drain(..) {
            op.apply(&mut self.durable);
        }
        debug_assert!(self.durable == self.data);
    }
}

#[derive(Default)]
pub(super) struct DirNode {
    pub(super) entries: BTreeMap<String, u64>,
    pub(super) durable: BTreeMap<String, u64>,
}

pub(super) enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Default)]
pub(super) struct State {
    /// A `BTreeMap` so a torn crash visits inodes in a fixed order, reproducible by seed.
    pub(super) nodes: BTreeMap<u64, Node>,
    pub(super) next_ino: u64,
    /// Bumped by every crash; a handle from an older epoch is dead.
    pub(super) epoch: u64,
    pub(super) locks: HashSet<u64>,
    pub(super) hook: Option<Arc<FaultHook>>,
    pub(super) capacity: Option<u64>,
    pub(super) ops: u64,
    pub(super) syncs: u64,
    pub(super) dir_syncs: u64,
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn crashed() -> io::Error {
    io::Error::other("SimStorage: handle was opened before a simulated crash and is dead")
}

pub(super) fn to_usize(n: u64) -> io::Result<usize> {
    match n <= MAX_FILE_LEN {
        true => Ok(n as usize),
        false => Err(fail!(
            FileTooLarge,
            "files are limited to {MAX_FILE_LEN} bytes"
        )),
    }
}

/// The names along `path`, root first.
pub(super) fn split(path: &Path) -> io::Result<Vec<&str>> {
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
    pub(super) fn file(&mut self, ino: u64) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(io::Error::other(
                "SimStorage: inode of a live handle vanished",
            )),
        }
    }

    pub(super) fn dir(&mut self, ino: u64) -> &mut DirNode {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => d,
            _ => unreachable!("callers only pass inodes they resolved as directories"),
        }
    }

    pub(super) fn is_dir(&self, ino: u64) -> bool {
        matches!(self.nodes.get(&ino), Some(Node::Dir(_)))
    }

    pub(super) fn add(&mut self, node: Node) -> u64 {
        self.next_ino += 1;
        self.nodes.insert(self.next_ino, node);
        self.next_ino
    }

    /// The current entry `name` of directory `dir`.
    pub(super) fn entry(&self, dir: u64, name: &str) -> Option<u64> {
        match self.nodes.get(&dir) {
            Some(Node::Dir(d)) => d.entries.get(name).copied(),
            _ => None,
        }
    }

    /// Resolves `names` in the current (or the durable) namespace.
    pub(super) fn lookup(&self, names: &[&str], durable: bool) -> Option<u64> {
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
    pub(super) fn dir_at(&self, names: &[&str], path: &Path) -> io::Result<u64> {
        match self.lookup(names, false) {
            Some(ino) if self.is_dir(ino) => Ok(ino),
            Some(_) => Err(fail!(NotADirectory, "{path:?} or a parent of it is a file")),
            None => Err(fail!(NotFound, "no directory {path:?}")),
        }
    }

    /// The directory holding the last name of `names` (`path`), and that name.
    pub(super) fn parent<'a>(&self, names: &[&'a str], path: &Path) -> io::Result<(u64, &'a str)> {
        let (name, dirs) = names
            .split_last()
            .ok_or_else(|| fail!(InvalidInput, "{path:?} is the root"))?;
        Ok((self.dir_at(dirs, path)?, name))
    }

    /// `mkdir -p`; the new entries are durable too if `durable` (for planting files).
    pub(super) fn mkdirs(&mut self, names: &[&str], path: &Path, durable: bool) -> io::Result<u64> {
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
    pub(super) fn open_ino(&mut self, path: &Path, mode: OpenMode) -> io::Result<u64> {
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
    pub(super) fn reachable(&self, with_durable: bool) -> HashSet<u64> {
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
    pub(super) fn gc(&mut self) {
        let live = self.reachable(true);
        self.nodes
            .retain(|ino, n| live.contains(ino) || matches!(n, Node::File(f) if f.open > 0));
    }

    /// Bytes of files linked in the current namespace or still open (an unlinked but open file
    /// keeps its blocks, as on POSIX).
    pub(super) fn used(&self) -> u64 {
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
    pub(super) fn reserve(&mut self, ino: u64, backed: u64) -> io::Result<()> {
        let cur = self.file(ino)?.backed;
        if let Some(cap) = self.capacity {
            if backed > cur && self.used() + (backed - cur) > cap {
                return Err(fail!(StorageFull, "no space left ({cap}-byte capacity)"));
            }
        }
        self.file(ino)?.backed = backed.max(cur);
        Ok(())
    }

    pub(super) fn release(&mut self, ino: u64) {
        if let Ok(f) = self.file(ino) {
            f.open -= 1;
            if f.open == 0 {
                self.gc();
            }
        }
    }

    /// Paths of the files in the current or the durable namespace, sorted.
    pub(super) fn files(&self, durable: bool) -> Vec<PathBuf> {
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

    pub(super) fn crash(&mut self, mode: CrashMode) {
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
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    /// A number in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}
