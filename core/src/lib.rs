//! The sans-IO core of an Apache RocketMQ client.
//!
//! This crate turns bytes into typed protocol values and back, and (as the client
//! grows) holds every state machine of a RocketMQ producer and consumer: routes,
//! subscriptions, rebalance, process queues, offsets, retries and orderly locks.
//! It never opens a socket, reads a clock, sleeps, spawns or touches a file: time
//! comes in as an argument and bytes go in and out as values. The runtime crates
//! (`rocketmq-tokio`, `rocketmq-async-std`, `rocketmq-blocking`) drive it.
//!
//! # Errors and panics
//!
//! Bad input from the network is an error, never a panic: every decoder returns a
//! typed error for truncated, oversized or malformed data, checks every length
//! before it allocates for it, and caps decompressed sizes. A panic in this crate
//! means a broken internal invariant and is a bug.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod connection;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod protocol;

pub use client::{
    Call, CallId, Client, ClientConfig, Input, Output, PullResult, PullStatus, Reply, SendResult,
    SendStatus,
};
pub use connection::ConnId;
pub use error::ClientError;
