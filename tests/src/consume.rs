//! The push consumer's conformance checks, written once and run on every
//! runtime (tokio, async-std, smol, blocking) against the real broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_core::consumer::{
    ConsumeContext, ConsumeFrom, ConsumeResult, ConsumerOptions, ConsumerStats,
};
use rocketmq_core::protocol::message::MessageExt;
use rocketmq_core::{ClientError, QueueSelector};

use crate::conformance::{config, send_concurrently, AsyncStd, Blocking, Runtime, Smol, Tokio};

/// A listener the suite can hand to any runtime.
pub type SharedListener =
    Arc<dyn Fn(&[MessageExt], &ConsumeContext) -> ConsumeResult + Send + Sync>;

/// A started push consumer, driven synchronously by the suite.
pub trait RunningConsumer: Send {
    /// Its counters.
    fn stats(&self) -> Result<ConsumerStats, ClientError>;
    /// Graceful shutdown: drain, write offsets, unregister.
    fn shutdown(self) -> Result<(), ClientError>;
}

/// A runtime that can run push consumers.
pub trait ConsumerRuntime: Runtime {
    /// Its running consumer.
    type Consumer: RunningConsumer;
    /// Starts a consumer; `asynchronous` picks the adapter's async listener
    /// (where there is one) running the same function.
    fn start_consumer(
        options: ConsumerOptions,
        listener: SharedListener,
        asynchronous: bool,
    ) -> Result<Self::Consumer, ClientError>;
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
}

impl ConsumerRuntime for Tokio {
    type Consumer = TokioConsumer;
    fn start_consumer(
        options: ConsumerOptions,
        listener: SharedListener,
        asynchronous: bool,
    ) -> Result<TokioConsumer, ClientError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let builder = rocketmq_tokio::PushConsumerBuilder::from_options(options);
        let consumer = rt.block_on(async move {
            if asynchronous {
                builder
                    .start_async(move |messages: Vec<MessageExt>, context: ConsumeContext| {
                        let listener = listener.clone();
                        async move {
                            tokio::task::yield_now().await;
                            listener(&messages, &context)
                        }
                    })
                    .await
            } else {
                builder
                    .start(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c))
                    .await
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
        listener: SharedListener,
        asynchronous: bool,
    ) -> Result<AsyncConsumer, ClientError> {
        let builder = rocketmq_async_std::PushConsumerBuilder::from_options(options);
        let consumer = if asynchronous {
            self.block_on(builder.start_async(
                move |messages: Vec<MessageExt>, context: ConsumeContext| {
                    let listener = listener.clone();
                    async move {
                        futures_lite::future::yield_now().await;
                        listener(&messages, &context)
                    }
                },
            ))
        } else {
            self.block_on(builder.start(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c)))
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
    fn start_consumer(
        options: ConsumerOptions,
        listener: SharedListener,
        asynchronous: bool,
    ) -> Result<AsyncConsumer, ClientError> {
        Flavor::AsyncStd.start(options, listener, asynchronous)
    }
}

impl ConsumerRuntime for Smol {
    type Consumer = AsyncConsumer;
    fn start_consumer(
        options: ConsumerOptions,
        listener: SharedListener,
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
    fn start_consumer(
        options: ConsumerOptions,
        listener: SharedListener,
        _asynchronous: bool,
    ) -> Result<rocketmq_blocking::PushConsumer, ClientError> {
        rocketmq_blocking::PushConsumerBuilder::from_options(options)
            .start(move |m: &[MessageExt], c: &ConsumeContext| listener(m, c))
    }
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
}

/// One consumer drains `count` messages: every one is consumed exactly once, and
/// each queue's committed offset reaches the queue's end; a second consumer of
/// the same group started after a graceful shutdown is given nothing again.
pub fn consume_everything<R: ConsumerRuntime + Sync>(
    namesrv: &str,
    topic: &str,
    count: usize,
    asynchronous: bool,
) -> ConsumeRun {
    let producer = R::start(config(namesrv));
    let results = send_concurrently(&producer, "consume-producer", topic, count, 8, |_| {
        QueueSelector::RoundRobin
    });
    let mut ends: BTreeMap<String, i64> = BTreeMap::new();
    for (i, (_, r)) in results.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
        let end = ends.entry(r.queue.to_string()).or_default();
        *end = (*end).max(r.queue_offset + 1);
    }
    let seen: Seen = Arc::default();
    let group = format!(
        "consume-all-{}-{}",
        R::NAME,
        if asynchronous { "async" } else { "sync" }
    );
    let started = Instant::now();
    let consumer = R::start_consumer(
        options(namesrv, &group, topic),
        counting(&seen),
        asynchronous,
    )
    .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    let all = wait_until(Duration::from_secs(120), || {
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
        for i in 0..count {
            assert!(
                s.contains_key(&i.to_string()),
                "{}: message {i} was never consumed",
                R::NAME
            );
        }
    }
    // Committed offsets reach each queue's end (the last success may take a
    // moment to be reflected).
    let reached = wait_until(Duration::from_secs(10), || {
        consumer.stats().is_ok_and(|s| {
            ends.iter().all(|(q, end)| {
                s.queues
                    .iter()
                    .any(|(mq, qs)| mq.to_string() == *q && qs.committable_offset == Some(*end))
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
    consumer
        .shutdown()
        .unwrap_or_else(|e| panic!("{}: shutdown failed: {e}", R::NAME));

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
                    .any(|(mq, qs)| mq.to_string() == *q && qs.next_pull_offset == *end)
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
    let dlq = format!("{}{group}", rocketmq_core::client::DLQ_PREFIX);
    let mut in_dlq: Vec<usize> = Vec::new();
    let found = wait_until(Duration::from_secs(60), || {
        let Ok(route) = producer.query_route(&dlq) else {
            return false;
        };
        in_dlq = route
            .subscribe_queues(&dlq)
            .iter()
            .flat_map(|q| crate::conformance::pull_all(&producer, "dlq-reader", q, None))
            .filter_map(|m| m.property("index").and_then(|i| i.parse().ok()))
            .collect();
        in_dlq.len() >= COUNT / 2
    });
    in_dlq.sort_unstable();
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
}

/// Three consumers of one group (each its own client id): two start, a third
/// joins a third of the way through, the first leaves gracefully two thirds of
/// the way through. Every message is consumed; duplicates come only from
/// queues that changed hands, and are counted.
pub fn group_changes<R: ConsumerRuntime + Sync>(
    namesrv: &str,
    topic: &str,
    count: usize,
) -> GroupRun {
    let producer = R::start(config(namesrv));
    for (i, (_, r)) in send_concurrently(&producer, "group-producer", topic, count, 8, |_| {
        QueueSelector::RoundRobin
    })
    .into_iter()
    .enumerate()
    {
        r.unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
    }
    let seen: Seen = Arc::default();
    let counter = counting(&seen);
    // A listener slow enough that the group changes while messages remain.
    let slow: SharedListener = Arc::new(move |m: &[MessageExt], c: &ConsumeContext| {
        std::thread::sleep(Duration::from_millis(2));
        counter(m, c)
    });
    let group = format!("group-changes-{}", R::NAME);
    let start = |name: &str| {
        let mut o = options(namesrv, &group, topic);
        o.client.instance_name = format!("{}-{name}", R::NAME);
        o.consumer.consume_concurrency = 2;
        R::start_consumer(o, slow.clone(), false)
            .unwrap_or_else(|e| panic!("{}: start {name} failed: {e}", R::NAME))
    };
    let distinct = || seen.lock().map(|s| s.len()).unwrap_or(0);
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
        let s = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let missing: Vec<usize> = (0..count)
            .filter(|i| !s.contains_key(&i.to_string()))
            .collect();
        (missing, s.values().map(|n| n - 1).sum::<u32>())
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
    GroupRun {
        sent: count,
        duplicates,
        elapsed,
    }
}

/// Where a new group starts: from the first offset it gets the old messages;
/// from a timestamp it gets exactly those stored at or after it.
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
/// is disturbed.
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
    let start = || {
        let mut o = options(namesrv, &group, topic);
        o.consumer.consume_concurrency = 4;
        R::start_consumer(o, listener.clone(), false)
            .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME))
    };
    let distinct = || seen.lock().map(|s| s.len()).unwrap_or(0);
    let first = start();
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
    let second = start();
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
        panicked >= 10,
        "{}: the panicking messages were delivered ({panicked})",
        R::NAME
    );
    second.shutdown().expect("shutdown");
    producer.shutdown();
    duplicates
}

/// A slow listener and a small consumer-wide budget (200 messages, 64 KiB)
/// over 8 queues: the cache never exceeds the budget, and every queue keeps
/// being consumed (none starves while others hold the budget).
pub fn bounded_cache<R: ConsumerRuntime + Sync>(namesrv: &str, topic: &str) -> (usize, usize) {
    const COUNT: usize = 2000;
    const BUDGET: (usize, usize) = (200, 64 * 1024);
    let producer = R::start(config(namesrv));
    let mut per_queue: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (_, r)) in send_concurrently(&producer, "bounded-producer", topic, COUNT, 8, |_| {
        QueueSelector::RoundRobin
    })
    .into_iter()
    .enumerate()
    {
        let r = r.unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
        *per_queue.entry(r.queue.to_string()).or_default() += 1;
    }
    let seen: Seen = Arc::default();
    let counter = counting(&seen);
    let slow: SharedListener = Arc::new(move |m: &[MessageExt], c: &ConsumeContext| {
        std::thread::sleep(Duration::from_millis(1));
        counter(m, c)
    });
    let mut o = options(namesrv, &format!("bounded-{}", R::NAME), topic);
    o.set_global_cache(BUDGET.0, BUDGET.1);
    o.consumer.consume_concurrency = 2;
    let consumer = R::start_consumer(o, slow, false)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    let (mut max_count, mut max_bytes) = (0, 0);
    let mut starved = Vec::new();
    let started = Instant::now();
    while seen.lock().map(|s| s.len()).unwrap_or(0) < COUNT
        && started.elapsed() < Duration::from_secs(120)
    {
        let s = consumer.stats().expect("stats");
        max_count = max_count.max(s.cached_count);
        max_bytes = max_bytes.max(s.cached_bytes);
        // Half-way, every queue with messages has consumed some.
        if starved.is_empty() && seen.lock().map(|s| s.len()).unwrap_or(0) > COUNT / 2 {
            starved = s
                .queues
                .iter()
                .filter(|(q, qs)| {
                    q.topic == topic && qs.consumed == 0 && per_queue.contains_key(&q.to_string())
                })
                .map(|(q, _)| q.to_string())
                .collect();
            starved.push(String::new()); // checked once
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = seen.lock().map(|s| s.len()).unwrap_or(0);
    consumer.shutdown().expect("shutdown");
    producer.shutdown();
    assert_eq!(got, COUNT, "{}: everything consumed", R::NAME);
    assert!(
        max_count <= BUDGET.0,
        "{}: cached {max_count} messages",
        R::NAME
    );
    assert!(
        max_bytes <= BUDGET.1,
        "{}: cached {max_bytes} bytes",
        R::NAME
    );
    starved.retain(|q| !q.is_empty());
    assert!(
        starved.is_empty(),
        "{}: starved queues half-way: {starved:?}",
        R::NAME
    );
    (max_count, max_bytes)
}
