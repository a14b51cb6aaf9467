//! Batch buffers the writer thread hands back once a batch is in the log, for the next batches
//! to encode into. A batch starts small (a producer may have a batch open on every partition, so
//! reserving its full size up front would cost that much memory per partition) and grows by
//! reallocation, copying what it holds each time: about one copy of the batch, and 5 % of a
//! one-at-a-time `send` by callgrind. A reused buffer has already grown.
//!
//! Bounded: at most [`POOLED`] buffers, none larger than four times the batch size (a buffer
//! that doubled its way past the batch size is up to twice it), so the pool holds at most a
//! MiB at the default batch size, however many partitions there are.

use parking_lot::Mutex;

/// Buffers kept: one batch filling while another is written, with room for a few partitions.
const POOLED: usize = 4;

#[derive(Debug)]
pub(crate) struct BufferPool {
    buffers: Mutex<Vec<Vec<u8>>>,
    /// Larger buffers (from a batch that grew past the batch size) are dropped, not kept.
    max_capacity: usize,
}

impl BufferPool {
    /// A pool for batches of about `batch_bytes`.
    pub(crate) fn new(batch_bytes: usize) -> BufferPool {
        BufferPool {
            buffers: Mutex::new(Vec::new()),
            max_capacity: batch_bytes.saturating_mul(4),
        }
    }

    /// An empty buffer, grown by an earlier batch if one is pooled.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.buffers.lock().pop().unwrap_or_default()
    }

    /// Keeps `buffer` for a later batch, if the pool has room and it is not oversized.
    pub(crate) fn give_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() == 0 || buffer.capacity() > self.max_capacity {
            return;
        }
        buffer.clear();
        let mut buffers = self.buffers.lock();
        if buffers.len() < POOLED {
            buffers.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_number_of_cleared_buffers() {
        let pool = BufferPool::new(1024);
        for _ in 0..POOLED + 3 {
            pool.give_back(vec![7u8; 100]);
        }
        let taken: Vec<Vec<u8>> = (0..POOLED + 1).map(|_| pool.take()).collect();
        for buffer in &taken[..POOLED] {
            assert!(buffer.is_empty() && buffer.capacity() >= 100);
        }
        assert_eq!(taken[POOLED].capacity(), 0, "only POOLED were kept");
    }

    #[test]
    fn oversized_and_empty_buffers_are_dropped() {
        let pool = BufferPool::new(1024);
        pool.give_back(Vec::with_capacity(4097));
        pool.give_back(Vec::new());
        assert_eq!(pool.take().capacity(), 0);
    }
}
