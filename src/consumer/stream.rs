//! `Consumer::stream`: what `poll` returns, as a [`futures_core::Stream`] (feature `tokio`).
//!
//! A stream is a consumer's `poll` that never blocks: each `poll_next` registers the task's
//! waker with the consumer's [`Waiter`](crate::wait::Waiter) *before* it looks for data, so
//! an append that lands after the look wakes the task, which looks again (no lost wake-up, no
//! polling loop, no thread). A group member's heartbeat and the auto-commit run on a tokio
//! timer that wakes the task when they are due.
//!
//! Records polled but not yet yielded stay in the stream; dropping the stream (or reaching
//! the consumer through [`RecordStream::consumer`]) hands them back, positions rewound to the
//! first one not yielded. So a cancelled or dropped stream loses and skips nothing, and a
//! commit made through it covers exactly the records it yielded.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use super::fetch::PollItem;
use super::{ConsumedBatch, ConsumedRecord, Consumer};
use crate::error::{Error, Result};

/// The records of a [`Consumer`], one at a time, as a [`Stream`]; made by
/// [`Consumer::stream`].
///
/// Every record is yielded once, in the order `poll` would return it; an error is yielded as
/// an item and the stream goes on (as the next `poll` would), except [`Error::Closed`], after
/// which the stream ends. Poll it inside a tokio runtime with timers enabled (the default of
/// `#[tokio::main]`): a group member's heartbeat and the auto-commit use tokio's timer.
///
/// Rebalance callbacks and auto-commits run inside `poll_next`, on the task's thread, as they
/// run inside `poll`; an auto-commit fsyncs there. Turn `enable_auto_commit` off and use
/// [`Consumer::commit_async`] to keep fsyncs off the runtime's workers.
///
/// `fetch_min_bytes` does not apply: the stream yields a record as soon as there is one.
#[derive(Debug)]
pub struct RecordStream<'c> {
    core: Core<'c, ConsumedRecord>,
}

/// The whole batches of a [`Consumer`] as a [`Stream`] ([`Consumer::poll_batches`] as a
/// stream, the fastest way to consume); made by [`Consumer::batch_stream`]. Behaves as
/// [`RecordStream`] does.
#[derive(Debug)]
pub struct BatchStream<'c> {
    core: Core<'c, ConsumedBatch>,
}

impl Consumer {
    /// This consumer's records as a [`Stream`] (feature `tokio`): `while let Some(record) =
    /// stream.next().await`. The stream borrows the consumer; reach it meanwhile (to commit,
    /// seek, or see its lag) through [`RecordStream::consumer`].
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{ConsumerConfig, Log, Record, TopicConfig};
    /// use futures_util::StreamExt;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// log.create_topic("orders", TopicConfig::default())?;
    /// log.partition("orders", 0)?.append(&[Record::new("created"), Record::new("paid")])?;
    ///
    /// let runtime = tokio::runtime::Runtime::new().unwrap();
    /// runtime.block_on(async {
    ///     let mut consumer = log.consumer(ConsumerConfig::new("billing"))?;
    ///     consumer.subscribe(&["orders"])?;
    ///     let mut stream = consumer.stream();
    ///     while let Some(record) = stream.next().await {
    ///         let record = record?;
    ///         println!("{} {:?}", record.offset, record.value_str());
    ///         if record.offset == 1 {
    ///             break;
    ///         }
    ///     }
    ///     // Commits what the stream yielded: offsets 0 and 1.
    ///     stream.consumer().commit_async().await?;
    ///     assert_eq!(stream.consumer().committed("orders", 0)?.unwrap().offset, 2);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn stream(&mut self) -> RecordStream<'_> {
        RecordStream {
            core: Core::new(self),
        }
    }

    /// This consumer's whole batches as a [`Stream`] (feature `tokio`); see
    /// [`poll_batches`](Self::poll_batches) and [`stream`](Self::stream).
    pub fn batch_stream(&mut self) -> BatchStream<'_> {
        BatchStream {
            core: Core::new(self),
        }
    }

    /// [`commit`](Self::commit) from async code (feature `tokio`), without stalling the
    /// runtime: on a multi-thread runtime the worker hands its other tasks to the rest of the
    /// pool while the commit fsyncs (`tokio::task::block_in_place`, because the commit
    /// borrows this consumer and so cannot move to the blocking pool). On a current-thread
    /// runtime there is no other worker, and the commit runs as `commit` does.
    pub async fn commit_async(&mut self) -> Result<()> {
        crate::offload::in_place(|| self.commit())
    }
}

impl<'c> RecordStream<'c> {
    /// The consumer, with every record polled and not yet yielded handed back first (their
    /// partitions' positions rewound to them), so a `commit`, `position` or `lag` sees
    /// exactly what this stream yielded. The stream goes on from there.
    pub fn consumer(&mut self) -> &mut Consumer {
        self.core.consumer()
    }
}

impl<'c> BatchStream<'c> {
    /// The consumer, with the batches not yet yielded handed back; see
    /// [`RecordStream::consumer`].
    pub fn consumer(&mut self) -> &mut Consumer {
        self.core.consumer()
    }
}

impl Stream for RecordStream<'_> {
    type Item = Result<ConsumedRecord>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().core.poll_next(cx)
    }
}

impl Stream for BatchStream<'_> {
    type Item = Result<ConsumedBatch>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().core.poll_next(cx)
    }
}

/// What both streams share.
struct Core<'c, I: PollItem> {
    consumer: &'c mut Consumer,
    /// Polled (the consumer's positions are past them) and not yet yielded.
    ready: VecDeque<I>,
    /// The buffer each poll fills, kept to reuse its allocation.
    polled: Vec<I>,
    /// Wakes the task when the consumer's next timed duty (heartbeat, auto-commit) is due.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set once the consumer or its log closed.
    ended: bool,
}

impl<I: PollItem> std::fmt::Debug for Core<'_, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("consumer", &self.consumer)
            .field("ready", &self.ready.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<'c, I: PollItem> Core<'c, I> {
    fn new(consumer: &'c mut Consumer) -> Self {
        Core {
            consumer,
            ready: VecDeque::new(),
            polled: Vec::new(),
            timer: None,
            ended: false,
        }
    }

    fn consumer(&mut self) -> &mut Consumer {
        self.give_back();
        self.consumer
    }

    fn give_back(&mut self) {
        if !self.ready.is_empty() {
            I::give_back(self.consumer, self.ready.drain(..));
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<I>>> {
        if let Some(item) = self.ready.pop_front() {
            return Poll::Ready(Some(Ok(item)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        // Registered before the look: an append from now on wakes this task.
        self.consumer.waiter.register(cx.waker());
        match self.consumer.poll_with(Duration::ZERO, &mut self.polled) {
            Ok(()) => {}
            Err(Error::Closed) => {
                self.ended = true;
                return Poll::Ready(Some(Err(Error::Closed)));
            }
            Err(e) => return Poll::Ready(Some(Err(e))),
        }
        let mut polled = self.polled.drain(..);
        if let Some(first) = polled.next() {
            self.ready.extend(polled);
            return Poll::Ready(Some(Ok(first)));
        }
        drop(polled);
        let Some(due) = self.consumer.next_duty() else {
            self.timer = None;
            return Poll::Pending;
        };
        if let Err(e) = crate::offload::runtime("Consumer::stream of a group member") {
            return Poll::Ready(Some(Err(e)));
        }
        let due = tokio::time::Instant::from_std(due);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        if timer.as_mut().poll(cx).is_ready() {
            // Due already: the next poll does the duty (a poll sets its next deadline).
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl<I: PollItem> Drop for Core<'_, I> {
    fn drop(&mut self) {
        self.give_back();
    }
}
