//! The orderly half of the checker (`docs/simulation.md`, "Checker"): what
//! the world asserts of orderly consumers while a run goes on, fed by the
//! world with what it sees (deliveries, listener results, what reaches the
//! brokers and what they answer).
//!
//! * One batch per member and queue at a time, in offset order: a delivery
//!   starts at the smallest offset of the queue that the member has not yet
//!   consumed successfully or seen acknowledged into the DLQ in its tenure; a
//!   batch comes again only after the member suspended it (or its DLQ
//!   send-back failed), with its reconsume counts raised by one, and not
//!   before its suspension ends.
//! * Clustering: each delivery happens while the broker's lock table says the
//!   member holds the queue; no two members have batches of one queue out at
//!   once. Where the protocol allows both (the broker lost its locks in a
//!   crash; a batch outlived its lock, being slower than the lock's lifetime
//!   or the release deadline), the overlap is counted, not failed.
//! * A message goes to the DLQ (delay level -1) only once it was delivered
//!   its max reconsume times.
//! * Keyed sequences: each member's successes of a key never go back within
//!   its tenure of the queue, and a key's message is first consumed only
//!   after its predecessor was consumed or dead.
//!
//! A tenure is a member's hold of a queue from its offset query (clustering)
//! or its first delivery (broadcasting) until the next, or an offset reset
//! (which keeps the slot: the core still waits for the batch out).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rocketmq_core::consumer::{OrderlyResult, Ticket};
use rocketmq_core::protocol::MessageQueue;

use super::Millis;

/// A member of a group: its process and that process's incarnation.
pub type Member = (usize, u64);

/// How long a won lock counts on the client, from when its request left
/// (the core's `LOCK_LIFETIME`).
pub const LOCK_LIFETIME_MS: Millis = duration_ms(rocketmq_core::client::LOCK_LIFETIME);
/// A suspension is held to this at least (Java's bounds, as the core's).
const SUSPEND_MIN_MS: Millis = 10;
/// A suspension is held to this at most.
const SUSPEND_MAX_MS: Millis = 30_000;
/// Slack on the windows below (virtual milliseconds round up).
const SLACK_MS: Millis = 1_000;

/// A duration in whole milliseconds, at compile time.
const fn duration_ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

/// What the orderly consumers of a run were configured with.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Max reconsume times (-1: unbounded).
    pub max_reconsume: i32,
    /// The default suspension.
    pub suspend_time: Millis,
    /// How long a release or a shutdown waits for the batch out.
    pub shutdown_timeout: Millis,
    /// Fail a run, rather than count it, on what the core is known to do
    /// wrong: a member that left a queue with its batch still running (its
    /// release deadline passed, or its lock was refused) gets the queue back
    /// and hands out a batch of it beside that one (Java's consumer cannot:
    /// its per-queue lock object is held while the listener runs); a member
    /// writes the offset of a queue whose lock another member holds; a
    /// member's lock outlives its graceful shutdown (a queue it was
    /// releasing when the shutdown began).
    pub strict: bool,
}

/// Counters of what the orderly checks saw (summed over a campaign).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Orderly listener calls handed out.
    pub deliveries: u64,
    /// Of those, the ones whose listener suspended the queue.
    pub suspends: u64,
    /// DLQ send-backs that reached a broker.
    pub dlq_sent: u64,
    /// DLQ send-backs the broker acknowledged.
    pub dlq_acked: u64,
    /// Locks won (a queue changing holder, or held anew).
    pub lock_grants: u64,
    /// Locks renewed by their holder.
    pub lock_renewals: u64,
    /// Lock requests refused (another member holds the queue).
    pub lock_refusals: u64,
    /// Unlock requests that reached a broker.
    pub unlocks: u64,
    /// Two members with batches of one queue out at once, where lock loss
    /// allows it (a broker crash, a batch outliving its lock).
    pub overlaps: u64,
    /// Deliveries while the broker's table names another holder or none,
    /// just after a broker crash emptied it.
    pub unlocked_deliveries: u64,
    /// Batches delivered again after their DLQ send-back was acknowledged
    /// (the acknowledgement lost on the way, or late).
    pub dlq_acks_lost: u64,
    /// Locks left on a broker after their holder let go, under link faults.
    pub stale_locks: u64,
    /// Offset resets a member applied mid-tenure.
    pub resets: u64,
    /// A member handing out a batch of a queue while its batch from before
    /// it left the queue and got it back still runs (see
    /// [`Settings::strict`]).
    pub double_batches: u64,
    /// Offset writes of a queue by a member while another holds its lock
    /// (its stale offset moves the holder's back: see [`Settings::strict`]).
    pub foreign_writes: u64,
    /// Locks left on a broker by a member's clean graceful shutdown (see
    /// [`Settings::strict`]).
    pub leaked_locks: u64,
}

impl Counters {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &Self) {
        self.deliveries += other.deliveries;
        self.suspends += other.suspends;
        self.dlq_sent += other.dlq_sent;
        self.dlq_acked += other.dlq_acked;
        self.lock_grants += other.lock_grants;
        self.lock_renewals += other.lock_renewals;
        self.lock_refusals += other.lock_refusals;
        self.unlocks += other.unlocks;
        self.overlaps += other.overlaps;
        self.unlocked_deliveries += other.unlocked_deliveries;
        self.dlq_acks_lost += other.dlq_acks_lost;
        self.stale_locks += other.stale_locks;
        self.resets += other.resets;
        self.double_batches += other.double_batches;
        self.foreign_writes += other.foreign_writes;
        self.leaked_locks += other.leaked_locks;
    }
}

/// A member's tenure of one queue.
#[derive(Debug, Default)]
struct Tenure {
    /// Tells tenures apart (a batch of an earlier one is stale).
    serial: u64,
    /// Tells the member's holds of the queue apart (from one offset query
    /// to the next; an offset reset keeps it).
    slot: u64,
    /// Every offset of the tenure below this is done; `None` before the
    /// first delivery.
    low: Option<i64>,
    /// Offsets at or above `low` consumed successfully (or, broadcasting,
    /// dropped at the max), with when, and whether by a call that ran past
    /// the release deadline (one the core may have given up on).
    done: BTreeMap<i64, (Millis, bool)>,
    /// Offsets at or above `low` whose DLQ send-back was acknowledged, with
    /// when the acknowledgement reaches the member.
    dead: BTreeMap<i64, Millis>,
    /// The reconsume count each offset was last handed out with.
    times: BTreeMap<i64, i32>,
    /// No batch before this (the listener suspended the queue).
    suspended_until: Millis,
    /// Keyed messages: the last sequence number consumed per key.
    keys: BTreeMap<u32, u32>,
}

/// A batch out.
#[derive(Debug)]
struct Batch {
    /// Of a clustering member (else broadcasting).
    clustering: bool,
    /// Its queue.
    queue: MessageQueue,
    /// The tenure it was handed out in.
    tenure: u64,
    /// The slot it was handed out in.
    slot: u64,
    /// When it was handed out.
    at: Millis,
    /// Its messages' queue offsets.
    offsets: Vec<i64>,
    /// Their reconsume counts.
    reconsume: Vec<i32>,
    /// Their (key, sequence number), for keyed messages.
    keys: Vec<Option<(u32, u32)>>,
}

/// A delivered message: its queue offset, reconsume count, commit-log
/// offset, and (key, sequence number) if it is keyed.
pub type DeliveredMessage = (i64, i32, i64, Option<(u32, u32)>);

/// A delivered message by commit-log offset: its queue, queue offset and key.
type CommitEntry = (MessageQueue, i64, Option<(u32, u32)>);

/// One orderly delivery, as the world saw it handed out.
#[derive(Debug)]
pub struct Delivered<'a> {
    /// Who.
    pub member: Member,
    /// Its name, for messages.
    pub name: &'a str,
    /// A member of the clustering group (else broadcasting).
    pub clustering: bool,
    /// The queue.
    pub queue: &'a MessageQueue,
    /// The index of the queue's broker.
    pub broker: usize,
    /// The call's ticket.
    pub ticket: Ticket,
    /// Each message's queue offset, reconsume count, commit-log offset, and
    /// (key, sequence number) if it is keyed.
    pub messages: Vec<DeliveredMessage>,
    /// The member's client id.
    pub client_id: &'a str,
    /// The holder of the queue's lock in the broker's table now.
    pub lock_owner: Option<&'a str>,
    /// When the member's last lock request of the queue that the broker
    /// granted reached it (the core counts the lock from before that).
    pub lock_granted: Option<Millis>,
    /// When.
    pub now: Millis,
}

/// The orderly checker's state. See the [module docs](self).
#[derive(Debug)]
pub struct OrderlyCheck {
    settings: Settings,
    tenures: BTreeMap<(Member, MessageQueue), Tenure>,
    next_serial: u64,
    batches: BTreeMap<(Member, Ticket), Batch>,
    /// Batches out per (clustering, queue).
    out: BTreeMap<(bool, MessageQueue), BTreeSet<(Member, Ticket)>>,
    /// Delivered messages by (member, broker, commit-log offset): queue,
    /// queue offset, key.
    by_commit: BTreeMap<(Member, usize, i64), CommitEntry>,
    /// When each broker crashed.
    crashes: Vec<(usize, Millis)>,
    /// Keyed sequence numbers consumed successfully or dead, per key, by the
    /// clustering group.
    keys_done: BTreeMap<u32, BTreeSet<u32>>,
    /// What the checks saw.
    pub counters: Counters,
}

impl OrderlyCheck {
    /// A checker for consumers with these settings.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            tenures: BTreeMap::new(),
            next_serial: 0,
            batches: BTreeMap::new(),
            out: BTreeMap::new(),
            by_commit: BTreeMap::new(),
            crashes: Vec::new(),
            keys_done: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Whether broker `b` crashed within `from..=to`.
    pub fn crashed_within(&self, b: usize, from: Millis, to: Millis) -> bool {
        self.crashes
            .iter()
            .any(|(cb, at)| *cb == b && (from..=to).contains(at))
    }

    /// Broker `b` crashed (its locks are gone).
    pub fn broker_crashed(&mut self, b: usize, now: Millis) {
        self.crashes.push((b, now));
    }

    /// A fresh tenure of `queue` for `member`, in the same slot (after an
    /// offset reset) or a new one.
    fn fresh(&mut self, member: Member, queue: &MessageQueue, slot: Option<u64>) -> &mut Tenure {
        self.next_serial += 1;
        let t = Tenure {
            serial: self.next_serial,
            slot: slot.unwrap_or(self.next_serial),
            ..Tenure::default()
        };
        let slot = self.tenures.entry((member, queue.clone())).or_default();
        *slot = t;
        slot
    }

    /// A clustering member asked its broker for a queue's offset: a new
    /// tenure of it begins.
    pub fn offset_queried(&mut self, member: Member, queue: &MessageQueue) {
        self.fresh(member, queue, None);
    }

    /// An offset reset (or an OFFSET_MOVED answer) reached `member`: each
    /// of its queues that `applies` to starts a new tenure in the same slot
    /// (its batch out, if any, no longer counts for it).
    pub fn reset(&mut self, member: Member, applies: impl Fn(&MessageQueue) -> bool) {
        let queues: Vec<(MessageQueue, u64)> = self
            .tenures
            .iter()
            .filter(|((m, q), _)| *m == member && applies(q))
            .map(|((_, q), t)| (q.clone(), t.slot))
            .collect();
        for (q, slot) in queues {
            self.counters.resets += 1;
            self.fresh(member, &q, Some(slot));
        }
    }

    /// A broadcasting member's counters list the queues it holds: a queue
    /// it no longer holds starts a new slot when it comes back (its offset
    /// comes from the member's own store, with no request the world sees).
    pub fn holds(&mut self, member: Member, queues: &BTreeSet<&MessageQueue>) {
        self.tenures
            .retain(|(m, q), _| *m != member || queues.contains(q));
    }

    /// The first offset of `queue` that `member` had surely done in its
    /// current tenure before `as_of` (`None` before its first delivery
    /// there). Not surely done: what ended at `as_of` itself (it may have
    /// come after), and what a call that ran past the release deadline
    /// consumed (the core may have let the queue go without it).
    pub fn consumed_to(&self, member: Member, queue: &MessageQueue, as_of: Millis) -> Option<i64> {
        let t = self.tenures.get(&(member, queue.clone()))?;
        let mut next = t.low?;
        while t
            .done
            .get(&next)
            .is_some_and(|(at, long)| *at < as_of && !long)
            || t.dead.get(&next).is_some_and(|at| *at < as_of)
        {
            next += 1;
        }
        Some(next)
    }

    /// A member crashed: its batches are gone with it.
    pub fn crashed(&mut self, member: Member) {
        let gone: Vec<(Member, Ticket)> = self
            .batches
            .keys()
            .filter(|(m, _)| *m == member)
            .copied()
            .collect();
        for key in gone {
            if let Some(b) = self.batches.remove(&key) {
                if let Some(out) = self.out.get_mut(&(b.clustering, b.queue)) {
                    out.remove(&key);
                }
            }
        }
    }

    /// An orderly delivery: checked against what the member did before, the
    /// broker's locks and the other members' batches.
    pub fn delivered(&mut self, d: Delivered<'_>) -> Result<(), String> {
        self.counters.deliveries += 1;
        let now = d.now;
        let (Some(first), Some(last)) = (d.messages.first(), d.messages.last()) else {
            return Err(format!(
                "{} was handed an empty batch of {}",
                d.name, d.queue
            ));
        };
        let (f, l) = (first.0, last.0);
        if d.messages.windows(2).any(|w| w[1].0 <= w[0].0) {
            let offsets: Vec<i64> = d.messages.iter().map(|m| m.0).collect();
            return Err(format!(
                "{} was handed {} out of order: {offsets:?}",
                d.name, d.queue
            ));
        }
        // Offset order within the tenure.
        if !self.tenures.contains_key(&(d.member, d.queue.clone())) {
            self.fresh(d.member, d.queue, None);
        }
        let Some(tenure) = self.tenures.get_mut(&(d.member, d.queue.clone())) else {
            return Err(format!("{}: no tenure of {}", d.name, d.queue));
        };
        // One batch of a queue per member at a time, whatever its tenure.
        let key = (d.clustering, d.queue.clone());
        let earlier = self
            .out
            .get(&key)
            .and_then(|out| out.iter().find(|(m, _)| *m == d.member))
            .and_then(|(_, other)| Some((*other, self.batches.get(&(d.member, *other))?)));
        if let Some((other, b)) = earlier {
            if b.slot == tenure.slot || self.settings.strict {
                return Err(format!(
                    "{} handed out {} @{f}..={l} while its batch {other} of it (@{:?}, since {} ms) was still out{}",
                    d.name,
                    d.queue,
                    b.offsets,
                    b.at,
                    if b.slot == tenure.slot {
                        ""
                    } else {
                        ", from before it left the queue and got it back"
                    }
                ));
            }
            self.counters.double_batches += 1;
        }
        if let Some(low) = tenure.low {
            let mut expected = low;
            while tenure.done.contains_key(&expected)
                || tenure.dead.get(&expected).is_some_and(|at| *at <= now)
            {
                expected += 1;
            }
            if f != expected {
                let lost_ack =
                    f < expected && !tenure.done.contains_key(&f) && tenure.dead.contains_key(&f);
                if lost_ack {
                    self.counters.dlq_acks_lost += 1;
                    tenure.dead.remove(&f);
                } else {
                    return Err(format!(
                        "{} handed out {} @{f}..={l} where the first offset not yet done in its tenure is {expected} ({})",
                        d.name,
                        d.queue,
                        if f < expected {
                            "a batch again without a suspension"
                        } else {
                            "skipped"
                        }
                    ));
                }
            }
        }
        // A batch may pass over offsets only if they are done (a message
        // that went to the DLQ while the next ones waited).
        for w in d.messages.windows(2) {
            let skipped = (w[0].0 + 1..w[1].0).find(|o| {
                !tenure.done.contains_key(o) && tenure.dead.get(o).is_none_or(|at| *at > now)
            });
            if let Some(o) = skipped {
                return Err(format!(
                    "{} was handed {} @{}, passing over @{o}, which is not done",
                    d.name, d.queue, w[1].0
                ));
            }
        }
        tenure.low = Some(f);
        tenure.done = tenure.done.split_off(&f);
        tenure.dead = tenure.dead.split_off(&f);
        tenure.times = tenure.times.split_off(&f);
        if now < tenure.suspended_until {
            return Err(format!(
                "{} handed out {} @{f} at {now} ms, within its suspension (until {} ms)",
                d.name, d.queue, tenure.suspended_until
            ));
        }
        for &(offset, times, _, _) in &d.messages {
            if let Some(before) = tenure.times.insert(offset, times) {
                if times != before.saturating_add(1) {
                    return Err(format!(
                        "{} got {}@{offset} again with reconsume times {times}, after {before}",
                        d.name, d.queue
                    ));
                }
            }
        }
        let (serial, slot) = (tenure.serial, tenure.slot);
        // Locks and overlaps, clustering only.
        if d.clustering {
            let crash_window = now.saturating_sub(LOCK_LIFETIME_MS + SLACK_MS);
            if d.lock_owner != Some(d.client_id) {
                if self.crashed_within(d.broker, crash_window, now) {
                    self.counters.unlocked_deliveries += 1;
                } else {
                    return Err(format!(
                        "{} handed out {} @{f} while the broker's lock is {}",
                        d.name,
                        d.queue,
                        d.lock_owner
                            .map_or_else(|| "free".to_owned(), |o| format!("held by {o}"))
                    ));
                }
            }
            // The member's own count: its lock is live for LOCK_LIFETIME from
            // when the request left, before it reached the broker.
            if d.lock_granted.is_none_or(|at| now > at + LOCK_LIFETIME_MS) {
                return Err(format!(
                    "{} handed out {} @{f} with no lock granted in the last {} ms (last granted at {:?} ms)",
                    d.name, d.queue, LOCK_LIFETIME_MS, d.lock_granted
                ));
            }
            let outlived = LOCK_LIFETIME_MS.min(self.settings.shutdown_timeout);
            let others: Vec<(Member, Ticket)> = self
                .out
                .get(&key)
                .map(|out| out.iter().copied().collect())
                .unwrap_or_default();
            for other in others {
                let Some(b) = self.batches.get(&other) else {
                    continue;
                };
                let since = b.at.saturating_sub(LOCK_LIFETIME_MS + SLACK_MS);
                let allowed = self.crashed_within(d.broker, since, now) || now - b.at >= outlived;
                if !allowed {
                    return Err(format!(
                        "{} handed out {} @{f} while process {} (incarnation {}) had its batch {} @{:?} out since {} ms, under a lock",
                        d.name, d.queue, other.0 .0, other.0 .1, other.1, b.offsets, b.at
                    ));
                }
                self.counters.overlaps += 1;
            }
        }
        for &(offset, _, commit, key) in &d.messages {
            self.by_commit
                .insert((d.member, d.broker, commit), (d.queue.clone(), offset, key));
        }
        self.out
            .entry(key)
            .or_default()
            .insert((d.member, d.ticket));
        self.batches.insert(
            (d.member, d.ticket),
            Batch {
                clustering: d.clustering,
                queue: d.queue.clone(),
                tenure: serial,
                slot,
                at: now,
                offsets: d.messages.iter().map(|m| m.0).collect(),
                reconsume: d.messages.iter().map(|m| m.1).collect(),
                keys: d.messages.iter().map(|m| m.3).collect(),
            },
        );
        Ok(())
    }

    /// An orderly listener call returned (`fed`: its core took the result).
    pub fn done(
        &mut self,
        member: Member,
        name: &str,
        ticket: Ticket,
        result: OrderlyResult,
        fed: bool,
        now: Millis,
    ) -> Result<(), String> {
        let Some(b) = self.batches.remove(&(member, ticket)) else {
            return Ok(());
        };
        if let Some(out) = self.out.get_mut(&(b.clustering, b.queue.clone())) {
            out.remove(&(member, ticket));
        }
        if matches!(result, OrderlyResult::Suspend { .. }) {
            self.counters.suspends += 1;
        }
        // A key's message consumed: the one before it must have been (or be
        // dead), whatever the core makes of this result.
        if result == OrderlyResult::Success && b.clustering {
            for &(k, n) in b.keys.iter().flatten() {
                let done = self.keys_done.entry(k).or_default();
                if n > 0 && !done.contains(&n) && !done.contains(&(n - 1)) {
                    return Err(format!(
                        "{name} consumed key {k} #{n} first while #{} was neither consumed nor dead",
                        n - 1
                    ));
                }
                done.insert(n);
            }
        }
        if !fed {
            return Ok(());
        }
        let settings = self.settings;
        let Some(t) = self
            .tenures
            .get_mut(&(member, b.queue.clone()))
            .filter(|t| t.serial == b.tenure)
        else {
            return Ok(());
        };
        match result {
            OrderlyResult::Success => {
                let long = now - b.at >= settings.shutdown_timeout;
                t.done.extend(b.offsets.iter().map(|o| (*o, (now, long))));
                for &(k, n) in b.keys.iter().flatten() {
                    let last = t.keys.entry(k).or_insert(n);
                    if n < *last {
                        return Err(format!(
                            "{name} consumed key {k} #{n} after #{} within its tenure of {}",
                            *last, b.queue
                        ));
                    }
                    *last = n;
                }
            }
            OrderlyResult::Suspend { delay } => {
                let max = settings.max_reconsume;
                let mut again = false;
                for (offset, times) in b.offsets.iter().zip(&b.reconsume) {
                    if max >= 0 && *times >= max {
                        if !b.clustering {
                            // Broadcasting drops it.
                            t.done.insert(*offset, (now, false));
                        }
                    } else {
                        again = true;
                    }
                }
                if again {
                    let delay = delay
                        .map_or(settings.suspend_time, duration_ms)
                        .clamp(SUSPEND_MIN_MS, SUSPEND_MAX_MS);
                    t.suspended_until = now + delay;
                }
            }
        }
        Ok(())
    }

    /// A DLQ send-back of a clustering member reached broker `b`: it must be
    /// for a message the member had at its max reconsume times, at delay
    /// level -1.
    pub fn dlq_sent(
        &mut self,
        member: Member,
        name: &str,
        b: usize,
        commit: i64,
        delay_level: i32,
    ) -> Result<(), String> {
        self.counters.dlq_sent += 1;
        let Some((queue, offset, _)) = self.by_commit.get(&(member, b, commit)).cloned() else {
            return Err(format!(
                "{name} sent back a message (commit-log offset {commit}) it was never handed"
            ));
        };
        if delay_level != -1 {
            return Err(format!(
                "{name} sent {queue}@{offset} back at delay level {delay_level}, not straight to the DLQ"
            ));
        }
        let max = self.settings.max_reconsume;
        let times = self
            .tenures
            .get(&(member, queue.clone()))
            .and_then(|t| t.times.get(&offset).copied());
        if let Some(times) = times {
            if max < 0 || times < max {
                return Err(format!(
                    "{name} sent {queue}@{offset} to the DLQ after {times} reconsumes (max {max})"
                ));
            }
        }
        Ok(())
    }

    /// The broker acknowledged a DLQ send-back of a clustering member; the
    /// acknowledgement reaches it at `arrives_at`.
    pub fn dlq_acked(&mut self, member: Member, b: usize, commit: i64, arrives_at: Millis) {
        self.counters.dlq_acked += 1;
        let Some((queue, offset, key)) = self.by_commit.get(&(member, b, commit)).cloned() else {
            return;
        };
        if let Some(t) = self.tenures.get_mut(&(member, queue)) {
            if t.low.is_some_and(|low| offset >= low) && !t.done.contains_key(&offset) {
                t.dead.insert(offset, arrives_at);
            }
        }
        if let Some((k, n)) = key {
            self.keys_done.entry(k).or_default().insert(n);
        }
    }
}
