//! Kafka's variable-length integers: zigzag-encoded, then written 7 bits at a time, least
//! significant group first, with the high bit of each byte meaning "more bytes follow" (the
//! protobuf encoding). `varint` carries an i32 in at most 5 bytes, `varlong` an i64 in at most 10.
//!
//! Readers take a slice and a cursor position and return a static reason on failure, so the hot
//! decode loop pays for no `String` until something is actually wrong.

use std::mem::MaybeUninit;

/// Longest legal varint (i32).
pub(crate) const MAX_VARINT_LEN: usize = 5;
/// Longest legal varlong (i64).
pub(crate) const MAX_VARLONG_LEN: usize = 10;

/// Zigzag maps small magnitudes of either sign to small unsigned numbers: 0, -1, 1, -2 ... →
/// 0, 1, 2, 3 ...
#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

#[inline]
fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Bytes an unsigned value takes in 7-bit groups (at least one).
#[inline]
fn unsigned_len(u: u64) -> usize {
    // Significant bits (at least one, so that 0 still takes a byte), rounded up to groups of 7.
    // For bits in 1..=64, (bits * 9 + 64) / 64 == ceil(bits / 7): a multiply and a shift on the
    // encoder's hottest path instead of a division.
    let bits = 64 - (u | 1).leading_zeros() as usize;
    (bits * 9 + 64) / 64
}

/// Encoded size of `v` as a varint.
#[inline]
pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Encoded size of `v` as a varlong.
#[inline]
pub(crate) fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

/// Encoded size of a non-negative length as a varint. Lengths beyond `i32::MAX` cannot be
/// encoded at all; they are sized as if they could, and the encoder rejects them separately.
#[inline]
pub(crate) fn length_len(len: usize) -> usize {
    // zigzag of a non-negative n is 2n. A slice is at most isize::MAX bytes long, so the shift
    // drops no bit.
    unsigned_len((len as u64) << 1)
}

/// Spare capacity the writers below may need beyond the bytes they append: they store whole
/// words and keep only the bytes that belong to the value. Reserving this much more than the
/// exact encoded size keeps every such store inside the capacity, so none of them reallocates.
pub(crate) const PUT_SLACK: usize = 16;

/// Values from here on take 9 or 10 bytes, more than a word holds.
const WORD_LIMIT: u64 = 1 << 56;

/// A varint of at most 8 bytes, ready to be stored: its bytes little-endian in a word.
///
/// The encoder sizes every field of a record before writing the first (the record's length
/// comes first), so computing each varint once, as its bytes, serves both purposes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Varint {
    word: u64,
    len: usize,
}

impl Varint {
    /// The varint of `u`, which must be below [`WORD_LIMIT`].
    #[inline]
    fn in_word(mut u: u64) -> Varint {
        debug_assert!(u < WORD_LIMIT);
        // Lengths and deltas of one or two bytes are nearly all an encoder sees: straight-line
        // code for them, the loop for the rest.
        if u < 0x80 {
            return Varint { word: u, len: 1 };
        }
        if u < 0x4000 {
            return Varint {
                word: (u & 0x7f) | 0x80 | (u >> 7) << 8,
                len: 2,
            };
        }
        let mut word = 0;
        let mut len = 0;
        while u >= 0x80 {
            word |= ((u & 0x7f) | 0x80) << (8 * len);
            u >>= 7;
            len += 1;
        }
        Varint {
            word: word | u << (8 * len),
            len: len + 1,
        }
    }

    /// `v` as a varint; always fits (at most 5 bytes).
    #[inline]
    pub(crate) fn int(v: i32) -> Varint {
        Varint::in_word(u64::from(zigzag32(v)))
    }

    /// `v` as a varlong, or `None` if it takes more than 8 bytes.
    #[inline]
    pub(crate) fn long(v: i64) -> Option<Varint> {
        let u = zigzag64(v);
        (u < WORD_LIMIT).then(|| Varint::in_word(u))
    }

    #[inline]
    pub(crate) fn len(self) -> usize {
        self.len
    }

    /// Stores the varint at `out[at..]` and returns the position after it, or `None`, having
    /// written nothing, if `out` has fewer than 8 bytes from `at`: the store is a whole word
    /// (callers size `out` with [`PUT_SLACK`] to spare), and the bytes past the varint are left
    /// for what comes next to overwrite. Every byte from `at` to the returned position is
    /// written.
    #[inline]
    pub(crate) fn store_at(self, out: &mut [MaybeUninit<u8>], at: usize) -> Option<usize> {
        write_bytes(out, at, &self.word.to_le_bytes())?;
        Some(at + self.len)
    }

    /// Appends the varint to `out`, which should have [`PUT_SLACK`] bytes of spare capacity
    /// beyond it for the word store not to reallocate.
    #[inline]
    pub(crate) fn append_to(self, out: &mut Vec<u8>) {
        // One fixed-size store and a truncate, instead of a capacity check and a length update
        // per byte.
        let at = out.len();
        out.extend_from_slice(&self.word.to_le_bytes());
        out.truncate(at + self.len);
    }
}

/// Consecutive varints packed into one register, to be appended as a single 16-byte store: a
/// chain of appends goes through the vector's length in memory at every step, and bytes
/// gathered in a stack array are read back before their stores can be forwarded.
#[derive(Debug)]
pub(crate) struct Packed {
    word: u128,
    len: usize,
}

impl Packed {
    /// Most bytes a `Packed` holds.
    pub(crate) const CAPACITY: usize = 16;

    #[inline]
    pub(crate) fn new() -> Self {
        Packed { word: 0, len: 0 }
    }

    /// Adds `v`. The caller checks beforehand that everything it adds fits in
    /// [`CAPACITY`](Self::CAPACITY) bytes; bytes past it would be dropped.
    #[inline]
    pub(crate) fn push(&mut self, v: Varint) {
        debug_assert!(
            self.len + v.len <= Self::CAPACITY,
            "packed varints overflow"
        );
        let shift = u32::try_from(8 * self.len).unwrap_or(u32::MAX);
        self.word |= u128::from(v.word).checked_shl(shift).unwrap_or(0);
        self.len += v.len;
    }

    /// Appends the packed bytes to `out`, which should have [`PUT_SLACK`] bytes of spare
    /// capacity beyond them for the store not to reallocate.
    #[inline]
    pub(crate) fn append_to(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.word.to_le_bytes());
        out.truncate(at + self.len.min(Self::CAPACITY));
    }
}

/// Writes `bytes` at `out[at..]` and returns the position after them, or `None`, having
/// written nothing, if they do not fit. For encoders writing into a vector's spare capacity.
#[inline]
pub(crate) fn write_bytes(out: &mut [MaybeUninit<u8>], at: usize, bytes: &[u8]) -> Option<usize> {
    let end = at.checked_add(bytes.len())?;
    let slots = out.get_mut(at..end)?;
    // SAFETY: `MaybeUninit<u8>` has the size, alignment and layout of `u8` (its documentation
    // guarantees it), and every initialised byte is a valid `MaybeUninit<u8>`; the new slice
    // has `bytes`' length and borrows it, and is only read. (This is the stable spelling of
    // `write_copy_of_slice`, which needs a newer Rust than the crate's minimum; the
    // byte-at-a-time loop instead did not become a `memcpy`.)
    #[allow(unsafe_code)]
    let bytes: &[MaybeUninit<u8>] =
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len()) };
    slots.copy_from_slice(bytes);
    Some(end)
}

#[inline]
fn put_unsigned(out: &mut Vec<u8>, mut u: u64) {
    if u < WORD_LIMIT {
        Varint::in_word(u).append_to(out);
    } else {
        while u >= 0x80 {
            out.push((u as u8) | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
    }
}

/// Appends `v` as a varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_unsigned(out, u64::from(zigzag32(v)));
}

/// Appends `v` as a varlong.
#[inline]
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_unsigned(out, zigzag64(v));
}

/// Reads up to `max_len` 7-bit groups from `buf[*pos..]`. `last_max` is the largest value the
/// final allowed byte may hold, so that bits beyond the target width are rejected instead of
/// silently dropped (Kafka's reader drops them; no valid writer ever sets them).
#[inline]
fn read_unsigned(
    buf: &[u8],
    pos: &mut usize,
    max_len: usize,
    last_max: u8,
) -> Result<u64, &'static str> {
    let rest = buf.get(*pos..).unwrap_or(&[]);
    // Fast path: most lengths and deltas in real batches fit in one byte.
    match *rest {
        [b, ..] if b < 0x80 => {
            *pos += 1;
            return Ok(u64::from(b));
        }
        // Two bytes: record lengths of 64-8191 bytes and offset deltas up to 8191, the rest of
        // a typical batch. Every varint type allows two bytes, so no overflow check is needed.
        [b0, b1, ..] if b1 < 0x80 => {
            *pos += 2;
            return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
        }
        [_, ..] => {}
        [] => return Err("truncated varint"),
    }
    let mut value = 0u64;
    for (i, &b) in rest.iter().take(max_len).enumerate() {
        if i + 1 == max_len {
            if b & 0x80 != 0 {
                return Err("varint is longer than its type allows");
            }
            if b > last_max {
                return Err("varint overflows its type");
            }
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err("truncated varint")
}

/// Reads a varint (i32) at `*pos`, advancing `*pos` past it.
#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, &'static str> {
    // 4 full groups carry 28 bits; the fifth byte may hold only the remaining 4.
    let u = read_unsigned(buf, pos, MAX_VARINT_LEN, 0x0f)?;
    // The fifth-byte check above keeps `u` within 32 bits.
    Ok(unzigzag32(u as u32))
}

/// Reads a varlong (i64) at `*pos`, advancing `*pos` past it.
#[inline]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, &'static str> {
    // 9 full groups carry 63 bits; the tenth byte may hold only the last one.
    let u = read_unsigned(buf, pos, MAX_VARLONG_LEN, 0x01)?;
    Ok(unzigzag64(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    fn varlong_bytes(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, v);
        out
    }

    #[test]
    fn known_encodings() {
        // Values from Kafka's ByteUtils tests / the protobuf zigzag table.
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(-1), [0x01]);
        assert_eq!(varint_bytes(1), [0x02]);
        assert_eq!(varint_bytes(-64), [0x7f]);
        assert_eq!(varint_bytes(64), [0x80, 0x01]);
        assert_eq!(varint_bytes(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(varint_bytes(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(varlong_bytes(i64::MIN).len(), 10);
        assert_eq!(*varlong_bytes(i64::MIN).last().unwrap(), 0x01);
        assert_eq!(varlong_bytes(i64::MAX).len(), 10);
    }

    #[test]
    fn round_trips_and_lengths_match() {
        let ints = [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            8192,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
        ];
        for v in ints {
            let bytes = varint_bytes(v);
            assert_eq!(bytes.len(), varint_len(v), "len of {v}");
            let mut pos = 0;
            assert_eq!(read_varint(&bytes, &mut pos), Ok(v));
            assert_eq!(pos, bytes.len());
        }
        let longs = [
            0,
            1,
            -1,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        for v in longs {
            let bytes = varlong_bytes(v);
            assert_eq!(bytes.len(), varlong_len(v), "len of {v}");
            let mut pos = 0;
            assert_eq!(read_varlong(&bytes, &mut pos), Ok(v));
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn unsigned_len_is_groups_of_seven_bits() {
        for bits in 0..=64u32 {
            let u = if bits == 0 {
                0
            } else {
                u64::MAX >> (64 - bits)
            };
            let want = (bits.max(1) as usize).div_ceil(7);
            assert_eq!(unsigned_len(u), want, "{bits} bits");
            let mut out = Vec::new();
            put_unsigned(&mut out, u);
            assert_eq!(out.len(), want, "{bits} bits written");
        }
    }

    #[test]
    fn put_appends_exactly_the_varint() {
        let mut out = vec![0xaa; 3];
        put_varlong(&mut out, i64::MIN);
        put_varint(&mut out, 1);
        assert_eq!(&out[..3], [0xaa; 3]);
        assert_eq!(out.len(), 3 + 10 + 1);
        assert_eq!(
            &out[3..],
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]
        );
    }

    #[test]
    fn length_len_matches_varint_len() {
        for n in [0usize, 1, 63, 64, 8191, 8192, i32::MAX as usize] {
            assert_eq!(length_len(n), varint_len(n as i32));
        }
    }

    #[test]
    fn reads_at_an_offset() {
        let mut buf = vec![0xaa, 0xbb];
        put_varint(&mut buf, 300);
        put_varlong(&mut buf, -5);
        let mut pos = 2;
        assert_eq!(read_varint(&buf, &mut pos), Ok(300));
        assert_eq!(read_varlong(&buf, &mut pos), Ok(-5));
        assert_eq!(pos, buf.len());
    }

    #[test]
    fn truncated_input_is_an_error() {
        for v in [64, i32::MAX, i32::MIN] {
            let bytes = varint_bytes(v);
            for cut in 0..bytes.len() {
                let mut pos = 0;
                assert!(
                    read_varint(&bytes[..cut], &mut pos).is_err(),
                    "{v} cut at {cut}"
                );
                assert_eq!(pos, 0, "position must not move on error");
            }
        }
        let bytes = varlong_bytes(i64::MIN);
        for cut in 0..bytes.len() {
            assert!(read_varlong(&bytes[..cut], &mut 0).is_err());
        }
        // A position past the end is just more truncation, not a panic.
        assert!(read_varint(&[0x00], &mut 5).is_err());
    }

    #[test]
    fn overlong_input_is_an_error() {
        // Six bytes for an i32, eleven for an i64.
        assert!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut 0).is_err());
        let mut eleven = vec![0x80; 10];
        eleven.push(0x00);
        assert!(read_varlong(&eleven, &mut 0).is_err());
        // Five bytes whose last byte carries bits beyond 32.
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut 0).is_err());
        // Ten bytes whose last byte carries bits beyond 64.
        let mut ten = vec![0xff; 9];
        ten.push(0x02);
        assert!(read_varlong(&ten, &mut 0).is_err());
        // Redundant zero groups within the width are still legal, as in Kafka.
        assert_eq!(read_varint(&[0x80, 0x00], &mut 0), Ok(0));
    }
}
