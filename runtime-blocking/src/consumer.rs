//! The push consumer without an async runtime: a builder, and a pool of consume
//! threads per consumer (as many as its consume concurrency) running the
//! listener. The state machine is the core's; this only runs listeners and
//! carries calls.
//!
//! The pool wakes as few threads as the work needs. A delivery wakes a thread
//! when none is at work; another is woken only when queued work has waited
//! longer than a wake-up costs ([`STALE`]), so a fast listener runs on one
//! thread without handing each call across threads, and a slow or stuck one
//! brings in the rest of the pool one by one. The driver keeps a deadline for
//! stale work, so a listener stuck in a call cannot hold up the calls queued
//! behind it. The core hands out a queue's worth of calls beyond the thread
//! count, so a thread done with one takes the next at once. Results gather in
//! one list per client and wake the driver once per run, when the queue runs
//! low, instead of once per call.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rocketmq_core::consumer::{
    ConsumerOptions, Delivery, Listener, OrderlyListener, SyncListener, Ticket, Verdict,
};
use rocketmq_core::protocol::message::MessageExt;
use rocketmq_core::{Call, ClientError};

use crate::{Client, Event};

/// A listener call's result, with the messages it was given: they go back to
/// the driver to be dropped there, on the thread that allocated them (a
/// consume thread freeing them would contend with the driver for its
/// allocator's arena).
pub(crate) type Done = (Ticket, Verdict, Vec<MessageExt>);

/// Listener results waiting for the driver, shared by every pool of a client.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// The results, and whether the driver has been woken for them.
    done: Mutex<(Vec<Done>, bool)>,
}

impl Results {
    /// Adds a result. The driver is woken with [`Event::Consumed`] when its
    /// pool runs low on queued work (`low`) and it has not been woken since it
    /// last took results: a busy pool hands back results in runs, and the
    /// last call of a run always wakes it. Returns false once the driver is
    /// gone.
    fn push(&self, events: &mpsc::Sender<Event>, call: Done, low: bool) -> bool {
        let wake = {
            let mut done = lock(&self.done);
            done.0.push(call);
            let wake = low && !done.1;
            done.1 |= wake;
            wake
        };
        !wake || events.send(Event::Consumed).is_ok()
    }

    /// Everything gathered since the last take.
    pub(crate) fn take(&self) -> Vec<Done> {
        let mut done = lock(&self.done);
        done.1 = false;
        std::mem::take(&mut done.0)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long queued work may wait before another consume thread is woken for
/// it while one is already at work. Waking a thread costs more than a fast
/// listener takes per call, so a thread keeping up alone is left alone; work
/// that waits longer than this (a slow listener, or one stuck in a call) gets
/// the next thread, and so on up to the pool's size.
const STALE: Duration = Duration::from_micros(200);

/// The queue the consume threads share.
#[derive(Debug, Default)]
struct Queue {
    /// Deliveries with when they were queued.
    deliveries: VecDeque<(Instant, Delivery)>,
    /// Threads in the pool.
    threads: usize,
    /// Threads waiting for work.
    idle: usize,
    /// Threads woken and not yet back at the queue.
    waking: usize,
    /// The pool is gone: threads end once the queue is empty.
    closed: bool,
}

impl Queue {
    /// Whether a thread should be woken for the queued work: there is work,
    /// an idle thread, none already on its way, and either no thread at work
    /// or work that has waited for [`STALE`].
    fn wants_thread(&self, now: Instant) -> bool {
        let Some((queued, _)) = self.deliveries.front() else {
            return false;
        };
        let working = self.threads.saturating_sub(self.idle);
        self.waking == 0
            && self.idle > 0
            && (working == 0 || now.saturating_duration_since(*queued) >= STALE)
    }

    /// When waiting work turns stale, if a thread could then be woken for it.
    fn stale_at(&self) -> Option<Instant> {
        let (queued, _) = self.deliveries.front()?;
        (self.waking == 0 && self.idle > 0).then_some(*queued + STALE)
    }
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Threads that have not ended yet, and the signal of each end.
    running: Mutex<usize>,
    ended: Condvar,
}

impl Shared {
    /// The next delivery if one is queued, without waiting, and whether the
    /// queue is running low (at most `low_water` left).
    fn try_next(&self, low_water: usize) -> (Option<Delivery>, bool) {
        let mut q = lock(&self.queue);
        let next = q.deliveries.pop_front().map(|(_, d)| d);
        self.wake_if_wanted(&mut q, Instant::now());
        let low = next.is_none() || q.deliveries.len() <= low_water;
        (next, low)
    }

    /// Wakes one idle thread if the queued work wants one.
    fn wake_if_wanted(&self, q: &mut Queue, now: Instant) {
        if q.wants_thread(now) {
            q.waking += 1;
            self.ready.notify_one();
        }
    }

    /// The next delivery for a consume thread; `None` once the pool is closed
    /// and drained.
    fn next(&self) -> Option<Delivery> {
        let mut q = lock(&self.queue);
        loop {
            if let Some((_, delivery)) = q.deliveries.pop_front() {
                self.wake_if_wanted(&mut q, Instant::now());
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
    threads: Vec<thread::JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` consume threads for `group`.
    pub(crate) fn start(
        group: &str,
        threads: usize,
        listener: SyncListener,
        results: &Arc<Results>,
        events: &mpsc::Sender<Event>,
    ) -> Result<Self, ClientError> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                threads,
                ..Queue::default()
            }),
            running: Mutex::new(threads),
            ..Shared::default()
        });
        // The driver hears of results once half the threads could run dry.
        let low_water = 0;
        let mut pool = Self {
            shared: shared.clone(),
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let (shared, listener) = (shared.clone(), listener.clone());
            let (results, events) = (results.clone(), events.clone());
            let spawned = thread::Builder::new()
                .name(format!("rocketmq-consume-{group}-{i}"))
                .spawn(move || {
                    let _end = Ended(&shared);
                    let Some(mut delivery) = shared.next() else {
                        return;
                    };
                    loop {
                        let result = listener.run(&delivery.messages, &delivery.context);
                        let (more, low) = shared.try_next(low_water);
                        let call = (delivery.ticket, result, delivery.messages);
                        if !results.push(&events, call, low) {
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
                });
            match spawned {
                Ok(handle) => pool.threads.push(handle),
                Err(e) => {
                    // Those never started never end.
                    *lock(&pool.shared.running) -= threads - i;
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Closes the pool and waits, up to `limit`, for its threads to end: at
    /// once for idle ones, when its call returns for one still running a
    /// listener. Whether every thread ended (a thread still running a call
    /// after `limit` is left to end on its own).
    pub(crate) fn close(mut self, limit: Duration) -> bool {
        self.shut();
        let deadline = Instant::now() + limit;
        let mut running = lock(&self.shared.running);
        while *running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            running = self
                .shared
                .ended
                .wait_timeout(running, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let all = *running == 0;
        drop(running);
        for handle in std::mem::take(&mut self.threads) {
            // An ended thread is past its last use of the pool; joining it
            // waits only for its exit.
            if all || handle.is_finished() {
                let _ = handle.join();
            }
        }
        all
    }

    fn shut(&self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_all();
    }

    /// Queues deliveries for the next free threads, under one lock.
    pub(crate) fn run(&self, deliveries: impl IntoIterator<Item = Delivery>) {
        let now = Instant::now();
        let mut q = lock(&self.shared.queue);
        q.deliveries
            .extend(deliveries.into_iter().map(|d| (now, d)));
        self.shared.wake_if_wanted(&mut q, now);
    }

    /// When the driver should next look at this pool ([`check`](Self::check)):
    /// when its queued work turns stale.
    pub(crate) fn check_at(&self) -> Option<Instant> {
        lock(&self.shared.queue).stale_at()
    }

    /// Wakes a thread for work that has waited too long (its threads are all
    /// busy with slow calls).
    pub(crate) fn check(&self, now: Instant) {
        let mut q = lock(&self.shared.queue);
        self.shared.wake_if_wanted(&mut q, now);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Marks a consume thread's end, however it ends.
struct Ended<'a>(&'a Shared);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        *lock(&self.0.running) -= 1;
        self.0.ended.notify_all();
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
        self.start_with(SyncListener::Concurrent(Arc::new(listener)))
    }

    /// Starts an orderly consumer (Java's `MessageListenerOrderly`) with a
    /// listener run on the consumer's own consume threads: a closure
    /// `Fn(&[MessageExt], &ConsumeContext) -> OrderlyResult`, or any
    /// [`OrderlyListener`]. Each queue is processed one batch at a time, in
    /// offset order, while this consumer holds its broker lock.
    pub fn start_orderly(
        mut self,
        listener: impl OrderlyListener,
    ) -> Result<PushConsumer, ClientError> {
        self.options.consumer.orderly = true;
        self.start_with(SyncListener::Orderly(Arc::new(listener)))
    }

    fn start_with(self, listener: SyncListener) -> Result<PushConsumer, ClientError> {
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
        client.listen(&group, consumer.consume_concurrency, listener)?;
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
