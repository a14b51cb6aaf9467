//! `producer-ids.meta`: the end of the producer-id block in use and every stable id's producer
//! id and epoch (format in `docs/FORMAT.md`). What the values mean, and how ids are handed out,
//! is the allocator's business (`log/producer_ids.rs`); this is only their bytes.

use std::path::Path;

use super::{corrupt, open_envelope, seal_envelope, Reader, Writer};
use crate::error::Result;

pub(crate) const PRODUCER_IDS_FILE: &str = "producer-ids.meta";
const MAGIC: [u8; 4] = *b"ANPI";

/// The contents of `producer-ids.meta`, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerIdsFile {
    /// No id at or above this was handed out before the file was written.
    pub block_end: i64,
    /// `(stable id, producer id, epoch)`, in the order they are written.
    pub stable: Vec<(String, i64, i16)>,
}

pub(crate) fn encode_producer_ids(f: &ProducerIdsFile) -> Vec<u8> {
    let mut w = Writer::default();
    w.i64(f.block_end);
    w.u32(f.stable.len() as u32);
    for (name, id, epoch) in &f.stable {
        w.bytes16(name.as_bytes());
        w.i64(*id);
        w.u16(*epoch as u16);
    }
    seal_envelope(MAGIC, &w.0)
}

pub(crate) fn decode_producer_ids(file: &Path, bytes: &[u8]) -> Result<ProducerIdsFile> {
    let parse = || -> std::result::Result<ProducerIdsFile, String> {
        let payload = open_envelope(MAGIC, bytes)?;
        let mut r = Reader::new(payload);
        let block_end = r.i64()?;
        let n = r.u32()? as usize;
        let mut stable = Vec::new();
        for _ in 0..n {
            let name = String::from_utf8(r.bytes16()?.to_vec())
                .map_err(|_| "stable id is not UTF-8".to_string())?;
            let id = r.i64()?;
            let epoch = r.u16()? as i16;
            stable.push((name, id, epoch));
        }
        if !r.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(ProducerIdsFile { block_end, stable })
    };
    parse().map_err(|e| corrupt(file, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn round_trip_and_the_bytes_are_pinned() {
        let f = ProducerIdsFile {
            block_end: 1 << 62,
            stable: vec![("a".into(), (1 << 62) + 1, -2)],
        };
        let bytes = encode_producer_ids(&f);
        assert_eq!(decode_producer_ids(Path::new("p"), &bytes).unwrap(), f);
        let payload: &[u8] = &[
            0x40, 0, 0, 0, 0, 0, 0, 0, // block_end
            0, 0, 0, 1, // count
            0, 1, b'a', // stable id
            0x40, 0, 0, 0, 0, 0, 0, 1, // producer id
            0xff, 0xfe, // epoch
        ];
        assert_eq!(&bytes[..4], b"ANPI");
        assert_eq!(&bytes[12..bytes.len() - 4], payload);
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode_producer_ids(Path::new("p"), &bytes[..cut]),
                Err(Error::CorruptMetadata { .. })
            ));
        }
    }
}
