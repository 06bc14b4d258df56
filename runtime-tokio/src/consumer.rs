//! The push consumer on tokio: a builder, sync listeners on the blocking pool,
//! async listeners as tasks. The state machine is the core's; this only runs
//! listeners and carries calls.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_lite::FutureExt;
use rocketmq_core::consumer::{
    run_listener, ConsumeContext, ConsumeResult, ConsumerOptions, Delivery, Listener,
};
use rocketmq_core::protocol::message::MessageExt;
use rocketmq_core::{Call, ClientError, Input};
use tokio::sync::mpsc;

use crate::Client;

type BoxFuture = Pin<Box<dyn Future<Output = ConsumeResult> + Send>>;
type AsyncHandler = dyn Fn(Vec<MessageExt>, ConsumeContext) -> BoxFuture + Send + Sync;

/// A consumer's listener, as the driver keeps it.
#[derive(Clone)]
pub(crate) enum Handler {
    Sync(Arc<dyn Listener>),
    Async(Arc<AsyncHandler>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sync(_) => "Handler::Sync",
            Self::Async(_) => "Handler::Async",
        })
    }
}

/// Runs one delivery's listener and reports the outcome to the driver. A
/// panicking listener counts as "reconsume later".
pub(crate) fn run(handler: Handler, delivery: Delivery, events: mpsc::UnboundedSender<Input>) {
    let ticket = delivery.ticket;
    match handler {
        Handler::Sync(listener) => {
            tokio::task::spawn_blocking(move || {
                let result = run_listener(&*listener, &delivery.messages, &delivery.context);
                let _ = events.send(Input::Consumed { ticket, result });
            });
        }
        Handler::Async(f) => {
            // One task per call: a panic is caught where the call runs.
            let call = AssertUnwindSafe(f(delivery.messages, delivery.context)).catch_unwind();
            tokio::spawn(async move {
                let result = call.await.unwrap_or(ConsumeResult::RETRY);
                let _ = events.send(Input::Consumed { ticket, result });
            });
        }
    }
}

/// A running push consumer. Messages go to its listener until
/// [`shutdown`](Self::shutdown); dropping it without shutdown stops its client
/// (if no one else shares it) without draining.
#[derive(Debug)]
pub struct PushConsumer {
    client: Client,
    group: String,
}

/// Collects a push consumer's settings; [`start`](Self::start) or
/// [`start_async`](Self::start_async) runs it.
#[derive(Debug)]
pub struct PushConsumerBuilder {
    options: ConsumerOptions,
}

impl PushConsumer {
    /// A builder with Java's defaults for `group`.
    pub fn builder(group: impl Into<String>) -> PushConsumerBuilder {
        PushConsumerBuilder {
            options: ConsumerOptions::new(group),
        }
    }

    rocketmq_core::push_consumer_methods!([async] [.await]);
}

impl PushConsumerBuilder {
    rocketmq_core::consumer_builder_methods!();

    /// Starts with a listener run on tokio's blocking pool: a closure
    /// `Fn(&[MessageExt], &ConsumeContext) -> ConsumeResult`, or any
    /// [`Listener`].
    pub async fn start(self, listener: impl Listener) -> Result<PushConsumer, ClientError> {
        self.start_with(Handler::Sync(Arc::new(listener))).await
    }

    /// Starts with an async listener, awaited as a task on the runtime.
    pub async fn start_async<F, Fut>(self, listener: F) -> Result<PushConsumer, ClientError>
    where
        F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeResult> + Send + 'static,
    {
        let f =
            move |m: Vec<MessageExt>, c: ConsumeContext| -> BoxFuture { Box::pin(listener(m, c)) };
        self.start_with(Handler::Async(Arc::new(f))).await
    }

    async fn start_with(self, handler: Handler) -> Result<PushConsumer, ClientError> {
        self.options.check()?;
        let ConsumerOptions {
            client,
            consumer,
            subscriptions,
            ..
        } = self.options;
        let group = consumer.group.clone();
        let client = Client::shared(client);
        client.listen(&group, handler).await?;
        let call = Call::StartConsumer {
            config: Box::new(consumer),
            subscriptions,
        };
        if let Err(e) = client.call(call, None).await {
            client.unlisten(&group);
            return Err(e);
        }
        Ok(PushConsumer { client, group })
    }
}
