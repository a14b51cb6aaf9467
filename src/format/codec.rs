//! Compression of a batch's records section: LZ4 frames laid out the way Kafka writes them, and
//! standard zstd frames.
//!
//! Decompression is the part that faces hostile input. A few hundred bytes of LZ4 or zstd can
//! claim gigabytes of output, so output is pulled through a reader into a buffer that grows only
//! as bytes actually arrive and stops one byte past the caller's limit. (LZ4 frames in Kafka's
//! own layout skip the reader: their blocks are decoded straight into the output, each given
//! room for at most 255 times its compressed size and never past the limit.)
//!
//! zstd contexts are expensive to create, so each thread keeps one for compression and one for
//! decompression from batch to batch.

use std::cell::RefCell;
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
            let compressed = ZSTD_CONTEXT.try_with(|context| match context.try_borrow_mut() {
                Ok(mut context) => zstd_compress(&mut context, level, records, out),
                // Only reachable if compression ever re-entered itself on this thread.
                Err(_) => zstd_compress(&mut zstd::zstd_safe::CCtx::create(), level, records, out),
            });
            match compressed {
                Ok(result) => result,
                // The thread is exiting and its context is gone; the batch still gets compressed.
                Err(_) => zstd_compress(&mut zstd::zstd_safe::CCtx::create(), level, records, out),
            }
        }
    }
}

thread_local! {
    /// Each thread's zstd compression context, kept from one batch to the next: creating one
    /// (and its first workspace) costs more than compressing a small batch. zstd itself shrinks
    /// a workspace that stays much larger than what it is used for.
    static ZSTD_CONTEXT: RefCell<zstd::zstd_safe::CCtx<'static>> =
        RefCell::new(zstd::zstd_safe::CCtx::create());
}

/// Appends `records` to `out` as one zstd frame at `level`, using `context`.
///
/// Frames are made by the same streaming calls, in the same order, as with a context of their
/// own (a one-shot compression of the same bytes can come out different): the encoder resets
/// the context's session first and only parameters carry over, all of which are set here.
fn zstd_compress(
    context: &mut zstd::zstd_safe::CCtx<'static>,
    level: i32,
    records: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut encoder = zstd::stream::write::Encoder::with_context(out, context);
    encoder.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(level))?;
    // Knowing the size lets zstd shrink its window to the batch and record the content size in
    // the frame header, which decoders can use to size their buffer.
    encoder.set_pledged_src_size(Some(records.len() as u64))?;
    encoder.include_contentsize(true)?;
    encoder.write_all(records)?;
    encoder.finish()?;
    Ok(())
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
            if let Some(out) = lz4_decode_plain(compressed, max_output) {
                return Ok(out);
            }
            // FrameDecoder reads concatenated frames until the input ends, and accepts every
            // frame option (block sizes up to 4 MiB, linked blocks, checksums, content size).
            // Its reader reports end-of-stream at the end of every frame, so keep reading while
            // input remains; trailing bytes that are not a frame then fail as they should.
            let decoder = FrameDecoder::new(compressed);
            read_capped(decoder, |d| d.get_ref().len(), compressed.len(), max_output)
                .map_err(|e| codec_error("lz4", e))
        }
        Compression::Zstd { .. } => {
            let decode = |context: &mut zstd::zstd_safe::DCtx<'static>| {
                let mut decoder = zstd::stream::read::Decoder::with_context(compressed, context);
                decoder
                    .window_log_max(zstd_window_log(max_output))
                    .map_err(|e| codec_error("zstd", e.into()))?;
                // This reader goes on through concatenated frames by itself (and rejects
                // trailing junk), so only its own end-of-stream counts.
                read_capped(decoder, |_| 0, compressed.len(), max_output)
                    .map_err(|e| codec_error("zstd", e))
            };
            ZSTD_DECOMPRESSOR
                .try_with(|slot| {
                    let Ok(mut slot) = slot.try_borrow_mut() else {
                        // Only reachable if decompression ever re-entered itself.
                        return decode(&mut new_dctx()?);
                    };
                    let mut context = match slot.take() {
                        Some(context) => context,
                        None => new_dctx()?,
                    };
                    let result = decode(&mut context);
                    // A frame may have made the context grow a window as large as the cap
                    // allows; such a context is not worth keeping around.
                    if context.sizeof() <= ZSTD_KEEP_CONTEXT_BYTES {
                        *slot = Some(context);
                    }
                    result
                })
                // The thread is exiting and its context is gone.
                .unwrap_or_else(|_| decode(&mut new_dctx()?))
        }
    }
}

thread_local! {
    /// Each thread's zstd decompression context, kept from one batch to the next: creating one
    /// and its buffers for every batch costs allocations as large as the batch itself.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { RefCell::new(None) };
}

/// A decompression context is kept for the next batch only while it holds no more than this.
const ZSTD_KEEP_CONTEXT_BYTES: usize = 16 << 20;

fn new_dctx() -> Result<zstd::zstd_safe::DCtx<'static>> {
    zstd::zstd_safe::DCtx::try_create().ok_or_else(|| {
        codec_error(
            "zstd",
            CappedError::Io(io::Error::other(
                "zstd could not allocate a decompression context",
            )),
        )
    })
}

/// LZ4 frame magic number (stored little-endian).
const LZ4_MAGIC: u32 = 0x184D_2204;
/// Frame flags of a plain frame: version 01, independent blocks, and no block checksums,
/// content size, content checksum or dictionary id.
const LZ4_PLAIN_FLAGS: u8 = 0x60;
/// For each block size a plain frame may declare: its BD byte, the header checksum byte that
/// goes with these flags (the second byte of the xxHash32 of FLG and BD, a constant for a
/// plain frame), and the block size in bytes.
const LZ4_PLAIN_DESCRIPTORS: [(u8, u8, usize); 4] = [
    (0x40, 0x82, 64 << 10),
    (0x50, 0xfb, 256 << 10),
    (0x60, 0x51, 1 << 20),
    (0x70, 0x73, 4 << 20),
];
/// Bit of a block's size word that marks it as stored uncompressed.
const LZ4_UNCOMPRESSED_BIT: u32 = 1 << 31;
/// No LZ4 block decompresses to more than this many times its size (a match costs at least
/// one byte per 255 of output), which bounds the room made for a block's output.
const LZ4_MAX_RATIO: usize = 255;

/// Decodes the common case of an LZ4 records section without `FrameDecoder`: frames in the
/// layout Kafka's clients and annals write (independent blocks, no checksums, no content size,
/// no dictionary), each block decompressed straight into the output rather than into the
/// decoder's own buffer first and copied from there.
///
/// Returns `None` for anything else — other frame options, malformed input, output beyond
/// `max_output` — and the caller runs `FrameDecoder` over the section from the start, so what
/// is accepted, rejected and reported is exactly what it accepts, rejects and reports. Whatever
/// this returns, `FrameDecoder` decodes to the same bytes.
fn lz4_decode_plain(compressed: &[u8], max_output: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(initial_capacity(compressed.len(), max_output));
    let mut rest = compressed;
    loop {
        let (&[m0, m1, m2, m3, flags, bd, checksum], after) = rest.split_first_chunk()?;
        if u32::from_le_bytes([m0, m1, m2, m3]) != LZ4_MAGIC || flags != LZ4_PLAIN_FLAGS {
            return None;
        }
        let &(_, _, block_size) = LZ4_PLAIN_DESCRIPTORS
            .iter()
            .find(|&&(b, c, _)| b == bd && c == checksum)?;
        rest = after;
        loop {
            let (word, after) = rest.split_first_chunk::<4>()?;
            let word = u32::from_le_bytes(*word);
            if word == 0 {
                // End mark.
                rest = after;
                break;
            }
            let len = (word & !LZ4_UNCOMPRESSED_BIT) as usize;
            if len > block_size {
                return None;
            }
            let (block, after) = after.split_at_checked(len)?;
            rest = after;
            let start = out.len();
            if word & LZ4_UNCOMPRESSED_BIT != 0 {
                if len > max_output - start {
                    return None;
                }
                out.extend_from_slice(block);
            } else {
                // Room for the most the block can produce; zeroed because the decoder takes
                // an initialised slice.
                let room = block_size
                    .min(max_output - start)
                    .min(len.saturating_mul(LZ4_MAX_RATIO));
                out.resize(start + room, 0);
                let produced =
                    lz4_flex::block::decompress_into(block, out.get_mut(start..)?).ok()?;
                out.truncate(start + produced);
            }
        }
        if rest.is_empty() {
            return Some(out);
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

/// Where a decompression buffer starts: a small multiple of the compressed size, never more
/// than one byte past the limit.
fn initial_capacity(compressed_len: usize, max_output: usize) -> usize {
    compressed_len
        .saturating_mul(4)
        .clamp(MIN_GROW, 1 << 20)
        .min(max_output.saturating_add(1))
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
    let mut out = vec![0u8; initial_capacity(compressed_len, max_output)];
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

    /// Data that compresses in places and not in others, so frames get both compressed and
    /// stored (uncompressed) blocks.
    fn mixed_data(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if (i / 70_000) % 2 == 0 {
                    (i % 13) as u8
                } else {
                    x as u8
                }
            })
            .collect()
    }

    fn lz4_frame(data: &[u8], info: FrameInfo) -> Vec<u8> {
        let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn frame_decoder(compressed: &[u8], max_output: usize) -> Option<Vec<u8>> {
        let decoder = FrameDecoder::new(compressed);
        read_capped(decoder, |d| d.get_ref().len(), compressed.len(), max_output).ok()
    }

    fn plain_info(block_size: BlockSize) -> FrameInfo {
        FrameInfo::new()
            .block_size(block_size)
            .block_mode(BlockMode::Independent)
            .block_checksums(false)
            .content_checksum(false)
            .content_size(None)
    }

    #[test]
    fn lz4_plain_descriptors_match_the_encoder() {
        for ((block_size, bytes), descriptor) in [
            (BlockSize::Max64KB, 64 << 10),
            (BlockSize::Max256KB, 256 << 10),
            (BlockSize::Max1MB, 1 << 20),
            (BlockSize::Max4MB, 4 << 20),
        ]
        .into_iter()
        .zip(LZ4_PLAIN_DESCRIPTORS)
        {
            let frame = lz4_frame(b"x", plain_info(block_size));
            assert_eq!(&frame[..4], &LZ4_MAGIC.to_le_bytes());
            assert_eq!(
                (frame[4], frame[5], frame[6], bytes),
                (LZ4_PLAIN_FLAGS, descriptor.0, descriptor.1, descriptor.2)
            );
        }
    }

    /// The block-by-block decoder must agree with `FrameDecoder` wherever it answers, answer for
    /// the frames Kafka writes, and leave everything else to `FrameDecoder`.
    #[test]
    fn lz4_plain_decoder_matches_frame_decoder() {
        let sizes = [0, 1, 100, 65_535, 65_536, 65_537, 200_000, 600_000];
        for block_size in [BlockSize::Max64KB, BlockSize::Max256KB, BlockSize::Max4MB] {
            for len in sizes {
                let data = mixed_data(len);
                let frame = lz4_frame(&data, plain_info(block_size));
                let mut two = frame.clone();
                two.extend_from_slice(&lz4_frame(&data[..len / 3], plain_info(block_size)));
                for input in [&frame, &two] {
                    let want = frame_decoder(input, usize::MAX).unwrap();
                    assert_eq!(
                        lz4_decode_plain(input, usize::MAX).as_ref(),
                        Some(&want),
                        "{block_size:?} {len}"
                    );
                    // At the limit it still answers; below it, it leaves the error to
                    // FrameDecoder.
                    assert_eq!(lz4_decode_plain(input, want.len()), Some(want.clone()));
                    if let Some(below) = want.len().checked_sub(1) {
                        assert_eq!(lz4_decode_plain(input, below), None);
                        assert!(decompress(Compression::Lz4, input, below).is_err());
                    }
                    // Truncated anywhere: whatever it still answers, FrameDecoder answers too.
                    for cut in [1, 4, 7, 11, input.len() / 2, input.len() - 1] {
                        let Some(prefix) = input.get(..cut) else {
                            continue;
                        };
                        if let Some(out) = lz4_decode_plain(prefix, usize::MAX) {
                            assert_eq!(Some(out), frame_decoder(prefix, usize::MAX), "cut {cut}");
                        }
                    }
                    let mut junk = input.clone();
                    junk.extend_from_slice(b"junk");
                    assert_eq!(lz4_decode_plain(&junk, usize::MAX), None);
                }
            }
        }
        // Other frame options go to FrameDecoder, which still decodes them.
        let data = mixed_data(150_000);
        for info in [
            plain_info(BlockSize::Max64KB).block_mode(BlockMode::Linked),
            plain_info(BlockSize::Max64KB).block_checksums(true),
            plain_info(BlockSize::Max64KB).content_checksum(true),
            plain_info(BlockSize::Max64KB).content_size(Some(data.len() as u64)),
        ] {
            let described = format!("{info:?}");
            let frame = lz4_frame(&data, info);
            assert_eq!(lz4_decode_plain(&frame, usize::MAX), None, "{described}");
            assert_eq!(
                decompress(Compression::Lz4, &frame, data.len()).unwrap(),
                data
            );
        }
        // A corrupt block is left to FrameDecoder too.
        let mut frame = lz4_frame(&mixed_data(1000), plain_info(BlockSize::Max64KB));
        frame[12] ^= 0xff;
        assert_eq!(
            lz4_decode_plain(&frame, usize::MAX).is_some(),
            frame_decoder(&frame, usize::MAX).is_some()
        );
    }

    #[test]
    fn lz4_plain_decoder_never_disagrees_on_mangled_frames() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let frames: Vec<Vec<u8>> = [0, 10, 1000, 70_000, 140_000]
            .into_iter()
            .map(|len| lz4_frame(&mixed_data(len), plain_info(BlockSize::Max64KB)))
            .collect();
        let mut answered = 0;
        for round in 0..3000 {
            let mut input = frames[round % frames.len()].clone();
            for _ in 0..1 + next(3) {
                let at = next(input.len());
                match next(3) {
                    0 => input[at] ^= 1 << next(8),
                    1 => input[at] = next(256) as u8,
                    _ => input.truncate(at),
                }
                if input.is_empty() {
                    break;
                }
            }
            let max_output = [usize::MAX, 100_000, 1000][next(3)];
            if let Some(out) = lz4_decode_plain(&input, max_output) {
                answered += 1;
                assert_eq!(
                    Some(out),
                    frame_decoder(&input, max_output),
                    "round {round}"
                );
            }
        }
        // Mangled literals still decode, so the fast path answered often enough to count.
        assert!(answered > 100, "{answered}");
    }

    #[test]
    fn zstd_contexts_are_reused_safely() {
        // Levels, sizes and a failure in between: every frame must still round-trip, and
        // come out as a context of its own would have made it.
        let data = mixed_data(300_000);
        for (i, level) in [3, 1, 19, 3, -5, 3].into_iter().enumerate() {
            let input = &data[..data.len() >> i];
            let mut reused = Vec::new();
            compress_into(Compression::Zstd { level }, input, &mut reused).unwrap();
            let mut fresh = Vec::new();
            zstd_compress(
                &mut zstd::zstd_safe::CCtx::create(),
                level,
                input,
                &mut fresh,
            )
            .unwrap();
            assert_eq!(reused, fresh, "level {level}");
            assert_eq!(
                decompress(Compression::zstd(), &reused, input.len()).unwrap(),
                input
            );
            assert!(decompress(Compression::zstd(), &reused[..reused.len() / 2], 1 << 20).is_err());
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
