//! Feeds arbitrary bytes to every entry point that reads untrusted batch bytes. None of them may
//! panic, and a successful decode must be self-consistent.
//!
//! Random bytes almost never carry a valid CRC, so each input is also decoded a second time with
//! its length field and CRC repaired, which lets the fuzzer reach the record and decompression
//! code behind the checksum.
//!
//! Run with `cargo fuzz run -s none decode_batch` from the repository root: without a sanitizer
//! (`-s none`) cargo-fuzz works on the stable toolchain.

#![no_main]

use annals::format::{
    decode_batch, peek_batch_len, verify_crc, BatchHeader, HEADER_LEN, LOG_OVERHEAD,
};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Decompression cap: large enough for real batches, small enough that a bomb fails fast.
const MAX_UNCOMPRESSED: usize = 1 << 20;
/// Where the CRC field sits, and where the bytes it covers start.
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;

fuzz_target!(|data: &[u8]| {
    let parsed = BatchHeader::parse(data);
    let peeked = peek_batch_len(data);
    if let (Ok(header), Ok(Some(len))) = (&parsed, &peeked) {
        assert_eq!(header.total_len(), *len);
    }
    let crc_ok = verify_crc(data).is_ok();
    let accepted = check_decode(data);
    assert!(
        !accepted || crc_ok,
        "decode_batch accepted a batch verify_crc rejects"
    );

    if data.len() >= HEADER_LEN {
        let mut repaired = data.to_vec();
        let length = i32::try_from(repaired.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
        repaired[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&repaired[ATTRIBUTES_AT..]);
        repaired[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        check_decode(&repaired);
    }
});

/// Decodes `data` from an offset inside its range and checks the result; true if it decoded.
fn check_decode(data: &[u8]) -> bool {
    let batch = Bytes::copy_from_slice(data);
    let from_offset =
        BatchHeader::parse(data).map_or(0, |h| h.base_offset + u64::from(h.last_offset_delta / 2));
    let mut out = Vec::new();
    match decode_batch(&batch, from_offset, MAX_UNCOMPRESSED, &mut out) {
        Ok(header) => {
            assert!(out.len() <= header.record_count as usize);
            for pair in out.windows(2) {
                assert!(pair[0].offset < pair[1].offset);
            }
            for record in &out {
                assert!(record.offset >= from_offset && record.offset <= header.last_offset());
            }
            true
        }
        Err(_) => {
            assert!(
                out.is_empty(),
                "a failed decode must leave the output as it was"
            );
            false
        }
    }
}
