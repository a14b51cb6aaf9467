//! Writes real data to a log in a temporary directory — with `Partition::append` and with a
//! `Producer` — reads it back, reopens the directory and shows that everything is still there.
//! Run with:
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use annals::{Compression, ConsumerConfig, Durability, Log, ProducerConfig, Record, TopicConfig};

// `main` returning `annals::Result` would print the error with `Debug`; annals' `Display`
// messages are the ones written for people (they name the path and the operation).
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> annals::Result<()> {
    let dir = tempfile::tempdir()?;
    println!("log directory: {}", dir.path().display());

    let log = Log::open(dir.path())?;
    log.create_topic(
        "orders",
        TopicConfig::default()
            .partitions(3)
            .segment_bytes(4 << 20)
            .compression(Compression::Lz4),
    )?;
    println!("created topic 'orders' with 3 partitions (lz4, 4 MiB segments)");

    // Append 300,000 events in batches of 1,000 to partition 0.
    let p = log.partition("orders", 0)?;
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..300_000u64 {
        batch.push(
            Record::new(format!(
                r#"{{"order":{i},"status":"created","amount":{}}}"#,
                i % 997
            ))
            .key(format!("customer-{:06}", i % 5000))
            .header("source", "quickstart"),
        );
        if batch.len() == 1000 {
            p.append(&batch)?;
            batch.clear();
        }
    }
    p.sync()?;
    let took = started.elapsed();
    println!(
        "appended 300000 records in {:.1} ms ({:.2} M records/s), synced; high watermark {}, {} segment(s), {} bytes on disk",
        took.as_secs_f64() * 1e3,
        300_000.0 / took.as_secs_f64() / 1e6,
        p.high_watermark(),
        p.segment_count(),
        p.size_bytes()
    );

    // Read everything back.
    let started = Instant::now();
    let mut offset = p.log_start_offset();
    let mut count = 0u64;
    while offset < p.high_watermark() {
        let records = p.read(offset, 1 << 20)?;
        count += records.len() as u64;
        offset = records.last().map(|r| r.offset + 1).unwrap_or(offset);
    }
    let took = started.elapsed();
    println!(
        "read back {count} records in {:.1} ms ({:.2} M records/s)",
        took.as_secs_f64() * 1e3,
        count as f64 / took.as_secs_f64() / 1e6
    );

    let first = &p.read(0, 1)?[0];
    println!(
        "offset 0: key={:?} value={:?}",
        String::from_utf8_lossy(first.key.as_deref().unwrap_or_default()),
        String::from_utf8_lossy(first.value.as_deref().unwrap_or_default())
    );

    // The producer: one send per event, batched, compressed and partitioned by key (exactly as
    // Kafka's default partitioner would) in the background; acknowledged once synced to disk.
    let producer = log.producer(ProducerConfig::default().durability(Durability::Synced))?;
    let started = Instant::now();
    let mut last = None;
    for i in 0..100_000u64 {
        let record = Record::new(format!(r#"{{"order":{i},"status":"paid"}}"#))
            .key(format!("customer-{:06}", i % 5000));
        last = Some(producer.send("orders", record)?);
    }
    producer.flush()?;
    let meta = last.expect("sent something").wait()?;
    let took = started.elapsed();
    let per_partition: Vec<u64> = (0..3)
        .map(|n| log.partition("orders", n).map(|p| p.high_watermark()))
        .collect::<annals::Result<_>>()?;
    println!(
        "producer sent 100000 records in {:.1} ms ({:.2} M records/s, synced); last one at partition {} offset {}; partition sizes {:?}",
        took.as_secs_f64() * 1e3,
        100_000.0 / took.as_secs_f64() / 1e6,
        meta.partition,
        meta.offset.unwrap_or_default(),
        per_partition
    );
    producer.close()?;

    // A consumer group of two members, one per thread, splits the three partitions; each polls
    // until its partitions are drained and commits (durably) where it stopped.
    let total: u64 = (0..3)
        .map(|n| log.partition("orders", n).map(|p| p.high_watermark()))
        .sum::<annals::Result<u64>>()?;
    let started = Instant::now();
    let members: Vec<_> = (0..2)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || -> annals::Result<u64> {
                let mut consumer = log.consumer(ConsumerConfig::new("billing"))?;
                consumer.subscribe(&["orders"])?;
                let mut seen = 0;
                let mut records = Vec::new();
                loop {
                    consumer.poll_into(Duration::from_millis(200), &mut records)?;
                    seen += records.len() as u64;
                    consumer.commit()?;
                    let group = log.group_lag("billing")?;
                    if records.is_empty() && group.len() == 3 && group.iter().all(|l| l.lag == 0) {
                        consumer.close()?;
                        return Ok(seen);
                    }
                }
            })
        })
        .collect();
    let mut consumed = 0;
    for m in members {
        consumed += m.join().expect("consumer thread")?;
    }
    println!(
        "group 'billing' (2 members) consumed {consumed} of {total} records in {:.1} ms; lag now {:?}",
        started.elapsed().as_secs_f64() * 1e3,
        log.group_lag("billing")?.iter().map(|l| l.lag).collect::<Vec<_>>()
    );

    // Reopen: a clean close lets the next open skip scanning.
    log.close()?;
    let started = Instant::now();
    let log = Log::open(dir.path())?;
    let p = log.partition("orders", 0)?;
    println!(
        "reopened in {:.1} ms: high watermark {}, record 299999 = {:?}",
        started.elapsed().as_secs_f64() * 1e3,
        p.high_watermark(),
        String::from_utf8_lossy(p.read(299_999, 1)?[0].value.as_deref().unwrap_or_default())
    );
    Ok(())
}
