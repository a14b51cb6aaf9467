//! Open handles of the simulated file system: files, memory mappings and directory locks.
//! Each holds an inode and the crash epoch it was opened in, and stops working after a crash.

use super::model::{crashed, to_usize, Pending, Shared, State};
use super::{check, LockGuard, MappedRegion, SimOpKind, StorageFile};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// What every kind of handle holds: an inode, and the life of the process it belongs to.
pub(super) struct Handle {
    pub(super) shared: Shared,
    pub(super) ino: u64,
    pub(super) epoch: u64,
    pub(super) path: PathBuf,
}

impl Handle {
    /// Runs the fault hook, then `f` if this handle has survived every crash so far.
    pub(super) fn op<R>(
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

    pub(super) fn sync(&self, kind: SimOpKind) -> io::Result<()> {
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
pub(super) struct SimFile {
    pub(super) handle: Handle,
    pub(super) writable: bool,
}

impl SimFile {
    /// Runs a modifying operation: like [`Handle::op`], but refused on a read-only handle.
    pub(super) fn write_op(
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
    #[allow(unsafe_code)] // unsafe only because the trait method is
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
pub(super) struct SimRegion {
    pub(super) handle: Handle,
    pub(super) buf: Vec<u8>,
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
pub(super) struct SimLock {
    pub(super) handle: Handle,
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
