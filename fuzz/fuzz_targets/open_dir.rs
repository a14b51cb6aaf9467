//! Opens a log directory whose only segment holds arbitrary bytes (and, when the input asks for
//! it, arbitrary index bytes), then reads everything. Recovery and reads must never panic: every
//! outcome is either data or an error.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use annals::storage::{SimStorage, Storage};
use annals::{Log, RecoveryMode, TopicConfig};
use libfuzzer_sys::fuzz_target;

const DIR: &str = "/fuzz/log";
const SEGMENT: &str = "/fuzz/log/t-0/00000000000000000000.log";
const INDEX: &str = "/fuzz/log/t-0/00000000000000000000.index";
const TIME_INDEX: &str = "/fuzz/log/t-0/00000000000000000000.timeindex";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    // Optionally split off index bytes: [flags][index_len u8][index bytes][segment bytes].
    let (index, segment) = if flags & 1 == 1 && !rest.is_empty() {
        let n = (rest[0] as usize).min(rest.len() - 1);
        (Some(&rest[1..1 + n]), &rest[1 + n..])
    } else {
        (None, rest)
    };
    let sim = SimStorage::new();
    let storage: Arc<dyn Storage> = sim.clone();
    {
        let log = Log::builder(DIR).storage(storage.clone()).open().unwrap();
        log.create_topic(
            "t",
            TopicConfig::default()
                .segment_index_bytes(1024)
                .index_interval_bytes(64),
        )
        .unwrap();
        if flags & 2 == 2 {
            log.close().unwrap(); // leave a clean marker and a checkpoint behind
        }
    }
    sim.write_file(Path::new(SEGMENT), segment);
    if let Some(index) = index {
        sim.write_file(Path::new(INDEX), index);
        sim.write_file(Path::new(TIME_INDEX), index);
    }
    let mode = if flags & 4 == 4 {
        RecoveryMode::TruncateCorrupt
    } else {
        RecoveryMode::Strict
    };
    let Ok(log) = Log::builder(DIR).storage(storage).recovery_mode(mode).open() else {
        return;
    };
    let p = log.partition("t", 0).unwrap();
    let mut offset = p.log_start_offset();
    while offset < p.high_watermark() {
        match p.read(offset, 4096) {
            Ok(records) if !records.is_empty() => offset = records.last().unwrap().offset + 1,
            _ => break,
        }
    }
    let _ = p.offset_for_timestamp(0);
    let _ = p.offset_for_timestamp(i64::MAX);
});
