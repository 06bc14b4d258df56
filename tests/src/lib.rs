//! Shared support for the project's test suites: the real-broker harness, the
//! conformance suite run on every runtime, and the deterministic simulation.
//!
//! The protocol-level tests that need no broker live beside the code in
//! `rocketmq-core`; this crate grows as the client does.
