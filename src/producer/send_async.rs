//! The producer from async code (feature `tokio`): a full buffer is awaited, not blocked on.

use super::{Producer, Shared};
use crate::error::{Error, Result};
use crate::format::Record;
use crate::producer::Delivery;

impl Producer {
    /// [`send`](Self::send) for async code: while the buffer is full it awaits space (up to
    /// `max_block`, then [`Error::BufferFull`]) instead of blocking the thread. Await the
    /// returned [`Delivery`] for the outcome. Cancel-safe: dropped while it waits, the record
    /// was not sent.
    ///
    /// A full buffer is waited out on tokio's timer: outside a tokio runtime a full buffer is
    /// [`Error::InvalidArgument`] (a send that finds room works anywhere).
    pub async fn send_async(&self, topic: &str, record: Record) -> Result<Delivery> {
        let sent = send_awaiting_space(&self.handle.shared, topic, None, &record).await;
        self.handle.shared.count_refused(sent)
    }

    /// [`send_to`](Self::send_to) for async code, as [`send_async`](Self::send_async).
    pub async fn send_to_async(
        &self,
        topic: &str,
        partition: u32,
        record: Record,
    ) -> Result<Delivery> {
        let sent = send_awaiting_space(&self.handle.shared, topic, Some(partition), &record).await;
        self.handle.shared.count_refused(sent)
    }

    /// [`flush`](Self::flush) for async code: the wait runs on tokio's blocking pool, so the
    /// runtime's workers go on meanwhile.
    pub async fn flush_async(&self) -> Result<()> {
        let producer = self.clone();
        crate::offload::on_blocking_pool("Producer::flush_async", move || producer.flush()).await
    }
}

async fn send_awaiting_space(
    shared: &Shared,
    topic: &str,
    partition: Option<u32>,
    record: &Record,
) -> Result<Delivery> {
    let mut deadline = None;
    // The release count read before the latest try. Only read once the buffer was found full,
    // so a send that finds room takes no lock for it; from then on it precedes every try, so a
    // release between a failed try and the wait is not missed.
    let mut releases = None;
    loop {
        match shared.send(topic, partition, record, None) {
            Err(Error::BufferFull { buffer_memory }) => {
                let Some(seen) = releases else {
                    releases = Some(shared.memory.releases());
                    continue;
                };
                crate::offload::runtime("Producer::send_async waiting for buffer space")?;
                let deadline = *deadline.get_or_insert_with(|| {
                    let at = crate::config::deadline_after(
                        std::time::Instant::now(),
                        shared.config.max_block,
                    );
                    tokio::time::Instant::from_std(at)
                });
                let released = shared.memory.released_since(seen);
                let started = std::time::Instant::now();
                let timed_out = tokio::time::timeout_at(deadline, released).await.is_err();
                shared.memory.record_wait(started.elapsed());
                if timed_out {
                    return Err(Error::BufferFull { buffer_memory });
                }
                releases = Some(shared.memory.releases());
            }
            other => return other,
        }
    }
}
