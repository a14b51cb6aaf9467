//! A latency histogram of fixed log2 buckets of microseconds, recorded with relaxed atomic adds
//! (no lock, no allocation), and the plain-data [`Histogram`] a snapshot reads out of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Number of buckets. Bucket `i < BUCKETS - 1` counts latencies below `2^i` µs and at least the
/// previous bucket's bound; the last one everything from `2^(BUCKETS - 2)` µs (about 18 minutes)
/// up. Fixed, so that a snapshot of two logs (or of one log twice) always lines up.
pub(crate) const BUCKETS: usize = 32;

/// The bucket a latency of `micros` falls in: 0 for under a microsecond, else one more than
/// the position of its highest set bit, capped at the last bucket.
fn bucket_of(micros: u64) -> usize {
    let bits = (u64::BITS - micros.leading_zeros()) as usize;
    bits.min(BUCKETS - 1)
}

/// The recording side, owned by the log's I/O counters.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    buckets: [AtomicU64; BUCKETS],
    /// Sum of every recorded latency, in nanoseconds (wraps after 584 years).
    total_nanos: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            total_nanos: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, count)| HistogramBucket {
                    below_micros: (i < BUCKETS - 1).then(|| 1u64 << i),
                    count: count.load(Ordering::Relaxed),
                })
                .collect(),
            total_time: Duration::from_nanos(self.total_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Latencies in fixed log2 buckets of microseconds, as counted since the log was opened.
///
/// The buckets are always the same 32, in increasing order: the first counts latencies under
/// 1 µs, bucket `i` those of at least `2^(i-1)` µs and under `2^i` µs, the last every latency of
/// at least `2^30` µs (about 18 minutes). Each bucket counts only its own range (the counts are
/// not cumulative; [`cumulative`](Self::cumulative) gives Prometheus' running sums).
///
/// ```
/// # fn main() -> annals::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = annals::Log::open(dir.path())?;
/// log.create_topic("t", annals::TopicConfig::default())?;
/// log.sync()?;
/// let fsync = log.metrics().fsync;
/// assert_eq!(fsync.histogram.count(), fsync.count);
/// assert_eq!(fsync.histogram.buckets[0].below_micros, Some(1));
/// assert_eq!(fsync.histogram.buckets.last().unwrap().below_micros, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Histogram {
    /// The buckets, lowest latencies first.
    pub buckets: Vec<HistogramBucket>,
    /// The sum of every latency counted.
    pub total_time: Duration,
}

/// One bucket of a [`Histogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct HistogramBucket {
    /// The bucket counts latencies below this many microseconds (and at least the bound of the
    /// bucket before it); `None` for the last bucket, which has no upper bound.
    pub below_micros: Option<u64>,
    /// Latencies in this bucket's range.
    pub count: u64,
}

impl Histogram {
    /// Latencies counted, over all buckets.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.count).sum()
    }

    /// `(below_micros, latencies below it)` per bucket: each count is the sum of its bucket and
    /// every bucket before it, as a Prometheus histogram's `le` buckets are.
    pub fn cumulative(&self) -> Vec<(Option<u64>, u64)> {
        let mut sum = 0u64;
        self.buckets
            .iter()
            .map(|b| {
                sum = sum.saturating_add(b.count);
                (b.below_micros, sum)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_log2_bucket() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(2), 2);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 3);
        assert_eq!(bucket_of(1023), 10);
        assert_eq!(bucket_of(1024), 11);
        assert_eq!(bucket_of(1 << 29), 30);
        assert_eq!(bucket_of((1 << 30) - 1), 30);
        assert_eq!(bucket_of(1 << 30), 31);
        assert_eq!(bucket_of(u64::MAX), 31);

        let h = AtomicHistogram::default();
        h.record(Duration::from_nanos(500));
        h.record(Duration::from_micros(3));
        h.record(Duration::from_micros(3));
        h.record(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!(s.buckets.len(), BUCKETS);
        // Every bucket's range is below its bound and at or above the one before's.
        for (i, b) in s.buckets.iter().enumerate() {
            let expected = match i {
                0 => 1,
                2 => 2,
                31 => 1,
                _ => 0,
            };
            assert_eq!(b.count, expected, "bucket {i}");
        }
        assert_eq!(s.buckets[2].below_micros, Some(4));
        assert_eq!(s.count(), 4);
        assert_eq!(
            s.total_time,
            Duration::from_nanos(500) + Duration::from_micros(6) + Duration::from_secs(3600)
        );
        let cumulative = s.cumulative();
        assert_eq!(cumulative[0], (Some(1), 1));
        assert_eq!(cumulative[2], (Some(4), 3));
        assert_eq!(cumulative[31], (None, 4));
    }
}
