//! The deterministic simulation: simulated name server and brokers, a
//! simulated network and a virtual clock driving the very same
//! [`rocketmq_core::Client`] state machines the adapters drive, with no
//! runtime, no sockets and no real clock. One `u64` seed decides every choice;
//! the same seed replays the same run, byte for byte.
//!
//! * [`rng`]: the seeded generator (splitmix64), one stream per component.
//! * [`broker`], [`namesrv`]: the servers, speaking the real wire format
//!   through the core's codecs.
//! * [`world`]: the clock, the network, the client processes, faults and the
//!   invariant checker.
//! * [`orderly`]: the checker's orderly invariants (one batch per queue in
//!   offset order, under the broker's lock).

pub mod broker;
pub mod namesrv;
pub mod orderly;
pub mod rng;
pub mod world;

/// Virtual time: milliseconds since the world began.
pub type Millis = u64;

/// One simulated TCP connection, as both of its ends name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link#{}", self.0)
    }
}
