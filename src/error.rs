//! The one error type of the crate.
//!
//! Every fallible public function returns [`Result<T>`](crate::Result). Variants are structured so
//! callers can match on what went wrong (`OffsetOutOfRange { requested, earliest, latest }`) and
//! the `Display` text reads as a sentence a human can act on.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// `Result<T, annals::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in annals.
///
/// `Clone`, because one failed batch reports the same error to every record in it (the I/O
/// error is shared behind an `Arc` for that reason).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error: `op` is what annals was doing ("open for writing",
    /// "sync", "create directory", ...), `path` the file or directory it named (`None` only
    /// for the few errors that involve no file, such as failing to start a thread).
    /// [`Error::io_kind`] gives the [`io::ErrorKind`] (to tell a full disk, `StorageFull`,
    /// from other failures); `source` keeps the OS error itself (`raw_os_error`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let file = dir.path().join("not-a-directory");
    /// std::fs::write(&file, b"")?;
    /// let err = annals::Log::open(file.join("log")).unwrap_err();
    /// // "could not look up /tmp/.../not-a-directory/log: Not a directory (os error 20)"
    /// assert!(err.to_string().starts_with("could not look up "), "{err}");
    /// assert!(matches!(&err, annals::Error::Io { path: Some(p), .. } if p.starts_with(&file)));
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotADirectory));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[error("could not {op}{}: {source}", at_path(.path))]
    #[non_exhaustive]
    Io {
        op: &'static str,
        path: Option<PathBuf>,
        source: Arc<io::Error>,
    },

    /// Another `Log` (in this or another process) holds the directory's lock.
    #[error("log directory {dir} is locked by another Log (in this or another process)")]
    Locked { dir: PathBuf },

    /// The directory is not a log directory: it has neither `topics.meta` nor `.lock`
    /// (from [`Log::open_read_only`](crate::Log::open_read_only), which creates nothing).
    #[error("{dir} is not an annals log directory (it has neither topics.meta nor .lock)")]
    NotALog { dir: PathBuf },

    /// Bytes on disk failed validation (CRC, length, structure) at a known place.
    #[error("corrupt data in {segment} at byte {position}: {reason}")]
    Corrupt {
        segment: PathBuf,
        position: u64,
        reason: String,
    },

    /// A crate metadata file (topic configs, checkpoints) failed its checksum or structure check.
    #[error("corrupt metadata file {file}: {reason}")]
    CorruptMetadata { file: PathBuf, reason: String },

    /// Bytes handed to the format layer (not read from a segment) are not a valid RecordBatch v2.
    #[error("invalid record batch: {reason}")]
    InvalidBatch { reason: String },

    /// A batch uses a codec annals cannot decode (gzip = 1, snappy = 2, or an unknown id).
    #[error("unsupported compression codec id {codec} (annals reads none, lz4 and zstd)")]
    UnsupportedCompression { codec: u8 },

    /// A single record is larger than the topic's `max_message_bytes`.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },

    /// A batch of several records is larger than the topic's `max_message_bytes`.
    #[error(
        "batch of {size} bytes exceeds the limit of {max} bytes; append fewer records at a time"
    )]
    BatchTooLarge { size: usize, max: usize },

    /// The requested offset is outside `[earliest, latest]` (`latest` is the high watermark).
    #[error("offset {requested} is out of range: the log holds [{earliest}, {latest})")]
    OffsetOutOfRange {
        requested: u64,
        earliest: u64,
        latest: u64,
    },

    /// The topic does not exist.
    #[error("unknown topic {topic:?}")]
    UnknownTopic { topic: String },

    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has {partitions} partition(s); partition {partition} does not exist")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },

    /// `create_topic` for a name that is already taken.
    #[error("topic {topic:?} already exists")]
    TopicExists { topic: String },

    /// A topic name breaks Kafka's naming rule (`[a-zA-Z0-9._-]`, 1-249 chars, not `.` or `..`).
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },

    /// A configuration value is out of its documented bounds. Nothing is clamped silently.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    /// A caller-supplied argument is unusable (for example an empty record list).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The `Log` was closed, or the topic behind this handle was deleted.
    #[error("the log or topic behind this handle is closed")]
    Closed,

    /// The producer's buffer (`buffer_memory`) stayed full for `max_block`, or was full at a
    /// `try_send`.
    #[error("producer buffer of {buffer_memory} bytes is full")]
    BufferFull { buffer_memory: usize },

    /// A background thread of annals panicked: a bug, in annals or in the `Storage` it was given.
    /// `thread` is the thread's name, as in the panic's own message on stderr:
    /// `"annals-producer"`, a producer's writer thread — every record it had not acknowledged
    /// fails with this, and so does every later send (create a new producer); or
    /// `"annals-maintenance"`, the log's maintenance thread — reported by
    /// `Log::last_maintenance_error`, and background maintenance stops until the log is reopened.
    #[error("the background thread {thread:?} panicked: {message}")]
    ThreadPanicked {
        thread: &'static str,
        message: String,
    },

    /// A newer producer with the same stable id took over; this one may no longer write.
    #[error("producer {producer_id} epoch {epoch} was fenced by a newer epoch {current_epoch}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },

    /// An idempotent batch arrived with a sequence number that does not follow the last one
    /// the partition accepted from that producer.
    #[error("producer {producer_id}: sequence {received} does not follow {last}")]
    OutOfOrderSequence {
        producer_id: i64,
        last: i32,
        received: i32,
    },

    /// An earlier write or fsync of this partition failed; the page cache can no longer be trusted,
    /// so the partition refuses further writes until the log is reopened (which recovers it).
    #[error(
        "partition {topic}-{partition} refuses writes after an earlier storage failure: {cause}"
    )]
    Poisoned {
        topic: String,
        partition: u32,
        cause: String,
    },

    /// A consumer group id is unusable (empty, over 255 bytes, or with control characters).
    #[error("invalid consumer group id {group:?}: {reason}")]
    InvalidGroupId { group: String, reason: &'static str },

    /// Not returned any more: commits are judged by which partitions the member owns now, not
    /// by the generation it last saw, so a commit during a rebalance succeeds for the partitions
    /// the member still owns (see [`Consumer::commit`](crate::Consumer::commit)); the others fail
    /// with [`Error::NotAssigned`] or [`Error::MemberFenced`]. Kept so code matching on it still
    /// compiles.
    #[error(
        "commit for group {group:?} from generation {generation} refused: the group is at generation {current}; poll to finish the rebalance"
    )]
    StaleGeneration {
        group: String,
        generation: u32,
        current: u32,
    },

    /// The member was removed from its group (it did not poll within `max_poll_interval`, or
    /// left); its commits are refused. Its next poll rejoins the group.
    #[error("member {member:?} is no longer in group {group:?}")]
    MemberFenced { group: String, member: String },

    /// The consumer does not own this partition (not in its assignment, or given away in a
    /// rebalance).
    #[error("partition {topic}-{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: u32 },

    /// A consumer with `auto_offset_reset = Error` found no usable committed offset.
    /// A transactional call out of order (`commit_transaction` without `begin_transaction`,
    /// a `send` outside a transaction on a transactional producer, ...), or a non-transactional
    /// write by a producer with a transaction open on that partition. Nothing was changed.
    #[error("cannot {operation}{}: {state}", txn_id(.transactional_id))]
    InvalidTxnState {
        transactional_id: Option<String>,
        operation: &'static str,
        state: String,
    },

    /// The transaction ran longer than its producer's `transaction_timeout`: the log aborted it
    /// and fenced the producer. Fatal for this producer: open a new one (its
    /// `init_transactions` takes over the transactional id).
    #[error(
        "the transaction of {transactional_id:?} ran past its timeout of {timeout_ms} ms and was \
         aborted; this producer is fenced: open a new one"
    )]
    TransactionTimedOut {
        transactional_id: String,
        timeout_ms: u64,
    },

    /// Part of the transaction failed (`cause`: a send's error, say): the transaction can only
    /// be aborted. Call `abort_transaction`, then begin a new one.
    #[error("the transaction of {transactional_id:?} can only be aborted now: {cause}")]
    AbortRequired {
        transactional_id: String,
        cause: Box<Error>,
    },

    /// An event-store append or delete whose expected version did not hold: `actual` is the
    /// stream's version now (`None`: the stream has no events, or was deleted). Nothing was
    /// written.
    #[error(
        "stream {stream:?} was expected at {expected} but is at {}",
        match .actual { Some(v) => format!("version {v}"), None => "no stream".to_string() }
    )]
    WrongExpectedVersion {
        stream: String,
        expected: crate::event_store::ExpectedVersion,
        actual: Option<u64>,
    },

    /// A stored event could not be decoded as the requested type
    /// ([`RecordedEvent::decode`](crate::RecordedEvent), feature `serde`).
    #[error("event {version} of stream {stream:?} could not be decoded: {reason}")]
    EventDecode {
        stream: String,
        version: u64,
        reason: String,
    },

    /// The stream was tombstoned ([`EventStore::tombstone_stream`](crate::EventStore)): it can
    /// never be read or written again under this name.
    #[error("stream {stream:?} was deleted for good (tombstoned); its name cannot be reused")]
    StreamDeleted { stream: String },

    /// A partition has no position to start from: no valid committed offset (or no group to
    /// have one: `group` is `None`), and `auto_offset_reset` is `Error`.
    #[error(
        "{} has no valid committed offset for {topic}-{partition} and auto_offset_reset is \
         Error",
        match group { Some(g) => format!("group {g:?}"), None => "a consumer without a group".into() }
    )]
    NoCommittedOffset {
        group: Option<String>,
        topic: String,
        partition: u32,
    },
}

/// Lifts an I/O error into [`Error::Io`], with the operation and path the storage layer
/// tagged it with (see `storage::context`).
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match crate::storage::untag(e) {
            (Some((op, path)), source) => Error::Io {
                op,
                path: Some(path),
                source: Arc::new(source),
            },
            (None, source) => Error::Io {
                op: "complete an I/O operation",
                path: None,
                source: Arc::new(source),
            },
        }
    }
}

fn txn_id(id: &Option<String>) -> String {
    match id {
        Some(id) => format!(" (transactional id {id:?})"),
        None => String::new(),
    }
}

fn at_path(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" {}", p.display()),
        None => String::new(),
    }
}

impl Error {
    /// `ThreadPanicked` for the payload `catch_unwind` caught on `thread`.
    pub(crate) fn thread_panicked(
        thread: &'static str,
        payload: &(dyn std::any::Any + Send),
    ) -> Self {
        let message = match payload.downcast_ref::<&str>() {
            Some(s) => s.to_string(),
            None => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "(a panic payload that is not a string)".into()),
        };
        Error::ThreadPanicked { thread, message }
    }

    /// The kind of the underlying I/O error, for an [`Error::Io`]; `None` for every other
    /// variant.
    /// The producer instance cannot go on: another instance with its transactional id fenced
    /// it ([`Error::ProducerFenced`]), its transaction timed out
    /// ([`Error::TransactionTimedOut`]), its writer thread died ([`Error::ThreadPanicked`]), or
    /// its log closed ([`Error::Closed`]). Drop it; open a new producer to go on.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::ProducerFenced { .. }
                | Error::TransactionTimedOut { .. }
                | Error::ThreadPanicked { .. }
                | Error::Closed
        )
    }

    /// The current transaction cannot commit, but the producer is fine: call
    /// `abort_transaction` and begin again ([`Error::AbortRequired`]).
    pub fn requires_abort(&self) -> bool {
        match self {
            Error::AbortRequired { cause, .. } => !cause.is_fatal(),
            _ => false,
        }
    }

    /// The same call may succeed if tried again later, unchanged: a full producer buffer, a
    /// group in the middle of a rebalance, an interrupted or timed-out I/O, a full disk (once
    /// space is freed), a log directory locked by an instance that is closing.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::BufferFull { .. } | Error::StaleGeneration { .. } | Error::Locked { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::StorageFull
            ),
            _ => false,
        }
    }

    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// An [`Error::Io`] for `source`, which happened doing `op` on `path`.
    pub(crate) fn io(op: &'static str, path: Option<&std::path::Path>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.map(std::path::Path::to_path_buf),
            source: Arc::new(source),
        }
    }

    pub(crate) fn invalid_config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_for_transactional_callers() {
        let fenced = Error::ProducerFenced {
            producer_id: 1,
            epoch: 0,
            current_epoch: 1,
        };
        let timed_out = Error::TransactionTimedOut {
            transactional_id: "t".into(),
            timeout_ms: 10,
        };
        let full = Error::BufferFull {
            buffer_memory: 1 << 20,
        };
        let abort = |cause: Error| Error::AbortRequired {
            transactional_id: "t".into(),
            cause: Box::new(cause),
        };
        let disk_full = Error::io("write", None, io::Error::from(io::ErrorKind::StorageFull));
        for e in [&fenced, &timed_out, &Error::Closed] {
            assert!(
                e.is_fatal() && !e.requires_abort() && !e.is_retriable(),
                "{e}"
            );
        }
        assert!(abort(full.clone()).requires_abort());
        assert!(!abort(full.clone()).is_fatal());
        // An abort cannot save a producer whose failure was fatal.
        assert!(!abort(fenced.clone()).requires_abort());
        assert!(full.is_retriable() && disk_full.is_retriable());
        let invalid = Error::InvalidTxnState {
            transactional_id: Some("t".into()),
            operation: "commit the transaction",
            state: "no transaction is open".into(),
        };
        assert!(!invalid.is_fatal() && !invalid.requires_abort() && !invalid.is_retriable());
        assert_eq!(
            invalid.to_string(),
            "cannot commit the transaction (transactional id \"t\"): no transaction is open"
        );
    }
}
