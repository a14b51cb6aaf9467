//! The entries of a `.txnindex` file (docs/FORMAT.md): whole 34-byte entries, each of which
//! must decode. (The `.index` and `.timeindex` are read by `annals::format`, as annals reads
//! them.)

use annals::format::{AbortedTxn, ABORTED_TXN_LEN};

/// What a `.txnindex` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortedTxns {
    /// The entries that decode.
    pub valid: Vec<AbortedTxn>,
    /// What is wrong with the others, and a partial last entry.
    pub problems: Vec<String>,
}

pub fn aborted_txns(bytes: &[u8]) -> AbortedTxns {
    let mut out = AbortedTxns {
        valid: Vec::new(),
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
        out.problems.push(format!(
            "the last {tail} byte(s) are not a whole {ABORTED_TXN_LEN}-byte entry"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_and_partial_entries_are_problems() {
        let entry = AbortedTxn {
            producer_id: 7,
            first_offset: 3,
            last_offset: 9,
            last_stable_offset: 10,
        };
        let mut bytes = entry.encode().to_vec();
        bytes.extend_from_slice(&[0xff; ABORTED_TXN_LEN]);
        bytes.push(1);
        let txns = aborted_txns(&bytes);
        assert_eq!(txns.valid, [entry]);
        assert_eq!(txns.problems.len(), 2, "{:?}", txns.problems);
        assert!(
            txns.problems[0].starts_with("entry 1: "),
            "{:?}",
            txns.problems
        );
        assert!(
            txns.problems[1].contains("last 1 byte(s)"),
            "{:?}",
            txns.problems
        );
    }
}
