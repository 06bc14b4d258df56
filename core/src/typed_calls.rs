//! The typed calls every adapter's client offers, written once.
//!
//! Each adapter's `Client` has one primitive, `call(&self, Call, Option<Duration>)
//! -> Result<Reply, ClientError>` (async or blocking); [`typed_calls!`] expands the
//! typed methods over it, so the three adapters offer the same API from one source.

/// Expands the typed client methods over an adapter's `call`: `[async] [.await]`
/// for an async adapter, `[] []` for a blocking one.
#[macro_export]
#[doc(hidden)]
macro_rules! typed_calls {
    ([$($asyncness:ident)?] [$($await_:tt)*]) => {
        /// A topic's route, from the name server.
        pub $($asyncness)? fn query_route(
            &self,
            topic: &str,
        ) -> Result<$crate::protocol::body::TopicRouteData, $crate::ClientError> {
            self.call($crate::Call::QueryRoute { topic: topic.into() }, None)$($await_)*?.into_route()
        }

        /// Sends a message to the next writable queue of its topic (round robin,
        /// passing over brokers that just failed), trying another broker on failure.
        pub $($asyncness)? fn send(
            &self,
            group: &str,
            message: $crate::protocol::message::Message,
        ) -> Result<$crate::SendResult, $crate::ClientError> {
            self.send_with(group, message, $crate::QueueSelector::RoundRobin)$($await_)*
        }

        /// Sends a message as [`send`](Self::send) does, within `timeout` (every
        /// attempt included) instead of the client's request timeout.
        pub $($asyncness)? fn send_timeout(
            &self,
            group: &str,
            message: $crate::protocol::message::Message,
            timeout: ::std::time::Duration,
        ) -> Result<$crate::SendResult, $crate::ClientError> {
            let call = $crate::Call::Send {
                group: group.into(),
                message,
                selector: $crate::QueueSelector::RoundRobin,
            };
            self.call(call, Some(timeout))$($await_)*?.into_sent()
        }

        /// Sends a message to the given queue.
        pub $($asyncness)? fn send_to(
            &self,
            group: &str,
            message: $crate::protocol::message::Message,
            queue: $crate::protocol::MessageQueue,
        ) -> Result<$crate::SendResult, $crate::ClientError> {
            self.send_with(group, message, $crate::QueueSelector::Queue(queue))$($await_)*
        }

        /// Sends a message to the queue `selector` picks (round robin, random, by
        /// key hash as Java's `SelectMessageQueueByHash`, or a given queue).
        pub $($asyncness)? fn send_with(
            &self,
            group: &str,
            message: $crate::protocol::message::Message,
            selector: $crate::QueueSelector,
        ) -> Result<$crate::SendResult, $crate::ClientError> {
            let call = $crate::Call::Send {
                group: group.into(),
                message,
                selector,
            };
            self.call(call, None)$($await_)*?.into_sent()
        }

        /// Sends a message to the queue `select` chooses from the topic's writable
        /// queues (a user-supplied selector).
        pub $($asyncness)? fn send_select(
            &self,
            group: &str,
            message: $crate::protocol::message::Message,
            select: impl FnOnce(
                &[$crate::protocol::MessageQueue],
                &$crate::protocol::message::Message,
            ) -> $crate::protocol::MessageQueue,
        ) -> Result<$crate::SendResult, $crate::ClientError> {
            let topic = message.topic.clone();
            let queues = self
                .call($crate::Call::PublishQueues { topic: topic.clone() }, None)$($await_)*?
                .into_queues()?;
            if queues.is_empty() {
                return Err($crate::ClientError::NoQueue(format!("topic {topic} has no writable queue")));
            }
            let queue = select(&queues, &message);
            self.send_with(group, message, $crate::QueueSelector::Queue(queue))$($await_)*
        }

        /// Sends a message without waiting for the broker: no result, no retry.
        pub $($asyncness)? fn send_oneway(
            &self,
            group: &str,
            message: $crate::protocol::message::Message,
        ) -> Result<(), $crate::ClientError> {
            let call = $crate::Call::SendOneway {
                group: group.into(),
                message,
                selector: $crate::QueueSelector::RoundRobin,
            };
            self.call(call, None)$($await_)*.map(|_| ())
        }

        /// Sends messages of one topic as one batch to the next writable queue.
        pub $($asyncness)? fn send_batch(
            &self,
            group: &str,
            messages: Vec<$crate::protocol::message::Message>,
        ) -> Result<$crate::SendResult, $crate::ClientError> {
            let call = $crate::Call::SendBatch {
                group: group.into(),
                messages,
                selector: $crate::QueueSelector::RoundRobin,
            };
            self.call(call, None)$($await_)*?.into_sent()
        }

        /// Pulls up to `max_messages` from `queue` starting at `offset`, once.
        pub $($asyncness)? fn pull(
            &self,
            group: &str,
            queue: $crate::protocol::MessageQueue,
            offset: i64,
            max_messages: i32,
        ) -> Result<$crate::PullResult, $crate::ClientError> {
            let call = $crate::Call::Pull {
                group: group.into(),
                queue,
                offset,
                max_messages,
            };
            self.call(call, None)$($await_)*?.into_pulled()
        }
    };
}
