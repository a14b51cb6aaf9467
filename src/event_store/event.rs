//! The event store's values — [`NewEvent`], [`RecordedEvent`], [`ExpectedVersion`],
//! [`AppendResult`], [`EventPosition`] — and how an event is laid out as a Kafka record.
//!
//! An event is one record of the store's events topic: key `"<stream>@<version>"` (decimal),
//! value the event's data, headers `es-type`, `es-id` (16 bytes) and, when there is any,
//! `es-metadata`. The key is unique per event so that compaction can remove a deleted event
//! through a tombstone of its key, and `@` is searched from the right, so a stream name may
//! contain it. A stream's metadata (deletion) is a record keyed `"<stream>@meta"`.

use std::fmt;

use bytes::Bytes;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::Record;

/// Header holding an event's type.
pub(crate) const TYPE_HEADER: &str = "es-type";
/// Header holding an event's id, 16 bytes.
pub(crate) const ID_HEADER: &str = "es-id";
/// Header holding an event's metadata, absent when it has none.
pub(crate) const METADATA_HEADER: &str = "es-metadata";
/// Header holding a typed event's schema version (u32 big-endian), absent for untyped ones.
pub(crate) const SCHEMA_HEADER: &str = "es-schema";
/// Suffix of the key of a stream's metadata record.
const META_SUFFIX: &str = "meta";

/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 1024;

/// What an append expects of the stream's version, checked atomically with the write
/// (KurrentDB's expected revision). Versions start at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check. A retried append with `Any` is written again (no deduplication).
    Any,
    /// The stream has no events (never written, or deleted with
    /// [`delete_stream`](super::EventStore::delete_stream)).
    NoStream,
    /// The stream has at least one event.
    StreamExists,
    /// The stream's last event has exactly this version.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` meets this expectation.
    pub(crate) fn admits(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        }
    }
}

/// An event to append: its type, data, optional metadata and id.
///
/// The id (a random UUID v4 unless set) is what makes a retried append idempotent: appending
/// the same events again with the same expected version succeeds without writing them twice.
///
/// ```
/// use annals::NewEvent;
/// let e = NewEvent::new("Deposited", r#"{"amount":10}"#).metadata(r#"{"user":"ann"}"#);
/// assert_eq!(e.event_type(), "Deposited");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub(crate) event_type: String,
    pub(crate) data: Bytes,
    pub(crate) metadata: Bytes,
    pub(crate) id: Uuid,
    pub(crate) schema_version: Option<u32>,
}

impl NewEvent {
    /// An event of `event_type` with `data` and a fresh random id.
    pub fn new(event_type: impl Into<String>, data: impl crate::Payload) -> NewEvent {
        NewEvent {
            event_type: event_type.into(),
            data: data.into_payload(),
            metadata: Bytes::new(),
            id: Uuid::new_v4(),
            schema_version: None,
        }
    }

    /// Sets the event's metadata (correlation ids, the user, ...). Default empty.
    #[must_use]
    pub fn metadata(mut self, metadata: impl crate::Payload) -> NewEvent {
        self.metadata = metadata.into_payload();
        self
    }

    /// Sets the event's id, for an append that must deduplicate across restarts of the caller
    /// (derive it from the command's id).
    #[must_use]
    pub fn id(mut self, id: Uuid) -> NewEvent {
        self.id = id;
        self
    }

    /// The event's type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The event's id.
    pub fn event_id(&self) -> Uuid {
        self.id
    }

    /// The record this event is stored as.
    pub(crate) fn to_record(&self, stream: &str, version: u64, timestamp: i64) -> Record {
        let mut r = Record::new(self.data.clone())
            .key(event_key(stream, version))
            .header(TYPE_HEADER, Bytes::from(self.event_type.clone()))
            .header(ID_HEADER, Bytes::copy_from_slice(self.id.as_bytes()))
            .timestamp(timestamp);
        if !self.metadata.is_empty() {
            r = r.header(METADATA_HEADER, self.metadata.clone());
        }
        if let Some(v) = self.schema_version {
            r = r.header(SCHEMA_HEADER, Bytes::copy_from_slice(&v.to_be_bytes()));
        }
        r
    }
}

/// Where an event is in the log: its partition of the events topic and its offset there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventPosition {
    pub partition: u32,
    pub offset: u64,
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedEvent {
    pub stream: String,
    /// Its place in its stream, from 0.
    pub version: u64,
    pub event_type: String,
    pub data: Bytes,
    /// Empty when the event was appended without metadata.
    pub metadata: Bytes,
    pub id: Uuid,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub position: EventPosition,
    /// The schema version a typed event was stored under (`None`: an untyped event).
    pub schema_version: Option<u32>,
}

impl RecordedEvent {
    /// The data as UTF-8, if it is.
    pub fn data_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

/// What a successful append returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendResult {
    /// The version the stream's next event will have: the last appended event's version + 1.
    pub next_version: u64,
    /// Where the last appended event is.
    pub position: EventPosition,
}

/// What a record of the events topic is, judged by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind<'a> {
    Event { stream: &'a str, version: u64 },
    Meta { stream: &'a str },
}

pub(crate) fn event_key(stream: &str, version: u64) -> String {
    format!("{stream}@{version}")
}

pub(crate) fn meta_key(stream: &str) -> String {
    format!("{stream}@{META_SUFFIX}")
}

/// Parses a record key of the events topic; `None` for a key no store wrote.
pub(crate) fn parse_key(key: &[u8]) -> Option<KeyKind<'_>> {
    let key = std::str::from_utf8(key).ok()?;
    let (stream, suffix) = key.rsplit_once('@')?;
    if stream.is_empty() {
        return None;
    }
    if suffix == META_SUFFIX {
        return Some(KeyKind::Meta { stream });
    }
    // Only the canonical decimal form, so one event has one key.
    if suffix.is_empty() || (suffix.len() > 1 && suffix.starts_with('0')) {
        return None;
    }
    if !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version = suffix.parse().ok()?;
    Some(KeyKind::Event { stream, version })
}

/// Checks a stream name: 1 to [`MAX_STREAM_NAME_LEN`] bytes, no control characters.
pub(crate) fn validate_stream_name(stream: &str) -> Result<()> {
    let reason = if stream.is_empty() {
        "it is empty"
    } else if stream.len() > MAX_STREAM_NAME_LEN {
        "it is longer than 1024 bytes"
    } else if stream.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!(
        "invalid stream name {:?}: {reason}",
        truncate_for_message(stream)
    )))
}

fn truncate_for_message(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Decodes an event record (its headers as key and value); `None` if it is not a well-formed
/// event.
pub(crate) fn decode_event<'h>(
    stream: &str,
    version: u64,
    position: EventPosition,
    timestamp: i64,
    value: Bytes,
    headers: impl Iterator<Item = (&'h str, Option<Bytes>)>,
) -> Option<RecordedEvent> {
    let mut event_type = None;
    let mut id = None;
    let mut metadata = Bytes::new();
    let mut schema_version = None;
    for (key, value) in headers {
        let Some(v) = value else { continue };
        match key {
            TYPE_HEADER => event_type = std::str::from_utf8(&v).ok().map(String::from),
            ID_HEADER => id = Uuid::from_slice(&v).ok(),
            METADATA_HEADER => metadata = v,
            SCHEMA_HEADER => {
                schema_version = <[u8; 4]>::try_from(&v[..]).ok().map(u32::from_be_bytes)
            }
            _ => {}
        }
    }
    Some(RecordedEvent {
        stream: stream.to_string(),
        version,
        event_type: event_type?,
        data: value,
        metadata,
        id: id?,
        timestamp,
        position,
        schema_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_foreign_keys_are_not_events() {
        assert_eq!(
            parse_key(event_key("a@b", 17).as_bytes()),
            Some(KeyKind::Event {
                stream: "a@b",
                version: 17
            })
        );
        assert_eq!(
            parse_key(meta_key("x@5").as_bytes()),
            Some(KeyKind::Meta { stream: "x@5" })
        );
        for foreign in [
            "plain",
            "@5",
            "s@",
            "s@05",
            "s@-1",
            "s@1x",
            "s@99999999999999999999",
        ] {
            assert_eq!(parse_key(foreign.as_bytes()), None, "{foreign}");
        }
        assert_eq!(parse_key(&[0xff, b'@', b'1']), None);
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(validate_stream_name("account-42").is_ok());
        assert!(validate_stream_name("").is_err());
        assert!(validate_stream_name("a\nb").is_err());
        assert!(validate_stream_name(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn expected_versions_admit_what_they_say() {
        assert!(ExpectedVersion::Any.admits(None));
        assert!(ExpectedVersion::NoStream.admits(None));
        assert!(!ExpectedVersion::NoStream.admits(Some(0)));
        assert!(ExpectedVersion::StreamExists.admits(Some(3)));
        assert!(!ExpectedVersion::StreamExists.admits(None));
        assert!(ExpectedVersion::Exact(3).admits(Some(3)));
        assert!(!ExpectedVersion::Exact(3).admits(Some(4)));
    }
}
