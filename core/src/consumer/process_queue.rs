//! One assigned queue's cache: the messages pulled and not yet done, in offset
//! order, and the offset that may be committed.
//!
//! A message stays cached from the pull that brought it until its listener call
//! succeeded or it was safely sent back to the broker for a retry. The committed
//! offset is the smallest cached offset, or, with nothing cached, the offset the
//! last pull reached; so it never passes a message that is not done, and it
//! never moves backwards (it is only ever raised).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::protocol::message::MessageExt;
use crate::protocol::MessageQueue;

/// Where a cached message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for a listener call.
    Ready,
    /// Handed to the listener in this delivery.
    Delivered(u64),
    /// Its listener asked for a retry and the send-back to the broker is out.
    SendingBack,
    /// The send-back failed: delivered again locally from this instant.
    RetryAt(Instant),
}

#[derive(Debug)]
struct Cached {
    message: MessageExt,
    stage: Stage,
}

/// Counters of one queue (the seed's ProcessQueue stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages cached now.
    pub cached_count: usize,
    /// Body bytes cached now.
    pub cached_bytes: usize,
    /// Messages ever added.
    pub pulled: u64,
    /// Messages whose listener call succeeded.
    pub consumed: u64,
    /// Listener calls that asked for a retry (per message).
    pub failed: u64,
    /// Offset the next pull starts from.
    pub next_pull_offset: i64,
    /// Offset that may be committed now.
    pub committable_offset: Option<i64>,
    /// When the last pull came back.
    pub last_pull: Option<Instant>,
    /// When a listener call last finished.
    pub last_consume: Option<Instant>,
    /// Orderly clustering: whether the queue holds a live broker lock now.
    pub locked: bool,
    /// Orderly clustering: when the lock held now was won (renewals keep
    /// this; a lapse clears it).
    pub lock_won: Option<Instant>,
}

/// The cache of one assigned queue.
#[derive(Debug)]
pub struct ProcessQueue {
    queue: MessageQueue,
    /// Boxed: a message is large, and the tree moves its entries around as
    /// offsets come and go.
    cached: BTreeMap<i64, Box<Cached>>,
    ready: BTreeSet<i64>,
    /// Local retries by due time.
    retries: BTreeSet<(Instant, i64)>,
    bytes: usize,
    /// Cached messages not ready: delivered, being sent back, or waiting for
    /// a local retry (what an orderly queue waits for before its next batch).
    unready: usize,
    /// Every offset below this was pulled (cached, done, or filtered out).
    pulled_to: Option<i64>,
    next_pull: i64,
    stats: QueueStats,
}

impl ProcessQueue {
    /// An empty cache that pulls from `offset` on.
    pub fn new(queue: MessageQueue, offset: i64) -> Self {
        Self {
            queue,
            cached: BTreeMap::new(),
            ready: BTreeSet::new(),
            retries: BTreeSet::new(),
            bytes: 0,
            unready: 0,
            pulled_to: None,
            next_pull: offset,
            stats: QueueStats::default(),
        }
    }

    /// The queue.
    pub fn queue(&self) -> &MessageQueue {
        &self.queue
    }

    /// Where the next pull starts.
    pub fn next_pull_offset(&self) -> i64 {
        self.next_pull
    }

    /// Messages cached.
    pub fn count(&self) -> usize {
        self.cached.len()
    }

    /// Body bytes cached.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The lowest and highest cached offsets, if any is cached.
    pub fn cached_range(&self) -> Option<(i64, i64)> {
        Some((
            *self.cached.keys().next()?,
            *self.cached.keys().next_back()?,
        ))
    }

    /// Distance from the first to the last cached offset (0 when fewer than two).
    pub fn span(&self) -> i64 {
        match (self.cached.keys().next(), self.cached.keys().next_back()) {
            (Some(first), Some(last)) => last - first,
            _ => 0,
        }
    }

    /// Takes in a pull's messages (already filtered), and where the pull says to
    /// continue. Messages at offsets below the next pull offset are old news
    /// (a pull raced with a reset) and are left out.
    pub fn add(&mut self, now: Instant, messages: Vec<MessageExt>, next_begin_offset: i64) {
        for message in messages {
            let offset = message.queue_offset;
            if offset < self.next_pull || self.cached.contains_key(&offset) {
                continue;
            }
            self.bytes += message.body.len();
            self.ready.insert(offset);
            self.cached.insert(
                offset,
                Box::new(Cached {
                    message,
                    stage: Stage::Ready,
                }),
            );
            self.stats.pulled += 1;
        }
        self.advance_pull(next_begin_offset);
        self.stats.last_pull = Some(now);
    }

    /// A pull came back with nothing to add, up to `next_begin_offset`.
    pub fn nothing_new(&mut self, now: Instant, next_begin_offset: i64) {
        self.advance_pull(next_begin_offset);
        self.stats.last_pull = Some(now);
    }

    /// The pull found nothing (or nothing that matched) up to `next_begin_offset`.
    pub fn advance_pull(&mut self, next_begin_offset: i64) {
        if next_begin_offset > self.next_pull {
            self.next_pull = next_begin_offset;
        }
        self.pulled_to = Some(
            self.pulled_to
                .map_or(self.next_pull, |p| p.max(self.next_pull)),
        );
    }

    /// The broker moved this queue's offset (an illegal offset was corrected):
    /// the cache is emptied and pulling goes on from `offset`, whichever way it
    /// moved. Returns what was dropped.
    pub fn reset(&mut self, offset: i64) -> (usize, usize) {
        let dropped = self.clear();
        self.next_pull = offset;
        self.pulled_to = Some(offset);
        dropped
    }

    /// Whether a message waits for a listener call.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Takes up to `max` ready messages, in offset order, for delivery `ticket`.
    pub fn take_ready(&mut self, max: usize, ticket: u64) -> Vec<MessageExt> {
        let mut out = Vec::with_capacity(max.min(self.ready.len()));
        for _ in 0..max {
            let Some(offset) = self.ready.pop_first() else {
                break;
            };
            if let Some(c) = self.cached.get_mut(&offset) {
                c.stage = Stage::Delivered(ticket);
                self.unready += 1;
                out.push(c.message.clone());
            }
        }
        out
    }

    /// The listener of delivery `ticket` finished with these offsets
    /// successfully: they leave the cache. Offsets no longer delivered under
    /// that ticket are left alone. Returns the bytes freed.
    pub fn done(&mut self, now: Instant, ticket: u64, offsets: &[i64]) -> usize {
        let before = self.cached.len();
        let freed = self.remove(offsets, Stage::Delivered(ticket));
        self.stats.consumed += (before - self.cached.len()) as u64;
        self.stats.last_consume = Some(now);
        freed
    }

    /// A send-back of these offsets was acknowledged: they leave the cache.
    pub fn sent_back(&mut self, offsets: &[i64]) -> usize {
        self.remove(offsets, Stage::SendingBack)
    }

    /// Drops messages in the given stage; for broadcasting's failed messages
    /// too, which Java drops.
    fn remove(&mut self, offsets: &[i64], stage: Stage) -> usize {
        let mut freed = 0;
        for offset in offsets {
            if self.cached.get(offset).is_some_and(|c| c.stage == stage) {
                if let Some(c) = self.cached.remove(offset) {
                    freed += c.message.body.len();
                    self.unready -= 1;
                }
            }
        }
        self.bytes -= freed;
        freed
    }

    /// The listener of delivery `ticket` asked for a retry of this offset: it
    /// stays cached while it is sent back. `None` if it is no longer that
    /// ticket's.
    pub fn sending_back(&mut self, now: Instant, ticket: u64, offset: i64) -> Option<&MessageExt> {
        self.stats.failed += 1;
        self.stats.last_consume = Some(now);
        let c = self
            .cached
            .get_mut(&offset)
            .filter(|c| c.stage == Stage::Delivered(ticket))?;
        c.stage = Stage::SendingBack;
        Some(&c.message)
    }

    /// Broadcasting: a failed message is dropped (there is no retry topic).
    pub fn drop_failed(&mut self, ticket: u64, offsets: &[i64]) -> usize {
        self.remove(offsets, Stage::Delivered(ticket))
    }

    /// The send-back of `offset` failed: deliver it again locally at `at`, with
    /// its reconsume count raised as Java does.
    pub fn retry_locally(&mut self, offset: i64, at: Instant) {
        if let Some(c) = self
            .cached
            .get_mut(&offset)
            .filter(|c| c.stage == Stage::SendingBack)
        {
            c.stage = Stage::RetryAt(at);
            c.message.reconsume_times = c.message.reconsume_times.saturating_add(1);
            self.retries.insert((at, offset));
        }
    }

    /// Local retries due by `now` become ready again; whether any did.
    pub fn wake_retries(&mut self, now: Instant) -> bool {
        let mut woke = false;
        while let Some(&(at, offset)) = self.retries.first() {
            if at > now {
                break;
            }
            self.retries.pop_first();
            if let Some(c) = self.cached.get_mut(&offset) {
                if c.stage == Stage::RetryAt(at) {
                    c.stage = Stage::Ready;
                    self.unready -= 1;
                    self.ready.insert(offset);
                    woke = true;
                }
            }
        }
        woke
    }

    /// Orderly: the listener of delivery `ticket` asked to suspend the queue:
    /// `offset` is ready again, first in line, with its reconsume count raised
    /// (Java's `makeMessageToConsumeAgain`). False if it is no longer that
    /// ticket's.
    pub fn put_back(&mut self, ticket: u64, offset: i64) -> bool {
        let Some(c) = self
            .cached
            .get_mut(&offset)
            .filter(|c| c.stage == Stage::Delivered(ticket))
        else {
            return false;
        };
        c.stage = Stage::Ready;
        c.message.reconsume_times = c.message.reconsume_times.saturating_add(1);
        self.unready -= 1;
        self.ready.insert(offset);
        self.stats.failed += 1;
        true
    }

    /// How many times the cached message at `offset` was delivered before.
    pub fn reconsume_times(&self, offset: i64) -> Option<i32> {
        self.cached.get(&offset).map(|c| c.message.reconsume_times)
    }

    /// Whether any cached message is not ready: delivered, being sent back,
    /// or waiting for a local retry. An orderly queue hands out its next batch
    /// only when none is.
    pub fn in_progress(&self) -> bool {
        self.unready > 0
    }

    /// The earliest local retry, if any.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.first().map(|(at, _)| *at)
    }

    /// The stage of a cached offset.
    pub fn stage(&self, offset: i64) -> Option<Stage> {
        self.cached.get(&offset).map(|c| c.stage)
    }

    /// Whether a listener call or a send-back is still out for this queue.
    pub fn busy(&self) -> bool {
        self.cached
            .values()
            .any(|c| matches!(c.stage, Stage::Delivered(_) | Stage::SendingBack))
    }

    /// The offset that may be committed: the smallest cached offset, else how far
    /// pulls reached; `None` before the first pull came back.
    pub fn committable(&self) -> Option<i64> {
        match self.cached.keys().next() {
            Some(first) => Some(*first),
            None => self.pulled_to,
        }
    }

    /// Empties the cache (the queue is dropped). Returns what was dropped.
    pub fn clear(&mut self) -> (usize, usize) {
        let dropped = (self.cached.len(), self.bytes);
        self.cached.clear();
        self.ready.clear();
        self.retries.clear();
        self.bytes = 0;
        self.unready = 0;
        dropped
    }

    /// The queue's counters now.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            cached_count: self.cached.len(),
            cached_bytes: self.bytes,
            next_pull_offset: self.next_pull,
            committable_offset: self.committable(),
            ..self.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn msg(offset: i64, len: usize) -> MessageExt {
        MessageExt {
            queue_offset: offset,
            body: Bytes::from(vec![b'x'; len]),
            ..MessageExt::default()
        }
    }

    #[allow(clippy::disallowed_methods)] // an arbitrary origin
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn committed_offset_waits_for_the_smallest_unfinished_message() {
        let now = origin();
        let mut pq = ProcessQueue::new(MessageQueue::new("T", "b", 0), 10);
        assert_eq!(pq.committable(), None, "nothing pulled yet");
        pq.add(now, (10..15).map(|o| msg(o, 4)).collect(), 15);
        assert_eq!((pq.count(), pq.bytes(), pq.span()), (5, 20, 4));
        let first = pq.take_ready(2, 1);
        let rest = pq.take_ready(10, 2);
        assert_eq!(first.len() + rest.len(), 5);
        assert!(!pq.has_ready());
        pq.done(now, 2, &[12, 13, 14]);
        assert_eq!(pq.committable(), Some(10), "10 and 11 still out");
        pq.done(now, 2, &[10]);
        assert_eq!(pq.committable(), Some(10), "10 is ticket 1's, not 2's");
        pq.done(now, 1, &[10]);
        assert_eq!(pq.committable(), Some(11));
        assert_eq!(
            pq.sending_back(now, 1, 11).map(|m| m.queue_offset),
            Some(11)
        );
        assert_eq!(
            pq.committable(),
            Some(11),
            "a message being sent back holds the offset"
        );
        pq.retry_locally(11, now);
        assert_eq!(pq.next_retry(), Some(now));
        assert!(pq.wake_retries(now));
        assert_eq!(pq.next_retry(), None);
        let again = pq.take_ready(1, 3);
        assert_eq!(again[0].reconsume_times, 1);
        pq.done(now, 3, &[11]);
        assert_eq!(
            pq.committable(),
            Some(15),
            "all done: how far pulls reached"
        );
        assert_eq!(pq.bytes(), 0);
        pq.advance_pull(20); // a pull that found nothing matching up to 20
        assert_eq!(pq.committable(), Some(20));
        assert_eq!(pq.reset(7), (0, 0));
        assert_eq!(pq.committable(), Some(7), "a broker reset may move it back");
    }

    /// One step of a random interleaving.
    #[derive(Clone, Debug)]
    enum Step {
        Pull(u8),
        Deliver(u8),
        Finish(u8),
        SendBack(u8),
        SendBackFailed,
        Wake,
        PutBack(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u8..8).prop_map(Step::Pull),
            (1u8..4).prop_map(Step::Deliver),
            any::<u8>().prop_map(Step::Finish),
            any::<u8>().prop_map(Step::SendBack),
            Just(Step::SendBackFailed),
            Just(Step::Wake),
            any::<u8>().prop_map(Step::PutBack),
        ]
    }

    proptest! {
        #[test]
        fn committable_offset_only_rises_and_never_passes_an_unfinished_message(
            steps in proptest::collection::vec(step(), 1..200)
        ) {
            let now = origin();
            let mut pq = ProcessQueue::new(MessageQueue::new("T", "b", 0), 0);
            let mut delivered: Vec<(u64, i64)> = Vec::new();
            let mut sending: Vec<i64> = Vec::new();
            let mut finished = std::collections::BTreeSet::new();
            let mut last = None;
            let mut ticket = 0;
            for s in steps {
                match s {
                    Step::Pull(n) => {
                        let from = pq.next_pull_offset();
                        // Every third offset is filtered out by the broker.
                        let msgs = (from..from + i64::from(n)).filter(|o| o % 3 != 2).map(|o| msg(o, 1)).collect();
                        pq.add(now, msgs, from + i64::from(n));
                    }
                    Step::Deliver(n) => {
                        ticket += 1;
                        delivered.extend(pq.take_ready(usize::from(n), ticket).iter().map(|m| (ticket, m.queue_offset)));
                    }
                    Step::Finish(i) if !delivered.is_empty() => {
                        let (t, o) = delivered.remove(usize::from(i) % delivered.len());
                        pq.done(now, t, &[o]);
                        finished.insert(o);
                    }
                    Step::SendBack(i) if !delivered.is_empty() => {
                        let (t, o) = delivered.remove(usize::from(i) % delivered.len());
                        pq.sending_back(now, t, o);
                        sending.push(o);
                    }
                    Step::SendBackFailed => {
                        if let Some(o) = sending.pop() {
                            pq.retry_locally(o, now);
                        }
                    }
                    Step::Wake => { pq.wake_retries(now); }
                    Step::PutBack(i) if !delivered.is_empty() => {
                        let (t, o) = delivered.remove(usize::from(i) % delivered.len());
                        prop_assert!(pq.put_back(t, o));
                    }
                    _ => {}
                }
                let unready = pq.cached.values().filter(|c| c.stage != Stage::Ready).count();
                prop_assert_eq!(pq.unready, unready, "unready count drifted");
                prop_assert_eq!(pq.in_progress(), unready > 0);
                let c = pq.committable();
                prop_assert!(c >= last, "moved back from {last:?} to {c:?}");
                if let Some(c) = c {
                    for o in delivered.iter().map(|(_, o)| o).chain(&sending) {
                        prop_assert!(*o >= c, "offset {c} passed unfinished {o}");
                    }
                }
                last = c;
            }
        }
    }
}
