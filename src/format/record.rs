//! Records as callers build them ([`Record`]) and as the log returns them ([`StoredRecord`]).

use bytes::Bytes;

use super::Payload;

/// One record header: a string key and a nullable byte value, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Payload) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into_payload()),
        }
    }
}

/// A record to append: optional key, nullable value (a `None` value is a tombstone), headers and
/// an optional millisecond timestamp (when absent, the append time is used).
///
/// ```
/// use annals::Record;
/// let r = Record::new("v1").key("CUST123").header("trace", "abc").timestamp(1_700_000_000_000);
/// assert_eq!(r.key.as_deref(), Some(&b"CUST123"[..]));
/// let t = Record::tombstone("CUST123");
/// assert!(t.value.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record with this value, no key, no headers and no timestamp. The value (like the key
    /// and header values) is anything [`Payload`] takes: owned buffers as they are, borrowed
    /// data copied.
    pub fn new(value: impl Payload) -> Self {
        Record {
            value: Some(value.into_payload()),
            ..Record::default()
        }
    }

    /// A tombstone: a record with a key and a null value, which deletes the key under compaction.
    pub fn tombstone(key: impl Payload) -> Self {
        Record {
            key: Some(key.into_payload()),
            ..Record::default()
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: impl Payload) -> Self {
        self.key = Some(key.into_payload());
        self
    }

    /// Appends a header with a non-null value.
    #[must_use]
    pub fn header(mut self, key: impl Into<String>, value: impl Payload) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the timestamp in milliseconds since the Unix epoch (must not be negative).
    #[must_use]
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// Bytes this record occupies in a batch, uncompressed, including its length prefix.
    pub fn encoded_len(&self, timestamp_delta: i64, offset_delta: i32) -> usize {
        super::record_encoded_len(self, timestamp_delta, offset_delta)
    }
}

/// A record read back from the log.
///
/// `key`, `value` and header values are zero-copy slices of the buffer the fetch read (or of the
/// decompressed batch), so holding one record keeps that buffer alive.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredRecord {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl StoredRecord {
    /// The value as UTF-8; `None` for a tombstone or bytes that are not UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        as_str(&self.value)
    }

    /// The key as UTF-8; `None` without a key or for bytes that are not UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        as_str(&self.key)
    }

    /// The value of the last header named `name` (Kafka's `lastHeader`: a name may repeat);
    /// `None` if there is none or its value is null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        last_header(&self.headers, name)
    }
}

pub(crate) fn as_str(bytes: &Option<Bytes>) -> Option<&str> {
    std::str::from_utf8(bytes.as_deref()?).ok()
}

pub(crate) fn last_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .rev()
        .find(|h| h.key == name)
        .and_then(|h| h.value.as_deref())
}

#[cfg(test)]
mod accessor_tests {
    use super::*;

    #[test]
    fn text_and_header_accessors() {
        let r = StoredRecord {
            offset: 0,
            timestamp: 0,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(&[0xff])),
            headers: vec![
                Header::new("h", "first"),
                Header {
                    key: "null".into(),
                    value: None,
                },
                Header::new("h", "last"),
            ],
        };
        assert_eq!(r.key_str(), Some("k"));
        assert_eq!(r.value_str(), None, "not UTF-8");
        assert_eq!(r.header("h"), Some(&b"last"[..]));
        assert_eq!(r.header("null"), None);
        assert_eq!(r.header("missing"), None);
    }
}
