//! The push consumer without an async runtime: a builder, and a pool of consume
//! threads per consumer (as many as its consume concurrency) running the
//! listener. The state machine is the core's; this only runs listeners and
//! carries calls.

use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use rocketmq_core::consumer::{run_listener, ConsumerOptions, Delivery, Listener, Ticket};
use rocketmq_core::{Call, ClientError, Input};

use crate::{Client, Event};

/// A consumer's consume threads. Dropping it closes their queue; each thread
/// ends after the call it is running.
#[derive(Debug)]
pub(crate) struct Pool {
    deliveries: mpsc::Sender<Delivery>,
}

impl Pool {
    /// Starts `threads` consume threads for `group`.
    pub(crate) fn start(
        group: &str,
        threads: usize,
        listener: Arc<dyn Listener>,
        events: &mpsc::Sender<Event>,
    ) -> Result<Self, ClientError> {
        let (deliveries, rx) = mpsc::channel::<Delivery>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (rx, listener, events) = (rx.clone(), listener.clone(), events.clone());
            thread::Builder::new()
                .name(format!("rocketmq-consume-{group}-{i}"))
                .spawn(move || loop {
                    let next = rx
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv();
                    let Ok(delivery) = next else {
                        break;
                    };
                    let result = run_listener(&*listener, &delivery.messages, &delivery.context);
                    let ticket = delivery.ticket;
                    if events
                        .send(Event::Input(Input::Consumed { ticket, result }))
                        .is_err()
                    {
                        break;
                    }
                })
                .map_err(|e| {
                    ClientError::ConsumerState(format!("cannot start a consume thread: {e}"))
                })?;
        }
        Ok(Self { deliveries })
    }

    /// Queues a delivery for the next free thread; gives its ticket back if
    /// the pool is gone.
    pub(crate) fn run(&self, delivery: Delivery) -> Result<(), Ticket> {
        let ticket = delivery.ticket;
        self.deliveries.send(delivery).map_err(|_| ticket)
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

/// Collects a push consumer's settings; [`start`](Self::start) runs it.
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

    rocketmq_core::push_consumer_methods!([] []);
}

impl PushConsumerBuilder {
    rocketmq_core::consumer_builder_methods!();

    /// Starts with a listener run on the consumer's own consume threads: a
    /// closure `Fn(&[MessageExt], &ConsumeContext) -> ConsumeResult`, or any
    /// [`Listener`].
    pub fn start(self, listener: impl Listener) -> Result<PushConsumer, ClientError> {
        self.options.check()?;
        let ConsumerOptions {
            client,
            consumer,
            subscriptions,
            ..
        } = self.options;
        let group = consumer.group.clone();
        let client = Client::shared(client);
        client.listen(&group, consumer.consume_concurrency, Arc::new(listener))?;
        let call = Call::StartConsumer {
            config: Box::new(consumer),
            subscriptions,
        };
        if let Err(e) = client.call(call, None) {
            client.unlisten(&group);
            return Err(e);
        }
        Ok(PushConsumer { client, group })
    }
}
