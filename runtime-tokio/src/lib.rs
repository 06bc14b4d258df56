//! Apache RocketMQ client on the `tokio` runtime.
//!
//! A thin adapter: it moves bytes, timers and user callbacks between sockets and
//! the sans-IO state machine in `rocketmq-core`. It holds no RocketMQ logic of its own.
//! The driving loop arrives with the first round trip; until then this crate only
//! re-exports the core.

pub use rocketmq_core as core;
