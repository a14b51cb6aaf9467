//! [`Log::metrics`]: the snapshot of every counter the log keeps (see `crate::metrics` for
//! where each is counted), with consumer lag computed on the spot.

use std::collections::BTreeSet;

use super::Log;
use crate::catalog::is_internal_topic;
use crate::error::Error;
use crate::metrics::{GroupMetrics, Metrics, PartitionCounts, PartitionMetrics, TopicMetrics};
use crate::partition::Partition;

impl Log {
    /// A snapshot of what the log has done since it was opened — per topic and partition:
    /// records, bytes and batches appended and read, compression, retention and compaction;
    /// fsyncs (count, failures, a latency histogram); producers (buffer in use, waits for
    /// space, records sent and failed) — and of its state now: files open and bytes mapped,
    /// offsets, and every consumer group's lag. Every field is documented on [`Metrics`] and
    /// the types it holds.
    ///
    /// Counters live in memory only: they start at zero when the log is opened and are not
    /// persisted. A deleted topic, and a dropped producer, leave the next snapshot with their
    /// counts. Cheap enough to call every second: it reads atomics the log keeps anyway (a
    /// few loads per partition and producer) and works out lag from the committed offsets in
    /// memory; only the first call after opening a log with committed offsets loads them from
    /// `__consumer_offsets`, as the first consumer would.
    ///
    /// Like [`topics`](Self::topics), it cannot fail and does not return [`Error::Closed`]:
    /// after [`close`](Self::close) the snapshot has no topics, producers or groups (a closed
    /// log has none to offer), while the log-wide counts — fsyncs, files, maintenance runs —
    /// keep their last values (the close's own fsyncs included, and `files.open_files` falls to
    /// what handles outliving the log still hold).
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{Log, Record, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// log.create_topic("orders", TopicConfig::default().partitions(2))?;
    /// let p = log.partition("orders", 1)?;
    /// p.append(&[Record::new("created"), Record::new("paid")])?;
    /// p.sync()?;
    /// assert_eq!(p.read(0, 1 << 20)?.len(), 2);
    ///
    /// let metrics = log.metrics();
    /// let orders = metrics.topic("orders").unwrap();
    /// assert_eq!((orders.totals.records_in, orders.totals.batches_in), (2, 1));
    /// assert_eq!(orders.partition(1).unwrap().counts.records_out, 2);
    /// assert_eq!(orders.partition(0).unwrap().counts.records_in, 0);
    /// assert!(metrics.fsync.count >= 1);
    /// assert!(metrics.files.open_files > 0);
    ///
    /// drop(p);
    /// log.close()?;
    /// let closed = log.metrics();
    /// assert!(closed.topics.is_empty());
    /// assert_eq!(closed.files.open_files, 0);
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> Metrics {
        let inner = &self.inner;
        let mut metrics = Metrics {
            uptime: inner.opened.elapsed(),
            fsync: inner.io.fsync(),
            files: inner.io.files(),
            maintenance: inner.maintenance_runs.snapshot(),
            ..Metrics::default()
        };
        // The handles, out of the catalog's lock: what follows reads only atomics and segment
        // lists, but a snapshot should not hold up topic lookups for all its partitions.
        let topics: Vec<(String, Vec<Partition>)> = {
            let state = inner.catalog.state.read();
            if state.closed {
                return metrics;
            }
            state
                .topics
                .iter()
                .map(|(name, t)| (name.clone(), t.partitions.clone()))
                .collect()
        };
        metrics.topics = topics
            .into_iter()
            .map(|(topic, partitions)| topic_metrics(topic, &partitions))
            .collect();
        metrics.producers = inner.catalog.producer_metrics();
        self.gather_groups(&mut metrics);
        metrics
    }

    /// Every group with committed offsets or live members, and its lag now.
    fn gather_groups(&self, metrics: &mut Metrics) {
        let offsets = match self.offsets_if_exists() {
            Ok(offsets) => offsets,
            // Closed since the topics were read: a closed log has no groups to offer.
            Err(Error::Closed) => return,
            Err(e) => {
                metrics.groups_error = Some(e.to_string());
                None
            }
        };
        let live = self.live_groups();
        let mut ids: BTreeSet<String> = live.iter().map(|g| g.group.clone()).collect();
        if let Some(offsets) = &offsets {
            ids.extend(offsets.groups());
        }
        for group in ids {
            match self.lag_of(&group, offsets.as_deref(), &live) {
                Ok(partitions) => metrics.groups.push(GroupMetrics {
                    lag: partitions.iter().map(|p| p.lag).sum(),
                    group,
                    partitions,
                }),
                // Only a close racing with the snapshot fails a lookup here.
                Err(_) => {
                    metrics.groups.clear();
                    return;
                }
            }
        }
    }
}

fn topic_metrics(topic: String, partitions: &[Partition]) -> TopicMetrics {
    let partitions: Vec<PartitionMetrics> = partitions
        .iter()
        .map(|p| {
            // The segment list once, for both its length and its size.
            let segments = p.inner.segments();
            PartitionMetrics {
                partition: p.id(),
                counts: p.inner.metrics.snapshot(),
                high_watermark: p.high_watermark(),
                log_start_offset: p.log_start_offset(),
                size_bytes: segments.iter().map(|s| s.end()).sum(),
                segments: segments.len(),
            }
        })
        .collect();
    let mut totals = PartitionCounts::default();
    for p in &partitions {
        totals.add(&p.counts);
    }
    TopicMetrics {
        internal: is_internal_topic(&topic),
        topic: topic.into(),
        totals,
        partitions,
    }
}
