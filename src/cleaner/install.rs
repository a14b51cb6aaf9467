//! Swapping compacted segments in: steps 2 to 7 of the protocol in `partition/swap.rs`, for
//! several staged groups at once so that they share one round of fsyncs.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::HEADER_LEN;
use crate::partition::swap::{swap_file_name, SWAP_SUFFIX};
use crate::partition::{seal_record, PartitionInner};
use crate::segment::index::TIME_ENTRY;
use crate::segment::{file_name, Segment, SegmentLimits, SegmentStats};

/// A group's new segment, written and fsynced as `<base>.log.cleaned`, not yet committed.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The old segments it replaces, adjacent, oldest first.
    pub segments: Vec<Arc<Segment>>,
    /// Base offset of the first segment after the group.
    pub end: u64,
    pub cleaned: PathBuf,
    pub stats: SegmentStats,
}

impl Staged {
    fn base(&self) -> u64 {
        self.segments[0].base_offset
    }
}

impl PartitionInner {
    /// Commits and installs `groups`. Called with the partition's bounds lock held (so no
    /// other maintenance changes the segment list meanwhile); takes the writer lock twice,
    /// briefly.
    pub(crate) fn commit(&self, groups: Vec<Staged>) -> Result<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let result = self.commit_steps(groups);
        if let Err(e) = &result {
            // Past its first rename a swap may be committed on disk while memory still lists
            // the old segments (whose files may be renamed away already). Reads of the old
            // segments stay correct through their open handles, but nothing may write (or
            // compact) from this stale picture: refuse writes until a reopen, which completes
            // the swap. A partition closed meanwhile is not a storage failure.
            if !matches!(e, Error::Closed) {
                let cause = format!("a compaction swap failed part way: {e}");
                self.poison("compaction swap", &self.dir, cause);
            }
        }
        result
    }

    fn commit_steps(&self, groups: Vec<Staged>) -> Result<()> {
        let storage = &self.storage;
        let dir = &self.dir;
        let swap = |g: &Staged| dir.join(swap_file_name(g.base(), g.end, SWAP_SUFFIX));
        // 2. The commit point: from here on a reopen installs the new segments.
        for g in &groups {
            storage.rename(&g.cleaned, &swap(g))?;
        }
        storage.sync_dir(dir)?;
        // 3. The checkpoint stops vouching for the old segments.
        {
            let mut w = self.writer.lock();
            self.check_open()?;
            w.sealed.retain(|s| {
                !groups
                    .iter()
                    .any(|g| (g.base()..g.end).contains(&s.base_offset))
            });
            let recovery_point = w.recovery_point;
            self.write_checkpoint(&mut w, recovery_point)?;
        }
        // 4. Old files out of the way; readers holding them keep reading.
        for s in groups.iter().flat_map(|g| &g.segments) {
            s.retire(storage, dir)?;
        }
        storage.sync_dir(dir)?;
        // 5. Each new file takes its group's first name.
        for g in &groups {
            storage.rename(&swap(g), &dir.join(file_name(g.base(), "log")))?;
        }
        storage.sync_dir(dir)?;
        // 6. Indexes built from the new files.
        let limits = self.limits();
        let fresh = groups
            .iter()
            .map(|g| {
                // Rebuilding grows the index files as it writes entries, then trims them: cap
                // them at what this segment can need (a compacted segment indexes every batch,
                // see `Segment::rebuild_indexes`), not at a whole active segment's size.
                let per_entry = HEADER_LEN as u64;
                let entries = g.stats.size / per_entry + 2;
                let limits = SegmentLimits {
                    index_max_bytes: limits
                        .index_max_bytes
                        .min((entries * TIME_ENTRY as u64).max(1024) as usize),
                    ..limits
                };
                let s = Segment::open(
                    &**storage,
                    dir,
                    g.base(),
                    &limits,
                    g.stats,
                    false,
                    None,
                    true,
                );
                s.map(Arc::new)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        // The markers were copied whole, so each new segment's aborted transactions are those
        // of the segments it replaces; its index is written before the checkpoint vouches for
        // it (until then recovery rebuilds it: see `partition/replay.rs`).
        let aborted = self.aborted.read().clone();
        for (g, segment) in groups.iter().zip(&fresh) {
            let entries: Vec<_> = aborted
                .iter()
                .filter(|a| (g.base()..g.end).contains(&a.last_offset))
                .copied()
                .collect();
            segment.txn_index.replace(&**storage, &entries)?;
        }
        // 7. Readers see the new segments from their next snapshot on.
        let mut w = self.writer.lock();
        self.check_open()?;
        {
            let mut list = self.segments.write();
            let mut next: Vec<Arc<Segment>> = Vec::with_capacity(list.len());
            // Every old segment must still be there (only maintenance, which the caller's lock
            // serialises, removes segments); anything else is a bug, reported, not papered over.
            let mut found = 0;
            for s in list.iter() {
                match groups.iter().position(|g| Arc::ptr_eq(&g.segments[0], s)) {
                    Some(i) => {
                        found += 1;
                        next.push(fresh[i].clone());
                    }
                    None if groups
                        .iter()
                        .any(|g| g.segments.iter().any(|o| Arc::ptr_eq(o, s))) =>
                    {
                        found += 1;
                    }
                    None => next.push(s.clone()),
                }
            }
            let expected: usize = groups.iter().map(|g| g.segments.len()).sum();
            if found != expected {
                return Err(Error::io(
                    "install compacted segments in",
                    Some(dir.as_path()),
                    std::io::Error::other("compacted segments vanished from the segment list"),
                ));
            }
            *list = Arc::new(next);
        }
        for segment in &fresh {
            let record = seal_record(&**storage, segment)?;
            let at = w
                .sealed
                .partition_point(|s| s.base_offset < record.base_offset);
            w.sealed.insert(at, record);
        }
        let recovery_point = w.recovery_point;
        self.write_checkpoint(&mut w, recovery_point)
    }
}
