//! Encodings of the retention and compaction fields of `topics.meta` (tags 12-19, see
//! `docs/FORMAT.md`).

use super::{Reader, Writer};
use crate::config::CompactionStrategy;

/// `u8` kind (0 offset, 1 timestamp, 2 header) followed, for a header, by its UTF-8 name.
pub(super) fn encode_strategy(s: &CompactionStrategy) -> Vec<u8> {
    match s {
        CompactionStrategy::Offset => vec![0],
        CompactionStrategy::Timestamp => vec![1],
        CompactionStrategy::Header(name) => {
            let mut v = vec![2];
            v.extend_from_slice(name.as_bytes());
            v
        }
    }
}

pub(super) fn decode_strategy(r: &mut Reader) -> std::result::Result<CompactionStrategy, String> {
    let kind = r.u8()?;
    let rest = r.rest();
    match (kind, rest.is_empty()) {
        (0, true) => Ok(CompactionStrategy::Offset),
        (1, true) => Ok(CompactionStrategy::Timestamp),
        (2, _) => String::from_utf8(rest.to_vec())
            .map(CompactionStrategy::Header)
            .map_err(|_| "compaction header name is not UTF-8".to_string()),
        _ => Err(format!("unknown compaction strategy {kind}")),
    }
}

/// `u16` count, then each group id as `u16` length + UTF-8.
pub(super) fn encode_groups(groups: &[String]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(groups.len() as u16);
    for g in groups {
        w.bytes16(g.as_bytes());
    }
    w.0
}

pub(super) fn decode_groups(r: &mut Reader) -> std::result::Result<Vec<String>, String> {
    let n = r.u16()?;
    (0..n)
        .map(|_| {
            String::from_utf8(r.bytes16()?.to_vec()).map_err(|_| "group id is not UTF-8".into())
        })
        .collect()
}
