//! [`FsStorage`]: the real file system.
// The one module that needs `unsafe` for itself: mapping files (memmap2) and reading into
// spare capacity. Each block states its argument.
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use memmap2::MmapMut;

use super::{LockGuard, MappedRegion, OpenMode, Storage, StorageFile};

/// The real file system, through `std::fs`, `pread`/`pwrite`, `fallocate` and `memmap2`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl FsStorage {
    /// A handle to the real file system.
    pub fn new() -> Arc<FsStorage> {
        Arc::new(FsStorage)
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            // A name that is not UTF-8 cannot be one of ours; skipping it is safe because annals
            // only ever looks for names it generated.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::Create => options.read(true).write(true).create(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        let file = options.open(path)?;
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            ));
        }
        Ok(Arc::new(FsFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        fs::hard_link(original, link)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // `File::try_lock` is flock(LOCK_EX | LOCK_NB): it conflicts with another process and
        // with a second open file description in this process, which is what makes a second
        // `Log::open` of the same directory fail even from the same program.
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(FsLock { _file: file }))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[derive(Debug)]
struct FsLock {
    // Closing the file releases the flock.
    _file: File,
}

impl LockGuard for FsLock {}

#[derive(Debug)]
struct FsFile {
    file: File,
}

impl StorageFile for FsFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn read_exact_at_into(&self, buf: &mut BytesMut, pos: u64, len: usize) -> io::Result<()> {
        // Straight into the spare capacity: zero-filling a megabyte only for pread to overwrite
        // it is a pass over memory that costs a few nanoseconds per record read.
        buf.reserve(len);
        let start = buf.len();
        let mut done = 0;
        while done < len {
            let spare = &mut buf.spare_capacity_mut()[..len - done];
            let spare_start = spare.as_ptr();
            // rustix hands back the part of `spare` the kernel filled, as initialised bytes.
            let filled = match rustix::io::pread(&self.file, spare, pos + done as u64) {
                Ok((filled, _)) => filled,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    buf.truncate(start);
                    return Err(e.into());
                }
            };
            let n = filled.len();
            if n == 0 {
                buf.truncate(start);
                return Err(super::short_read(len - done));
            }
            if filled.as_ptr().cast() != spare_start {
                // Never happens: rustix returns the prefix of the buffer it was given. Checked
                // because the length set below relies on it.
                buf.truncate(start);
                return Err(io::Error::other("pread reported bytes outside its buffer"));
            }
            // SAFETY: `filled` is a `&mut [u8]`, so its `n` bytes are initialised, and it starts
            // where `spare` does (checked above), so they are the first `n` bytes of `spare`:
            // the spare capacity right after `buf.len()`. `n <= spare.len()`, so the new length
            // stays within the capacity and covers only initialised bytes.
            unsafe { buf.set_len(buf.len() + n) };
            done += n;
        }
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(buf, pos)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if len <= current {
            return Ok(());
        }
        // Mode 0 allocates real blocks and extends the size, so the index files we preallocate
        // have no holes: a later write through the mapping cannot hit ENOSPC as a SIGBUS.
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            current,
            len - current,
        ) {
            Ok(()) => Ok(()),
            // File systems without fallocate (tmpfs on old kernels, some FUSE): fall back to
            // writing zeros, which also leaves no holes.
            Err(rustix::io::Errno::OPNOTSUPP) => {
                let zeros = vec![0u8; 64 * 1024];
                let mut pos = current;
                while pos < len {
                    let n = (len - pos).min(zeros.len() as u64) as usize;
                    self.file.write_all_at(&zeros[..n], pos)?;
                    pos += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    unsafe fn map_mut(&self, len: usize) -> io::Result<Box<dyn MappedRegion>> {
        if (self.len()? as usize) < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map past the end of the file",
            ));
        }
        if len == 0 {
            return Ok(Box::new(EmptyRegion));
        }
        // SAFETY: mapping a file is unsafe because the file could be truncated underneath the
        // mapping (SIGBUS) or changed by someone else while the slice is borrowed. Ruling both
        // out for as long as the region lives is exactly the contract of `map_mut`, which our
        // caller accepted by calling this `unsafe fn`; the length check above keeps the mapping
        // within the file as it is now.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&self.file)? };
        Ok(Box::new(MmapRegion { map }))
    }
}

#[derive(Debug)]
struct MmapRegion {
    map: MmapMut,
}

impl MappedRegion for MmapRegion {
    fn as_slice(&self) -> &[u8] {
        &self.map
    }

    fn write(&mut self, pos: usize, bytes: &[u8]) {
        self.map[pos..pos + bytes.len()].copy_from_slice(bytes);
    }

    fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }
}

/// memmap2 refuses zero-length maps; an empty index needs no memory at all.
#[derive(Debug)]
struct EmptyRegion;

impl MappedRegion for EmptyRegion {
    fn as_slice(&self) -> &[u8] {
        &[]
    }

    fn write(&mut self, _pos: usize, bytes: &[u8]) {
        assert!(bytes.is_empty(), "write into an empty mapping");
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimStorage;

    /// The real file system's read into spare capacity and the provided zero-filling one must
    /// behave alike: same bytes appended after what the buffer holds, same short-read error, and
    /// the buffer left as it was on failure.
    #[test]
    fn read_exact_at_into_matches_the_provided_method() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let contents: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let fs = FsStorage::new();
        let sim = SimStorage::new();
        let sim_path = Path::new("/f");
        let files: [Arc<dyn StorageFile>; 2] = [
            fs.open(&path, OpenMode::CreateNew).unwrap(),
            sim.open(sim_path, OpenMode::CreateNew).unwrap(),
        ];
        for file in &files {
            file.write_all_at(&contents, 0).unwrap();
        }
        for (pos, len) in [
            (0, 0),
            (0, 1),
            (7, 100_000),
            (250_000, 50_000),
            (0, 300_000),
        ] {
            for file in &files {
                let mut buf = BytesMut::from(&b"head"[..]);
                file.read_exact_at_into(&mut buf, pos, len).unwrap();
                assert_eq!(&buf[..4], b"head");
                assert_eq!(&buf[4..], &contents[pos as usize..pos as usize + len]);
            }
        }
        for (pos, len) in [(250_000, 50_001), (300_000, 1), (400_000, 10)] {
            for file in &files {
                let mut buf = BytesMut::from(&b"head"[..]);
                let err = file.read_exact_at_into(&mut buf, pos, len).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
                assert_eq!(&buf[..], b"head");
            }
        }
    }
}
