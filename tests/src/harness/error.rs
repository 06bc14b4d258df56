//! The harness's one error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a harness operation failed.
///
/// Every message says what was being done and, where a process was involved, ends
/// with the tail of that process's output and log file, so a failed test can be
/// diagnosed from its output alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A program the harness needs (`java`, `mvn`, `sh`) is missing or does not run.
    #[error("`{tool}` is not usable: {detail}. {hint}")]
    ToolMissing {
        /// The program.
        tool: String,
        /// What happened when it was run.
        detail: String,
        /// What to install.
        hint: &'static str,
    },
    /// Maven could not resolve the RocketMQ jars.
    #[error("resolving RocketMQ jars with Maven failed: {what}. {hint}\nMaven log {log}:\n{tail}")]
    Resolve {
        /// What failed.
        what: String,
        /// The likely cause and fix.
        hint: &'static str,
        /// Maven's full log.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The configuration cannot work (bad broker count, property value, ...).
    #[error("invalid harness configuration: {0}")]
    Config(String),
    /// A NameServer or broker exited, or did not become ready in time.
    #[error("{server} failed to start: {reason}\n{logs}")]
    Start {
        /// The server (`namesrv`, `broker-a`, ...).
        server: String,
        /// What went wrong.
        reason: String,
        /// Tails of the server's output and log files.
        logs: String,
        /// Whether the server could not bind its ports (the harness retries with
        /// other ports at first start).
        bind_failure: bool,
    },
    /// A condition was not reached in time.
    #[error("timed out after {waited:?} waiting for {what}{detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        waited: Duration,
        /// The last observed state, if any (starts with a separator).
        detail: String,
    },
    /// A request could not be exchanged (connect, send, receive, decode).
    #[error("request {request} to {addr} failed: {reason}")]
    Rpc {
        /// Peer address.
        addr: String,
        /// Request code name.
        request: String,
        /// What went wrong.
        reason: String,
    },
    /// A helper command (e.g. `mqadmin`) failed.
    #[error("`{command}` failed: {reason}\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status or timeout.
        reason: String,
        /// The tail of its output.
        output: String,
    },
    /// The peer answered with an error code.
    #[error("{addr} answered {request} with code {code}: {remark}")]
    Remote {
        /// Peer address.
        addr: String,
        /// Request code name.
        request: String,
        /// The response code.
        code: i32,
        /// The response's remark (empty if none).
        remark: String,
    },
}

impl HarnessError {
    /// An [`HarnessError::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to `io::Result`s.
pub(crate) trait IoContext<T> {
    /// Wraps an error as [`HarnessError::Io`] with the context `f()` returns.
    fn ctx<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T, HarnessError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T, HarnessError> {
        self.map_err(|e| HarnessError::io(f(), e))
    }
}
