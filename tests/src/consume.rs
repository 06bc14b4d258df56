//! The push consumer's conformance checks, written once and run on every
//! runtime (tokio, async-std, smol, blocking) against the real broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocketmq_core::consumer::{
    ConsumeContext, ConsumeFrom, ConsumeResult, ConsumerOptions, ConsumerStats, OrderlyResult,
};
use rocketmq_core::protocol::code::{RequestCode, ResponseCode};
use rocketmq_core::protocol::command::RemotingCommand;
use rocketmq_core::protocol::header::{
    GetMaxOffsetRequestHeader, OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader,
};
use rocketmq_core::protocol::message::{Message, MessageExt};
use rocketmq_core::protocol::MessageQueue;
use rocketmq_core::{ClientError, QueueSelector, SendStatus};

use crate::conformance::{config, send_concurrently, AsyncStd, Blocking, Runtime, Smol, Tokio};
use crate::harness::rpc;

/// A listener the suite can hand to any runtime.
pub type SharedListener =
    Arc<dyn Fn(&[MessageExt], &ConsumeContext) -> ConsumeResult + Send + Sync>;

/// An orderly listener the suite can hand to any runtime.
pub type SharedOrderlyListener =
    Arc<dyn Fn(&[MessageExt], &ConsumeContext) -> OrderlyResult + Send + Sync>;

/// A listener of either kind.
#[derive(Clone)]
pub enum TestListener {
    /// Started with `start` / `start_async`.
    Concurrent(SharedListener),
    /// Started with `start_orderly` / `start_orderly_async`.
    Orderly(SharedOrderlyListener),
}

/// A started push consumer, driven synchronously by the suite.
pub trait RunningConsumer: Send {
    /// Its counters.
    fn stats(&self) -> Result<ConsumerStats, ClientError>;
    /// Graceful shutdown: drain, write offsets, unregister.
    fn shutdown(self) -> Result<(), ClientError>;
    /// Tasks alive on the runtime the consumer runs on, for runtimes whose
    /// tasks the suite can count (0 for the others).
    fn alive_tasks(&self) -> usize {
        0
    }
    /// [`shutdown`](Self::shutdown), then how many tasks are still alive on
    /// the runtime the consumer ran on, within a second (for runtimes whose
    /// tasks the suite can count; 0 for the others, whose client work lives on
    /// threads).
    fn shutdown_counting_tasks(self) -> Result<usize, ClientError>
    where
        Self: Sized,
    {
        self.shutdown().map(|()| 0)
    }
}

/// A runtime that can run push consumers.
pub trait ConsumerRuntime: Runtime {
    /// Its running consumer.
    type Consumer: RunningConsumer;
    /// Starts a consumer of either kind; `asynchronous` picks the adapter's
    /// async listener (where there is one) running the same function.
    fn start_any(
        options: ConsumerOptions,
        listener: TestListener,
        asynchronous: bool,
    ) -> Result<Self::Consumer, ClientError>;

    /// Starts a concurrent consumer.
    fn start_consumer(
        options: ConsumerOptions,
        listener: SharedListener,
        asynchronous: bool,
    ) -> Result<Self::Consumer, ClientError> {
        Self::start_any(options, TestListener::Concurrent(listener), asynchronous)
    }

    /// Starts an orderly consumer.
    fn start_orderly(
        options: ConsumerOptions,
        listener: SharedOrderlyListener,
        asynchronous: bool,
    ) -> Result<Self::Consumer, ClientError> {
        Self::start_any(options, TestListener::Orderly(listener), asynchronous)
    }
}

/// A tokio consumer with the runtime it runs on.
pub struct TokioConsumer {
    rt: tokio::runtime::Runtime,
    consumer: rocketmq_tokio::PushConsumer,
}

impl RunningConsumer for TokioConsumer {
    fn stats(&self) -> Result<ConsumerStats, ClientError> {
        self.rt.block_on(self.consumer.stats())
    }
    fn shutdown(self) -> Result<(), ClientError> {
        self.rt.block_on(self.consumer.shutdown())
    }
    fn alive_tasks(&self) -> usize {
        self.rt.metrics().num_alive_tasks()
    }
    fn shutdown_counting_tasks(self) -> Result<usize, ClientError> {
        self.rt.block_on(self.consumer.shutdown())?;
        // A task that has finished leaves tokio's count a moment after whoever
        // awaited it has seen it finish: a bounded wait for the count, which a
        // task left running never passes.
        let metrics = self.rt.metrics();
        wait_until(Duration::from_secs(1), || metrics.num_alive_tasks() == 0);
        Ok(metrics.num_alive_tasks())
    }
}

impl ConsumerRuntime for Tokio {
    type Consumer = TokioConsumer;
    fn start_any(
        options: ConsumerOptions,
        listener: TestListener,
        asynchronous: bool,
    ) -> Result<TokioConsumer, ClientError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let builder = rocketmq_tokio::PushConsumerBuilder::from_options(options);
        let consumer = rt.block_on(async move {
            match (listener, asynchronous) {
                (TestListener::Concurrent(listener), true) => {
                    builder
                        .start_async(move |messages: Vec<MessageExt>, context: ConsumeContext| {
                            let listener = listener.clone();
                            async move {
                                tokio::task::yield_now().await;
                                listener(&messages, &context)
                            }
                        })
                        .await
                }
                (TestListener::Concurrent(listener), false) => {
                    builder
                        .start(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c))
                        .await
                }
                (TestListener::Orderly(listener), true) => {
                    builder
                        .start_orderly_async(
                            move |messages: Vec<MessageExt>, context: ConsumeContext| {
                                let listener = listener.clone();
                                async move {
                                    tokio::task::yield_now().await;
                                    listener(&messages, &context)
                                }
                            },
                        )
                        .await
                }
                (TestListener::Orderly(listener), false) => {
                    builder
                        .start_orderly(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c))
                        .await
                }
            }
        })?;
        Ok(TokioConsumer { rt, consumer })
    }
}

/// Which executor drives an async-std-family consumer's calls.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// `async_std::task::block_on`.
    AsyncStd,
    /// `smol::block_on`.
    Smol,
}

impl Flavor {
    fn block_on<F: std::future::Future>(self, f: F) -> F::Output {
        match self {
            Self::AsyncStd => async_std::task::block_on(f),
            Self::Smol => smol::block_on(f),
        }
    }

    fn start(
        self,
        options: ConsumerOptions,
        listener: TestListener,
        asynchronous: bool,
    ) -> Result<AsyncConsumer, ClientError> {
        let builder = rocketmq_async_std::PushConsumerBuilder::from_options(options);
        let consumer = match (listener, asynchronous) {
            (TestListener::Concurrent(listener), true) => self.block_on(builder.start_async(
                move |messages: Vec<MessageExt>, context: ConsumeContext| {
                    let listener = listener.clone();
                    async move {
                        futures_lite::future::yield_now().await;
                        listener(&messages, &context)
                    }
                },
            )),
            (TestListener::Concurrent(listener), false) => self.block_on(
                builder.start(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c)),
            ),
            (TestListener::Orderly(listener), true) => self.block_on(builder.start_orderly_async(
                move |messages: Vec<MessageExt>, context: ConsumeContext| {
                    let listener = listener.clone();
                    async move {
                        futures_lite::future::yield_now().await;
                        listener(&messages, &context)
                    }
                },
            )),
            (TestListener::Orderly(listener), false) => self.block_on(
                builder.start_orderly(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c)),
            ),
        }?;
        Ok(AsyncConsumer {
            consumer,
            flavor: self,
        })
    }
}

/// An async-std or smol consumer, driven by that runtime's `block_on`.
pub struct AsyncConsumer {
    consumer: rocketmq_async_std::PushConsumer,
    flavor: Flavor,
}

impl RunningConsumer for AsyncConsumer {
    fn stats(&self) -> Result<ConsumerStats, ClientError> {
        self.flavor.block_on(self.consumer.stats())
    }
    fn shutdown(self) -> Result<(), ClientError> {
        self.flavor.block_on(self.consumer.shutdown())
    }
}

impl ConsumerRuntime for AsyncStd {
    type Consumer = AsyncConsumer;
    fn start_any(
        options: ConsumerOptions,
        listener: TestListener,
        asynchronous: bool,
    ) -> Result<AsyncConsumer, ClientError> {
        Flavor::AsyncStd.start(options, listener, asynchronous)
    }
}

impl ConsumerRuntime for Smol {
    type Consumer = AsyncConsumer;
    fn start_any(
        options: ConsumerOptions,
        listener: TestListener,
        asynchronous: bool,
    ) -> Result<AsyncConsumer, ClientError> {
        Flavor::Smol.start(options, listener, asynchronous)
    }
}

impl RunningConsumer for rocketmq_blocking::PushConsumer {
    fn stats(&self) -> Result<ConsumerStats, ClientError> {
        Self::stats(self)
    }
    fn shutdown(self) -> Result<(), ClientError> {
        Self::shutdown(self)
    }
}

impl ConsumerRuntime for Blocking {
    type Consumer = rocketmq_blocking::PushConsumer;
    fn start_any(
        options: ConsumerOptions,
        listener: TestListener,
        _asynchronous: bool,
    ) -> Result<rocketmq_blocking::PushConsumer, ClientError> {
        let builder = rocketmq_blocking::PushConsumerBuilder::from_options(options);
        match listener {
            TestListener::Concurrent(listener) => {
                builder.start(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c))
            }
            TestListener::Orderly(listener) => {
                builder.start_orderly(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c))
            }
        }
    }
}

/// The `index` properties of what `group`'s DLQ holds, sorted, once it holds
/// at least `want` messages (read through `client` with plain pulls), and
/// whether it came to hold that many within `limit`.
pub fn dead_letters<R: Runtime>(
    client: &R,
    group: &str,
    want: usize,
    limit: Duration,
) -> (bool, Vec<usize>) {
    let dlq = format!("{}{group}", rocketmq_core::client::DLQ_PREFIX);
    let mut found: Vec<usize> = Vec::new();
    let enough = wait_until(limit, || {
        let Ok(route) = client.query_route(&dlq) else {
            return false;
        };
        found = route
            .subscribe_queues(&dlq)
            .iter()
            .flat_map(|q| crate::conformance::pull_all(client, "dlq-reader", q, None))
            .filter_map(|m| m.property("index").and_then(|i| i.parse().ok()))
            .collect();
        found.len() >= want
    });
    found.sort_unstable();
    (enough, found)
}

/// Settings for a test consumer of `group` on `topic` reading from the start.
pub fn options(namesrv: &str, group: &str, topic: &str) -> ConsumerOptions {
    let mut o = ConsumerOptions::new(group);
    o.add_name_servers(namesrv);
    // Tests run in parallel, each tokio one on a runtime of its own: a client
    // of its own each (a shared client stops with the runtime that started it).
    o.client.instance_name = group.to_owned();
    o.subscriptions.push((topic.to_owned(), "*".into()));
    o.set_consume_from(ConsumeFrom::FirstOffset);
    o
}

/// Polls `done` every 20 ms until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Deliveries per message (by its `index` property, which
/// [`test_message`](crate::conformance::test_message) sets), shared between a
/// listener and the test.
pub type Seen = Arc<Mutex<HashMap<String, u32>>>;

/// A listener that counts each message it is given and succeeds.
pub fn counting(seen: &Seen) -> SharedListener {
    let seen = seen.clone();
    Arc::new(move |messages: &[MessageExt], _: &ConsumeContext| {
        let mut seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in messages {
            let index = m.property("index").unwrap_or("none").to_owned();
            *seen.entry(index).or_default() += 1;
        }
        ConsumeResult::Success
    })
}

/// One queue as the broker holds it, asked over a plain TCP connection of its
/// own (the harness's request helper), not through the client under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerQueue {
    /// The group's committed offset on the broker (QUERY_CONSUMER_OFFSET);
    /// `None` when the broker has none for the group.
    pub committed: Option<i64>,
    /// One past the queue's last message (GET_MAX_OFFSET).
    pub max: i64,
}

/// What the broker of each queue of `topic` holds for `group`: its committed
/// offset and the queue's max offset. Fails loudly when a broker cannot be
/// asked.
pub fn broker_offsets(
    namesrv: &str,
    group: &str,
    topic: &str,
) -> BTreeMap<MessageQueue, BrokerQueue> {
    broker_queues(namesrv, topic)
        .into_iter()
        .map(|(q, addr)| {
            // "Not found" rather than 0 when the group has no offset.
            let committed = query_committed(&addr, group, &q, Some(false));
            let max = RemotingCommand::request(RequestCode::GET_MAX_OFFSET, rpc::next_opaque())
                .with_header(&GetMaxOffsetRequestHeader {
                    topic: q.topic.clone(),
                    queue_id: q.queue_id,
                    committed: None,
                    broker_name: Some(q.broker_name.clone()),
                });
            let answer = rpc::call_ok(&addr, &max, rpc::DEFAULT_TIMEOUT)
                .unwrap_or_else(|e| panic!("GET_MAX_OFFSET {q}: {e}"));
            let max: OffsetResponseHeader = answer
                .header()
                .unwrap_or_else(|e| panic!("GET_MAX_OFFSET {q}: {e}"));
            (
                q,
                BrokerQueue {
                    committed,
                    max: max.offset,
                },
            )
        })
        .collect()
}

/// The readable queues of `topic` with their master broker's address.
pub fn broker_queues(namesrv: &str, topic: &str) -> Vec<(MessageQueue, String)> {
    let route = rpc::query_route(namesrv, topic, rpc::DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("the route of {topic}: {e}"))
        .unwrap_or_else(|| panic!("{topic} has no route"));
    let queues = route.subscribe_queues(topic);
    assert!(
        !queues.is_empty(),
        "{topic} has no readable queue: {route:?}"
    );
    queues
        .into_iter()
        .map(|q| {
            let addr = route
                .master_addr(&q.broker_name)
                .unwrap_or_else(|| panic!("no master broker for {q}: {route:?}"))
                .to_owned();
            (q, addr)
        })
        .collect()
}

/// QUERY_CONSUMER_OFFSET of `group` on `q` at the broker `addr`: the offset,
/// or `None` for QUERY_NOT_FOUND. `set_zero_if_not_found` as sent (unset is
/// what the Java client sends: the broker then answers 0 for a group without
/// an offset while the queue's first message is in memory).
fn query_committed(
    addr: &str,
    group: &str,
    q: &MessageQueue,
    set_zero_if_not_found: Option<bool>,
) -> Option<i64> {
    let query = RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET, rpc::next_opaque())
        .with_header(&QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: q.topic.clone(),
            queue_id: q.queue_id,
            set_zero_if_not_found,
            broker_name: Some(q.broker_name.clone()),
        });
    let answer = rpc::call(addr, &query, rpc::DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("QUERY_CONSUMER_OFFSET {group} {q}: {e}"));
    let code = answer.response_code();
    if code == ResponseCode::SUCCESS {
        let h: QueryConsumerOffsetResponseHeader = answer
            .header()
            .unwrap_or_else(|e| panic!("QUERY_CONSUMER_OFFSET {group} {q}: {e}"));
        Some(h.offset)
    } else if code == ResponseCode::QUERY_NOT_FOUND {
        None
    } else {
        panic!(
            "QUERY_CONSUMER_OFFSET {group} {q}: code {} {:?}",
            answer.code, answer.remark
        );
    }
}

/// The `i`-th message of a drain backlog: small (1 B to about 1 KiB, so that
/// a hundred thousand stay quick to send, store and count), with a tag, a key
/// and the `index` property [`counting`] reads.
pub fn drain_message(topic: &str, i: usize) -> Message {
    let len = match i % 4 {
        0 => 1 + i % 7,
        1 => 100 + i % 50,
        2 => 400 + i % 100,
        _ => 1000 + i % 24,
    };
    let body: Vec<u8> = format!("message {i} of the drain; ")
        .bytes()
        .cycle()
        .take(len)
        .collect();
    Message::new(topic, Bytes::from(body))
        .with_tags(format!("Tag{}", i % 3))
        .with_keys([format!("key-{i}")])
        .with_property("index", i.to_string())
}

/// Sends messages `0..count` (made by `make`) as batches of `batch`, each batch
/// to the next queue in turn, from `threads` threads, keeping none of them;
/// returns one past the last offset each queue was given.
pub fn send_batches<R: Runtime + Sync>(
    producer: &R,
    group: &str,
    topic: &str,
    count: usize,
    batch: usize,
    threads: usize,
    make: impl Fn(&str, usize) -> Message + Sync,
) -> BTreeMap<MessageQueue, i64> {
    let next = AtomicUsize::new(0);
    let ends: Mutex<BTreeMap<MessageQueue, i64>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= count {
                    break;
                }
                let last = (first + batch).min(count);
                let messages: Vec<Message> = (first..last).map(|i| make(topic, i)).collect();
                let r = producer
                    .send_batch(group, messages)
                    .unwrap_or_else(|e| panic!("{}: batch {first}..{last} failed: {e}", R::NAME));
                assert_eq!(
                    r.status,
                    SendStatus::Ok,
                    "{}: batch {first}..{last}",
                    R::NAME
                );
                let end = r.queue_offset + (last - first) as i64;
                let mut ends = ends
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let e = ends.entry(r.queue).or_default();
                *e = (*e).max(end);
            });
        }
    });
    ends.into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What `consume_everything` saw.
#[derive(Debug)]
pub struct ConsumeRun {
    /// Messages sent.
    pub sent: usize,
    /// Distinct messages consumed.
    pub consumed: usize,
    /// Deliveries beyond the first.
    pub duplicates: u32,
    /// From start to the last message.
    pub elapsed: Duration,
    /// After the shutdown, what the broker holds per queue for the group.
    pub broker: BTreeMap<MessageQueue, BrokerQueue>,
    /// Queues whose committed offset had reached the end on the broker before
    /// the shutdown (through what pulls carried).
    pub at_end_before_shutdown: usize,
}

/// One consumer drains `count` messages over a fresh topic: every one is
/// consumed exactly once (no duplicates: one consumer, no failures), and each
/// queue's committed offset reaches the queue's end, in the client's stats and
/// then, after a graceful shutdown (which writes the final offsets), on the
/// broker, asked directly (QUERY_CONSUMER_OFFSET against GET_MAX_OFFSET). A
/// second consumer of the same group is given nothing again.
pub fn consume_everything<R: ConsumerRuntime + Sync>(
    namesrv: &str,
    topic: &str,
    count: usize,
    asynchronous: bool,
) -> ConsumeRun {
    let producer = R::start(config(namesrv));
    let ends = send_batches(
        &producer,
        "consume-producer",
        topic,
        count,
        50,
        4,
        drain_message,
    );
    assert_eq!(
        ends.values().sum::<i64>(),
        count as i64,
        "{}: a fresh topic holds exactly what was sent: {ends:?}",
        R::NAME
    );
    let seen: Seen = Arc::default();
    let group = format!(
        "consume-all-{}-{}",
        R::NAME,
        if asynchronous { "async" } else { "sync" }
    );
    let started = Instant::now();
    let mut o = options(namesrv, &group, topic);
    // No periodic offset writes during the run: the broker is left with what
    // pulls carried (COMMIT_OFFSET) and must get the ends from the shutdown.
    o.consumer.persist_interval = Duration::from_secs(3600);
    let consumer = R::start_consumer(o, counting(&seen), asynchronous)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    let all = wait_until(Duration::from_secs(300), || {
        seen.lock().map(|s| s.len() >= count).unwrap_or(false)
    });
    let elapsed = started.elapsed();
    let (consumed, duplicates) = {
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (s.len(), s.values().map(|n| n - 1).sum::<u32>())
    };
    assert!(
        all,
        "{}: consumed {consumed} of {count} in {elapsed:?}; {:#?}",
        R::NAME,
        consumer.stats()
    );
    {
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let missing: Vec<usize> = (0..count)
            .filter(|i| !s.contains_key(&i.to_string()))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {} messages never consumed, e.g. {:?}",
            R::NAME,
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        let twice: Vec<(&String, &u32)> = s.iter().filter(|(_, n)| **n > 1).take(10).collect();
        assert_eq!(
            duplicates,
            0,
            "{}: one consumer and no failures, yet messages came twice, e.g. {twice:?}",
            R::NAME
        );
    }
    // Committed offsets reach each queue's end (the last success may take a
    // moment to be reflected).
    let reached = wait_until(Duration::from_secs(10), || {
        consumer.stats().is_ok_and(|s| {
            ends.iter().all(|(q, end)| {
                s.queues
                    .iter()
                    .any(|(mq, qs)| mq == q && qs.committable_offset == Some(*end))
            })
        })
    });
    let stats = consumer.stats().expect("stats");
    assert!(
        reached,
        "{}: committed offsets short of the ends {ends:?}: {stats:?}",
        R::NAME
    );
    assert_eq!(stats.cached_count, 0, "{}: nothing left cached", R::NAME);
    assert_eq!(
        (stats.consumed, stats.failed, stats.sent_back),
        (count as u64, 0, 0),
        "{}: (consumed, failed, sent back) in the stats",
        R::NAME
    );
    let at_end_before_shutdown = broker_offsets(namesrv, &group, topic)
        .values()
        .filter(|b| b.committed == Some(b.max))
        .count();
    consumer
        .shutdown()
        .unwrap_or_else(|e| panic!("{}: shutdown failed: {e}", R::NAME));

    // The shutdown completes once its final offset writes are answered: the
    // broker holds each queue's end for the group now, with no waiting.
    let broker = broker_offsets(namesrv, &group, topic);
    let wrong: Vec<String> = broker
        .iter()
        .filter(|(q, b)| b.committed != Some(b.max) || ends.get(q).copied().unwrap_or(0) != b.max)
        .map(|(q, b)| format!("{q}: {b:?}, sent to {:?}", ends.get(q)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}: after the shutdown the broker's committed offsets are the queues' max offsets: {wrong:#?}",
        R::NAME
    );
    assert_eq!(
        broker.keys().collect::<Vec<_>>(),
        ends.keys().collect::<Vec<_>>(),
        "{}: every queue was written to and checked",
        R::NAME
    );

    // The same group again: the broker has the offsets, so nothing comes back.
    let again: Seen = Arc::default();
    let consumer = R::start_consumer(
        options(namesrv, &group, topic),
        counting(&again),
        asynchronous,
    )
    .unwrap_or_else(|e| panic!("{}: restart failed: {e}", R::NAME));
    // Each queue starts at its end: the committed offsets reached the broker.
    let resumed = wait_until(Duration::from_secs(30), || {
        consumer.stats().is_ok_and(|s| {
            ends.iter().all(|(q, end)| {
                s.queues
                    .iter()
                    .any(|(mq, qs)| mq == q && qs.next_pull_offset == *end)
            })
        })
    });
    assert!(
        resumed,
        "{}: the restarted consumer resumes every queue at its end {ends:?}: {:?}",
        R::NAME,
        consumer.stats()
    );
    let redelivered = again.lock().map(|s| s.len()).unwrap_or(0);
    consumer.shutdown().expect("shutdown");
    producer.shutdown();
    assert_eq!(
        redelivered,
        0,
        "{}: nothing delivered twice across a restart",
        R::NAME
    );
    ConsumeRun {
        sent: count,
        consumed,
        duplicates,
        elapsed,
        broker,
        at_end_before_shutdown,
    }
}

/// Failed messages come back from the retry topic: a message whose listener
/// fails once is delivered again with reconsume times 1 (under its own topic)
/// and then consumed; one that always fails lands in `%DLQ%<group>` after
/// max reconsume times (1 here), and is not delivered again.
pub fn retry_and_dead_letter<R: ConsumerRuntime + Sync>(namesrv: &str, topic: &str) {
    const COUNT: usize = 10;
    let producer = R::start(config(namesrv));
    for (i, (_, r)) in send_concurrently(&producer, "retry-producer", topic, COUNT, 2, |_| {
        QueueSelector::RoundRobin
    })
    .into_iter()
    .enumerate()
    {
        r.unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
    }
    // (index, reconsume times, topic) of every delivery.
    let deliveries: Arc<Mutex<Vec<(usize, i32, String)>>> = Arc::default();
    let log = deliveries.clone();
    let listener: SharedListener = Arc::new(move |messages: &[MessageExt], _: &ConsumeContext| {
        let mut result = ConsumeResult::Success;
        for m in messages {
            let index: usize = m
                .property("index")
                .and_then(|i| i.parse().ok())
                .unwrap_or(usize::MAX);
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((index, m.reconsume_times, m.topic.to_string()));
            // Odd ones always fail; even ones fail on their first delivery.
            if index % 2 == 1 || m.reconsume_times == 0 {
                result = ConsumeResult::ReconsumeLater { delay_level: 1 };
            }
        }
        result
    });
    let group = format!("retry-{}", R::NAME);
    let mut o = options(namesrv, &group, topic);
    o.consumer.max_reconsume_times = 1;
    let consumer = R::start_consumer(o, listener, false)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    // Every message delivered twice: first try, then the retry.
    let twice = wait_until(Duration::from_secs(60), || {
        let d = deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (0..COUNT).all(|i| d.iter().filter(|(x, ..)| *x == i).count() >= 2)
    });
    let d = deliveries
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(
        twice,
        "{}: every message came back once: {d:?}; {:?}",
        R::NAME,
        consumer.stats()
    );
    for i in 0..COUNT {
        let mine: Vec<&(usize, i32, String)> = d.iter().filter(|(x, ..)| *x == i).collect();
        assert_eq!(mine[0].1, 0, "{}: first delivery of {i}", R::NAME);
        assert_eq!(
            mine[1].1,
            1,
            "{}: the retry of {i} counts one reconsume",
            R::NAME
        );
        assert_eq!(
            mine[1].2,
            topic,
            "{}: a retried message shows its own topic",
            R::NAME
        );
    }
    // The odd ones went to the DLQ after their second failure.
    let (found, in_dlq) = dead_letters(&producer, &group, COUNT / 2, Duration::from_secs(60));
    assert!(
        found,
        "{}: the DLQ has the always-failing messages: {in_dlq:?}",
        R::NAME
    );
    assert_eq!(in_dlq, [1, 3, 5, 7, 9], "{}: exactly the odd ones", R::NAME);
    let stats = consumer.stats().expect("stats");
    assert_eq!(
        stats.sent_back,
        15,
        "{}: 5 evens once, 5 odds twice",
        R::NAME
    );
    assert_eq!(stats.consumed, 5, "{}: {stats:?}", R::NAME);
    let total = deliveries.lock().map(|d| d.len()).unwrap_or(0);
    assert_eq!(
        total,
        2 * COUNT,
        "{}: nothing delivered a third time",
        R::NAME
    );
    consumer.shutdown().expect("shutdown");
    producer.shutdown();
}

/// What `group_changes` saw.
#[derive(Debug)]
pub struct GroupRun {
    /// Messages sent.
    pub sent: usize,
    /// Deliveries beyond the first (from queues that changed hands).
    pub duplicates: u32,
    /// From the first start to the last message.
    pub elapsed: Duration,
    /// Times a queue changed hands, as the deliveries show them.
    pub handovers: usize,
    /// Duplicates allowed per handover: the old owner's uncommitted window.
    pub window: u32,
    /// Duplicates allowed in all: `handovers * window`.
    pub bound: u32,
    /// Per queue with more than one owner: its owners in the order they
    /// first delivered from it, and its duplicates.
    pub moved: Vec<(MessageQueue, Vec<String>, u32)>,
}

/// Three consumers of one group (each its own client id): two start, a third
/// joins a third of the way through, the first leaves gracefully two thirds of
/// the way through. Every message is consumed; duplicates come only from
/// queues that changed hands, and each handover's are bounded by the old
/// owner's uncommitted window.
///
/// The bound: when a queue moves, the new owner starts from the offset the
/// broker holds, which the old owner wrote on the broker's notice that the
/// group changed (or, when it leaves, at its shutdown, after its listener
/// calls finished). Past that offset the old owner can have delivered, or can
/// still deliver before it drops the queue, only what it held then: its cached
/// messages (at most `queue_cache_count`, running calls included), one pull on
/// the wire (`pull_batch_size`), and messages finished out of order above a
/// running call (at most its running calls, `consume_concurrency`, plus as
/// many again that an adapter may queue ahead). So per handover at most
/// `queue_cache_count + pull_batch_size + 2 * consume_concurrency`, with a
/// small `queue_cache_count` here to make that bound bite.
pub fn group_changes<R: ConsumerRuntime + Sync>(
    namesrv: &str,
    topic: &str,
    count: usize,
) -> GroupRun {
    const QUEUE_CACHE: usize = 64;
    const PULL_BATCH: u32 = 32;
    const CONCURRENCY: usize = 2;
    const WINDOW: u32 = QUEUE_CACHE as u32 + PULL_BATCH + 2 * CONCURRENCY as u32;
    let producer = R::start(config(namesrv));
    for (i, (_, r)) in send_concurrently(&producer, "group-producer", topic, count, 8, |_| {
        QueueSelector::RoundRobin
    })
    .into_iter()
    .enumerate()
    {
        r.unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
    }
    // Per message its queue and deliveries; per queue its owners in the order
    // they first delivered from it.
    #[derive(Default)]
    struct Log {
        seen: HashMap<usize, (MessageQueue, u32)>,
        owners: BTreeMap<MessageQueue, Vec<String>>,
    }
    let log: Arc<Mutex<Log>> = Arc::default();
    // A listener slow enough that the group changes while messages remain.
    let listener = |name: &str| -> SharedListener {
        let (log, name) = (log.clone(), name.to_owned());
        Arc::new(move |m: &[MessageExt], c: &ConsumeContext| {
            std::thread::sleep(Duration::from_millis(2));
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let owners = log.owners.entry(c.queue.clone()).or_default();
            if !owners.contains(&name) {
                owners.push(name.clone());
            }
            for x in m {
                let index = x
                    .property("index")
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(usize::MAX);
                log.seen.entry(index).or_insert((c.queue.clone(), 0)).1 += 1;
            }
            ConsumeResult::Success
        })
    };
    let group = format!("group-changes-{}", R::NAME);
    let start = |name: &str| {
        let mut o = options(namesrv, &group, topic);
        o.client.instance_name = format!("{}-{name}", R::NAME);
        o.consumer.consume_concurrency = CONCURRENCY;
        o.consumer.queue_cache_count = QUEUE_CACHE;
        o.consumer.pull_batch_size = PULL_BATCH;
        R::start_consumer(o, listener(name), false)
            .unwrap_or_else(|e| panic!("{}: start {name} failed: {e}", R::NAME))
    };
    let distinct = || {
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .seen
            .len()
    };
    let started = Instant::now();
    let a = start("a");
    let b = start("b");
    assert!(
        wait_until(Duration::from_secs(60), || distinct() >= count / 3),
        "{}: a third consumed by two consumers",
        R::NAME
    );
    let c = start("c");
    assert!(
        wait_until(Duration::from_secs(60), || distinct() >= 2 * count / 3),
        "{}: two thirds consumed by three consumers",
        R::NAME
    );
    a.shutdown()
        .unwrap_or_else(|e| panic!("{}: a's shutdown failed: {e}", R::NAME));
    let all = wait_until(Duration::from_secs(120), || distinct() >= count);
    let elapsed = started.elapsed();
    let (missing, duplicates) = {
        let log = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let missing: Vec<usize> = (0..count).filter(|i| !log.seen.contains_key(i)).collect();
        (missing, log.seen.values().map(|(_, n)| n - 1).sum::<u32>())
    };
    assert!(
        all && missing.is_empty(),
        "{}: {} messages never consumed (first {:?}); b {:?}; c {:?}",
        R::NAME,
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        b.stats(),
        c.stats()
    );
    // Both remaining consumers hold queues of the topic after the changes.
    let split = wait_until(Duration::from_secs(60), || {
        let held = |x: &R::Consumer| {
            x.stats()
                .map(|s| s.queues.iter().filter(|(q, _)| q.topic == topic).count())
                .unwrap_or(0)
        };
        held(&b) + held(&c) == 8 && held(&b) > 0 && held(&c) > 0
    });
    assert!(
        split,
        "{}: b and c share the 8 queues: {:?} {:?}",
        R::NAME,
        b.stats(),
        c.stats()
    );
    b.shutdown().expect("shutdown b");
    c.shutdown().expect("shutdown c");
    producer.shutdown();

    // Duplicates only where a queue changed hands, at most a window per handover.
    let log = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut per_queue: BTreeMap<MessageQueue, u32> = BTreeMap::new();
    for (q, n) in log.seen.values() {
        *per_queue.entry(q.clone()).or_default() += n - 1;
    }
    let mut handovers = 0;
    let mut moved = Vec::new();
    let mut over = Vec::new();
    for (q, owners) in &log.owners {
        let hands = owners.len() - 1;
        let dups = per_queue.get(q).copied().unwrap_or(0);
        handovers += hands;
        if dups > hands as u32 * WINDOW {
            over.push(format!(
                "{q}: {dups} duplicates over {hands} handovers (owners {owners:?}), more than {}",
                hands as u32 * WINDOW
            ));
        }
        if hands > 0 {
            moved.push((q.clone(), owners.clone(), dups));
        }
    }
    let bound = handovers as u32 * WINDOW;
    assert!(
        over.is_empty(),
        "{}: duplicates beyond the uncommitted window of {WINDOW} per handover \
         (queue cache {QUEUE_CACHE} + pull batch {PULL_BATCH} + 2 x concurrency {CONCURRENCY}): {over:#?}",
        R::NAME
    );
    assert!(
        duplicates <= bound,
        "{}: {duplicates} duplicates, more than {handovers} handovers x {WINDOW}",
        R::NAME
    );
    GroupRun {
        sent: count,
        duplicates,
        elapsed,
        handovers,
        window: WINDOW,
        bound,
        moved,
    }
}

/// Where a new group starts: from the first offset it gets the old messages;
/// from a timestamp it gets exactly those stored at or after it; from the last
/// offset (Java's `CONSUME_FROM_LAST_OFFSET`: a new group starts at each
/// queue's max offset) it gets none of the old messages and every one sent
/// after its queues started.
pub fn consume_from<R: ConsumerRuntime + Sync>(namesrv: &str, topic: &str) {
    const EACH: usize = 10;
    let producer = R::start(config(namesrv));
    let send = |from: usize| {
        for i in from..from + EACH {
            let m = crate::conformance::test_message(topic, i);
            producer
                .send("from-producer", m)
                .unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
        }
    };
    send(0);
    // Store times are in ms: leave a clear gap around the cut.
    std::thread::sleep(Duration::from_millis(50));
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    std::thread::sleep(Duration::from_millis(50));
    send(EACH);
    let drain = |name: &str, from: ConsumeFrom, want: usize| {
        let seen: Seen = Arc::default();
        let mut o = options(namesrv, &format!("from-{name}-{}", R::NAME), topic);
        o.set_consume_from(from);
        let consumer = R::start_consumer(o, counting(&seen), false)
            .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
        let got = wait_until(Duration::from_secs(30), || {
            seen.lock().map(|s| s.len() >= want).unwrap_or(false)
        });
        consumer.shutdown().expect("shutdown");
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut indices: Vec<usize> = s.keys().filter_map(|k| k.parse().ok()).collect();
        indices.sort_unstable();
        assert!(got, "{}: {name} got {indices:?}", R::NAME);
        indices
    };
    let first = drain("first", ConsumeFrom::FirstOffset, 2 * EACH);
    assert_eq!(first, (0..2 * EACH).collect::<Vec<_>>(), "{}", R::NAME);
    let since = drain("timestamp", ConsumeFrom::Timestamp(cut), EACH);
    assert_eq!(
        since,
        (EACH..2 * EACH).collect::<Vec<_>>(),
        "{}: only what was stored after the cut",
        R::NAME
    );

    // From the last offset, a group the broker has never seen.
    let group = format!("from-last-{}", R::NAME);
    let before = broker_offsets(namesrv, &group, topic);
    assert!(
        before.values().all(|b| b.committed.is_none()),
        "{}: {group} is new to the broker: {before:?}",
        R::NAME
    );
    assert_eq!(
        before.values().map(|b| b.max).sum::<i64>(),
        2 * EACH as i64,
        "{}: the old messages are stored: {before:?}",
        R::NAME
    );
    // What the broker answers the offset query the Java client sends (no
    // setZeroIfNotFound) for this new group: shown if the check fails.
    let java_query: Vec<(i32, Option<i64>)> = broker_queues(namesrv, topic)
        .iter()
        .map(|(q, addr)| (q.queue_id, query_committed(addr, &group, q, None)))
        .collect();
    let seen: Seen = Arc::default();
    let mut o = options(namesrv, &group, topic);
    o.set_consume_from(ConsumeFrom::LastOffset);
    let consumer = R::start_consumer(o, counting(&seen), false)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    // A queue shows in the stats once its start offset is fixed: every queue
    // must have started before the new messages go out.
    let started = wait_until(Duration::from_secs(30), || {
        consumer.stats().is_ok_and(|s| {
            before
                .keys()
                .all(|q| s.queues.iter().any(|(mq, _)| mq == q))
        })
    });
    let stats = consumer.stats().expect("stats");
    assert!(
        started,
        "{}: last: every queue of {topic} assigned and started: {stats:?}",
        R::NAME
    );
    let starts: BTreeMap<MessageQueue, (i64, Option<i64>)> = stats
        .queues
        .iter()
        .filter(|(q, _)| q.topic == topic)
        .map(|(q, qs)| (q.clone(), (qs.next_pull_offset, qs.committable_offset)))
        .collect();
    send(2 * EACH);
    let new = 2 * EACH..3 * EACH;
    let got = wait_until(Duration::from_secs(30), || {
        seen.lock()
            .map(|s| new.clone().all(|i| s.contains_key(&i.to_string())))
            .unwrap_or(false)
    });
    let stats = consumer.stats();
    consumer.shutdown().expect("shutdown");
    let mut last: Vec<usize> = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .keys()
        .filter_map(|k| k.parse().ok())
        .collect();
    last.sort_unstable();
    let context = format!(
        "queues seen started at (next pull, committable) {starts:?}; max offsets then {:?}; \
         the broker's answer (queue id, offset) to a Java-style offset query for this new \
         group: {java_query:?} (0: the broker tells a new group to start at 0 while the \
         queue's first message is in memory); {stats:?}",
        before
            .iter()
            .map(|(q, b)| (q.queue_id, b.max))
            .collect::<Vec<_>>()
    );
    assert!(
        got,
        "{}: last: every message sent after the start arrives; got {last:?}; {context}",
        R::NAME
    );
    // A new group starts where the broker's offset query puts it, as the Java
    // client does: a broker that has no offset for the group answers 0 while
    // the queue's first message is still in memory (a young topic: the Java
    // 5.3.3 client reads everything there too), and "not found" otherwise,
    // when the group starts at the queue's end. Keeping the broker's 0 is what
    // lets a queue added to a topic later be read from its start.
    if java_query.iter().all(|(_, o)| o.is_none()) {
        assert_eq!(
            last,
            new.collect::<Vec<_>>(),
            "{}: last: none of the old messages, all of the new; {context}",
            R::NAME
        );
    } else if java_query.iter().all(|(_, o)| *o == Some(0)) {
        assert_eq!(
            last,
            (0..3 * EACH).collect::<Vec<_>>(),
            "{}: last: the broker said 0 for every queue, so everything, as Java; {context}",
            R::NAME
        );
    }
    producer.shutdown();
}

/// Filters: a tag expression takes exactly the messages with those tags; an
/// SQL92 expression over a user property takes exactly the matching ones (the
/// harness's broker runs with `enablePropertyFilter=true`).
pub fn filters<R: ConsumerRuntime + Sync>(namesrv: &str, topic: &str) {
    const COUNT: usize = 30;
    let producer = R::start(config(namesrv));
    let mut ends: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..COUNT {
        // test_message tags message i with Tag{i % 3} and sets property index=i.
        let r = producer
            .send(
                "filter-producer",
                crate::conformance::test_message(topic, i),
            )
            .unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
        let end = ends.entry(r.queue.to_string()).or_default();
        *end = (*end).max(r.queue_offset + 1);
    }
    let run = |name: &str, selector: rocketmq_core::consumer::Selector| {
        let seen: Seen = Arc::default();
        let mut o = options(namesrv, &format!("filter-{name}-{}", R::NAME), topic);
        o.subscriptions = vec![(topic.to_owned(), selector)];
        let consumer = R::start_consumer(o, counting(&seen), false)
            .unwrap_or_else(|e| panic!("{}: start {name} failed: {e}", R::NAME));
        // Done when every queue was read to its end.
        let read = wait_until(Duration::from_secs(30), || {
            consumer.stats().is_ok_and(|s| {
                ends.iter().all(|(q, end)| {
                    s.queues.iter().any(|(mq, qs)| {
                        mq.to_string() == *q && qs.committable_offset.is_some_and(|c| c >= *end)
                    })
                })
            })
        });
        let stats = consumer.stats();
        consumer.shutdown().expect("shutdown");
        assert!(
            read,
            "{}: {name} read every queue to its end: {stats:?}",
            R::NAME
        );
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut got: Vec<usize> = s.keys().filter_map(|k| k.parse().ok()).collect();
        got.sort_unstable();
        got
    };
    let tags = run("tags", "Tag0 || Tag2".into());
    let want: Vec<usize> = (0..COUNT).filter(|i| i % 3 != 1).collect();
    assert_eq!(tags, want, "{}: tag filter", R::NAME);
    let sql = run(
        "sql",
        rocketmq_core::consumer::Selector::sql92("index BETWEEN 5 AND 9 AND TAGS <> 'Tag1'"),
    );
    assert_eq!(sql, [5, 6, 8, 9], "{}: SQL92 filter", R::NAME);
    // An expression the broker cannot parse fails the start, typed, as Java's
    // start does; nothing keeps running.
    let mut o = options(namesrv, &format!("filter-bad-{}", R::NAME), topic);
    o.subscriptions = vec![(
        topic.to_owned(),
        rocketmq_core::consumer::Selector::sql92("index BETWEEN AND"),
    )];
    match R::start_consumer(o, counting(&Seen::default()), false) {
        Err(ClientError::Subscribe(rocketmq_core::consumer::SubscribeError::Refused {
            topic: t,
            ..
        })) => assert_eq!(t, topic),
        Err(e) => panic!("{}: a bad SQL92 start failed otherwise: {e}", R::NAME),
        Ok(c) => {
            let _ = c.shutdown();
            panic!("{}: a bad SQL92 expression started", R::NAME)
        }
    }
    producer.shutdown();
}

/// Broadcasting: two consumers of one group each get every message; their
/// offsets go to their own local files (one per client id), and a restarted
/// consumer resumes from its file at the queues' ends.
pub fn broadcasting<R: ConsumerRuntime + Sync>(namesrv: &str, topic: &str, dir: &std::path::Path) {
    const COUNT: usize = 200;
    let producer = R::start(config(namesrv));
    let mut ends: BTreeMap<String, i64> = BTreeMap::new();
    for (i, (_, r)) in send_concurrently(&producer, "bc-producer", topic, COUNT, 4, |_| {
        QueueSelector::RoundRobin
    })
    .into_iter()
    .enumerate()
    {
        let r = r.unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
        let end = ends.entry(r.queue.to_string()).or_default();
        *end = (*end).max(r.queue_offset + 1);
    }
    let group = format!("broadcast-{}", R::NAME);
    let start = |name: &str, seen: &Seen| {
        let mut o = options(namesrv, &group, topic);
        o.client.instance_name = format!("{}-{name}", R::NAME);
        o.consumer.message_model = rocketmq_core::consumer::MessageModel::Broadcasting;
        o.consumer.offset_store_dir = Some(dir.display().to_string());
        R::start_consumer(o, counting(seen), false)
            .unwrap_or_else(|e| panic!("{}: start {name} failed: {e}", R::NAME))
    };
    let (seen_a, seen_b): (Seen, Seen) = (Arc::default(), Arc::default());
    let a = start("a", &seen_a);
    let b = start("b", &seen_b);
    for (name, seen) in [("a", &seen_a), ("b", &seen_b)] {
        let all = wait_until(Duration::from_secs(60), || {
            seen.lock().map(|s| s.len() >= COUNT).unwrap_or(false)
        });
        let got = seen.lock().map(|s| s.len()).unwrap_or(0);
        assert!(
            all,
            "{}: broadcasting consumer {name} got {got} of {COUNT}",
            R::NAME
        );
    }
    // Committed offsets at the ends, then shut down: the files hold them.
    for (name, c) in [("a", &a), ("b", &b)] {
        let at_ends = wait_until(Duration::from_secs(10), || {
            c.stats().is_ok_and(|s| {
                ends.iter().all(|(q, end)| {
                    s.queues
                        .iter()
                        .any(|(mq, qs)| mq.to_string() == *q && qs.committable_offset == Some(*end))
                })
            })
        });
        assert!(at_ends, "{}: {name} committed to the ends", R::NAME);
    }
    a.shutdown().expect("shutdown a");
    b.shutdown().expect("shutdown b");
    let mut files = Vec::new();
    for id in std::fs::read_dir(dir).expect("offset dir").flatten() {
        let file = id.path().join(&group).join("offsets.json");
        if file.exists() {
            files.push(file);
        }
    }
    assert_eq!(
        files.len(),
        2,
        "{}: one offset file per client id: {files:?}",
        R::NAME
    );
    for file in &files {
        let data = std::fs::read(file).expect("read offsets");
        let offsets = rocketmq_core::consumer::local_store::decode(&data).expect("offsets file");
        for (q, end) in &ends {
            assert!(
                offsets
                    .iter()
                    .any(|(mq, o)| mq.to_string() == *q && o == end),
                "{}: {} has {q} at {end}: {offsets:?}",
                R::NAME,
                file.display()
            );
        }
    }
    // A restart resumes from the file.
    let again: Seen = Arc::default();
    let a = start("a", &again);
    let resumed = wait_until(Duration::from_secs(30), || {
        a.stats().is_ok_and(|s| {
            ends.iter().all(|(q, end)| {
                s.queues
                    .iter()
                    .any(|(mq, qs)| mq.to_string() == *q && qs.next_pull_offset == *end)
            })
        })
    });
    assert!(
        resumed,
        "{}: restart resumes at the ends: {:?}",
        R::NAME,
        a.stats()
    );
    let redelivered = again.lock().map(|s| s.len()).unwrap_or(0);
    a.shutdown().expect("shutdown");
    producer.shutdown();
    assert_eq!(redelivered, 0, "{}: nothing delivered again", R::NAME);
}

/// A consumer shut down mid-stream and started again loses nothing: what the
/// first one did not finish, the second delivers. A listener that panics on
/// some messages counts as "reconsume later": they come back, and nothing else
/// is disturbed; the second consumer's listener is async (where the runtime
/// has one), so panics are caught on that path as well.
pub fn restart_mid_stream<R: ConsumerRuntime + Sync>(namesrv: &str, topic: &str) -> u32 {
    const COUNT: usize = 3000;
    let producer = R::start(config(namesrv));
    for (i, (_, r)) in send_concurrently(&producer, "restart-producer", topic, COUNT, 8, |_| {
        QueueSelector::RoundRobin
    })
    .into_iter()
    .enumerate()
    {
        r.unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
    }
    let seen: Seen = Arc::default();
    let panics = Arc::new(Mutex::new(0u32));
    let listener: SharedListener = {
        let (counter, panics) = (counting(&seen), panics.clone());
        Arc::new(move |m: &[MessageExt], c: &ConsumeContext| {
            std::thread::sleep(Duration::from_micros(300));
            // Every 100th message panics on its first delivery.
            let first_try = m.iter().any(|x| {
                x.reconsume_times == 0
                    && x.property("index")
                        .and_then(|i| i.parse::<usize>().ok())
                        .is_some_and(|i| i % 100 == 0)
            });
            if first_try {
                *panics
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
                panic!("listener panic on purpose");
            }
            counter(m, c)
        })
    };
    let group = format!("restart-{}", R::NAME);
    // The second consumer runs the same function as an async listener (where
    // the runtime has one), so that its panics are caught on that path too.
    let start = |asynchronous: bool| {
        let mut o = options(namesrv, &group, topic);
        o.consumer.consume_concurrency = 4;
        R::start_consumer(o, listener.clone(), asynchronous)
            .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME))
    };
    let distinct = || seen.lock().map(|s| s.len()).unwrap_or(0);
    let first = start(false);
    assert!(
        wait_until(Duration::from_secs(60), || distinct() >= COUNT / 3),
        "{}: a third consumed",
        R::NAME
    );
    first.shutdown().expect("shutdown mid-stream");
    let after_first = distinct();
    assert!(
        after_first < COUNT,
        "{}: the shutdown came mid-stream",
        R::NAME
    );
    let panicked_first = *panics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let second = start(true);
    let all = wait_until(Duration::from_secs(120), || distinct() >= COUNT);
    let (missing, duplicates) = {
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let missing: Vec<usize> = (0..COUNT)
            .filter(|i| !s.contains_key(&i.to_string()))
            .collect();
        (missing, s.values().map(|n| n - 1).sum::<u32>())
    };
    assert!(
        all && missing.is_empty(),
        "{}: {} never consumed, e.g. {:?}; {:?}",
        R::NAME,
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        second.stats()
    );
    let panicked = *panics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        panicked >= 10 && panicked - panicked_first >= 5,
        "{}: the panicking messages were delivered ({panicked}, {} after the restart)",
        R::NAME,
        panicked - panicked_first
    );
    second.shutdown().expect("shutdown");
    producer.shutdown();
    duplicates
}

/// The resident set size of this process (VmRSS in `/proc/self/status`), in
/// bytes. Fails loudly where there is no such file.
pub fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|e| panic!("reading /proc/self/status for VmRSS: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS line in /proc/self/status: {status}"));
    kib * 1024
}

/// What `bounded_cache` measured.
#[derive(Debug)]
pub struct BoundedRun {
    /// Messages sent and consumed.
    pub messages: usize,
    /// Their body bytes: what an unbounded cache would come to hold.
    pub backlog_bytes: usize,
    /// The consumer-wide budget: messages, body bytes.
    pub budget: (usize, usize),
    /// Peak cached messages (stats).
    pub max_count: usize,
    /// Peak cached body bytes (stats).
    pub max_bytes: usize,
    /// Most cached bytes allowed: the budget plus one message over it per queue.
    pub byte_cap: usize,
    /// VmRSS before the consumer started.
    pub rss_before: u64,
    /// Highest VmRSS sampled while it ran.
    pub rss_peak: u64,
    /// Most RSS growth allowed.
    pub rss_cap: u64,
    /// Deliveries per queue id.
    pub per_queue: BTreeMap<i32, usize>,
}

/// Only one bounded-cache run measures RSS at a time (they would otherwise
/// add to each other's growth: the test binary runs tests in parallel).
static RSS_WINDOW: Mutex<()> = Mutex::new(());

/// A slow listener and a small consumer-wide budget (64 messages, 1 MiB) over
/// 8 queues, with a backlog of about 60 MiB: half the messages 16 to 64 KiB,
/// half 64 B. The cache stays within the budget (counts strictly; bytes may
/// pass it by one message per empty queue, which always takes its first
/// message), the process's resident memory grows by no more than that cap
/// plus a fixed allowance (an unbounded cache would take in the whole
/// backlog), every queue keeps being consumed (none starves while others hold
/// the budget), and every message is consumed once.
pub fn bounded_cache<R: ConsumerRuntime + Sync>(namesrv: &str, topic: &str) -> BoundedRun {
    const COUNT: usize = 3200;
    const QUEUES: usize = 8;
    const BUDGET: (usize, usize) = (64, 1024 * 1024);
    const LARGE: (usize, usize) = (16 * 1024, 64 * 1024);
    const SMALL: usize = 64;
    /// For everything but cached bodies: runtime threads and buffers, frames
    /// being decoded, allocator slack, and other tests of this binary
    /// allocating meanwhile.
    const RSS_ALLOWANCE: u64 = 24 * 1024 * 1024;
    let body_len = |i: usize| {
        if i % 2 == 0 {
            LARGE.0 + (i * 7919) % (LARGE.1 - LARGE.0 + 1)
        } else {
            SMALL
        }
    };
    let backlog_bytes: usize = (0..COUNT).map(body_len).sum();
    // Bodies go uncompressed, so that what is cached is what was sent.
    let mut producer_config = config(namesrv);
    producer_config.compress_over = None;
    let producer = R::start(producer_config);
    // Sent one at a time from 4 threads and not kept: memory freed by the
    // sends must not be what the consumer's cache reuses unseen.
    let next = AtomicUsize::new(0);
    let sent: Mutex<BTreeMap<i32, usize>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= COUNT {
                    break;
                }
                let body = vec![b'a' + (i % 26) as u8; body_len(i)];
                let m = Message::new(topic, Bytes::from(body))
                    .with_keys([format!("key-{i}")])
                    .with_property("index", i.to_string());
                let r = producer
                    .send("bounded-producer", m)
                    .unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
                *sent
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(r.queue.queue_id)
                    .or_default() += 1;
            });
        }
    });
    let sent = sent
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert_eq!(
        sent.len(),
        QUEUES,
        "{}: every queue has messages: {sent:?}",
        R::NAME
    );
    let seen: Seen = Arc::default();
    let delivered: Arc<Mutex<BTreeMap<i32, usize>>> = Arc::default();
    let slow: SharedListener = {
        let (counter, delivered) = (counting(&seen), delivered.clone());
        Arc::new(move |m: &[MessageExt], c: &ConsumeContext| {
            std::thread::sleep(Duration::from_millis(1));
            *delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(c.queue.queue_id)
                .or_default() += m.len();
            counter(m, c)
        })
    };
    let distinct = || seen.lock().map(|s| s.len()).unwrap_or(0);
    let byte_cap = BUDGET.1 + QUEUES * LARGE.1;
    let rss_cap = byte_cap as u64 + RSS_ALLOWANCE;

    let window = RSS_WINDOW
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rss_before = vm_rss();
    let mut rss_peak = rss_before;
    let mut o = options(namesrv, &format!("bounded-{}", R::NAME), topic);
    o.set_global_cache(BUDGET.0, BUDGET.1);
    o.consumer.consume_concurrency = 2;
    let consumer = R::start_consumer(o, slow, false)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    let (mut max_count, mut max_bytes) = (0, 0);
    let mut half_way: Option<BTreeMap<i32, usize>> = None;
    let started = Instant::now();
    while distinct() < COUNT && started.elapsed() < Duration::from_secs(120) {
        let s = consumer.stats().expect("stats");
        max_count = max_count.max(s.cached_count);
        max_bytes = max_bytes.max(s.cached_bytes);
        rss_peak = rss_peak.max(vm_rss());
        if half_way.is_none() && distinct() > COUNT / 2 {
            half_way = Some(
                delivered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    rss_peak = rss_peak.max(vm_rss());
    let got = distinct();
    let stats = consumer.stats();
    consumer.shutdown().expect("shutdown");
    drop(window);
    producer.shutdown();

    let per_queue = delivered
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(
        got,
        COUNT,
        "{}: everything consumed within 120 s: {stats:?}",
        R::NAME
    );
    assert_eq!(
        per_queue,
        sent,
        "{}: each queue's messages delivered once each (queue id: count)",
        R::NAME
    );
    assert!(
        max_count <= BUDGET.0,
        "{}: cached {max_count} messages, budget {}",
        R::NAME,
        BUDGET.0
    );
    assert!(
        max_bytes <= byte_cap,
        "{}: cached {max_bytes} bytes; the budget is {} plus at most one message of up to {} per queue",
        R::NAME,
        BUDGET.1,
        LARGE.1
    );
    let half_way = half_way.unwrap_or_default();
    let starved: Vec<i32> = sent
        .keys()
        .filter(|q| half_way.get(q).copied().unwrap_or(0) == 0)
        .copied()
        .collect();
    assert!(
        starved.is_empty(),
        "{}: queues with nothing delivered half-way: {starved:?} (delivered then: {half_way:?})",
        R::NAME
    );
    let growth = rss_peak.saturating_sub(rss_before);
    assert!(
        growth <= rss_cap,
        "{}: RSS grew by {} KiB ({} -> {} KiB) while consuming a {} KiB backlog; allowed {} KiB \
         (byte cap {} KiB + allowance {} KiB)",
        R::NAME,
        growth / 1024,
        rss_before / 1024,
        rss_peak / 1024,
        backlog_bytes / 1024,
        rss_cap / 1024,
        byte_cap / 1024,
        RSS_ALLOWANCE / 1024
    );
    BoundedRun {
        messages: COUNT,
        backlog_bytes,
        budget: BUDGET,
        max_count,
        max_bytes,
        byte_cap,
        rss_before,
        rss_peak,
        rss_cap,
        per_queue,
    }
}

/// The threads of this process whose names start with `rocketmq` (every thread
/// a client of ours starts is named so), from `/proc/self/task`.
pub fn client_threads() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with("rocketmq"))
        .collect()
}

/// What [`shutdown_leaves_nothing`] saw in each start/consume/shutdown cycle.
#[derive(Debug)]
pub struct ShutdownCycle {
    /// Client threads while the consumer ran.
    pub threads_running: usize,
    /// Tasks alive on its runtime while it ran.
    pub tasks_running: usize,
    /// Client threads right after its shutdown returned.
    pub threads_after: Vec<String>,
    /// Tasks alive on its runtime right after its shutdown returned.
    pub tasks_after: usize,
}

/// Three times over: messages are sent, a consumer of one group starts,
/// consumes them, and shuts down; right after each shutdown returns, none of
/// the client's threads is left in the process (checked at once, not after a
/// wait), no task on its runtime (within a second: see
/// [`RunningConsumer::shutdown_counting_tasks`]), and the next consumer of the
/// same group starts cleanly. Nothing is lost across the restarts. The producer is
/// a tokio client, whose threads are the runtime's and not counted. The caller
/// runs nothing else in the process meanwhile.
pub fn shutdown_leaves_nothing<R: ConsumerRuntime + Sync>(
    namesrv: &str,
    topic: &str,
) -> Vec<ShutdownCycle> {
    const PER_CYCLE: usize = 200;
    const CYCLES: usize = 3;
    let producer = Tokio::start(config(namesrv));
    assert_eq!(
        client_threads(),
        Vec::<String>::new(),
        "{}: client threads before the first start",
        R::NAME
    );
    let seen: Seen = Arc::default();
    let group = format!("shutdown-{}", R::NAME);
    let mut cycles = Vec::new();
    for cycle in 0..CYCLES {
        let first = cycle * PER_CYCLE;
        send_batches(
            &producer,
            "shutdown-producer",
            topic,
            PER_CYCLE,
            20,
            2,
            |t, i| crate::conformance::test_message(t, first + i),
        );
        let consumer = R::start_consumer(options(namesrv, &group, topic), counting(&seen), false)
            .unwrap_or_else(|e| panic!("{}: start {cycle} failed: {e}", R::NAME));
        let distinct = || seen.lock().map(|s| s.len()).unwrap_or(0);
        assert!(
            wait_until(Duration::from_secs(60), || distinct() >= first + PER_CYCLE),
            "{}: cycle {cycle} consumed {} of {}",
            R::NAME,
            distinct(),
            first + PER_CYCLE
        );
        let threads_running = client_threads().len();
        let tasks_running = consumer.alive_tasks();
        let tasks_after = consumer
            .shutdown_counting_tasks()
            .unwrap_or_else(|e| panic!("{}: shutdown {cycle} failed: {e}", R::NAME));
        let threads_after = client_threads();
        assert!(
            threads_after.is_empty() && tasks_after == 0,
            "{}: cycle {cycle} left threads {threads_after:?} and {tasks_after} tasks behind",
            R::NAME
        );
        cycles.push(ShutdownCycle {
            threads_running,
            tasks_running,
            threads_after,
            tasks_after,
        });
    }
    let s = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let missing: Vec<usize> = (0..CYCLES * PER_CYCLE)
        .filter(|i| !s.contains_key(&i.to_string()))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: never consumed: {missing:?}",
        R::NAME
    );
    producer.shutdown();
    cycles
}

/// A listener call that does not return holds up nothing else: with message 0
/// stuck in its listener, every other message is consumed meanwhile (from its
/// own queue too, as concurrent consumption allows); once released, message 0
/// is consumed as well. Returns how long the other messages took while it was
/// stuck.
pub fn stuck_call_holds_up_nothing<R: ConsumerRuntime + Sync>(
    namesrv: &str,
    topic: &str,
) -> Duration {
    const COUNT: usize = 200;
    let producer = R::start(config(namesrv));
    send_batches(&producer, "stuck-producer", topic, COUNT, 10, 2, |t, i| {
        crate::conformance::test_message(t, i)
    });
    let seen: Seen = Arc::default();
    let released = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let stuck_calls = Arc::new(AtomicUsize::new(0));
    let listener: SharedListener = {
        let (counter, released, stuck_calls) =
            (counting(&seen), released.clone(), stuck_calls.clone());
        Arc::new(move |m: &[MessageExt], c: &ConsumeContext| {
            if m.iter().any(|x| x.property("index") == Some("0")) {
                stuck_calls.fetch_add(1, Ordering::Relaxed);
                let (lock, cv) = &*released;
                let free = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Bounded, so that a failing run ends.
                let _ = cv
                    .wait_timeout_while(free, Duration::from_secs(120), |free| !*free)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            counter(m, c)
        })
    };
    let group = format!("stuck-{}", R::NAME);
    let started = Instant::now();
    let consumer = R::start_consumer(options(namesrv, &group, topic), listener, false)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    let others = || {
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (1..COUNT)
            .filter(|i| s.contains_key(&i.to_string()))
            .count()
    };
    let all_others = wait_until(Duration::from_secs(60), || others() == COUNT - 1);
    let took = started.elapsed();
    let stuck_now = stuck_calls.load(Ordering::Relaxed);
    let zero_seen = seen.lock().map(|s| s.contains_key("0")).unwrap_or(false);
    {
        let (lock, cv) = &*released;
        *lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cv.notify_all();
    }
    assert!(
        all_others && stuck_now == 1 && !zero_seen,
        "{}: with message 0 stuck in its listener ({stuck_now} calls), {} of {} others were consumed",
        R::NAME,
        others(),
        COUNT - 1
    );
    assert!(
        wait_until(Duration::from_secs(30), || seen
            .lock()
            .map(|s| s.contains_key("0"))
            .unwrap_or(false)),
        "{}: message 0 was not consumed once released",
        R::NAME
    );
    consumer.shutdown().expect("shutdown");
    producer.shutdown();
    took
}
