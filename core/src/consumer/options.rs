//! What every adapter's push consumer builder collects, and the listener shape
//! shared by all of them. The builder methods are written once
//! ([`consumer_builder_methods!`](crate::consumer_builder_methods)) and expanded
//! in each adapter, so the three offer the same API.

use std::time::Duration;

use super::allocate::AllocateStrategy;
use super::subscription::Selector;
use super::{
    ConfigError, ConsumeContext, ConsumeFrom, ConsumeResult, ConsumerConfig, MessageModel,
    OrderlyResult, Verdict,
};
use crate::client::ClientConfig;
use crate::error::ClientError;
use crate::protocol::message::MessageExt;

/// A push consumer's settings before it starts: the client's (name servers,
/// instance and unit name), the consumer's, and its subscriptions.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// The client this consumer shares with others of the same client id.
    pub client: ClientConfig,
    /// The consumer's settings.
    pub consumer: ConsumerConfig,
    /// Topics and selectors to start with.
    pub subscriptions: Vec<(String, Selector)>,
    /// The first bad setting met while building, reported by `start`.
    pub error: Option<ClientError>,
}

impl ConsumerOptions {
    /// Java's defaults for `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            client: ClientConfig {
                name_servers: Vec::new(),
                ..ClientConfig::default()
            },
            consumer: ConsumerConfig::new(group),
            subscriptions: Vec::new(),
            error: None,
        }
    }

    /// Adds name servers from a `host:port;host:port` list.
    pub fn add_name_servers(&mut self, list: &str) {
        self.client.name_servers.extend(
            list.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }

    /// Applies `ROCKETMQ_CONSUMER_*` variables (see
    /// [`ConsumerConfig::apply_env`]), plus `ROCKETMQ_NAMESRV_ADDR` (a
    /// `;`-separated list) and `ROCKETMQ_INSTANCE_NAME`.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        for (k, v) in &vars {
            match k.as_str() {
                "ROCKETMQ_NAMESRV_ADDR" | "NAMESRV_ADDR" => {
                    self.client.name_servers.clear();
                    self.add_name_servers(v);
                }
                "ROCKETMQ_INSTANCE_NAME" => self.client.instance_name = v.clone(),
                _ => {}
            }
        }
        if let Err(e) = self.consumer.apply_env(vars) {
            self.error.get_or_insert(ClientError::Config(e));
        }
    }

    /// Everything checked: the first problem met, or a bad setting.
    pub fn check(&self) -> Result<(), ClientError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.client.name_servers.is_empty() {
            return Err(ClientError::Config(ConfigError {
                field: "name_servers",
                reason: "is empty; give at least one host:port (or set ROCKETMQ_NAMESRV_ADDR)"
                    .into(),
            }));
        }
        if self.subscriptions.is_empty() {
            return Err(ClientError::Config(ConfigError {
                field: "subscriptions",
                reason: "is empty; subscribe to at least one topic before starting".into(),
            }));
        }
        self.consumer.validate().map_err(ClientError::Config)
    }

    /// Sets a consumer setting by closure (for the settings without a method).
    pub fn configure(&mut self, f: impl FnOnce(&mut ConsumerConfig)) {
        f(&mut self.consumer);
    }

    /// The allocation strategy.
    pub fn set_allocate(&mut self, strategy: AllocateStrategy) {
        self.consumer.allocate = strategy;
    }

    /// Clustering or broadcasting.
    pub fn set_message_model(&mut self, model: MessageModel) {
        self.consumer.message_model = model;
    }

    /// Where queues without a stored offset start.
    pub fn set_consume_from(&mut self, from: ConsumeFrom) {
        self.consumer.consume_from = from;
    }

    /// Per-queue cache limits.
    pub fn set_queue_cache(&mut self, count: usize, bytes: usize) {
        self.consumer.queue_cache_count = count;
        self.consumer.queue_cache_bytes = bytes;
    }

    /// The consumer-wide cache budget.
    pub fn set_global_cache(&mut self, count: usize, bytes: usize) {
        self.consumer.global_cache_count = count;
        self.consumer.global_cache_bytes = bytes;
    }

    /// The drain deadline of shutdown.
    pub fn set_shutdown_timeout(&mut self, timeout: Duration) {
        self.consumer.shutdown_timeout = timeout;
    }
}

impl From<&str> for Selector {
    /// A tag expression.
    fn from(expression: &str) -> Self {
        Self::Tag(expression.to_owned())
    }
}

impl From<String> for Selector {
    /// A tag expression.
    fn from(expression: String) -> Self {
        Self::Tag(expression)
    }
}

/// A listener run on the messages of one delivery, off the async executor (a
/// blocking pool, or the blocking adapter's consume threads). Closures
/// `Fn(&[MessageExt], &ConsumeContext) -> ConsumeResult` are listeners.
pub trait Listener: Send + Sync + 'static {
    /// Consumes the messages (one unless `consume_batch_size` says more).
    fn consume(&self, messages: &[MessageExt], context: &ConsumeContext) -> ConsumeResult;
}

impl<F> Listener for F
where
    F: Fn(&[MessageExt], &ConsumeContext) -> ConsumeResult + Send + Sync + 'static,
{
    fn consume(&self, messages: &[MessageExt], context: &ConsumeContext) -> ConsumeResult {
        self(messages, context)
    }
}

/// Runs a listener, turning a panic into [`ConsumeResult::RETRY`]: a panicking
/// listener asks for the messages again later and takes nothing down.
pub fn run_listener(
    listener: &dyn Listener,
    messages: &[MessageExt],
    context: &ConsumeContext,
) -> ConsumeResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        listener.consume(messages, context)
    }))
    .unwrap_or(ConsumeResult::RETRY)
}

/// An orderly listener (Java's `MessageListenerOrderly`): called with one
/// batch of one queue at a time, in offset order, while this consumer holds
/// the queue's broker lock. Closures
/// `Fn(&[MessageExt], &ConsumeContext) -> OrderlyResult` are orderly
/// listeners.
pub trait OrderlyListener: Send + Sync + 'static {
    /// Consumes the messages (one unless `consume_batch_size` says more).
    fn consume(&self, messages: &[MessageExt], context: &ConsumeContext) -> OrderlyResult;
}

impl<F> OrderlyListener for F
where
    F: Fn(&[MessageExt], &ConsumeContext) -> OrderlyResult + Send + Sync + 'static,
{
    fn consume(&self, messages: &[MessageExt], context: &ConsumeContext) -> OrderlyResult {
        self(messages, context)
    }
}

/// Runs an orderly listener, turning a panic into [`OrderlyResult::SUSPEND`]:
/// the queue waits a moment and the same messages come again.
pub fn run_orderly_listener(
    listener: &dyn OrderlyListener,
    messages: &[MessageExt],
    context: &ConsumeContext,
) -> OrderlyResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        listener.consume(messages, context)
    }))
    .unwrap_or(OrderlyResult::SUSPEND)
}

/// A sync listener of either kind, as the adapters keep it.
#[derive(Clone)]
pub enum SyncListener {
    /// A concurrent listener.
    Concurrent(std::sync::Arc<dyn Listener>),
    /// An orderly listener.
    Orderly(std::sync::Arc<dyn OrderlyListener>),
}

impl SyncListener {
    /// Runs the listener on one delivery's messages; a panic is "reconsume
    /// later" or "suspend".
    pub fn run(&self, messages: &[MessageExt], context: &ConsumeContext) -> Verdict {
        match self {
            Self::Concurrent(l) => run_listener(&**l, messages, context).into(),
            Self::Orderly(l) => run_orderly_listener(&**l, messages, context).into(),
        }
    }
}

impl std::fmt::Debug for SyncListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Concurrent(_) => "SyncListener::Concurrent",
            Self::Orderly(_) => "SyncListener::Orderly",
        })
    }
}

/// Expands the push consumer builder's setters over a `options: ConsumerOptions`
/// field, in each adapter.
#[macro_export]
#[doc(hidden)]
macro_rules! consumer_builder_methods {
    () => {
        /// A builder from settings collected elsewhere.
        pub fn from_options(options: $crate::consumer::ConsumerOptions) -> Self {
            Self { options }
        }

        /// Adds name servers (`host:port`, or a `;`-separated list).
        pub fn name_server(mut self, addr: &str) -> Self {
            self.options.add_name_servers(addr);
            self
        }

        /// The instance name in the client id (`ip@instance`); consumers with the
        /// same client id share one client.
        pub fn instance_name(mut self, name: impl Into<String>) -> Self {
            self.options.client.instance_name = name.into();
            self
        }

        /// The unit name appended to the client id.
        pub fn unit_name(mut self, name: impl Into<String>) -> Self {
            self.options.client.unit_name = Some(name.into());
            self
        }

        /// Subscribes a topic (`"*"`, `"A || B"`, or a
        /// [`Selector::sql92`]($crate::consumer::Selector::sql92)).
        pub fn subscribe(
            mut self,
            topic: &str,
            selector: impl Into<$crate::consumer::Selector>,
        ) -> Self {
            self.options
                .subscriptions
                .push((topic.to_owned(), selector.into()));
            self
        }

        /// Clustering (default) or broadcasting.
        pub fn message_model(mut self, model: $crate::consumer::MessageModel) -> Self {
            self.options.set_message_model(model);
            self
        }

        /// Where queues without a stored offset start.
        pub fn consume_from(mut self, from: $crate::consumer::ConsumeFrom) -> Self {
            self.options.set_consume_from(from);
            self
        }

        /// How clustering consumers share queues.
        pub fn allocate(mut self, strategy: $crate::consumer::allocate::AllocateStrategy) -> Self {
            self.options.set_allocate(strategy);
            self
        }

        /// Deliveries of a failing message before it goes to the DLQ (-1:
        /// 16 for a concurrent consumer, no limit for an orderly one).
        pub fn max_reconsume_times(mut self, times: i32) -> Self {
            self.options.consumer.max_reconsume_times = times;
            self
        }

        /// Listener calls running at once.
        pub fn consume_concurrency(mut self, calls: usize) -> Self {
            self.options.consumer.consume_concurrency = calls;
            self
        }

        /// Most messages per listener call.
        pub fn consume_batch_size(mut self, size: usize) -> Self {
            self.options.consumer.consume_batch_size = size;
            self
        }

        /// Most messages per pull.
        pub fn pull_batch_size(mut self, size: u32) -> Self {
            self.options.consumer.pull_batch_size = size;
            self
        }

        /// Per-queue cache limits (messages, body bytes).
        pub fn queue_cache(mut self, count: usize, bytes: usize) -> Self {
            self.options.set_queue_cache(count, bytes);
            self
        }

        /// The consumer-wide cache budget (messages, body bytes).
        pub fn global_cache(mut self, count: usize, bytes: usize) -> Self {
            self.options.set_global_cache(count, bytes);
            self
        }

        /// Orderly: how long a queue waits after its listener asked to
        /// suspend it without saying for how long (1 s).
        pub fn suspend_time(mut self, time: ::std::time::Duration) -> Self {
            self.options.consumer.suspend_time = time;
            self
        }

        /// How long shutdown waits for running listener calls.
        pub fn shutdown_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.options.set_shutdown_timeout(timeout);
            self
        }

        /// Any other setting.
        pub fn configure(mut self, f: impl FnOnce(&mut $crate::consumer::ConsumerConfig)) -> Self {
            self.options.configure(f);
            self
        }

        /// Settings from `ROCKETMQ_CONSUMER_*`, `ROCKETMQ_NAMESRV_ADDR` and
        /// `ROCKETMQ_INSTANCE_NAME`; a bad value is reported by `start`.
        pub fn from_env(mut self) -> Self {
            self.options.apply_env(::std::env::vars());
            self
        }
    };
}

/// Expands a push consumer's calls (subscribe, unsubscribe, suspend, resume,
/// stats) over its `client: Client` and `group: String` fields: `[async] [.await]`
/// for an async adapter, `[] []` for the blocking one.
#[macro_export]
#[doc(hidden)]
macro_rules! push_consumer_methods {
    ([$($asyncness:ident)?] [$($await_:tt)*]) => {
        /// The consumer group.
        pub fn group(&self) -> &str {
            &self.group
        }

        /// Subscribes another topic; a different selector for a subscribed topic
        /// is a conflict error unless `replace`.
        pub $($asyncness)? fn subscribe(
            &self,
            topic: &str,
            selector: impl Into<$crate::consumer::Selector>,
            replace: bool,
        ) -> Result<(), $crate::ClientError> {
            let call = $crate::Call::Subscribe {
                group: self.group.clone(),
                topic: topic.to_owned(),
                selector: selector.into(),
                replace,
            };
            self.client.call(call, None)$($await_)*.map(|_| ())
        }

        /// Drops a topic; its queues are released.
        pub $($asyncness)? fn unsubscribe(&self, topic: &str) -> Result<(), $crate::ClientError> {
            let call = $crate::Call::Unsubscribe {
                group: self.group.clone(),
                topic: topic.to_owned(),
            };
            self.client.call(call, None)$($await_)*.map(|_| ())
        }

        /// Stops pulling; cached messages are still delivered.
        pub $($asyncness)? fn suspend(&self) -> Result<(), $crate::ClientError> {
            let call = $crate::Call::Suspend { group: self.group.clone() };
            self.client.call(call, None)$($await_)*.map(|_| ())
        }

        /// Pulls again after `suspend`.
        pub $($asyncness)? fn resume(&self) -> Result<(), $crate::ClientError> {
            let call = $crate::Call::Resume { group: self.group.clone() };
            self.client.call(call, None)$($await_)*.map(|_| ())
        }

        /// The consumer's counters.
        pub $($asyncness)? fn stats(&self) -> Result<$crate::consumer::ConsumerStats, $crate::ClientError> {
            let call = $crate::Call::ConsumerStats { group: self.group.clone() };
            self.client.call(call, None)$($await_)*?.into_consumer_stats()
        }

        /// Stops: running listener calls may finish (up to the shutdown
        /// timeout), offsets are written and the group unregistered. When it
        /// returns, none of the consumer's threads or tasks is left, and its
        /// client is stopped too unless something else in the process shares
        /// it. (A listener call still running past the deadline keeps its
        /// thread until it returns: a thread cannot be stopped from outside.)
        pub $($asyncness)? fn shutdown(self) -> Result<(), $crate::ClientError> {
            let call = $crate::Call::ShutdownConsumer { group: self.group.clone() };
            // No deadline of the call's own: the core bounds the drain.
            let result = self
                .client
                .call(call, Some(::std::time::Duration::from_secs(24 * 3600)))$($await_)*;
            // The listener's work ends here; the client too, if no one else
            // uses it: nothing of this consumer runs once this returns.
            self.client.close_consumer(&self.group)$($await_)*;
            result.map(|_| ())
        }
    };
}
