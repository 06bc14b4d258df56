//! The push consumer's pieces that are not about the wire: configuration,
//! subscriptions, queue allocation, process queues and offsets.

pub mod allocate;
// pub mod config; (waits for allocate.rs)
pub mod process_queue;
pub mod subscription;

// config re-exports follow allocate.rs
pub use process_queue::{ProcessQueue, QueueStats};
pub use subscription::{Selector, SubscribeError, Subscriptions};
