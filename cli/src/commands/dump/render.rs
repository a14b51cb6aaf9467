//! How batches and records look: the human lines follow Kafka's `kafka-dump-log` (its field
//! names and order, so eyes and scripts used to it read these), the JSON objects carry the same
//! fields in snake_case.

use std::fmt::Write as _;

use annals::format::{
    decode_control_record, BatchHeader, ControlRecord, ControlType, RecordRef, MAGIC_V2,
};
use annals::TimestampType;
use serde_json::{json, Map, Value};

/// Kafka's name of a codec id.
pub fn codec_name(id: u8) -> String {
    match id {
        0 => "none".into(),
        1 => "gzip".into(),
        2 => "snappy".into(),
        3 => "lz4".into(),
        4 => "zstd".into(),
        other => format!("unknown({other})"),
    }
}

fn timestamp_label(header: &BatchHeader) -> &'static str {
    match header.timestamp_type() {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

/// The sequence `increment` after `sequence` as Kafka counts it (wrapping past `i32::MAX` to
/// 0); -1 for a batch without a producer sequence.
pub fn sequence_after(sequence: i32, increment: u32) -> i64 {
    if sequence < 0 {
        return -1;
    }
    (i64::from(sequence) + i64::from(increment)) % (i64::from(i32::MAX) + 1)
}

/// The batch line, as `kafka-dump-log` prints it (without its `deleteHorizonMs`, which annals
/// never sets).
pub fn batch_line(position: u64, header: &BatchHeader, valid: bool) -> String {
    format!(
        "baseOffset: {} lastOffset: {} count: {} baseSequence: {} lastSequence: {} producerId: {} \
         producerEpoch: {} partitionLeaderEpoch: {} isTransactional: {} isControl: {} position: \
         {position} {}: {} size: {} magic: {MAGIC_V2} compresscodec: {} crc: {} isvalid: {valid}",
        header.base_offset,
        header.last_offset(),
        header.record_count,
        header.base_sequence,
        sequence_after(header.base_sequence, header.last_offset_delta),
        header.producer_id,
        header.producer_epoch,
        header.partition_leader_epoch,
        header.is_transactional(),
        header.is_control(),
        timestamp_label(header),
        header.max_timestamp,
        header.total_len(),
        codec_name(header.codec_id()),
        header.crc,
    )
}

/// The batch as a JSON object (without its `kind`).
pub fn batch_json(file: &str, position: u64, header: &BatchHeader, valid: bool) -> Value {
    json!({
        "file": file,
        "base_offset": header.base_offset,
        "last_offset": header.last_offset(),
        "count": header.record_count,
        "base_sequence": header.base_sequence,
        "last_sequence": sequence_after(header.base_sequence, header.last_offset_delta),
        "producer_id": header.producer_id,
        "producer_epoch": header.producer_epoch,
        "partition_leader_epoch": header.partition_leader_epoch,
        "is_transactional": header.is_transactional(),
        "is_control": header.is_control(),
        "position": position,
        "timestamp_type": timestamp_label(header),
        "max_timestamp": header.max_timestamp,
        "size": header.total_len(),
        "magic": MAGIC_V2,
        "compresscodec": codec_name(header.codec_id()),
        "crc": header.crc,
        "is_valid": valid,
    })
}

/// A record: the human line and the JSON object, or why its control record does not decode.
pub struct RenderedRecord {
    pub line: String,
    pub json: Value,
    /// A control record that does not decode (damage: the batch passed its CRC).
    pub control_error: Option<String>,
}

/// One record of `header`'s batch.
pub fn record(file: &str, header: &BatchHeader, r: &RecordRef<'_>) -> RenderedRecord {
    let size = |b: Option<&[u8]>| b.map_or(-1, |b| b.len() as i64);
    let delta = r.offset.saturating_sub(header.base_offset);
    let sequence = sequence_after(
        header.base_sequence,
        u32::try_from(delta).unwrap_or(u32::MAX),
    );
    let header_keys: Vec<&str> = r.headers().map(|(k, _)| k).collect();
    let mut line = format!(
        "| offset: {} {}: {} keySize: {} valueSize: {} sequence: {sequence} headerKeys: [{}]",
        r.offset,
        timestamp_label(header),
        r.timestamp,
        size(r.key),
        size(r.value),
        header_keys.join(","),
    );
    let mut json = Map::new();
    json.insert("file".into(), json!(file));
    json.insert("offset".into(), json!(r.offset));
    json.insert("timestamp".into(), json!(r.timestamp));
    json.insert("key_size".into(), json!(size(r.key)));
    json.insert("value_size".into(), json!(size(r.value)));
    json.insert("sequence".into(), json!(sequence));
    json.insert("header_keys".into(), json!(header_keys));
    let mut control_error = None;
    if header.is_control() {
        match decode_control_record(r.key.unwrap_or_default(), r.value) {
            Ok(ControlRecord::EndTxn(marker)) => {
                let kind = match marker.control_type {
                    ControlType::Commit => "COMMIT",
                    ControlType::Abort => "ABORT",
                };
                let _ = write!(
                    line,
                    " endTxnMarker: {kind} coordinatorEpoch: {}",
                    marker.coordinator_epoch
                );
                json.insert(
                    "end_txn_marker".into(),
                    json!({"type": kind, "coordinator_epoch": marker.coordinator_epoch}),
                );
            }
            Ok(ControlRecord::Other {
                key_version,
                control_type,
            }) => {
                let _ = write!(
                    line,
                    " controlType: {control_type} keyVersion: {key_version}"
                );
                json.insert(
                    "control_record".into(),
                    json!({"type": control_type, "key_version": key_version}),
                );
            }
            Err(e) => control_error = Some(e.to_string()),
        }
    } else {
        // As Kafka: a null key or value has no part at all.
        if let Some(key) = r.key {
            let _ = write!(line, " key: {}", text(key));
        }
        if let Some(value) = r.value {
            let _ = write!(line, " payload: {}", text(value));
        }
        data_json(&mut json, "key", r.key);
        data_json(&mut json, "payload", r.value);
    }
    RenderedRecord {
        line,
        json: Value::Object(json),
        control_error,
    }
}

/// Bytes for a human line: UTF-8 as it is (control characters escaped so one record stays one
/// line), anything else as `0x` and hex.
pub fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s
            .chars()
            .map(|c| match c {
                '\n' => "\\n".to_string(),
                '\r' => "\\r".to_string(),
                '\t' => "\\t".to_string(),
                c if c.is_control() => c.escape_unicode().to_string(),
                c => c.to_string(),
            })
            .collect(),
        Err(_) => format!("0x{}", hex(bytes)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `name`: the UTF-8 text, or null; bytes that are not UTF-8 go to `<name>_hex` instead.
fn data_json(json: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes.map(std::str::from_utf8) {
        None => {
            json.insert(name.into(), Value::Null);
        }
        Some(Ok(s)) => {
            json.insert(name.into(), json!(s));
        }
        Some(Err(_)) => {
            json.insert(format!("{name}_hex"), json!(hex(bytes.unwrap_or_default())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_as_kafka_counts_them() {
        assert_eq!(sequence_after(-1, 5), -1);
        assert_eq!(sequence_after(10, 5), 15);
        assert_eq!(sequence_after(i32::MAX, 0), i64::from(i32::MAX));
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn text_is_one_line_and_binary_is_hex() {
        assert_eq!(text(b"a b"), "a b");
        assert_eq!(text(b"a\nb\tc\x1b"), "a\\nb\\tc\\u{1b}");
        assert_eq!(text(&[0xff, 0x00, 0x10]), "0xff0010");
        assert_eq!(text("naïve".as_bytes()), "naïve");
    }

    #[test]
    fn binary_data_goes_to_a_hex_field() {
        let mut m = Map::new();
        data_json(&mut m, "key", Some(&[0xff]));
        data_json(&mut m, "payload", None);
        assert_eq!(Value::Object(m), json!({"key_hex": "ff", "payload": null}));
    }
}
