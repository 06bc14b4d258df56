//! The message queue identity shared by routes, rebalance, offsets and locks.

use serde::{Deserialize, Serialize};

/// One queue of a topic on one broker: the unit of allocation, offsets and locks.
///
/// The derived order (topic, then broker name, then queue id) is the Java client's
/// `MessageQueue.compareTo`, so sorted queue lists agree with Java consumers of the
/// same group. Java compares strings by UTF-16 code units and Rust by bytes; the two
/// orders differ only between characters above U+FFFF and those in U+E000..=U+FFFF,
/// which RocketMQ topic names (`[%|a-zA-Z0-9_-]`) cannot contain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageQueue {
    /// Topic the queue belongs to.
    pub topic: String,
    /// Name of the broker (master/slave set) holding the queue.
    #[serde(rename = "brokerName")]
    pub broker_name: String,
    /// Queue index on that broker.
    #[serde(rename = "queueId")]
    pub queue_id: i32,
}

impl MessageQueue {
    /// A queue from its three parts.
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        Self {
            topic: topic.into(),
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.topic, self.broker_name, self.queue_id)
    }
}
