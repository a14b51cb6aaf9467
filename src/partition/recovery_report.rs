//! What recovery removed while opening a log, for the host to read ([`Log::recovery_report`]).
//!
//! [`Log::recovery_report`]: crate::Log::recovery_report

use std::ops::Range;
use std::path::PathBuf;

/// What recovery removed from the log's partitions when the `Log` was opened: one
/// [`RecoveryEvent`] per segment it cut or removed. Empty after a clean open.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let log = annals::Log::open(dir.path())?;
/// let report = log.recovery_report();
/// assert!(report.is_empty(), "a new log has nothing to recover");
/// for event in report.events() {
///     eprintln!("recovery: {event}"); // a host would log each one
/// }
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RecoveryReport {
    events: Vec<RecoveryEvent>,
}

impl RecoveryReport {
    pub(crate) fn new(events: Vec<RecoveryEvent>) -> RecoveryReport {
        RecoveryReport { events }
    }

    /// Everything recovery removed, partition by partition, in log order.
    pub fn events(&self) -> &[RecoveryEvent] {
        &self.events
    }

    /// Whether recovery removed nothing.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Why recovery removed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum RecoveryAction {
    /// The segment ended in an incomplete or invalid batch with nothing valid after it: the
    /// shape of a write interrupted by a crash. Nothing that was synced is lost.
    TornTail,
    /// The segment was damaged in the middle (valid batches followed the damage) and
    /// [`RecoveryMode::TruncateCorrupt`](crate::RecoveryMode::TruncateCorrupt) cut it at the
    /// first invalid batch.
    TruncatedCorrupt,
    /// A whole segment after the cut was removed.
    RemovedSegment,
}

/// One segment that recovery cut short or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct RecoveryEvent {
    /// The partition's topic.
    pub topic: crate::TopicName,
    /// The partition.
    pub partition: u32,
    /// The segment's `.log` file.
    pub segment: PathBuf,
    /// What recovery did.
    pub action: RecoveryAction,
    /// The bytes of the segment that were removed, `start..end` (`0..len` for a removed
    /// segment).
    pub bytes: Range<u64>,
    /// The offsets lost: from the first offset no longer in the log to past the last record of
    /// any CRC-valid batch found in the removed bytes. Damaged batches cannot be read, so the
    /// real range may extend beyond `end`; empty when no valid batch was found (a torn write).
    pub offsets: Range<u64>,
    /// What was wrong at `bytes.start`.
    pub reason: String,
}

impl std::fmt::Display for RecoveryEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.action {
            RecoveryAction::TornTail => "cut a torn tail from",
            RecoveryAction::TruncatedCorrupt => "truncated corrupt",
            RecoveryAction::RemovedSegment => "removed",
        };
        write!(
            f,
            "{}-{}: {what} {} at bytes {}..{} (offsets {}..{} lost): {}",
            self.topic,
            self.partition,
            self.segment.display(),
            self.bytes.start,
            self.bytes.end,
            self.offsets.start,
            self.offsets.end,
            self.reason
        )
    }
}
