//! Choosing a partition for a record: Kafka's murmur2 key hash, sticky keyless placement, or a
//! partitioner of the caller's own.

use std::fmt::Debug;

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit, so a key lands
/// on the same partition it would in Kafka.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's default keyed placement: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// Chooses partitions for records. Implement it to place records your own way and pass it to
/// [`ProducerConfig::partitioner`](crate::ProducerConfig::partitioner).
///
/// ```
/// use annals::Partitioner;
/// /// Everything for a tenant on one partition, by the key's prefix before ':'.
/// #[derive(Debug)]
/// struct ByTenant;
/// impl Partitioner for ByTenant {
///     fn partition(&self, _topic: &str, key: Option<&[u8]>, partitions: u32) -> u32 {
///         let key = key.unwrap_or_default();
///         let tenant = key.split(|b| *b == b':').next().unwrap_or_default();
///         annals::partition_for_key(tenant, partitions)
///     }
/// }
/// assert_eq!(ByTenant.partition("t", Some(b"acme:1"), 8), ByTenant.partition("t", Some(b"acme:2"), 8));
/// ```
pub trait Partitioner: Send + Sync + Debug {
    /// The partition (`< partitions`) for a record with this key.
    fn partition(&self, topic: &str, key: Option<&[u8]>, partitions: u32) -> u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_utils_test() {
        // The vectors of Kafka's own UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn key_to_partition_matches_an_independent_implementation() {
        // Computed with kafka-python 2.0.2's `kafka.partitioner.default.murmur2` (a separate
        // port of Kafka's Java code): key (hex) -> partition for 1, 2, 3, 7, 12, 100 partitions.
        let table: [(&str, [u32; 6]); 11] = [
            ("", [0, 1, 0, 2, 9, 81]),
            ("61", [0, 0, 1, 5, 4, 24]),
            ("3231", [0, 0, 0, 3, 0, 40]),
            ("666f6f626172", [0, 0, 0, 0, 6, 66]),
            ("6b6579", [0, 1, 1, 4, 1, 81]),
            ("43555354313233", [0, 1, 2, 2, 11, 27]),
            ("6f726465722d31", [0, 0, 1, 4, 10, 26]),
            ("637573746f6d65722d303030303432", [0, 1, 1, 5, 1, 5]),
            (
                "612d6c6974746c652d6269742d6c6f6e672d737472696e67",
                [0, 0, 2, 1, 8, 12],
            ),
            ("fffe0001", [0, 1, 1, 5, 1, 69]),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324",
                [0, 1, 1, 1, 7, 51],
            ),
        ];
        for (hex, want) in table {
            let key: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            for (n, w) in [1u32, 2, 3, 7, 12, 100].into_iter().zip(want) {
                assert_eq!(
                    partition_for_key(&key, n),
                    w,
                    "key {hex} with {n} partitions"
                );
            }
        }
    }
}
