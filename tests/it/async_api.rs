//! Feature `tokio`: `Consumer::stream`, `Delivery` as a future, `Producer::send_async` and the
//! async wrappers of the calls that fsync, on real tokio runtimes.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use annals::{
    ConsumedRecord, ConsumerConfig, Durability, Error, Log, ProducerConfig, Record, RecordStream,
    TopicConfig, TopicPartition,
};
use futures_util::{Stream, StreamExt};

/// A hang guard, never a measurement: generous for a loaded machine.
const GUARD: Duration = Duration::from_secs(60);

fn log_with(topic: &str, partitions: u32) -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic(topic, TopicConfig::default().partitions(partitions))
        .unwrap();
    (dir, log)
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn assign_only() -> ConsumerConfig {
    ConsumerConfig::new("reader").enable_auto_commit(false)
}

/// Counts its wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll_once(
    stream: &mut RecordStream<'_>,
    waker: &Waker,
) -> Poll<Option<annals::Result<ConsumedRecord>>> {
    Pin::new(stream).poll_next(&mut Context::from_waker(waker))
}

async fn next_record(stream: &mut RecordStream<'_>) -> ConsumedRecord {
    tokio::time::timeout(GUARD, stream.next())
        .await
        .expect("the stream yielded nothing within the guard")
        .expect("the stream ended")
        .expect("the stream yielded an error")
}

#[test]
fn a_stream_follows_a_producer_on_a_multi_thread_runtime() {
    let (_dir, log) = log_with("orders", 3);
    let producer = log
        .producer(ProducerConfig::default().durability(Durability::Written))
        .unwrap();
    let runtime = multi_thread();
    runtime.block_on(async {
        let mut consumer = log
            .consumer(ConsumerConfig::new("billing").enable_auto_commit(false))
            .unwrap();
        consumer.subscribe(&["orders"]).unwrap();
        let writer = tokio::spawn(async move {
            for i in 0..300u32 {
                let key = format!("k{}", i % 7);
                let delivery = producer
                    .send_async("orders", Record::new(format!("v{i}")).key(key))
                    .await
                    .unwrap();
                if i % 10 == 0 {
                    // Awaiting a delivery is what a request/response writer does.
                    delivery.await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
            producer.flush_async().await.unwrap();
        });
        let mut stream = consumer.stream();
        let mut seen = std::collections::BTreeMap::<u32, Vec<u64>>::new();
        let mut count = 0;
        while count < 300 {
            let r = next_record(&mut stream).await;
            seen.entry(r.partition).or_default().push(r.offset);
            count += 1;
        }
        writer.await.unwrap();
        for offsets in seen.values() {
            let expected: Vec<u64> = (0..offsets.len() as u64).collect();
            assert_eq!(offsets, &expected, "each partition in order, once");
        }
        stream.consumer().commit_async().await.unwrap();
        for (p, offsets) in &seen {
            let committed = stream.consumer().committed("orders", *p).unwrap().unwrap();
            assert_eq!(committed.offset, offsets.len() as u64);
        }
    });
}

#[test]
fn dropping_a_stream_loses_and_skips_nothing() {
    let (_dir, log) = log_with("t", 1);
    let p = log.partition("t", 0).unwrap();
    let batch: Vec<Record> = (0..10).map(|i| Record::new(format!("{i}"))).collect();
    p.append(&batch).unwrap();
    let runtime = current_thread();
    let mut consumer = log.consumer(assign_only()).unwrap();
    consumer.assign(&[("t", 0)]).unwrap();
    runtime.block_on(async {
        // One record yielded, nine polled with it and held by the stream.
        let mut stream = consumer.stream();
        assert_eq!(next_record(&mut stream).await.offset, 0);
        drop(stream);
    });
    assert_eq!(consumer.position("t", 0).unwrap(), 1);
    runtime.block_on(async {
        let mut stream = consumer.stream();
        assert_eq!(next_record(&mut stream).await.offset, 1);
        assert_eq!(next_record(&mut stream).await.offset, 2);
        // A commit through the stream covers what it yielded, not what it holds.
        stream.consumer().commit_async().await.unwrap();
        assert_eq!(
            stream.consumer().committed("t", 0).unwrap().unwrap().offset,
            3
        );
        assert_eq!(next_record(&mut stream).await.offset, 3);
        // A pending `next` cancelled by a timeout: the stream is at the end and stays there.
        for _ in 4..10 {
            next_record(&mut stream).await;
        }
        let waited = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
        assert!(waited.is_err(), "nothing more to yield: {waited:?}");
    });
    assert_eq!(consumer.position("t", 0).unwrap(), 10);
    // What comes next is read by a plain poll: the stream's waker registration did no harm.
    p.append(&[Record::new("10")]).unwrap();
    let got = consumer.poll(GUARD).unwrap();
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), [10]);
}

#[test]
fn dropping_a_batch_stream_hands_its_batches_back() {
    let (_dir, log) = log_with("t", 1);
    let p = log.partition("t", 0).unwrap();
    for i in 0..4 {
        p.append(&[Record::new(format!("{i}a")), Record::new(format!("{i}b"))])
            .unwrap();
    }
    let mut consumer = log.consumer(assign_only()).unwrap();
    consumer.assign(&[("t", 0)]).unwrap();
    consumer.seek("t", 0, 1).unwrap(); // in the middle of the first batch
    let runtime = current_thread();
    runtime.block_on(async {
        let mut stream = consumer.batch_stream();
        let first = stream.next().await.unwrap().unwrap();
        let offsets: Vec<u64> = first.batch.records().map(|r| r.unwrap().offset).collect();
        assert_eq!(offsets, [1]);
        let second = stream.next().await.unwrap().unwrap();
        assert_eq!(second.batch.header().base_offset, 2);
        // Batches 4.. are held by the stream; the position is past what it yielded only.
        assert_eq!(stream.consumer().position("t", 0).unwrap(), 4);
    });
    // Read on as records: nothing skipped, nothing twice.
    let rest: Vec<u64> = consumer
        .poll(GUARD)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(rest, [4, 5, 6, 7]);
}

#[test]
fn a_pending_stream_is_woken_by_appends_and_never_otherwise() {
    let (_dir, log) = log_with("t", 1);
    let p = log.partition("t", 0).unwrap();
    let mut consumer = log.consumer(assign_only()).unwrap();
    consumer.assign(&[("t", 0)]).unwrap();
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut stream = consumer.stream();
    assert!(poll_once(&mut stream, &waker).is_pending());
    // Idle: no timer (assign-only, no auto-commit) and no busy loop.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        0,
        "woken without an append"
    );
    for i in 0..50u64 {
        p.append(&[Record::new("x")]).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            i as usize + 1,
            "one wake-up per append to a pending stream"
        );
        match poll_once(&mut stream, &waker) {
            Poll::Ready(Some(Ok(r))) => assert_eq!(r.offset, i),
            other => panic!("append {i}: {other:?}"),
        }
        assert!(poll_once(&mut stream, &waker).is_pending());
    }
    // Appends while the task has not polled again since its wake-up wake it no further.
    p.append(&[Record::new("y")]).unwrap();
    p.append(&[Record::new("z")]).unwrap();
    assert_eq!(counter.0.load(Ordering::SeqCst), 51);
    match poll_once(&mut stream, &waker) {
        Poll::Ready(Some(Ok(r))) => assert_eq!(r.offset, 50),
        other => panic!("{other:?}"),
    }
    match poll_once(&mut stream, &waker) {
        Poll::Ready(Some(Ok(r))) => assert_eq!(r.offset, 51),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rebalance_reaches_a_pending_stream() {
    let (_dir, log) = log_with("t", 2);
    let runtime = multi_thread();
    let log2 = log.clone();
    let (assigned_tx, assigned_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let first = runtime.spawn(async move {
        let mut consumer = log2
            .consumer(ConsumerConfig::new("g").enable_auto_commit(false))
            .unwrap();
        consumer.subscribe(&["t"]).unwrap();
        let mut stream = consumer.stream();
        let mut got = Vec::new();
        loop {
            tokio::select! {
                r = stream.next() => {
                    let r = r.unwrap().unwrap();
                    got.push((r.partition, r.offset));
                }
                _ = &mut done_rx => break,
            }
            if got.len() == 1 {
                let _ = assigned_tx.send(());
            }
        }
        let assignment = stream.consumer().assignment();
        (got, assignment)
    });
    // The first member owns both partitions and reads a record from each... once it is
    // pending, a second member joins from a plain thread.
    let p0 = log.partition("t", 0).unwrap();
    let p1 = log.partition("t", 1).unwrap();
    p0.append(&[Record::new("0")]).unwrap();
    assigned_rx.recv_timeout(GUARD).unwrap();
    let mut second = log
        .consumer(ConsumerConfig::new("g").enable_auto_commit(false))
        .unwrap();
    second.subscribe(&["t"]).unwrap();
    let deadline = std::time::Instant::now() + GUARD;
    // The join needs the first member to give up a partition, which only its stream's
    // `poll_next` can do: it must be woken while pending.
    while second.assignment().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pending stream never rebalanced"
        );
        second.poll(Duration::from_millis(50)).unwrap();
    }
    assert_eq!(second.assignment().len(), 1);
    let mine = second.assignment()[0].clone();
    p0.append(&[Record::new("a")]).unwrap();
    p1.append(&[Record::new("b")]).unwrap();
    let deadline = std::time::Instant::now() + GUARD;
    let mut second_got = Vec::new();
    while second_got.is_empty() {
        assert!(std::time::Instant::now() < deadline);
        second_got.extend(second.poll(Duration::from_millis(50)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(200));
    done_tx.send(()).unwrap();
    let (got, assignment) = runtime.block_on(first).unwrap();
    assert_eq!(assignment.len(), 1);
    assert_ne!(assignment[0], mine);
    assert_eq!(second_got.len(), 1);
    assert_eq!(second_got[0].partition, mine.partition);
    // The first member read the new record of the partition it kept.
    let kept = assignment[0].partition;
    assert!(
        got.contains(&(kept, if kept == 0 { 1 } else { 0 })),
        "{got:?}"
    );
}

#[test]
fn awaiting_a_delivery_closes_its_batch() {
    let (_dir, log) = log_with("t", 1);
    // A linger no test waits out: only closing the batch completes the delivery in time.
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(Durability::Synced)
                .linger(Duration::from_secs(3600)),
        )
        .unwrap();
    let runtime = current_thread();
    runtime.block_on(async {
        let first = producer.send_async("t", Record::new("a")).await.unwrap();
        let second = producer.send_async("t", Record::new("b")).await.unwrap();
        let meta = tokio::time::timeout(GUARD, second).await.unwrap().unwrap();
        assert_eq!((meta.partition, meta.offset), (0, Some(1)));
        // The first shared the batch: done by now.
        assert_eq!(first.try_result().unwrap().unwrap().offset, Some(0));
        assert_eq!(first.await.unwrap().offset, Some(0));
    });
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 2);
}

#[test]
fn send_async_awaits_buffer_space_and_gives_up_after_max_block() {
    let (_dir, log) = log_with("t", 1);
    let config = ProducerConfig::default()
        .buffer_memory(65536)
        .linger(Duration::from_secs(3600))
        .max_block(Duration::from_secs(3600));
    let producer = log.producer(config).unwrap();
    let value = vec![7u8; 40_000];
    let runtime = current_thread();
    runtime.block_on(async {
        let first = producer
            .send_async("t", Record::new(value.clone()))
            .await
            .unwrap();
        // The buffer holds the first record until its batch is written: the second waits.
        let mut second = Box::pin(producer.send_async("t", Record::new(value.clone())));
        let waker = Waker::noop();
        assert!(second
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending());
        // Cancelled while waiting: that record was never sent.
        drop(second);
        let third = producer.send_async("t", Record::new(value.clone()));
        let writer = async {
            tokio::task::yield_now().await;
            first.await.unwrap() // closes the first batch; writing it frees its space
        };
        let (third, first_meta) = tokio::join!(third, writer);
        assert_eq!(first_meta.offset, Some(0));
        assert_eq!(third.unwrap().await.unwrap().offset, Some(1));
    });
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 2);

    let impatient = log
        .producer(
            ProducerConfig::default()
                .buffer_memory(65536)
                .linger(Duration::from_secs(3600))
                .max_block(Duration::from_millis(20)),
        )
        .unwrap();
    runtime.block_on(async {
        let _held = impatient
            .send_async("t", Record::new(value.clone()))
            .await
            .unwrap();
        let err = impatient
            .send_async("t", Record::new(value.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::BufferFull {
                    buffer_memory: 65536
                }
            ),
            "{err}"
        );
    });
}

#[test]
fn the_fsync_wrappers_work_on_both_runtimes_and_fail_clearly_outside_one() {
    let (_dir, log) = log_with("t", 1);
    let p = log.partition("t", 0).unwrap();
    let producer = log.producer(ProducerConfig::default()).unwrap();
    for runtime in [current_thread(), multi_thread()] {
        runtime.block_on(async {
            p.append(&[Record::new("x")]).unwrap();
            p.sync_async().await.unwrap();
            producer.send_async("t", Record::new("y")).await.unwrap();
            producer.flush_async().await.unwrap();
            let mut consumer = log.consumer(ConsumerConfig::new("w")).unwrap();
            consumer.assign(&[TopicPartition::new("t", 0)]).unwrap();
            consumer.seek("t", 0, 1).unwrap();
            consumer.commit_async().await.unwrap();
            assert_eq!(consumer.committed("t", 0).unwrap().unwrap().offset, 1);
        });
    }
    // Outside a runtime: an error that says what is missing, not a panic.
    let mut sync = Box::pin(p.sync_async());
    match sync.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Err(Error::InvalidArgument(msg))) => {
            assert!(msg.contains("tokio runtime"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    // A group member's stream needs the runtime's timer for its heartbeat.
    let mut member = log.consumer(ConsumerConfig::new("g")).unwrap();
    member.subscribe(&["t"]).unwrap();
    member.seek_to_end(&[TopicPartition::new("t", 0)]).ok();
    let mut stream = member.stream();
    let mut saw_error = false;
    for _ in 0..10 {
        match poll_once(&mut stream, Waker::noop()) {
            Poll::Ready(Some(Ok(_))) => continue,
            Poll::Ready(Some(Err(Error::InvalidArgument(msg)))) => {
                assert!(msg.contains("tokio runtime"), "{msg}");
                saw_error = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_error);
}

#[test]
fn a_stream_ends_after_its_log_closes() {
    let (_dir, log) = log_with("t", 1);
    let mut consumer = log.consumer(assign_only()).unwrap();
    consumer.assign(&[("t", 0)]).unwrap();
    let runtime = current_thread();
    runtime.block_on(async {
        let mut stream = consumer.stream();
        let pending = tokio::time::timeout(Duration::from_millis(10), stream.next()).await;
        assert!(pending.is_err());
        log.close().unwrap();
        let item = tokio::time::timeout(GUARD, stream.next()).await.unwrap();
        assert!(matches!(item, Some(Err(Error::Closed))), "{item:?}");
        assert!(stream.next().await.is_none());
    });
}
