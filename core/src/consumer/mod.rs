//! The push consumer's pieces that are not about the wire: configuration,
//! subscriptions, queue allocation, process queues and offsets.

pub mod allocate;
pub mod config;
pub mod local_store;
pub mod options;
pub mod process_queue;
pub mod subscription;

pub use config::{ConfigError, ConsumeFrom, ConsumerConfig, MessageModel};
pub use options::{run_listener, ConsumerOptions, Listener};
pub use process_queue::{ProcessQueue, QueueStats};
pub use subscription::{Selector, SubscribeError, Subscriptions};

use std::collections::BTreeMap;

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
    /// Free-form attributes the core adds (none yet; for future use by listeners).
    pub attributes: BTreeMap<String, String>,
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
}
