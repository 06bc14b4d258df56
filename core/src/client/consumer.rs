//! The push consumer inside the client: subscriptions in heartbeats, rebalance,
//! long-polling pulls per queue, flow control, deliveries to the adapter,
//! send-back of failed messages, offsets, and a draining shutdown.
//!
//! Every consumer of the client lives in [`Consumers`], by group. Requests it
//! sends carry an [`Expect::Consumer`] with the queue's generation, so answers
//! that arrive after a queue was dropped or re-assigned are recognised and
//! ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use tracing::{debug, info, warn};

use super::{on_pull, remote, Client, Expect, Output, PullStatus, Reply};
use crate::consumer::allocate::AllocateStrategy;
use crate::consumer::local_store;
use crate::consumer::subscription::{tag_matches, Selector, SubscribeError};
use crate::consumer::{
    ConsumeContext, ConsumeFrom, ConsumeResult, ConsumerConfig, ConsumerError, ConsumerStats,
    Delivery, MessageModel, ProcessQueue, Subscriptions, Ticket, Verdict,
};
use crate::error::ClientError;
use crate::protocol::body::{
    CheckClientRequestBody, ConsumeFromWhere, ConsumeType, ConsumerData, ConsumerIdList,
    ExpressionType, ResetOffsetBody, SubscriptionData,
};
use crate::protocol::body::{
    ConsumeStatus, ConsumerRunningInfo, ProcessQueueInfo, PROP_CLIENT_VERSION,
    PROP_CONSUMER_START_TIMESTAMP, PROP_CONSUME_ORDERLY, PROP_CONSUME_TYPE, PROP_NAMESERVER_ADDR,
    PROP_THREADPOOL_CORE_SIZE,
};
use crate::protocol::code::{RequestCode, ResponseCode};
use crate::protocol::command::RemotingCommand;
use crate::protocol::header::{
    pull_flag, ConsumerSendMsgBackRequestHeader, GetConsumerListByGroupRequestHeader,
    GetMaxOffsetRequestHeader, NotifyConsumerIdsChangedRequestHeader, OffsetResponseHeader,
    PullMessageRequestHeader, QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    ResetOffsetRequestHeader, SearchOffsetRequestHeader, UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use crate::protocol::message::{property, MessageExt};
use crate::protocol::MessageQueue;
use crate::CallId;

mod orderly;

pub use orderly::{LOCK_INTERVAL, LOCK_LIFETIME, LOCK_RETRY};

/// Java's `MixAll.RETRY_GROUP_TOPIC_PREFIX`.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Java's `MixAll.DLQ_GROUP_TOPIC_PREFIX`.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// How long the broker may hold a pull that finds nothing (Java 15 s).
pub const PULL_SUSPEND: Duration = Duration::from_secs(15);
/// Deadline of a long-polling pull (Java 30 s).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before pulling again after a failed pull (Java 3 s).
pub const PULL_RETRY_DELAY: Duration = Duration::from_secs(3);
/// Rebalance period (Java 20 s).
pub const REBALANCE_INTERVAL: Duration = Duration::from_secs(20);
/// A rebalance that did not find this client in the group yet (its heartbeat
/// is still on the way) is tried again this soon, not after a full period; and
/// a new route's first rebalance waits at most this long for the broker's
/// notice that the group changed.
pub const REBALANCE_RETRY: Duration = Duration::from_secs(1);
/// How often a topic a consumer reads is asked for again while it has no
/// route (the broker creates a group's retry topic on its first heartbeat or
/// send-back, and the name server learns of it a moment later).
pub const ROUTE_RETRY: Duration = Duration::from_secs(2);
/// A message whose send-back failed is delivered again locally after this
/// (Java 5 s).
pub const LOCAL_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The retry topic of a group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The consumers of one client, by group.
#[derive(Debug, Default)]
pub(super) struct Consumers {
    groups: BTreeMap<String, Consumer>,
    next_ticket: u64,
    next_generation: u64,
    /// Turns of the brokers asked for a group's members.
    list_turn: usize,
    /// Which consumer each listener call belongs to (by the group's shared
    /// name: a call costs no copy of it).
    tickets: HashMap<Ticket, (Arc<str>, TicketInfo), BuildTicketHasher>,
}

/// Hashes tickets, which the client numbers itself one after another (no
/// outside party picks them, so no defence against chosen keys is needed):
/// a multiplication spreads them over the table.
#[derive(Clone, Copy, Debug, Default)]
struct TicketHasher(u64);

impl std::hash::Hasher for TicketHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type BuildTicketHasher = std::hash::BuildHasherDefault<TicketHasher>;

/// The offsets of one listener call: mostly one (Java's default batch).
#[derive(Debug)]
enum CallOffsets {
    One([i64; 1]),
    Many(Box<[i64]>),
}

impl CallOffsets {
    fn of(messages: &[MessageExt]) -> Self {
        match messages {
            [m] => Self::One([m.queue_offset]),
            _ => Self::Many(messages.iter().map(|m| m.queue_offset).collect()),
        }
    }
}

impl std::ops::Deref for CallOffsets {
    type Target = [i64];
    fn deref(&self) -> &[i64] {
        match self {
            Self::One(one) => one,
            Self::Many(many) => many,
        }
    }
}

#[derive(Debug)]
struct TicketInfo {
    queue: Arc<MessageQueue>,
    generation: u64,
    offsets: CallOffsets,
    started: Instant,
    /// Already reported as running past the consume timeout.
    overdue: bool,
}

/// A request a consumer sent, and what its answer is for.
#[derive(Debug)]
pub(super) enum ConsumerOp {
    ConsumerList {
        topic: String,
    },
    QueryOffset {
        queue: MessageQueue,
        generation: u64,
    },
    StartOffset {
        queue: MessageQueue,
        generation: u64,
    },
    Pull {
        queue: MessageQueue,
        generation: u64,
    },
    SendBack {
        queue: MessageQueue,
        generation: u64,
        offset: i64,
    },
    /// A committed offset written; `last` for the writes of a shutdown.
    OffsetUpdate {
        queue: MessageQueue,
        offset: i64,
        last: bool,
    },
    /// The group unregistered at shutdown.
    Unregister,
    /// Orderly: queues of one broker locked (or their locks renewed); `sent`
    /// is when the request left, from which a won lock counts.
    Lock {
        broker: String,
        queues: Vec<MessageQueue>,
        sent: Instant,
    },
    /// Orderly: a released queue's offset written; its unlock follows.
    Release {
        queue: MessageQueue,
    },
    /// Orderly: queues unlocked; `last` for the unlocks of a shutdown.
    Unlock {
        last: bool,
    },
    /// A broker's answer to a start's subscription check.
    CheckClient {
        topic: String,
    },
}

/// A start waiting for the brokers to accept its SQL92 subscriptions (Java's
/// `checkClientInBroker`): one broker of each such topic is asked once its
/// route is known. A topic that has no route by the deadline is not checked,
/// as in Java.
#[derive(Debug)]
struct StartCheck {
    call: CallId,
    /// SQL92 topics whose route has not come yet.
    topics: BTreeSet<String>,
    /// Checks sent and not answered.
    out: usize,
    deadline: Instant,
}

#[derive(Debug)]
struct Consumer {
    /// The group, shared with the listener calls in flight.
    name: Arc<str>,
    config: ConsumerConfig,
    subs: Subscriptions,
    suspended: bool,
    /// Assigned queues.
    queues: BTreeMap<MessageQueue, Slot>,
    /// Queues with ready messages, served in turn (shared with their slots:
    /// a turn costs no copy of the queue's names).
    ready: VecDeque<Arc<MessageQueue>>,
    /// Queues whose pulls wait for room in a cache, in arrival order.
    waiting: VecDeque<Arc<MessageQueue>>,
    in_flight: usize,
    cached_count: usize,
    cached_bytes: usize,
    /// Cache freed (messages, bytes) since the waiting queues were last looked
    /// at.
    freed: (usize, usize),
    /// How much must be freed (messages, bytes) before the global budget
    /// lets any waiting queue pull, and for how many assigned queues that was
    /// worked out (their shares of the budget follow the number). Until then a
    /// completion looks only at its own queue, the one whose own limits it
    /// eased, instead of at every waiting queue. `None`: look at every waiting
    /// queue at the next completion.
    room_after: Option<(usize, usize, usize)>,
    /// Committed offsets: what the group has consumed up to, per queue.
    offsets: BTreeMap<MessageQueue, Offset>,
    rebalance_at: Instant,
    /// When it started, ms since the epoch.
    started_ms: i64,
    /// The start call, while brokers check its subscriptions.
    check: Option<StartCheck>,
    /// While a topic it reads has no route (a retry topic the broker creates on
    /// the first heartbeat or send-back, say), when to ask again.
    route_retry_at: Option<Instant>,
    persist_at: Instant,
    /// Topics whose consumer list query is out.
    listing: BTreeSet<String>,
    stats: ConsumerStats,
    shutdown: Option<Shutdown>,
    /// Broadcasting: the local offset file.
    local: Option<Local>,
    /// Orderly clustering: the next round that locks (renews) every queue.
    lock_at: Instant,
    /// Orderly clustering: when to try again to lock the queues without a
    /// lock, while any is waiting for one.
    lock_retry_at: Option<Instant>,
    /// Orderly clustering: lock requests out, per queue. A broker runs
    /// requests on a pool of threads, so an unlock sent while a lock of the
    /// same queue is out could be undone by it: a queue is unlocked only
    /// once none is out.
    locking: BTreeMap<MessageQueue, u32>,
    /// Orderly clustering: released queues whose offset write is out; they
    /// are unlocked once it is answered.
    releasing: BTreeSet<MessageQueue>,
}

/// A broadcasting consumer's offset file and the one write allowed out at a time.
#[derive(Debug)]
struct Local {
    path: String,
    loaded: bool,
    /// The offsets of the write that is out.
    writing: Option<Vec<(MessageQueue, i64)>>,
    /// Offsets changed while a write was out: write again when it is done.
    again: bool,
    /// Shutdown waits for the write after this flag was set.
    final_write: bool,
}

#[derive(Debug)]
struct Shutdown {
    call: CallId,
    deadline: Instant,
    /// Final offset writes (then unregisters) still out, once draining is over.
    finishing: Option<usize>,
    /// The unregisters went out (after the final offset writes were answered,
    /// so that members taking over this consumer's queues find its offsets).
    unregistering: bool,
    /// Orderly: the unlocks and unregisters wait for lock requests still out.
    unregister_deferred: bool,
}

#[derive(Clone, Copy, Debug)]
struct Offset {
    committed: i64,
    persisted: i64,
}

#[derive(Debug)]
struct Slot {
    /// The queue, shared with the turns and calls that name it.
    queue: Arc<MessageQueue>,
    generation: u64,
    /// Listed in the consumer's `ready` turn.
    in_ready: bool,
    /// `None` while the start offset is looked up.
    pq: Option<ProcessQueue>,
    pull: PullState,
    /// When it was assigned.
    assigned: Instant,
    /// Orderly clustering: when the request that last won or renewed the
    /// queue's broker lock was sent; the lock is live for [`LOCK_LIFETIME`]
    /// from then. `None`: not locked.
    lock: Option<Instant>,
    /// When the lock held now was won (kept through renewals).
    lock_won: Option<Instant>,
    /// Orderly: no batch is handed out before this (the listener suspended
    /// the queue).
    suspended_until: Option<Instant>,
    /// Orderly clustering: the queue is no longer ours and is being released
    /// (the batch out finishes, the offset is written, then the lock goes);
    /// done by this deadline at the latest.
    release: Option<Instant>,
    /// Orderly: the ticket of the batch out, if one is.
    batch: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PullState {
    /// Orderly clustering: waiting for the broker lock, before the start
    /// offset is looked up (a lock won means the previous owner wrote it).
    Locking,
    /// Waiting for the start offset.
    Starting,
    /// A pull is on the wire.
    InFlight,
    /// The next pull goes out at this instant.
    At(Instant),
    /// Waiting for room in a cache (listed in `waiting`).
    Full,
    /// Not pulling (suspended or shutting down).
    Stopped,
}

/// The cache limits of a consumer, copied out for the pull path.
#[derive(Clone, Copy, Debug)]
struct Limits {
    queue_count: usize,
    queue_bytes: usize,
    global_count: usize,
    global_bytes: usize,
}

impl Limits {
    fn of(c: &ConsumerConfig) -> Self {
        Self {
            queue_count: c.queue_cache_count,
            queue_bytes: c.queue_cache_bytes,
            global_count: c.global_cache_count,
            global_bytes: c.global_cache_bytes,
        }
    }
}

impl Consumer {
    /// Removes a queue's slot, its cache and its turns; false if it had none.
    fn remove_slot(&mut self, queue: &MessageQueue) -> bool {
        let Some(mut slot) = self.queues.remove(queue) else {
            return false;
        };
        if let Some(pq) = &mut slot.pq {
            let (count, bytes) = pq.clear();
            self.release(count, bytes);
        }
        if slot.in_ready {
            self.ready.retain(|q| **q != *queue);
        }
        if slot.pull == PullState::Full {
            self.waiting.retain(|q| **q != *queue);
        }
        true
    }

    /// Cached messages left the cache.
    fn release(&mut self, count: usize, bytes: usize) {
        self.cached_count = self.cached_count.saturating_sub(count);
        self.cached_bytes = self.cached_bytes.saturating_sub(bytes);
        self.freed.0 = self.freed.0.saturating_add(count);
        self.freed.1 = self.freed.1.saturating_add(bytes);
    }

    /// A queue starts waiting for room.
    fn wait_for_room(&mut self, queue: Arc<MessageQueue>) {
        self.held_back(&queue);
        self.waiting.push_back(queue);
    }

    /// A waiting queue found no room: what must be freed before the global
    /// budget lets a waiting queue pull takes it into account.
    fn held_back(&mut self, queue: &MessageQueue) {
        let short = self
            .queues
            .get(queue)
            .and_then(|s| s.pq.as_ref())
            .map(|pq| self.global_short(pq));
        if let (Some((count, bytes)), Some(after)) = (short, &mut self.room_after) {
            if (count, bytes) != (0, 0) {
                // Counted from the last look, like `freed`.
                after.0 = after.0.min(self.freed.0.saturating_add(count));
                after.1 = after.1.min(self.freed.1.saturating_add(bytes));
            }
        }
    }

    /// How much the cache must shed (messages, bytes) before the global budget
    /// leaves `pq` a pull's worth of room, with the assigned queues as they
    /// are. (0, 0) when the global budget is not what holds it back: then only
    /// its own completions can make room.
    fn global_short(&self, pq: &ProcessQueue) -> (usize, usize) {
        let room = self.room_parts(pq);
        (
            room.need.0.saturating_sub(room.global.0),
            room.need.1.saturating_sub(room.global.1),
        )
    }

    /// The limit sent back with a failed message: Java reads an unset (-1)
    /// limit as 16 for concurrent consumers.
    /// A background failure: logged, counted in the stats.
    fn failed(&mut self, error: ConsumerError) {
        warn!(group = %self.config.group, %error, "consumer: trying again");
        self.stats.errors.count(error);
    }

    fn max_reconsume_times(&self) -> i32 {
        match self.config.max_reconsume_times {
            -1 => 16,
            n => n,
        }
    }

    /// Marks a queue ready (once).
    fn mark_ready(&mut self, queue: &MessageQueue) {
        if let Some(slot) = self.queues.get_mut(queue) {
            if !slot.in_ready {
                slot.in_ready = true;
                self.ready.push_back(slot.queue.clone());
            }
        }
    }

    fn retry_topic(&self) -> Option<String> {
        (self.config.message_model == MessageModel::Clustering)
            .then(|| retry_topic(&self.config.group))
    }

    /// Every topic the consumer reads: its subscriptions and, clustering, the
    /// retry topic.
    fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.subs.topics().map(str::to_owned).collect();
        topics.extend(self.retry_topic());
        topics
    }

    fn subscription(&self, topic: &str) -> Option<SubscriptionData> {
        if let Some(s) = self.subs.get(topic) {
            return Some(s.data.clone());
        }
        (self.retry_topic().as_deref() == Some(topic)).then(|| Selector::all().to_data(topic, 0))
    }

    fn heartbeat_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: match self.config.consume_from {
                ConsumeFrom::LastOffset => ConsumeFromWhere::ConsumeFromLastOffset,
                ConsumeFrom::FirstOffset => ConsumeFromWhere::ConsumeFromFirstOffset,
                ConsumeFrom::Timestamp(_) => ConsumeFromWhere::ConsumeFromTimestamp,
            },
            consume_type: ConsumeType::ConsumePassively,
            group_name: self.config.group.clone(),
            message_model: self.config.message_model,
            subscription_data_set: self
                .topics()
                .iter()
                .filter_map(|t| self.subscription(t))
                .collect(),
            unit_mode: false,
        }
    }

    /// How many more messages and bytes `queue` may cache now: its own limits,
    /// its fair share of the global budget, and what is left of that budget.
    ///
    /// A queue that holds messages pulls only once a worthwhile batch fits (a
    /// whole pull batch, or half of what it may hold when that is less, and a
    /// quarter of its bytes), so that a full cache refills in batches instead
    /// of one pull per consumed message. An empty queue may always pull.
    fn room(&self, pq: &ProcessQueue) -> (usize, usize) {
        if pq.span() > self.config.max_span {
            return (0, 0);
        }
        let room = self.room_parts(pq);
        let count = room.own.0.min(room.global.0);
        let bytes = room.own.1.min(room.global.1);
        if count < room.need.0 || bytes < room.need.1 {
            return (0, 0);
        }
        (count, bytes)
    }

    /// The room `pq` has under its own limits and under what is left of the
    /// global budget, and the least worth a pull: a batch for a queue that
    /// holds messages (see [`room`](Self::room)), anything for an empty one.
    fn room_parts(&self, pq: &ProcessQueue) -> Room {
        let c = &self.config;
        let n = self.queues.len().max(1);
        let max_count = c.queue_cache_count.min((c.global_cache_count / n).max(1));
        let max_bytes = c.queue_cache_bytes.min((c.global_cache_bytes / n).max(1));
        let own = (
            max_count.saturating_sub(pq.count()),
            max_bytes.saturating_sub(pq.bytes()),
        );
        let global = (
            c.global_cache_count.saturating_sub(self.cached_count),
            c.global_cache_bytes.saturating_sub(self.cached_bytes),
        );
        let need = if pq.count() == 0 {
            (1, 1)
        } else {
            (
                (c.pull_batch_size as usize).min(max_count / 2).max(1),
                (max_bytes / 4).max(1),
            )
        };
        Room { own, global, need }
    }
}

/// A queue's room in the cache (messages, bytes); see [`Consumer::room_parts`].
struct Room {
    /// Under its own limits and its share of the global budget.
    own: (usize, usize),
    /// What is left of the global budget.
    global: (usize, usize),
    /// The least worth a pull.
    need: (usize, usize),
}

impl Client {
    pub(super) fn consumer_groups(&self) -> impl Iterator<Item = ConsumerData> + '_ {
        self.consumers
            .groups
            .values()
            .filter(|c| c.shutdown.as_ref().is_none_or(|s| s.finishing.is_none()))
            .map(Consumer::heartbeat_data)
    }

    pub(super) fn has_consumers(&self) -> bool {
        !self.consumers.groups.is_empty()
    }

    /// Topics consumers need routes for.
    pub(super) fn consumer_topics(&self) -> BTreeSet<String> {
        self.consumers
            .groups
            .values()
            .flat_map(Consumer::topics)
            .collect()
    }

    /// The earliest consumer timer.
    pub(super) fn consumer_deadline(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut see = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        for c in self.consumers.groups.values() {
            if let Some(s) = &c.shutdown {
                see(s.deadline);
                if s.finishing.is_none() && c.locks() {
                    see(c.lock_at);
                }
                continue;
            }
            if c.check.is_none() {
                see(c.rebalance_at);
            }
            if let Some(check) = &c.check {
                see(check.deadline);
            }
            if let Some(t) = c.route_retry_at {
                see(t);
            }
            see(c.persist_at);
            if c.locks() {
                see(c.lock_at);
                if let Some(t) = c.lock_retry_at {
                    see(t);
                }
            }
            for slot in c.queues.values() {
                if let PullState::At(t) = slot.pull {
                    see(t);
                }
                if let Some(t) = slot.suspended_until {
                    see(t);
                }
                if let Some(t) = slot.release {
                    see(t);
                }
                if let Some(t) = slot.pq.as_ref().and_then(ProcessQueue::next_retry) {
                    see(t);
                }
            }
        }
        at
    }

    /// Starts a consumer: checked, registered, heartbeats and routes at once,
    /// then the first rebalance as soon as routes are in.
    /// Starts a consumer. The reply is `None` while brokers check its SQL92
    /// subscriptions; [`finish_check`](Self::finish_check) answers `call` then.
    pub(super) fn start_consumer(
        &mut self,
        now: Instant,
        call: CallId,
        timeout: Duration,
        config: ConsumerConfig,
        subscriptions: Vec<(String, Selector)>,
    ) -> Result<Option<Reply>, ClientError> {
        config.validate().map_err(ClientError::Config)?;
        if self.consumers.groups.contains_key(&config.group) {
            return Err(ClientError::ConsumerState(format!(
                "a consumer of group {} already runs in this client",
                config.group
            )));
        }
        let mut subs = Subscriptions::default();
        let version = self.wall_ms(now);
        for (topic, selector) in subscriptions {
            subs.subscribe(&topic, selector, false, version)
                .map_err(ClientError::Subscribe)?;
        }
        let group = config.group.clone();
        let persist_at = now + config.persist_interval;
        let local = (config.message_model == MessageModel::Broadcasting).then(|| Local {
            path: local_store::file_path(
                config.offset_store_dir.as_deref(),
                &self.client_id,
                &group,
            ),
            loaded: false,
            writing: None,
            again: false,
            final_write: false,
        });
        if let Some(l) = &local {
            self.outputs.push_back(Output::Load {
                path: l.path.clone(),
            });
        }
        info!(%group, "consumer starting");
        self.consumers.groups.insert(
            group.clone(),
            Consumer {
                name: Arc::from(group.as_str()),
                config,
                subs,
                suspended: false,
                queues: BTreeMap::new(),
                ready: VecDeque::new(),
                waiting: VecDeque::new(),
                in_flight: 0,
                cached_count: 0,
                cached_bytes: 0,
                freed: (0, 0),
                room_after: None,
                offsets: BTreeMap::new(),
                rebalance_at: now,
                started_ms: self.wall_ms(now),
                check: None,
                route_retry_at: None,
                persist_at,
                listing: BTreeSet::new(),
                stats: ConsumerStats::default(),
                shutdown: None,
                local,
                lock_at: now + LOCK_INTERVAL,
                lock_retry_at: None,
                locking: BTreeMap::new(),
                releasing: BTreeSet::new(),
            },
        );
        self.heartbeat_at = Some(now);
        self.want_routes(now, &group);
        let Some(c) = self.consumers.groups.get_mut(&group) else {
            return Ok(Some(Reply::Done));
        };
        let sql: BTreeSet<String> = c
            .topics()
            .into_iter()
            .filter(|t| {
                c.subscription(t)
                    .is_some_and(|s| s.expression_type != ExpressionType::Tag)
            })
            .collect();
        if sql.is_empty() {
            return Ok(Some(Reply::Done));
        }
        c.check = Some(StartCheck {
            call,
            topics: sql.clone(),
            out: 0,
            deadline: now + timeout,
        });
        let known: Vec<String> = sql
            .into_iter()
            .filter(|t| self.routes.contains_key(t))
            .collect();
        for topic in known {
            self.check_topic(now, &group, &topic);
        }
        Ok(None)
    }

    /// Asks one broker of `topic` whether it accepts the group's subscription.
    fn check_topic(&mut self, now: Instant, group: &str, topic: &str) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let sub = c.subscription(topic);
        let Some(check) = c.check.as_mut() else {
            return;
        };
        if !check.topics.remove(topic) {
            return;
        }
        let addr = self
            .routes
            .get(topic)
            .and_then(|r| r.data.broker_datas.iter().find_map(|b| b.master_addr()))
            .map(str::to_owned);
        if let (Some(addr), Some(sub)) = (addr, sub) {
            check.out += 1;
            let body = CheckClientRequestBody {
                client_id: self.client_id.clone(),
                group: group.to_owned(),
                namespace: None,
                subscription_data: Some(sub),
            };
            let request = RemotingCommand::request(RequestCode::CHECK_CLIENT_CONFIG, 0)
                .with_body(Bytes::from(body.encode()));
            let timeout = self.config.request_timeout;
            let op = ConsumerOp::CheckClient {
                topic: topic.to_owned(),
            };
            self.consumer_request(now, group, &addr, request, op, timeout);
        }
        self.finish_check(now, group, None);
    }

    /// Ends a start's check once nothing is left to ask, or at once with
    /// `refused`: the start call is answered, and a refused consumer is gone.
    fn finish_check(&mut self, now: Instant, group: &str, refused: Option<ClientError>) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let Some(check) = &c.check else {
            return;
        };
        if refused.is_none() && (check.out > 0 || !check.topics.is_empty()) {
            return;
        }
        let call = check.call;
        c.check = None;
        match refused {
            None => {
                c.rebalance_at = now;
                self.reply(call, Ok(Reply::Done));
            }
            Some(e) => {
                warn!(%group, error = %e, "consumer not started");
                self.reply(call, Err(e));
                self.remove_consumer(group);
                self.send_unregisters(now, group);
            }
        }
    }

    /// Asks for the routes of the group's topics that have none yet.
    fn want_routes(&mut self, now: Instant, group: &str) {
        let Some(c) = self.consumers.groups.get(group) else {
            return;
        };
        let timeout = self.config.request_timeout;
        let missing: Vec<String> = c
            .topics()
            .into_iter()
            .filter(|t| !self.routes.contains_key(t))
            .collect();
        for topic in &missing {
            if !self.route_queries.contains(topic) {
                self.query_route(None, topic.clone(), now + timeout, timeout);
            }
        }
        if let Some(c) = self.consumers.groups.get_mut(group) {
            c.route_retry_at = (!missing.is_empty()).then_some(now + ROUTE_RETRY);
        }
    }

    /// A route arrived: consumers of that topic rebalance it at once if they
    /// hold none of its queues yet.
    pub(super) fn consumer_route_arrived(&mut self, now: Instant, topic: &str) {
        if !self.has_consumers() {
            return;
        }
        let checking: Vec<String> = self
            .consumers
            .groups
            .iter()
            .filter(|(_, c)| c.check.as_ref().is_some_and(|k| k.topics.contains(topic)))
            .map(|(g, _)| g.clone())
            .collect();
        for group in checking {
            self.check_topic(now, &group, topic);
        }
        // The broker must know this client before it lists the group: brokers
        // met for the first time get their heartbeat ahead of the rebalance.
        if self
            .broker_addrs()
            .iter()
            .any(|a| !self.heartbeated.contains(a))
        {
            self.heartbeat_at = Some(now + self.config.heartbeat_interval);
            self.send_heartbeats(now);
        }
        // The rebalance waits for the broker's NOTIFY_CONSUMER_IDS_CHANGED that
        // this heartbeat causes (the broker sends it to every member, this one
        // included), falling back to a short timer. The members that lose
        // queues write their offsets on that same notice, so by the time this
        // member looks up the offsets of the queues it takes, they are current:
        // far fewer messages are delivered twice at a handover than if it
        // rebalanced at once.
        for c in self.consumers.groups.values_mut() {
            if c.shutdown.is_none()
                && c.topics().iter().any(|t| t == topic)
                && !c.queues.keys().any(|q| q.topic == topic)
            {
                c.rebalance_at = c.rebalance_at.min(now + REBALANCE_RETRY);
            }
        }
    }

    /// Every running consumer rebalances soon: on the broker's notice that
    /// the group changed, or after [`REBALANCE_RETRY`] at the latest.
    pub(super) fn rebalance_soon(&mut self, now: Instant) {
        for c in self.consumers.groups.values_mut() {
            if c.shutdown.is_none() {
                c.rebalance_at = c.rebalance_at.min(now + REBALANCE_RETRY);
            }
        }
    }

    pub(super) fn subscribe(
        &mut self,
        now: Instant,
        group: &str,
        topic: &str,
        selector: Selector,
        replace: bool,
    ) -> Result<Reply, ClientError> {
        let version = self.wall_ms(now);
        let c = self.running_consumer(group)?;
        if c.subs
            .subscribe(topic, selector, replace, version)
            .map_err(ClientError::Subscribe)?
        {
            c.rebalance_at = now;
            self.heartbeat_at = Some(now);
            self.want_routes(now, group);
        }
        Ok(Reply::Done)
    }

    pub(super) fn unsubscribe(
        &mut self,
        now: Instant,
        group: &str,
        topic: &str,
    ) -> Result<Reply, ClientError> {
        let c = self.running_consumer(group)?;
        if c.subs.unsubscribe(topic) {
            let gone: Vec<MessageQueue> = c
                .queues
                .keys()
                .filter(|q| q.topic == topic)
                .cloned()
                .collect();
            self.heartbeat_at = Some(now);
            for q in gone {
                self.drop_queue(now, group, &q);
            }
        }
        Ok(Reply::Done)
    }

    pub(super) fn suspend(&mut self, group: &str, suspended: bool) -> Result<Reply, ClientError> {
        let now = self.last_now;
        let c = self.running_consumer(group)?;
        c.suspended = suspended;
        if !suspended {
            let queues: Vec<MessageQueue> = c
                .queues
                .iter()
                .filter(|(_, s)| s.pull == PullState::Stopped)
                .map(|(q, _)| q.clone())
                .collect();
            for q in queues {
                self.pull_or_wait(now, group, &q);
            }
        }
        Ok(Reply::Done)
    }

    pub(super) fn consumer_stats(&self, group: &str) -> Result<Reply, ClientError> {
        let c = self
            .consumers
            .groups
            .get(group)
            .ok_or_else(|| no_consumer(group))?;
        let mut stats = c.stats.clone();
        stats.queues = c
            .queues
            .iter()
            .filter_map(|(q, s)| {
                let mut stats = s.pq.as_ref()?.stats();
                stats.locked = s.lock_live(self.last_now);
                stats.lock_won = s.lock_won;
                Some((q.clone(), stats))
            })
            .collect();
        stats.cached_count = c.cached_count;
        stats.cached_bytes = c.cached_bytes;
        stats.in_flight = c.in_flight;
        Ok(Reply::ConsumerStats(stats))
    }

    fn running_consumer(&mut self, group: &str) -> Result<&mut Consumer, ClientError> {
        match self.consumers.groups.get_mut(group) {
            Some(c) if c.shutdown.is_none() => Ok(c),
            Some(_) => Err(ClientError::ConsumerState(format!(
                "the consumer of group {group} is shutting down"
            ))),
            None => Err(no_consumer(group)),
        }
    }

    /// Fires consumer timers that are due.
    pub(super) fn consumer_timers(&mut self, now: Instant) {
        let groups: Vec<String> = self.consumers.groups.keys().cloned().collect();
        for group in groups {
            let Some(c) = self.consumers.groups.get_mut(&group) else {
                continue;
            };
            if let Some(s) = &c.shutdown {
                if s.deadline <= now {
                    self.finish_shutdown(now, &group, true);
                } else if s.finishing.is_none() {
                    // Calls still running keep their queues locked.
                    self.lock_rounds(now, &group);
                }
                continue;
            }
            if let Some(check) = &mut c.check {
                if check.deadline <= now {
                    // Topics still without a route are not checked (Java's
                    // rule); a broker that has not answered fails the start.
                    check.topics.clear();
                    let refused = (check.out > 0)
                        .then_some(ClientError::Timeout(self.config.request_timeout));
                    self.finish_check(now, &group, refused);
                }
            }
            let Some(c) = self.consumers.groups.get_mut(&group) else {
                continue;
            };
            if c.route_retry_at.is_some_and(|t| t <= now) {
                self.want_routes(now, &group);
            }
            let Some(c) = self.consumers.groups.get_mut(&group) else {
                continue;
            };
            if c.rebalance_at <= now && c.check.is_none() {
                c.rebalance_at = now + REBALANCE_INTERVAL;
                self.want_routes(now, &group);
                self.rebalance(now, &group);
            }
            let Some(c) = self.consumers.groups.get_mut(&group) else {
                continue;
            };
            if c.persist_at <= now {
                c.persist_at = now + c.config.persist_interval;
                self.persist_offsets(now, &group, false);
            }
            self.orderly_timers(now, &group);
            let Some(c) = self.consumers.groups.get_mut(&group) else {
                continue;
            };
            let mut due = Vec::new();
            let mut woke = Vec::new();
            for (q, slot) in &mut c.queues {
                if matches!(slot.pull, PullState::At(t) if t <= now) {
                    due.push(q.clone());
                }
                if let Some(pq) = &mut slot.pq {
                    if pq.wake_retries(now) {
                        woke.push(q.clone());
                    }
                }
            }
            for q in woke {
                c.mark_ready(&q);
            }
            for q in due {
                self.pull_or_wait(now, &group, &q);
            }
            self.dispatch_deliveries(now, &group);
        }
    }

    /// Reports listener calls running past the consume timeout, once each.
    /// They are not delivered again while they run; their messages hold the
    /// queue's offset until they finish.
    fn warn_overdue(&mut self, now: Instant, group: &str) {
        let Some(timeout) = self
            .consumers
            .groups
            .get(group)
            .map(|c| c.config.consume_timeout)
        else {
            return;
        };
        for (ticket, (g, info)) in &mut self.consumers.tickets {
            if &**g == group
                && !info.overdue
                && now.saturating_duration_since(info.started) > timeout
            {
                info.overdue = true;
                warn!(%group, %ticket, queue = %info.queue, running = ?now.saturating_duration_since(info.started), "listener call past the consume timeout");
            }
        }
    }

    /// Rebalances every topic of a group.
    fn rebalance(&mut self, now: Instant, group: &str) {
        let Some(c) = self.consumers.groups.get(group) else {
            return;
        };
        let topics = c.topics();
        let stray: Vec<MessageQueue> = c
            .queues
            .keys()
            .filter(|q| !topics.contains(&q.topic))
            .cloned()
            .collect();
        for q in stray {
            self.drop_queue(now, group, &q);
        }
        self.warn_overdue(now, group);
        for topic in topics {
            self.rebalance_topic(now, group, &topic);
        }
    }

    /// Clustering: asks a broker of the topic for the group's members; the
    /// answer is allocated in [`Self::on_consumer_list`].
    fn rebalance_topic(&mut self, now: Instant, group: &str, topic: &str) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        if c.listing.contains(topic) {
            return;
        }
        let Some(route) = self.routes.get(topic) else {
            return;
        };
        if let Some(local) = &c.local {
            // Broadcasting: every queue, once the offset file is read.
            if local.loaded {
                let all = route.data.subscribe_queues(topic).into_iter().collect();
                self.apply_assignment(now, group, topic, all);
            }
            return;
        }
        let addrs: Vec<&str> = route
            .data
            .broker_datas
            .iter()
            .filter_map(|b| b.master_addr())
            .collect();
        if addrs.is_empty() {
            return;
        }
        // Each ask goes to the next broker of the route, so that one that is
        // down or cut off does not keep every rebalance of the topic failing
        // (Java picks one at random each time).
        self.consumers.list_turn = self.consumers.list_turn.wrapping_add(1);
        let pick = self.consumers.list_turn % addrs.len();
        let Some(addr) = addrs.get(pick).map(|a| (*a).to_owned()) else {
            return;
        };
        c.listing.insert(topic.to_owned());
        let request = RemotingCommand::request(RequestCode::GET_CONSUMER_LIST_BY_GROUP, 0)
            .with_header(&GetConsumerListByGroupRequestHeader {
                consumer_group: group.to_owned(),
            });
        let timeout = self.config.request_timeout;
        self.send_request(
            None,
            &addr,
            request,
            Expect::Consumer {
                group: group.to_owned(),
                op: ConsumerOp::ConsumerList {
                    topic: topic.to_owned(),
                },
            },
            now + timeout,
            timeout,
        );
    }

    fn on_consumer_list(
        &mut self,
        now: Instant,
        group: &str,
        topic: &str,
        answer: Result<RemotingCommand, ClientError>,
    ) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        c.listing.remove(topic);
        if c.shutdown.is_some() || !c.topics().iter().any(|t| t == topic) {
            return;
        }
        let cids = match answer {
            Ok(cmd) if cmd.response_code() == ResponseCode::SUCCESS => {
                match ConsumerIdList::decode(&cmd.body) {
                    Ok(list) => list.consumer_id_list,
                    Err(e) => {
                        c.failed(ConsumerError::Rebalance {
                            topic: topic.to_owned(),
                            error: ClientError::BadResponse(e.to_string()),
                        });
                        return;
                    }
                }
            }
            Ok(cmd) => {
                debug!(%group, %topic, code = ?cmd.response_code(), remark = ?cmd.remark, "no consumer list yet; assignment kept");
                c.rebalance_at = c.rebalance_at.min(now + REBALANCE_RETRY);
                return;
            }
            Err(error) => {
                c.failed(ConsumerError::Rebalance {
                    topic: topic.to_owned(),
                    error,
                });
                return;
            }
        };
        let Some(route) = self.routes.get(topic) else {
            return;
        };
        let all = route.data.subscribe_queues(topic);
        let own = self.client_id.clone();
        if !cids.contains(&own) {
            // Our heartbeat has not reached the broker yet: look again soon.
            c.rebalance_at = c.rebalance_at.min(now + REBALANCE_RETRY);
        }
        let mine = match c.config.allocate.allocate(&own, &all, &cids) {
            Ok(mine) => mine,
            Err(e) => {
                c.failed(ConsumerError::Rebalance {
                    topic: topic.to_owned(),
                    error: ClientError::ConsumerState(e.to_string()),
                });
                return;
            }
        };
        self.apply_assignment(now, group, topic, mine.into_iter().collect());
    }

    /// Drops the topic's queues that are no longer ours and starts the new ones.
    fn apply_assignment(
        &mut self,
        now: Instant,
        group: &str,
        topic: &str,
        mine: BTreeSet<MessageQueue>,
    ) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let held: Vec<MessageQueue> = c
            .queues
            .keys()
            .filter(|q| q.topic == topic)
            .cloned()
            .collect();
        let gone: Vec<MessageQueue> = held
            .iter()
            .filter(|q| !mine.contains(*q))
            .cloned()
            .collect();
        let new: Vec<MessageQueue> = mine
            .iter()
            .filter(|q| !c.queues.contains_key(*q))
            .cloned()
            .collect();
        // Orderly: a queue being released that is ours again is kept.
        let kept: Vec<MessageQueue> = mine
            .iter()
            .filter(|q| c.queues.get(*q).is_some_and(|s| s.release.is_some()))
            .cloned()
            .collect();
        for q in kept {
            self.keep_released(now, group, &q);
        }
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let gone: Vec<MessageQueue> = gone
            .into_iter()
            .filter(|q| c.queues.get(q).is_some_and(|s| s.release.is_none()))
            .collect();
        if gone.is_empty() && new.is_empty() {
            return;
        }
        c.stats.rebalances += 1;
        info!(%group, %topic, dropped = gone.len(), added = new.len(), "rebalanced");
        for q in &gone {
            self.drop_queue(now, group, q);
        }
        let locks = self
            .consumers
            .groups
            .get(group)
            .is_some_and(Consumer::locks);
        let orderly = self
            .consumers
            .groups
            .get(group)
            .is_some_and(|c| c.config.orderly);
        for q in &new {
            self.consumers.next_generation += 1;
            let generation = self.consumers.next_generation;
            // Orderly: a call of an earlier tenure of the queue that still
            // runs (its lock had lapsed when the queue went) holds back the
            // first batch of this one.
            let out = orderly
                .then(|| {
                    self.consumers
                        .tickets
                        .iter()
                        .find(|(_, (g, info))| &**g == group && *info.queue == *q)
                        .map(|(t, _)| t.0)
                })
                .flatten();
            let Some(c) = self.consumers.groups.get_mut(group) else {
                return;
            };
            c.queues.insert(
                q.clone(),
                Slot {
                    queue: Arc::new(q.clone()),
                    generation,
                    in_ready: false,
                    pq: None,
                    pull: if locks {
                        PullState::Locking
                    } else {
                        PullState::Starting
                    },
                    assigned: now,
                    lock: None,
                    lock_won: None,
                    suspended_until: None,
                    release: None,
                    batch: out,
                },
            );
            if !locks {
                self.query_offset(now, group, q.clone(), generation);
            }
        }
        if locks {
            // At once, not at the next lock round: a queue is processed as
            // soon as its lock is won.
            self.lock_queues(now, group, new);
        }
        self.heartbeat_at = Some(now);
    }

    /// A queue is no longer ours: pulls stop, its offset is persisted, its cache
    /// released, and listener calls still running on it are forgotten (the new
    /// owner delivers their messages again).
    fn drop_queue(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        if self.begin_release(now, group, queue) {
            return;
        }
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        if !c.remove_slot(queue) {
            return;
        }
        // The broker keeps a clustering group's offset for the next owner; a
        // broadcasting consumer keeps its own, in its file, for when the queue
        // comes back (Java's local store never forgets a queue either).
        let local = c.local.is_some();
        let offset = if local {
            c.offsets.get(queue).copied()
        } else {
            c.offsets.remove(queue)
        };
        debug!(%group, %queue, "queue dropped");
        if let Some(o) = offset.filter(|o| o.committed >= 0 && o.committed != o.persisted) {
            if local {
                self.persist_local(group, false);
            } else {
                self.update_offset(now, group, queue, o.committed, false);
            }
        }
        self.room_freed(now, group);
    }

    fn broker_of(&self, queue: &MessageQueue) -> Option<String> {
        self.routes
            .get(&queue.topic)
            .and_then(|r| r.data.master_addr(&queue.broker_name))
            .map(str::to_owned)
    }

    fn consumer_request(
        &mut self,
        now: Instant,
        group: &str,
        addr: &str,
        request: RemotingCommand,
        op: ConsumerOp,
        timeout: Duration,
    ) {
        self.send_request(
            None,
            addr,
            request,
            Expect::Consumer {
                group: group.to_owned(),
                op,
            },
            now + timeout,
            timeout,
        );
    }

    fn query_offset(&mut self, now: Instant, group: &str, queue: MessageQueue, generation: u64) {
        if let Some(c) = self
            .consumers
            .groups
            .get(group)
            .filter(|c| c.local.is_some())
        {
            return match c.offsets.get(&queue).map(|o| o.committed) {
                Some(offset) => self.start_queue(now, group, &queue, generation, offset),
                None => self.start_from_rule(now, group, queue, generation),
            };
        }
        // From a timestamp, a group without an offset must hear "not found" to
        // search by time: a broker otherwise answers 0 while the queue's
        // messages are still in memory (Java's behaviour, which makes a new
        // group read everything). From the last offset that answer is kept, as
        // Java keeps it: it is what lets a queue added to a topic be read from
        // its start rather than skipped.
        let set_zero_if_not_found = self.consumers.groups.get(group).and_then(|c| {
            matches!(c.config.consume_from, ConsumeFrom::Timestamp(_)).then_some(false)
        });
        let Some(addr) = self.broker_of(&queue) else {
            return self.later(now, group, &queue, PULL_RETRY_DELAY);
        };
        let request = RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET, 0).with_header(
            &QueryConsumerOffsetRequestHeader {
                consumer_group: group.to_owned(),
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                set_zero_if_not_found,
                broker_name: Some(queue.broker_name.clone()),
            },
        );
        let timeout = self.config.request_timeout;
        self.consumer_request(
            now,
            group,
            &addr,
            request,
            ConsumerOp::QueryOffset { queue, generation },
            timeout,
        );
    }

    /// Reading or writing the offset of `queue` failed.
    fn offset_failed(&mut self, group: &str, queue: &MessageQueue, error: ClientError) {
        if let Some(c) = self.consumers.groups.get_mut(group) {
            c.failed(ConsumerError::Offset {
                queue: queue.clone(),
                error,
            });
        }
    }

    /// The slot of `queue` if it still has this generation.
    fn slot(&mut self, group: &str, queue: &MessageQueue, generation: u64) -> Option<&mut Slot> {
        self.consumers
            .groups
            .get_mut(group)
            .and_then(|c| c.queues.get_mut(queue))
            .filter(|s| s.generation == generation)
    }

    fn on_query_offset(
        &mut self,
        now: Instant,
        group: &str,
        queue: MessageQueue,
        generation: u64,
        answer: Result<RemotingCommand, ClientError>,
    ) {
        if self.slot(group, &queue, generation).is_none() {
            return;
        }
        let found = match &answer {
            Ok(cmd) if cmd.response_code() == ResponseCode::SUCCESS => {
                match cmd.header::<QueryConsumerOffsetResponseHeader>() {
                    Ok(h) => Some(h.offset).filter(|o| *o >= 0),
                    Err(e) => {
                        let error = ClientError::BadResponse(e.to_string());
                        self.offset_failed(group, &queue, error);
                        return self.retry_start(now, group, &queue, generation);
                    }
                }
            }
            Ok(cmd) if cmd.response_code() == ResponseCode::QUERY_NOT_FOUND => None,
            Ok(cmd) => {
                let error = remote(cmd.response_code(), cmd);
                self.offset_failed(group, &queue, error);
                return self.retry_start(now, group, &queue, generation);
            }
            Err(e) => {
                self.offset_failed(group, &queue, e.clone());
                return self.retry_start(now, group, &queue, generation);
            }
        };
        match found {
            Some(offset) => self.start_queue(now, group, &queue, generation, offset),
            None => self.start_from_rule(now, group, queue, generation),
        }
    }

    fn retry_start(&mut self, now: Instant, group: &str, queue: &MessageQueue, generation: u64) {
        if let Some(slot) = self.slot(group, queue, generation) {
            slot.pull = PullState::At(now + PULL_RETRY_DELAY);
        }
    }

    /// No stored offset: the consume-from rule decides (Java's
    /// `RebalancePushImpl.computePullFromWhere`).
    fn start_from_rule(&mut self, now: Instant, group: &str, queue: MessageQueue, generation: u64) {
        let Some(c) = self.consumers.groups.get(group) else {
            return;
        };
        let retry = queue.topic.starts_with(RETRY_PREFIX);
        let request = match c.config.consume_from {
            ConsumeFrom::FirstOffset => {
                return self.start_queue(now, group, &queue, generation, 0);
            }
            ConsumeFrom::LastOffset if retry => {
                return self.start_queue(now, group, &queue, generation, 0);
            }
            ConsumeFrom::LastOffset => RemotingCommand::request(RequestCode::GET_MAX_OFFSET, 0)
                .with_header(&GetMaxOffsetRequestHeader {
                    topic: queue.topic.clone(),
                    queue_id: queue.queue_id,
                    committed: None,
                    broker_name: Some(queue.broker_name.clone()),
                }),
            ConsumeFrom::Timestamp(_) if retry => {
                RemotingCommand::request(RequestCode::GET_MAX_OFFSET, 0).with_header(
                    &GetMaxOffsetRequestHeader {
                        topic: queue.topic.clone(),
                        queue_id: queue.queue_id,
                        committed: None,
                        broker_name: Some(queue.broker_name.clone()),
                    },
                )
            }
            ConsumeFrom::Timestamp(ms) => {
                RemotingCommand::request(RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, 0).with_header(
                    &SearchOffsetRequestHeader {
                        topic: queue.topic.clone(),
                        queue_id: queue.queue_id,
                        timestamp: ms,
                        boundary_type: None,
                        broker_name: Some(queue.broker_name.clone()),
                    },
                )
            }
        };
        let Some(addr) = self.broker_of(&queue) else {
            return self.retry_start(now, group, &queue, generation);
        };
        let timeout = self.config.request_timeout;
        self.consumer_request(
            now,
            group,
            &addr,
            request,
            ConsumerOp::StartOffset { queue, generation },
            timeout,
        );
    }

    fn on_start_offset(
        &mut self,
        now: Instant,
        group: &str,
        queue: MessageQueue,
        generation: u64,
        answer: Result<RemotingCommand, ClientError>,
    ) {
        if self.slot(group, &queue, generation).is_none() {
            return;
        }
        match answer {
            Ok(cmd) if cmd.response_code() == ResponseCode::SUCCESS => {
                match cmd.header::<OffsetResponseHeader>() {
                    Ok(h) if h.offset >= 0 => {
                        self.start_queue(now, group, &queue, generation, h.offset);
                    }
                    _ => self.retry_start(now, group, &queue, generation),
                }
            }
            Ok(cmd) => {
                let error = remote(cmd.response_code(), &cmd);
                self.offset_failed(group, &queue, error);
                self.retry_start(now, group, &queue, generation);
            }
            Err(error) => {
                self.offset_failed(group, &queue, error);
                self.retry_start(now, group, &queue, generation);
            }
        }
    }

    /// The queue's start offset is known: its cache exists and it pulls.
    fn start_queue(
        &mut self,
        now: Instant,
        group: &str,
        queue: &MessageQueue,
        generation: u64,
        offset: i64,
    ) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let Some(slot) = c
            .queues
            .get_mut(queue)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        debug!(%group, %queue, offset, "queue starts");
        slot.pq = Some(ProcessQueue::new(queue.clone(), offset));
        c.offsets.insert(
            queue.clone(),
            Offset {
                committed: offset,
                // Written at the next persist, as Java writes every offset it
                // holds: a new group's start point is kept even if nothing is
                // consumed before a restart.
                persisted: -1,
            },
        );
        self.pull_or_wait(now, group, queue);
    }

    fn later(&mut self, now: Instant, group: &str, queue: &MessageQueue, delay: Duration) {
        if let Some(slot) = self
            .consumers
            .groups
            .get_mut(group)
            .and_then(|c| c.queues.get_mut(queue))
        {
            slot.pull = PullState::At(now + delay);
        }
    }

    /// Pulls `queue` if its cache and the group's budget have room; otherwise it
    /// waits for room (and pulls the moment room frees).
    fn pull_or_wait(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let stopped = c.suspended || c.shutdown.is_some();
        let Some(slot) = c.queues.get_mut(queue) else {
            return;
        };
        let Some(pq) = &slot.pq else {
            // No offset yet (a retried offset query comes through here).
            if !matches!(slot.pull, PullState::Starting | PullState::Locking) {
                slot.pull = PullState::Starting;
                let generation = slot.generation;
                self.query_offset(now, group, queue.clone(), generation);
            }
            return;
        };
        if slot.pull == PullState::InFlight {
            return;
        }
        if stopped || slot.release.is_some() {
            slot.pull = PullState::Stopped;
            return;
        }
        let generation = slot.generation;
        let next = pq.next_pull_offset();
        let Some(c) = self.consumers.groups.get(group) else {
            return;
        };
        let Some(pq) = c.queues.get(queue).and_then(|s| s.pq.as_ref()) else {
            return;
        };
        let (count, bytes) = c.room(pq);
        if count == 0 || bytes == 0 {
            if let Some(c) = self.consumers.groups.get_mut(group) {
                if let Some(slot) = c.queues.get_mut(queue) {
                    if slot.pull != PullState::Full {
                        slot.pull = PullState::Full;
                        let queue = slot.queue.clone();
                        c.wait_for_room(queue);
                    }
                }
            }
            return;
        }
        let Some(sub) = c.subscription(&queue.topic) else {
            // No longer subscribed: the queue goes.
            return self.drop_queue(now, group, queue);
        };
        let max = u32::try_from(count)
            .unwrap_or(u32::MAX)
            .min(c.config.pull_batch_size);
        let committed = c.offsets.get(queue).map_or(0, |o| o.committed);
        let Some(addr) = self.broker_of(queue) else {
            return self.later(now, group, queue, PULL_RETRY_DELAY);
        };
        let mut flags = pull_flag::SUSPEND | pull_flag::SUBSCRIPTION;
        // Only a clustering group's offsets live on the broker (Java's rule).
        // An orderly queue's offset is written only by UPDATE_CONSUMER_OFFSET:
        // the broker runs pulls and offset writes on different threads, so a
        // pull's older offset could land after the write made when the queue
        // was handed over, and its next owner would start too early.
        if committed > 0 && c.local.is_none() && !c.config.orderly {
            flags |= pull_flag::COMMIT_OFFSET;
        }
        let header = PullMessageRequestHeader {
            consumer_group: group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            queue_offset: next,
            max_msg_nums: max as i32,
            sys_flag: flags,
            commit_offset: committed,
            suspend_timeout_millis: PULL_SUSPEND.as_millis() as i64,
            subscription: Some(sub.sub_string.clone()),
            sub_version: sub.sub_version,
            expression_type: Some(
                match sub.expression_type {
                    crate::protocol::body::ExpressionType::Tag => "TAG",
                    crate::protocol::body::ExpressionType::Sql92 => "SQL92",
                }
                .into(),
            ),
            max_msg_bytes: Some(i32::try_from(bytes).unwrap_or(i32::MAX)),
            request_source: None,
            proxy_forward_client_id: None,
            broker_name: Some(queue.broker_name.clone()),
        };
        if let Some(slot) = self
            .consumers
            .groups
            .get_mut(group)
            .and_then(|c| c.queues.get_mut(queue))
        {
            slot.pull = PullState::InFlight;
        }
        let request = RemotingCommand::request(RequestCode::PULL_MESSAGE, 0).with_header(&header);
        self.consumer_request(
            now,
            group,
            &addr,
            request,
            ConsumerOp::Pull {
                queue: queue.clone(),
                generation,
            },
            PULL_TIMEOUT,
        );
    }

    fn on_pulled(
        &mut self,
        now: Instant,
        group: &str,
        queue: MessageQueue,
        generation: u64,
        answer: Result<RemotingCommand, ClientError>,
    ) {
        let decode = self.config.decode.clone();
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let retry_topic = c.retry_topic();
        let sub = c.subscription(&queue.topic);
        let delay = c.config.pull_interval;
        let n = c.queues.len().max(1);
        let cfg = Limits::of(&c.config);
        let (global_count, global_bytes) = (c.cached_count, c.cached_bytes);
        let Some(slot) = c
            .queues
            .get_mut(&queue)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        slot.pull = PullState::At(now);
        let result = answer.and_then(|cmd| on_pull(&cmd, &decode));
        let pulled = match result {
            Ok(Reply::Pulled(p)) => p,
            Ok(_) => return,
            Err(error) => {
                slot.pull = PullState::At(now + PULL_RETRY_DELAY);
                c.failed(ConsumerError::Pull { queue, error });
                return;
            }
        };
        let Some(pq) = &mut slot.pq else {
            return;
        };
        let mut freed = false;
        let mut ready = false;
        let mut moved = None;
        let (count_before, bytes_before) = (pq.count(), pq.bytes());
        match pulled.status {
            PullStatus::Found => {
                let mut messages: Vec<MessageExt> = pulled
                    .messages
                    .into_iter()
                    .filter(|m| sub.as_ref().is_none_or(|s| tag_matches(s, m.tags())))
                    .collect();
                if retry_topic.as_deref() == Some(queue.topic.as_str()) {
                    for m in &mut messages {
                        restore_retry_topic(m);
                    }
                }
                // Keep what fits the queue's and the consumer's limits. The rest is
                // pulled again once room frees. An empty queue takes its first
                // message however large it is, or it could never move on: byte
                // limits may be passed by that one message, count limits never.
                let q_count_max = cfg.queue_count.min((cfg.global_count / n).max(1));
                let q_bytes_max = cfg.queue_bytes.min((cfg.global_bytes / n).max(1));
                let (mut count, mut bytes) = (global_count, global_bytes);
                let (mut q_count, mut q_bytes) = (count_before, bytes_before);
                let mut next = pulled.next_begin_offset;
                let mut keep = 0;
                for m in &messages {
                    let len = m.body.len();
                    let fits = count < cfg.global_count
                        && bytes + len <= cfg.global_bytes
                        && q_count < q_count_max
                        && q_bytes + len <= q_bytes_max;
                    if !(fits || (q_count == 0 && count < cfg.global_count)) {
                        next = m.queue_offset;
                        break;
                    }
                    count += 1;
                    bytes += len;
                    q_count += 1;
                    q_bytes += len;
                    keep += 1;
                }
                messages.truncate(keep);
                pq.add(now, messages, next);
                ready = pq.has_ready();
                if next < pulled.next_begin_offset {
                    // Full: wait for room rather than pull the same messages again.
                    slot.pull = PullState::Full;
                } else if !delay.is_zero() {
                    slot.pull = PullState::At(now + delay);
                }
            }
            PullStatus::NoNewMessage | PullStatus::NoMatchedMessage => {
                pq.nothing_new(now, pulled.next_begin_offset);
            }
            PullStatus::OffsetIllegal => {
                // The broker moved the offset (out of range, or reset by an
                // operator): the queue starts over from its answer, below.
                moved = Some(pulled.next_begin_offset);
            }
        }
        // The global counters follow the queue's own before and after.
        if let Some(pq) = c.queues.get(&queue).and_then(|s| s.pq.as_ref()) {
            let (count_after, bytes_after) = (pq.count(), pq.bytes());
            c.cached_count = (c.cached_count + count_after).saturating_sub(count_before);
            c.cached_bytes = (c.cached_bytes + bytes_after).saturating_sub(bytes_before);
            c.freed.0 += count_before.saturating_sub(count_after);
            c.freed.1 += bytes_before.saturating_sub(bytes_after);
        }
        if ready {
            c.mark_ready(&queue);
        }
        if let Some(slot) = c.queues.get(&queue).filter(|s| s.pull == PullState::Full) {
            let queue = slot.queue.clone();
            c.wait_for_room(queue);
        }
        self.update_committed(group, &queue);
        if let Some(to) = moved {
            self.reset_queue(now, group, &queue, to);
            freed = true;
        }
        let generation = self
            .consumers
            .groups
            .get(group)
            .and_then(|c| c.queues.get(&queue))
            .map_or(generation, |s| s.generation);
        if matches!(
            self.slot(group, &queue, generation).map(|s| s.pull),
            Some(PullState::At(t)) if t <= now
        ) {
            self.pull_or_wait(now, group, &queue);
        }
        if freed {
            self.room_freed(now, group);
        }
        self.dispatch_deliveries(now, group);
    }

    /// Raises the queue's committed offset to what its cache allows.
    fn update_committed(&mut self, group: &str, queue: &MessageQueue) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let Some(to) = c
            .queues
            .get(queue)
            .and_then(|s| s.pq.as_ref())
            .and_then(ProcessQueue::committable)
        else {
            return;
        };
        if let Some(o) = c.offsets.get_mut(queue) {
            o.committed = o.committed.max(to);
        }
    }

    /// Hands ready messages to the listener while calls are free, one queue at
    /// a time in turn.
    fn dispatch_deliveries(&mut self, now: Instant, group: &str) {
        let wall = self.wall_ms(now);
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        if c.shutdown.is_some() {
            return;
        }
        let orderly = c.config.orderly;
        let locks = c.locks();
        while c.in_flight < c.config.consume_concurrency + c.config.dispatch_ahead {
            let Some(queue) = c.ready.pop_front() else {
                break;
            };
            let Some(slot) = c.queues.get_mut(&*queue) else {
                continue;
            };
            slot.in_ready = false;
            if orderly && !slot.may_hand_out(now, locks) {
                // Listed again when what holds it back ends.
                continue;
            }
            let Some(pq) = &mut slot.pq else {
                continue;
            };
            self.consumers.next_ticket += 1;
            let ticket = Ticket(self.consumers.next_ticket);
            let messages = pq.take_ready(c.config.consume_batch_size, ticket.0);
            if orderly && messages.is_empty() {
                // Listed while its messages were dropped (an offset reset): no
                // batch, or the queue would wait for it forever.
                continue;
            }
            if orderly {
                // One batch at a time: listed again when it is done.
                slot.batch = Some(ticket.0);
            } else if pq.has_ready() {
                slot.in_ready = true;
                c.ready.push_back(queue.clone());
            }
            if messages.is_empty() {
                continue;
            }
            c.in_flight += 1;
            let context = ConsumeContext {
                group: group.to_owned(),
                queue: (*queue).clone(),
                reconsume_times: messages.first().map_or(0, |m| m.reconsume_times),
                consume_start_ms: wall,
                attributes: BTreeMap::new(),
            };
            self.consumers.tickets.insert(
                ticket,
                (
                    c.name.clone(),
                    TicketInfo {
                        queue,
                        generation: slot.generation,
                        offsets: CallOffsets::of(&messages),
                        started: now,
                        overdue: false,
                    },
                ),
            );
            self.outputs.push_back(Output::Deliver(Delivery {
                ticket,
                messages,
                context,
            }));
        }
    }

    /// A listener call finished.
    pub(super) fn on_consumed(&mut self, now: Instant, ticket: Ticket, verdict: Verdict) {
        let Some((group, info)) = self.consumers.tickets.remove(&ticket) else {
            return;
        };
        let Some(c) = self.consumers.groups.get_mut(&*group) else {
            return;
        };
        c.in_flight = c.in_flight.saturating_sub(1);
        if c.config.orderly {
            return self.on_orderly_consumed(now, ticket, &group, info, verdict.orderly());
        }
        let result = verdict.concurrent();
        let max_reconsume = c.max_reconsume_times();
        let clustering = c.config.message_model == MessageModel::Clustering;
        let mut backs = Vec::new();
        if let Some(pq) = c
            .queues
            .get_mut(&*info.queue)
            .filter(|s| s.generation == info.generation)
            .and_then(|s| s.pq.as_mut())
        {
            let (count, bytes) = (pq.count(), pq.bytes());
            match result {
                ConsumeResult::Success => {
                    pq.done(now, ticket.0, &info.offsets);
                    c.stats.consumed += info.offsets.len() as u64;
                }
                ConsumeResult::ReconsumeLater { .. } if !clustering => {
                    // Broadcasting has no retry topic: Java drops the message.
                    pq.drop_failed(ticket.0, &info.offsets);
                    c.stats.failed += info.offsets.len() as u64;
                }
                ConsumeResult::ReconsumeLater { delay_level } => {
                    c.stats.failed += info.offsets.len() as u64;
                    for offset in info.offsets.iter() {
                        if let Some(m) = pq.sending_back(now, ticket.0, *offset) {
                            backs.push((*offset, m.clone(), delay_level));
                        }
                    }
                }
            }
            let (freed_count, freed_bytes) = (count - pq.count(), bytes - pq.bytes());
            c.release(freed_count, freed_bytes);
        }
        for (offset, m, delay_level) in backs {
            self.send_back(
                now,
                &group,
                &info.queue,
                info.generation,
                offset,
                &m,
                delay_level,
                max_reconsume,
            );
        }
        self.completed(now, &group, &info.queue);
    }

    /// After a listener call on `queue` finished: the committed offset, room
    /// in the cache, the next deliveries, a shutdown's drain.
    fn completed(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        self.update_committed(group, queue);
        let Some(c) = self.consumers.groups.get(group) else {
            return;
        };
        let global_held = c.room_after.is_some_and(|(count, bytes, queues)| {
            queues == c.queues.len() && (c.freed.0 < count || c.freed.1 < bytes)
        });
        if global_held {
            self.own_room_freed(now, group, queue);
        } else {
            self.room_freed(now, group);
        }
        self.dispatch_deliveries(now, group);
        self.check_drained(now, group);
    }

    #[allow(clippy::too_many_arguments)]
    fn send_back(
        &mut self,
        now: Instant,
        group: &str,
        queue: &MessageQueue,
        generation: u64,
        offset: i64,
        message: &MessageExt,
        delay_level: i32,
        max_reconsume: i32,
    ) {
        let Some(addr) = self
            .broker_of(queue)
            .or_else(|| Some(message.store_host.to_string()))
        else {
            return;
        };
        let origin_topic = message.topic.to_string();
        let header = ConsumerSendMsgBackRequestHeader {
            offset: message.commit_log_offset,
            group: group.to_owned(),
            delay_level,
            origin_msg_id: Some(
                message
                    .property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
                    .map_or_else(|| message.msg_id(), str::to_owned),
            ),
            origin_topic: Some(origin_topic),
            unit_mode: Some(false),
            max_reconsume_times: Some(max_reconsume),
            broker_name: Some(queue.broker_name.clone()),
        };
        let request =
            RemotingCommand::request(RequestCode::CONSUMER_SEND_MSG_BACK, 0).with_header(&header);
        let timeout = self.config.request_timeout;
        self.consumer_request(
            now,
            group,
            &addr,
            request,
            ConsumerOp::SendBack {
                queue: queue.clone(),
                generation,
                offset,
            },
            timeout,
        );
    }

    fn on_sent_back(
        &mut self,
        now: Instant,
        group: &str,
        queue: MessageQueue,
        generation: u64,
        offset: i64,
        answer: Result<RemotingCommand, ClientError>,
    ) {
        let ok = matches!(&answer, Ok(cmd) if cmd.response_code() == ResponseCode::SUCCESS);
        if let Some(c) = self.consumers.groups.get_mut(group) {
            if let Some(pq) = c
                .queues
                .get_mut(&queue)
                .filter(|s| s.generation == generation)
                .and_then(|s| s.pq.as_mut())
            {
                if ok {
                    let (count, bytes) = (pq.count(), pq.bytes());
                    pq.sent_back(&[offset]);
                    let freed = (count - pq.count(), bytes - pq.bytes());
                    c.release(freed.0, freed.1);
                    c.stats.sent_back += 1;
                } else {
                    let error = match &answer {
                        Ok(cmd) => remote(cmd.response_code(), cmd),
                        Err(e) => e.clone(),
                    };
                    pq.retry_locally(offset, now + LOCAL_RETRY_DELAY);
                    c.failed(ConsumerError::SendBack {
                        queue: queue.clone(),
                        offset,
                        error,
                    });
                }
            }
        }
        self.update_committed(group, &queue);
        self.orderly_settled(now, group, &queue);
        self.room_freed(now, group);
        self.dispatch_deliveries(now, group);
        self.check_drained(now, group);
    }

    /// Room freed in a cache: queues waiting for it pull again, in the order
    /// they began to wait, while the consumer's budget has room.
    fn room_freed(&mut self, now: Instant, group: &str) {
        // Each queue waiting now gets one look; one held back by its own limits
        // goes to the back of the line again (in pull_or_wait).
        let mut turns = self
            .consumers
            .groups
            .get(group)
            .map_or(0, |c| c.waiting.len());
        while turns > 0 {
            turns -= 1;
            let Some(c) = self.consumers.groups.get_mut(group) else {
                return;
            };
            if c.cached_count >= c.config.global_cache_count
                || c.cached_bytes >= c.config.global_cache_bytes
            {
                break;
            }
            let Some(q) = c.waiting.pop_front() else {
                break;
            };
            let Some(slot) = c.queues.get_mut(&*q) else {
                continue;
            };
            if slot.pull != PullState::Full {
                continue;
            }
            slot.pull = PullState::At(now);
            self.pull_or_wait(now, group, &q);
        }
        // What must be freed before the global budget lets one of the queues
        // still waiting pull; those held back only by their own limits wait
        // for their own completions.
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let mut after = (usize::MAX, usize::MAX, c.queues.len());
        for q in &c.waiting {
            let Some(pq) = c
                .queues
                .get(&**q)
                .filter(|s| s.pull == PullState::Full)
                .and_then(|s| s.pq.as_ref())
            else {
                continue;
            };
            let (count, bytes) = c.global_short(pq);
            if (count, bytes) != (0, 0) {
                after.0 = after.0.min(count);
                after.1 = after.1.min(bytes);
            }
        }
        c.freed = (0, 0);
        c.room_after = Some(after);
    }

    /// A completion on `queue` eased its own limits while the global budget
    /// still holds every other waiting queue back: only `queue` may pull now.
    fn own_room_freed(&mut self, now: Instant, group: &str, queue: &MessageQueue) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let Some(pq) = c
            .queues
            .get(queue)
            .filter(|s| s.pull == PullState::Full)
            .and_then(|s| s.pq.as_ref())
        else {
            return;
        };
        let (count, bytes) = c.room(pq);
        if count == 0 || bytes == 0 {
            c.held_back(queue);
            return;
        }
        c.waiting.retain(|q| **q != *queue);
        if let Some(slot) = c.queues.get_mut(queue) {
            slot.pull = PullState::At(now);
        }
        self.pull_or_wait(now, group, queue);
    }

    /// Writes committed offsets that moved since the last write.
    /// An offset counts as persisted once the broker acknowledged it, so a
    /// failed write is tried again at the next interval. `last` marks the
    /// writes of a shutdown, which also includes unchanged offsets.
    fn persist_offsets(&mut self, now: Instant, group: &str, last: bool) -> usize {
        let Some(c) = self.consumers.groups.get(group) else {
            return 0;
        };
        if c.local.is_some() {
            let changed = c.offsets.values().any(|o| o.committed != o.persisted);
            return usize::from((last || changed) && self.persist_local(group, last));
        }
        let due: Vec<(MessageQueue, i64)> = c
            .offsets
            .iter()
            .filter(|(_, o)| o.committed >= 0 && (last || o.committed != o.persisted))
            .map(|(q, o)| (q.clone(), o.committed))
            .collect();
        let mut sent = 0;
        for (q, offset) in due {
            if self.update_offset(now, group, &q, offset, last) {
                sent += 1;
            }
        }
        sent
    }

    fn update_offset(
        &mut self,
        now: Instant,
        group: &str,
        queue: &MessageQueue,
        offset: i64,
        last: bool,
    ) -> bool {
        let op = ConsumerOp::OffsetUpdate {
            queue: queue.clone(),
            offset,
            last,
        };
        self.write_offset(now, group, queue, offset, op)
    }

    /// Sends UPDATE_CONSUMER_OFFSET; `op` says what the answer is for. False
    /// if the queue's broker is not known.
    fn write_offset(
        &mut self,
        now: Instant,
        group: &str,
        queue: &MessageQueue,
        offset: i64,
        op: ConsumerOp,
    ) -> bool {
        let Some(addr) = self.broker_of(queue) else {
            return false;
        };
        let request = RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET, 0).with_header(
            &UpdateConsumerOffsetRequestHeader {
                consumer_group: group.to_owned(),
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                commit_offset: offset,
                broker_name: Some(queue.broker_name.clone()),
            },
        );
        let timeout = self.config.request_timeout;
        self.consumer_request(now, group, &addr, request, op, timeout);
        true
    }

    /// Starts a consumer's shutdown: pulls stop, running listener calls and
    /// send-backs may finish until the deadline, then offsets are written and
    /// the group is unregistered; the call completes after that.
    pub(super) fn shutdown_consumer(&mut self, now: Instant, call: CallId, group: &str) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return self.reply(call, Err(no_consumer(group)));
        };
        if c.shutdown.is_some() {
            return self.reply(
                call,
                Err(ClientError::ConsumerState(format!(
                    "the consumer of group {group} is already shutting down"
                ))),
            );
        }
        info!(%group, "consumer shutting down");
        c.shutdown = Some(Shutdown {
            call,
            deadline: now + c.config.shutdown_timeout,
            finishing: None,
            unregistering: false,
            unregister_deferred: false,
        });
        for slot in c.queues.values_mut() {
            if slot.pull != PullState::InFlight {
                slot.pull = PullState::Stopped;
            }
        }
        c.ready.clear();
        c.waiting.clear();
        self.check_drained(now, group);
    }

    /// Shutting down and nothing is running any more: write offsets, unregister.
    fn check_drained(&mut self, now: Instant, group: &str) {
        let Some(c) = self.consumers.groups.get(group) else {
            return;
        };
        let Some(s) = &c.shutdown else {
            return;
        };
        if s.finishing.is_some() {
            return;
        }
        let busy = c.in_flight > 0
            || c.queues
                .values()
                .any(|slot| slot.pq.as_ref().is_some_and(|pq| pq.busy()));
        if !busy {
            self.finish_shutdown(now, group, false);
        }
    }

    fn finish_shutdown(&mut self, now: Instant, group: &str, deadline_passed: bool) {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let Some(s) = &mut c.shutdown else {
            return;
        };
        match s.finishing {
            None => {
                if deadline_passed {
                    warn!(%group, in_flight = c.in_flight, "shutdown deadline passed with listener calls running; their messages will be delivered again");
                }
                // Give the final writes their own time.
                s.deadline = now + self.config.request_timeout;
                s.finishing = Some(0);
                let queues: Vec<MessageQueue> = c.queues.keys().cloned().collect();
                for q in &queues {
                    self.update_committed(group, q);
                }
                let out = self.persist_offsets(now, group, true);
                if let Some(s) = self
                    .consumers
                    .groups
                    .get_mut(group)
                    .and_then(|c| c.shutdown.as_mut())
                {
                    s.finishing = Some(out);
                }
                if out == 0 {
                    self.unregister_consumer(now, group);
                }
            }
            Some(_) if !s.unregistering => {
                warn!(%group, "final offset writes or lock answers missing at the deadline");
                s.unregister_deferred = false;
                c.locking.clear();
                self.unregister_consumer(now, group);
            }
            Some(_) => {
                warn!(%group, "unregisters unanswered at the deadline");
                self.remove_consumer(group);
            }
        }
    }

    fn finishing_answered(&mut self, group: &str) {
        let Some(s) = self
            .consumers
            .groups
            .get_mut(group)
            .and_then(|c| c.shutdown.as_mut())
        else {
            return;
        };
        if let Some(n) = &mut s.finishing {
            *n = n.saturating_sub(1);
            if *n == 0 {
                if s.unregistering {
                    self.remove_consumer(group);
                } else {
                    self.unregister_consumer(self.last_now, group);
                }
            }
        }
    }

    /// The last step of a shutdown: every broker forgets the group's member.
    /// Tells every broker heartbeated that the group left this client; how
    /// many were told.
    fn send_unregisters(&mut self, now: Instant, group: &str) -> usize {
        let header = UnregisterClientRequestHeader {
            client_id: self.client_id.clone(),
            producer_group: None,
            consumer_group: Some(group.to_owned()),
        };
        let brokers = self.heartbeated.clone();
        for addr in &brokers {
            let request =
                RemotingCommand::request(RequestCode::UNREGISTER_CLIENT, 0).with_header(&header);
            let timeout = self.config.request_timeout;
            self.consumer_request(now, group, addr, request, ConsumerOp::Unregister, timeout);
        }
        brokers.len()
    }

    fn unregister_consumer(&mut self, now: Instant, group: &str) {
        // Orderly: the offsets are written; the locks go with the member, once
        // no lock request is out.
        if self.defer_unregister(group) {
            return;
        }
        let unlocks = self.unlock_all(now, group);
        let out = unlocks + self.send_unregisters(now, group);
        if let Some(s) = self
            .consumers
            .groups
            .get_mut(group)
            .and_then(|c| c.shutdown.as_mut())
        {
            s.unregistering = true;
            s.finishing = Some(out);
            s.deadline = now + self.config.request_timeout;
        }
        if out == 0 {
            self.remove_consumer(group);
        }
    }

    fn remove_consumer(&mut self, group: &str) {
        let Some(c) = self.consumers.groups.remove(group) else {
            return;
        };
        self.consumers.tickets.retain(|_, (g, _)| &**g != group);
        info!(%group, "consumer stopped");
        if let Some(s) = c.shutdown {
            self.reply(s.call, Ok(Reply::Done));
        }
        if self.producers.is_empty() && self.consumers.groups.is_empty() {
            self.heartbeat_at = None;
        }
    }

    /// The answer (or failure) of a consumer's request.
    pub(super) fn on_consumer_answer(
        &mut self,
        now: Instant,
        group: String,
        op: ConsumerOp,
        answer: Result<RemotingCommand, ClientError>,
    ) {
        match op {
            ConsumerOp::ConsumerList { topic } => {
                self.on_consumer_list(now, &group, &topic, answer);
            }
            ConsumerOp::QueryOffset { queue, generation } => {
                self.on_query_offset(now, &group, queue, generation, answer);
            }
            ConsumerOp::StartOffset { queue, generation } => {
                self.on_start_offset(now, &group, queue, generation, answer);
            }
            ConsumerOp::Pull { queue, generation } => {
                self.on_pulled(now, &group, queue, generation, answer);
                self.check_drained(now, &group);
            }
            ConsumerOp::SendBack {
                queue,
                generation,
                offset,
            } => self.on_sent_back(now, &group, queue, generation, offset, answer),
            ConsumerOp::OffsetUpdate {
                queue,
                offset,
                last,
            } => {
                let ok = matches!(&answer, Ok(cmd) if cmd.response_code() == ResponseCode::SUCCESS);
                if ok {
                    if let Some(o) = self
                        .consumers
                        .groups
                        .get_mut(&group)
                        .and_then(|c| c.offsets.get_mut(&queue))
                    {
                        o.persisted = offset;
                    }
                } else {
                    let error = match answer {
                        Ok(cmd) => remote(cmd.response_code(), &cmd),
                        Err(e) => e,
                    };
                    self.offset_failed(&group, &queue, error);
                }
                if last {
                    self.finishing_answered(&group);
                }
            }
            ConsumerOp::CheckClient { topic } => {
                let refused = match answer {
                    Ok(cmd) if cmd.response_code() == ResponseCode::SUCCESS => None,
                    Ok(cmd) => Some(ClientError::Subscribe(SubscribeError::Refused {
                        topic,
                        reason: cmd
                            .remark
                            .clone()
                            .unwrap_or_else(|| format!("{:?}", cmd.response_code())),
                    })),
                    Err(e) => Some(e),
                };
                if let Some(check) = self
                    .consumers
                    .groups
                    .get_mut(&group)
                    .and_then(|c| c.check.as_mut())
                {
                    check.out = check.out.saturating_sub(1);
                }
                self.finish_check(now, &group, refused);
            }
            ConsumerOp::Unregister => {
                if let Err(e) = &answer {
                    debug!(%group, error = %e, "unregister failed");
                }
                self.finishing_answered(&group);
            }
            ConsumerOp::Lock {
                broker,
                queues,
                sent,
            } => self.on_locked(now, &group, broker, queues, sent, answer),
            ConsumerOp::Release { queue } => self.on_released(now, &group, queue, answer),
            ConsumerOp::Unlock { last } => {
                if let Err(e) = &answer {
                    debug!(%group, error = %e, "unlock failed");
                }
                if last {
                    self.finishing_answered(&group);
                }
            }
        }
    }

    /// NOTIFY_CONSUMER_IDS_CHANGED: the group's members changed; rebalance now.
    pub(super) fn on_ids_changed(&mut self, now: Instant, cmd: &RemotingCommand) {
        let Ok(h) = cmd.header::<NotifyConsumerIdsChangedRequestHeader>() else {
            return;
        };
        if let Some(c) = self.consumers.groups.get_mut(&h.consumer_group) {
            if c.shutdown.is_none() {
                debug!(group = %h.consumer_group, "consumer ids changed; rebalancing");
                c.rebalance_at = now;
                // Write offsets at once: a member that just joined looks up the
                // offsets of the queues it takes a round trip or two from now,
                // and finds these rather than ones up to a persist interval old.
                self.persist_offsets(now, &h.consumer_group, false);
            }
        }
    }

    /// RESET_CONSUMER_CLIENT_OFFSET: the broker (one that leaves resets to its
    /// clients; a 5.x broker resets on its side and answers the next pull
    /// OFFSET_MOVED instead) tells the group to move the offsets of a topic's
    /// queues, backwards too. Each queue of the table that this consumer owns
    /// starts over there: its cache is dropped, calls running on it no longer
    /// count, and the new offset is written at once.
    pub(super) fn on_reset_offset(&mut self, now: Instant, cmd: &RemotingCommand) {
        let header = match cmd.header::<ResetOffsetRequestHeader>() {
            Ok(h) => h,
            Err(e) => return warn!(error = %e, "bad offset reset request"),
        };
        let body = match ResetOffsetBody::decode(&cmd.body) {
            Ok(b) => b,
            Err(e) => return warn!(group = %header.group, error = %e, "bad offset reset body"),
        };
        for (queue, offset) in body.offset_table {
            if queue.topic == header.topic && offset >= 0 {
                self.reset_queue(now, &header.group, &queue, offset);
            }
        }
        self.room_freed(now, &header.group);
    }

    /// Moves `queue`'s offset to `offset`, as the broker ordered.
    fn reset_queue(&mut self, now: Instant, group: &str, queue: &MessageQueue, offset: i64) {
        self.consumers.next_generation += 1;
        let fresh = self.consumers.next_generation;
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return;
        };
        let Some(slot) = c.queues.get_mut(queue) else {
            return;
        };
        let Some(pq) = &mut slot.pq else {
            return;
        };
        warn!(%group, %queue, from = pq.next_pull_offset(), to = offset, "offset reset by the broker");
        let (count, bytes) = pq.reset(offset);
        slot.generation = fresh;
        // A pull out now answers for the old generation and is ignored.
        slot.pull = PullState::At(now);
        c.release(count, bytes);
        c.offsets.insert(
            queue.clone(),
            Offset {
                committed: offset,
                persisted: -1,
            },
        );
        if c.local.is_some() {
            self.persist_local(group, false);
        } else {
            self.update_offset(now, group, queue, offset, false);
        }
        self.pull_or_wait(now, group, queue);
    }

    /// GET_CONSUMER_RUNNING_INFO: what `mqadmin consumerStatus` and the
    /// dashboard show of a consumer, in Java's shape: its settings and the
    /// `PROP_*` keys, subscriptions, and per queue its cache and offsets.
    pub(super) fn running_info(&self, group: &str) -> Option<ConsumerRunningInfo> {
        let c = self.consumers.groups.get(group)?;
        let cfg = &c.config;
        let wall = |t: Option<Instant>| t.map_or(0, |t| self.wall_ms(t));
        let mut properties: BTreeMap<String, String> = [
            (PROP_CONSUME_TYPE, "CONSUME_PASSIVELY".to_owned()),
            (PROP_CONSUME_ORDERLY, cfg.orderly.to_string()),
            (PROP_CONSUMER_START_TIMESTAMP, c.started_ms.to_string()),
            (
                PROP_NAMESERVER_ADDR,
                self.config
                    .name_servers
                    .iter()
                    .map(|a| format!("{a};"))
                    .collect(),
            ),
            (
                PROP_THREADPOOL_CORE_SIZE,
                cfg.consume_concurrency.to_string(),
            ),
            (PROP_CLIENT_VERSION, "V5_3_3".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in [
            ("consumerGroup", cfg.group.clone()),
            (
                "messageModel",
                format!("{:?}", cfg.message_model).to_uppercase(),
            ),
            (
                "allocateMessageQueueStrategy",
                cfg.allocate.name().to_owned(),
            ),
            ("maxReconsumeTimes", cfg.max_reconsume_times.to_string()),
            ("consumeThreadMin", cfg.consume_concurrency.to_string()),
            ("consumeThreadMax", cfg.consume_concurrency.to_string()),
            (
                "consumeTimeout",
                (cfg.consume_timeout.as_secs() / 60).to_string(),
            ),
            (
                "consumeMessageBatchMaxSize",
                cfg.consume_batch_size.to_string(),
            ),
            ("pullBatchSize", cfg.pull_batch_size.to_string()),
            ("pullInterval", cfg.pull_interval.as_millis().to_string()),
            ("pullThresholdForQueue", cfg.queue_cache_count.to_string()),
            (
                "pullThresholdSizeForQueue",
                (cfg.queue_cache_bytes >> 20).to_string(),
            ),
            ("consumeConcurrentlyMaxSpan", cfg.max_span.to_string()),
            (
                "persistConsumerOffsetInterval",
                cfg.persist_interval.as_millis().to_string(),
            ),
            ("clientIP", self.config.client_ip.to_string()),
            ("instanceName", self.config.instance_name.clone()),
        ] {
            properties.insert(k.to_owned(), v);
        }
        let mq_table = c
            .queues
            .iter()
            .filter_map(|(q, slot)| {
                let pq = slot.pq.as_ref()?;
                let stats = pq.stats();
                let (min, max) = pq.cached_range().unwrap_or((0, 0));
                let info = ProcessQueueInfo {
                    commit_offset: c.offsets.get(q).map_or(-1, |o| o.committed),
                    cached_msg_min_offset: min,
                    cached_msg_max_offset: max,
                    cached_msg_count: i32::try_from(stats.cached_count).unwrap_or(i32::MAX),
                    cached_msg_size_in_mib: i32::try_from(stats.cached_bytes >> 20)
                        .unwrap_or(i32::MAX),
                    last_pull_timestamp: wall(stats.last_pull),
                    last_consume_timestamp: wall(stats.last_consume),
                    locked: slot.lock_live(self.last_now),
                    last_lock_timestamp: wall(slot.lock),
                    ..ProcessQueueInfo::default()
                };
                Some((q.clone(), info))
            })
            .collect();
        let status_table = c
            .topics()
            .into_iter()
            .map(|t| (t, ConsumeStatus::default()))
            .collect();
        Some(ConsumerRunningInfo {
            properties,
            subscription_set: c.heartbeat_data().subscription_data_set,
            mq_table,
            status_table,
            ..ConsumerRunningInfo::default()
        })
    }

    /// Whether a group's consumer exists (for tests and adapters).
    pub fn has_consumer(&self, group: &str) -> bool {
        self.consumers.groups.contains_key(group)
    }

    /// The allocation strategy's name of a group (for tests).
    pub fn consumer_strategy(&self, group: &str) -> Option<String> {
        self.consumers
            .groups
            .get(group)
            .map(|c| AllocateStrategy::name(&c.config.allocate))
    }

    /// Broadcasting: asks for the offset file to be written with the committed
    /// offsets, unless a write is out (then again once it is done). `last` makes
    /// shutdown wait for it. Whether the shutdown has a write to wait for.
    fn persist_local(&mut self, group: &str, last: bool) -> bool {
        let Some(c) = self.consumers.groups.get_mut(group) else {
            return false;
        };
        let snapshot: Vec<(MessageQueue, i64)> = c
            .offsets
            .iter()
            .filter(|(_, o)| o.committed >= 0)
            .map(|(q, o)| (q.clone(), o.committed))
            .collect();
        let Some(local) = &mut c.local else {
            return false;
        };
        if !local.loaded {
            // Never write over a file not yet read.
            return false;
        }
        local.final_write |= last;
        if local.writing.is_some() {
            local.again = true;
            return true;
        }
        let data = Bytes::from(local_store::encode(snapshot.iter().map(|(q, o)| (q, *o))));
        local.writing = Some(snapshot);
        let path = local.path.clone();
        self.outputs.push_back(Output::Persist { path, data });
        true
    }

    /// The offset file was read: its offsets are the group's, and queues are
    /// assigned.
    pub(super) fn on_loaded(
        &mut self,
        now: Instant,
        path: &str,
        result: Result<Option<Bytes>, String>,
    ) {
        let Some((group, c)) = self
            .consumers
            .groups
            .iter_mut()
            .find(|(_, c)| c.local.as_ref().is_some_and(|l| l.path == path))
        else {
            return;
        };
        let offsets = match result
            .and_then(|d| d.map_or(Ok(Vec::new()), |d| local_store::decode(&d)))
        {
            Ok(offsets) => offsets,
            Err(e) => {
                warn!(%group, %path, error = %e, "offset file unreadable; queues start by the consume-from rule");
                Vec::new()
            }
        };
        for (q, offset) in offsets {
            c.offsets.insert(
                q,
                Offset {
                    committed: offset,
                    persisted: offset,
                },
            );
        }
        if let Some(l) = &mut c.local {
            l.loaded = true;
        }
        c.rebalance_at = now;
    }

    /// A write of the offset file is done.
    pub(super) fn on_persisted(&mut self, path: &str, result: Result<(), String>) {
        let Some((group, c)) = self
            .consumers
            .groups
            .iter_mut()
            .find(|(_, c)| c.local.as_ref().is_some_and(|l| l.path == path))
        else {
            return;
        };
        let group = group.clone();
        let Some(local) = &mut c.local else {
            return;
        };
        let written = local.writing.take().unwrap_or_default();
        match result {
            Ok(()) => {
                for (q, offset) in written {
                    if let Some(o) = c.offsets.get_mut(&q) {
                        o.persisted = offset;
                    }
                }
            }
            Err(e) => {
                warn!(%group, %path, error = %e, "offset file not written; written again later")
            }
        }
        let (again, last) = (local.again, local.final_write);
        local.again = false;
        if again {
            self.persist_local(&group, last);
        } else if last {
            self.finishing_answered(&group);
        }
    }
}

/// A message pulled from the retry topic is shown to the listener under its
/// original topic (Java's `resetRetryAndNamespace`).
fn restore_retry_topic(m: &mut MessageExt) {
    if let Some(origin) = m.property(property::RETRY_TOPIC).map(str::to_owned) {
        m.topic = origin.into();
    }
}

fn no_consumer(group: &str) -> ClientError {
    ClientError::ConsumerState(format!("no consumer of group {group} in this client"))
}
