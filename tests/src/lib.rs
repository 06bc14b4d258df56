//! Shared support for the project's test suites: the real-broker harness, the
//! conformance suite run on every runtime, and the deterministic simulation.
//!
//! The protocol-level tests that need no broker live beside the code in
//! `rocketmq-core`; this crate grows as the client does.
//!
//! * [`harness`]: a real Apache RocketMQ NameServer and brokers on 127.0.0.1,
//!   resolved from Maven Central and run under a watchdog.
//! * [`conformance`]: the checks every runtime adapter must pass against the real
//!   broker, written once over a [`conformance::Runtime`].
//! * [`sim`]: the deterministic simulation of brokers, network and clock around
//!   the core's state machines.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod conformance;
pub mod consume;
pub mod harness;
pub mod orderly;
pub mod sim;
