//! `Log::recovery_report`: what the open that created this `Log` had to remove.

use crate::partition::{Partition, RecoveryReport};

use super::Log;

/// The events of every partition opened, in topic and partition order.
pub(super) fn collect<'a>(partitions: impl Iterator<Item = &'a Partition>) -> RecoveryReport {
    RecoveryReport::new(
        partitions
            .flat_map(|p| p.inner.recovery_events.iter().cloned())
            .collect(),
    )
}

impl Log {
    /// What recovery removed when this `Log` was opened: each torn tail cut off after a crash,
    /// and, with [`RecoveryMode::TruncateCorrupt`](crate::RecoveryMode::TruncateCorrupt), each
    /// segment cut at damage in the middle of a partition and each later segment removed with
    /// it — topic, partition, segment file, byte range, and the offsets lost. Empty when the
    /// open found nothing to repair. A host that opens with `TruncateCorrupt` should log or
    /// alert on every [`RecoveryAction::TruncatedCorrupt`](crate::RecoveryAction) event: those
    /// records are gone.
    ///
    /// ```
    /// use annals::{Log, Record, RecoveryAction, RecoveryMode, TopicConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let log = Log::open(dir.path())?;
    /// log.create_topic("events", TopicConfig::default())?;
    /// let p = log.partition("events", 0)?;
    /// for i in 0..3 {
    ///     p.append(&[Record::new(format!("event {i}"))])?;
    /// }
    /// let segment = p.dir().join("00000000000000000000.log");
    /// drop(p);
    /// log.close()?;
    ///
    /// // Damage the second of the three batches, and remove the checkpoint that vouches for
    /// // the segment (as a crash before the first checkpoint leaves it): the open scans it.
    /// std::fs::remove_file(segment.with_file_name("partition.ckpt"))?;
    /// let mut bytes = std::fs::read(&segment)?;
    /// let second = bytes.len() / 3 + 30;
    /// bytes[second] ^= 0xff;
    /// std::fs::write(&segment, &bytes)?;
    ///
    /// let log = Log::builder(dir.path())
    ///     .recovery_mode(RecoveryMode::TruncateCorrupt)
    ///     .open()?;
    /// let report = log.recovery_report();
    /// let cut = &report.events()[0];
    /// assert_eq!(cut.action, RecoveryAction::TruncatedCorrupt);
    /// assert_eq!((cut.topic.as_str(), cut.partition), ("events", 0));
    /// assert_eq!(cut.segment, segment);
    /// assert_eq!(cut.offsets, 1..3, "offsets 1 and 2 were dropped");
    /// println!("{cut}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.recovery.clone()
    }
}
