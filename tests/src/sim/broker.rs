//! A simulated broker: a Java 5.3 broker's answers to what the core client
//! sends, as plain data and logic.
//!
//! No IO, no threads, no clock, no randomness: [`SimBroker::handle`] takes a
//! decoded [`RemotingCommand`] that arrived on a [`LinkId`] at a virtual
//! instant and pushes the commands to send back, each with its link; the world
//! frames them with the core's codecs. [`SimBroker::tick`] does what time
//! brings (long polls expiring, delayed retries becoming visible, silent
//! channels expiring) and [`SimBroker::next_deadline`] says when it is next
//! needed.
//!
//! What it models (`docs/simulation.md`, "Broker model"; `protocol.md`):
//!
//! * per-queue logs with queue and commit-log offsets, store timestamps (wall
//!   time: [`BrokerConfig::wall_epoch_ms`] plus virtual time), offset message
//!   ids from the store host and commit-log offset, the producer's `UNIQ_KEY`
//!   kept; optional truncation of a queue's head;
//! * sends (10, 310, 320), auto-creating unknown topics from `TBW102` as a
//!   broker with `autoCreateTopicEnable` does, `DELAY` levels, `%RETRY%` sends
//!   past their `maxReconsumeTimes` to the DLQ; transactional half messages
//!   are refused (`NO_PERMISSION`, as with `rejectTransactionMessage`);
//! * pulls (11, 361) with the store's statuses and their §5.3 codes, tag-hash
//!   filtering as the consume queue does (SQL92 is accepted and not
//!   evaluated), the piggy-backed commit, long polling;
//! * offsets (14, 15, 29, 30, 31, 32), overwritten with no monotonic guard,
//!   every write kept for the checker ([`SimBroker::offset_writes`]);
//! * heartbeats and consumer registrations per channel (link), with
//!   NOTIFY_CONSUMER_IDS_CHANGED to every channel of the group (the new one's
//!   included, as Java's broker) when its channels or subscribed topics
//!   change, unregistration, 120 s channel expiry;
//! * CONSUMER_SEND_MSG_BACK into `%RETRY%<group>` after the delay level, or
//!   `%DLQ%<group>`;
//! * batch queue locks with 60 s expiry;
//! * crashes (registrations, parked pulls and locks lost; logs, offsets and
//!   scheduled retries kept; optionally offsets rolled back to the last 5 s
//!   flush) and an admin offset reset.
//!
//! Delay levels are scaled: level `n` waits `n` × [`BrokerConfig::delay_unit_ms`]
//! (1 s by default) instead of Java's `1s 5s 10s 30s 1m … 2h`, so retries come
//! back within a simulated run. Anything else is answered
//! REQUEST_CODE_NOT_SUPPORTED; a malformed header or body SYSTEM_ERROR.
//! Nothing derived from a request can make it panic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use rocketmq_core::protocol::body::{
    java_string_hash, CheckClientRequestBody, ConsumerIdList, ExpressionType, HeartbeatData,
    LockBatchRequestBody, LockBatchResponseBody, MessageModel, ResetOffsetBody, SubscriptionData,
};
use rocketmq_core::protocol::code::{LanguageCode, RequestCode, ResponseCode};
use rocketmq_core::protocol::command::{RemotingCommand, FLAG_RESPONSE};
use rocketmq_core::protocol::header::{
    pull_flag, ConsumerSendMsgBackRequestHeader, CreateTopicRequestHeader,
    GetConsumerListByGroupRequestHeader, GetEarliestMsgStoretimeRequestHeader,
    GetEarliestMsgStoretimeResponseHeader, GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader,
    NotifyConsumerIdsChangedRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    ResetOffsetRequestHeader, SearchOffsetRequestHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader, ViewMessageRequestHeader,
};
use rocketmq_core::protocol::message::{
    body_crc, decode_batch, encode_properties, encode_stored, offset_msg_id, property, sys_flag,
    MessageExt, MessageVersion, Properties,
};
use rocketmq_core::protocol::{ByteString, MessageQueue};

use crate::sim::{LinkId, Millis};

/// The auto-create template topic (Java's `TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Prefix of a group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// The default wall time of virtual instant 0, ms since the Unix epoch (the
/// world's epoch; see [`BrokerConfig::wall_epoch_ms`]).
pub const DEFAULT_WALL_EPOCH_MS: i64 = 1_750_000_000_000;
/// A channel with no heartbeat for this long is closed and its client
/// unregistered (Java's `channelExpiredTimeout`).
pub const CHANNEL_EXPIRY_MS: Millis = 120_000;
/// A queue lock not renewed for this long may be taken by another client
/// (Java's `rocketmq.broker.rebalance.lockMaxLiveTime`).
pub const LOCK_EXPIRY_MS: Millis = 60_000;
/// Consumer offsets are flushed to disk this often (Java's
/// `flushConsumerOffsetInterval`); a crash with rollback loses later writes.
pub const OFFSET_FLUSH_MS: Millis = 5_000;
/// The highest delay level (Java's 18 levels, `1s` to `2h`).
pub const MAX_DELAY_LEVEL: i32 = 18;
/// Retries before the DLQ when the client sends none (Java's `retryMaxTimes`).
pub const DEFAULT_MAX_RECONSUME_TIMES: i32 = 16;
/// Client version from which the broker honours the send-back header's
/// `maxReconsumeTimes` (Java's `V3_4_9` ordinal).
const VERSION_V3_4_9: i32 = 121;
/// Consume-queue entries a pull scans at least (Java's `maxFilterMessageSize`
/// 16000 bytes of 20-byte entries).
const PULL_SCAN_ENTRIES: i64 = 800;
/// Queue lengths and offsets are `i64` on the wire; a request may carry any.
const BUSY_REMARK: &str = "[REJECTREQUEST]system busy, start flow control for a while";

/// Knobs of a simulated broker, with a Java broker's defaults unless noted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Create unknown topics on send (Java's `autoCreateTopicEnable`; default
    /// true): the broker then also serves `TBW102`.
    pub auto_create_topic: bool,
    /// Queues of `TBW102`, the most an auto-created topic gets (Java's broker
    /// `defaultTopicQueueNums`, 8).
    pub auto_create_queues: u32,
    /// Accept SQL92 subscriptions (Java's `enablePropertyFilter`, false there;
    /// true here). Expressions are not evaluated: every message matches.
    pub enable_property_filter: bool,
    /// What one delay level is worth: level `n` waits `n` times this (1000 ms
    /// by default; Java's table is `1s 5s 10s 30s 1m … 2h`).
    pub delay_unit_ms: Millis,
    /// Hold pulls up to their `suspendTimeoutMillis` (Java's
    /// `longPollingEnable`); when off, 1000 ms (`shortPollingTimeMills`).
    pub long_polling: bool,
    /// Answer every send with SYSTEM_BUSY (`[REJECTREQUEST]`), storing nothing.
    pub busy_sends: bool,
    /// Most messages one pull returns (Java's `maxTransferCountOnMessageInMemory`).
    pub max_transfer_count: u32,
    /// Most bytes one pull returns, the first message excepted (Java's
    /// `maxTransferBytesOnMessageInMemory`).
    pub max_transfer_bytes: u64,
    /// Wall time of virtual instant 0, ms since the epoch: store timestamps are
    /// this plus the virtual time.
    pub wall_epoch_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            auto_create_topic: true,
            auto_create_queues: 8,
            enable_property_filter: true,
            delay_unit_ms: 1_000,
            long_polling: true,
            busy_sends: false,
            max_transfer_count: 32,
            max_transfer_bytes: 256 * 1024,
            wall_epoch_ms: DEFAULT_WALL_EPOCH_MS,
        }
    }
}

/// Where a commit-offset write came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OffsetSource {
    /// UPDATE_CONSUMER_OFFSET.
    Update,
    /// The `commitOffset` a pull carried with the commit flag.
    Pull,
    /// A crash rolled the offset back to the last flush.
    Rollback,
}

/// One commit-offset write, as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetWrite {
    /// When it arrived.
    pub at: Millis,
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// The offset written.
    pub offset: i64,
    /// What wrote it.
    pub source: OffsetSource,
}

/// One queue's log: messages at consecutive offsets from `min_offset`.
#[derive(Clone, Debug, Default)]
struct QueueLog {
    min_offset: i64,
    messages: Vec<MessageExt>,
}

impl QueueLog {
    fn max_offset(&self) -> i64 {
        self.min_offset + self.messages.len() as i64
    }

    fn get(&self, offset: i64) -> Option<&MessageExt> {
        let i = offset.checked_sub(self.min_offset)?;
        self.messages.get(usize::try_from(i).ok()?)
    }
}

/// A topic: its queue count (read = write) and logs (possibly more logs than
/// queues after a shrink).
#[derive(Clone, Debug, Default)]
struct Topic {
    queue_nums: u32,
    logs: Vec<QueueLog>,
}

impl Topic {
    fn log(&self, queue_id: i32) -> Option<&QueueLog> {
        self.logs.get(usize::try_from(queue_id).ok()?)
    }

    fn log_mut(&mut self, queue_id: i32) -> Option<&mut QueueLog> {
        let i = usize::try_from(queue_id).ok()?;
        if self.logs.len() <= i {
            self.logs.resize_with(i + 1, QueueLog::default);
        }
        self.logs.get_mut(i)
    }
}

/// A client on one channel.
#[derive(Clone, Debug)]
struct Channel {
    client_id: String,
    last_update: Millis,
}

/// A consumer group's registrations.
#[derive(Clone, Debug, Default)]
struct Group {
    channels: BTreeMap<LinkId, Channel>,
    subscriptions: BTreeMap<String, SubscriptionData>,
    message_model: MessageModel,
}

impl Group {
    fn client_ids(&self) -> BTreeSet<String> {
        self.channels
            .values()
            .map(|c| c.client_id.clone())
            .collect()
    }
}

/// What a pull may return: everything, or messages whose tag hash is in a set.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Filter {
    all: bool,
    codes: BTreeSet<i32>,
}

impl Filter {
    fn of(sub: &SubscriptionData) -> Self {
        Self {
            all: sub.expression_type != ExpressionType::Tag || sub.is_all(),
            codes: sub.code_set.clone(),
        }
    }

    /// The consume queue's check: the tag's hash (0 without a tag).
    fn matches(&self, msg: &MessageExt) -> bool {
        self.all || self.codes.contains(&tag_code(msg))
    }
}

fn tag_code(msg: &MessageExt) -> i32 {
    msg.tags().map_or(0, java_string_hash)
}

/// A pull held for long polling.
#[derive(Clone, Debug)]
struct Parked {
    link: LinkId,
    opaque: i32,
    header: PullMessageRequestHeader,
    filter: Filter,
    deadline: Millis,
}

/// A message waiting for its delay level before it is stored.
#[derive(Clone, Debug)]
struct Scheduled {
    topic: String,
    queue_id: i32,
    msg: MessageExt,
}

/// A queue lock.
#[derive(Clone, Debug)]
struct Lock {
    client_id: String,
    last_update: Millis,
}

/// The store's verdict on a pull (Java's `GetMessageStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Found,
    NoMatchedMessage,
    NoMessageInQueue,
    OffsetTooSmall,
    OffsetOverflowOne,
    OffsetOverflowBadly,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Found => "FOUND",
            Self::NoMatchedMessage => "NO_MATCHED_MESSAGE",
            Self::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
            Self::OffsetTooSmall => "OFFSET_TOO_SMALL",
            Self::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
            Self::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
        }
    }
}

/// What the store found for a pull.
struct Got {
    status: Status,
    next: i64,
    min: i64,
    max: i64,
    body: BytesMut,
}

/// What a request handler decided: an answer, or nothing (a parked pull).
type Handled = Result<Option<RemotingCommand>, String>;

/// A simulated broker (a master, broker id 0). See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SimBroker {
    name: String,
    addr: String,
    cluster: String,
    store_host: SocketAddr,
    config: BrokerConfig,
    topics: BTreeMap<String, Topic>,
    /// Next commit-log offset.
    commit_log: i64,
    /// Commit-log offset to (topic, queue id, queue offset).
    by_commit_offset: BTreeMap<i64, (String, i32, i64)>,
    offsets: BTreeMap<(String, String, i32), i64>,
    flushed: BTreeMap<(String, String, i32), i64>,
    flushed_at: Millis,
    offset_writes: Vec<OffsetWrite>,
    groups: BTreeMap<String, Group>,
    producers: BTreeMap<String, BTreeMap<LinkId, Channel>>,
    peers: BTreeMap<LinkId, SocketAddr>,
    parked: BTreeMap<u64, Parked>,
    scheduled: BTreeMap<(Millis, u64), Scheduled>,
    locks: BTreeMap<(String, MessageQueue), Lock>,
    closes: Vec<LinkId>,
    seq: u64,
    next_opaque: i32,
}

impl SimBroker {
    /// A broker named `name` (broker name, e.g. "broker-a") at `addr`
    /// ("10.0.0.1:10911"), cluster `cluster`, with [`BrokerConfig::default`].
    /// An `addr` that is not `ip:port` stores messages as from 127.0.0.1:10911.
    pub fn new(name: &str, addr: &str, cluster: &str) -> Self {
        let store_host = addr
            .parse()
            .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 10911)));
        let mut broker = Self {
            name: name.to_owned(),
            addr: addr.to_owned(),
            cluster: cluster.to_owned(),
            store_host,
            config: BrokerConfig::default(),
            topics: BTreeMap::new(),
            commit_log: 0,
            by_commit_offset: BTreeMap::new(),
            offsets: BTreeMap::new(),
            flushed: BTreeMap::new(),
            flushed_at: 0,
            offset_writes: Vec::new(),
            groups: BTreeMap::new(),
            producers: BTreeMap::new(),
            peers: BTreeMap::new(),
            parked: BTreeMap::new(),
            scheduled: BTreeMap::new(),
            locks: BTreeMap::new(),
            closes: Vec::new(),
            seq: 0,
            next_opaque: 0,
        };
        broker.sync_auto_create_topic();
        broker
    }

    /// The broker name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The broker's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The knobs.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Changes the knobs (turning auto-creation on or off adds or removes
    /// `TBW102`).
    pub fn set_config(&mut self, config: BrokerConfig) {
        self.config = config;
        self.sync_auto_create_topic();
    }

    fn sync_auto_create_topic(&mut self) {
        if self.config.auto_create_topic {
            let queues = self.config.auto_create_queues.max(1);
            self.topics
                .entry(AUTO_CREATE_TOPIC.to_owned())
                .or_default()
                .queue_nums = queues;
        } else {
            self.topics.remove(AUTO_CREATE_TOPIC);
        }
    }

    /// Creates `topic` with `queues` read/write queues (idempotent: an existing
    /// topic keeps its queues).
    pub fn create_topic(&mut self, topic: &str, queues: u32) {
        self.topics
            .entry(topic.to_owned())
            .or_insert_with(|| Topic {
                queue_nums: queues,
                logs: Vec::new(),
            });
    }

    /// Sets the queue count of `topic` (creating it), as an operator's topic
    /// update does: a shrink hides queues from routes and pulls but keeps
    /// their logs; a grow adds empty queues or shows hidden ones again.
    pub fn set_queue_count(&mut self, topic: &str, queues: u32) {
        self.topics.entry(topic.to_owned()).or_default().queue_nums = queues;
    }

    /// Topics and their queue counts (including `TBW102` when auto-creation is
    /// on, and the `%RETRY%`/`%DLQ%` topics the broker created itself), in
    /// name order, for the name server's routes.
    pub fn topics(&self) -> Vec<(String, u32)> {
        self.topics
            .iter()
            .map(|(t, s)| (t.clone(), s.queue_nums))
            .collect()
    }

    /// Records the client address of `link`, used as the born host of what it
    /// sends (otherwise an address made from the link id).
    pub fn set_peer_addr(&mut self, link: LinkId, addr: SocketAddr) {
        self.peers.insert(link, addr);
    }

    fn peer(&self, link: LinkId) -> SocketAddr {
        self.peers.get(&link).copied().unwrap_or_else(|| {
            let id = link.0;
            SocketAddr::from((
                Ipv4Addr::new(10, 200, (id >> 8) as u8, id as u8),
                40_000 + (id >> 16) as u16 % 20_000,
            ))
        })
    }

    fn wall(&self, now: Millis) -> i64 {
        self.config
            .wall_epoch_ms
            .saturating_add(i64::try_from(now).unwrap_or(i64::MAX))
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // ----- inspection -----

    /// Every message stored in `topic`'s queue `queue_id`, in offset order
    /// (from the queue's min offset; empty for an unknown queue).
    pub fn log(&self, topic: &str, queue_id: i32) -> &[MessageExt] {
        self.topics
            .get(topic)
            .and_then(|t| t.log(queue_id))
            .map_or(&[], |l| &l.messages[..])
    }

    /// The min and max (one past the last) offsets of a queue; (0, 0) when unknown.
    pub fn queue_range(&self, topic: &str, queue_id: i32) -> (i64, i64) {
        self.topics
            .get(topic)
            .and_then(|t| t.log(queue_id))
            .map_or((0, 0), |l| (l.min_offset, l.max_offset()))
    }

    /// The group's committed offset of a queue (None when the broker has none).
    pub fn committed(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.offsets
            .get(&(group.to_owned(), topic.to_owned(), queue_id))
            .copied()
    }

    /// Commit-offset writes (UPDATE_CONSUMER_OFFSET and pull piggybacks, and
    /// crash rollbacks) in the order they happened.
    pub fn offset_writes(&self) -> &[OffsetWrite] {
        &self.offset_writes
    }

    /// Client ids registered in a consumer group, sorted.
    pub fn consumers(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|g| g.client_ids().into_iter().collect())
            .unwrap_or_default()
    }

    /// The client holding the lock of `queue` for `group` at `now`, if it is
    /// held and not expired.
    pub fn lock_owner(&self, now: Millis, group: &str, queue: &MessageQueue) -> Option<&str> {
        self.locks
            .get(&(group.to_owned(), queue.clone()))
            .filter(|l| now.saturating_sub(l.last_update) <= LOCK_EXPIRY_MS)
            .map(|l| l.client_id.as_str())
    }

    /// The live (not expired) queue locks of `group` at `now`: each queue,
    /// its holder's client id, and when the holder last locked or renewed it.
    pub fn locks(&self, now: Millis, group: &str) -> Vec<(MessageQueue, &str, Millis)> {
        self.locks
            .iter()
            .filter(|((g, _), l)| g == group && now.saturating_sub(l.last_update) <= LOCK_EXPIRY_MS)
            .map(|((_, q), l)| (q.clone(), l.client_id.as_str(), l.last_update))
            .collect()
    }

    /// Pulls held for long polling.
    pub fn parked_pulls(&self) -> usize {
        self.parked.len()
    }

    /// Messages waiting for their delay level.
    pub fn scheduled(&self) -> usize {
        self.scheduled.len()
    }

    /// Links the broker closed since the last call (channels expired after
    /// [`CHANNEL_EXPIRY_MS`] of silence): the world should cut them.
    pub fn take_closed_links(&mut self) -> Vec<LinkId> {
        std::mem::take(&mut self.closes)
    }

    // ----- faults and admin -----

    /// A crash: every link's state, parked pull, registration and lock is lost;
    /// logs, consumer offsets and scheduled retries are kept. The world cuts
    /// the links itself.
    pub fn crash(&mut self) {
        self.groups.clear();
        self.producers.clear();
        self.peers.clear();
        self.parked.clear();
        self.locks.clear();
        self.closes.clear();
    }

    /// A crash that also loses the offset writes since the last flush (every
    /// [`OFFSET_FLUSH_MS`]): offsets go back to their flushed values, each
    /// change recorded as an [`OffsetSource::Rollback`] write.
    pub fn crash_rolling_back_offsets(&mut self, now: Millis) {
        self.flush_offsets(now);
        let flushed = self.flushed.clone();
        let keys: BTreeSet<_> = self.offsets.keys().chain(flushed.keys()).cloned().collect();
        for key in keys {
            let before = self.offsets.get(&key).copied();
            let after = flushed.get(&key).copied();
            if before != after {
                match after {
                    Some(offset) => {
                        self.offsets.insert(key.clone(), offset);
                    }
                    None => {
                        self.offsets.remove(&key);
                    }
                }
                let (group, topic, queue_id) = key;
                self.offset_writes.push(OffsetWrite {
                    at: now,
                    group,
                    topic,
                    queue_id,
                    offset: after.unwrap_or(-1),
                    source: OffsetSource::Rollback,
                });
            }
        }
        self.crash();
    }

    /// Deletes the messages of a queue below `offset` (as expired commit-log
    /// files do): the queue's min offset moves up to at most its max offset.
    pub fn truncate(&mut self, topic: &str, queue_id: i32, offset: i64) {
        let Some(log) = self.topics.get_mut(topic).and_then(|t| t.log_mut(queue_id)) else {
            return;
        };
        let to = offset.clamp(log.min_offset, log.max_offset());
        let n = usize::try_from(to - log.min_offset).unwrap_or(0);
        for m in log.messages.drain(..n) {
            self.by_commit_offset.remove(&m.commit_log_offset);
        }
        log.min_offset = to;
    }

    /// An operator's offset reset of `group` on `topic` (Java's
    /// `Broker2Client.resetOffset`): for each queue, the offset of the first
    /// message stored at or after `timestamp_ms` (wall time; -1: the max
    /// offset), kept only if `force` or below the committed offset, is sent to
    /// every member in a oneway RESET_CONSUMER_CLIENT_OFFSET. As in Java the
    /// broker's own offsets are not changed; the clients write them.
    pub fn reset_offsets(
        &mut self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
        force: bool,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) -> Result<BTreeMap<MessageQueue, i64>, String> {
        let queues = self
            .topics
            .get(topic)
            .map(|t| t.queue_nums)
            .ok_or_else(|| format!("topic {topic} does not exist"))?;
        let mut table = BTreeMap::new();
        for q in 0..i32::try_from(queues).unwrap_or(i32::MAX) {
            let Some(committed) = self.committed(group, topic, q) else {
                return Err(format!("THe consumer group <{group}> not exist"));
            };
            let target = if timestamp_ms == -1 {
                self.queue_range(topic, q).1
            } else {
                self.search_offset(topic, q, timestamp_ms, false)
            }
            .max(0);
            let offset = if force || target < committed {
                target
            } else {
                committed
            };
            table.insert(MessageQueue::new(topic, &*self.name, q), offset);
        }
        let links: Vec<LinkId> = self
            .groups
            .get(group)
            .map(|g| g.channels.keys().copied().collect())
            .unwrap_or_default();
        if links.is_empty() {
            return Err("Consumer not online".into());
        }
        let body = ResetOffsetBody {
            offset_table: table.clone(),
        }
        .encode();
        for link in links {
            let opaque = self.opaque();
            let header = ResetOffsetRequestHeader {
                group: group.to_owned(),
                topic: topic.to_owned(),
                queue_id: Some(-1),
                offset: None,
                timestamp: timestamp_ms,
                is_force: force,
            };
            let request = java(RemotingCommand::request(
                RequestCode::RESET_CONSUMER_CLIENT_OFFSET,
                opaque,
            ))
            .with_header(&header)
            .with_body(body.clone())
            .with_oneway();
            out.push((link, request));
        }
        Ok(table)
    }

    fn opaque(&mut self) -> i32 {
        let o = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        o
    }

    // ----- time -----

    /// Time passed: delayed retries made visible (then parked pulls on them
    /// answered), expired long polls answered, silent channels expired.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<(LinkId, RemotingCommand)>) {
        self.flush_offsets(now);
        while let Some(entry) = self.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let s = entry.remove();
            let mut msg = s.msg;
            msg.properties = without_property(&msg.properties, property::DELAY_TIME_LEVEL);
            self.store(now, &s.topic, s.queue_id, msg, out);
        }
        let due: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(p) = self.parked.remove(&key) {
                self.rerun_pull(p, out);
            }
        }
        self.expire_channels(now, out);
    }

    /// The earliest instant [`tick`](Self::tick) has something to do, if any.
    pub fn next_deadline(&self) -> Option<Millis> {
        let scheduled = self.scheduled.keys().next().map(|(t, _)| *t);
        let parked = self.parked.values().map(|p| p.deadline).min();
        let channels = self
            .groups
            .values()
            .flat_map(|g| g.channels.values())
            .chain(self.producers.values().flat_map(|m| m.values()))
            .map(|c| c.last_update.saturating_add(CHANNEL_EXPIRY_MS))
            .min();
        [scheduled, parked, channels].into_iter().flatten().min()
    }

    /// Channels silent for [`CHANNEL_EXPIRY_MS`] are closed, as Java's
    /// `ClientHousekeepingService` closes them: everything on their links goes
    /// (as [`link_closed`](Self::link_closed)), and the links are listed for
    /// [`take_closed_links`](Self::take_closed_links).
    fn expire_channels(&mut self, now: Millis, out: &mut Vec<(LinkId, RemotingCommand)>) {
        let expired = |c: &Channel| now >= c.last_update.saturating_add(CHANNEL_EXPIRY_MS);
        let closed: BTreeSet<LinkId> = self
            .groups
            .values()
            .flat_map(|g| g.channels.iter())
            .chain(self.producers.values().flat_map(|m| m.iter()))
            .filter(|(_, c)| expired(c))
            .map(|(l, _)| *l)
            .collect();
        for link in closed {
            self.link_closed(now, link, out);
            if !self.closes.contains(&link) {
                self.closes.push(link);
            }
        }
    }

    /// Snapshots the offsets at each flush boundary passed since the last call
    /// (offsets only change in calls, so the snapshot is exact).
    fn flush_offsets(&mut self, now: Millis) {
        let boundary = now - now % OFFSET_FLUSH_MS;
        if boundary > self.flushed_at {
            self.flushed = self.offsets.clone();
            self.flushed_at = boundary;
        }
    }

    // ----- links -----

    /// `link` closed: its parked pulls are dropped, its client's registrations
    /// removed (the rest of each group notified). Locks stay until they expire.
    pub fn link_closed(
        &mut self,
        now: Millis,
        link: LinkId,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) {
        self.flush_offsets(now);
        self.parked.retain(|_, p| p.link != link);
        self.peers.remove(&link);
        let changed: Vec<String> = self
            .groups
            .iter_mut()
            .filter_map(|(name, g)| g.channels.remove(&link).map(|_| name.clone()))
            .collect();
        for group in changed {
            self.notify_group(&group, None, out);
        }
        self.groups.retain(|_, g| !g.channels.is_empty());
        for channels in self.producers.values_mut() {
            channels.remove(&link);
        }
        self.producers.retain(|_, c| !c.is_empty());
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every channel of `group`
    /// but `except`.
    fn notify_group(
        &mut self,
        group: &str,
        except: Option<LinkId>,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) {
        let links: Vec<LinkId> = self
            .groups
            .get(group)
            .map(|g| g.channels.keys().copied().collect())
            .unwrap_or_default();
        for link in links.into_iter().filter(|l| Some(*l) != except) {
            let opaque = self.opaque();
            let request = java(RemotingCommand::request(
                RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
                opaque,
            ))
            .with_header(&NotifyConsumerIdsChangedRequestHeader {
                consumer_group: group.to_owned(),
            })
            .with_oneway();
            out.push((link, request));
        }
    }

    // ----- requests -----

    /// A command arrived on `link`. Requests are answered on `link` (unless
    /// oneway; an unsupported code is answered even then, as Java does);
    /// anything else the broker sends (NOTIFY_CONSUMER_IDS_CHANGED, answers to
    /// parked pulls a send woke) goes on its own link. Responses are ignored:
    /// this broker asks clients nothing that needs one.
    pub fn handle(
        &mut self,
        now: Millis,
        link: LinkId,
        cmd: RemotingCommand,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) {
        self.flush_offsets(now);
        if cmd.is_response() {
            return;
        }
        let opaque = cmd.opaque;
        let handled = match cmd.request_code() {
            RequestCode::SEND_MESSAGE
            | RequestCode::SEND_MESSAGE_V2
            | RequestCode::SEND_BATCH_MESSAGE => self.on_send(now, link, &cmd, out),
            RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE => {
                self.on_pull(now, link, &cmd)
            }
            RequestCode::QUERY_CONSUMER_OFFSET => self.on_query_offset(&cmd),
            RequestCode::UPDATE_CONSUMER_OFFSET => self.on_update_offset(now, &cmd),
            RequestCode::GET_MAX_OFFSET => self.on_max_offset(&cmd),
            RequestCode::GET_MIN_OFFSET => self.on_min_offset(&cmd),
            RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => self.on_search_offset(&cmd),
            RequestCode::GET_EARLIEST_MSG_STORETIME => self.on_earliest_time(&cmd),
            RequestCode::VIEW_MESSAGE_BY_ID => self.on_view_message(&cmd),
            RequestCode::HEART_BEAT => self.on_heartbeat(now, link, &cmd, out),
            RequestCode::UNREGISTER_CLIENT => self.on_unregister(link, &cmd, out),
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => self.on_consumer_list(&cmd),
            RequestCode::CONSUMER_SEND_MSG_BACK => self.on_send_back(now, &cmd, out),
            RequestCode::CHECK_CLIENT_CONFIG => self.on_check_client(&cmd),
            RequestCode::LOCK_BATCH_MQ => self.on_lock(now, &cmd),
            RequestCode::UNLOCK_BATCH_MQ => self.on_unlock(&cmd),
            RequestCode::UPDATE_AND_CREATE_TOPIC => self.on_create_topic(&cmd),
            _ => Ok(Some(response(
                ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                Some(format!(" request type {} not supported", cmd.code)),
            ))),
        };
        let unsupported = is_unsupported(&handled);
        let answer = match handled {
            Ok(Some(answer)) => answer,
            Ok(None) => return,
            Err(remark) => response(ResponseCode::SYSTEM_ERROR, Some(remark)),
        };
        if cmd.is_oneway() && !unsupported {
            return;
        }
        let mut answer = answer;
        answer.opaque = opaque;
        answer.flag |= FLAG_RESPONSE;
        out.push((link, answer));
    }

    fn on_send(
        &mut self,
        now: Millis,
        link: LinkId,
        cmd: &RemotingCommand,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) -> Handled {
        let code = cmd.request_code();
        let h = if code == RequestCode::SEND_MESSAGE {
            cmd.header::<SendMessageRequestHeader>()
        } else {
            cmd.header::<SendMessageRequestHeaderV2>().map(|h| h.0)
        }
        .map_err(|e| e.to_string())?;
        if self.config.busy_sends {
            return answer(ResponseCode::SYSTEM_BUSY, BUSY_REMARK);
        }
        if !valid_topic_name(&h.topic) {
            return Err(format!(
                "The specified topic[{}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$",
                h.topic
            ));
        }
        if h.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_PREPARED {
            return answer(
                ResponseCode::NO_PERMISSION,
                &format!(
                    "the broker[{}] sending transaction message is forbidden",
                    self.addr
                ),
            );
        }
        // The topic: existing, or auto-created (from TBW102, or a retry topic).
        if !self.topics.contains_key(&h.topic) {
            if h.topic.starts_with(RETRY_PREFIX) {
                self.create_topic(&h.topic, 1);
            } else if self.config.auto_create_topic
                && h.default_topic == AUTO_CREATE_TOPIC
                && self.topics.contains_key(AUTO_CREATE_TOPIC)
            {
                let queues = u32::try_from(h.default_topic_queue_nums)
                    .unwrap_or(0)
                    .clamp(1, self.config.auto_create_queues.max(1));
                self.create_topic(&h.topic, queues);
            } else {
                return answer(
                    ResponseCode::TOPIC_NOT_EXIST,
                    &format!("topic[{}] not exist, apply first please!", h.topic),
                );
            }
        }
        let queue_nums = self.topics.get(&h.topic).map_or(0, |t| t.queue_nums);
        let queue_nums_i32 = i32::try_from(queue_nums).unwrap_or(i32::MAX);
        if h.queue_id >= queue_nums_i32 {
            return Err(format!(
                "request queueId[{}] is illegal, topic: {} writeQueueNums: {queue_nums} readQueueNums: {queue_nums}",
                h.queue_id, h.topic
            ));
        }
        let mut queue_id = h.queue_id;
        if queue_id < 0 {
            // Java picks a random queue; the commit-log position stands in.
            queue_id = (self.commit_log.rem_euclid(i64::from(queue_nums_i32.max(1)))) as i32;
        }
        let born_host = self.peer(link);
        let template = MessageExt {
            flag: h.flag,
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host,
            reconsume_times: h.reconsume_times.unwrap_or(0),
            ..MessageExt::default()
        };
        let props = properties_map(h.properties.as_deref().unwrap_or(""));
        if code == RequestCode::SEND_BATCH_MESSAGE || h.batch == Some(true) {
            return self.store_batch(now, &h, queue_id, template, props, &cmd.body, out);
        }
        let mut props = props;
        props.insert("CLUSTER".to_owned(), self.cluster.clone());
        let uniq = props.get(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX).cloned();
        let mut topic = h.topic.clone();
        // A client's own resend to a retry topic past its maximum goes to the DLQ.
        if let Some(group) = h.topic.strip_prefix(RETRY_PREFIX) {
            let times = h.reconsume_times.unwrap_or(0);
            let max = match h.max_reconsume_times {
                Some(m) if cmd.version >= VERSION_V3_4_9 && m >= 0 => m,
                _ => DEFAULT_MAX_RECONSUME_TIMES,
            };
            if times > max {
                topic = format!("{DLQ_PREFIX}{group}");
                self.create_topic(&topic, 1);
                queue_id = 0;
                props.remove(property::DELAY_TIME_LEVEL);
            }
        }
        let msg = MessageExt {
            topic: ByteString::from(topic.clone()),
            body: cmd.body.clone(),
            properties: properties_of(&props),
            ..template
        };
        let delay = props
            .get(property::DELAY_TIME_LEVEL)
            .and_then(|l| l.parse::<i32>().ok())
            .filter(|l| *l > 0);
        let (queue_offset, commit_offset) = match delay {
            Some(level) => self.schedule(now, &topic, queue_id, msg, level),
            None => self.store(now, &topic, queue_id, msg, out),
        };
        let header = SendMessageResponseHeader {
            msg_id: offset_msg_id(self.store_host, commit_offset),
            queue_id,
            queue_offset,
            transaction_id: uniq,
            batch_uniq_id: None,
            recall_handle: None,
        };
        Ok(Some(send_ok(&header)))
    }

    #[allow(clippy::too_many_arguments)]
    fn store_batch(
        &mut self,
        now: Millis,
        h: &SendMessageRequestHeader,
        queue_id: i32,
        template: MessageExt,
        mut batch_props: BTreeMap<String, String>,
        body: &Bytes,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) -> Handled {
        let entries = decode_batch(body).map_err(|e| e.to_string())?;
        if entries.is_empty() {
            return answer(ResponseCode::MESSAGE_ILLEGAL, "the batch is empty");
        }
        if h.topic.starts_with(RETRY_PREFIX) {
            return answer(
                ResponseCode::MESSAGE_ILLEGAL,
                "batch request does not support retry group",
            );
        }
        batch_props.insert("CLUSTER".to_owned(), self.cluster.clone());
        let batch_uniq = batch_props
            .get(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            .cloned();
        let mut batch_str = String::new();
        encode_properties(
            batch_props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut batch_str,
        );
        let mut ids = Vec::with_capacity(entries.len());
        let mut first = None;
        for e in entries {
            // Java appends the batch's properties to each message's.
            let mut props = e.properties.raw().to_owned();
            if !props.is_empty() && !props.ends_with('\u{2}') && !batch_str.is_empty() {
                props.push('\u{2}');
            }
            props.push_str(&batch_str);
            let msg = MessageExt {
                topic: ByteString::from(h.topic.clone()),
                flag: e.flag,
                body: e.body,
                properties: Properties::parse(ByteString::from(props)),
                ..template.clone()
            };
            let (queue_offset, commit_offset) = self.store(now, &h.topic, queue_id, msg, out);
            first.get_or_insert(queue_offset);
            ids.push(offset_msg_id(self.store_host, commit_offset));
        }
        let header = SendMessageResponseHeader {
            msg_id: ids.join(","),
            queue_id,
            queue_offset: first.unwrap_or(0),
            transaction_id: None,
            batch_uniq_id: batch_uniq,
            recall_handle: None,
        };
        Ok(Some(send_ok(&header)))
    }

    /// Appends `msg` to a queue (creating the topic's queue log as needed),
    /// fills in its store fields and answers parked pulls it satisfies.
    /// Returns its queue and commit-log offsets.
    fn store(
        &mut self,
        now: Millis,
        topic: &str,
        queue_id: i32,
        mut msg: MessageExt,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) -> (i64, i64) {
        let wall = self.wall(now);
        let store_host = self.store_host;
        let commit_offset = self.commit_log;
        let Some(log) = self
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| Topic {
                queue_nums: 1,
                logs: Vec::new(),
            })
            .log_mut(queue_id)
        else {
            return (-1, commit_offset);
        };
        let queue_offset = log.max_offset();
        msg.topic = ByteString::from(topic.to_owned());
        msg.queue_id = queue_id;
        msg.queue_offset = queue_offset;
        msg.commit_log_offset = commit_offset;
        msg.store_timestamp = wall;
        msg.store_host = store_host;
        msg.body_crc = body_crc(&msg.body);
        msg.version = if topic.len() > i8::MAX as usize {
            MessageVersion::V2
        } else {
            MessageVersion::V1
        };
        let mut buf = BytesMut::new();
        let size = match encode_stored(&msg, &mut buf) {
            Ok(()) => buf.len(),
            Err(_) => 0,
        };
        msg.store_size = i32::try_from(size).unwrap_or(i32::MAX);
        log.messages.push(msg);
        let arrived = log.messages.last().cloned();
        self.commit_log = commit_offset + size.max(1) as i64;
        self.by_commit_offset
            .insert(commit_offset, (topic.to_owned(), queue_id, queue_offset));
        if let Some(m) = arrived {
            self.wake(topic, queue_id, &m, out);
        }
        (queue_offset, commit_offset)
    }

    /// Keeps `msg` until its delay level passes; it is stored then. Returns a
    /// schedule position and the commit-log offset of the schedule copy (its
    /// message id), as Java's answer names the `SCHEDULE_TOPIC_XXXX` copy.
    fn schedule(
        &mut self,
        now: Millis,
        topic: &str,
        queue_id: i32,
        mut msg: MessageExt,
        level: i32,
    ) -> (i64, i64) {
        let level = level.clamp(1, MAX_DELAY_LEVEL);
        let due = now.saturating_add((level as u64).saturating_mul(self.config.delay_unit_ms));
        let commit_offset = self.commit_log;
        msg.commit_log_offset = commit_offset;
        self.commit_log += 1;
        let seq = self.next_seq();
        let position = self.scheduled.len() as i64;
        self.scheduled.insert(
            (due, seq),
            Scheduled {
                topic: topic.to_owned(),
                queue_id,
                msg,
            },
        );
        (position, commit_offset)
    }

    // ----- pulls -----

    fn on_pull(&mut self, now: Millis, link: LinkId, cmd: &RemotingCommand) -> Handled {
        let h: PullMessageRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        let Some(topic) = self.topics.get(&h.topic) else {
            return answer(
                ResponseCode::TOPIC_NOT_EXIST,
                &format!("topic[{}] not exist, apply first please!", h.topic),
            );
        };
        let readable = i32::try_from(topic.queue_nums).unwrap_or(i32::MAX);
        if h.queue_id < 0 || h.queue_id >= readable {
            return Err(format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{readable}] consumer:[{}]",
                h.queue_id, h.topic, h.consumer_group
            ));
        }
        let filter = match self.pull_filter(&h) {
            Ok(f) => f,
            Err(a) => return Ok(Some(a)),
        };
        if h.sys_flag & pull_flag::COMMIT_OFFSET != 0 {
            self.commit(
                now,
                &h.consumer_group,
                &h.topic,
                h.queue_id,
                h.commit_offset,
                OffsetSource::Pull,
            );
        }
        let (code, got) = self.get_message(&h, &filter);
        if code == ResponseCode::PULL_NOT_FOUND && h.sys_flag & pull_flag::SUSPEND != 0 {
            let hold = if self.config.long_polling {
                u64::try_from(h.suspend_timeout_millis).unwrap_or(0)
            } else {
                1_000
            };
            let seq = self.next_seq();
            self.parked.insert(
                seq,
                Parked {
                    link,
                    opaque: cmd.opaque,
                    header: h,
                    filter,
                    deadline: now.saturating_add(hold),
                },
            );
            return Ok(None);
        }
        Ok(Some(pull_response(code, got)))
    }

    /// The subscription a pull filters by: the request's own (subscription
    /// flag), else the one the group registered. Errors are whole answers.
    fn pull_filter(&self, h: &PullMessageRequestHeader) -> Result<Filter, RemotingCommand> {
        let sub = if h.sys_flag & pull_flag::SUBSCRIPTION != 0 {
            let expr = h.subscription.as_deref().unwrap_or("*");
            match h.expression_type.as_deref() {
                None | Some("") | Some("TAG") => {
                    SubscriptionData::from_tag_expression(&*h.topic, expr, h.sub_version)
                }
                Some("SQL92") => SubscriptionData::from_sql92(&*h.topic, expr, h.sub_version),
                Some(_) => {
                    return Err(response(
                        ResponseCode::SUBSCRIPTION_PARSE_FAILED,
                        Some("parse the consumer's subscription failed".into()),
                    ))
                }
            }
        } else {
            let Some(group) = self.groups.get(&h.consumer_group) else {
                return Err(response(
                    ResponseCode::SUBSCRIPTION_NOT_EXIST,
                    Some(format!(
                        "the consumer's group info not exist, group: {}",
                        h.consumer_group
                    )),
                ));
            };
            let Some(sub) = group.subscriptions.get(&h.topic) else {
                return Err(response(
                    ResponseCode::SUBSCRIPTION_NOT_EXIST,
                    Some("the consumer's subscription not exist".into()),
                ));
            };
            if sub.sub_version < h.sub_version {
                return Err(response(
                    ResponseCode::SUBSCRIPTION_NOT_LATEST,
                    Some("the consumer's subscription not latest".into()),
                ));
            }
            sub.clone()
        };
        if sub.expression_type == ExpressionType::Sql92 && !self.config.enable_property_filter {
            return Err(response(
                ResponseCode::SYSTEM_ERROR,
                Some("The broker does not support consumer to filter message by SQL92".into()),
            ));
        }
        Ok(Filter::of(&sub))
    }

    /// Java's `DefaultMessageStore.getMessage` and the status-to-code mapping
    /// of the pull processor.
    fn get_message(&self, h: &PullMessageRequestHeader, filter: &Filter) -> (ResponseCode, Got) {
        let empty = QueueLog::default();
        let log = self
            .topics
            .get(&h.topic)
            .and_then(|t| t.log(h.queue_id))
            .unwrap_or(&empty);
        let (min, max) = (log.min_offset, log.max_offset());
        let offset = h.queue_offset;
        let mut got = Got {
            status: Status::NoMatchedMessage,
            next: offset,
            min,
            max,
            body: BytesMut::new(),
        };
        if max == 0 {
            got.status = Status::NoMessageInQueue;
            got.next = 0;
        } else if offset < min {
            got.status = Status::OffsetTooSmall;
            got.next = min;
        } else if offset == max {
            got.status = Status::OffsetOverflowOne;
            got.next = offset;
        } else if offset > max {
            got.status = Status::OffsetOverflowBadly;
            got.next = max;
        } else {
            let max_nums = i64::from(h.max_msg_nums.max(1));
            let max_bytes = h
                .max_msg_bytes
                .map_or(u64::MAX, |b| u64::try_from(b).unwrap_or(0));
            let scan_end = max.min(offset.saturating_add(PULL_SCAN_ENTRIES.max(max_nums)));
            let (mut count, mut bytes) = (0u64, 0u64);
            let mut at = offset;
            while at < scan_end {
                let Some(m) = log.get(at) else {
                    break;
                };
                let size = u64::try_from(m.store_size).unwrap_or(0);
                let full = count > 0
                    && (count as i64 >= max_nums
                        || bytes + size > max_bytes
                        || bytes + size > self.config.max_transfer_bytes
                        || count >= u64::from(self.config.max_transfer_count));
                if full {
                    break;
                }
                at += 1;
                if !filter.matches(m) {
                    continue;
                }
                if encode_stored(m, &mut got.body).is_ok() {
                    count += 1;
                    bytes += size;
                    got.status = Status::Found;
                }
            }
            got.next = at;
        }
        let code = match got.status {
            Status::Found => ResponseCode::SUCCESS,
            Status::NoMatchedMessage => ResponseCode::PULL_RETRY_IMMEDIATELY,
            Status::NoMessageInQueue if offset != 0 => ResponseCode::PULL_OFFSET_MOVED,
            Status::NoMessageInQueue | Status::OffsetOverflowOne => ResponseCode::PULL_NOT_FOUND,
            Status::OffsetTooSmall | Status::OffsetOverflowBadly => ResponseCode::PULL_OFFSET_MOVED,
        };
        (code, got)
    }

    /// Answers a parked pull: the pull runs again, without suspending.
    fn rerun_pull(&mut self, p: Parked, out: &mut Vec<(LinkId, RemotingCommand)>) {
        let (code, got) = self.get_message(&p.header, &p.filter);
        let mut answer = pull_response(code, got);
        answer.opaque = p.opaque;
        out.push((p.link, answer));
    }

    /// A message arrived in a queue: parked pulls behind it whose filter takes
    /// it are answered (Java's `PullRequestHoldService.notifyMessageArriving`).
    fn wake(
        &mut self,
        topic: &str,
        queue_id: i32,
        arrived: &MessageExt,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) {
        let woken: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| {
                p.header.topic == topic
                    && p.header.queue_id == queue_id
                    && arrived.queue_offset >= p.header.queue_offset
                    && p.filter.matches(arrived)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in woken {
            if let Some(p) = self.parked.remove(&key) {
                self.rerun_pull(p, out);
            }
        }
    }

    // ----- offsets -----

    fn commit(
        &mut self,
        now: Millis,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        source: OffsetSource,
    ) {
        self.offsets
            .insert((group.to_owned(), topic.to_owned(), queue_id), offset);
        self.offset_writes.push(OffsetWrite {
            at: now,
            group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            offset,
            source,
        });
    }

    fn on_query_offset(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: QueryConsumerOffsetRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        if let Some(offset) = self.committed(&h.consumer_group, &h.topic, h.queue_id) {
            if offset >= 0 {
                return Ok(Some(offset_answer(offset)));
            }
        }
        // Java answers 0 while offset 0 is still in memory (here: still
        // stored), unless told not to.
        let at_zero = self
            .topics
            .get(&h.topic)
            .and_then(|t| t.log(h.queue_id))
            .is_some_and(|l| l.min_offset <= 0 && !l.messages.is_empty());
        if h.set_zero_if_not_found != Some(false) && at_zero {
            return Ok(Some(
                response(ResponseCode::SUCCESS, None)
                    .with_header(&QueryConsumerOffsetResponseHeader { offset: 0 }),
            ));
        }
        answer(
            ResponseCode::QUERY_NOT_FOUND,
            "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
        )
    }

    fn on_update_offset(&mut self, now: Millis, cmd: &RemotingCommand) -> Handled {
        let h: UpdateConsumerOffsetRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        if !self.topics.contains_key(&h.topic) {
            return answer(
                ResponseCode::TOPIC_NOT_EXIST,
                &format!("Topic {} not exist!", h.topic),
            );
        }
        self.commit(
            now,
            &h.consumer_group,
            &h.topic,
            h.queue_id,
            h.commit_offset,
            OffsetSource::Update,
        );
        Ok(Some(response(ResponseCode::SUCCESS, None)))
    }

    fn on_max_offset(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: GetMaxOffsetRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        Ok(Some(offset_answer(
            self.queue_range(&h.topic, h.queue_id).1,
        )))
    }

    fn on_min_offset(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: GetMinOffsetRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        Ok(Some(offset_answer(
            self.queue_range(&h.topic, h.queue_id).0,
        )))
    }

    fn on_search_offset(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: SearchOffsetRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        let upper = h
            .boundary_type
            .as_deref()
            .is_some_and(|b| b.eq_ignore_ascii_case("upper"));
        Ok(Some(offset_answer(self.search_offset(
            &h.topic,
            h.queue_id,
            h.timestamp,
            upper,
        ))))
    }

    /// The offset of a store time, simplified from Java's consume-queue search:
    /// lower boundary, the first message stored at or after `timestamp` (the
    /// max offset if none); upper boundary, the last stored at or before it
    /// (the min offset if none).
    fn search_offset(&self, topic: &str, queue_id: i32, timestamp: i64, upper: bool) -> i64 {
        let Some(log) = self.topics.get(topic).and_then(|t| t.log(queue_id)) else {
            return 0;
        };
        if upper {
            log.messages
                .iter()
                .rev()
                .find(|m| m.store_timestamp <= timestamp)
                .map_or(log.min_offset, |m| m.queue_offset)
        } else {
            log.messages
                .iter()
                .find(|m| m.store_timestamp >= timestamp)
                .map_or(log.max_offset(), |m| m.queue_offset)
        }
    }

    fn on_earliest_time(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: GetEarliestMsgStoretimeRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        let timestamp = self
            .log(&h.topic, h.queue_id)
            .first()
            .map_or(-1, |m| m.store_timestamp);
        Ok(Some(response(ResponseCode::SUCCESS, None).with_header(
            &GetEarliestMsgStoretimeResponseHeader { timestamp },
        )))
    }

    fn lookup(&self, commit_offset: i64) -> Option<&MessageExt> {
        let (topic, queue_id, offset) = self.by_commit_offset.get(&commit_offset)?;
        self.topics.get(topic)?.log(*queue_id)?.get(*offset)
    }

    fn on_view_message(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: ViewMessageRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        let Some(m) = self.lookup(h.offset) else {
            return Err(format!("can not find message by the offset, {}", h.offset));
        };
        let mut body = BytesMut::new();
        encode_stored(m, &mut body).map_err(|e| e.to_string())?;
        Ok(Some(
            response(ResponseCode::SUCCESS, None).with_body(body.freeze()),
        ))
    }

    // ----- clients -----

    fn on_heartbeat(
        &mut self,
        now: Millis,
        link: LinkId,
        cmd: &RemotingCommand,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) -> Handled {
        let hb = HeartbeatData::decode(&cmd.body).map_err(|e| e.to_string())?;
        let mut sub_change = false;
        for c in &hb.consumer_data_set {
            if c.message_model == MessageModel::Clustering {
                self.create_topic(&format!("{RETRY_PREFIX}{}", c.group_name), 1);
            }
            let group = self.groups.entry(c.group_name.clone()).or_default();
            group.message_model = c.message_model;
            let channel_changed = match group.channels.get_mut(&link) {
                Some(ch) => {
                    ch.last_update = now;
                    let changed = ch.client_id != hb.client_id;
                    ch.client_id.clone_from(&hb.client_id);
                    changed
                }
                None => {
                    group.channels.insert(
                        link,
                        Channel {
                            client_id: hb.client_id.clone(),
                            last_update: now,
                        },
                    );
                    true
                }
            };
            // Java's `ConsumerGroupInfo.updateSubscription`: a new or removed
            // topic is a change; a newer version of one is kept quietly.
            let mut subs_changed = false;
            let mut topics = BTreeSet::new();
            for s in &c.subscription_data_set {
                topics.insert(s.topic.clone());
                match group.subscriptions.get(&s.topic) {
                    None => {
                        group.subscriptions.insert(s.topic.clone(), s.clone());
                        subs_changed = true;
                    }
                    Some(old) if s.sub_version > old.sub_version => {
                        group.subscriptions.insert(s.topic.clone(), s.clone());
                    }
                    Some(_) => {}
                }
            }
            let before = group.subscriptions.len();
            group.subscriptions.retain(|t, _| topics.contains(t));
            subs_changed |= group.subscriptions.len() != before;
            sub_change |= subs_changed;
            if channel_changed || subs_changed {
                let name = c.group_name.clone();
                self.notify_group(&name, None, out);
            }
        }
        for p in &hb.producer_data_set {
            self.producers
                .entry(p.group_name.clone())
                .or_default()
                .insert(
                    link,
                    Channel {
                        client_id: hb.client_id.clone(),
                        last_update: now,
                    },
                );
        }
        let mut answer = response(ResponseCode::SUCCESS, None);
        answer.ext_fields.insert("IS_SUPPORT_HEART_BEAT_V2", "true");
        answer
            .ext_fields
            .insert("IS_SUB_CHANGE", sub_change.to_string());
        Ok(Some(answer))
    }

    fn on_unregister(
        &mut self,
        link: LinkId,
        cmd: &RemotingCommand,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) -> Handled {
        let h: UnregisterClientRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        if let Some(group) = &h.producer_group {
            if let Some(channels) = self.producers.get_mut(group) {
                channels.remove(&link);
                if channels.is_empty() {
                    self.producers.remove(group);
                }
            }
        }
        if let Some(group) = &h.consumer_group {
            let removed = self
                .groups
                .get_mut(group)
                .and_then(|g| g.channels.remove(&link))
                .is_some();
            if removed {
                self.notify_group(group, None, out);
            }
            if self
                .groups
                .get(group)
                .is_some_and(|g| g.channels.is_empty())
            {
                self.groups.remove(group);
            }
        }
        Ok(Some(response(ResponseCode::SUCCESS, None)))
    }

    fn on_consumer_list(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: GetConsumerListByGroupRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        let ids = self.consumers(&h.consumer_group);
        if ids.is_empty() {
            return Err(format!("no consumer for this group, {}", h.consumer_group));
        }
        let body = ConsumerIdList {
            consumer_id_list: ids,
        }
        .encode();
        Ok(Some(response(ResponseCode::SUCCESS, None).with_body(body)))
    }

    fn on_check_client(&mut self, cmd: &RemotingCommand) -> Handled {
        let body = CheckClientRequestBody::decode(&cmd.body).map_err(|e| e.to_string())?;
        if let Some(sub) = &body.subscription_data {
            if sub.expression_type != ExpressionType::Tag && !self.config.enable_property_filter {
                return Err(
                    "The broker does not support consumer to filter message by SQL92".into(),
                );
            }
        }
        Ok(Some(response(ResponseCode::SUCCESS, None)))
    }

    /// Java's `SendMessageProcessor.consumerSendMsgBack`.
    fn on_send_back(
        &mut self,
        now: Millis,
        cmd: &RemotingCommand,
        out: &mut Vec<(LinkId, RemotingCommand)>,
    ) -> Handled {
        let h: ConsumerSendMsgBackRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        let Some(orig) = self.lookup(h.offset).cloned() else {
            return Err(format!("look message by offset failed, {}", h.offset));
        };
        let retry_topic = format!("{RETRY_PREFIX}{}", h.group);
        self.create_topic(&retry_topic, 1);
        let max = match h.max_reconsume_times {
            Some(m) if cmd.version >= VERSION_V3_4_9 && m >= 0 => m,
            _ => DEFAULT_MAX_RECONSUME_TIMES,
        };
        let mut props = orig.properties.to_map();
        props
            .entry(property::RETRY_TOPIC.to_owned())
            .or_insert_with(|| orig.topic.to_string());
        props.insert(property::WAIT_STORE_MSG_OK.to_owned(), "false".to_owned());
        let origin = props
            .get(property::ORIGIN_MESSAGE_ID)
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| orig.offset_msg_id());
        props.insert(property::ORIGIN_MESSAGE_ID.to_owned(), origin);
        props.remove(property::DELAY_TIME_LEVEL);
        let dead = orig.reconsume_times >= max || h.delay_level < 0;
        let topic = if dead {
            let dlq = format!("{DLQ_PREFIX}{}", h.group);
            self.create_topic(&dlq, 1);
            dlq
        } else {
            retry_topic
        };
        let msg = MessageExt {
            topic: ByteString::from(topic.clone()),
            flag: orig.flag,
            body: orig.body.clone(),
            properties: properties_of(&props),
            sys_flag: orig.sys_flag,
            born_timestamp: orig.born_timestamp,
            born_host: orig.born_host,
            reconsume_times: orig.reconsume_times.saturating_add(1),
            ..MessageExt::default()
        };
        if dead {
            self.store(now, &topic, 0, msg, out);
        } else {
            let level = if h.delay_level == 0 {
                3 + orig.reconsume_times
            } else {
                h.delay_level
            };
            self.schedule(now, &topic, 0, msg, level);
        }
        Ok(Some(response(ResponseCode::SUCCESS, None)))
    }

    /// Java's `RebalanceLockManager.tryLockBatch`.
    fn on_lock(&mut self, now: Millis, cmd: &RemotingCommand) -> Handled {
        let body = LockBatchRequestBody::decode(&cmd.body).map_err(|e| e.to_string())?;
        let mut locked = BTreeSet::new();
        for mq in &body.mq_set {
            let key = (body.consumer_group.clone(), mq.clone());
            let ok = match self.locks.get_mut(&key) {
                Some(l) if l.client_id == body.client_id => {
                    l.last_update = now;
                    true
                }
                Some(l) if now.saturating_sub(l.last_update) > LOCK_EXPIRY_MS => {
                    l.client_id.clone_from(&body.client_id);
                    l.last_update = now;
                    true
                }
                Some(_) => false,
                None => {
                    self.locks.insert(
                        key,
                        Lock {
                            client_id: body.client_id.clone(),
                            last_update: now,
                        },
                    );
                    true
                }
            };
            if ok {
                locked.insert(mq.clone());
            }
        }
        let body = LockBatchResponseBody {
            lock_ok_mq_set: locked,
        }
        .encode();
        Ok(Some(response(ResponseCode::SUCCESS, None).with_body(body)))
    }

    /// Java's `RebalanceLockManager.unlockBatch`: only the holder unlocks.
    fn on_unlock(&mut self, cmd: &RemotingCommand) -> Handled {
        let body = LockBatchRequestBody::decode(&cmd.body).map_err(|e| e.to_string())?;
        for mq in &body.mq_set {
            let key = (body.consumer_group.clone(), mq.clone());
            if self
                .locks
                .get(&key)
                .is_some_and(|l| l.client_id == body.client_id)
            {
                self.locks.remove(&key);
            }
        }
        Ok(Some(response(ResponseCode::SUCCESS, None)))
    }

    fn on_create_topic(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: CreateTopicRequestHeader = cmd.header().map_err(|e| e.to_string())?;
        if !valid_topic_name(&h.topic) {
            return Err(format!("The specified topic[{}] is illegal", h.topic));
        }
        let queues = u32::try_from(h.read_queue_nums.max(h.write_queue_nums)).unwrap_or(0);
        self.set_queue_count(&h.topic, queues);
        Ok(Some(response(ResponseCode::SUCCESS, None)))
    }
}

/// Marks a command as sent by a Java server.
fn java(mut cmd: RemotingCommand) -> RemotingCommand {
    cmd.language = LanguageCode::Java;
    cmd
}

/// A response (its opaque is set when it is sent).
fn response(code: ResponseCode, remark: Option<String>) -> RemotingCommand {
    java(RemotingCommand::response(code, 0, remark))
}

fn answer(code: ResponseCode, remark: &str) -> Handled {
    Ok(Some(response(code, Some(remark.to_owned()))))
}

fn is_unsupported(handled: &Handled) -> bool {
    matches!(handled, Ok(Some(a)) if a.code == ResponseCode::REQUEST_CODE_NOT_SUPPORTED.value())
}

fn offset_answer(offset: i64) -> RemotingCommand {
    response(ResponseCode::SUCCESS, None).with_header(&OffsetResponseHeader { offset })
}

fn send_ok(header: &SendMessageResponseHeader) -> RemotingCommand {
    let mut answer = response(ResponseCode::SUCCESS, None).with_header(header);
    answer.ext_fields.insert("MSG_REGION", "DefaultRegion");
    answer.ext_fields.insert("TRACE_ON", "true");
    answer
}

fn pull_response(code: ResponseCode, got: Got) -> RemotingCommand {
    let mut answer = response(code, Some(got.status.name().to_owned())).with_header(
        &PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: got.next,
            min_offset: got.min,
            max_offset: got.max,
            ..PullMessageResponseHeader::default()
        },
    );
    if code == ResponseCode::SUCCESS {
        answer.body = got.body.freeze();
    }
    answer
}

/// `^[%|a-zA-Z0-9_-]+$`, at most 127 characters (Java's `TopicValidator`).
fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 127
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'))
}

fn properties_map(raw: &str) -> BTreeMap<String, String> {
    Properties::parse(ByteString::from(raw.to_owned())).to_map()
}

fn properties_of(map: &BTreeMap<String, String>) -> Properties {
    let mut s = String::new();
    encode_properties(map.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut s);
    Properties::parse(ByteString::from(s))
}

fn without_property(props: &Properties, name: &str) -> Properties {
    if props.get(name).is_none() {
        return props.clone();
    }
    let mut map = props.to_map();
    map.remove(name);
    properties_of(&map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketmq_core::protocol::body::{ConsumeFromWhere, ConsumeType, ConsumerData};
    use rocketmq_core::protocol::message::{decode_messages, encode_batch, DecodeOptions, Message};

    const A: LinkId = LinkId(1);
    const B: LinkId = LinkId(2);
    const P: LinkId = LinkId(9);

    fn broker() -> SimBroker {
        let mut b = SimBroker::new("broker-a", "10.0.0.1:10911", "C");
        b.create_topic("T", 2);
        b
    }

    fn send_request(topic: &str, queue_id: i32, tag: &str, uniq: &str) -> RemotingCommand {
        let props = Message::new(topic, &b"x"[..])
            .with_tags(tag)
            .with_property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, uniq)
            .properties_string();
        RemotingCommand::request(RequestCode::SEND_MESSAGE_V2, 7)
            .with_header(&SendMessageRequestHeaderV2(SendMessageRequestHeader {
                producer_group: "PG".into(),
                topic: topic.into(),
                default_topic: AUTO_CREATE_TOPIC.into(),
                default_topic_queue_nums: 4,
                queue_id,
                sys_flag: 0,
                born_timestamp: 1,
                flag: 0,
                properties: Some(props),
                reconsume_times: Some(0),
                unit_mode: Some(false),
                batch: Some(false),
                max_reconsume_times: None,
                broker_name: Some("broker-a".into()),
            }))
            .with_body(Bytes::from_static(b"hello"))
    }

    fn pull_request(topic: &str, queue_id: i32, offset: i64, expr: &str) -> RemotingCommand {
        RemotingCommand::request(RequestCode::PULL_MESSAGE, 11).with_header(
            &PullMessageRequestHeader {
                consumer_group: "G".into(),
                topic: topic.into(),
                queue_id,
                queue_offset: offset,
                max_msg_nums: 32,
                sys_flag: pull_flag::SUSPEND | pull_flag::SUBSCRIPTION,
                commit_offset: 0,
                suspend_timeout_millis: 15_000,
                subscription: Some(expr.into()),
                sub_version: 1,
                expression_type: Some("TAG".into()),
                max_msg_bytes: Some(262_144),
                ..PullMessageRequestHeader::default()
            },
        )
    }

    fn heartbeat(client: &str, group: &str) -> RemotingCommand {
        let hb = HeartbeatData {
            client_id: client.into(),
            consumer_data_set: vec![ConsumerData {
                consume_from_where: ConsumeFromWhere::ConsumeFromFirstOffset,
                consume_type: ConsumeType::ConsumePassively,
                group_name: group.into(),
                message_model: MessageModel::Clustering,
                subscription_data_set: vec![SubscriptionData::from_tag_expression("T", "*", 1)],
                unit_mode: false,
            }],
            ..HeartbeatData::default()
        };
        RemotingCommand::request(RequestCode::HEART_BEAT, 3).with_body(hb.encode())
    }

    fn run(
        b: &mut SimBroker,
        now: Millis,
        link: LinkId,
        cmd: RemotingCommand,
    ) -> Vec<(LinkId, RemotingCommand)> {
        let mut out = Vec::new();
        b.handle(now, link, cmd, &mut out);
        out
    }

    fn send(b: &mut SimBroker, now: Millis, queue_id: i32, tag: &str) -> SendMessageResponseHeader {
        let out = run(
            b,
            now,
            P,
            send_request("T", queue_id, tag, &format!("U{now}")),
        );
        let (link, answer) = out.last().unwrap();
        assert_eq!(*link, P);
        assert_eq!(answer.response_code(), ResponseCode::SUCCESS, "{answer:?}");
        answer.header().unwrap()
    }

    fn pulled(answer: &RemotingCommand) -> Vec<MessageExt> {
        decode_messages(&answer.body, &DecodeOptions::default()).unwrap()
    }

    #[test]
    fn send_then_pull_found_decodes_with_the_right_offsets() {
        let mut b = broker();
        let first = send(&mut b, 10, 1, "a");
        let second = send(&mut b, 20, 1, "b");
        assert_eq!((first.queue_id, first.queue_offset), (1, 0));
        assert_eq!(second.queue_offset, 1);
        let out = run(&mut b, 30, A, pull_request("T", 1, 0, "*"));
        assert_eq!(out.len(), 1);
        let (link, answer) = &out[0];
        assert_eq!((*link, answer.opaque), (A, 11));
        assert!(answer.is_response());
        assert_eq!(answer.response_code(), ResponseCode::SUCCESS);
        let h: PullMessageResponseHeader = answer.header().unwrap();
        assert_eq!((h.next_begin_offset, h.min_offset, h.max_offset), (2, 0, 2));
        assert_eq!(h.suggest_which_broker_id, 0);
        let msgs = pulled(answer);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].queue_offset, 0);
        assert_eq!(msgs[1].queue_offset, 1);
        assert_eq!(msgs[0].tags(), Some("a"));
        assert_eq!(msgs[0].msg_id(), "U10");
        assert_eq!(msgs[0].offset_msg_id(), first.msg_id);
        assert_eq!(msgs[1].offset_msg_id(), second.msg_id);
        assert_eq!(msgs[0].store_timestamp, DEFAULT_WALL_EPOCH_MS + 10);
        assert_eq!(&msgs[0].body[..], b"hello");
        assert_eq!(msgs[0].store_host, "10.0.0.1:10911".parse().unwrap());
        assert_eq!(b.log("T", 1).len(), 2);
        // A tag filter skips what does not match, and says so when nothing does.
        let out = run(&mut b, 40, A, pull_request("T", 1, 0, "b"));
        let msgs = pulled(&out[0].1);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].queue_offset, 1);
        let out = run(&mut b, 40, A, pull_request("T", 1, 0, "zzz"));
        assert_eq!(
            out[0].1.response_code(),
            ResponseCode::PULL_RETRY_IMMEDIATELY
        );
        let h: PullMessageResponseHeader = out[0].1.header().unwrap();
        assert_eq!(h.next_begin_offset, 2);
    }

    #[test]
    fn a_batch_stores_each_message_with_its_own_key() {
        let mut b = broker();
        let msgs: Vec<Message> = (0..3)
            .map(|i| {
                Message::new("T", &b"m"[..])
                    .with_property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, format!("K{i}"))
            })
            .collect();
        let mut body = BytesMut::new();
        encode_batch(&msgs, &mut body).unwrap();
        let mut req = send_request("T", 0, "a", "batch");
        req.code = RequestCode::SEND_BATCH_MESSAGE.value();
        req.ext_fields
            .insert("i", Message::new("T", Bytes::new()).properties_string());
        let out = run(&mut b, 5, P, req.with_body(body.freeze()));
        let h: SendMessageResponseHeader = out[0].1.header().unwrap();
        assert_eq!(h.queue_offset, 0);
        assert_eq!(h.msg_id.split(',').count(), 3);
        let keys: Vec<String> = b.log("T", 0).iter().map(MessageExt::msg_id).collect();
        assert_eq!(keys, ["K0", "K1", "K2"]);
    }

    #[test]
    fn a_parked_pull_is_answered_on_arrival_or_at_expiry() {
        let mut b = broker();
        // Nothing there: the pull is held.
        assert!(run(&mut b, 0, A, pull_request("T", 0, 0, "a")).is_empty());
        assert_eq!(b.next_deadline(), Some(15_000));
        // A message it does not want leaves it parked; one it wants answers it.
        let out = run(&mut b, 100, P, send_request("T", 0, "b", "U1"));
        assert_eq!(out.len(), 1, "only the send answer: {out:?}");
        let out = run(&mut b, 200, P, send_request("T", 0, "a", "U2"));
        assert_eq!(out.len(), 2);
        let (link, answer) = &out[0];
        assert_eq!((*link, answer.opaque), (A, 11));
        assert_eq!(answer.response_code(), ResponseCode::SUCCESS);
        let msgs = pulled(answer);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].msg_id(), "U2");
        assert_eq!(out[1].0, P);
        // Held again at the end; expiry answers "no new message".
        assert!(run(&mut b, 300, A, pull_request("T", 0, 2, "*")).is_empty());
        let mut out = Vec::new();
        b.tick(15_299, &mut out);
        assert!(out.is_empty());
        b.tick(15_300, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.response_code(), ResponseCode::PULL_NOT_FOUND);
        let h: PullMessageResponseHeader = out[0].1.header().unwrap();
        assert_eq!(h.next_begin_offset, 2);
        // A closed link drops its parked pull.
        assert!(run(&mut b, 400, A, pull_request("T", 0, 2, "*")).is_empty());
        let mut out = Vec::new();
        b.link_closed(500, A, &mut out);
        assert_eq!(b.parked_pulls(), 0);
    }

    #[test]
    fn heartbeat_of_a_second_member_notifies_the_first() {
        let mut b = broker();
        // As Java's broker, every channel of the group is told, the new
        // member's own included.
        let out = run(&mut b, 0, A, heartbeat("c1", "G"));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, A);
        assert_eq!(
            out[0].1.request_code(),
            RequestCode::NOTIFY_CONSUMER_IDS_CHANGED
        );
        assert_eq!(out[1].1.response_code(), ResponseCode::SUCCESS);
        assert!(b.topics().iter().any(|(t, n)| t == "%RETRY%G" && *n == 1));
        // The same heartbeat again changes nothing.
        assert_eq!(run(&mut b, 10, A, heartbeat("c1", "G")).len(), 1);
        let out = run(&mut b, 20, B, heartbeat("c2", "G"));
        assert_eq!(out.len(), 3);
        let told: Vec<LinkId> = out[..2].iter().map(|(l, _)| *l).collect();
        assert!(told.contains(&A) && told.contains(&B), "{told:?}");
        let (link, notify) = &out[0];
        assert!(*link == A || *link == B);
        assert_eq!(
            notify.request_code(),
            RequestCode::NOTIFY_CONSUMER_IDS_CHANGED
        );
        assert!(notify.is_oneway() && !notify.is_response());
        let h: NotifyConsumerIdsChangedRequestHeader = notify.header().unwrap();
        assert_eq!(h.consumer_group, "G");
        let list = run(
            &mut b,
            30,
            A,
            RemotingCommand::request(RequestCode::GET_CONSUMER_LIST_BY_GROUP, 4).with_header(
                &GetConsumerListByGroupRequestHeader {
                    consumer_group: "G".into(),
                },
            ),
        );
        let ids = ConsumerIdList::decode(&list[0].1.body).unwrap();
        assert_eq!(ids.consumer_id_list, ["c1", "c2"]);
        // Unregistering c2 notifies c1; c1's silence expires it.
        let unregister = RemotingCommand::request(RequestCode::UNREGISTER_CLIENT, 5).with_header(
            &UnregisterClientRequestHeader {
                client_id: "c2".into(),
                producer_group: None,
                consumer_group: Some("G".into()),
            },
        );
        let out = run(&mut b, 40, B, unregister);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, A);
        assert_eq!(b.consumers("G"), ["c1"]);
        assert_eq!(b.next_deadline(), Some(10 + CHANNEL_EXPIRY_MS));
        let mut out = Vec::new();
        b.tick(10 + CHANNEL_EXPIRY_MS, &mut out);
        assert!(b.consumers("G").is_empty());
        assert_eq!(b.take_closed_links(), [A]);
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn send_back_goes_to_retry_after_its_delay_and_to_the_dlq_at_the_max() {
        let mut b = broker();
        send(&mut b, 0, 0, "a");
        let original = b.log("T", 0)[0].clone();
        let back = |offset: i64, max: i32| {
            RemotingCommand::request(RequestCode::CONSUMER_SEND_MSG_BACK, 8).with_header(
                &ConsumerSendMsgBackRequestHeader {
                    offset,
                    group: "G".into(),
                    delay_level: 0,
                    origin_msg_id: Some("U0".into()),
                    origin_topic: Some("T".into()),
                    unit_mode: Some(false),
                    max_reconsume_times: Some(max),
                    broker_name: Some("broker-a".into()),
                },
            )
        };
        let out = run(&mut b, 1_000, A, back(original.commit_log_offset, 2));
        assert_eq!(out[0].1.response_code(), ResponseCode::SUCCESS);
        assert!(b.log("%RETRY%G", 0).is_empty());
        // Level 3 + 0, scaled to 3 s.
        assert_eq!(b.next_deadline(), Some(4_000));
        let mut out = Vec::new();
        b.tick(4_000, &mut out);
        let retry = b.log("%RETRY%G", 0);
        assert_eq!(retry.len(), 1);
        let r = retry[0].clone();
        assert_eq!(r.reconsume_times, 1);
        assert_eq!(r.property(property::RETRY_TOPIC), Some("T"));
        assert_eq!(
            r.property(property::ORIGIN_MESSAGE_ID),
            Some(original.offset_msg_id().as_str())
        );
        assert_eq!(r.msg_id(), "U0");
        assert_eq!(r.tags(), Some("a"));
        assert_eq!(r.store_timestamp, DEFAULT_WALL_EPOCH_MS + 4_000);
        // Sent back again: level 4; then at reconsume times 2 = max, the DLQ.
        run(&mut b, 5_000, A, back(r.commit_log_offset, 2));
        let mut out = Vec::new();
        b.tick(9_000, &mut out);
        let r2 = b.log("%RETRY%G", 0)[1].clone();
        assert_eq!(r2.reconsume_times, 2);
        run(&mut b, 10_000, A, back(r2.commit_log_offset, 2));
        let dlq = b.log("%DLQ%G", 0);
        assert_eq!(dlq.len(), 1);
        assert_eq!(dlq[0].reconsume_times, 3);
        assert_eq!(
            dlq[0].property(property::ORIGIN_MESSAGE_ID),
            Some(original.offset_msg_id().as_str())
        );
        assert!(b.topics().iter().any(|(t, _)| t == "%DLQ%G"));
        // An unknown offset is a system error.
        let out = run(&mut b, 11_000, A, back(999_999, 2));
        assert_eq!(out[0].1.response_code(), ResponseCode::SYSTEM_ERROR);
    }

    #[test]
    fn offsets_moved_not_found_and_commits() {
        let mut b = broker();
        send(&mut b, 0, 0, "a");
        let out = run(&mut b, 1, A, pull_request("T", 0, 50, "*"));
        assert_eq!(out[0].1.response_code(), ResponseCode::PULL_OFFSET_MOVED);
        let h: PullMessageResponseHeader = out[0].1.header().unwrap();
        assert_eq!((h.next_begin_offset, h.max_offset), (1, 1));
        // An empty queue: offset 0 waits, another offset moved to 0.
        let mut pull = pull_request("T", 1, 0, "*");
        pull.ext_fields.insert("sysFlag", "4");
        let out = run(&mut b, 2, A, pull);
        assert_eq!(out[0].1.response_code(), ResponseCode::PULL_NOT_FOUND);
        let out = run(&mut b, 2, A, pull_request("T", 1, 3, "*"));
        assert_eq!(out[0].1.response_code(), ResponseCode::PULL_OFFSET_MOVED);
        // Queue offsets: 0 while message 0 is there, unless told otherwise.
        let query = |zero: Option<bool>| {
            RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET, 1).with_header(
                &QueryConsumerOffsetRequestHeader {
                    consumer_group: "G".into(),
                    topic: "T".into(),
                    queue_id: 0,
                    set_zero_if_not_found: zero,
                    broker_name: None,
                },
            )
        };
        let out = run(&mut b, 3, A, query(None));
        assert_eq!(out[0].1.response_code(), ResponseCode::SUCCESS);
        let out = run(&mut b, 3, A, query(Some(false)));
        assert_eq!(out[0].1.response_code(), ResponseCode::QUERY_NOT_FOUND);
        // A piggy-backed commit, then an overwrite downwards.
        let mut pull = pull_request("T", 0, 1, "*");
        pull.ext_fields.insert("sysFlag", "7");
        pull.ext_fields.insert("commitOffset", "1");
        run(&mut b, 4, A, pull);
        assert_eq!(b.committed("G", "T", 0), Some(1));
        let update = RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET, 2)
            .with_header(&UpdateConsumerOffsetRequestHeader {
                consumer_group: "G".into(),
                topic: "T".into(),
                queue_id: 0,
                commit_offset: 0,
                broker_name: None,
            })
            .with_oneway();
        assert!(run(&mut b, 5, A, update).is_empty());
        assert_eq!(b.committed("G", "T", 0), Some(0));
        let w = b.offset_writes();
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].offset, w[0].source), (1, OffsetSource::Pull));
        assert_eq!(
            (w[1].at, w[1].offset, w[1].source),
            (5, 0, OffsetSource::Update)
        );
        // Rolled back to the last flush (at 0 ms nothing was committed).
        b.crash_rolling_back_offsets(6);
        assert_eq!(b.committed("G", "T", 0), None);
    }

    #[test]
    fn unknown_codes_and_bad_headers_are_answered() {
        let mut b = broker();
        let out = run(
            &mut b,
            0,
            A,
            RemotingCommand::request(RequestCode::Unknown(9999), 42).with_oneway(),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].1.response_code(),
            ResponseCode::REQUEST_CODE_NOT_SUPPORTED
        );
        assert_eq!(out[0].1.opaque, 42);
        let out = run(
            &mut b,
            0,
            A,
            RemotingCommand::request(RequestCode::END_TRANSACTION, 43),
        );
        assert_eq!(
            out[0].1.response_code(),
            ResponseCode::REQUEST_CODE_NOT_SUPPORTED
        );
        let mut bad = pull_request("T", 0, 0, "*");
        bad.ext_fields.insert("queueOffset", "many");
        let out = run(&mut b, 0, A, bad);
        assert_eq!(out[0].1.response_code(), ResponseCode::SYSTEM_ERROR);
        let hb = RemotingCommand::request(RequestCode::HEART_BEAT, 1).with_body(&b"{"[..]);
        assert_eq!(
            run(&mut b, 0, A, hb)[0].1.response_code(),
            ResponseCode::SYSTEM_ERROR
        );
        let out = run(&mut b, 0, A, pull_request("NOPE", 0, 0, "*"));
        assert_eq!(out[0].1.response_code(), ResponseCode::TOPIC_NOT_EXIST);
        let out = run(&mut b, 0, A, pull_request("T", 7, 0, "*"));
        assert_eq!(out[0].1.response_code(), ResponseCode::SYSTEM_ERROR);
    }

    #[test]
    fn unknown_topics_are_created_from_the_template() {
        let mut b = broker();
        let out = run(&mut b, 0, P, send_request("NEW", 3, "a", "U"));
        assert_eq!(out[0].1.response_code(), ResponseCode::SUCCESS);
        assert!(b.topics().contains(&("NEW".to_owned(), 4)));
        let mut config = b.config().clone();
        config.auto_create_topic = false;
        b.set_config(config);
        assert!(!b.topics().iter().any(|(t, _)| t == AUTO_CREATE_TOPIC));
        let out = run(&mut b, 0, P, send_request("OTHER", 0, "a", "U"));
        assert_eq!(out[0].1.response_code(), ResponseCode::TOPIC_NOT_EXIST);
    }

    #[test]
    fn delayed_sends_wait_and_crashes_keep_logs_offsets_and_retries() {
        let mut b = broker();
        let mut req = send_request("T", 0, "a", "D");
        let props = Message::new("T", &b"x"[..])
            .with_tags("a")
            .with_delay_level(2)
            .with_property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "D")
            .properties_string();
        req.ext_fields.insert("i", props);
        let out = run(&mut b, 0, P, req);
        assert_eq!(out[0].1.response_code(), ResponseCode::SUCCESS);
        assert!(b.log("T", 0).is_empty());
        assert_eq!(b.next_deadline(), Some(2_000));
        // A parked pull, a registration and a lock are lost in a crash; the
        // delayed message, logs and offsets are not.
        send(&mut b, 1, 1, "a");
        run(&mut b, 2, A, heartbeat("c1", "G"));
        assert!(run(&mut b, 3, A, pull_request("T", 0, 0, "*")).is_empty());
        let update = RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET, 2).with_header(
            &UpdateConsumerOffsetRequestHeader {
                consumer_group: "G".into(),
                topic: "T".into(),
                queue_id: 1,
                commit_offset: 1,
                broker_name: None,
            },
        );
        assert_eq!(run(&mut b, 4, A, update).len(), 1);
        b.crash();
        assert_eq!(b.parked_pulls(), 0);
        assert!(b.consumers("G").is_empty());
        assert_eq!(b.committed("G", "T", 1), Some(1));
        assert_eq!(b.log("T", 1).len(), 1);
        let mut out = Vec::new();
        b.tick(2_000, &mut out);
        assert!(out.is_empty(), "the parked pull is gone: {out:?}");
        let stored = &b.log("T", 0)[0];
        assert_eq!(stored.msg_id(), "D");
        assert_eq!(stored.property(property::DELAY_TIME_LEVEL), None);
        assert_eq!(stored.store_timestamp, DEFAULT_WALL_EPOCH_MS + 2_000);
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn locks_expire_after_a_minute() {
        let mut b = broker();
        let mq = MessageQueue::new("T", "broker-a", 0);
        let lock = |client: &str| {
            RemotingCommand::request(RequestCode::LOCK_BATCH_MQ, 1).with_body(
                LockBatchRequestBody {
                    client_id: client.into(),
                    consumer_group: "G".into(),
                    mq_set: [MessageQueue::new("T", "broker-a", 0)].into(),
                    only_this_broker: false,
                }
                .encode(),
            )
        };
        let granted = |out: &[(LinkId, RemotingCommand)]| {
            LockBatchResponseBody::decode(&out[0].1.body)
                .unwrap()
                .lock_ok_mq_set
                .len()
        };
        assert_eq!(granted(&run(&mut b, 0, A, lock("c1"))), 1);
        assert_eq!(granted(&run(&mut b, 1_000, B, lock("c2"))), 0);
        assert_eq!(b.lock_owner(1_000, "G", &mq), Some("c1"));
        assert_eq!(granted(&run(&mut b, 61_001, B, lock("c2"))), 1);
        assert_eq!(b.lock_owner(61_001, "G", &mq), Some("c2"));
        b.crash();
        assert_eq!(b.lock_owner(61_002, "G", &mq), None);
    }
}
