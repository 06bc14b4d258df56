//! The push consumer without an async runtime: a builder, and a pool of consume
//! threads per consumer (as many as its consume concurrency) running the
//! listener. The state machine is the core's; this only runs listeners and
//! carries calls.
//!
//! The pool wakes as few threads as the work needs: a delivery wakes a thread
//! only when none is already on its way, and a thread that takes a delivery
//! with more queued behind it wakes the next. Results gather in one list per
//! client, and only the first of a run wakes the driver, which takes them all.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use rocketmq_core::consumer::{
    run_listener, ConsumeResult, ConsumerOptions, Delivery, Listener, Ticket,
};
use rocketmq_core::{Call, ClientError};

use crate::{Client, Event};

/// Listener results waiting for the driver, shared by every pool of a client.
#[derive(Debug, Default)]
pub(crate) struct Results {
    done: Mutex<Vec<(Ticket, ConsumeResult)>>,
}

impl Results {
    /// Adds a result; the first one of a run wakes the driver with
    /// [`Event::Consumed`]. Returns false once the driver is gone.
    fn push(&self, events: &mpsc::Sender<Event>, ticket: Ticket, result: ConsumeResult) -> bool {
        let first = {
            let mut done = lock(&self.done);
            done.push((ticket, result));
            done.len() == 1
        };
        !first || events.send(Event::Consumed).is_ok()
    }

    /// Everything gathered since the last take.
    pub(crate) fn take(&self) -> Vec<(Ticket, ConsumeResult)> {
        std::mem::take(&mut *lock(&self.done))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The queue the consume threads share.
#[derive(Debug, Default)]
struct Queue {
    deliveries: VecDeque<Delivery>,
    /// Threads waiting for work.
    idle: usize,
    /// Threads woken and not yet back at the queue.
    waking: usize,
    /// The pool is gone: threads end once the queue is empty.
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    /// Wakes one idle thread unless one is already on its way.
    fn wake_one(&self, q: &mut Queue) {
        if q.waking == 0 && q.idle > 0 {
            q.waking += 1;
            self.ready.notify_one();
        }
    }

    /// The next delivery for a consume thread; `None` once the pool is closed
    /// and drained.
    fn next(&self) -> Option<Delivery> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(delivery) = q.deliveries.pop_front() {
                if !q.deliveries.is_empty() {
                    self.wake_one(&mut q);
                }
                return Some(delivery);
            }
            if q.closed {
                return None;
            }
            q.idle += 1;
            q = self
                .ready
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            q.idle -= 1;
            q.waking = q.waking.saturating_sub(1);
        }
    }
}

/// A consumer's consume threads. Dropping it closes their queue; each thread
/// ends once what is queued has run.
#[derive(Debug)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts `threads` consume threads for `group`.
    pub(crate) fn start(
        group: &str,
        threads: usize,
        listener: Arc<dyn Listener>,
        results: &Arc<Results>,
        events: &mpsc::Sender<Event>,
    ) -> Result<Self, ClientError> {
        let shared = Arc::new(Shared::default());
        let pool = Self {
            shared: shared.clone(),
        };
        for i in 0..threads.max(1) {
            let (shared, listener) = (shared.clone(), listener.clone());
            let (results, events) = (results.clone(), events.clone());
            thread::Builder::new()
                .name(format!("rocketmq-consume-{group}-{i}"))
                .spawn(move || {
                    while let Some(delivery) = shared.next() {
                        let result =
                            run_listener(&*listener, &delivery.messages, &delivery.context);
                        if !results.push(&events, delivery.ticket, result) {
                            break;
                        }
                    }
                })
                .map_err(|e| {
                    ClientError::ConsumerState(format!("cannot start a consume thread: {e}"))
                })?;
        }
        Ok(pool)
    }

    /// Queues a delivery for the next free thread.
    pub(crate) fn run(&self, delivery: Delivery) {
        let mut q = lock(&self.shared.queue);
        q.deliveries.push_back(delivery);
        self.shared.wake_one(&mut q);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_all();
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
