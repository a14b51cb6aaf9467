//! [`OpenFileBudget`]: at most `max_open_files` file descriptors for a log's files, however many
//! partitions and segments it has.
//!
//! Every file a log opens through its storage is handed out as a [`BudgetedFile`] that keeps
//! its path and, while it is in use, the wrapped storage's open file. When opening one more
//! would exceed the budget, the least recently used descriptor is closed (a CLOCK sweep over
//! the open files, so the hot path only sets a bit instead of reordering a shared list); the
//! next operation on that file opens it again by its path. A sealed segment or an idle
//! partition thus costs no descriptor until it is read or written.
//!
//! Why closing and reopening a file is safe:
//! - Data written through a descriptor stays in the page cache when the descriptor closes, and
//!   an `fdatasync` on a new descriptor of the same file makes it durable: sync works on the
//!   file, not on the descriptor. A write-back error that happens while no descriptor is open
//!   is reported to the next `fsync` on a new one (Linux reports an unseen write-back error
//!   once to any descriptor since 4.16), so closing never hides a failed write from the sync
//!   that acknowledges it.
//! - A memory mapping outlives the descriptor it was made from, so index mappings stay valid.
//! - A file is reopened by its name, so names must keep pointing at it. Renames through this
//!   storage move the name along with the file (under the same lock the reopen takes). A file
//!   that is removed, or replaced by a rename, while a handle to it lives is pinned open if its
//!   descriptor is open at that moment (it is then not evictable, exactly as an unlinked open
//!   file stays readable); if its descriptor was already closed, later operations fail with
//!   `NotFound` naming the path instead of reading whatever file the name reaches next.
//!
//! The budget counts data files only; the directory lock and the short-lived directory
//! handles of `sync_dir` come on top. It can be exceeded briefly by operations in flight (a
//! descriptor closes when its last in-flight operation ends) and by pinned files.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::{Mutex, RwLock};

use super::{with_path, LockGuard, MappedRegion, OpenMode, Storage, StorageFile};

/// The default budget: half of the usual soft limit of 1,024, leaving the rest to the
/// application and to the log's own directory handles.
pub(crate) const DEFAULT_MAX_OPEN_FILES: usize = 512;
/// Below this the budget would thrash on a single partition's segment and two indexes while
/// a compaction or backup has a few more open.
pub(crate) const MIN_MAX_OPEN_FILES: usize = 16;

/// Wraps a [`Storage`] so that the files opened through it keep at most `max_open` descriptors
/// open at once (see the module docs).
#[derive(Debug)]
pub(crate) struct OpenFileBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    inner: Arc<dyn Storage>,
    max_open: usize,
    state: Mutex<State>,
}

/// Everything about the budgeted files that changes together, under one lock: which are open,
/// their names, and the clock.
#[derive(Debug, Default)]
struct State {
    files: HashMap<u64, Entry>,
    by_path: HashMap<PathBuf, Vec<u64>>,
    /// Ids of the files with an open descriptor that may be closed, in clock order.
    clock: Vec<u64>,
    hand: usize,
    /// Descriptors open now, pinned ones included.
    open: usize,
    next_id: u64,
    warned_over_budget: bool,
}

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    slot: Arc<Slot>,
    /// Removed or replaced while open: kept open until dropped, never evicted.
    pinned: bool,
    /// Removed or replaced while closed: cannot be reopened.
    gone: bool,
}

/// What the hot path of a file touches without the budget's lock.
#[derive(Debug)]
struct Slot {
    /// The wrapped storage's open file, `None` while the budget has it closed.
    handle: RwLock<Option<Arc<dyn StorageFile>>>,
    /// Set on every use, cleared by the clock hand passing: a file used since the hand last
    /// passed gets another round.
    referenced: AtomicBool,
    /// How to open it again: never creating (the file exists, or it was removed and must not
    /// come back empty).
    reopen_mode: OpenMode,
}

impl OpenFileBudget {
    pub(crate) fn wrap(inner: Arc<dyn Storage>, max_open: usize) -> Arc<dyn Storage> {
        Arc::new(OpenFileBudget {
            shared: Arc::new(Shared {
                inner,
                max_open,
                state: Mutex::new(State::default()),
            }),
        })
    }
}

impl Shared {
    /// Closes descriptors until one more fits in the budget (or nothing more can be closed).
    /// Returns the closed files for the caller to drop after releasing the lock.
    fn make_room(&self, state: &mut State) -> Vec<Arc<dyn StorageFile>> {
        let mut closed = Vec::new();
        while state.open >= self.max_open {
            match state.evict_one() {
                Some(file) => closed.push(file),
                None => {
                    if !state.warned_over_budget {
                        state.warned_over_budget = true;
                        warn!(
                            open = state.open,
                            max_open_files = self.max_open,
                            "every open file is in use or pinned: opening one more than the \
                             open-file budget allows"
                        );
                    }
                    break;
                }
            }
        }
        closed
    }

    /// Opens `slot`'s file again after the budget closed it.
    fn reopen(&self, id: u64, slot: &Slot) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.state.lock();
        if let Some(file) = slot.handle.read().as_ref() {
            // Another thread reopened it meanwhile.
            return Ok(file.clone());
        }
        let entry = state
            .files
            .get(&id)
            .expect("a live BudgetedFile is registered");
        if entry.gone {
            return Err(with_path(
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the file was removed or replaced while the open-file budget had it closed",
                ),
                "reopen",
                &entry.path,
            ));
        }
        let path = entry.path.clone();
        let closed = self.make_room(&mut state);
        let file = self.inner.open(&path, slot.reopen_mode)?;
        *slot.handle.write() = Some(file.clone());
        state.open += 1;
        state.clock.push(id);
        drop(state);
        drop(closed);
        Ok(file)
    }

    /// Marks every file named `path` (or, with `prefix`, under it) as removed: pinned if open,
    /// gone if not.
    fn forget_name(state: &mut State, path: &Path, prefix: bool) {
        let ids: Vec<u64> = if prefix {
            state
                .by_path
                .iter()
                .filter(|(p, _)| p.starts_with(path))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect()
        } else {
            state.by_path.get(path).cloned().unwrap_or_default()
        };
        for id in ids {
            let entry = state.files.get_mut(&id).expect("indexed by path");
            if entry.slot.handle.read().is_some() {
                if !entry.pinned {
                    entry.pinned = true;
                    state.clock.retain(|&c| c != id);
                }
            } else {
                entry.gone = true;
            }
        }
    }
}

impl State {
    /// Closes the descriptor of the first file the clock hand finds unused since its last
    /// pass; `None` if every open file is pinned.
    fn evict_one(&mut self) -> Option<Arc<dyn StorageFile>> {
        // Two passes: the first may only clear reference bits.
        for _ in 0..2 * self.clock.len() {
            if self.hand >= self.clock.len() {
                self.hand = 0;
            }
            let id = self.clock[self.hand];
            let slot = &self.files[&id].slot;
            if slot.referenced.swap(false, Ordering::Relaxed) {
                self.hand += 1;
                continue;
            }
            let file = slot.handle.write().take();
            self.clock.swap_remove(self.hand);
            if let Some(file) = file {
                self.open -= 1;
                return Some(file);
            }
        }
        None
    }

    fn unindex(&mut self, id: u64, path: &Path) {
        if let Some(ids) = self.by_path.get_mut(path) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_path.remove(path);
            }
        }
    }
}

impl Storage for OpenFileBudget {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.shared.inner.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.shared.inner.list_dir(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.shared.inner.exists(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let shared = &self.shared;
        let mut state = shared.state.lock();
        let closed = shared.make_room(&mut state);
        let file = shared.inner.open(path, mode)?;
        let id = state.next_id;
        state.next_id += 1;
        let slot = Arc::new(Slot {
            handle: RwLock::new(Some(file)),
            referenced: AtomicBool::new(true),
            reopen_mode: if mode == OpenMode::Read {
                OpenMode::Read
            } else {
                OpenMode::ReadWrite
            },
        });
        state.files.insert(
            id,
            Entry {
                path: path.to_path_buf(),
                slot: slot.clone(),
                pinned: false,
                gone: false,
            },
        );
        state
            .by_path
            .entry(path.to_path_buf())
            .or_default()
            .push(id);
        state.clock.push(id);
        state.open += 1;
        drop(state);
        drop(closed);
        Ok(Arc::new(BudgetedFile {
            id,
            slot,
            shared: shared.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // Under the lock throughout, so no reopen looks for a file between its two names.
        let mut state = self.shared.state.lock();
        Shared::forget_name(&mut state, to, false);
        self.shared.inner.rename(from, to)?;
        if let Some(ids) = state.by_path.remove(from) {
            for &id in &ids {
                state.files.get_mut(&id).expect("indexed by path").path = to.to_path_buf();
            }
            state
                .by_path
                .entry(to.to_path_buf())
                .or_default()
                .extend(ids);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        Shared::forget_name(&mut self.shared.state.lock(), path, false);
        self.shared.inner.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        Shared::forget_name(&mut self.shared.state.lock(), path, true);
        self.shared.inner.remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.shared.inner.sync_dir(path)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.shared.inner.hard_link(original, link)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.shared.inner.try_lock(path)
    }
}

/// A file whose descriptor the budget may close between operations.
#[derive(Debug)]
struct BudgetedFile {
    id: u64,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl BudgetedFile {
    /// The open file, reopened if the budget closed it.
    fn file(&self) -> io::Result<Arc<dyn StorageFile>> {
        self.slot.referenced.store(true, Ordering::Relaxed);
        if let Some(file) = self.slot.handle.read().as_ref() {
            return Ok(file.clone());
        }
        self.shared.reopen(self.id, &self.slot)
    }
}

impl Drop for BudgetedFile {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        let Some(entry) = state.files.remove(&self.id) else {
            return;
        };
        state.unindex(self.id, &entry.path);
        let file = self.slot.handle.write().take();
        if file.is_some() {
            state.open -= 1;
            if !entry.pinned {
                if let Some(at) = state.clock.iter().position(|&c| c == self.id) {
                    state.clock.swap_remove(at);
                }
            }
        }
        drop(state);
        drop(file);
    }
}

impl StorageFile for BudgetedFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.file()?.read_at(buf, pos)
    }

    fn read_exact_at_into(&self, buf: &mut BytesMut, pos: u64, len: usize) -> io::Result<()> {
        self.file()?.read_exact_at_into(buf, pos, len)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file()?.write_all_at(buf, pos)
    }

    fn len(&self) -> io::Result<u64> {
        self.file()?.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file()?.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.file()?.allocate(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file()?.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file()?.sync_all()
    }

    #[allow(unsafe_code)] // forwards the mmap contract to the wrapped file
    unsafe fn map_mut(&self, len: usize) -> io::Result<Box<dyn MappedRegion>> {
        // SAFETY: forwarded unchanged: our caller's guarantee for this file is the guarantee
        // the wrapped file needs. The mapping does not depend on the descriptor staying open
        // (a mapping keeps its file referenced by itself), so the budget closing it later
        // leaves the region valid.
        unsafe { self.file()?.map_mut(len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::IoCounters;
    use crate::storage::{MeteredStorage, SimStorage};

    /// A budget of `max` over a simulated disk, with the descriptors it holds counted.
    fn budget(max: usize) -> (Arc<dyn Storage>, Arc<IoCounters>) {
        let counters = Arc::new(IoCounters::default());
        let metered = MeteredStorage::wrap(SimStorage::new(), counters.clone());
        (OpenFileBudget::wrap(metered, max), counters)
    }

    fn open_now(counters: &IoCounters) -> u64 {
        counters.files().open_files
    }

    fn read_all(file: &dyn StorageFile) -> Vec<u8> {
        let mut buf = vec![0; file.len().unwrap() as usize];
        crate::storage::read_exact_at(file, &mut buf, 0).unwrap();
        buf
    }

    /// However many files are open, at most `max` descriptors are, and every file still reads
    /// and writes what it should after the budget closed and reopened it.
    #[test]
    fn many_files_share_a_few_descriptors() {
        let (storage, counters) = budget(4);
        let files: Vec<_> = (0..20)
            .map(|i| {
                let f = storage
                    .open(Path::new(&format!("/f{i}")), OpenMode::CreateNew)
                    .unwrap();
                f.write_all_at(format!("file {i}").as_bytes(), 0).unwrap();
                assert!(open_now(&counters) <= 4);
                f
            })
            .collect();
        for round in 0..3 {
            for (i, f) in files.iter().enumerate() {
                assert_eq!(
                    read_all(&**f),
                    format!("file {i}").as_bytes(),
                    "round {round}"
                );
                assert!(open_now(&counters) <= 4);
            }
        }
        assert!(counters.files().files_opened > 20, "files were reopened");
        drop(files);
        assert_eq!(open_now(&counters), 0);
    }

    /// A file reopened after a rename is found under its new name.
    #[test]
    fn a_rename_moves_the_name_the_file_is_reopened_by() {
        let (storage, _) = budget(MIN_MAX_OPEN_FILES);
        let moved = storage.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
        moved.write_all_at(b"payload", 0).unwrap();
        let others: Vec<_> = (0..MIN_MAX_OPEN_FILES)
            .map(|i| {
                storage
                    .open(Path::new(&format!("/o{i}")), OpenMode::CreateNew)
                    .unwrap()
            })
            .collect();
        storage.rename(Path::new("/a"), Path::new("/b")).unwrap();
        assert_eq!(read_all(&*moved), b"payload");
        drop(others);
    }

    /// A file removed while its descriptor is open stays readable (pinned, as an unlinked open
    /// file is); one removed while closed fails with `NotFound` naming it, rather than reading
    /// whatever the name reaches next.
    #[test]
    fn removed_files_stay_readable_if_open_and_fail_clearly_if_not() {
        let (storage, counters) = budget(MIN_MAX_OPEN_FILES);
        let pinned = storage
            .open(Path::new("/pinned"), OpenMode::CreateNew)
            .unwrap();
        pinned.write_all_at(b"still here", 0).unwrap();
        storage.remove_file(Path::new("/pinned")).unwrap();
        let closed = storage
            .open(Path::new("/closed"), OpenMode::CreateNew)
            .unwrap();
        closed.write_all_at(b"old", 0).unwrap();
        let others: Vec<_> = (0..2 * MIN_MAX_OPEN_FILES)
            .map(|i| {
                storage
                    .open(Path::new(&format!("/o{i}")), OpenMode::CreateNew)
                    .unwrap()
            })
            .collect();
        // `/closed` has been evicted by now; replace it by a rename.
        let new = storage
            .open(Path::new("/new"), OpenMode::CreateNew)
            .unwrap();
        new.write_all_at(b"new", 0).unwrap();
        storage
            .rename(Path::new("/new"), Path::new("/closed"))
            .unwrap();
        assert_eq!(read_all(&*pinned), b"still here", "pinned, never evicted");
        let err = closed.len().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/closed"), "{err}");
        assert_eq!(
            read_all(&*new),
            b"new",
            "the renamed file follows its new name"
        );
        drop((others, pinned, closed, new));
        assert_eq!(open_now(&counters), 0);
    }

    /// Files under a removed directory behave like removed files.
    #[test]
    fn removing_a_directory_forgets_the_names_under_it() {
        let (storage, _) = budget(MIN_MAX_OPEN_FILES);
        storage.create_dir_all(Path::new("/d")).unwrap();
        let inside = storage
            .open(Path::new("/d/f"), OpenMode::CreateNew)
            .unwrap();
        let others: Vec<_> = (0..2 * MIN_MAX_OPEN_FILES)
            .map(|i| {
                storage
                    .open(Path::new(&format!("/o{i}")), OpenMode::CreateNew)
                    .unwrap()
            })
            .collect();
        storage.remove_dir_all(Path::new("/d")).unwrap();
        storage.create_dir_all(Path::new("/d")).unwrap();
        storage
            .open(Path::new("/d/f"), OpenMode::CreateNew)
            .unwrap();
        assert_eq!(inside.len().unwrap_err().kind(), io::ErrorKind::NotFound);
        drop(others);
    }

    /// Threads using more files than the budget at once all see their own data.
    #[test]
    fn concurrent_users_of_more_files_than_the_budget() {
        let (storage, counters) = budget(MIN_MAX_OPEN_FILES);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let storage = storage.clone();
                std::thread::spawn(move || {
                    let files: Vec<_> = (0..MIN_MAX_OPEN_FILES)
                        .map(|i| {
                            storage
                                .open(Path::new(&format!("/t{t}-{i}")), OpenMode::CreateNew)
                                .unwrap()
                        })
                        .collect();
                    for pos in 0..50u64 {
                        for (i, f) in files.iter().enumerate() {
                            f.write_all_at(&[(t * 31 + i) as u8], pos).unwrap();
                        }
                    }
                    for (i, f) in files.iter().enumerate() {
                        assert_eq!(read_all(&**f), vec![(t * 31 + i) as u8; 50]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(open_now(&counters), 0);
    }
}
