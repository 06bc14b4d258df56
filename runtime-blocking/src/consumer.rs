//! The push consumer without an async runtime: a builder, and a pool of consume
//! threads per consumer (as many as its consume concurrency) running the
//! listener. The state machine is the core's; this only runs listeners and
//! carries calls.
//!
//! The pool wakes as few threads as the work needs: a delivery wakes a thread
//! only when none is already on its way, and a thread that takes a delivery
//! with more queued behind it wakes the next. The core hands out a queue's
//! worth of calls beyond the thread count, so a thread done with one takes the
//! next at once. Results gather in one list per client and wake the driver
//! once per run, when the queue runs low, instead of once per call.

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
    /// The results, and whether the driver has been woken for them.
    done: Mutex<(Vec<(Ticket, ConsumeResult)>, bool)>,
}

impl Results {
    /// Adds a result. The driver is woken with [`Event::Consumed`] when its
    /// pool runs low on queued work (`low`) and it has not been woken since it
    /// last took results: a busy pool hands back results in runs, and the
    /// last call of a run always wakes it. Returns false once the driver is
    /// gone.
    fn push(
        &self,
        events: &mpsc::Sender<Event>,
        ticket: Ticket,
        result: ConsumeResult,
        low: bool,
    ) -> bool {
        let wake = {
            let mut done = lock(&self.done);
            done.0.push((ticket, result));
            let wake = low && !done.1;
            done.1 |= wake;
            wake
        };
        !wake || events.send(Event::Consumed).is_ok()
    }

    /// Everything gathered since the last take.
    pub(crate) fn take(&self) -> Vec<(Ticket, ConsumeResult)> {
        let mut done = lock(&self.done);
        done.1 = false;
        std::mem::take(&mut done.0)
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
    /// The next delivery if one is queued, without waiting, and whether the
    /// queue is running low (at most `low_water` left).
    fn try_next(&self, low_water: usize) -> (Option<Delivery>, bool) {
        let mut q = lock(&self.queue);
        let next = q.deliveries.pop_front();
        if next.is_some() && !q.deliveries.is_empty() {
            self.wake_one(&mut q);
        }
        let low = next.is_none() || q.deliveries.len() <= low_water;
        (next, low)
    }

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
        // The driver hears of results once half the threads could run dry.
        let low_water = threads / 2;
        let pool = Self {
            shared: shared.clone(),
        };
        for i in 0..threads.max(1) {
            let (shared, listener) = (shared.clone(), listener.clone());
            let (results, events) = (results.clone(), events.clone());
            thread::Builder::new()
                .name(format!("rocketmq-consume-{group}-{i}"))
                .spawn(move || {
                    let Some(mut delivery) = shared.next() else {
                        return;
                    };
                    loop {
                        let result =
                            run_listener(&*listener, &delivery.messages, &delivery.context);
                        let (more, low) = shared.try_next(low_water);
                        if !results.push(&events, delivery.ticket, result, low) {
                            break;
                        }
                        match more.or_else(|| shared.next()) {
                            Some(next) => delivery = next,
                            None => break,
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
        let mut consumer = consumer;
        if consumer.dispatch_ahead == 0 {
            // A thread done with a call finds the next one queued.
            consumer.dispatch_ahead = consumer.consume_concurrency;
        }
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
