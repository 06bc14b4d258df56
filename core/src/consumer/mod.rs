//! The push consumer's pieces that are not about the wire: configuration,
//! subscriptions, queue allocation, process queues and offsets.

pub mod allocate;
pub mod config;
pub mod local_store;
pub mod options;
pub mod process_queue;
pub mod subscription;

pub use config::{ConfigError, ConsumeFrom, ConsumerConfig, MessageModel};
pub use options::{
    run_listener, run_orderly_listener, ConsumerOptions, Listener, OrderlyListener, SyncListener,
};
pub use process_queue::{ProcessQueue, QueueStats};
pub use subscription::{Selector, SubscribeError, Subscriptions};

use std::collections::BTreeMap;

use crate::error::ClientError;
use crate::protocol::message::MessageExt;
use crate::protocol::MessageQueue;

/// Identifies one listener call handed to the adapter; the adapter answers it
/// with [`Input::Consumed`](crate::Input::Consumed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ticket#{}", self.0)
    }
}

/// What a listener call makes of its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Consumed: the messages are done.
    Success,
    /// Deliver them again later. `delay_level` 0 lets the broker choose
    /// (level 3 + reconsume times, as Java); 1..=18 picks a level.
    ReconsumeLater {
        /// The retry delay level.
        delay_level: i32,
    },
}

impl ConsumeResult {
    /// Retry later, at the broker's default delay.
    pub const RETRY: Self = Self::ReconsumeLater { delay_level: 0 };
}

/// What an orderly listener call makes of its messages (Java's
/// `ConsumeOrderlyStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderlyResult {
    /// Consumed: the messages are done and the queue moves on.
    Success,
    /// Not consumed: the queue stops for `delay` (`None`: the consumer's
    /// `suspend_time`, 1 s; anything is held to 10 ms ..= 30 s, as Java), then
    /// the same messages come again, first, with their reconsume count
    /// raised. A message that already reached the consumer's max reconsume
    /// times goes to the group's DLQ instead, and the queue moves on.
    Suspend {
        /// How long the queue waits.
        delay: Option<std::time::Duration>,
    },
}

impl OrderlyResult {
    /// Suspend the queue for the consumer's `suspend_time`.
    pub const SUSPEND: Self = Self::Suspend { delay: None };

    /// Suspend the queue for `delay`.
    pub fn suspend_for(delay: std::time::Duration) -> Self {
        Self::Suspend { delay: Some(delay) }
    }
}

/// A listener's answer as the core takes it, from either kind of listener.
/// A consumer given the other kind's answer reads it as the nearest of its
/// own: an orderly consumer reads "reconsume later" as "suspend", a
/// concurrent one reads "suspend" as "reconsume later" at the broker's delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A concurrent listener's answer.
    Concurrent(ConsumeResult),
    /// An orderly listener's answer.
    Orderly(OrderlyResult),
}

impl From<ConsumeResult> for Verdict {
    fn from(r: ConsumeResult) -> Self {
        Self::Concurrent(r)
    }
}

impl From<OrderlyResult> for Verdict {
    fn from(r: OrderlyResult) -> Self {
        Self::Orderly(r)
    }
}

impl Verdict {
    /// As a concurrent consumer reads it.
    pub fn concurrent(self) -> ConsumeResult {
        match self {
            Self::Concurrent(r) => r,
            Self::Orderly(OrderlyResult::Success) => ConsumeResult::Success,
            Self::Orderly(OrderlyResult::Suspend { .. }) => ConsumeResult::RETRY,
        }
    }

    /// As an orderly consumer reads it.
    pub fn orderly(self) -> OrderlyResult {
        match self {
            Self::Orderly(r) => r,
            Self::Concurrent(ConsumeResult::Success) => OrderlyResult::Success,
            Self::Concurrent(ConsumeResult::ReconsumeLater { .. }) => OrderlyResult::SUSPEND,
        }
    }
}

/// What a listener is told besides the messages (the seed's ConsumeContext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumeContext {
    /// Consumer group.
    pub group: String,
    /// The queue the messages came from (topic, broker, queue id).
    pub queue: MessageQueue,
    /// Times the first message was delivered before.
    pub reconsume_times: i32,
    /// When the call was handed out, ms since the epoch.
    pub consume_start_ms: i64,
    /// Free-form attributes (the seed's `set_attribute` / `get_attribute`):
    /// empty when the call starts, for a listener's own use on its context.
    pub attributes: BTreeMap<String, String>,
}

impl ConsumeContext {
    /// The topic of the queue the messages came from: the group's retry topic
    /// for messages delivered again (each message shows its original topic).
    pub fn topic(&self) -> &str {
        &self.queue.topic
    }

    /// The queue id the messages came from.
    pub fn queue_id(&self) -> i32 {
        self.queue.queue_id
    }

    /// The broker the messages came from.
    pub fn broker_name(&self) -> &str {
        &self.queue.broker_name
    }

    /// Sets an attribute.
    pub fn set_attribute(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.attributes.insert(key.into(), value.into());
    }

    /// An attribute, if set.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// How long the call has run at `now_ms` (ms since the epoch): the seed's
    /// `get_consume_duration`, with the clock read by the caller.
    pub fn consume_duration(&self, now_ms: i64) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(now_ms - self.consume_start_ms).unwrap_or(0))
    }
}

/// A listener call for the adapter to run: from [`Output::Deliver`](crate::Output::Deliver).
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Answer with this ticket.
    pub ticket: Ticket,
    /// The messages, in offset order (at most `consume_batch_size`).
    pub messages: Vec<MessageExt>,
    /// Their context.
    pub context: ConsumeContext,
}

/// A consumer's counters, from [`Call::ConsumerStats`](crate::Call::ConsumerStats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Each assigned queue.
    pub queues: Vec<(MessageQueue, QueueStats)>,
    /// Messages cached over all queues.
    pub cached_count: usize,
    /// Body bytes cached over all queues.
    pub cached_bytes: usize,
    /// Listener calls running now.
    pub in_flight: usize,
    /// Messages consumed successfully since start.
    pub consumed: u64,
    /// Messages whose listener asked for a retry since start.
    pub failed: u64,
    /// Messages sent back to the broker for a retry since start.
    pub sent_back: u64,
    /// Rebalances that changed this consumer's queues.
    pub rebalances: u64,
    /// Failures of the consumer's background work, by kind.
    pub errors: ErrorCounts,
}

/// A failure in a consumer's background work, which no user call waits for:
/// the consumer logs it, tries again as Java does, and counts it in
/// [`ConsumerStats::errors`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// A pull failed (broker unavailable, timed out, refused, bad answer);
    /// the queue pulls again after a pause.
    #[error("pull of {queue} failed: {error}")]
    Pull {
        /// The queue.
        queue: MessageQueue,
        /// Why.
        error: ClientError,
    },
    /// Reading or writing a queue's offset failed (broker or local file);
    /// tried again later.
    #[error("offset of {queue}: {error}")]
    Offset {
        /// The queue.
        queue: MessageQueue,
        /// Why.
        error: ClientError,
    },
    /// A rebalance of the topic could not run (no consumer list, allocation
    /// failed); the current assignment is kept.
    #[error("rebalance of {topic}: {error}")]
    Rebalance {
        /// The topic.
        topic: String,
        /// Why.
        error: ClientError,
    },
    /// A failed message could not be sent back to the broker; it is retried
    /// here and holds its queue's offset.
    #[error("send-back of {queue} offset {offset}: {error}")]
    SendBack {
        /// The queue.
        queue: MessageQueue,
        /// The message's queue offset.
        offset: i64,
        /// Why.
        error: ClientError,
    },
    /// Orderly: queues could not be locked on their broker (the broker is
    /// unreachable, or another member still holds them); they are not
    /// processed until a lock is won, and locking is tried again soon.
    #[error("lock of {queues} queue(s) on {broker}: {error}")]
    Lock {
        /// The broker's address.
        broker: String,
        /// How many queues were asked for.
        queues: usize,
        /// Why.
        error: ClientError,
    },
}

/// How many background failures of each kind a consumer has met, and the
/// latest one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Failed pulls.
    pub pull: u64,
    /// Failed offset reads and writes.
    pub offset: u64,
    /// Rebalances that could not run.
    pub rebalance: u64,
    /// Failed send-backs.
    pub send_back: u64,
    /// Failed or refused queue locks (orderly).
    pub lock: u64,
    /// The latest failure.
    pub last: Option<ConsumerError>,
}

impl ErrorCounts {
    /// Counts `error` and keeps it as the latest.
    pub fn count(&mut self, error: ConsumerError) {
        match &error {
            ConsumerError::Pull { .. } => self.pull += 1,
            ConsumerError::Offset { .. } => self.offset += 1,
            ConsumerError::Rebalance { .. } => self.rebalance += 1,
            ConsumerError::SendBack { .. } => self.send_back += 1,
            ConsumerError::Lock { .. } => self.lock += 1,
        }
        self.last = Some(error);
    }
}
