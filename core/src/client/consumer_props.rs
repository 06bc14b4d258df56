//! Property tests of the push consumer at the client level: random
//! interleavings of broker answers (pulls, offset queries and writes,
//! send-backs), listener completions, time passing and group changes, driven
//! through the scripted-frame harness against a model broker.
//!
//! 1. Committed offsets (UPDATE_CONSUMER_OFFSET, the COMMIT_OFFSET piggybacked
//!    on pulls, the stats' committable offsets) never move back while the
//!    client owns a queue, and never pass a message that was neither consumed
//!    successfully nor acknowledged as sent back.
//! 2. The caches never exceed their limits, but for the documented exception:
//!    an empty queue takes its first message however large it is (byte limits
//!    may be passed by that one message, count limits never).
//! 3. Liveness: once the random steps are over, the logs end and everything
//!    goes well (no group changes, every pull answered from the log, every
//!    offset query, offset write and send-back answered with success, every
//!    listener call a success, time passing only when nothing else is
//!    pending), every queue the client owns consumes its log to the end and
//!    empties its cache, within [`DRAIN_STEPS`] steps and [`DRAIN_TIME`] of
//!    virtual time, with the case's own cache limits and pull batch. A queue
//!    waiting for room in a cache that frees must pull again.
//!
//! The model broker serves each queue from one log that it decides lazily
//! (a message of some size, or an offset filtered out); offset writes and the
//! commit offset of pulls are stored as they arrive, and an offset query is
//! answered with what was stored when it arrived. The other members of the
//! group are passive: they never write offsets. For the drain of property 3
//! each log is decided up to a fixed end; a pull there is held as a broker's
//! long poll holds it, and answered with no new message when its suspend
//! time is up.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::tests::{ok, request_of, route, Harness, BROKER};
use super::*;
use crate::consumer::allocate::AllocateStrategy;
use crate::consumer::{ConsumeResult, ConsumerConfig, ConsumerStats, Selector, Ticket};
use crate::protocol::body::ConsumerIdList;
use crate::protocol::header::{
    ConsumerSendMsgBackRequestHeader, NotifyConsumerIdsChangedRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use crate::protocol::message::{encode_stored, MessageExt, MessageVersion, Properties};

type Check = Result<(), TestCaseError>;

const GROUP: &str = "G";
const TOPIC: &str = "T";
/// Commit-log offsets are `queue id * SPAN + queue offset`, so that a
/// send-back names its message.
const SPAN: i64 = 1_000_000;
/// The other members the group may have: one sorts before this client's id,
/// one after.
const OTHERS: [&str; 2] = ["0.0.0.1@other", "9.9.9.9@other"];
/// The drain of property 3 ends within this many steps (an answer, a listener
/// call's completion, or time passing to the next timer)...
const DRAIN_STEPS: usize = 20_000;
/// ...and this much virtual time.
const DRAIN_TIME: Duration = Duration::from_secs(180);

/// The consumer's settings and the broker's log of one case.
#[derive(Clone, Debug)]
struct Setup {
    global_count: usize,
    global_bytes: usize,
    queue_count: usize,
    queue_bytes: usize,
    /// Message bodies are 0..=max_body bytes.
    max_body: usize,
    pull_batch: u32,
    consume_batch: usize,
    concurrency: usize,
    persist: Duration,
    /// Every queue's stored offset at the start, and its first offset.
    start: i64,
    /// The other members at the start (bits of `OTHERS`).
    others: u8,
    /// Seed of the message sizes (and of the drain's order).
    seed: u64,
    /// Offsets each queue's log gets, past what the random steps decided, for
    /// the drain.
    tail: usize,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        (1usize..=24, 1usize..=256, 1usize..=8, 1usize..=96),
        (0usize..=40, 1u32..=6, 1usize..=3, 1usize..=4),
        (
            prop_oneof![Just(Duration::from_secs(1)), Just(Duration::from_secs(5))],
            0i64..=20,
            0u8..4,
            any::<u64>(),
            0usize..=16,
        ),
    )
        .prop_map(
            |(
                (global_count, global_bytes, queue_count, queue_bytes),
                (max_body, pull_batch, consume_batch, concurrency),
                (persist, start, others, seed, tail),
            )| Setup {
                global_count,
                global_bytes,
                queue_count,
                queue_bytes,
                max_body,
                pull_batch,
                consume_batch,
                concurrency,
                persist,
                start,
                others,
                seed,
                tail,
            },
        )
}

/// How the broker answers a pull.
#[derive(Clone, Copy, Debug)]
enum PullReply {
    /// Up to `count` messages; undecided offsets whose bit is set in `skip`
    /// are filtered out by the broker.
    Found { count: usize, skip: u8 },
    /// Nothing new (turned into `Found` if the log has messages there).
    NoNew,
    /// This many offsets filtered out (as far as the log allows).
    NoMatched(i64),
    /// SYSTEM_ERROR.
    Fail,
}

/// How the broker answers a send-back.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Success,
    Refused,
    /// Never answered: the request times out.
    Lost,
}

#[derive(Clone, Debug)]
enum Step {
    /// The broker answers a pull that is out.
    Pull(u8, PullReply),
    /// A listener call returns: success or reconsume later.
    Consume(u8, bool),
    /// The broker answers a send-back.
    SendBack(u8, Answer),
    /// The broker answers an offset query.
    Query(u8),
    /// The broker answers an offset write: success or failure.
    Update(u8, bool),
    /// Time passes, every timer on the way firing.
    Advance(Duration),
    /// The group's members change (or not): a notice, then the list.
    Members(u8),
}

fn step() -> impl Strategy<Value = Step> {
    let pull = prop_oneof![
        4 => (1usize..=6, any::<u8>()).prop_map(|(count, skip)| PullReply::Found { count, skip }),
        2 => Just(PullReply::NoNew),
        1 => (1i64..=5).prop_map(PullReply::NoMatched),
        1 => Just(PullReply::Fail),
    ];
    let answer = prop_oneof![
        3 => Just(Answer::Success),
        1 => Just(Answer::Refused),
        1 => Just(Answer::Lost),
    ];
    let time = prop_oneof![
        Just(Duration::from_millis(100)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(3)),
        Just(LOCAL_RETRY_DELAY),
        Just(REBALANCE_INTERVAL),
        Just(PULL_TIMEOUT + Duration::from_secs(1)),
    ];
    prop_oneof![
        6 => (any::<u8>(), pull).prop_map(|(i, r)| Step::Pull(i, r)),
        6 => (any::<u8>(), any::<bool>()).prop_map(|(i, ok)| Step::Consume(i, ok)),
        2 => (any::<u8>(), answer).prop_map(|(i, a)| Step::SendBack(i, a)),
        2 => any::<u8>().prop_map(Step::Query),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(i, ok)| Step::Update(i, ok)),
        2 => time.prop_map(Step::Advance),
        1 => (0u8..4).prop_map(Step::Members),
    ]
}

/// One offset of the broker's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// A message with a body of this many bytes.
    Message(usize),
    /// Filtered out by the broker.
    Filtered,
}

/// A queue the client owns, as the model sees it.
#[derive(Debug)]
struct Owned {
    /// Changes whenever the client assigns the queue anew.
    epoch: u64,
    /// The start offset is known (the client has the queue's cache).
    started: bool,
    next_pull: i64,
    /// The client's cache: offset → (body size, taken into an empty queue).
    cache: BTreeMap<i64, (usize, bool)>,
}

/// A request of the client the broker has not answered yet.
#[derive(Debug)]
struct Request {
    conn: ConnId,
    opaque: i32,
    /// The client gives up at this instant; a later answer is ignored.
    deadline: Instant,
    queue: i32,
    epoch: u64,
    /// Pull: its offset; query: the answer; send-back: the message's offset.
    offset: i64,
    /// Pull: the most messages it asks for.
    max: usize,
}

/// A listener call out.
#[derive(Debug)]
struct Handed {
    ticket: Ticket,
    queue: i32,
    epoch: u64,
    offsets: Vec<i64>,
}

enum Work {
    Feed(Input),
    /// Answer GET_CONSUMER_LIST_BY_GROUP with the members now.
    List(ConnId, i32),
}

/// The broker's answer to a pull.
struct Served {
    cmd: RemotingCommand,
    kind: Kind,
    /// Its next begin offset.
    next: i64,
    /// Its messages: offset and body size.
    messages: Vec<(i64, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Found,
    Nothing,
    Failed,
}

struct Sim {
    h: Harness,
    setup: Setup,
    broker: Option<ConnId>,
    others: u8,
    owned: BTreeMap<i32, Owned>,
    /// Queues the client drops in the exchange being observed.
    dropping: BTreeSet<i32>,
    next_epoch: u64,
    /// Each queue's log from `setup.start` on.
    log: BTreeMap<i32, Vec<Entry>>,
    /// (queue, offset) consumed successfully or acknowledged as sent back.
    finished: BTreeSet<(i32, i64)>,
    /// The broker's stored offsets.
    store: BTreeMap<i32, i64>,
    /// The last commit offset seen for a queue while the client owns it.
    last_commit: BTreeMap<i32, i64>,
    pulls: Vec<Request>,
    queries: Vec<Request>,
    backs: Vec<Request>,
    updates: Vec<Request>,
    handed: Vec<Handed>,
}

fn frame(cmd: &RemotingCommand) -> BytesMut {
    BytesMut::from(&cmd.to_frame(SerializeType::RocketMq).unwrap()[..])
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn stored(queue: i32, offset: i64, size: usize) -> MessageExt {
    MessageExt {
        topic: TOPIC.into(),
        body: Bytes::from(vec![b'x'; size]),
        properties: Properties::parse("TAGS\u{1}a\u{2}".to_owned().into()),
        queue_id: queue,
        queue_offset: offset,
        commit_log_offset: i64::from(queue) * SPAN + offset,
        born_host: "127.0.0.1:1".parse().unwrap(),
        store_host: BROKER.parse().unwrap(),
        version: MessageVersion::V1,
        ..MessageExt::default()
    }
}

/// A pull response's header, the log holding `start..max`.
fn pull_header(start: i64, next: i64, max: i64) -> PullMessageResponseHeader {
    PullMessageResponseHeader {
        next_begin_offset: next,
        min_offset: start,
        max_offset: max,
        ..PullMessageResponseHeader::default()
    }
}

/// A pull's SUCCESS answer with `messages` (offset and body size) of queue `q`.
fn found(
    q: i32,
    opaque: i32,
    messages: &[(i64, usize)],
    header: PullMessageResponseHeader,
) -> Result<RemotingCommand, TestCaseError> {
    let mut body = BytesMut::new();
    for (offset, size) in messages {
        encode_stored(&stored(q, *offset, *size), &mut body)
            .map_err(|e| TestCaseError::fail(format!("message {offset} not encoded: {e}")))?;
    }
    Ok(ok(opaque).with_header(&header).with_body(body.freeze()))
}

impl Sim {
    fn start(setup: Setup) -> Result<Self, TestCaseError> {
        let mut config = ConsumerConfig::new(GROUP);
        config.global_cache_count = setup.global_count;
        config.global_cache_bytes = setup.global_bytes;
        config.queue_cache_count = setup.queue_count;
        config.queue_cache_bytes = setup.queue_bytes;
        config.pull_batch_size = setup.pull_batch;
        config.consume_batch_size = setup.consume_batch;
        config.consume_concurrency = setup.concurrency;
        config.persist_interval = setup.persist;
        let queues = route().subscribe_queues(TOPIC);
        let mut sim = Self {
            h: Harness::new(),
            broker: None,
            others: setup.others,
            owned: BTreeMap::new(),
            dropping: BTreeSet::new(),
            next_epoch: 0,
            log: queues.iter().map(|q| (q.queue_id, Vec::new())).collect(),
            finished: BTreeSet::new(),
            store: queues.iter().map(|q| (q.queue_id, setup.start)).collect(),
            last_commit: BTreeMap::new(),
            pulls: Vec::new(),
            queries: Vec::new(),
            backs: Vec::new(),
            updates: Vec::new(),
            handed: Vec::new(),
            setup,
        };
        let h = &mut sim.h;
        h.client.call(
            h.now,
            Call::StartConsumer {
                config: Box::new(config),
                subscriptions: vec![(TOPIC.into(), Selector::all())],
            },
            None,
        );
        let out = h.outputs();
        sim.settle(out)?;
        prop_assert!(sim.broker.is_some(), "the broker was never connected");
        sim.members(sim.others)?;
        Ok(sim)
    }

    fn exchange(&mut self, input: Input) -> Vec<Output> {
        self.h.input(input)
    }

    /// Acts on the client's outputs, answering what the broker and name
    /// server answer at once, until the client has nothing more to say.
    fn settle(&mut self, out: Vec<Output>) -> Check {
        let mut work = VecDeque::new();
        let mut out = out;
        let mut rounds = 0;
        loop {
            for o in out {
                self.observe(o, &mut work)?;
            }
            self.dropping.clear();
            let Some(w) = work.pop_front() else {
                return Ok(());
            };
            rounds += 1;
            prop_assert!(rounds < 10_000, "the client never settles");
            out = match w {
                Work::Feed(input) => self.exchange(input),
                Work::List(conn, opaque) => self.answer_list(conn, opaque),
            };
        }
    }

    fn observe(&mut self, o: Output, work: &mut VecDeque<Work>) -> Check {
        match o {
            Output::Connect { conn, addr } => {
                if addr == BROKER {
                    self.broker = Some(conn);
                }
                work.push_back(Work::Feed(Input::Connected(conn)));
            }
            Output::Transmit { .. } => {
                let (conn, cmd) = request_of(&o);
                if !cmd.is_response() {
                    self.on_request(conn, &cmd, work)?;
                }
            }
            Output::Deliver(d) => {
                let q = d.context.queue.queue_id;
                let offsets: Vec<i64> = d.messages.iter().map(|m| m.queue_offset).collect();
                let Some(m) = self.owned.get(&q) else {
                    return Err(TestCaseError::fail(format!(
                        "delivery of queue {q}, which the client does not own"
                    )));
                };
                for o in &offsets {
                    prop_assert!(
                        m.cache.contains_key(o),
                        "delivered offset {} of queue {} is not cached",
                        o,
                        q
                    );
                }
                self.handed.push(Handed {
                    ticket: d.ticket,
                    queue: q,
                    epoch: m.epoch,
                    offsets,
                });
            }
            Output::Reply { result, .. } => {
                prop_assert!(result.is_ok(), "a call failed: {:?}", result);
            }
            other => {
                return Err(TestCaseError::fail(format!("unexpected output {other:?}")));
            }
        }
        Ok(())
    }

    fn on_request(
        &mut self,
        conn: ConnId,
        cmd: &RemotingCommand,
        work: &mut VecDeque<Work>,
    ) -> Check {
        let now = self.h.now;
        let timeout = self.h.client.config().request_timeout;
        let answer = |cmd: RemotingCommand| Work::Feed(Input::Received(conn, frame(&cmd)));
        match cmd.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC => {
                let h: GetRouteInfoRequestHeader = cmd.header().unwrap();
                work.push_back(answer(if h.topic == TOPIC {
                    ok(cmd.opaque).with_body(route().encode())
                } else {
                    RemotingCommand::response(ResponseCode::TOPIC_NOT_EXIST, cmd.opaque, None)
                }));
            }
            RequestCode::HEART_BEAT | RequestCode::UNREGISTER_CLIENT => {
                work.push_back(answer(ok(cmd.opaque)));
            }
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                work.push_back(Work::List(conn, cmd.opaque));
            }
            RequestCode::QUERY_CONSUMER_OFFSET => {
                let h: QueryConsumerOffsetRequestHeader = cmd.header().unwrap();
                let q = h.queue_id;
                let Some(m) = self.owned.get(&q) else {
                    return Err(TestCaseError::fail(format!(
                        "offset query for queue {q}, which the client does not own"
                    )));
                };
                prop_assert!(!m.started, "offset query for started queue {}", q);
                // A new ownership of the queue starts here.
                self.queries.push(Request {
                    conn,
                    opaque: cmd.opaque,
                    deadline: now + timeout,
                    queue: q,
                    epoch: m.epoch,
                    offset: self.store[&q],
                    max: 0,
                });
            }
            RequestCode::PULL_MESSAGE => {
                let h: PullMessageRequestHeader = cmd.header().unwrap();
                let q = h.queue_id;
                let (epoch, next) = match self.owned.get(&q) {
                    Some(m) if m.started => (m.epoch, m.next_pull),
                    // Dropping one queue of a rebalance frees room, which may
                    // start a pull of the next queue it drops: its answer is
                    // ignored.
                    None if self.dropping.contains(&q) => (0, h.queue_offset),
                    _ => {
                        return Err(TestCaseError::fail(format!(
                            "pull of queue {q}, which the client has not started"
                        )))
                    }
                };
                prop_assert_eq!(h.queue_offset, next, "pull offset of queue {}", q);
                if h.sys_flag & pull_flag::COMMIT_OFFSET != 0 {
                    self.commit(q, h.commit_offset, "pull's commit offset")?;
                    self.store.insert(q, h.commit_offset);
                }
                self.pulls.push(Request {
                    conn,
                    opaque: cmd.opaque,
                    deadline: now + PULL_TIMEOUT,
                    queue: q,
                    epoch,
                    offset: h.queue_offset,
                    max: usize::try_from(h.max_msg_nums).unwrap_or(0),
                });
            }
            RequestCode::UPDATE_CONSUMER_OFFSET => {
                let h: UpdateConsumerOffsetRequestHeader = cmd.header().unwrap();
                self.commit(h.queue_id, h.commit_offset, "offset write")?;
                self.store.insert(h.queue_id, h.commit_offset);
                self.updates.push(Request {
                    conn,
                    opaque: cmd.opaque,
                    deadline: now + timeout,
                    queue: h.queue_id,
                    epoch: 0,
                    offset: h.commit_offset,
                    max: 0,
                });
            }
            RequestCode::CONSUMER_SEND_MSG_BACK => {
                let h: ConsumerSendMsgBackRequestHeader = cmd.header().unwrap();
                let q = i32::try_from(h.offset / SPAN).unwrap();
                let Some(m) = self.owned.get(&q) else {
                    return Err(TestCaseError::fail(format!(
                        "send-back for queue {q}, which the client does not own"
                    )));
                };
                self.backs.push(Request {
                    conn,
                    opaque: cmd.opaque,
                    deadline: now + timeout,
                    queue: q,
                    epoch: m.epoch,
                    offset: h.offset % SPAN,
                    max: 0,
                });
            }
            code => {
                return Err(TestCaseError::fail(format!("unexpected request {code:?}")));
            }
        }
        Ok(())
    }

    /// The members now: the model applies the allocation the client will make,
    /// then the client gets the list.
    fn answer_list(&mut self, conn: ConnId, opaque: i32) -> Vec<Output> {
        let own = self.h.client.client_id().to_owned();
        let mut cids = vec![own.clone()];
        for (i, other) in OTHERS.iter().enumerate() {
            if self.others & (1 << i) != 0 {
                cids.push((*other).to_owned());
            }
        }
        let all = route().subscribe_queues(TOPIC);
        let mine: BTreeSet<i32> = AllocateStrategy::default()
            .allocate(&own, &all, &cids)
            .unwrap()
            .iter()
            .map(|q| q.queue_id)
            .collect();
        self.dropping = self
            .owned
            .keys()
            .filter(|q| !mine.contains(q))
            .copied()
            .collect();
        self.owned.retain(|q, _| mine.contains(q));
        for q in mine {
            if !self.owned.contains_key(&q) {
                self.next_epoch += 1;
                self.owned.insert(
                    q,
                    Owned {
                        epoch: self.next_epoch,
                        started: false,
                        next_pull: 0,
                        cache: BTreeMap::new(),
                    },
                );
            }
        }
        let body = ConsumerIdList {
            consumer_id_list: cids,
        }
        .encode();
        self.exchange(Input::Received(conn, frame(&ok(opaque).with_body(body))))
    }

    /// A commit offset the client made known: it never moves back while the
    /// client owns the queue, and every message below it is finished.
    fn commit(&mut self, q: i32, c: i64, what: &str) -> Check {
        if let Some(&last) = self.last_commit.get(&q) {
            prop_assert!(
                c >= last,
                "{} of queue {} moved back from {} to {}",
                what,
                q,
                last,
                c
            );
        }
        self.last_commit.insert(q, c);
        let start = self.setup.start;
        let log = &self.log[&q];
        let end = start + log.len() as i64;
        prop_assert!(
            c <= end,
            "{} of queue {} at {} passes the end of what the broker served ({})",
            what,
            q,
            c,
            end
        );
        for o in start..c {
            if let Entry::Message(_) = log[(o - start) as usize] {
                prop_assert!(
                    self.finished.contains(&(q, o)),
                    "{} of queue {} at {} passes message {}, neither consumed nor sent back",
                    what,
                    q,
                    c,
                    o
                );
            }
        }
        Ok(())
    }

    fn stats(&mut self) -> Result<ConsumerStats, TestCaseError> {
        self.h.client.call(
            self.h.now,
            Call::ConsumerStats {
                group: GROUP.into(),
            },
            None,
        );
        let mut stats = None;
        for o in self.h.outputs() {
            match o {
                Output::Reply {
                    result: Ok(Reply::ConsumerStats(s)),
                    ..
                } => stats = Some(s),
                other => {
                    return Err(TestCaseError::fail(format!(
                        "unexpected output with the stats: {other:?}"
                    )))
                }
            }
        }
        stats.ok_or_else(|| TestCaseError::fail("no stats"))
    }

    /// After every step: the limits, and the committable offsets.
    fn check(&mut self) -> Check {
        let s = self.stats()?;
        let cfg = self.setup.clone();

        prop_assert!(
            s.cached_count <= cfg.global_count,
            "{} messages cached, over the global limit {}",
            s.cached_count,
            cfg.global_count
        );
        let started: BTreeSet<i32> = self
            .owned
            .iter()
            .filter(|(_, m)| m.started)
            .map(|(q, _)| *q)
            .collect();
        let listed: BTreeSet<i32> = s.queues.iter().map(|(q, _)| q.queue_id).collect();
        prop_assert_eq!(listed, started, "queues with a cache");
        let (mut count, mut bytes, mut plain_total) = (0, 0, 0);
        for (mq, qs) in &s.queues {
            let q = mq.queue_id;
            let m = &self.owned[&q];
            count += qs.cached_count;
            bytes += qs.cached_bytes;
            let model_bytes: usize = m.cache.values().map(|(size, _)| size).sum();
            prop_assert_eq!(
                (qs.cached_count, qs.cached_bytes),
                (m.cache.len(), model_bytes),
                "queue {}: the cache differs from the model's",
                q
            );
            prop_assert_eq!(qs.next_pull_offset, m.next_pull, "queue {} next pull", q);
            prop_assert!(
                qs.cached_count <= cfg.queue_count,
                "queue {} caches {} messages, over its limit {}",
                q,
                qs.cached_count,
                cfg.queue_count
            );
            // An empty queue's first message may pass the byte limits; the
            // others together never do.
            let plain: usize = m
                .cache
                .values()
                .filter(|(_, first)| !first)
                .map(|(size, _)| size)
                .sum();
            prop_assert!(
                plain <= cfg.queue_bytes,
                "queue {} caches {} bytes besides its first message, over its limit {}: {:?}",
                q,
                plain,
                cfg.queue_bytes,
                m.cache
            );
            plain_total += plain;
            if let Some(c) = qs.committable_offset {
                self.commit(q, c, "committable offset")?;
            }
        }
        prop_assert_eq!(
            (count, bytes),
            (s.cached_count, s.cached_bytes),
            "the consumer's totals differ from its queues'"
        );
        prop_assert!(
            plain_total <= cfg.global_bytes,
            "{} bytes cached besides the queues' first messages, over the global limit {}",
            plain_total,
            cfg.global_bytes
        );
        Ok(())
    }

    fn members(&mut self, others: u8) -> Check {
        self.others = others;
        let Some(broker) = self.broker else {
            return Err(TestCaseError::fail("no broker connection"));
        };
        let notice = RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, 0)
            .with_header(&NotifyConsumerIdsChangedRequestHeader {
                consumer_group: GROUP.into(),
            })
            .with_oneway();
        let out = self.exchange(Input::Received(broker, frame(&notice)));
        self.settle(out)
    }

    fn size(&self, q: i32, o: i64) -> usize {
        let x = splitmix(self.setup.seed ^ (u64::from(q as u32) << 40) ^ o as u64);
        (x % (self.setup.max_body as u64 + 1)) as usize
    }

    /// The broker's answer to a pull of `q` from `from`, deciding the log as
    /// it goes: the response, what it is, its next offset and its messages.
    fn serve(
        &mut self,
        q: i32,
        opaque: i32,
        from: i64,
        reply: PullReply,
    ) -> Result<Served, TestCaseError> {
        let start = self.setup.start;
        let end = start + self.log[&q].len() as i64;
        prop_assert!(
            (start..=end).contains(&from),
            "pull of queue {} from {}, outside what the broker served ({}..={})",
            q,
            from,
            start,
            end
        );
        let header = |next: i64, max: i64| pull_header(start, next, max);
        let (mut count, mut skip) = (1, 0u8);
        match reply {
            PullReply::Fail => {
                let cmd =
                    RemotingCommand::response(ResponseCode::SYSTEM_ERROR, opaque, Some("x".into()));
                return Ok(Served {
                    cmd,
                    kind: Kind::Failed,
                    next: from,
                    messages: Vec::new(),
                });
            }
            PullReply::NoNew if from == end => {
                let cmd = RemotingCommand::response(ResponseCode::PULL_NOT_FOUND, opaque, None)
                    .with_header(&header(from, end));
                return Ok(Served {
                    cmd,
                    kind: Kind::Nothing,
                    next: from,
                    messages: Vec::new(),
                });
            }
            PullReply::NoNew => {}
            PullReply::NoMatched(m) => {
                let log = self.log.get_mut(&q).unwrap();
                let mut o = from;
                while o < from + m {
                    let i = (o - start) as usize;
                    if i == log.len() {
                        log.push(Entry::Filtered);
                    } else if log[i] != Entry::Filtered {
                        break;
                    }
                    o += 1;
                }
                if o > from {
                    let max = start + log.len() as i64;
                    let cmd = RemotingCommand::response(
                        ResponseCode::PULL_RETRY_IMMEDIATELY,
                        opaque,
                        None,
                    )
                    .with_header(&header(o, max));
                    return Ok(Served {
                        cmd,
                        kind: Kind::Nothing,
                        next: o,
                        messages: Vec::new(),
                    });
                }
            }
            PullReply::Found { count: c, skip: s } => {
                count = c;
                skip = s;
            }
        }
        let mut messages = Vec::new();
        let mut o = from;
        let mut walked = 0;
        while messages.len() < count {
            let i = (o - start) as usize;
            if i == self.log[&q].len() {
                let entry = if walked < 8 && skip & (1 << walked) != 0 {
                    Entry::Filtered
                } else {
                    Entry::Message(self.size(q, o))
                };
                self.log.get_mut(&q).unwrap().push(entry);
            }
            if let Entry::Message(size) = self.log[&q][i] {
                messages.push((o, size));
            }
            o += 1;
            walked += 1;
        }
        let max = start + self.log[&q].len() as i64;
        let cmd = found(q, opaque, &messages, header(o, max))?;
        Ok(Served {
            cmd,
            kind: Kind::Found,
            next: o,
            messages,
        })
    }

    /// Answers pull `p` with `served`; the model's cache follows the
    /// client's.
    fn answer_pull(&mut self, p: &Request, served: Served) -> Check {
        let late = p.deadline <= self.h.now;
        let Served {
            cmd,
            kind,
            next,
            messages,
        } = served;
        let out = self.exchange(Input::Received(p.conn, frame(&cmd)));
        let current = !late
            && self
                .owned
                .get(&p.queue)
                .is_some_and(|m| m.epoch == p.epoch && m.started);
        if current {
            match kind {
                Kind::Found => {
                    let s = self.stats()?;
                    let Some(new_next) = s
                        .queues
                        .iter()
                        .find(|(mq, _)| mq.queue_id == p.queue)
                        .map(|(_, qs)| qs.next_pull_offset)
                    else {
                        return Err(TestCaseError::fail("the pulled queue has no stats"));
                    };
                    prop_assert!(
                        new_next == next || messages.iter().any(|(o, _)| *o == new_next),
                        "queue {} moved on to {} after a pull up to {}",
                        p.queue,
                        new_next,
                        next
                    );
                    let m = self.owned.get_mut(&p.queue).unwrap();
                    let was_empty = m.cache.is_empty();
                    for (k, (o, size)) in messages.iter().filter(|(o, _)| *o < new_next).enumerate()
                    {
                        m.cache.insert(*o, (*size, was_empty && k == 0));
                    }
                    m.next_pull = new_next;
                }
                Kind::Nothing => {
                    let m = self.owned.get_mut(&p.queue).unwrap();
                    m.next_pull = m.next_pull.max(next);
                }
                Kind::Failed => {}
            }
        }
        self.settle(out)
    }

    /// A step whose kind has nothing to answer answers something else, so
    /// that few steps are wasted: an offset query, a listener call, a pull,
    /// a send-back, in that order.
    fn redirect(&self, step: &Step) -> Step {
        let (i, idle) = match *step {
            Step::Pull(i, _) => (i, self.pulls.is_empty()),
            Step::Consume(i, _) => (i, self.handed.is_empty()),
            Step::SendBack(i, _) => (i, self.backs.is_empty()),
            Step::Query(i) => (i, self.queries.is_empty()),
            Step::Update(i, _) => (i, self.updates.is_empty()),
            Step::Advance(_) | Step::Members(_) => (0, false),
        };
        if !idle {
            step.clone()
        } else if !self.queries.is_empty() {
            Step::Query(i)
        } else if !self.handed.is_empty() {
            Step::Consume(i, i % 4 != 0)
        } else if !self.pulls.is_empty() {
            Step::Pull(
                i,
                PullReply::Found {
                    count: usize::from(i % 4) + 1,
                    skip: 0,
                },
            )
        } else if !self.backs.is_empty() {
            Step::SendBack(i, Answer::Success)
        } else {
            step.clone()
        }
    }

    fn step(&mut self, step: &Step) -> Check {
        let now = self.h.now;
        match self.redirect(step) {
            Step::Pull(i, reply) => {
                if self.pulls.is_empty() {
                    return Ok(());
                }
                let p = self.pulls.remove(usize::from(i) % self.pulls.len());
                let served = self.serve(p.queue, p.opaque, p.offset, reply)?;
                self.answer_pull(&p, served)
            }
            Step::Consume(i, success) => {
                if self.handed.is_empty() {
                    return Ok(());
                }
                let d = self.handed.remove(usize::from(i) % self.handed.len());
                let result = if success {
                    ConsumeResult::Success
                } else {
                    ConsumeResult::RETRY
                };
                let out = self.exchange(Input::Consumed {
                    ticket: d.ticket,
                    result,
                });
                if success {
                    for o in &d.offsets {
                        self.finished.insert((d.queue, *o));
                    }
                    if let Some(m) = self.owned.get_mut(&d.queue).filter(|m| m.epoch == d.epoch) {
                        for o in &d.offsets {
                            m.cache.remove(o);
                        }
                    }
                }
                self.settle(out)
            }
            Step::SendBack(i, answer) => {
                if self.backs.is_empty() {
                    return Ok(());
                }
                let b = self.backs.remove(usize::from(i) % self.backs.len());
                let late = b.deadline <= now;
                match answer {
                    Answer::Lost => Ok(()),
                    Answer::Refused => {
                        let cmd = RemotingCommand::response(
                            ResponseCode::SYSTEM_ERROR,
                            b.opaque,
                            Some("busy".into()),
                        );
                        let out = self.exchange(Input::Received(b.conn, frame(&cmd)));
                        self.settle(out)
                    }
                    Answer::Success => {
                        let out = self.exchange(Input::Received(b.conn, frame(&ok(b.opaque))));
                        self.finished.insert((b.queue, b.offset));
                        if let Some(m) = self
                            .owned
                            .get_mut(&b.queue)
                            .filter(|m| !late && m.epoch == b.epoch)
                        {
                            m.cache.remove(&b.offset);
                        }
                        self.settle(out)
                    }
                }
            }
            Step::Query(i) => {
                if self.queries.is_empty() {
                    return Ok(());
                }
                let r = self.queries.remove(usize::from(i) % self.queries.len());
                let late = r.deadline <= now;
                let cmd = ok(r.opaque)
                    .with_header(&QueryConsumerOffsetResponseHeader { offset: r.offset });
                let out = self.exchange(Input::Received(r.conn, frame(&cmd)));
                if let Some(m) = self
                    .owned
                    .get_mut(&r.queue)
                    .filter(|m| !late && m.epoch == r.epoch && !m.started)
                {
                    m.started = true;
                    m.next_pull = r.offset;
                }
                self.settle(out)
            }
            Step::Update(i, success) => {
                if self.updates.is_empty() {
                    return Ok(());
                }
                let u = self.updates.remove(usize::from(i) % self.updates.len());
                let cmd = if success {
                    ok(u.opaque)
                } else {
                    RemotingCommand::response(ResponseCode::SYSTEM_ERROR, u.opaque, None)
                };
                let out = self.exchange(Input::Received(u.conn, frame(&cmd)));
                self.settle(out)
            }
            Step::Advance(by) => {
                let target = now + by;
                let mut fired = 0;
                while let Some(t) = self.h.client.poll_timeout() {
                    if t > target {
                        break;
                    }
                    fired += 1;
                    prop_assert!(fired < 1000, "a timer keeps firing at {:?}", t);
                    self.h.now = self.h.now.max(t);
                    let out = self.exchange(Input::Timeout);
                    self.settle(out)?;
                }
                self.h.now = target;
                let out = self.exchange(Input::Timeout);
                self.settle(out)
            }
            Step::Members(others) => self.members(others),
        }
    }

    /// Property 3: the logs end, and everything goes well until every queue
    /// the client owns has consumed its log to the end and emptied its cache.
    /// What happens next (an answer, a listener call's completion) is picked
    /// by the case's seed; time passes, to the client's next timer or the end
    /// of a held pull's suspension, only when nothing else can happen.
    fn drain(&mut self) -> Check {
        self.end_logs();
        let begin = self.h.now;
        let mut steps = 0;
        loop {
            let Some(stalled) = self.undrained()? else {
                return Ok(());
            };
            let spent = self.h.now.saturating_duration_since(begin);
            if steps == DRAIN_STEPS || spent > DRAIN_TIME {
                return Err(TestCaseError::fail(format!(
                    "the queues never drain ({steps} steps, {spent:?} of virtual time): {stalled}"
                )));
            }
            steps += 1;
            self.drain_step(splitmix(self.setup.seed.wrapping_add(steps as u64)))?;
            self.check()?;
        }
    }

    /// Decides every queue's log up to its end: `setup.tail` offsets past
    /// what was decided, one in six filtered out.
    fn end_logs(&mut self) {
        let (start, seed, tail) = (self.setup.start, self.setup.seed, self.setup.tail);
        let queues: Vec<i32> = self.log.keys().copied().collect();
        for q in queues {
            let from = start + self.log[&q].len() as i64;
            for o in from..from + tail as i64 {
                let filtered = splitmix(!seed ^ (u64::from(q as u32) << 40) ^ o as u64) % 6 == 0;
                let entry = if filtered {
                    Entry::Filtered
                } else {
                    Entry::Message(self.size(q, o))
                };
                if let Some(log) = self.log.get_mut(&q) {
                    log.push(entry);
                }
            }
        }
    }

    /// The end of queue `q`'s log.
    fn end(&self, q: i32) -> i64 {
        self.setup.start + self.log.get(&q).map_or(0, |l| l.len() as i64)
    }

    /// One step of the drain.
    fn drain_step(&mut self, roll: u64) -> Check {
        let now = self.h.now;
        // Pulls below the end are answered at once; one at the end is held
        // until its suspension is up.
        let due: Vec<usize> = (0..self.pulls.len())
            .filter(|&k| {
                let p = &self.pulls[k];
                p.offset < self.end(p.queue) || held_until(p) <= now
            })
            .collect();
        let i = (roll >> 32) as u8;
        let mut moves = Vec::new();
        if !self.queries.is_empty() {
            moves.push(Some(Step::Query(i)));
        }
        if !self.handed.is_empty() {
            moves.push(Some(Step::Consume(i, true)));
        }
        if !self.backs.is_empty() {
            moves.push(Some(Step::SendBack(i, Answer::Success)));
        }
        if !self.updates.is_empty() {
            moves.push(Some(Step::Update(i, true)));
        }
        if !due.is_empty() {
            moves.push(None);
        }
        if moves.is_empty() {
            return self.wait();
        }
        match &moves[(roll % moves.len() as u64) as usize] {
            Some(step) => self.step(step),
            None => {
                let p = self.pulls.remove(due[usize::from(i) % due.len()]);
                let served = self.serve_ended(&p)?;
                self.answer_pull(&p, served)
            }
        }
    }

    /// Nothing to answer: time passes to the client's next timer or the end
    /// of a held pull's suspension, whichever comes first.
    fn wait(&mut self) -> Check {
        let held = self.pulls.iter().map(held_until).min();
        let Some(to) = held.into_iter().chain(self.h.client.poll_timeout()).min() else {
            return Err(TestCaseError::fail(
                "nothing pending: no request out, no listener call, no timer",
            ));
        };
        self.h.now = self.h.now.max(to);
        let out = self.exchange(Input::Timeout);
        self.settle(out)
    }

    /// The broker's answer to pull `p` from the ended log: up to the messages
    /// it asks for, or, with none left before the end, nothing (no matched
    /// message below the end, no new message at it).
    fn serve_ended(&self, p: &Request) -> Result<Served, TestCaseError> {
        let (q, from, start) = (p.queue, p.offset, self.setup.start);
        let end = self.end(q);
        prop_assert!(
            (start..=end).contains(&from),
            "pull of queue {} from {}, outside its log ({}..={})",
            q,
            from,
            start,
            end
        );
        if from == end {
            let cmd = RemotingCommand::response(ResponseCode::PULL_NOT_FOUND, p.opaque, None)
                .with_header(&pull_header(start, from, end));
            return Ok(Served {
                cmd,
                kind: Kind::Nothing,
                next: from,
                messages: Vec::new(),
            });
        }
        let log = &self.log[&q];
        let mut messages = Vec::new();
        let mut o = from;
        while o < end && messages.len() < p.max.max(1) {
            if let Entry::Message(size) = log[(o - start) as usize] {
                messages.push((o, size));
            }
            o += 1;
        }
        if messages.is_empty() {
            let cmd =
                RemotingCommand::response(ResponseCode::PULL_RETRY_IMMEDIATELY, p.opaque, None)
                    .with_header(&pull_header(start, o, end));
            return Ok(Served {
                cmd,
                kind: Kind::Nothing,
                next: o,
                messages,
            });
        }
        let cmd = found(q, p.opaque, &messages, pull_header(start, o, end))?;
        Ok(Served {
            cmd,
            kind: Kind::Found,
            next: o,
            messages,
        })
    }

    /// The first queue the client owns that has not consumed its log to the
    /// end or still caches messages, described; `None` once all are drained.
    fn undrained(&mut self) -> Result<Option<String>, TestCaseError> {
        let s = self.stats()?;
        for &q in self.owned.keys() {
            let end = self.end(q);
            let qs = s
                .queues
                .iter()
                .find(|(mq, _)| mq.queue_id == q)
                .map(|(_, qs)| qs);
            let committed = qs.and_then(|qs| qs.committable_offset);
            let (count, bytes) = qs.map_or((0, 0), |qs| (qs.cached_count, qs.cached_bytes));
            if committed == Some(end) && count == 0 {
                continue;
            }
            let shown = |o: Option<i64>| o.map_or_else(|| "none".to_owned(), |o| o.to_string());
            let pulls = self.pulls.iter().filter(|p| p.queue == q).count();
            return Ok(Some(format!(
                "queue {q} has committed offset {} (the broker stores {}) of its log's end \
                 {end}, next pull {}, {pulls} pulls out, and caches {count} messages ({bytes} \
                 bytes); the consumer caches {} messages ({} bytes) of at most {} ({} bytes), \
                 {} per queue ({} bytes), pulls {} at a time, and has {} listener calls out",
                shown(committed),
                shown(self.store.get(&q).copied()),
                shown(qs.map(|qs| qs.next_pull_offset)),
                s.cached_count,
                s.cached_bytes,
                self.setup.global_count,
                self.setup.global_bytes,
                self.setup.queue_count,
                self.setup.queue_bytes,
                self.setup.pull_batch,
                s.in_flight,
            )));
        }
        Ok(None)
    }
}

/// When the broker answers pull `p` at the end of its log with no new message:
/// when its suspension, counted from when it was sent, is up.
fn held_until(p: &Request) -> Instant {
    p.deadline - PULL_TIMEOUT + PULL_SUSPEND
}

fn run(setup: Setup, steps: &[Step]) -> Check {
    let mut sim = Sim::start(setup)?;
    sim.check()?;
    for step in steps {
        sim.step(step)?;
        sim.check()?;
    }
    sim.drain()
}

proptest! {
    /// Properties 1 and 2 over random interleavings, then 3 in a drain (with
    /// 1 and 2 still checked).
    #[test]
    fn offsets_never_pass_unfinished_messages_caches_keep_their_limits_and_queues_drain(
        setup in setup(),
        steps in proptest::collection::vec(step(), 1..150),
    ) {
        run(setup, &steps)?;
    }
}
