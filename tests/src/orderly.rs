//! The orderly consumer's checks against the real broker, written once and run
//! on every runtime: per-key order through a group that grows and shrinks,
//! suspensions, one consumer per queue at a time, locks given back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocketmq_core::consumer::{ConsumeContext, OrderlyResult};
use rocketmq_core::protocol::body::{LockBatchRequestBody, LockBatchResponseBody};
use rocketmq_core::protocol::code::RequestCode;
use rocketmq_core::protocol::command::RemotingCommand;
use rocketmq_core::protocol::message::{Message, MessageExt};
use rocketmq_core::protocol::MessageQueue;
use rocketmq_core::{QueueSelector, SendStatus};

use crate::conformance::{config, Runtime};
use crate::consume::{
    broker_queues, dead_letters, options, wait_until, ConsumerRuntime, RunningConsumer,
};
use crate::harness::rpc;

/// Keys, each with its own sequence.
const KEYS: u32 = 64;
/// Sequence numbers per key sent in each of the three phases.
const PER_PHASE: u32 = 60;
/// A message of a key is suspended once when its sequence number is this
/// modulo [`SUSPEND_EVERY`].
const SUSPEND_AT: u32 = 7;
/// See [`SUSPEND_AT`].
const SUSPEND_EVERY: u32 = 90;

/// What [`orderly_group`] saw.
#[derive(Debug)]
pub struct OrderlyRun {
    /// Messages sent.
    pub sent: usize,
    /// Listener calls that asked to suspend their queue.
    pub suspended: usize,
    /// Messages processed successfully more than once.
    pub duplicates: u32,
    /// Queues processed by more than one consumer over the run.
    pub handovers: usize,
    /// For each queue of the joining consumer: from its lock being won to its
    /// first listener call.
    pub lock_to_first: Vec<Duration>,
    /// For each queue the joining consumer processed: from its start to its
    /// first listener call there.
    pub start_to_first: Vec<Duration>,
    /// From the first consumer's start to the last message processed.
    pub elapsed: Duration,
}

/// What the listeners of all three consumers record.
#[derive(Default)]
struct Log {
    /// Per key, the next sequence number expected.
    next: HashMap<u32, u32>,
    /// Messages processed successfully.
    processed: usize,
    /// Per consumer, messages it processed successfully.
    by: HashMap<String, usize>,
    /// Successful processings of a sequence number already done, per queue.
    duplicates: BTreeMap<MessageQueue, u32>,
    /// Sequence numbers processed ahead of their turn.
    gaps: Vec<String>,
    /// Messages suspended once, by (key, seq), with who suspended them.
    suspended: HashMap<(u32, u32), String>,
    /// Suspend answers given.
    suspends: usize,
    /// Messages that came back to the consumer that suspended them, which
    /// kept their queue throughout, without a raised reconsume count.
    uncounted: Vec<String>,
    /// Which consumer is processing each queue now.
    busy: HashMap<MessageQueue, String>,
    /// Two listener calls on one queue at once.
    overlaps: Vec<String>,
    /// Per queue, its consumers in the order they first processed it.
    owners: BTreeMap<MessageQueue, Vec<String>>,
    /// When each consumer first processed each queue.
    first: HashMap<(String, MessageQueue), Instant>,
}

fn locked(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The key and sequence number a test message carries.
fn key_seq(m: &MessageExt) -> (u32, u32) {
    let num = |name| {
        m.property(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    (num("key"), num("seq"))
}

/// The orderly listener of consumer `name`: it records everything in `log`,
/// suspends some messages once (for the consumer's default 1 s or for 20 ms),
/// and sleeps `work` per call.
fn listener(
    log: &Arc<Mutex<Log>>,
    name: &str,
    work: Duration,
) -> crate::consume::SharedOrderlyListener {
    let (log, name) = (log.clone(), name.to_owned());
    Arc::new(move |messages: &[MessageExt], ctx: &ConsumeContext| {
        let queue = ctx.queue.clone();
        {
            let mut log = locked(&log);
            if let Some(other) = log.busy.insert(queue.clone(), name.clone()) {
                let seen = format!("{queue}: {name} called while {other} was");
                log.overlaps.push(seen);
            }
            log.first
                .entry((name.clone(), queue.clone()))
                .or_insert_with(Instant::now);
            let owners = log.owners.entry(queue.clone()).or_default();
            if !owners.contains(&name) {
                owners.push(name.clone());
            }
        }
        if !work.is_zero() {
            std::thread::sleep(work);
        }
        let mut log = locked(&log);
        let suspend = messages.iter().map(key_seq).find(|&(key, seq)| {
            seq % SUSPEND_EVERY == SUSPEND_AT && !log.suspended.contains_key(&(key, seq))
        });
        let result = if let Some((key, seq)) = suspend {
            log.suspended.insert((key, seq), name.clone());
            log.suspends += 1;
            if key % 8 == 0 {
                OrderlyResult::SUSPEND
            } else {
                OrderlyResult::suspend_for(Duration::from_millis(20))
            }
        } else {
            for m in messages {
                let (key, seq) = key_seq(m);
                // The count is the suspending consumer's: a queue handed over
                // meanwhile starts over from the broker's copy.
                let kept = log.owners.get(&queue).is_some_and(|o| o.len() == 1);
                if log.suspended.get(&(key, seq)) == Some(&name) && kept && m.reconsume_times < 1 {
                    log.uncounted
                        .push(format!("key {key} seq {seq} back with reconsume count 0"));
                }
                let next = log.next.entry(key).or_insert(0);
                if seq == *next {
                    *next += 1;
                    log.processed += 1;
                    *log.by.entry(name.clone()).or_default() += 1;
                } else if seq < *next {
                    *log.duplicates.entry(queue.clone()).or_default() += 1;
                } else {
                    let expected = *next;
                    log.gaps
                        .push(format!("{name}: key {key} seq {seq} before {expected}"));
                }
            }
            OrderlyResult::Success
        };
        if log.busy.get(&queue) == Some(&name) {
            log.busy.remove(&queue);
        }
        result
    })
}

/// Sends sequence numbers `seqs` of every key, each key's in order (one
/// sending thread per key group, one send at a time), each key to the queue
/// Java's hash selector picks for it.
fn send_phase<R: Runtime + Sync>(producer: &R, topic: &str, seqs: std::ops::Range<u32>) {
    const THREADS: u32 = 8;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let seqs = seqs.clone();
            scope.spawn(move || {
                for seq in seqs {
                    for key in (0..KEYS).filter(|k| k % THREADS == t) {
                        let message = Message::new(topic, Bytes::from(format!("{key}:{seq}")))
                            .with_keys([format!("key-{key}")])
                            .with_property("key", key.to_string())
                            .with_property("seq", seq.to_string());
                        let selector = QueueSelector::Hash(format!("key-{key}"));
                        let r = producer
                            .send_with("orderly-producer", message, selector)
                            .unwrap_or_else(|e| {
                                panic!("{}: key {key} seq {seq} not sent: {e}", R::NAME)
                            });
                        assert_eq!(r.status, SendStatus::Ok, "{}: key {key} seq {seq}", R::NAME);
                    }
                }
            });
        }
    });
}

/// Per-key sequences over the 16 queues of `topic`, consumed by an orderly
/// group whose membership changes mid-stream: consumers `a` and `b` start,
/// `c` joins, `a` leaves. Each key's sequence is processed in order with no
/// gap; a message processed twice is counted, and only on a queue that
/// changed hands; no two listener calls ever run on one queue at once, even
/// in different consumers; suspended messages come back first, counted; and
/// once everyone has shut down, another client can lock every queue (no lock
/// was left behind).
pub fn orderly_group<R: ConsumerRuntime + Sync>(
    namesrv: &str,
    topic: &str,
    asynchronous: bool,
) -> OrderlyRun {
    let producer = R::start(config(namesrv));
    let log: Arc<Mutex<Log>> = Arc::default();
    let group = format!("{topic}-group");
    // Async listeners of async-std and smol run on the client's own thread:
    // no sleeping there.
    let work = if asynchronous {
        Duration::ZERO
    } else {
        Duration::from_millis(1)
    };
    let start = |name: &str| {
        let mut o = options(namesrv, &group, topic);
        o.client.instance_name = format!("{group}-{name}");
        R::start_orderly(o, listener(&log, name, work), asynchronous)
            .unwrap_or_else(|e| panic!("{}: start {name} failed: {e}", R::NAME))
    };
    let processed = || locked(&log).processed;
    let by = |name: &str| locked(&log).by.get(name).copied().unwrap_or(0);
    let phase = (KEYS * PER_PHASE) as usize;
    let total = 3 * phase;

    send_phase(&producer, topic, 0..PER_PHASE);
    let started = Instant::now();
    let a = start("a");
    let b = start("b");
    assert!(
        wait_until(Duration::from_secs(60), || processed() >= phase / 2),
        "{}: half the first phase processed by a and b: {} of {}",
        R::NAME,
        processed(),
        phase / 2
    );
    let c_started = Instant::now();
    let c = start("c");
    send_phase(&producer, topic, PER_PHASE..2 * PER_PHASE);
    assert!(
        wait_until(Duration::from_secs(60), || by("c") > 0
            && processed() >= phase + phase / 2),
        "{}: c takes part: c processed {}, all {}",
        R::NAME,
        by("c"),
        processed()
    );
    // The joiner's queues: from each lock won to its first call there.
    let c_stats = c
        .stats()
        .unwrap_or_else(|e| panic!("{}: c's stats: {e}", R::NAME));
    send_phase(&producer, topic, 2 * PER_PHASE..3 * PER_PHASE);
    a.shutdown()
        .unwrap_or_else(|e| panic!("{}: a's shutdown failed: {e}", R::NAME));
    let all = wait_until(Duration::from_secs(120), || processed() >= total);
    let elapsed = started.elapsed();
    let b_stats = b.stats();
    let c_end = c.stats();
    b.shutdown()
        .unwrap_or_else(|e| panic!("{}: b's shutdown failed: {e}", R::NAME));
    c.shutdown()
        .unwrap_or_else(|e| panic!("{}: c's shutdown failed: {e}", R::NAME));
    producer.shutdown();

    let log = locked(&log);
    let behind: Vec<(u32, u32)> = (0..KEYS)
        .map(|k| (k, log.next.get(&k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 3 * PER_PHASE)
        .collect();
    assert!(
        all && behind.is_empty(),
        "{}: {} of {total} processed; keys short of their end (key, next): {:?}; b {b_stats:?}; c {c_end:?}",
        R::NAME,
        log.processed,
        &behind[..behind.len().min(10)]
    );
    assert!(
        log.gaps.is_empty(),
        "{}: out of order: {:?}",
        R::NAME,
        log.gaps
    );
    assert!(
        log.overlaps.is_empty(),
        "{}: two calls on one queue at once: {:?}",
        R::NAME,
        log.overlaps
    );
    assert!(log.uncounted.is_empty(), "{}: {:?}", R::NAME, log.uncounted);
    assert!(
        log.suspends > 0 && log.suspended.len() == log.suspends,
        "{}: every suspended message came back and was processed",
        R::NAME
    );
    let moved: BTreeSet<&MessageQueue> = log
        .owners
        .iter()
        .filter(|(_, o)| o.len() > 1)
        .map(|(q, _)| q)
        .collect();
    let stray: Vec<_> = log
        .duplicates
        .keys()
        .filter(|q| !moved.contains(q))
        .collect();
    assert!(
        stray.is_empty(),
        "{}: duplicates on queues that never changed hands: {stray:?}",
        R::NAME
    );
    assert!(
        log.owners.values().any(|o| o.contains(&"c".to_owned())),
        "{}: the joiner processed nothing",
        R::NAME
    );
    let lock_to_first: Vec<Duration> = c_stats
        .queues
        .iter()
        .filter_map(|(q, s)| {
            let won = s.lock_won?;
            let first = *log.first.get(&("c".to_owned(), q.clone()))?;
            first.checked_duration_since(won)
        })
        .collect();
    let start_to_first: Vec<Duration> = log
        .first
        .iter()
        .filter(|((name, _), _)| name == "c")
        .map(|(_, t)| t.saturating_duration_since(c_started))
        .collect();
    let run = OrderlyRun {
        sent: total,
        suspended: log.suspends,
        duplicates: log.duplicates.values().sum(),
        handovers: moved.len(),
        lock_to_first,
        start_to_first,
        elapsed,
    };
    drop(log);
    assert_no_locks_left(namesrv, topic, &group);
    run
}

/// Another client of the group asks every queue's broker to lock it: all are
/// free, so none was left locked by the consumers that shut down. Then they
/// are given back.
fn assert_no_locks_left(namesrv: &str, topic: &str, group: &str) {
    let mut by_broker: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
    for (q, addr) in broker_queues(namesrv, topic) {
        by_broker.entry(addr).or_default().insert(q);
    }
    for (addr, queues) in by_broker {
        let body = LockBatchRequestBody {
            client_id: "127.0.0.1@lock-check".into(),
            consumer_group: group.to_owned(),
            mq_set: queues.clone(),
            only_this_broker: true,
        };
        let lock = RemotingCommand::request(RequestCode::LOCK_BATCH_MQ, rpc::next_opaque())
            .with_body(Bytes::from(body.encode()));
        let answer = rpc::call_ok(&addr, &lock, rpc::DEFAULT_TIMEOUT)
            .unwrap_or_else(|e| panic!("LOCK_BATCH_MQ on {addr}: {e}"));
        let won = LockBatchResponseBody::decode(&answer.body)
            .unwrap_or_else(|e| panic!("LOCK_BATCH_MQ answer from {addr}: {e}"))
            .lock_ok_mq_set;
        let held: Vec<_> = queues.difference(&won).collect();
        assert!(
            held.is_empty(),
            "queues still locked after every shutdown: {held:?}"
        );
        let unlock = RemotingCommand::request(RequestCode::UNLOCK_BATCH_MQ, rpc::next_opaque())
            .with_body(Bytes::from(body.encode()));
        rpc::call_ok(&addr, &unlock, rpc::DEFAULT_TIMEOUT)
            .unwrap_or_else(|e| panic!("UNLOCK_BATCH_MQ on {addr}: {e}"));
    }
}

/// `lock_to_first` and the like as "n queues: median x, max y".
pub fn summary(d: &[Duration]) -> String {
    let mut d = d.to_vec();
    d.sort();
    match (d.get(d.len() / 2), d.last()) {
        (Some(mid), Some(max)) => format!("{} queues: median {mid:?}, max {max:?}", d.len()),
        _ => "no queues".to_owned(),
    }
}

/// One queue of ten messages; the odd ones always fail. With max reconsume
/// times 2, each odd message is delivered three times (reconsume counts 0, 1,
/// 2), then goes to the group's DLQ, and only then does the queue move on:
/// the listener sees exactly `0, 1, 1, 1, 2, 3, 3, 3, ...`. The DLQ holds the
/// odd ones.
pub fn orderly_dead_letter<R: ConsumerRuntime + Sync>(namesrv: &str, topic: &str) {
    const COUNT: usize = 10;
    let producer = R::start(config(namesrv));
    for i in 0..COUNT {
        let m = Message::new(topic, Bytes::from(format!("dead letter {i}")))
            .with_property("index", i.to_string());
        let r = producer
            .send("orderly-dlq-producer", m)
            .unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
        assert_eq!(r.status, SendStatus::Ok);
    }
    let seen: Arc<Mutex<Vec<(usize, i32)>>> = Arc::default();
    let log = seen.clone();
    let listener: crate::consume::SharedOrderlyListener =
        Arc::new(move |messages: &[MessageExt], _: &ConsumeContext| {
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut fail = false;
            for m in messages {
                let index: usize = m
                    .property("index")
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(usize::MAX);
                log.push((index, m.reconsume_times));
                fail |= index % 2 == 1;
            }
            if fail {
                OrderlyResult::SUSPEND
            } else {
                OrderlyResult::Success
            }
        });
    let group = format!("{topic}-group");
    let mut o = options(namesrv, &group, topic);
    o.consumer.max_reconsume_times = 2;
    o.consumer.suspend_time = Duration::from_millis(10);
    let consumer = R::start_orderly(o, listener, false)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    let expected: Vec<(usize, i32)> = (0..COUNT)
        .flat_map(|i| {
            let times = if i % 2 == 1 { 0..3 } else { 0..1 };
            times.map(move |t| (i, t))
        })
        .collect();
    let done = wait_until(Duration::from_secs(60), || {
        seen.lock()
            .map(|s| s.len() >= expected.len())
            .unwrap_or(false)
    });
    let (found, in_dlq) = if done {
        dead_letters(&producer, &group, COUNT / 2, Duration::from_secs(30))
    } else {
        (false, Vec::new())
    };
    let stats = consumer
        .stats()
        .unwrap_or_else(|e| panic!("{}: stats: {e}", R::NAME));
    consumer
        .shutdown()
        .unwrap_or_else(|e| panic!("{}: shutdown failed: {e}", R::NAME));
    producer.shutdown();
    let seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(
        seen,
        expected,
        "{}: deliveries as (index, reconsume times)",
        R::NAME
    );
    assert!(found, "{}: the DLQ has the odd ones: {in_dlq:?}", R::NAME);
    assert_eq!(in_dlq, [1, 3, 5, 7, 9], "{}: exactly the odd ones", R::NAME);
    assert_eq!(
        (stats.consumed, stats.failed, stats.sent_back),
        (5, 15, 5),
        "{}: {stats:?}",
        R::NAME
    );
}
