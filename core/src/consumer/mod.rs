//! The push consumer's pieces that are not about the wire: configuration,
//! subscriptions, queue allocation, process queues and offsets.

pub mod allocate;
