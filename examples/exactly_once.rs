//! Consume → transform → produce, exactly once: a copier reads `orders`, writes an uppercased
//! copy of each record to `orders-upper`, and commits its input position in the same
//! transaction as its output. Halfway through, a transaction is aborted (as if the copier had
//! failed mid-way): read_committed readers never see its records, and the copier resumes from
//! the last committed position, so every input record reaches the output exactly once.
//! Run with:
//!
//! ```text
//! cargo run --release --example exactly_once
//! ```

use std::process::ExitCode;
use std::time::Duration;

use annals::{
    ConsumerConfig, IsolationLevel, Log, OffsetAndMetadata, ProducerConfig, Record, TopicConfig,
    TopicPartition,
};

const RECORDS: u64 = 10_000;

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
    let log = Log::open(dir.path())?;
    log.create_topic("orders", TopicConfig::default())?;
    log.create_topic("orders-upper", TopicConfig::default())?;
    let input = log.partition("orders", 0)?;
    let batch: Vec<Record> = (0..RECORDS)
        .map(|i| Record::new(format!("order {i}")).key(format!("customer-{}", i % 100)))
        .collect();
    for chunk in batch.chunks(1000) {
        input.append(chunk)?;
    }
    println!("seeded {RECORDS} records into 'orders'");

    let producer = log.producer(ProducerConfig::default().transactional_id("upper-copier"))?;
    producer.init_transactions()?;
    let tp = TopicPartition::new("orders", 0);
    let mut failed_once = false;
    let mut transactions = 0;
    loop {
        // A fresh consumer per attempt, as a restarted copier would be: it starts at the
        // group's committed offset.
        let mut consumer = log.consumer(
            ConsumerConfig::new("copier")
                .enable_auto_commit(false)
                .max_poll_records(500),
        )?;
        consumer.assign(std::slice::from_ref(&tp))?;
        let mut aborted = false;
        loop {
            let records = consumer.poll(Duration::from_millis(100))?;
            if records.is_empty() {
                break;
            }
            producer.begin_transaction()?;
            for r in &records {
                let upper =
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_uppercase();
                let mut out = Record::new(upper);
                if let Some(k) = &r.key {
                    out = out.key(k.clone());
                }
                producer.send("orders-upper", out)?;
            }
            let position = consumer.position("orders", 0)?;
            producer.send_offsets_to_transaction(
                &[(tp.clone(), OffsetAndMetadata::new(position))],
                &consumer.group_metadata(),
            )?;
            if !failed_once && position >= RECORDS / 2 {
                // Pretend the copier failed before it could commit.
                producer.abort_transaction()?;
                failed_once = true;
                aborted = true;
                println!("aborted the transaction ending at input offset {position}");
                break;
            }
            producer.commit_transaction()?;
            transactions += 1;
        }
        if !aborted {
            break;
        }
    }
    println!("committed {transactions} transactions");

    // What a read_committed reader sees: every input record once, in order.
    let mut reader = log
        .consumer(ConsumerConfig::new("auditor").isolation_level(IsolationLevel::ReadCommitted))?;
    reader.assign(&[TopicPartition::new("orders-upper", 0)])?;
    let mut seen = 0u64;
    loop {
        let records = reader.poll(Duration::from_millis(100))?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let want = format!("ORDER {seen}");
            if r.value.as_deref() != Some(want.as_bytes()) {
                return Err(annals::Error::InvalidArgument(format!(
                    "offset {}: read {:?}, expected {want:?}",
                    r.offset, r.value
                )));
            }
            seen += 1;
        }
    }
    let output = log.partition("orders-upper", 0)?;
    println!(
        "read_committed saw {seen} records; the output partition holds {} offsets \
         (aborted records and transaction markers included), last stable offset {}",
        output.high_watermark(),
        output.last_stable_offset()
    );
    let committed = log
        .committed_offset("copier", "orders", 0)?
        .map(|c| c.offset);
    println!("group 'copier' committed input offset {committed:?}");
    if seen != RECORDS || committed != Some(RECORDS) {
        return Err(annals::Error::InvalidArgument(format!(
            "expected {RECORDS} records and offset {RECORDS}, got {seen} and {committed:?}"
        )));
    }
    log.close()?;
    Ok(())
}
