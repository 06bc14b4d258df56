//! The sans-IO core of an Apache RocketMQ client.
//!
//! This crate turns bytes into typed protocol values and back, and (as the client
//! grows) holds every state machine of a RocketMQ producer and consumer: routes,
//! subscriptions, rebalance, process queues, offsets, retries and orderly locks.
//! It never opens a socket, reads a clock, sleeps, spawns or touches a file: time
//! comes in as an argument and bytes go in and out as values. The runtime crates
//! (`rocketmq-tokio`, `rocketmq-async-std`, `rocketmq-blocking`) drive it.
//!
//! # Driving the client
//!
//! [`Client`] is a state machine. An adapter feeds it what happened and carries out
//! what it asks, in one loop; nothing in this crate blocks or waits:
//!
//! ```
//! use std::time::Instant;
//! use rocketmq_core::{Call, Client, ClientConfig, ClientError, Input, Output};
//!
//! let mut now = Instant::now(); // an adapter reads its runtime's clock
//! let mut client = Client::new(ClientConfig::default(), now, 1_732_500_000_000);
//! let call = client.call(now, Call::QueryRoute { topic: "orders".into() }, None);
//!
//! let mut replies = Vec::new();
//! loop {
//!     // 1. Carry out everything the core asks for.
//!     while let Some(output) = client.poll_output(now) {
//!         match output {
//!             // A real adapter opens a socket here; this one finds nobody home.
//!             Output::Connect { conn, addr } => {
//!                 client.handle_input(now, Input::ConnectFailed(conn, format!("{addr}: refused")))
//!             }
//!             Output::Transmit { .. } | Output::Close(_) => {}
//!             Output::Reply { call, result } => replies.push((call, result)),
//!             _ => {}
//!         }
//!     }
//!     if !replies.is_empty() {
//!         break;
//!     }
//!     // 2. Wait for a socket, a user call, or the core's deadline; here, the deadline.
//!     match client.poll_timeout() {
//!         Some(deadline) => {
//!             now = deadline;
//!             client.handle_input(now, Input::Timeout);
//!         }
//!         None => break,
//!     }
//! }
//! assert!(matches!(&replies[..], [(c, Err(ClientError::ConnectFailed { .. }))] if *c == call));
//! ```
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
pub mod consumer;
pub mod driver;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod producer;
pub mod protocol;
mod typed_calls;

pub use client::{
    Call, CallId, Client, ClientConfig, Input, Output, PullResult, PullStatus, Reply, SendResult,
    SendStatus,
};
pub use connection::ConnId;
pub use driver::{Driver, Io};
pub use error::ClientError;
pub use producer::QueueSelector;
