//! The RocketMQ remoting protocol: frames, commands, headers, messages and bodies.
//!
//! Layering, from the socket up:
//!
//! * [`frame`]: the length-prefixed frame stream ([`frame::FrameDecoder`]).
//! * [`command`]: a frame's header (JSON or the ROCKETMQ binary form) and body as a
//!   [`command::RemotingCommand`].
//! * [`code`]: request and response codes.
//! * [`header`]: typed request and response headers, to and from ext fields.
//! * [`message`]: stored messages in pull bodies, and message encoding for sends.
//! * [`body`]: the JSON bodies (routes, heartbeats, locks, offsets, running info).
//!
//! Every decoder here takes bytes and returns a value or a typed error; none does IO.

pub mod body;
pub mod code;
pub mod command;
pub mod compress;
mod ext;
pub mod fastjson;
pub mod frame;
pub mod header;
pub mod message;
mod queue;
mod wire;

pub use bytestring::ByteString;
pub use queue::MessageQueue;
