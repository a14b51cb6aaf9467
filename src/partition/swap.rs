//! Replacing sealed segments: the file names of the compaction swap and what recovery does with
//! every state an interrupted swap or deletion can leave behind.
//!
//! A compaction pass rewrites a group of adjacent sealed segments `[base, end)` (`end` is the
//! base of the first segment after the group) into one new file. The protocol, in order (steps
//! 2 to 7 are done for several groups at once, sharing their fsyncs):
//!
//! 1. write `<base>.log.cleaned` (20-digit offset), fsync it;
//! 2. rename it to `<base>-<end>.swap`, fsync the directory — **the commit point**;
//! 3. write the checkpoint without the old segments;
//! 4. rename each old segment's files to `<name>.deleted`, fsync the directory;
//! 5. rename `<base>-<end>.swap` to `<base>.log`, fsync the directory;
//! 6. rebuild the new segment's indexes, install it, write the checkpoint listing it;
//! 7. unlink each `.deleted` file once no reader holds its segment.
//!
//! Recovery ([`finish_interrupted`]) before a partition is opened:
//! - `*.log.cleaned`: the pass did not commit — remove it (the old segments are all there);
//! - `<base>-<end>.swap`: the pass committed — remove every segment file with a base offset in
//!   `[base, end)`, then rename the swap file to `<base>.log` (idempotent if interrupted again);
//! - `*.deleted`: a retired segment whose unlink did not happen — remove it.
//!
//! So a crash at any point yields the old group (before step 2) or the new segment (after), never
//! both and never neither.

use std::path::Path;

use crate::segment::{file_name, parse_file_name, DELETED_SUFFIX};
use crate::storage::Storage;

/// Extension (after the 20-digit base offset) of a new segment still being written.
pub(crate) const CLEANED_LOG: &str = "log.cleaned";
pub(crate) const SWAP_SUFFIX: &str = "swap";

/// `<base>-<end>.<suffix>`, both offsets 20 zero-padded digits.
pub(crate) fn swap_file_name(base: u64, end: u64, suffix: &str) -> String {
    format!("{base:020}-{end:020}.{suffix}")
}

/// Parses [`swap_file_name`] back into `(base, end)`.
pub(crate) fn parse_swap_file_name(name: &str, suffix: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    let (base, end) = stem.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(base) || !digits(end) {
        return None;
    }
    let (base, end) = (base.parse().ok()?, end.parse().ok()?);
    (base < end).then_some((base, end))
}

/// Whether `name` is a retired segment file (`<segment file>.deleted`).
pub(crate) fn is_deleted_segment_file(name: &str) -> bool {
    name.strip_suffix(DELETED_SUFFIX)
        .and_then(|n| n.strip_suffix('.'))
        .is_some_and(|n| {
            crate::segment::SEGMENT_FILE_EXTENSIONS
                .iter()
                .any(|ext| parse_file_name(n, ext).is_some())
        })
}

/// Whether `name` is one of the files this module's protocol leaves in a partition directory.
pub(crate) fn is_swap_protocol_file(name: &str) -> bool {
    is_deleted_segment_file(name)
        || parse_file_name(name, CLEANED_LOG).is_some()
        || parse_swap_file_name(name, SWAP_SUFFIX).is_some()
}

/// Finishes or rolls back whatever an interrupted compaction swap or segment deletion left in
/// `dir` (rules in the module docs) and returns the offset ranges that committed swaps
/// replaced: the checkpoint's entries for segments in them describe files that are gone.
pub(crate) fn finish_interrupted(
    storage: &dyn Storage,
    dir: &Path,
) -> std::io::Result<Vec<(u64, u64)>> {
    let names = storage.list_dir(dir)?;
    let mut changed = false;
    let mut swaps = Vec::new();
    for name in &names {
        if parse_file_name(name, CLEANED_LOG).is_some() || is_deleted_segment_file(name) {
            storage.remove_file(&dir.join(name))?;
            changed = true;
        } else if let Some(range) = parse_swap_file_name(name, SWAP_SUFFIX) {
            swaps.push(range);
        }
    }
    swaps.sort_unstable();
    for &(base, end) in &swaps {
        for name in &names {
            let replaced = crate::segment::SEGMENT_FILE_EXTENSIONS
                .iter()
                .any(|ext| parse_file_name(name, ext).is_some_and(|b| (base..end).contains(&b)));
            if replaced && storage.exists(&dir.join(name))? {
                storage.remove_file(&dir.join(name))?;
            }
        }
        // The removals must be durable before the new file takes the old first segment's name,
        // or a power loss could bring back old segments beside the new one.
        storage.sync_dir(dir)?;
        storage.rename(
            &dir.join(swap_file_name(base, end, SWAP_SUFFIX)),
            &dir.join(file_name(base, "log")),
        )?;
        changed = true;
    }
    if changed {
        storage.sync_dir(dir)?;
    }
    Ok(swaps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_lookalikes() {
        let n = swap_file_name(5, 1234, SWAP_SUFFIX);
        assert_eq!(n, "00000000000000000005-00000000000000001234.swap");
        assert_eq!(parse_swap_file_name(&n, SWAP_SUFFIX), Some((5, 1234)));
        assert_eq!(parse_swap_file_name(&n, "cleaned"), None);
        assert!(is_swap_protocol_file("00000000000000000005.log.cleaned"));
        assert!(!is_swap_protocol_file("00000000000000000005.cleaned"));
        assert_eq!(
            parse_swap_file_name(
                "00000000000000000005-00000000000000000005.swap",
                SWAP_SUFFIX
            ),
            None,
            "an empty range is not a swap"
        );
        assert_eq!(parse_swap_file_name("5-1234.swap", SWAP_SUFFIX), None);
        assert!(is_deleted_segment_file("00000000000000000005.log.deleted"));
        assert!(is_deleted_segment_file(
            "00000000000000000005.timeindex.deleted"
        ));
        assert!(!is_deleted_segment_file("notes.deleted"));
        assert!(is_swap_protocol_file(&n));
    }
}
