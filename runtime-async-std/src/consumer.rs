//! The push consumer for async-std and smol: a builder, sync listeners on the
//! `blocking` thread pool (the one async-std and smol use), async listeners as
//! tasks on the client's own reactor thread. The state machine is the core's;
//! this only runs listeners and carries calls.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use async_channel::Sender;
use async_executor::LocalExecutor;
use futures_lite::FutureExt;
use rocketmq_core::consumer::{
    ConsumeContext, ConsumeResult, ConsumerOptions, Delivery, Listener, OrderlyListener,
    OrderlyResult, SyncListener, Verdict,
};
use rocketmq_core::protocol::message::MessageExt;
use rocketmq_core::{Call, ClientError, Input};

use crate::Client;

type BoxFuture = Pin<Box<dyn Future<Output = Verdict> + Send>>;
type AsyncHandler = dyn Fn(Vec<MessageExt>, ConsumeContext) -> BoxFuture + Send + Sync;

/// A consumer's listener, as the driver keeps it.
#[derive(Clone)]
pub(crate) enum Handler {
    Sync(SyncListener),
    Async(Arc<AsyncHandler>),
}

/// An async listener of either kind, its answers made verdicts.
fn async_handler<F, Fut, R>(listener: F) -> Handler
where
    F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<Verdict>,
{
    let f = move |m: Vec<MessageExt>, c: ConsumeContext| -> BoxFuture {
        let call = listener(m, c);
        Box::pin(async move { call.await.into() })
    };
    Handler::Async(Arc::new(f))
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
/// panicking listener counts as "reconsume later" (orderly: "suspend").
pub(crate) fn run(
    ex: &LocalExecutor<'_>,
    handler: Handler,
    delivery: Delivery,
    events: Sender<Input>,
) {
    let ticket = delivery.ticket;
    match handler {
        Handler::Sync(listener) => {
            ex.spawn(async move {
                let verdict =
                    blocking::unblock(move || listener.run(&delivery.messages, &delivery.context))
                        .await;
                let _ = events.send(Input::consumed(ticket, verdict)).await;
            })
            .detach();
        }
        Handler::Async(f) => {
            ex.spawn(async move {
                let call = f(delivery.messages, delivery.context);
                let verdict = AssertUnwindSafe(call)
                    .catch_unwind()
                    .await
                    .unwrap_or(ConsumeResult::RETRY.into());
                let _ = events.send(Input::consumed(ticket, verdict)).await;
            })
            .detach();
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

    /// Starts with a listener run on the `blocking` thread pool: a closure
    /// `Fn(&[MessageExt], &ConsumeContext) -> ConsumeResult`, or any
    /// [`Listener`].
    pub async fn start(self, listener: impl Listener) -> Result<PushConsumer, ClientError> {
        let listener = SyncListener::Concurrent(Arc::new(listener));
        self.start_with(Handler::Sync(listener)).await
    }

    /// Starts with an async listener, awaited as a task on the client's reactor
    /// thread (keep blocking work in a sync listener).
    pub async fn start_async<F, Fut>(self, listener: F) -> Result<PushConsumer, ClientError>
    where
        F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeResult> + Send + 'static,
    {
        self.start_with(async_handler(listener)).await
    }

    /// Starts an orderly consumer (Java's `MessageListenerOrderly`) with a
    /// listener run on the `blocking` thread pool: a closure
    /// `Fn(&[MessageExt], &ConsumeContext) -> OrderlyResult`, or any
    /// [`OrderlyListener`]. Each queue is processed one batch at a time, in
    /// offset order, while this consumer holds its broker lock.
    pub async fn start_orderly(
        mut self,
        listener: impl OrderlyListener,
    ) -> Result<PushConsumer, ClientError> {
        self.options.consumer.orderly = true;
        let listener = SyncListener::Orderly(Arc::new(listener));
        self.start_with(Handler::Sync(listener)).await
    }

    /// Starts an orderly consumer with an async listener, awaited as a task
    /// on the client's reactor thread (keep blocking work in a sync listener).
    pub async fn start_orderly_async<F, Fut>(
        mut self,
        listener: F,
    ) -> Result<PushConsumer, ClientError>
    where
        F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = OrderlyResult> + Send + 'static,
    {
        self.options.consumer.orderly = true;
        self.start_with(async_handler(listener)).await
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
