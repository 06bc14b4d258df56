//! JSON bodies of the remoting protocol.
//!
//! Java writes every body with fastjson 1.2.83: keys sorted by name, nulls omitted,
//! enums as their names, sets as arrays, and map keys that are not strings written
//! raw (`{0:"addr"}`, `{{"brokerName":…}:42}`). Each body type here has a `decode`
//! that reads that form leniently (through [`fastjson::normalize`]), ignoring unknown
//! keys and defaulting missing ones, and an `encode` that writes what Java accepts:
//! keys in fastjson's order, and raw object keys for maps keyed by
//! [`MessageQueue`].
//!
//! [`fastjson::normalize`]: crate::protocol::fastjson::normalize

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use super::fastjson::{self, FastjsonError, SortedQueue};
use super::MessageQueue;

mod consumer_list;
mod heartbeat;
mod lock;
mod offset;
mod route;
mod running_info;

pub use consumer_list::ConsumerIdList;
pub use heartbeat::{
    java_string_hash, CheckClientRequestBody, ConsumeFromWhere, ConsumeType, ConsumerData,
    ExpressionType, HeartbeatData, MessageModel, ProducerData, SubscriptionData, SUB_ALL,
};
pub use lock::{LockBatchRequestBody, LockBatchResponseBody, UnlockBatchRequestBody};
pub use offset::{GetConsumerStatusBody, ResetOffsetBody};
pub use route::{
    BrokerData, QueueData, TopicRouteData, MASTER_ID, MAX_ROUTE_QUEUES, PERM_INHERIT,
    PERM_PRIORITY, PERM_READ, PERM_WRITE,
};
pub use running_info::{
    CmResult, ConsumeMessageDirectlyResult, ConsumeStatus, ConsumerRunningInfo,
    PopProcessQueueInfo, ProcessQueueInfo, PROP_CLIENT_VERSION, PROP_CONSUMER_START_TIMESTAMP,
    PROP_CONSUME_ORDERLY, PROP_CONSUME_TYPE, PROP_NAMESERVER_ADDR, PROP_THREADPOOL_CORE_SIZE,
};

/// Why a body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Not UTF-8, not JSON (even leniently), or nested too deep; carries the position.
    #[error(transparent)]
    Json(#[from] FastjsonError),
    /// Valid JSON that does not fit the body's type (missing key, wrong type, unknown
    /// enum name); `message` is serde's, with the position in the normalised text.
    #[error("{body} body has an unexpected shape: {message}")]
    Shape {
        /// The Java class name of the body.
        body: &'static str,
        /// What serde found wrong.
        message: String,
    },
    /// A key of a map keyed by `MessageQueue` is not a `MessageQueue` object.
    #[error("{body} body has a map key that is not a MessageQueue: {key}: {message}")]
    BadQueueKey {
        /// The Java class name of the body.
        body: &'static str,
        /// The key's text (cut to 128 characters).
        key: String,
        /// What serde found wrong.
        message: String,
    },
}

/// Decodes fastjson output into `T`.
fn decode_json<T: DeserializeOwned>(body: &'static str, input: &[u8]) -> Result<T, BodyError> {
    let text = fastjson::normalize(input)?;
    serde_json::from_str(&text).map_err(|e| BodyError::Shape {
        body,
        message: e.to_string(),
    })
}

/// Parses the string keys of a `Map<MessageQueue, V>` (see [`fastjson`]) as queues.
fn queue_keys<V>(
    body: &'static str,
    map: BTreeMap<String, V>,
) -> Result<BTreeMap<MessageQueue, V>, BodyError> {
    map.into_iter()
        .map(|(key, value)| match serde_json::from_str(&key) {
            Ok(queue) => Ok((queue, value)),
            Err(e) => Err(BodyError::BadQueueKey {
                body,
                key: key.chars().take(128).collect(),
                message: e.to_string(),
            }),
        })
        .collect()
}

/// Serialises `value` onto `out`.
///
/// `serde_json` fails only for non-string map keys or a failing `Serialize` impl; the
/// body types have neither (queue-keyed maps go through [`fastjson::write_queue_map`]),
/// so a failure is a bug in this module: caught by tests, never a panic in release.
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let result = serde_json::to_writer(&mut *out, value);
    debug_assert!(result.is_ok(), "body serialisation failed: {result:?}");
}

/// Serialises a body whose derived `Serialize` already matches fastjson's output.
fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_json(&mut out, value);
    out
}

/// Builds a JSON object field by field, for bodies with queue-keyed maps.
struct ObjectWriter {
    out: Vec<u8>,
    empty: bool,
}

impl ObjectWriter {
    fn new() -> Self {
        Self {
            out: vec![b'{'],
            empty: true,
        }
    }

    /// Writes `"name":` (escaped as a JSON string).
    fn key(&mut self, name: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_json(&mut self.out, name);
        self.out.push(b':');
    }

    /// Writes a value after [`Self::key`].
    fn value<T: Serialize + ?Sized>(&mut self, value: &T) {
        write_json(&mut self.out, value);
    }

    /// Writes a queue-keyed map with raw object keys after [`Self::key`].
    fn queue_map_value<V: Serialize>(&mut self, map: &BTreeMap<MessageQueue, V>) {
        let result = fastjson::write_queue_map(&mut self.out, map);
        debug_assert!(result.is_ok(), "body serialisation failed: {result:?}");
    }

    /// Writes already-encoded JSON after [`Self::key`].
    fn raw_value(&mut self, json: &[u8]) {
        self.out.extend_from_slice(json);
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        self.key(name);
        self.value(value);
    }

    fn queue_map<V: Serialize>(&mut self, name: &str, map: &BTreeMap<MessageQueue, V>) {
        self.key(name);
        self.queue_map_value(map);
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// `serialize_with` for queue sets: each queue with fastjson's key order.
fn serialize_queue_set<S: Serializer>(
    set: &BTreeSet<MessageQueue>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(set.iter().map(SortedQueue))
}

/// `deserialize_with` for numbers Java may write as `null` (fastjson writes NaN and
/// infinite doubles as `null`): `null` reads as the default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(deserializer)?.unwrap_or_default())
}

/// Gives a serde-derived body its `decode` and `encode`.
macro_rules! json_body {
    ($ty:ident, $java:literal) => {
        impl $ty {
            #[doc = concat!("Decodes a `", $java, "` body as Java writes it (standard or fastjson JSON).")]
            pub fn decode(body: &[u8]) -> Result<Self, $crate::protocol::body::BodyError> {
                $crate::protocol::body::decode_json($java, body)
            }

            #[doc = concat!("Encodes this `", $java, "` body as fastjson would (keys sorted, nulls omitted).")]
            pub fn encode(&self) -> Vec<u8> {
                $crate::protocol::body::encode_json(self)
            }
        }
    };
}
use json_body;

/// Proptest strategy for queues, shared by the body tests.
#[cfg(test)]
fn arb_queue() -> impl proptest::strategy::Strategy<Value = MessageQueue> {
    use proptest::prelude::*;
    ("[a-zA-Z0-9%_|-]{1,8}", "[a-z0-9-]{1,8}", any::<i32>())
        .prop_map(|(t, b, q)| MessageQueue::new(t, b, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_reject_non_queues() {
        let mut map = BTreeMap::new();
        map.insert("0".to_owned(), 1i64);
        assert!(matches!(
            queue_keys("X", map),
            Err(BodyError::BadQueueKey { key, .. }) if key == "0"
        ));
        let mut map = BTreeMap::new();
        map.insert(
            r#"{"brokerName":"b","queueId":"0","topic":"t"}"#.to_owned(),
            1i64,
        );
        assert!(queue_keys("X", map).is_err());
    }

    #[test]
    fn object_writer() {
        let mut w = ObjectWriter::new();
        w.field("a", &1);
        w.queue_map::<i64>("b", &BTreeMap::new());
        assert_eq!(w.finish(), br#"{"a":1,"b":{}}"#);
    }

    #[test]
    fn queue_set_order() {
        #[derive(Serialize)]
        struct S {
            #[serde(serialize_with = "serialize_queue_set")]
            set: BTreeSet<MessageQueue>,
        }
        let set = [
            MessageQueue::new("T", "b", 1),
            MessageQueue::new("T", "a", 0),
        ]
        .into();
        assert_eq!(
            serde_json::to_string(&S { set }).unwrap(),
            r#"{"set":[{"brokerName":"a","queueId":0,"topic":"T"},{"brokerName":"b","queueId":1,"topic":"T"}]}"#
        );
    }
}
