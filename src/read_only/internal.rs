//! Committed offsets and open transactions, read from the internal topics the owner keeps them
//! in (`__consumer_offsets`, `__transaction_state`), replayed as the owner replays them at open:
//! the newest record of each key wins and a tombstone deletes it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::ReadOnlyLog;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::StoredRecord;
use crate::offsets::{decode_key, decode_value, OffsetAndMetadata, OFFSETS_TOPIC};
use crate::partition::IsolationLevel;
use crate::topic_partition::TopicPartition;
use crate::txn::{transaction_record, TransactionInfo, TransactionState, TRANSACTION_STATE_TOPIC};

/// Bytes one replay read asks for.
const REPLAY_READ: usize = 1 << 20;

/// One offset a group committed, as [`ReadOnlyLog::committed_offsets`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CommittedOffset {
    pub group: String,
    pub topic_partition: TopicPartition,
    pub offset: OffsetAndMetadata,
}

impl ReadOnlyLog {
    /// Calls `apply` with every record of `topic` from its log start to its end as read now.
    fn replay(
        &self,
        topic: &str,
        isolation: IsolationLevel,
        mut apply: impl FnMut(&StoredRecord) -> Result<()>,
    ) -> Result<()> {
        if !self.has_topic(topic) {
            return Ok(());
        }
        for partition in 0..self.topic_config(topic)?.partitions {
            let mut reader = self.reader(topic, partition, isolation)?;
            loop {
                let before = reader.position();
                let records = reader.poll(REPLAY_READ)?;
                records.iter().try_for_each(&mut apply)?;
                if records.is_empty() && reader.position() == before {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Every offset committed and not deleted, sorted by group, topic and partition: the
    /// committed (read-committed) records of `__consumer_offsets`. Group members live in the
    /// owning process's memory only, so a read-only view has none to show.
    pub fn committed_offsets(&self) -> Result<Vec<CommittedOffset>> {
        let mut latest: BTreeMap<(String, TopicPartition), OffsetAndMetadata> = BTreeMap::new();
        self.replay(OFFSETS_TOPIC, IsolationLevel::ReadCommitted, |r| {
            // Control records and foreign keys are not commits (the owner skips them too).
            let Some(key) = r.key.as_deref().and_then(decode_key) else {
                return Ok(());
            };
            match r.value.as_deref().map(decode_value) {
                None => {
                    latest.remove(&key);
                }
                Some(Some(value)) => {
                    latest.insert(key, value);
                }
                Some(None) => {}
            }
            Ok(())
        })?;
        Ok(latest
            .into_iter()
            .map(|((group, topic_partition), offset)| CommittedOffset {
                group,
                topic_partition,
                offset,
            })
            .collect())
    }

    /// The transactions open now (every state between the first write and the last marker),
    /// sorted by transactional id, as the owner's [`Log::transactions`](crate::Log::transactions)
    /// reports them. One older than its timeout is hanging: the owner's maintenance aborts it.
    ///
    /// `__transaction_state` records each id's producer and the states from the commit or
    /// abort on; a transaction still taking writes is found on the partitions it wrote to
    /// (their open transactions, by producer id), its age counted from its first batch's
    /// timestamp.
    pub fn transactions(&self) -> Result<Vec<TransactionInfo>> {
        let mut latest: BTreeMap<String, Option<TransactionInfo>> = BTreeMap::new();
        let now = now_ms();
        let state_dir = self.dir.join(format!("{TRANSACTION_STATE_TOPIC}-0"));
        self.replay(
            TRANSACTION_STATE_TOPIC,
            IsolationLevel::ReadUncommitted,
            |r| {
                let Some(key) = r.key.as_deref() else {
                    return Ok(());
                };
                let (id, info) =
                    transaction_record(key, r.value.as_deref(), now).map_err(|reason| {
                        Error::CorruptMetadata {
                            file: state_dir.clone(),
                            reason: format!("record at offset {}: {reason}", r.offset),
                        }
                    })?;
                latest.insert(id, info);
                Ok(())
            },
        )?;
        if latest.is_empty() {
            return Ok(Vec::new());
        }
        // Producer id → the partitions it has a transaction open on, and its first timestamp.
        let mut writing: HashMap<i64, (Vec<TopicPartition>, i64)> = HashMap::new();
        let topics: Vec<(String, u32)> = self
            .topics
            .read()
            .iter()
            .filter(|(name, _)| name != TRANSACTION_STATE_TOPIC)
            .map(|(name, config)| (name.clone(), config.partitions))
            .collect();
        for (topic, partitions) in topics {
            for partition in 0..partitions {
                let reader = self.reader(&topic, partition, IsolationLevel::ReadCommitted)?;
                for (producer_id, _, timestamp) in reader.open_transactions()? {
                    let entry = writing.entry(producer_id).or_insert((Vec::new(), i64::MAX));
                    entry.0.push(TopicPartition::new(topic.as_str(), partition));
                    if timestamp >= 0 {
                        entry.1 = entry.1.min(timestamp);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for mut info in latest.into_values().flatten() {
            let open = matches!(
                info.state,
                TransactionState::Ongoing
                    | TransactionState::PrepareCommit
                    | TransactionState::PrepareAbort
                    | TransactionState::PrepareEpochFence
            );
            if !open {
                let Some((partitions, first)) = writing.remove(&info.producer_id) else {
                    continue;
                };
                info.state = TransactionState::Ongoing;
                info.partitions = partitions;
                info.partitions.sort();
                if first != i64::MAX {
                    info.age = Duration::from_millis(now.saturating_sub(first).max(0) as u64);
                }
            }
            out.push(info);
        }
        Ok(out)
    }
}
