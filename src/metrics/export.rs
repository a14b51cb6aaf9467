//! Feature `metrics`: [`Metrics::publish`], a snapshot handed to the
//! [`metrics`](https://docs.rs/metrics) facade, for whichever exporter (Prometheus, StatsD,
//! ...) the host installed.

use ::metrics::{counter, gauge};

use super::snapshot::{Metrics, PartitionCounts};

/// A duration as whole microseconds (the unit of the fsync histogram's buckets).
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Metrics {
    /// Publishes this snapshot through the `metrics` facade (feature `metrics`) to the
    /// recorder the host installed: every count as a counter (set with `absolute`, since the
    /// log keeps the totals), every value of now as a gauge. Call it with a fresh snapshot as
    /// often as the exporter should see new values (every scrape, every few seconds).
    ///
    /// Names all start with `annals_`; the labels are `topic` and `partition` (per partition
    /// only: a topic's totals are the sum over its partitions), `group`, and `producer` (its
    /// [`serial`](super::ProducerMetrics::serial)):
    ///
    /// - per partition, counters `annals_records_in_total`, `annals_bytes_in_total`,
    ///   `annals_batches_in_total`, `annals_markers_in_total`, `annals_records_out_total`,
    ///   `annals_bytes_out_total`, `annals_batches_out_total`,
    ///   `annals_compression_batches_total`, `annals_compression_bytes_before_total`,
    ///   `annals_compression_bytes_after_total`, `annals_retention_segments_deleted_total`,
    ///   `annals_retention_bytes_deleted_total`, `annals_retention_offsets_removed_total`,
    ///   `annals_compaction_passes_total`, `annals_compaction_bytes_read_total`,
    ///   `annals_compaction_bytes_written_total`, `annals_compaction_records_removed_total`;
    ///   gauges `annals_high_watermark`, `annals_log_start_offset`, `annals_size_bytes`,
    ///   `annals_segments`;
    /// - counters `annals_fsyncs_total`, `annals_fsync_directories_total`,
    ///   `annals_fsync_failures_total`, `annals_fsync_microseconds_total`, and
    ///   `annals_fsync_latency_microseconds_bucket` with label `le` (the bucket's bound in
    ///   microseconds, `+Inf` for the last; cumulative, as Prometheus' `histogram_quantile`
    ///   reads them);
    /// - gauges `annals_open_files`, `annals_mappings`, `annals_mapped_bytes`, counter
    ///   `annals_files_opened_total`;
    /// - per producer, gauges `annals_producer_buffer_bytes`,
    ///   `annals_producer_buffer_memory_bytes`, counters `annals_producer_records_sent_total`,
    ///   `annals_producer_records_failed_total`, `annals_producer_sends_refused_total`,
    ///   `annals_producer_buffer_waits_total`, `annals_producer_buffer_wait_microseconds_total`;
    /// - per group, gauge `annals_group_lag`, and per group and partition
    ///   `annals_group_partition_lag`;
    /// - counters `annals_maintenance_runs_total`, `annals_maintenance_failed_runs_total`,
    ///   `annals_maintenance_microseconds_total`,
    ///   `annals_maintenance_transactions_timed_out_total`; gauge `annals_uptime_seconds`.
    ///
    /// A deleted topic, a dropped producer or a group without offsets is simply not published
    /// again: what the recorder does with series that stop (the Prometheus exporter's idle
    /// timeout drops them) is its own. Counts start from zero when a log is opened again, and
    /// `absolute` lets a recorder keep the higher value it had: publish one log per process.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = annals::Log::open(dir.path())?;
    /// log.create_topic("orders", annals::TopicConfig::default())?;
    /// // With no recorder installed the facade drops everything; a host installs its exporter
    /// // (`metrics_exporter_prometheus::PrometheusBuilder::new().install()`, say) first.
    /// log.metrics().publish();
    /// # Ok(()) }
    /// ```
    pub fn publish(&self) {
        for topic in &self.topics {
            let name = topic.topic.to_string();
            for p in &topic.partitions {
                let partition = p.partition.to_string();
                publish_counts(&name, &partition, &p.counts);
                let labels = [("topic", name.clone()), ("partition", partition)];
                gauge!("annals_high_watermark", &labels).set(p.high_watermark as f64);
                gauge!("annals_log_start_offset", &labels).set(p.log_start_offset as f64);
                gauge!("annals_size_bytes", &labels).set(p.size_bytes as f64);
                gauge!("annals_segments", &labels).set(p.segments as f64);
            }
        }

        let f = &self.fsync;
        counter!("annals_fsyncs_total").absolute(f.count);
        counter!("annals_fsync_directories_total").absolute(f.directories);
        counter!("annals_fsync_failures_total").absolute(f.failures);
        counter!("annals_fsync_microseconds_total").absolute(micros(f.total_time));
        for (below, count) in f.histogram.cumulative() {
            // A latency below 2^i µs is at most 2^i - 1 µs: Prometheus' `le` is inclusive.
            let le = below.map_or_else(|| "+Inf".to_string(), |b| (b - 1).to_string());
            counter!("annals_fsync_latency_microseconds_bucket", "le" => le).absolute(count);
        }

        let files = &self.files;
        gauge!("annals_open_files").set(files.open_files as f64);
        gauge!("annals_mappings").set(files.mappings as f64);
        gauge!("annals_mapped_bytes").set(files.mapped_bytes as f64);
        counter!("annals_files_opened_total").absolute(files.files_opened);

        for p in &self.producers {
            let labels = [("producer", p.serial.to_string())];
            let c = &p.counts;
            gauge!("annals_producer_buffer_bytes", &labels).set(p.buffer_bytes as f64);
            gauge!("annals_producer_buffer_memory_bytes", &labels).set(p.buffer_memory as f64);
            counter!("annals_producer_records_sent_total", &labels).absolute(c.records_sent);
            counter!("annals_producer_records_failed_total", &labels).absolute(c.records_failed);
            counter!("annals_producer_sends_refused_total", &labels).absolute(c.sends_refused);
            counter!("annals_producer_buffer_waits_total", &labels).absolute(c.buffer_waits);
            counter!("annals_producer_buffer_wait_microseconds_total", &labels)
                .absolute(micros(c.buffer_wait_time));
        }

        for g in &self.groups {
            gauge!("annals_group_lag", "group" => g.group.clone()).set(g.lag as f64);
            for p in &g.partitions {
                let labels = [
                    ("group", g.group.clone()),
                    ("topic", p.topic.to_string()),
                    ("partition", p.partition.to_string()),
                ];
                gauge!("annals_group_partition_lag", &labels).set(p.lag as f64);
            }
        }

        let m = &self.maintenance;
        counter!("annals_maintenance_runs_total").absolute(m.runs);
        counter!("annals_maintenance_failed_runs_total").absolute(m.failed_runs);
        counter!("annals_maintenance_microseconds_total").absolute(micros(m.total_time));
        counter!("annals_maintenance_transactions_timed_out_total")
            .absolute(m.transactions_timed_out);
        gauge!("annals_uptime_seconds").set(self.uptime.as_secs_f64());
    }
}

/// One partition's counts.
fn publish_counts(topic: &str, partition: &str, c: &PartitionCounts) {
    let labels = [
        ("topic", topic.to_string()),
        ("partition", partition.to_string()),
    ];
    let counts = [
        ("annals_records_in_total", c.records_in),
        ("annals_bytes_in_total", c.bytes_in),
        ("annals_batches_in_total", c.batches_in),
        ("annals_markers_in_total", c.markers_in),
        ("annals_records_out_total", c.records_out),
        ("annals_bytes_out_total", c.bytes_out),
        ("annals_batches_out_total", c.batches_out),
        ("annals_compression_batches_total", c.compression.batches),
        (
            "annals_compression_bytes_before_total",
            c.compression.bytes_before,
        ),
        (
            "annals_compression_bytes_after_total",
            c.compression.bytes_after,
        ),
        (
            "annals_retention_segments_deleted_total",
            c.retention.segments_deleted,
        ),
        (
            "annals_retention_bytes_deleted_total",
            c.retention.bytes_deleted,
        ),
        (
            "annals_retention_offsets_removed_total",
            c.retention.offsets_removed,
        ),
        ("annals_compaction_passes_total", c.compaction.passes),
        (
            "annals_compaction_bytes_read_total",
            c.compaction.bytes_read,
        ),
        (
            "annals_compaction_bytes_written_total",
            c.compaction.bytes_written,
        ),
        (
            "annals_compaction_records_removed_total",
            c.compaction.records_removed,
        ),
    ];
    for (name, value) in counts {
        counter!(name, &labels).absolute(value);
    }
}
