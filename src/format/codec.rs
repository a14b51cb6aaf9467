//! Compression of a batch's records section: LZ4 frames laid out the way Kafka writes them, and
//! standard zstd frames.
//!
//! Decompression is the part that faces hostile input. A few hundred bytes of LZ4 or zstd can
//! claim gigabytes of output, so output is pulled through a reader into a buffer that grows only
//! as bytes actually arrive and stops one byte past the caller's limit.

use std::io::{self, Read, Write};

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use super::{invalid, Compression};
use crate::error::{Error, Result};

/// zstd window the decoder accepts at the least, whatever the output limit. Streaming encoders
/// that do not know the input size up front (Kafka's Java producer among them) declare the
/// level's full window, 2 MiB at level 3 and 8 MiB up to level 19, even for tiny batches, so a
/// window tied to a small output limit would reject real Kafka data.
const ZSTD_MIN_WINDOW_LOG: u32 = 23;
/// zstd's own default ceiling (128 MiB); larger windows need "long distance" mode, which no
/// Kafka client uses, and would let a tiny frame make the decoder reserve a huge buffer.
const ZSTD_MAX_WINDOW_LOG: u32 = 27;

/// Smallest step the decompression buffer grows by.
const MIN_GROW: usize = 4 * 1024;

/// Appends `records` compressed with `compression` to `out`. `Compression::None` copies.
pub(crate) fn compress_into(
    compression: Compression,
    records: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    match compression {
        Compression::None => {
            out.extend_from_slice(records);
            Ok(())
        }
        Compression::Lz4 => {
            // Kafka's KafkaLZ4BlockOutputStream: 64 KiB independent blocks, no block checksums,
            // no content size and no content checksum.
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Independent)
                .block_checksums(false)
                .content_checksum(false)
                .content_size(None);
            let mut encoder = FrameEncoder::with_frame_info(info, out);
            encoder.write_all(records)?;
            encoder
                .finish()
                .map_err(|e| Error::from(io::Error::other(e)))?;
            Ok(())
        }
        Compression::Zstd { level } => {
            if !zstd::compression_level_range().contains(&level) {
                return Err(Error::InvalidArgument(format!(
                    "zstd level {level} is outside {:?}",
                    zstd::compression_level_range()
                )));
            }
            let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
            // Knowing the size lets zstd shrink its window to the batch and record the content
            // size in the frame header, which decoders can use to size their buffer.
            encoder.set_pledged_src_size(Some(records.len() as u64))?;
            encoder.include_contentsize(true)?;
            encoder.write_all(records)?;
            encoder.finish()?;
            Ok(())
        }
    }
}

/// Decompresses a records section, failing with `InvalidBatch` if it is not a valid stream of
/// frames for the codec or if it decompresses to more than `max_output` bytes.
pub(crate) fn decompress(
    compression: Compression,
    compressed: &[u8],
    max_output: usize,
) -> Result<Vec<u8>> {
    match compression {
        Compression::None => {
            if compressed.len() > max_output {
                return Err(over_limit(max_output));
            }
            Ok(compressed.to_vec())
        }
        Compression::Lz4 => {
            // FrameDecoder reads concatenated frames until the input ends, and accepts every
            // frame option (block sizes up to 4 MiB, linked blocks, checksums, content size).
            // Its reader reports end-of-stream at the end of every frame, so keep reading while
            // input remains; trailing bytes that are not a frame then fail as they should.
            let decoder = FrameDecoder::new(compressed);
            read_capped(decoder, |d| d.get_ref().len(), compressed.len(), max_output)
                .map_err(|e| codec_error("lz4", e))
        }
        Compression::Zstd { .. } => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(compressed)
                .map_err(|e| codec_error("zstd", e.into()))?;
            decoder
                .window_log_max(zstd_window_log(max_output))
                .map_err(|e| codec_error("zstd", e.into()))?;
            // This reader goes on through concatenated frames by itself (and rejects trailing
            // junk), so only its own end-of-stream counts.
            read_capped(decoder, |_| 0, compressed.len(), max_output)
                .map_err(|e| codec_error("zstd", e))
        }
    }
}

/// Largest zstd window (as a power of two) worth allowing for this output limit.
fn zstd_window_log(max_output: usize) -> u32 {
    // ceil(log2(max_output)): a window larger than the whole output is never needed.
    let needed = usize::BITS - max_output.saturating_sub(1).leading_zeros();
    needed.clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_MAX_WINDOW_LOG)
}

/// What went wrong while reading a capped stream.
enum CappedError {
    Io(io::Error),
    OverLimit(usize),
}

fn codec_error(codec: &str, e: CappedError) -> Error {
    match e {
        CappedError::OverLimit(max) => over_limit(max),
        CappedError::Io(e) => invalid(format!("{codec} records section does not decompress: {e}")),
    }
}

fn over_limit(max_output: usize) -> Error {
    invalid(format!(
        "records section decompresses to more than the {max_output}-byte limit"
    ))
}

impl From<io::Error> for CappedError {
    fn from(e: io::Error) -> Self {
        CappedError::Io(e)
    }
}

/// Reads `reader` to its end into a new buffer, failing as soon as more than `max_output` bytes
/// come out. The buffer starts at a small multiple of the compressed size and then grows by
/// doubling only while output keeps arriving, so its capacity never exceeds about twice the bytes
/// actually produced, and never `max_output + 1`.
///
/// `unread` tells how much compressed input the reader has not consumed yet: a reader that
/// reports end-of-stream while input remains is read again.
fn read_capped<R: Read>(
    mut reader: R,
    unread: impl Fn(&R) -> usize,
    compressed_len: usize,
    max_output: usize,
) -> Result<Vec<u8>, CappedError> {
    // One byte past the limit tells "exactly at the limit" from "over it".
    let hard_cap = max_output.saturating_add(1);
    let initial = compressed_len
        .saturating_mul(4)
        .clamp(MIN_GROW, 1 << 20)
        .min(hard_cap);
    let mut out = vec![0u8; initial];
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= hard_cap {
                return Err(CappedError::OverLimit(max_output));
            }
            let grown = out.len().saturating_mul(2).max(MIN_GROW).min(hard_cap);
            out.resize(grown, 0);
        }
        let Some(spare) = out.get_mut(filled..) else {
            break;
        };
        let unread_before = unread(&reader);
        match reader.read(spare) {
            Ok(0) => {
                let left = unread(&reader);
                // Stop at the true end, or if the reader made no progress (never loop forever).
                if left == 0 || left == unread_before {
                    if left != 0 {
                        return Err(CappedError::Io(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{left} bytes of input left unread"),
                        )));
                    }
                    break;
                }
            }
            // A reader reporting more than it was given is a bug elsewhere; clamp rather than
            // trust it with our indices.
            Ok(n) => filled = filled.saturating_add(n).min(out.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CappedError::Io(e)),
        }
    }
    if filled > max_output {
        return Err(CappedError::OverLimit(max_output));
    }
    out.truncate(filled);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_frame_header_matches_kafka() {
        let mut out = Vec::new();
        compress_into(Compression::Lz4, b"hello hello hello hello", &mut out).unwrap();
        // Magic 0x184D2204 little-endian, then FLG = version 01, independent blocks, nothing
        // else (0x60), then BD = 64 KiB max block size (0x40).
        assert_eq!(&out[..6], &[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40]);
    }

    #[test]
    fn round_trips() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [
            Compression::None,
            Compression::Lz4,
            Compression::zstd(),
            Compression::Zstd { level: 19 },
        ] {
            let mut out = vec![9, 9];
            compress_into(c, &data, &mut out).unwrap();
            assert_eq!(&out[..2], &[9, 9], "{c:?} must append");
            assert_eq!(decompress(c, &out[2..], data.len()).unwrap(), data, "{c:?}");
            assert!(
                decompress(c, &out[2..], data.len() - 1).is_err(),
                "{c:?} limit"
            );
        }
    }

    #[test]
    fn empty_input_round_trips() {
        for c in [Compression::Lz4, Compression::zstd()] {
            let mut out = Vec::new();
            compress_into(c, &[], &mut out).unwrap();
            assert_eq!(decompress(c, &out, 0).unwrap(), Vec::<u8>::new());
        }
    }

    #[test]
    fn bad_zstd_level_is_rejected() {
        let err =
            compress_into(Compression::Zstd { level: 1000 }, b"x", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }

    #[test]
    fn garbage_and_trailing_bytes_are_rejected() {
        for c in [Compression::Lz4, Compression::zstd()] {
            assert!(
                decompress(c, b"definitely not compressed", 1 << 20).is_err(),
                "{c:?}"
            );
            let mut out = Vec::new();
            compress_into(c, b"payload", &mut out).unwrap();
            // (lz4_flex takes exactly 4 trailing bytes for an empty stream end, as harmless as
            // Kafka's own reader ignoring what follows its one frame; longer junk must fail.)
            out.extend_from_slice(b"junk after the frame");
            assert!(decompress(c, &out, 1 << 20).is_err(), "{c:?} trailing junk");
            // Cut inside the data. (lz4_flex takes a missing end mark as the end of the stream;
            // a batch cut there fails its record count check instead.)
            let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 13) as u8).collect();
            let mut out = Vec::new();
            compress_into(c, &data, &mut out).unwrap();
            out.truncate(out.len() / 2);
            assert!(decompress(c, &out, 1 << 20).is_err(), "{c:?} truncated");
        }
    }

    #[test]
    fn window_log_bounds() {
        assert_eq!(zstd_window_log(0), ZSTD_MIN_WINDOW_LOG);
        assert_eq!(zstd_window_log(1 << 20), ZSTD_MIN_WINDOW_LOG);
        assert_eq!(zstd_window_log((1 << 25) + 1), 26);
        assert_eq!(zstd_window_log(usize::MAX), ZSTD_MAX_WINDOW_LOG);
    }
}
