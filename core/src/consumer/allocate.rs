//! Queue allocation: how one consumer of a clustering group picks its share of a
//! topic's queues.
//!
//! In CLUSTERING mode every member of a consumer group computes its own share of
//! each topic's queues from the same two lists (the topic's queues and the group's
//! client ids), and the members only agree if they all compute exactly the same
//! thing. The strategies here are bit-for-bit ports of the Java client's
//! `AllocateMessageQueueStrategy` implementations (see `docs/allocation.md`), so a
//! group may mix Java consumers and ours:
//!
//! | [`AllocateStrategy`] | Java `getName()` | Java class |
//! |---|---|---|
//! | [`Averagely`](AllocateStrategy::Averagely) | `AVG` | `AllocateMessageQueueAveragely` |
//! | [`AveragelyByCircle`](AllocateStrategy::AveragelyByCircle) | `AVG_BY_CIRCLE` | `AllocateMessageQueueAveragelyByCircle` |
//! | [`ByConfig`](AllocateStrategy::ByConfig) | `CONFIG` | `AllocateMessageQueueByConfig` |
//! | [`ByMachineRoom`](AllocateStrategy::ByMachineRoom) | `MACHINE_ROOM` | `AllocateMessageQueueByMachineRoom` |
//! | [`MachineRoomNearby`](AllocateStrategy::MachineRoomNearby) | `MACHINE_ROOM_NEARBY-<inner>` | `AllocateMachineRoomNearby` |
//! | [`ConsistentHash`](AllocateStrategy::ConsistentHash) | `CONSISTENT_HASH` | `AllocateMessageQueueConsistentHash` |
//!
//! Both input lists are sorted here in Java's order (`String.compareTo` over
//! UTF-16 code units, not Rust's byte order), queues are deduplicated (Java holds
//! them in a set) and client ids are **not** (the broker may list one client
//! twice, and Java uses the first index).
//!
//! The module is pure computation: no clocks, no I/O, no randomness.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use md5::{Digest, Md5};

use crate::protocol::MessageQueue;

/// Java's default number of virtual nodes per client id on the consistent-hash
/// ring (`AllocateMessageQueueConsistentHash()`).
pub const DEFAULT_VIRTUAL_NODES: usize = 10;

/// How a consumer of a clustering group picks its share of a topic's queues.
///
/// Every member of a group must use the same strategy (with the same parameters),
/// or queues end up consumed twice or not at all. [`Averagely`](Self::Averagely) is
/// the Java default.
#[derive(Clone, Debug, Default)]
pub enum AllocateStrategy {
    /// Java `AVG`: each consumer takes one contiguous block of the sorted queues;
    /// the first `queues % consumers` consumers take one queue more.
    #[default]
    Averagely,
    /// Java `AVG_BY_CIRCLE`: the sorted queues are dealt round-robin, consumer `i`
    /// takes queues `i, i + m, i + 2m, …`.
    AveragelyByCircle,
    /// Java `CONFIG`: every caller gets exactly this list, whatever the topic, the
    /// queues and the consumers. Only useful when each instance is configured by hand.
    ByConfig(Vec<MessageQueue>),
    /// Java `MACHINE_ROOM` with this `consumeridcs` set: only queues whose broker
    /// name is `<room>@<name>` with `<room>` in the set are shared out; the others
    /// go to nobody.
    ByMachineRoom(Vec<String>),
    /// Java `MACHINE_ROOM_NEARBY-<inner>`: each consumer takes, with `inner`, its
    /// share of the queues of its own machine room; the queues of rooms that have no
    /// consumer are shared by `inner` among all consumers.
    MachineRoomNearby {
        /// The strategy applied within each room.
        inner: Box<Self>,
        /// Where brokers and consumers are deployed.
        resolver: Arc<dyn MachineRoomResolver>,
    },
    /// Java `CONSISTENT_HASH`: a ring of MD5 hashes of the client ids; a queue goes
    /// to the first client at or after its own hash.
    ConsistentHash {
        /// Ring entries per client id; Java's default is [`DEFAULT_VIRTUAL_NODES`].
        /// With 0 the ring is empty and nobody gets any queue.
        virtual_nodes: usize,
    },
}

/// Where brokers and consumers are deployed, for
/// [`AllocateStrategy::MachineRoomNearby`].
///
/// Must be deterministic and the same on every member of the group: every member
/// runs it over every queue and every client id. `None` or an empty room makes the
/// allocation fail (Java throws `IllegalArgumentException`).
pub trait MachineRoomResolver: Send + Sync + std::fmt::Debug {
    /// The machine room of the broker holding `queue` (Java `brokerDeployIn`).
    fn broker_deploy_in(&self, queue: &MessageQueue) -> Option<String>;
    /// The machine room of the consumer with this client id (Java `consumerDeployIn`).
    fn consumer_deploy_in(&self, client_id: &str) -> Option<String>;
}

/// Why a strategy could not compute an allocation.
///
/// These are the cases where Java's strategy throws; the rebalance then keeps the
/// topic's previous assignment (allocation.md §1.6). A consumer missing from the
/// consumer list is not an error: it gets no queues.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocateError {
    /// The own client id is empty.
    #[error("cannot allocate queues: own client id is empty")]
    EmptyOwnId,
    /// The topic has no queues.
    #[error("cannot allocate queues: the topic has no message queues")]
    NoQueues,
    /// The group has no consumers.
    #[error("cannot allocate queues: the consumer group lists no client ids")]
    NoConsumers,
    /// The machine-room resolver gave no (or an empty) room for a queue's broker.
    #[error("machine room resolver gave no room for the broker of queue {queue}")]
    NoBrokerRoom {
        /// The queue whose broker has no room.
        queue: MessageQueue,
    },
    /// The machine-room resolver gave no (or an empty) room for a consumer.
    #[error("machine room resolver gave no room for consumer {client_id}")]
    NoConsumerRoom {
        /// The client id without a room.
        client_id: String,
    },
}

impl AllocateStrategy {
    /// The Java strategy's `getName()`: `AVG`, `AVG_BY_CIRCLE`, `CONFIG`,
    /// `MACHINE_ROOM`, `MACHINE_ROOM_NEARBY-<inner name>` or `CONSISTENT_HASH`.
    ///
    /// Brokers show it in consumer connection info; it says nothing about the
    /// parameters (config list, rooms, resolver, virtual nodes).
    pub fn name(&self) -> String {
        match self {
            Self::Averagely => "AVG".to_owned(),
            Self::AveragelyByCircle => "AVG_BY_CIRCLE".to_owned(),
            Self::ByConfig(_) => "CONFIG".to_owned(),
            Self::ByMachineRoom(_) => "MACHINE_ROOM".to_owned(),
            Self::MachineRoomNearby { inner, .. } => {
                format!("MACHINE_ROOM_NEARBY-{}", inner.name())
            }
            Self::ConsistentHash { .. } => "CONSISTENT_HASH".to_owned(),
        }
    }

    /// Parses a strategy name as a user would configure it (ASCII case-insensitive,
    /// surrounding whitespace ignored).
    ///
    /// `AVG` (and its pyrocketmq alias `HASH`, which is AVG: allocation.md §6),
    /// `AVG_BY_CIRCLE`, and `CONSISTENT_HASH` (with [`DEFAULT_VIRTUAL_NODES`]).
    /// `CONFIG`, `MACHINE_ROOM` and `MACHINE_ROOM_NEARBY-…` need parameters, so
    /// they, like unknown names, give `None`: build those variants directly.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("AVG") || name.eq_ignore_ascii_case("HASH") {
            Some(Self::Averagely)
        } else if name.eq_ignore_ascii_case("AVG_BY_CIRCLE") {
            Some(Self::AveragelyByCircle)
        } else if name.eq_ignore_ascii_case("CONSISTENT_HASH") {
            Some(Self::ConsistentHash {
                virtual_nodes: DEFAULT_VIRTUAL_NODES,
            })
        } else {
            None
        }
    }

    /// The queues of `queues` that the consumer `own` takes, given the group's
    /// client ids `consumers`. Call it once per topic per rebalance round with the
    /// topic's readable queues and the broker's consumer list.
    ///
    /// Both inputs may come in any order: they are sorted here in Java's order
    /// (topic, broker name, queue id for queues; client ids as strings, both by
    /// UTF-16 code units). Duplicate queues are dropped; duplicate client ids are
    /// kept and the first index of `own` counts, as in Java.
    ///
    /// - `own` not in `consumers`: `Ok(vec![])`, so the topic's queues are dropped
    ///   (normal right after start, before the broker has seen our heartbeat).
    /// - Empty `own`, no queues or no consumers, or a machine-room resolver that
    ///   gives no room: `Err`, and the caller keeps its previous assignment.
    /// - [`ByConfig`](Self::ByConfig) runs none of these checks and always returns
    ///   its list.
    ///
    /// The result is in Java's queue order (`MessageQueue.compareTo`), without
    /// duplicates.
    pub fn allocate(
        &self,
        own: &str,
        queues: &[MessageQueue],
        consumers: &[String],
    ) -> Result<Vec<MessageQueue>, AllocateError> {
        let mut mq_all: Vec<&MessageQueue> = queues.iter().collect();
        mq_all.sort_by(|a, b| java_queue_cmp(a, b));
        mq_all.dedup();
        let mut cid_all: Vec<&str> = consumers.iter().map(String::as_str).collect();
        cid_all.sort_by(|a, b| java_str_cmp(a, b));
        let mut result = self.allocate_sorted(own, &mq_all, &cid_all)?;
        // CONFIG returns its list as configured and NEARBY concatenates per-room
        // results; Java applies the result as a set, so give it one order.
        result.sort_by(java_queue_cmp);
        result.dedup();
        Ok(result)
    }

    /// The strategy proper, over inputs already sorted in Java's order (and queues
    /// deduplicated). This is the Java `allocate(group, currentCID, mqAll, cidAll)`.
    fn allocate_sorted(
        &self,
        own: &str,
        mq_all: &[&MessageQueue],
        cid_all: &[&str],
    ) -> Result<Vec<MessageQueue>, AllocateError> {
        if let Self::ByConfig(list) = self {
            return Ok(list.clone());
        }
        let Some(index) = check(own, mq_all, cid_all)? else {
            return Ok(Vec::new());
        };
        let picked = match self {
            Self::Averagely => averagely(index, mq_all, cid_all.len()),
            Self::AveragelyByCircle => averagely_by_circle(index, mq_all, cid_all.len()),
            Self::ByMachineRoom(idcs) => by_machine_room(idcs, index, mq_all, cid_all.len()),
            Self::ConsistentHash { virtual_nodes } => {
                consistent_hash(*virtual_nodes, own, mq_all, cid_all)
            }
            Self::MachineRoomNearby { inner, resolver } => {
                return machine_room_nearby(inner, resolver.as_ref(), own, mq_all, cid_all);
            }
            // Handled above.
            Self::ByConfig(list) => return Ok(list.clone()),
        };
        Ok(picked.into_iter().cloned().collect())
    }
}

/// Java's `String.compareTo`: lexicographic over UTF-16 code units, a proper prefix
/// first.
///
/// Differs from Rust's `str` order (bytes, i.e. code points) only in that a
/// character at or above U+10000 sorts before one in U+E000..=U+FFFF.
pub(crate) fn java_str_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java's `MessageQueue.compareTo`: topic, then broker name (both by
/// [`java_str_cmp`]), then queue id.
///
/// Java computes the id comparison as `a - b`; ids are small and non-negative, so
/// this is numeric order (which, unlike the overflowing subtraction, is total).
pub(crate) fn java_queue_cmp(a: &MessageQueue, b: &MessageQueue) -> Ordering {
    java_str_cmp(&a.topic, &b.topic)
        .then_with(|| java_str_cmp(&a.broker_name, &b.broker_name))
        .then_with(|| a.queue_id.cmp(&b.queue_id))
}

/// `AbstractAllocateMessageQueueStrategy.check`: errors where Java throws, `None`
/// where Java logs "[BUG] … not in cidAll" and returns `[]`, and otherwise the
/// first index of `own` in `cid_all` (Java `indexOf`).
fn check(
    own: &str,
    mq_all: &[&MessageQueue],
    cid_all: &[&str],
) -> Result<Option<usize>, AllocateError> {
    if own.is_empty() {
        return Err(AllocateError::EmptyOwnId);
    }
    if mq_all.is_empty() {
        return Err(AllocateError::NoQueues);
    }
    if cid_all.is_empty() {
        return Err(AllocateError::NoConsumers);
    }
    Ok(cid_all.iter().position(|cid| *cid == own))
}

/// AVG (allocation.md §3.1): a contiguous block, the first `n % m` consumers one
/// queue more; `n - start` may be negative, which takes nothing.
fn averagely<'a>(index: usize, mq_all: &[&'a MessageQueue], m: usize) -> Vec<&'a MessageQueue> {
    let n = mq_all.len();
    let (Some(base), Some(rem)) = (n.checked_div(m), n.checked_rem(m)) else {
        return Vec::new();
    };
    let gets_extra = rem > 0 && index < rem;
    let size = if n <= m {
        1
    } else if gets_extra {
        base.saturating_add(1)
    } else {
        base
    };
    let start = if gets_extra {
        index.checked_mul(size)
    } else {
        index.checked_mul(size).and_then(|s| s.checked_add(rem))
    };
    let Some(start) = start else {
        return Vec::new();
    };
    let count = size.min(n.saturating_sub(start));
    start
        .checked_add(count)
        .and_then(|end| mq_all.get(start..end))
        .map(<[_]>::to_vec)
        .unwrap_or_default()
}

/// AVG_BY_CIRCLE (allocation.md §3.2): queues `index, index + m, index + 2m, …`.
fn averagely_by_circle<'a>(
    index: usize,
    mq_all: &[&'a MessageQueue],
    m: usize,
) -> Vec<&'a MessageQueue> {
    mq_all
        .iter()
        .skip(index)
        .step_by(m.max(1))
        .copied()
        .collect()
}

/// MACHINE_ROOM (allocation.md §3.4): keep queues of brokers named
/// `<room>@<name>` with `<room>` in `idcs`, give each consumer a block of
/// `|pre| / m`, then one each of the last `|pre| % m` to the first consumers.
fn by_machine_room<'a>(
    idcs: &[String],
    index: usize,
    mq_all: &[&'a MessageQueue],
    m: usize,
) -> Vec<&'a MessageQueue> {
    let pre: Vec<&MessageQueue> = mq_all
        .iter()
        .copied()
        .filter(|mq| match java_split_at_sign(&mq.broker_name).as_slice() {
            [room, _] => idcs.iter().any(|idc| idc == room),
            _ => false,
        })
        .collect();
    let (Some(q), Some(r)) = (pre.len().checked_div(m), pre.len().checked_rem(m)) else {
        return Vec::new();
    };
    let mut result: Vec<&MessageQueue> = index
        .checked_mul(q)
        .and_then(|start| Some(start..start.checked_add(q)?))
        .and_then(|block| pre.get(block))
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    if index < r {
        let tail = q.checked_mul(m).and_then(|k| k.checked_add(index));
        if let Some(mq) = tail.and_then(|k| pre.get(k)) {
            result.push(mq);
        }
    }
    result
}

/// Java `s.split("@")`: like Rust's `split('@')`, but trailing empty parts are
/// dropped when there was at least one separator (`"room@"` has 1 part, `"@"` has
/// 0, `"@b"` has 2: `""` and `"b"`).
fn java_split_at_sign(s: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = s.split('@').collect();
    if parts.len() > 1 {
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
    }
    parts
}

/// A machine room as a sorted-map key, in Java `TreeMap<String, _>` order.
#[derive(Debug, PartialEq, Eq)]
struct Room(String);

impl Ord for Room {
    fn cmp(&self, other: &Self) -> Ordering {
        java_str_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for Room {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `StringUtils.isNoneEmpty` on a resolver answer.
fn non_empty_room(room: Option<String>) -> Option<Room> {
    room.filter(|r| !r.is_empty()).map(Room)
}

/// MACHINE_ROOM_NEARBY (allocation.md §3.5).
fn machine_room_nearby(
    inner: &AllocateStrategy,
    resolver: &dyn MachineRoomResolver,
    own: &str,
    mq_all: &[&MessageQueue],
    cid_all: &[&str],
) -> Result<Vec<MessageQueue>, AllocateError> {
    let mut queues_by_room: BTreeMap<Room, Vec<&MessageQueue>> = BTreeMap::new();
    for &mq in mq_all {
        let room = non_empty_room(resolver.broker_deploy_in(mq))
            .ok_or_else(|| AllocateError::NoBrokerRoom { queue: mq.clone() })?;
        queues_by_room.entry(room).or_default().push(mq);
    }
    let mut consumers_by_room: BTreeMap<Room, Vec<&str>> = BTreeMap::new();
    for &cid in cid_all {
        let room = non_empty_room(resolver.consumer_deploy_in(cid)).ok_or_else(|| {
            AllocateError::NoConsumerRoom {
                client_id: cid.to_owned(),
            }
        })?;
        consumers_by_room.entry(room).or_default().push(cid);
    }
    let my_room = non_empty_room(resolver.consumer_deploy_in(own)).ok_or_else(|| {
        AllocateError::NoConsumerRoom {
            client_id: own.to_owned(),
        }
    })?;

    let mut result = Vec::new();
    // 1. Our own room's queues, shared among our room's consumers.
    if let Some(queues) = queues_by_room.remove(&my_room) {
        if !queues.is_empty() {
            let cids = consumers_by_room
                .get(&my_room)
                .map(Vec::as_slice)
                .unwrap_or_default();
            result.extend(inner.allocate_sorted(own, &queues, cids)?);
        }
    }
    // 2. Rooms without consumers, shared among everybody.
    for (room, queues) in &queues_by_room {
        if !consumers_by_room.contains_key(room) {
            result.extend(inner.allocate_sorted(own, queues, cid_all)?);
        }
    }
    Ok(result)
}

/// The hash of `ConsistentHashRouter`'s default `MD5Hash`: the first 4 bytes of
/// MD5 over the UTF-8 bytes, big-endian unsigned.
fn md5_hash(key: &str) -> u32 {
    let digest = Md5::digest(key.as_bytes());
    digest
        .as_slice()
        .first_chunk::<4>()
        .map_or(0, |bytes| u32::from_be_bytes(*bytes))
}

/// Java `MessageQueue.toString()`, the key a queue is hashed by.
fn java_queue_key(mq: &MessageQueue) -> String {
    format!(
        "MessageQueue [topic={}, brokerName={}, queueId={}]",
        mq.topic, mq.broker_name, mq.queue_id
    )
}

/// CONSISTENT_HASH (allocation.md §3.6).
fn consistent_hash<'a>(
    virtual_nodes: usize,
    own: &str,
    mq_all: &[&'a MessageQueue],
    cid_all: &[&str],
) -> Vec<&'a MessageQueue> {
    // Ring: hash -> client id; an insert on an existing hash replaces (later wins).
    let mut ring: BTreeMap<u32, &str> = BTreeMap::new();
    // How many ring entries each client id holds now (Java `getExistingReplicas`).
    let mut held: HashMap<&str, usize> = HashMap::new();
    for &cid in cid_all {
        let existing = held.get(cid).copied().unwrap_or(0);
        for k in 0..virtual_nodes {
            let Some(replica) = existing.checked_add(k) else {
                break;
            };
            if let Some(old) = ring.insert(md5_hash(&format!("{cid}-{replica}")), cid) {
                if let Some(count) = held.get_mut(old) {
                    *count = count.saturating_sub(1);
                }
            }
            let count = held.entry(cid).or_insert(0);
            *count = count.saturating_add(1);
        }
    }
    mq_all
        .iter()
        .copied()
        .filter(|mq| {
            let hash = md5_hash(&java_queue_key(mq));
            let owner = ring
                .range(hash..)
                .next()
                .or_else(|| ring.iter().next())
                .map(|(_, cid)| *cid);
            owner == Some(own)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn qs(topic: &str, broker: &str, ids: impl IntoIterator<Item = i32>) -> Vec<MessageQueue> {
        ids.into_iter()
            .map(|id| MessageQueue::new(topic, broker, id))
            .collect()
    }

    fn cids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Asserts the exact result of every listed consumer.
    fn assert_alloc(
        strategy: &AllocateStrategy,
        queues: &[MessageQueue],
        consumers: &[String],
        expected: &[(&str, Vec<MessageQueue>)],
    ) {
        for (own, want) in expected {
            let got = strategy.allocate(own, queues, consumers).unwrap();
            assert_eq!(&got, want, "{} for {own}", strategy.name());
        }
    }

    // ---- sets of allocation.md §4 ----

    const T: &str = "topic";

    fn s1() -> (Vec<MessageQueue>, Vec<String>) {
        (
            qs(T, "brokerName", 0..10),
            cids(&["CID_PREFIX0", "CID_PREFIX1", "CID_PREFIX2", "CID_PREFIX3"]),
        )
    }
    fn s1q(ids: impl IntoIterator<Item = i32>) -> Vec<MessageQueue> {
        qs(T, "brokerName", ids)
    }

    const S2_10: &str = "192.168.0.10@1001";
    const S2_11: &str = "192.168.0.11@1003";
    const S2_9: &str = "192.168.0.9@1002";

    fn s2() -> (Vec<MessageQueue>, Vec<String>) {
        // Given out of order on purpose: sorting is the strategy's job.
        let mut queues = qs("TopicTest", "broker-b", [3, 1, 2, 0]);
        queues.extend(qs("TopicTest", "broker-a", [2, 0, 3, 1]));
        (queues, cids(&[S2_9, S2_11, S2_10]))
    }
    /// `a:0` / `b:3` notation of allocation.md for set S2.
    fn s2q(spec: &[&str]) -> Vec<MessageQueue> {
        spec.iter()
            .map(|s| {
                let (b, id) = s.split_once(':').unwrap();
                MessageQueue::new("TopicTest", format!("broker-{b}"), id.parse().unwrap())
            })
            .collect()
    }

    /// allocation.md leaves S3's topic open; H4 is reproduced with S2's `TopicTest`.
    const S3_TOPIC: &str = "TopicTest";

    fn s3() -> (Vec<MessageQueue>, Vec<String>) {
        (
            qs(S3_TOPIC, "broker-a", 0..3),
            cids(&["CID-0", "CID-1", "CID-2", "CID-3", "CID-4"]),
        )
    }
    fn s3q(ids: impl IntoIterator<Item = i32>) -> Vec<MessageQueue> {
        qs(S3_TOPIC, "broker-a", ids)
    }

    fn s4() -> (Vec<MessageQueue>, Vec<String>) {
        (qs(T, "broker-a", 0..4), cids(&["10.0.0.1@main"]))
    }

    // ---- AVG ----

    #[test]
    fn a1_avg_s1() {
        let (queues, consumers) = s1();
        assert_alloc(
            &AllocateStrategy::Averagely,
            &queues,
            &consumers,
            &[
                ("CID_PREFIX0", s1q([0, 1, 2])),
                ("CID_PREFIX1", s1q([3, 4, 5])),
                ("CID_PREFIX2", s1q([6, 7])),
                ("CID_PREFIX3", s1q([8, 9])),
                ("NOT_IN_LIST", vec![]),
            ],
        );
    }

    #[test]
    fn a2_avg_s2() {
        let (queues, consumers) = s2();
        assert_alloc(
            &AllocateStrategy::Averagely,
            &queues,
            &consumers,
            &[
                (S2_10, s2q(&["a:0", "a:1", "a:2"])),
                (S2_11, s2q(&["a:3", "b:0", "b:1"])),
                (S2_9, s2q(&["b:2", "b:3"])),
            ],
        );
    }

    #[test]
    fn a3_avg_s3() {
        let (queues, consumers) = s3();
        assert_alloc(
            &AllocateStrategy::Averagely,
            &queues,
            &consumers,
            &[
                ("CID-0", s3q([0])),
                ("CID-1", s3q([1])),
                ("CID-2", s3q([2])),
                ("CID-3", vec![]),
                ("CID-4", vec![]),
            ],
        );
    }

    #[test]
    fn a4_avg_s4() {
        let (queues, consumers) = s4();
        assert_alloc(
            &AllocateStrategy::Averagely,
            &queues,
            &consumers,
            &[("10.0.0.1@main", queues.clone())],
        );
    }

    #[test]
    fn a5_avg_duplicate_cid_leaves_a_queue_unowned() {
        let queues = qs("T", "b", 0..6);
        let consumers = cids(&["B", "C", "A", "B"]);
        assert_alloc(
            &AllocateStrategy::Averagely,
            &queues,
            &consumers,
            &[
                ("A", qs("T", "b", [0, 1])),
                ("B", qs("T", "b", [2, 3])),
                ("C", qs("T", "b", [5])),
            ],
        );
    }

    // ---- AVG_BY_CIRCLE ----

    #[test]
    fn c1_circle_s1() {
        let (queues, consumers) = s1();
        assert_alloc(
            &AllocateStrategy::AveragelyByCircle,
            &queues,
            &consumers,
            &[
                ("CID_PREFIX0", s1q([0, 4, 8])),
                ("CID_PREFIX1", s1q([1, 5, 9])),
                ("CID_PREFIX2", s1q([2, 6])),
                ("CID_PREFIX3", s1q([3, 7])),
                ("NOT_IN_LIST", vec![]),
            ],
        );
    }

    #[test]
    fn c2_circle_s2() {
        let (queues, consumers) = s2();
        assert_alloc(
            &AllocateStrategy::AveragelyByCircle,
            &queues,
            &consumers,
            &[
                (S2_10, s2q(&["a:0", "a:3", "b:2"])),
                (S2_11, s2q(&["a:1", "b:0", "b:3"])),
                (S2_9, s2q(&["a:2", "b:1"])),
            ],
        );
    }

    #[test]
    fn c3_circle_s3() {
        let (queues, consumers) = s3();
        assert_alloc(
            &AllocateStrategy::AveragelyByCircle,
            &queues,
            &consumers,
            &[
                ("CID-0", s3q([0])),
                ("CID-1", s3q([1])),
                ("CID-2", s3q([2])),
                ("CID-3", vec![]),
                ("CID-4", vec![]),
            ],
        );
    }

    #[test]
    fn c4_circle_s4() {
        let (queues, consumers) = s4();
        assert_alloc(
            &AllocateStrategy::AveragelyByCircle,
            &queues,
            &consumers,
            &[("10.0.0.1@main", queues.clone())],
        );
    }

    // ---- CONFIG ----

    #[test]
    fn f1_config_returns_the_list_for_everyone() {
        let list = qs(T, "brokerName", 0..4);
        let strategy = AllocateStrategy::ByConfig(list.clone());
        let (queues, consumers) = s1();
        let consumers = &consumers[..2];
        assert_alloc(
            &strategy,
            &queues,
            consumers,
            &[
                ("CID_PREFIX0", list.clone()),
                ("CID_PREFIX1", list.clone()),
                ("NOT_IN_LIST", list.clone()),
            ],
        );
        // CONFIG runs no check at all.
        assert_eq!(strategy.allocate("", &[], &[]).unwrap(), list);
        assert_eq!(
            AllocateStrategy::ByConfig(vec![])
                .allocate("x", &queues, consumers)
                .unwrap(),
            vec![]
        );
    }

    // ---- MACHINE_ROOM ----

    #[test]
    fn m1_machine_room() {
        let mut queues = qs(T, "room1@broker-a", 0..5);
        queues.extend(qs(T, "room2@broker-b", 5..10));
        let strategy = AllocateStrategy::ByMachineRoom(vec!["room1".into()]);
        assert_alloc(
            &strategy,
            &queues,
            &cids(&["CID_PREFIX0", "CID_PREFIX1"]),
            &[
                ("CID_PREFIX0", qs(T, "room1@broker-a", [0, 1, 4])),
                ("CID_PREFIX1", qs(T, "room1@broker-a", [2, 3])),
            ],
        );
    }

    #[test]
    fn m2_machine_room_java_split() {
        let mut queues = qs(T, "room1@broker-a", 0..4);
        queues.extend(qs(T, "room2@broker-b", 0..4));
        queues.extend(qs(T, "broker-c", 0..2));
        queues.extend(qs(T, "room3@broker-d", 0..2));
        queues.extend(qs(T, "room1@x@y", [0]));
        queues.extend(qs(T, "room2@", [0]));
        let strategy = AllocateStrategy::ByMachineRoom(vec!["room1".into(), "room2".into()]);
        let a = |ids: &[i32]| qs(T, "room1@broker-a", ids.iter().copied());
        let b = |ids: &[i32]| qs(T, "room2@broker-b", ids.iter().copied());
        assert_alloc(
            &strategy,
            &queues,
            &cids(&["c2", "c0", "c1"]),
            &[
                ("c0", [a(&[0, 1]), b(&[2])].concat()),
                ("c1", [a(&[2, 3]), b(&[3])].concat()),
                ("c2", b(&[0, 1])),
            ],
        );
    }

    #[test]
    fn m3_machine_room_remainder_from_the_tail() {
        let strategy = AllocateStrategy::ByMachineRoom(vec!["room1".into()]);
        let queues = qs(T, "room1@b", 0..7);
        assert_alloc(
            &strategy,
            &queues,
            &cids(&["c0", "c1", "c2"]),
            &[
                ("c0", qs(T, "room1@b", [0, 1, 6])),
                ("c1", qs(T, "room1@b", [2, 3])),
                ("c2", qs(T, "room1@b", [4, 5])),
            ],
        );
    }

    #[test]
    fn m4_machine_room_fewer_queues_than_consumers() {
        let strategy = AllocateStrategy::ByMachineRoom(vec!["room1".into()]);
        let queues = qs(T, "room1@b", 0..2);
        assert_alloc(
            &strategy,
            &queues,
            &cids(&["c0", "c1", "c2"]),
            &[
                ("c0", qs(T, "room1@b", [0])),
                ("c1", qs(T, "room1@b", [1])),
                ("c2", vec![]),
            ],
        );
    }

    #[test]
    fn m5_machine_room_no_match() {
        let strategy = AllocateStrategy::ByMachineRoom(vec!["room1".into()]);
        let mut queues = qs(T, "room2@b", 0..4);
        queues.extend(qs(T, "broker-a", 0..4));
        queues.extend(qs(T, "room1@", 0..4));
        queues.extend(qs(T, "room1@a@b", 0..4));
        assert_alloc(
            &strategy,
            &queues,
            &cids(&["c0", "c1", "c2"]),
            &[("c0", vec![]), ("c1", vec![]), ("c2", vec![])],
        );
    }

    #[test]
    fn java_split_semantics() {
        assert_eq!(java_split_at_sign("room2@"), vec!["room2"]);
        assert_eq!(java_split_at_sign("@b"), vec!["", "b"]);
        assert_eq!(java_split_at_sign("a@b@c"), vec!["a", "b", "c"]);
        assert_eq!(java_split_at_sign("@"), Vec::<&str>::new());
        assert_eq!(java_split_at_sign("@@"), Vec::<&str>::new());
        assert_eq!(java_split_at_sign("a@@"), vec!["a"]);
        assert_eq!(java_split_at_sign(""), vec![""]);
        assert_eq!(java_split_at_sign("abc"), vec!["abc"]);
        assert_eq!(java_split_at_sign("a@b"), vec!["a", "b"]);
        // An empty room in consumeridcs matches "@b".
        let strategy = AllocateStrategy::ByMachineRoom(vec![String::new()]);
        let queues = [qs(T, "@b", [0]), qs(T, "@", [0])].concat();
        assert_eq!(
            strategy.allocate("c0", &queues, &cids(&["c0"])).unwrap(),
            qs(T, "@b", [0])
        );
    }

    // ---- MACHINE_ROOM_NEARBY ----

    /// The Java test's resolver: the text before the first `-`.
    #[derive(Debug)]
    struct PrefixResolver;

    impl MachineRoomResolver for PrefixResolver {
        fn broker_deploy_in(&self, queue: &MessageQueue) -> Option<String> {
            queue.broker_name.split('-').next().map(str::to_owned)
        }
        fn consumer_deploy_in(&self, client_id: &str) -> Option<String> {
            client_id.split('-').next().map(str::to_owned)
        }
    }

    fn nearby(inner: AllocateStrategy) -> AllocateStrategy {
        AllocateStrategy::MachineRoomNearby {
            inner: Box::new(inner),
            resolver: Arc::new(PrefixResolver),
        }
    }

    fn idc(room: u8, ids: impl IntoIterator<Item = i32>) -> Vec<MessageQueue> {
        qs(T, &format!("IDC{room}-brokerName"), ids)
    }

    fn n1_queues() -> Vec<MessageQueue> {
        [idc(2, 0..4), idc(1, 0..4)].concat()
    }

    #[test]
    fn n1_nearby_avg() {
        assert_alloc(
            &nearby(AllocateStrategy::Averagely),
            &n1_queues(),
            &cids(&["IDC2-CID-0", "IDC1-CID-1", "IDC1-CID-0"]),
            &[
                ("IDC1-CID-0", idc(1, [0, 1])),
                ("IDC1-CID-1", idc(1, [2, 3])),
                ("IDC2-CID-0", idc(2, 0..4)),
                ("IDC9-CID-0", vec![]),
            ],
        );
    }

    #[test]
    fn n2_nearby_avg_room_without_consumers() {
        let queues = [n1_queues(), idc(3, 0..3)].concat();
        assert_alloc(
            &nearby(AllocateStrategy::Averagely),
            &queues,
            &cids(&["IDC1-CID-0", "IDC1-CID-1", "IDC2-CID-0"]),
            &[
                ("IDC1-CID-0", [idc(1, [0, 1]), idc(3, [0])].concat()),
                ("IDC1-CID-1", [idc(1, [2, 3]), idc(3, [1])].concat()),
                ("IDC2-CID-0", [idc(2, 0..4), idc(3, [2])].concat()),
            ],
        );
    }

    #[test]
    fn n3_nearby_avg_consumer_room_without_queues() {
        assert_alloc(
            &nearby(AllocateStrategy::Averagely),
            &n1_queues(),
            &cids(&["IDC1-CID-0", "IDC3-CID-0"]),
            &[
                ("IDC1-CID-0", [idc(1, 0..4), idc(2, [0, 1])].concat()),
                ("IDC3-CID-0", idc(2, [2, 3])),
            ],
        );
    }

    #[test]
    fn n4_nearby_circle() {
        let strategy = nearby(AllocateStrategy::AveragelyByCircle);
        assert_eq!(strategy.name(), "MACHINE_ROOM_NEARBY-AVG_BY_CIRCLE");
        let queues = [n1_queues(), idc(3, 0..3)].concat();
        assert_alloc(
            &strategy,
            &queues,
            &cids(&["IDC1-CID-0", "IDC1-CID-1", "IDC2-CID-0"]),
            &[
                ("IDC1-CID-0", [idc(1, [0, 2]), idc(3, [0])].concat()),
                ("IDC1-CID-1", [idc(1, [1, 3]), idc(3, [1])].concat()),
                ("IDC2-CID-0", [idc(2, 0..4), idc(3, [2])].concat()),
            ],
        );
    }

    /// Rooms from a table; unknown brokers or consumers have none.
    #[derive(Debug)]
    struct TableResolver;

    impl MachineRoomResolver for TableResolver {
        fn broker_deploy_in(&self, queue: &MessageQueue) -> Option<String> {
            match queue.broker_name.as_str() {
                "known" => Some("r1".into()),
                "empty" => Some(String::new()),
                _ => None,
            }
        }
        fn consumer_deploy_in(&self, client_id: &str) -> Option<String> {
            (client_id == "c-known").then(|| "r1".to_owned())
        }
    }

    #[test]
    fn nearby_resolver_errors() {
        let strategy = AllocateStrategy::MachineRoomNearby {
            inner: Box::new(AllocateStrategy::Averagely),
            resolver: Arc::new(TableResolver),
        };
        let known = qs(T, "known", [0]);
        let ok = cids(&["c-known"]);
        assert_eq!(strategy.allocate("c-known", &known, &ok).unwrap(), known);
        let missing = [known.clone(), qs(T, "other", [0])].concat();
        assert_eq!(
            strategy.allocate("c-known", &missing, &ok),
            Err(AllocateError::NoBrokerRoom {
                queue: MessageQueue::new(T, "other", 0)
            })
        );
        let empty = [known.clone(), qs(T, "empty", [1])].concat();
        assert_eq!(
            strategy.allocate("c-known", &empty, &ok),
            Err(AllocateError::NoBrokerRoom {
                queue: MessageQueue::new(T, "empty", 1)
            })
        );
        assert_eq!(
            strategy.allocate("c-known", &known, &cids(&["c-known", "c-x"])),
            Err(AllocateError::NoConsumerRoom {
                client_id: "c-x".into()
            })
        );
        // The common check comes first: not a member, nothing resolved.
        assert_eq!(strategy.allocate("c-x", &missing, &ok).unwrap(), vec![]);
        assert!(AllocateError::NoConsumerRoom {
            client_id: "c-x".into()
        }
        .to_string()
        .contains("c-x"));
    }

    // ---- CONSISTENT_HASH ----

    fn hash(virtual_nodes: usize) -> AllocateStrategy {
        AllocateStrategy::ConsistentHash { virtual_nodes }
    }

    #[test]
    fn h1_md5_hash_values() {
        let ring = [
            ("CID-1-0", 0x4229_c993_u32, 1_110_034_835_u32),
            ("CID-1-1", 0x4440_1f7a, 1_145_053_050),
            ("CID-0-0", 0x7147_9af9, 1_900_518_137),
            ("CID-1-2", 0x759c_b478, 1_973_204_088),
            ("CID-0-1", 0x9ba7_2d02, 2_611_424_514),
            ("CID-0-2", 0xa006_7ebf, 2_684_780_223),
        ];
        for (key, hex, dec) in ring {
            assert_eq!(hex, dec);
            assert_eq!(md5_hash(key), dec, "{key}");
        }
        let queues = [
            (0, 0x8174_4117_u32, 2_171_879_703_u32),
            (1, 0xd7ed_6ff6, 3_622_662_134),
            (2, 0x2470_c278, 611_369_592),
            (3, 0x56b4_37f6, 1_454_651_382),
        ];
        for (id, hex, dec) in queues {
            let key = java_queue_key(&MessageQueue::new("topic_test", "brokerName", id));
            assert_eq!(
                key,
                format!("MessageQueue [topic=topic_test, brokerName=brokerName, queueId={id}]")
            );
            assert_eq!(hex, dec);
            assert_eq!(md5_hash(&key), dec, "{key}");
        }
    }

    #[test]
    fn h1_consistent_hash_three_vnodes() {
        let queues = qs("topic_test", "brokerName", 0..4);
        assert_alloc(
            &hash(3),
            &queues,
            &cids(&["CID-1", "CID-0"]),
            &[
                ("CID-0", qs("topic_test", "brokerName", [0, 3])),
                ("CID-1", qs("topic_test", "brokerName", [1, 2])),
            ],
        );
    }

    #[test]
    fn h2_consistent_hash_s1() {
        let (queues, consumers) = s1();
        assert_alloc(
            &hash(DEFAULT_VIRTUAL_NODES),
            &queues,
            &consumers,
            &[
                ("CID_PREFIX0", s1q([1, 6, 7, 8, 9])),
                ("CID_PREFIX1", s1q([0, 3])),
                ("CID_PREFIX2", s1q([2, 5])),
                ("CID_PREFIX3", s1q([4])),
                ("NOT_IN_LIST", vec![]),
            ],
        );
    }

    #[test]
    fn h3_consistent_hash_s2() {
        let (queues, consumers) = s2();
        assert_alloc(
            &hash(10),
            &queues,
            &consumers,
            &[
                (S2_10, s2q(&["a:0", "a:1", "b:3"])),
                (S2_11, s2q(&["a:2", "a:3", "b:0", "b:2"])),
                (S2_9, s2q(&["b:1"])),
            ],
        );
    }

    #[test]
    fn h4_consistent_hash_s3() {
        let (queues, consumers) = s3();
        assert_alloc(
            &hash(10),
            &queues,
            &consumers,
            &[
                ("CID-0", vec![]),
                ("CID-1", vec![]),
                ("CID-2", s3q([1])),
                ("CID-3", s3q([0, 2])),
                ("CID-4", vec![]),
            ],
        );
    }

    #[test]
    fn h5_consistent_hash_single_consumer_and_empty_ring() {
        let (queues, consumers) = s4();
        assert_alloc(
            &hash(10),
            &queues,
            &consumers,
            &[("10.0.0.1@main", queues.clone())],
        );
        assert_alloc(&hash(0), &queues, &consumers, &[("10.0.0.1@main", vec![])]);
        let (queues, consumers) = s1();
        for cid in &consumers {
            assert_eq!(hash(0).allocate(cid, &queues, &consumers).unwrap(), vec![]);
        }
    }

    #[test]
    fn h6_consistent_hash_three_vnodes_ten_queues() {
        let q = |ids: &[i32]| qs("topic_test", "brokerName", ids.iter().copied());
        assert_alloc(
            &hash(3),
            &q(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            &cids(&["CID-0", "CID-1", "CID-2", "CID-3"]),
            &[
                ("CID-0", q(&[3, 5, 8])),
                ("CID-1", q(&[2])),
                ("CID-2", q(&[4])),
                ("CID-3", q(&[0, 1, 6, 7, 9])),
            ],
        );
    }

    #[test]
    fn h7_consistent_hash_duplicate_cid_continues_numbering() {
        // allocation.md names neither topic nor broker here; topic `T`, broker `b`
        // reproduce the vector (the hash key contains both).
        let queues = qs("T", "b", 0..6);
        assert_alloc(
            &hash(10),
            &queues,
            &cids(&["B", "A", "B"]),
            &[
                ("A", qs("T", "b", [0, 3, 4])),
                ("B", qs("T", "b", [1, 2, 5])),
            ],
        );
        // Without the `-10`… numbering, the second B would add nothing.
        let distinct = hash(10).allocate("A", &queues, &cids(&["A", "B"])).unwrap();
        assert_ne!(distinct, qs("T", "b", [0, 3, 4]));
    }

    // ---- common check ----

    #[test]
    fn common_check_errors() {
        let (queues, consumers) = s1();
        let strategies = [
            AllocateStrategy::Averagely,
            AllocateStrategy::AveragelyByCircle,
            AllocateStrategy::ByMachineRoom(vec!["room1".into()]),
            nearby(AllocateStrategy::Averagely),
            hash(10),
        ];
        for s in &strategies {
            assert_eq!(
                s.allocate("", &queues, &consumers),
                Err(AllocateError::EmptyOwnId)
            );
            assert_eq!(s.allocate("", &[], &[]), Err(AllocateError::EmptyOwnId));
            assert_eq!(
                s.allocate("CID_PREFIX0", &[], &consumers),
                Err(AllocateError::NoQueues)
            );
            assert_eq!(
                s.allocate("CID_PREFIX0", &[], &[]),
                Err(AllocateError::NoQueues)
            );
            assert_eq!(
                s.allocate("CID_PREFIX0", &queues, &[]),
                Err(AllocateError::NoConsumers)
            );
            assert_eq!(s.allocate("nobody", &queues, &consumers), Ok(vec![]));
        }
    }

    #[test]
    fn duplicate_queues_are_one_queue() {
        let (queues, consumers) = s1();
        let doubled = [queues.clone(), queues.clone()].concat();
        for cid in &consumers {
            assert_eq!(
                AllocateStrategy::Averagely.allocate(cid, &doubled, &consumers),
                AllocateStrategy::Averagely.allocate(cid, &queues, &consumers)
            );
        }
    }

    // ---- Java string order (§1.5) ----

    #[test]
    fn utf16_sort_example() {
        let mut ids = vec!["Ａ@x", "😀@x", "a@x", "B@x"];
        ids.sort_by(|a, b| java_str_cmp(a, b));
        assert_eq!(ids, ["B@x", "a@x", "😀@x", "Ａ@x"]);
        ids.sort();
        assert_eq!(
            ids,
            ["B@x", "a@x", "Ａ@x", "😀@x"],
            "Rust byte order differs"
        );
        assert_eq!(java_str_cmp("ab", "abc"), Ordering::Less);
        assert_eq!(java_str_cmp("abc", "abc"), Ordering::Equal);
        assert_eq!(java_str_cmp("\u{FFFF}", "\u{10000}"), Ordering::Greater);
        assert_eq!(java_str_cmp("\u{D7FF}", "\u{10000}"), Ordering::Less);
    }

    #[test]
    fn utf16_order_drives_allocation() {
        let queues = qs(T, "b", 0..4);
        let consumers = cids(&["Ａ@x", "😀@x", "a@x", "B@x"]);
        assert_alloc(
            &AllocateStrategy::Averagely,
            &queues,
            &consumers,
            &[
                ("B@x", qs(T, "b", [0])),
                ("a@x", qs(T, "b", [1])),
                ("😀@x", qs(T, "b", [2])),
                ("Ａ@x", qs(T, "b", [3])),
            ],
        );
        // Broker names sort the same way.
        let queues = [qs(T, "Ａ", [0]), qs(T, "😀", [0])].concat();
        let got = AllocateStrategy::Averagely
            .allocate("c0", &queues, &cids(&["c1", "c0"]))
            .unwrap();
        assert_eq!(got, qs(T, "😀", [0]));
    }

    #[test]
    fn java_queue_order() {
        let mut queues = vec![
            MessageQueue::new("b", "a", 0),
            MessageQueue::new("a", "b", 10),
            MessageQueue::new("a", "b", 9),
            MessageQueue::new("a", "Ａ", 0),
            MessageQueue::new("a", "😀", 0),
        ];
        queues.sort_by(java_queue_cmp);
        assert_eq!(
            queues,
            [
                MessageQueue::new("a", "b", 9),
                MessageQueue::new("a", "b", 10),
                MessageQueue::new("a", "😀", 0),
                MessageQueue::new("a", "Ａ", 0),
                MessageQueue::new("b", "a", 0),
            ]
        );
    }

    // ---- names ----

    #[test]
    fn names() {
        assert_eq!(AllocateStrategy::default().name(), "AVG");
        assert_eq!(AllocateStrategy::AveragelyByCircle.name(), "AVG_BY_CIRCLE");
        assert_eq!(AllocateStrategy::ByConfig(vec![]).name(), "CONFIG");
        assert_eq!(
            AllocateStrategy::ByMachineRoom(vec![]).name(),
            "MACHINE_ROOM"
        );
        assert_eq!(
            nearby(AllocateStrategy::Averagely).name(),
            "MACHINE_ROOM_NEARBY-AVG"
        );
        assert_eq!(
            nearby(nearby(hash(3))).name(),
            "MACHINE_ROOM_NEARBY-MACHINE_ROOM_NEARBY-CONSISTENT_HASH"
        );
        assert_eq!(hash(3).name(), "CONSISTENT_HASH");
    }

    #[test]
    fn from_name_round_trips() {
        for s in [
            AllocateStrategy::Averagely,
            AllocateStrategy::AveragelyByCircle,
            hash(DEFAULT_VIRTUAL_NODES),
        ] {
            let name = s.name();
            let parsed = AllocateStrategy::from_name(&name).unwrap();
            assert_eq!(parsed.name(), name);
            let lower = AllocateStrategy::from_name(&name.to_lowercase()).unwrap();
            assert_eq!(lower.name(), name);
        }
        assert!(matches!(
            AllocateStrategy::from_name("consistent_hash"),
            Some(AllocateStrategy::ConsistentHash {
                virtual_nodes: DEFAULT_VIRTUAL_NODES
            })
        ));
        assert!(matches!(
            AllocateStrategy::from_name("HASH"),
            Some(AllocateStrategy::Averagely)
        ));
        assert!(matches!(
            AllocateStrategy::from_name(" Hash "),
            Some(AllocateStrategy::Averagely)
        ));
        assert!(matches!(
            AllocateStrategy::from_name("avg"),
            Some(AllocateStrategy::Averagely)
        ));
        for needs_params in [
            "CONFIG",
            "MACHINE_ROOM",
            "MACHINE_ROOM_NEARBY",
            "MACHINE_ROOM_NEARBY-AVG",
            "",
            "AVGX",
            "AVG_BY_CIRCLE2",
        ] {
            assert!(
                AllocateStrategy::from_name(needs_params).is_none(),
                "{needs_params}"
            );
        }
    }

    // ---- properties ----

    /// Distinct client ids, some non-ASCII (including the §1.5 characters).
    fn arb_cids() -> impl Strategy<Value = Vec<String>> {
        prop::collection::hash_set("[a-cA-C0-9.@\u{e9}\u{ff21}\u{e000}\u{1f600}]{1,6}", 1..20)
            .prop_map(|set| set.into_iter().collect::<Vec<_>>())
            .prop_shuffle()
    }

    /// 1..64 distinct queues over 1..4 brokers (some non-ASCII) and two topics.
    fn arb_queues() -> impl Strategy<Value = Vec<MessageQueue>> {
        const BROKERS: [&str; 4] = ["broker-a", "broker-\u{ff21}", "broker-\u{1f600}", "b"];
        (1..=4usize)
            .prop_flat_map(|brokers| {
                prop::collection::hash_set((0..2usize, 0..brokers, 0..32i32), 1..64)
            })
            .prop_map(|set| {
                set.into_iter()
                    .map(|(t, b, id)| {
                        let topic = if t == 0 { "TopicTest" } else { "%RETRY%group" };
                        MessageQueue::new(topic, BROKERS.get(b).copied().unwrap_or("b"), id)
                    })
                    .collect::<Vec<_>>()
            })
            .prop_shuffle()
    }

    /// Allocates for every consumer and checks each queue has exactly one owner.
    fn assert_partition(
        strategy: &AllocateStrategy,
        queues: &[MessageQueue],
        consumers: &[String],
    ) -> Result<BTreeMap<String, Vec<MessageQueue>>, TestCaseError> {
        let mut seen = BTreeSet::new();
        let mut shares = BTreeMap::new();
        for cid in consumers {
            let share = strategy.allocate(cid, queues, consumers).unwrap();
            for mq in &share {
                prop_assert!(
                    seen.insert(mq.clone()),
                    "{mq} given twice by {}",
                    strategy.name()
                );
            }
            shares.insert(cid.clone(), share);
        }
        let all: BTreeSet<MessageQueue> = queues.iter().cloned().collect();
        prop_assert_eq!(seen, all, "{} leaves queues unowned", strategy.name());
        Ok(shares)
    }

    proptest! {
        #[test]
        fn strategies_partition_and_ignore_input_order(
            consumers in arb_cids(),
            queues in arb_queues(),
            virtual_nodes in 1..16usize,
            seed in any::<u64>(),
        ) {
            let strategies = [
                AllocateStrategy::Averagely,
                AllocateStrategy::AveragelyByCircle,
                hash(virtual_nodes),
            ];
            // A different order of the same inputs: rotate and reverse by the seed.
            let mut queues2 = queues.clone();
            let mut consumers2 = consumers.clone();
            let rot_q = usize::try_from(seed % 64).unwrap() % queues2.len();
            let rot_c = usize::try_from(seed / 64 % 64).unwrap() % consumers2.len();
            queues2.rotate_left(rot_q);
            consumers2.rotate_left(rot_c);
            if seed % 2 == 0 {
                queues2.reverse();
            } else {
                consumers2.reverse();
            }
            for strategy in &strategies {
                let shares = assert_partition(strategy, &queues, &consumers)?;
                let shares2 = assert_partition(strategy, &queues2, &consumers2)?;
                prop_assert_eq!(&shares, &shares2);
                for share in shares.values() {
                    prop_assert!(share.windows(2).all(|w| java_queue_cmp(&w[0], &w[1]) == Ordering::Less));
                }
            }
        }

        #[test]
        fn shuffled_inputs_give_the_same_shares(
            consumers in arb_cids(),
            (queues, shuffled_queues) in arb_queues().prop_flat_map(|q| (Just(q.clone()), Just(q).prop_shuffle())),
        ) {
            let shuffled_consumers: Vec<String> = consumers.iter().rev().cloned().collect();
            for strategy in [
                AllocateStrategy::Averagely,
                AllocateStrategy::AveragelyByCircle,
                hash(DEFAULT_VIRTUAL_NODES),
                AllocateStrategy::ByMachineRoom(vec!["broker".into()]),
            ] {
                for cid in &consumers {
                    prop_assert_eq!(
                        strategy.allocate(cid, &queues, &consumers),
                        strategy.allocate(cid, &shuffled_queues, &shuffled_consumers)
                    );
                }
            }
        }

        #[test]
        fn nearby_partitions(
            rooms_and_names in prop::collection::hash_set((1..4u8, "[a-z\u{1f600}]{1,4}"), 1..12),
            queues in prop::collection::hash_set((1..5u8, 0..3u8, 0..8i32), 1..48),
            circle in any::<bool>(),
        ) {
            let consumers: Vec<String> =
                rooms_and_names.into_iter().map(|(r, n)| format!("IDC{r}-{n}")).collect();
            let queues: Vec<MessageQueue> = queues
                .into_iter()
                .map(|(r, b, id)| MessageQueue::new(T, format!("IDC{r}-broker{b}"), id))
                .collect();
            let inner = if circle { AllocateStrategy::AveragelyByCircle } else { AllocateStrategy::Averagely };
            let strategy = nearby(inner);
            let shares = assert_partition(&strategy, &queues, &consumers)?;
            // Queues of a room with consumers stay in that room.
            for (cid, share) in &shares {
                let my_room = PrefixResolver.consumer_deploy_in(cid);
                for mq in share {
                    let room = PrefixResolver.broker_deploy_in(mq);
                    let room_has_consumers = consumers
                        .iter()
                        .any(|c| PrefixResolver.consumer_deploy_in(c) == room);
                    prop_assert!(room == my_room || !room_has_consumers);
                }
            }
        }
    }
}
