//! Group membership from the consumer's side: subscribe, the handover step at each poll, the
//! rebalance callbacks, leaving; and where a newly assigned partition starts reading.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fetch::resolve;
use super::{AutoOffsetReset, Consumer, ConsumerConfig, Membership, Mode, RebalanceListener};
use crate::error::{Error, Result};
use crate::group::Join;
use crate::topic_partition::TopicPartition;
use crate::trace::Listed;

/// A member syncs with its coordinator at least this often while polling (more often with a
/// `max_poll_interval` under 4 s: a quarter of it), which keeps it alive in the group (its
/// `max_poll_interval` clock restarts at each sync).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often a member waiting for partitions another member still holds looks again (the holder
/// wakes it when it releases them; this only matters when the holder died silently).
const WAITING_RECHECK: Duration = Duration::from_millis(100);

impl Consumer {
    /// Joins this consumer's group with a subscription to `topics`; the group's coordinator
    /// splits their partitions between its members, and `poll` follows its decisions. Calling it
    /// again replaces the subscription; an empty list unsubscribes.
    ///
    /// Errors: [`Error::UnknownTopic`], or [`Error::InvalidArgument`] if this consumer has a
    /// manual assignment, or the group's members use another assignor.
    ///
    /// `topics` is what you hold: `&["orders"]`, a `Vec<String>`, a slice of `Arc<str>`.
    pub fn subscribe<T: AsRef<str>>(&mut self, topics: &[T]) -> Result<()> {
        self.check_usable()?;
        // (A manual assignment that deleted topics emptied counts as none.)
        if matches!(self.mode, Mode::Manual) && !self.assigned.is_empty() {
            return Err(Error::InvalidArgument(
                "this consumer has a manual assignment; assign(&[]) before subscribing".into(),
            ));
        }
        let mut wanted = BTreeSet::new();
        for t in topics {
            let t = t.as_ref();
            self.catalog.topic_config(t)?; // unknown (or internal) topics are refused here
            wanted.insert(t.to_string());
        }
        if wanted.is_empty() {
            return self.unsubscribe();
        }
        self.join_group(wanted)
    }

    /// Joins the group with `topics` (not validated: a rejoin keeps subscribed topics that were
    /// deleted meanwhile; the coordinator ignores missing topics until they exist again), or
    /// changes the subscription of this member.
    fn join_group(&mut self, topics: BTreeSet<String>) -> Result<()> {
        let counts = self.catalog.partition_counts();
        match &mut self.mode {
            Mode::Group(m) => {
                self.catalog.coordinator().resubscribe(
                    &m.group,
                    &m.member_id,
                    topics.clone(),
                    &counts,
                )?;
                m.topics = topics;
                m.attention.store(true, Ordering::Release);
            }
            _ => {
                let group = self.group_for("subscribe")?.to_string();
                let attention = Arc::new(AtomicBool::new(true));
                let member_id = self.catalog.coordinator().join(
                    Join {
                        group: group.clone(),
                        client_id: self.config.client_id.clone(),
                        topics: topics.clone(),
                        assignor: self.config.assignor,
                        max_poll_interval: self.config.max_poll_interval,
                        waiter: self.waiter.clone(),
                        attention: attention.clone(),
                    },
                    &counts,
                    Instant::now(),
                )?;
                self.mode = Mode::Group(Membership {
                    group,
                    member_id,
                    generation: 0,
                    topics,
                    attention,
                    last_sync: Instant::now(),
                    waiting: false,
                });
            }
        }
        Ok(())
    }

    /// Like [`subscribe`](Self::subscribe), with callbacks for assignment changes.
    pub fn subscribe_with<T: AsRef<str>>(
        &mut self,
        topics: &[T],
        listener: impl RebalanceListener + 'static,
    ) -> Result<()> {
        self.subscribe(topics)?;
        self.listener = Some(Box::new(listener));
        Ok(())
    }

    /// Leaves the group (running `on_revoked` for owned partitions) or drops the manual
    /// assignment.
    pub fn unsubscribe(&mut self) -> Result<()> {
        self.check_usable()?;
        self.leave(true)
    }

    /// Leaves the group or the manual assignment. `callbacks` is false from `Drop`.
    pub(super) fn leave(&mut self, callbacks: bool) -> Result<()> {
        let owned = self.assignment();
        if matches!(self.mode, Mode::Group(_)) && callbacks && !owned.is_empty() {
            // It still owns them: a commit in `on_revoked` is accepted.
            self.callback(&owned, |l, c, p| l.on_revoked(c, p));
        }
        self.drop_partitions(&owned);
        if let Mode::Group(m) = std::mem::replace(&mut self.mode, Mode::Unassigned) {
            let counts = self.catalog.partition_counts();
            self.catalog
                .coordinator()
                .leave(&m.group, &m.member_id, &counts);
        }
        Ok(())
    }

    /// Runs a listener callback with the listener taken out, so it can borrow the consumer.
    fn callback(
        &mut self,
        partitions: &[TopicPartition],
        f: impl FnOnce(&mut dyn RebalanceListener, &mut Consumer, &[TopicPartition]),
    ) {
        if let Some(mut listener) = self.listener.take() {
            self.in_callback = true;
            f(&mut *listener, self, partitions);
            self.in_callback = false;
            self.listener = Some(listener);
        }
    }

    /// The group step of a poll: heartbeat, revoke what the target gives away (after
    /// `on_revoked`), take what was granted (then `on_assigned`). Cheap when nothing changed.
    pub(super) fn sync_group(&mut self, now: Instant) -> Result<()> {
        let Mode::Group(m) = &mut self.mode else {
            return Ok(());
        };
        let due = m.attention.swap(false, Ordering::AcqRel)
            || now >= m.last_sync + sync_interval(&self.config, m.waiting)
            || m.generation == 0;
        if !due {
            return Ok(());
        }
        m.last_sync = now;
        let member_id = m.member_id.clone();
        let counts = self.catalog.partition_counts();
        let group = m.group.clone();
        let result = match self
            .catalog
            .coordinator()
            .sync(&group, &member_id, &counts, now)
        {
            Ok(r) => r,
            Err(Error::MemberFenced { .. }) => return self.rejoin_after_fence(),
            Err(e) => return Err(e),
        };
        if let Mode::Group(m) = &mut self.mode {
            m.generation = result.generation;
            m.waiting = result.waiting;
        }
        if !(result.lost.is_empty() && result.revoke.is_empty() && result.granted.is_empty()) {
            info!(
                group = %group,
                member = %member_id,
                generation = result.generation,
                granted = %Listed(&result.granted),
                revoked = %Listed(&result.revoke),
                lost = %Listed(&result.lost),
                "consumer's assignment changes"
            );
        }
        let lost = self.lost_partitions(result.lost)?;
        if !lost.is_empty() {
            self.callback(&lost, |l, c, p| l.on_lost(c, p));
            self.drop_partitions(&lost);
            // Those still owned (a topic deleted and created again before the coordinator saw
            // it) go back to the group, which grants the new topic's partitions afresh.
            self.catalog
                .coordinator()
                .release(&group, &member_id, &lost);
        }
        let revoke: Vec<TopicPartition> = result
            .revoke
            .into_iter()
            .filter(|tp| !lost.contains(tp))
            .collect();
        if !revoke.is_empty() {
            self.callback(&revoke, |l, c, p| l.on_revoked(c, p));
            self.drop_partitions(&revoke);
            self.catalog
                .coordinator()
                .release(&group, &member_id, &revoke);
        }
        if !result.granted.is_empty() {
            for tp in &result.granted {
                match self.catalog.partition(&tp.topic, tp.partition) {
                    Ok(p) => self.add_partition(tp.clone(), p),
                    // Deleted between the coordinator's view and now: the next sync sees it.
                    Err(Error::UnknownTopic { .. } | Error::UnknownPartition { .. }) => self
                        .catalog
                        .coordinator()
                        .release(&group, &member_id, std::slice::from_ref(tp)),
                    Err(e) => return Err(e),
                }
            }
            self.callback(&result.granted, |l, c, p| l.on_assigned(c, p));
        }
        Ok(())
    }

    /// Partitions this member holds that were taken from it without a revoke: those the
    /// coordinator reports (`reported`: their topic was deleted), and those whose handle is
    /// closed because their topic was deleted (perhaps created again since) while the log is
    /// still open.
    fn lost_partitions(&self, reported: Vec<TopicPartition>) -> Result<Vec<TopicPartition>> {
        let mut lost: Vec<TopicPartition> = reported
            .into_iter()
            .filter(|tp| self.assigned.contains_key(tp))
            .collect();
        for (tp, a) in &self.assigned {
            if a.partition.inner.is_closed() && !lost.contains(tp) {
                lost.push(tp.clone());
            }
        }
        if !lost.is_empty() && self.catalog.is_closed() {
            return Err(Error::Closed); // the handles closed with the log: nothing was lost
        }
        lost.sort();
        Ok(lost)
    }

    /// This member was removed (it stopped polling for too long): whatever it held belongs to
    /// others now, so it cannot commit it (`on_lost`, not `on_revoked`); it joins again with the
    /// same subscription.
    fn rejoin_after_fence(&mut self) -> Result<()> {
        let lost = self.assignment();
        if let Mode::Group(m) = &self.mode {
            warn!(
                group = %m.group,
                member = %m.member_id,
                lost = %Listed(&lost),
                "the group removed this consumer (it did not poll within max_poll_interval): \
                 its partitions are lost, it joins again"
            );
        }
        if !lost.is_empty() {
            self.callback(&lost, |l, c, p| l.on_lost(c, p));
        }
        self.drop_partitions(&lost);
        let topics = match std::mem::replace(&mut self.mode, Mode::Unassigned) {
            Mode::Group(m) => m.topics,
            _ => BTreeSet::new(),
        };
        // Topics deleted meanwhile stay subscribed, as they would without the fence.
        self.join_group(topics)
    }

    /// Where `tp` reads next: its position, else the committed offset if still inside the log,
    /// else `auto_offset_reset`.
    pub(super) fn resolve_position(&mut self, tp: &TopicPartition) -> Result<u64> {
        let a = self.assigned.get_mut(tp).expect("checked by caller");
        resolve(a, tp, &self.config, &self.offsets)
    }

    /// When the position fell out of the log (retention deleted records below it), where to go.
    pub(super) fn reset_out_of_range(&mut self, tp: &TopicPartition, error: Error) -> Result<()> {
        let a = self.assigned.get_mut(tp).expect("assigned");
        a.jump(match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => a.partition.log_start_offset(),
            AutoOffsetReset::Latest => a.partition.high_watermark(),
            AutoOffsetReset::Error => return Err(error),
        });
        Ok(())
    }

    /// The deadline by which the group step must run again while parked.
    pub(super) fn group_deadline(&self) -> Option<Instant> {
        match &self.mode {
            Mode::Group(m) => Some(m.last_sync + sync_interval(&self.config, m.waiting)),
            _ => None,
        }
    }
}

/// How long a member may go without syncing: the heartbeat (shorter than `max_poll_interval`
/// by a margin, so a member that polls is never taken for a silent one), or the recheck while
/// waiting for partitions.
fn sync_interval(config: &ConsumerConfig, waiting: bool) -> Duration {
    let heartbeat = HEARTBEAT.min(config.max_poll_interval / 4);
    if waiting {
        heartbeat.min(WAITING_RECHECK)
    } else {
        heartbeat
    }
}
