//! Errors a client call completes with.

use crate::protocol::code::ResponseCode;

/// Why a user call failed. Carried by [`Output::Reply`](crate::Output::Reply).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No response arrived before the call's deadline. A response that arrives
    /// later is dropped.
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// Connecting to the address failed.
    #[error("cannot connect to {addr}: {reason}")]
    ConnectFailed {
        /// The address.
        addr: String,
        /// What the runtime reported.
        reason: String,
    },
    /// The connection closed (or was closed for bad input) before the response.
    #[error("connection to {addr} closed before the response")]
    ConnectionClosed {
        /// The address.
        addr: String,
    },
    /// The server answered with an error code.
    #[error("server answered {code:?}: {remark}")]
    Remote {
        /// The response code.
        code: ResponseCode,
        /// The server's explanation.
        remark: String,
    },
    /// The name server knows no route for the topic.
    #[error("no route for topic {0}")]
    TopicNotFound(String),
    /// The route has no queue the call can use (no writable queue, unknown broker).
    #[error("no usable queue: {0}")]
    NoQueue(String),
    /// The server's answer could not be decoded.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The request could not be encoded (e.g. larger than a frame).
    #[error("cannot encode request: {0}")]
    Encode(String),
    /// The message breaks a rule the broker enforces (checked before sending).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The client is shut down.
    #[error("client is shut down")]
    Shutdown,
    /// A consumer setting cannot work.
    #[error(transparent)]
    Config(#[from] crate::consumer::ConfigError),
    /// A subscription change was refused.
    #[error(transparent)]
    Subscribe(#[from] crate::consumer::SubscribeError),
    /// The consumer is not in a state for this call (none of that group, or
    /// already shutting down).
    #[error("consumer: {0}")]
    ConsumerState(String),
}
