//! The per-stream index of one partition: which offsets hold a stream's events.
//!
//! Derived data, rebuilt from the log when missing and never ahead of it: a memtable of the
//! newest entries plus a chain of immutable [tables](table) covering contiguous offset ranges.
//! A table is written only after the partition is fsynced up to its end, so after a power loss
//! every table covers data that survived; at open, tables past the partition's high watermark,
//! after a gap, or of another hasher are dropped, and the rest of the log is replayed
//! ("caught up") into the memtable. Entries may point at records that compaction or retention
//! removed since, or (on a hash collision) at another stream's record: readers verify each
//! record's key, so an entry is a hint, never the truth.
//!
//! Memory: a memtable entry costs about 16 bytes plus about 56 bytes per distinct stream hash
//! in it, and the memtable is flushed to a table at `index_memtable_entries` entries. A table
//! keeps 20 bytes per 128 entries in memory (its fences); on disk an event costs 24 bytes plus
//! those fences. Tables merge four of a level into one of the next, so a partition holds at
//! most three tables a level (a few dozen in all).

pub(crate) mod table;

use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::format::StoredRecord;
use crate::partition::Partition;
use crate::storage::Storage;
pub(crate) use table::META_VERSION;
use table::{table_file_name, write_table, Entry, Table, TableInfo, TABLE_SUFFIX};

/// Tables of one level merged into one of the next.
const MERGE_FAN_IN: usize = 4;
/// Bytes a catch-up read asks for at a time.
const CATCH_UP_READ_BYTES: usize = 1 << 20;

/// How a record of the indexed topic names its stream and version; `None` for records the
/// index skips (tombstones, foreign records).
pub(crate) type RecordKey = fn(&StoredRecord) -> Option<(&str, u64)>;

/// The stream hash: stable across processes and versions, since tables persist it.
pub(crate) type StreamHasher = Arc<dyn Fn(&str) -> u64 + Send + Sync>;

#[derive(Debug)]
struct Memtable {
    entries: HashMap<u64, Vec<(u64, u64)>>,
    len: usize,
    /// The first offset it covers: the end of the newest table.
    start: u64,
}

impl Memtable {
    fn starting_at(start: u64) -> Memtable {
        Memtable {
            entries: HashMap::new(),
            len: 0,
            start,
        }
    }

    fn push(&mut self, hash: u64, version: u64, offset: u64) {
        self.entries
            .entry(hash)
            .or_default()
            .push((version, offset));
        self.len += 1;
    }
}

/// One partition's stream index. Callers hold it behind the store's per-partition mutex.
pub(crate) struct StreamIndex {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    fingerprint: u64,
    memtable_limit: usize,
    key_of: RecordKey,
    hasher: StreamHasher,
    tables: Vec<Table>,
    mem: Memtable,
    /// The next offset to index: every record below it is in a table or the memtable.
    end: u64,
}

impl std::fmt::Debug for StreamIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIndex")
            .field("dir", &self.dir)
            .field("tables", &self.tables.len())
            .field("memtable", &self.mem.len)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

pub(crate) struct IndexParams {
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub hasher: StreamHasher,
    pub fingerprint: u64,
    pub memtable_limit: usize,
    pub key_of: RecordKey,
}

impl StreamIndex {
    /// Opens (or creates) the index in `params.dir` for `partition`, keeping the longest valid
    /// chain of tables and dropping the rest. Does not catch up: call
    /// [`catch_up`](Self::catch_up).
    pub(crate) fn open(params: IndexParams, partition: &Partition) -> Result<StreamIndex> {
        let IndexParams {
            storage,
            dir,
            hasher,
            fingerprint,
            memtable_limit,
            key_of,
        } = params;
        storage.create_dir_all(&dir)?;
        let log_start = partition.log_start_offset();
        let hw = partition.high_watermark();
        let mut found = Vec::new();
        let mut removed = false;
        for name in storage.list_dir(&dir)? {
            let path = dir.join(&name);
            if name.ends_with(".tmp") {
                storage.remove_file(&path)?;
                removed = true;
            } else if name.ends_with(TABLE_SUFFIX) {
                match Table::open(&*storage, &path) {
                    Ok(t) => found.push(t),
                    // A damaged table is derived data: drop it, the log rebuilds what it held.
                    Err(crate::Error::Corrupt { .. }) => {
                        storage.remove_file(&path)?;
                        removed = true;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        found.sort_by_key(|t| (t.info.start, std::cmp::Reverse(t.info.end)));
        let mut chain: Vec<Table> = Vec::new();
        let mut dropped = Vec::new();
        for t in found {
            let fits = match chain.last() {
                None => t.info.start <= log_start,
                Some(last) => t.info.start == last.info.end,
            };
            let redundant = chain.last().is_some_and(|last| t.info.end <= last.info.end);
            let valid = t.info.fingerprint == fingerprint && t.info.end <= hw;
            if fits && valid && !redundant {
                chain.push(t);
            } else {
                dropped.push(t.path.clone());
            }
        }
        // A chain broken by a dropped table continues only where it still fits; the sort put
        // later pieces after it, and `fits` refused them, so `chain` is contiguous here.
        for path in &dropped {
            storage.remove_file(path)?;
            removed = true;
        }
        if removed {
            storage.sync_dir(&dir)?;
        }
        let end = chain.last().map_or(log_start, |t| t.info.end);
        Ok(StreamIndex {
            dir,
            storage,
            fingerprint,
            memtable_limit,
            key_of,
            hasher,
            tables: chain,
            mem: Memtable::starting_at(end),
            end,
        })
    }

    pub(crate) fn hash(&self, stream: &str) -> u64 {
        (self.hasher)(stream)
    }

    /// The next offset to index.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Records that `stream`'s `version` is at `offset`, which must be at or past
    /// [`end`](Self::end); moves the end past it.
    pub(crate) fn insert(&mut self, stream: &str, version: u64, offset: u64) {
        debug_assert!(offset >= self.end);
        let hash = self.hash(stream);
        self.mem.push(hash, version, offset);
        self.end = offset + 1;
    }

    /// Indexes every committed record from [`end`](Self::end) up to the partition's last
    /// stable offset, flushing the memtable as it fills. Returns how many records it read.
    pub(crate) fn catch_up(&mut self, partition: &Partition) -> Result<u64> {
        let mut read = 0;
        let mut buf = Vec::new();
        loop {
            let start = partition.log_start_offset();
            if self.end < start {
                // Retention removed what the index had not seen: nothing left to index there.
                self.end = start;
            }
            if self.end >= partition.last_stable_offset() {
                return Ok(read);
            }
            buf.clear();
            let next = partition.read_isolated_into(
                self.end,
                CATCH_UP_READ_BYTES,
                crate::IsolationLevel::ReadCommitted,
                &mut buf,
            )?;
            for r in &buf {
                read += 1;
                if let Some((stream, version)) = (self.key_of)(r) {
                    if r.offset >= self.end {
                        let hash = (self.hasher)(stream);
                        self.mem.push(hash, version, r.offset);
                    }
                }
            }
            if next <= self.end {
                return Ok(read);
            }
            self.end = next;
            if self.mem.len >= self.memtable_limit {
                self.flush(partition)?;
            }
        }
    }

    /// Every entry of `hash` with a version in `lo..=hi`, by version then offset.
    pub(crate) fn scan(&self, hash: u64, lo: u64, hi: u64) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for t in &self.tables {
            t.scan(hash, lo, hi, &mut out)?;
        }
        if let Some(mem) = self.mem.entries.get(&hash) {
            out.extend(mem.iter().filter(|(v, _)| (lo..=hi).contains(v)).map(
                |&(version, offset)| Entry {
                    hash,
                    version,
                    offset,
                },
            ));
        }
        out.sort_by_key(|e| (e.version, e.offset));
        Ok(out)
    }

    /// The newest entries of `hash`, newest first by (version, offset), and a bound on what
    /// they left out: `None` if they are all the entries there are, else a version at or above
    /// every left-out entry's (an event entry found at or above the bound is the newest of its
    /// stream; below it, call [`scan`](Self::scan)). A bound of [`META_VERSION`] means
    /// metadata entries were left out too, and since they all share that version, one found
    /// is then not known to be its stream's newest: scan them.
    pub(crate) fn latest(&self, hash: u64) -> Result<(Vec<Entry>, Option<u64>)> {
        let mut out = Vec::new();
        let mut bound: Option<u64> = None;
        for t in &self.tables {
            if let Some(floor) = t.last_run(hash, &mut out)? {
                bound = Some(bound.map_or(floor, |b| b.max(floor)));
            }
        }
        if let Some(mem) = self.mem.entries.get(&hash) {
            out.extend(mem.iter().map(|&(version, offset)| Entry {
                hash,
                version,
                offset,
            }));
        }
        out.sort_by_key(|e| std::cmp::Reverse((e.version, e.offset)));
        Ok((out, bound))
    }

    /// After `err`, if it reports one of this index's tables damaged: drops that table and
    /// every newer one, so the next [`catch_up`](Self::catch_up) rebuilds them from the log.
    /// Returns whether it did.
    pub(crate) fn repair(&mut self, err: &crate::Error, partition: &Partition) -> Result<bool> {
        let crate::Error::Corrupt { segment, .. } = err else {
            return Ok(false);
        };
        let Some(i) = self.tables.iter().position(|t| &t.path == segment) else {
            return Ok(false);
        };
        self.drop_tables_from(i, partition)?;
        Ok(true)
    }

    /// Whether the memtable is due to be written to a table.
    pub(crate) fn is_full(&self) -> bool {
        self.mem.len >= self.memtable_limit
    }

    /// Writes the memtable as a table once the partition is durable up to the index's end,
    /// then merges tables as the levels fill. A no-op when nothing was indexed since the last
    /// flush.
    pub(crate) fn flush(&mut self, partition: &Partition) -> Result<()> {
        if self.end == self.mem.start {
            return Ok(());
        }
        // The table must never claim data a power loss could take back.
        partition.sync()?;
        let mut entries: Vec<Entry> = self
            .mem
            .entries
            .iter()
            .flat_map(|(&hash, v)| {
                v.iter().map(move |&(version, offset)| Entry {
                    hash,
                    version,
                    offset,
                })
            })
            .collect();
        entries.sort_unstable();
        let info = TableInfo {
            start: self.mem.start,
            end: self.end,
            count: 0,
            fingerprint: self.fingerprint,
            level: 0,
        };
        let path = self.dir.join(table_file_name(info.start, info.end));
        write_table(&*self.storage, &path, info, entries.into_iter().map(Ok))?;
        self.storage.sync_dir(&self.dir)?;
        self.tables.push(Table::open(&*self.storage, &path)?);
        self.mem = Memtable::starting_at(self.end);
        self.merge(partition.log_start_offset())
    }

    /// Merges the newest `MERGE_FAN_IN` tables while they share a level, dropping entries
    /// below the log start. Crash-safe: the merged table is complete and fsynced before its
    /// inputs are removed, and an open prefers it over them.
    fn merge(&mut self, log_start: u64) -> Result<()> {
        loop {
            let n = self.tables.len();
            if n < MERGE_FAN_IN {
                return Ok(());
            }
            let run = &self.tables[n - MERGE_FAN_IN..];
            let level = run[0].info.level;
            if run.iter().any(|t| t.info.level != level) {
                return Ok(());
            }
            let info = TableInfo {
                start: run[0].info.start,
                end: run[MERGE_FAN_IN - 1].info.end,
                count: 0,
                fingerprint: self.fingerprint,
                level: level + 1,
            };
            let path = self.dir.join(table_file_name(info.start, info.end));
            write_table(&*self.storage, &path, info, Merge::new(run, log_start))?;
            self.storage.sync_dir(&self.dir)?;
            let table = Table::open(&*self.storage, &path)?;
            let inputs: Vec<PathBuf> = self
                .tables
                .drain(n - MERGE_FAN_IN..)
                .map(|t| t.path)
                .collect();
            self.tables.push(table);
            for p in inputs {
                self.storage.remove_file(&p)?;
            }
            self.storage.sync_dir(&self.dir)?;
        }
    }

    /// Drops every table and the memtable: the next catch-up rebuilds from the log start.
    pub(crate) fn clear(&mut self, partition: &Partition) -> Result<()> {
        self.drop_tables_from(0, partition)
    }

    /// Drops table `i` and every newer one, and the memtable: the index ends where the tables
    /// left end (the log start if none), and the next catch-up replays the rest.
    fn drop_tables_from(&mut self, i: usize, partition: &Partition) -> Result<()> {
        for t in self.tables.drain(i..) {
            self.storage.remove_file(&t.path)?;
        }
        self.storage.sync_dir(&self.dir)?;
        let start = self
            .tables
            .last()
            .map_or(partition.log_start_offset(), |t| t.info.end);
        self.mem = Memtable::starting_at(start);
        self.end = start;
        Ok(())
    }

    pub(crate) fn table_count(&self) -> usize {
        self.tables.len()
    }
}

/// The entries of a run of tables in key order, without those below `log_start`: reads one
/// block per table at a time, so a merge's memory does not grow with the tables.
struct Merge<'a> {
    iters: Vec<table::TableEntries<'a>>,
    heap: BinaryHeap<std::cmp::Reverse<(Entry, usize)>>,
    log_start: u64,
    primed: bool,
}

impl<'a> Merge<'a> {
    fn new(run: &'a [Table], log_start: u64) -> Merge<'a> {
        Merge {
            iters: run.iter().map(Table::entries).collect(),
            heap: BinaryHeap::new(),
            log_start,
            primed: false,
        }
    }

    fn pull(&mut self, i: usize) -> Result<()> {
        if let Some(e) = self.iters[i].next() {
            self.heap.push(std::cmp::Reverse((e?, i)));
        }
        Ok(())
    }
}

impl Iterator for Merge<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.iters.len() {
                if let Err(e) = self.pull(i) {
                    return Some(Err(e));
                }
            }
        }
        loop {
            let std::cmp::Reverse((e, i)) = self.heap.pop()?;
            if let Err(err) = self.pull(i) {
                return Some(Err(err));
            }
            if e.offset >= self.log_start {
                return Some(Ok(e));
            }
        }
    }
}
