//! The entries of `.index`, `.timeindex` and `.txnindex` files (docs/FORMAT.md), parsed the way
//! annals reads them: the valid entries of an offset or time index are its leading run that
//! obeys the ordering rule; after them only zeros may follow (the active segment's preallocated
//! space). The library's own index code is private, so the rules are restated here.

use annals::format::{AbortedTxn, ABORTED_TXN_LEN};

/// Bytes of an offset-index entry: relative offset u32, position u32.
pub const OFFSET_ENTRY: usize = 8;
/// Bytes of a time-index entry: timestamp i64, relative offset u32.
pub const TIME_ENTRY: usize = 12;

/// `(relative last offset, byte position)` of an indexed batch.
pub type OffsetEntry = (u32, u32);
/// `(largest timestamp so far, relative last offset of the batch that carried it)`.
pub type TimeEntry = (i64, u32);

/// What a file's bytes hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entries<T> {
    /// The valid leading run.
    pub valid: Vec<T>,
    /// Zero entries after it (preallocated space).
    pub zero_fill: usize,
    /// What is wrong with the rest: non-zero entries that break the run, a partial entry.
    pub problems: Vec<String>,
}

/// Parses an offset index. Positions and relative offsets strictly increase, and position 0 is
/// never indexed (the first batch of a segment is not), so a zero entry ends the run.
pub fn offset_entries(bytes: &[u8]) -> Entries<OffsetEntry> {
    parse(
        bytes,
        OFFSET_ENTRY,
        |e| (be_u32(&e[..4]), be_u32(&e[4..])),
        |(rel, pos), prev| pos > 0 && prev.is_none_or(|(pr, pp)| rel > pr && pos > pp),
        |(rel, pos)| format!("relative offset {rel}, position {pos}"),
    )
}

/// Parses a time index. Timestamps strictly increase and offsets do not decrease; an all-zero
/// first entry is preallocated space.
pub fn time_entries(bytes: &[u8]) -> Entries<TimeEntry> {
    parse(
        bytes,
        TIME_ENTRY,
        |e| {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&e[..8]);
            (i64::from_be_bytes(ts), be_u32(&e[8..]))
        },
        |(ts, rel), prev| match prev {
            None => ts > 0 || rel > 0,
            Some((pt, pr)) => ts > pt && rel >= pr,
        },
        |(ts, rel)| format!("timestamp {ts}, relative offset {rel}"),
    )
}

/// Parses a `.txnindex`: whole 34-byte entries, each of which must decode.
pub fn aborted_txns(bytes: &[u8]) -> Entries<AbortedTxn> {
    let mut out = Entries {
        valid: Vec::new(),
        zero_fill: 0,
        problems: Vec::new(),
    };
    let chunks = bytes.chunks_exact(ABORTED_TXN_LEN);
    let tail = chunks.remainder().len();
    for (i, chunk) in chunks.enumerate() {
        match AbortedTxn::decode(chunk) {
            Ok(entry) => out.valid.push(entry),
            Err(e) => out.problems.push(format!("entry {i}: {e}")),
        }
    }
    if tail > 0 {
        out.problems.push(partial_entry(tail, ABORTED_TXN_LEN));
    }
    out
}

fn partial_entry(tail: usize, size: usize) -> String {
    format!("the last {tail} byte(s) are not a whole {size}-byte entry")
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn parse<T: Copy>(
    bytes: &[u8],
    size: usize,
    decode: impl Fn(&[u8]) -> T,
    follows: impl Fn(T, Option<T>) -> bool,
    describe: impl Fn(T) -> String,
) -> Entries<T> {
    let chunks = bytes.chunks_exact(size);
    let tail = chunks.remainder().len();
    let mut out = Entries {
        valid: Vec::new(),
        zero_fill: 0,
        problems: Vec::new(),
    };
    let mut rest = Vec::new();
    for chunk in chunks {
        if rest.is_empty() && follows(decode(chunk), out.valid.last().copied()) {
            out.valid.push(decode(chunk));
        } else {
            rest.push(chunk);
        }
    }
    let first_bad = rest.iter().position(|c| c.iter().any(|&b| b != 0));
    match first_bad {
        None => out.zero_fill = rest.len(),
        Some(i) => {
            let at = out.valid.len() + i;
            let prev = match at {
                0 => "it is the first entry".to_string(),
                _ => format!("entry {} before it", at - 1),
            };
            out.problems.push(format!(
                "entry {at} ({}) breaks the increasing run ({prev}); annals ignores it and every \
                 entry after it",
                describe(decode(rest[i]))
            ));
        }
    }
    if tail > 0 {
        out.problems.push(partial_entry(tail, size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_bytes(entries: &[(u32, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(r, p)| r.to_be_bytes().into_iter().chain(p.to_be_bytes()))
            .collect()
    }

    #[test]
    fn the_leading_run_then_zero_fill() {
        let mut bytes = offset_bytes(&[(3, 100), (7, 250)]);
        bytes.extend_from_slice(&[0; 16]);
        let e = offset_entries(&bytes);
        assert_eq!(e.valid, [(3, 100), (7, 250)]);
        assert_eq!((e.zero_fill, e.problems.len()), (2, 0));
    }

    #[test]
    fn a_non_zero_entry_that_breaks_the_run_is_a_problem() {
        let bytes = offset_bytes(&[(3, 100), (2, 300), (9, 400)]);
        let e = offset_entries(&bytes);
        assert_eq!(e.valid, [(3, 100)]);
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0].contains("entry 1 (relative offset 2, position 300)"));
        let mut partial = offset_bytes(&[(3, 100)]);
        partial.push(1);
        assert!(offset_entries(&partial).problems[0].contains("1 byte(s)"));
    }

    #[test]
    fn time_entries_need_growing_timestamps() {
        let mut bytes = Vec::new();
        for (ts, rel) in [(10i64, 0u32), (20, 4), (20, 5)] {
            bytes.extend_from_slice(&ts.to_be_bytes());
            bytes.extend_from_slice(&rel.to_be_bytes());
        }
        let e = time_entries(&bytes);
        assert_eq!(e.valid, [(10, 0), (20, 4)]);
        assert_eq!(e.problems.len(), 1);
        assert!(time_entries(&[0; 24]).valid.is_empty());
        assert_eq!(time_entries(&[0; 24]).zero_fill, 2);
    }
}
