//! Orderly consumption (Java's `ConsumeMessageOrderlyService` and the lock
//! half of `RebalanceImpl`), without its stalls.
//!
//! A clustering orderly consumer processes a queue only while it holds the
//! queue's broker lock. A newly assigned queue is locked at once, not at the
//! next lock round, and its offset is read only once the lock is won: the
//! previous owner wrote its offset before it unlocked. Every queue's lock is
//! renewed every [`LOCK_INTERVAL`]; a lock counts for [`LOCK_LIFETIME`] from
//! when the request that won it left, well inside the broker's 60 s, and a
//! queue whose lock lapses or is refused gets no further batch. Queues
//! waiting for a lock ask again every [`LOCK_RETRY`].
//!
//! Each queue has at most one batch out, in offset order; different queues
//! run in parallel up to the consume concurrency. A suspended batch comes
//! back first after the suspension, its reconsume counts raised; a message
//! that reached the max reconsume times goes to the DLQ, and the queue waits
//! for the broker to take it before it moves on.
//!
//! A queue that is no longer ours is released, not dropped: its batch out
//! finishes (up to the shutdown timeout), its offset is written, and only then
//! is it unlocked, so the next owner starts where this one stopped. Nothing
//! runs for a queue that is gone: its state is removed with it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};

use super::{Client, Consumer, ConsumerOp, PullState, Slot, TicketInfo};
use crate::client::remote;
use crate::consumer::{ConsumerError, MessageModel, OrderlyResult, Ticket};
use crate::error::ClientError;
use crate::protocol::body::{LockBatchRequestBody, LockBatchResponseBody};
use crate::protocol::code::{RequestCode, ResponseCode};
use crate::protocol::command::RemotingCommand;
use crate::protocol::MessageQueue;

/// How often an orderly consumer renews the locks of all its queues (Java's
/// `rocketmq.client.rebalance.lockInterval`).
pub const LOCK_INTERVAL: Duration = Duration::from_secs(20);
/// How long a won lock counts, from when its request left (Java's
/// `rocketmq.client.rebalance.lockMaxLiveTime`; the broker keeps it 60 s).
pub const LOCK_LIFETIME: Duration = Duration::from_secs(30);
/// How soon queues still without a lock ask again.
pub const LOCK_RETRY: Duration = Duration::from_millis(500);
/// The bounds of a suspension, as Java holds them.
const SUSPEND_MIN: Duration = Duration::from_millis(10);
const SUSPEND_MAX: Duration = Duration::from_secs(30);

impl Consumer {
    /// Whether its queues need broker locks: orderly and clustering.
    pub(super) fn locks(&self) -> bool {
        self.config.orderly && self.config.message_model == MessageModel::Clustering
    }

    /// Lists an orderly queue for its next batch if it has ready messages.
    fn ready_if_any(&mut self, queue: &MessageQueue) {
        let ready = self
            .queues
            .get(queue)
            .and_then(|s| s.pq.as_ref())
            .is_some_and(|pq| pq.has_ready());
        if ready {
            self.mark_ready(queue);
        }
    }
}

impl Slot {
    /// Whether the queue's broker lock is live at `now`.
    pub(super) fn lock_live(&self, now: Instant) -> bool {
        self.lock.is_some_and(|t| now < t + LOCK_LIFETIME)
    }

    /// Orderly: whether the queue may have its next batch now: none is out,
    /// no message waits for the broker or a local retry, it is not suspended
    /// or being released, and (`locks`) its lock is live.
    pub(super) fn may_hand_out(&self, now: Instant, locks: bool) -> bool {
        self.batch.is_none()
            && self.release.is_none()
            && self.suspended_until.is_none_or(|t| t <= now)
            && (!locks || self.lock_live(now))
            && self.pq.as_ref().is_some_and(|pq| !pq.in_progress())
    }
}

impl Client {
    /// Orderly timers of a running consumer: suspensions that end, lock
    /// rounds, releases past their deadline.
    pub(super) fn orderly_timers(&mut self, now: Instant, group: &str) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        if !c.config.orderly {
            return;
        }
        let mut woke = Vec::new();
        let mut overdue = Vec::new();
        for (q, slot) in &mut c.queues {
            if slot.suspended_until.is_some_and(|t| t <= now) {
                slot.suspended_until = None;
                woke.push(q.clone());
            }
            if slot.release.is_some_and(|t| t <= now) {
                overdue.push(q.clone());
            }
        }
        for q in &woke {
            c.ready_if_any(q);
        }
        self.lock_rounds(now, group);
        for q in overdue {
            warn!(%group, queue = %q, "listener call still running at the release deadline; the queue is unlocked and its batch will be delivered again");
            self.finish_release(now, group, &q);
        }
    }

    /// The periodic round that renews every lock, and the quick retries of
    /// queues waiting for one.
    pub(super) fn lock_rounds(&mut self, now: Instant, group: &str) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        if !c.locks() {
            return;
        }
        let queues: Vec<MessageQueue> = if c.lock_at <= now {
            c.lock_at = now + LOCK_INTERVAL;
            c.lock_retry_at = None;
            c.queues.keys().cloned().collect()
        } else if c.lock_retry_at.is_some_and(|t| t <= now) && c.shutdown.is_none() {
            c.lock_retry_at = None;
            // Those without a lock, and those whose lock lapses before the
            // next round (their renewal failed).
            let round = c.lock_at;
            c.queues
                .iter()
                .filter(|(_, s)| s.release.is_none() && !s.lock_live(round))
                .map(|(q, _)| q.clone())
                .collect()
        } else {
            return;
        };
        self.lock_queues(now, group, queues);
    }

    /// Asks the brokers of `queues` to lock them for this client, one
    /// LOCK_BATCH_MQ per broker.
    pub(super) fn lock_queues(&mut self, now: Instant, group: &str, queues: Vec<MessageQueue>) {
        if queues.is_empty() {
            return;
        }
        let mut by_broker: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
        let mut unrouted = false;
        for q in queues {
            match self.broker_of(&q) {
                Some(addr) => by_broker.entry(addr).or_default().push(q),
                None => unrouted = true,
            }
        }
        if unrouted {
            self.lock_again_soon(now, group);
        }
        let timeout = self.config.request_timeout;
        for (addr, queues) in by_broker {
            if let Some(c) = self.consumers.groups.get_mut(group) {
                for q in &queues {
                    *c.locking.entry(q.clone()).or_default() += 1;
                }
            }
            let body = LockBatchRequestBody {
                client_id: self.client_id.clone(),
                consumer_group: group.to_owned(),
                mq_set: queues.iter().cloned().collect(),
                only_this_broker: false,
            };
            let request = RemotingCommand::request(RequestCode::LOCK_BATCH_MQ, 0)
                .with_body(Bytes::from(body.encode()));
            let op = ConsumerOp::Lock {
                broker: addr.clone(),
                queues,
                sent: now,
            };
            self.consumer_request(now, group, &addr, request, op, timeout);
        }
    }

    fn lock_again_soon(&mut self, now: Instant, group: &str) {
        if let Some(c) = self.consumers.groups.get_mut(group) {
            let at = now + LOCK_RETRY;
            c.lock_retry_at = Some(c.lock_retry_at.map_or(at, |t| t.min(at)));
        }
    }

    /// A broker's answer to LOCK_BATCH_MQ. Queues it locked count as locked
    /// from when the request left; a queue waiting for its first lock reads
    /// its offset now. A queue it refused, whose lock is not newer than this
    /// request, is no longer locked and gets no further batch. A lock won for
    /// a queue that is gone meanwhile is given back.
    pub(super) fn on_locked(
        &mut self,
        now: Instant,
        group: &str,
        broker: String,
        queues: Vec<MessageQueue>,
        sent: Instant,
        answer: Result<RemotingCommand, ClientError>,
    ) {
        let won = match answer {
            Ok(cmd) if cmd.response_code() == ResponseCode::SUCCESS => {
                LockBatchResponseBody::decode(&cmd.body)
                    .map(|b| b.lock_ok_mq_set)
                    .map_err(|e| ClientError::BadResponse(e.to_string()))
            }
            Ok(cmd) => Err(remote(cmd.response_code(), &cmd)),
            Err(e) => Err(e),
        };
        let Some(c) = self.consumers.groups.get_mut(group) else {
            if let Ok(won) = won {
                self.send_unlock(now, group, won.into_iter().collect(), false);
            }
            return;
        };
        for q in &queues {
            if let Some(n) = c.locking.get_mut(q) {
                *n -= 1;
                if *n == 0 {
                    c.locking.remove(q);
                }
            }
        }
        let won = match won {
            Ok(won) => won,
            Err(error) => {
                // Locks held stay live until they lapse; ask again soon. Queues
                // gone meanwhile may have been locked all the same: they are
                // given back.
                c.failed(ConsumerError::Lock {
                    broker,
                    queues: queues.len(),
                    error,
                });
                let gone: Vec<MessageQueue> = queues
                    .into_iter()
                    .filter(|q| !c.queues.contains_key(q) && !c.releasing.contains(q))
                    .collect();
                self.send_unlock(now, group, gone, false);
                self.lock_again_soon(now, group);
                return self.unregister_if_deferred(now, group);
            }
        };
        let mut started = Vec::new();
        let mut regained = Vec::new();
        let mut stray = Vec::new();
        let mut waiting = false;
        for q in queues {
            let locked = won.contains(&q);
            let Some(slot) = c.queues.get_mut(&q) else {
                // Won for a queue gone meanwhile: given back, after its
                // offset write if that is out.
                if locked && !c.releasing.contains(&q) {
                    stray.push(q);
                }
                continue;
            };
            if slot.assigned > sent {
                // Asked for an earlier tenure; this one asked for itself.
                continue;
            }
            if locked {
                let was_live = slot.lock_live(now);
                slot.lock = Some(slot.lock.map_or(sent, |t| t.max(sent)));
                if !was_live && slot.lock_live(now) {
                    slot.lock_won = Some(now);
                    debug!(%group, queue = %q, "queue locked");
                }
                if slot.pull == PullState::Locking {
                    slot.pull = PullState::Starting;
                    started.push((q, slot.generation));
                } else if !was_live {
                    regained.push(q);
                }
            } else {
                if slot.lock.is_some_and(|t| t <= sent) {
                    debug!(%group, queue = %q, "queue lock refused: held by another member");
                    slot.lock = None;
                    slot.lock_won = None;
                }
                waiting |= slot.release.is_none() && !slot.lock_live(c.lock_at);
            }
        }
        for q in &regained {
            c.ready_if_any(q);
        }
        if waiting {
            self.lock_again_soon(now, group);
        }
        for (q, generation) in started {
            self.query_offset(now, group, q, generation);
        }
        self.send_unlock(now, group, stray, false);
        self.dispatch_deliveries(now, group);
        self.unregister_if_deferred(now, group);
    }

    /// Whether a shutdown's unlocks and unregisters must wait for lock
    /// requests still out (then they go once the last is answered, or at the
    /// deadline).
    pub(super) fn defer_unregister(&mut self, group: &str) -> bool {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return false;
        };
        let wait = c.locks() && !c.locking.is_empty();
        if let Some(s) = c.shutdown.as_mut().filter(|_| wait) {
            s.unregister_deferred = true;
            return true;
        }
        false
    }

    /// The last lock request a shutdown waited for was answered.
    fn unregister_if_deferred(&mut self, now: Instant, group: &str) {
        let ready = self.consumers.groups.get_mut(group).is_some_and(|c| {
            c.locking.is_empty()
                && c.shutdown
                    .as_mut()
                    .is_some_and(|s| std::mem::take(&mut s.unregister_deferred))
        });
        if ready {
            self.unregister_consumer(now, group);
        }
    }

    /// Sends UNLOCK_BATCH_MQ for `queues`, one per broker; how many went out.
    /// `last` marks a shutdown's unlocks, which it waits for.
    fn send_unlock(
        &mut self,
        now: Instant,
        group: &str,
        queues: Vec<MessageQueue>,
        last: bool,
    ) -> usize {
        let mut by_broker: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
        for q in queues {
            if let Some(addr) = self.broker_of(&q) {
                by_broker.entry(addr).or_default().push(q);
            }
        }
        let timeout = self.config.request_timeout;
        let sent = by_broker.len();
        for (addr, queues) in by_broker {
            debug!(%group, broker = %addr, queues = queues.len(), "unlocking");
            let body = LockBatchRequestBody {
                client_id: self.client_id.clone(),
                consumer_group: group.to_owned(),
                mq_set: queues.into_iter().collect(),
                only_this_broker: false,
            };
            let request = RemotingCommand::request(RequestCode::UNLOCK_BATCH_MQ, 0)
                .with_body(Bytes::from(body.encode()));
            self.consumer_request(
                now,
                group,
                &addr,
                request,
                ConsumerOp::Unlock { last },
                timeout,
            );
        }
        sent
    }

    /// At the end of a shutdown, once the offsets are written: every lock
    /// goes. How many unlocks the shutdown waits for.
    pub(super) fn unlock_all(&mut self, now: Instant, group: &str) -> usize {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return 0;
        };
        if !c.locks() {
            return 0;
        }
        let locked: Vec<MessageQueue> = c
            .queues
            .iter_mut()
            .filter_map(|(q, s)| s.lock.take().map(|_| q.clone()))
            .collect();
        self.send_unlock(now, group, locked, true)
    }

    /// Orderly clustering: a queue that is no longer ours but holds its lock
    /// is released rather than dropped: no further batch or pull, and once
    /// its batch out is done, its offset is written and then it is unlocked.
    /// Whether the queue is being released (and so must not be dropped).
    pub(super) fn begin_release(
        &mut self,
        now: Instant,
        group: &str,
        queue: &MessageQueue,
    ) -> bool {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return false;
        };
        if !c.locks() || c.shutdown.is_some() {
            return false;
        }
        let deadline = now + c.config.shutdown_timeout;
        let Some(slot) = c.queues.get_mut(queue) else {
            return false;
        };
        if slot.release.is_some() {
            return true;
        }
        if slot.lock.is_none() {
            return false;
        }
        slot.release = Some(deadline);
        if slot.pull == PullState::Full {
            c.waiting.retain(|q| **q != *queue);
        }
        if slot.pull != PullState::InFlight {
            slot.pull = PullState::Stopped;
        }
        if slot.in_ready {
            slot.in_ready = false;
            c.ready.retain(|q| **q != *queue);
        }
        debug!(%group, %queue, "queue released once its batch is done");
        self.try_finish_release(now, group, queue);
        true
    }

    /// A queue being released that is ours again: it carries on.
    pub(super) fn keep_released(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let Some(slot) = c.queues.get_mut(queue) else {
            return;
        };
        slot.release = None;
        if slot.pull == PullState::Stopped {
            slot.pull = PullState::At(now);
        }
        c.ready_if_any(queue);
        self.pull_or_wait(now, group, queue);
    }

    /// Finishes a release once nothing of the queue is out.
    fn try_finish_release(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        let idle = self
            .consumers
            .groups
            .get(group)
            .and_then(|c| c.queues.get(queue))
            .is_some_and(|s| {
                s.release.is_some()
                    && s.batch.is_none()
                    && !s.pq.as_ref().is_some_and(|pq| pq.busy())
            });
        if idle {
            self.finish_release(now, group, queue);
        }
    }

    /// The queue goes: its cache is freed and its offset written; the unlock
    /// follows the write's answer.
    fn finish_release(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        self.update_committed(group, queue);
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        if !c.remove_slot(queue) {
            return;
        }
        let offset = c
            .offsets
            .remove(queue)
            .filter(|o| o.committed >= 0 && o.committed != o.persisted);
        debug!(%group, %queue, "queue released");
        let written = offset.is_some_and(|o| {
            let op = ConsumerOp::Release {
                queue: queue.clone(),
            };
            self.write_offset(now, group, queue, o.committed, op)
        });
        if written {
            if let Some(c) = self.consumers.groups.get_mut(group) {
                c.releasing.insert(queue.clone());
            }
        } else {
            self.unlock_released(now, group, queue);
        }
        self.room_freed(now, group);
    }

    /// Unlocks a released queue unless it is ours again, or a lock request of
    /// it is out (the answer to that gives the lock back), or its offset write
    /// is out (its answer does).
    fn unlock_released(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        let keep = self.consumers.groups.get(group).is_some_and(|c| {
            c.queues.contains_key(queue)
                || c.locking.contains_key(queue)
                || c.releasing.contains(queue)
        });
        if !keep {
            self.send_unlock(now, group, vec![queue.clone()], false);
        }
    }

    /// A released queue's offset write was answered: the queue is unlocked.
    pub(super) fn on_released(
        &mut self,
        now: Instant,
        group: &str,
        queue: MessageQueue,
        answer: Result<RemotingCommand, ClientError>,
    ) {
        match answer {
            Ok(cmd) if cmd.response_code() == ResponseCode::SUCCESS => {}
            // The next owner may start a little earlier: duplicates, no loss.
            Ok(cmd) => self.offset_failed(group, &queue, remote(cmd.response_code(), &cmd)),
            Err(e) => self.offset_failed(group, &queue, e),
        }
        if let Some(c) = self.consumers.groups.get_mut(group) {
            c.releasing.remove(&queue);
        }
        self.unlock_released(now, group, &queue);
    }

    /// Orderly: a batch or a DLQ send of `queue` ended: the queue is listed
    /// for its next batch, or its release goes on.
    pub(super) fn orderly_settled(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        if !c.config.orderly {
            return;
        }
        if c.queues.get(queue).is_some_and(|s| s.release.is_some()) {
            return self.try_finish_release(now, group, queue);
        }
        c.ready_if_any(queue);
    }

    /// An orderly listener call finished. Success: the batch is done.
    /// Suspend: its messages are ready again, first in line, after the
    /// suspension; those past the max reconsume times go to the DLQ instead
    /// (broadcasting, which has none, drops them).
    pub(super) fn on_orderly_consumed(
        &mut self,
        now: Instant,
        ticket: Ticket,
        group: &str,
        info: TicketInfo,
        result: OrderlyResult,
    ) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let max = match c.config.max_reconsume_times {
            n if n < 0 => i32::MAX,
            n => n,
        };
        let clustering = c.config.message_model == MessageModel::Clustering;
        let default_suspend = c.config.suspend_time;
        let mut backs = Vec::new();
        let mut freed = (0, 0);
        if let Some(slot) = c.queues.get_mut(&*info.queue) {
            if slot.batch == Some(ticket.0) {
                slot.batch = None;
            }
            if let Some(pq) = slot
                .pq
                .as_mut()
                .filter(|_| slot.generation == info.generation)
            {
                let (count, bytes) = (pq.count(), pq.bytes());
                let n = info.offsets.len() as u64;
                match result {
                    OrderlyResult::Success => {
                        pq.done(now, ticket.0, &info.offsets);
                        c.stats.consumed += n;
                    }
                    OrderlyResult::Suspend { delay } => {
                        c.stats.failed += n;
                        let mut again = false;
                        for &offset in info.offsets.iter() {
                            match pq.reconsume_times(offset) {
                                Some(times) if times >= max && clustering => {
                                    if let Some(m) = pq.sending_back(now, ticket.0, offset) {
                                        backs.push((offset, m.clone()));
                                    }
                                }
                                Some(times) if times >= max => {
                                    pq.drop_failed(ticket.0, &[offset]);
                                }
                                Some(_) => again |= pq.put_back(ticket.0, offset),
                                None => {}
                            }
                        }
                        if again {
                            let delay = delay
                                .unwrap_or(default_suspend)
                                .clamp(SUSPEND_MIN, SUSPEND_MAX);
                            slot.suspended_until = Some(now + delay);
                        }
                    }
                }
                freed = (count - pq.count(), bytes - pq.bytes());
            }
        }
        c.release(freed.0, freed.1);
        for (offset, m) in backs {
            // Delay level -1: straight to the DLQ.
            self.send_back(
                now,
                group,
                &info.queue,
                info.generation,
                offset,
                &m,
                -1,
                max,
            );
        }
        self.orderly_settled(now, group, &info.queue);
        self.completed(now, group, &info.queue);
    }
}
