//! The simulated world: a virtual clock, a network of TCP-like links, one name
//! server, brokers, and client processes each running a real
//! [`rocketmq_core::Client`], driven by one seed; and the checker that judges
//! the run.
//!
//! Time only moves when nothing is left to do at the current instant: the
//! world then jumps to the earliest of its scheduled events, the cores'
//! `poll_timeout()` and the brokers' deadlines. Every random choice (link
//! latencies, how writes are split, listener outcomes and durations, when
//! consumers join, leave or crash) comes from the seed, so a run replays byte
//! for byte; its trace says what happened, one line per event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rocketmq_core::consumer::{
    ConsumeResult, ConsumerConfig, Delivery, OrderlyResult, Selector, Ticket, Verdict,
};
use rocketmq_core::protocol::body::{LockBatchRequestBody, ResetOffsetBody};
use rocketmq_core::protocol::code::{RequestCode, ResponseCode};
use rocketmq_core::protocol::command::RemotingCommand;
use rocketmq_core::protocol::frame::{FrameDecoder, SerializeType, DEFAULT_MAX_FRAME_LEN};
use rocketmq_core::protocol::header::{
    pull_flag, ConsumerSendMsgBackRequestHeader, PullMessageRequestHeader,
    QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use rocketmq_core::protocol::message::Message;
use rocketmq_core::protocol::MessageQueue;
use rocketmq_core::{
    Call, CallId, Client, ClientConfig, ConnId, Input, Output, QueueSelector, Reply,
};

use super::broker::SimBroker;
use super::namesrv::SimNameServer;
use super::orderly::{self, Counters, Delivered, Member, OrderlyCheck};
use super::rng::SimRng;
use super::{LinkId, Millis};

/// The topic producers write and consumers read.
pub const TOPIC: &str = "SimTopic";
/// The clustering consumer group.
pub const GROUP: &str = "SimGroup";
/// The broadcasting consumer group.
pub const BROADCAST_GROUP: &str = "SimBroadcast";
/// Wall-clock milliseconds at virtual time 0 (what the cores and the brokers
/// see as "now" on the wall).
pub const WALL_EPOCH_MS: i64 = super::broker::DEFAULT_WALL_EPOCH_MS;
const NS_ADDR: &str = "10.0.0.1:9876";
/// Faults and membership changes happen before this; then the world heals.
const CALM_AFTER: Millis = 90_000;
/// How long after the calm begins the group must have settled: a broker
/// back from a crash is in the routes within a refresh (30 s) and its queues
/// are rebalanced within a period (20 s).
const SETTLE_AFTER: Millis = 70_000;
/// No queue may be pulled by two members within this, once settled.
const SETTLED_WINDOW: Millis = 20_000;
/// Two members may both hold a queue this long at most (as their counters,
/// read every second, show). A handover completes on the broker's notice, or
/// within a rebalance period (20 s) when the notice is lost; a member cut off
/// from one broker is forgotten there while the other brokers still list it,
/// until it connects again (a heartbeat goes at once then) or its next
/// heartbeat (30 s).
const OVERLAP_LIMIT: Millis = 55_000;
/// The same after a broker crash or a clogged link: the restarted broker
/// knows only the members that have sent it a heartbeat since, and a member
/// that started while it was down meets it only at its next route refresh
/// (30 s), so members that ask different brokers for the group see different
/// members until then (RocketMQ's own window, Java's as well); a member whose
/// link to the broker it asks is clogged keeps its last assignment until the
/// link clears (up to 40 s here).
const OVERLAP_LIMIT_AFTER_CRASH: Millis = 80_000;
/// Once calm, the backlog must drain within this.
const DRAIN_WITHIN: Millis = 600_000;
/// Events handled at one instant before the run counts as livelocked.
const SAME_INSTANT_LIMIT: u32 = 100_000;
/// Events in a whole run before it is cut off as runaway.
const EVENT_LIMIT: u64 = 3_000_000;
/// Orderly: a queue a member no longer holds must be unlocked within this
/// of its release (the offset write and the unlock, a round trip each).
const UNLOCK_WITHIN: Millis = 10_000;
/// Orderly: a fault on a member's links this long before a lock check
/// excuses a lock left behind (a request timeout, and some).
const TROUBLE_SLACK: Millis = 5_000;

/// What a seed's run looks like, drawn from the seed (swarm style: each seed
/// turns features on or off).
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Brokers, each with [`TOPIC`].
    pub brokers: usize,
    /// Queues of [`TOPIC`] per broker.
    pub queues: u32,
    /// Producers, sharing the messages.
    pub producers: usize,
    /// Consumers running from the start.
    pub consumers: usize,
    /// Members of a broadcasting group besides (each must see everything).
    pub broadcasters: usize,
    /// The broker resets the group's offsets back to the start once.
    pub reset: bool,
    /// The topic gains queues on every broker while messages flow.
    pub grow: bool,
    /// Messages the producer sends.
    pub messages: usize,
    /// Consumers join and leave gracefully while messages flow.
    pub churn: bool,
    /// Consumers crash (no shutdown) and come back.
    pub crashes: bool,
    /// One listener call in this many asks for a retry.
    pub fail_one_in: u64,
    /// One listener call in this many runs long (seconds).
    pub slow_one_in: u64,
    /// One send-back in this many fails at the broker (the client then
    /// retries the message locally).
    pub send_back_fails_one_in: u64,
    /// Links between clients and brokers are cut now and then.
    pub cuts: bool,
    /// A broker crashes and restarts (its store kept).
    pub broker_crash: bool,
    /// Links are clogged now and then (a partition that heals: bytes wait,
    /// then arrive in order).
    pub clogs: bool,
    /// Links are slow (tens to hundreds of milliseconds each way).
    pub slow_links: bool,
    /// The consumers' settings drawn for this seed.
    pub pull_batch: u32,
    /// Consume concurrency.
    pub concurrency: usize,
    /// Per-queue cache count limit.
    pub queue_cache: usize,
    /// Max reconsume times (small, so that some messages reach the DLQ).
    pub max_reconsume: i32,
    /// The clustering group consumes orderly (locks, one batch per queue).
    pub orderly: bool,
    /// The broadcasting members consume orderly too.
    pub orderly_broadcast: bool,
    /// Orderly: max reconsume times (-1, the default, is unbounded).
    pub orderly_max_reconsume: i32,
    /// Orderly: a listener suspends a message at most this many times in a
    /// row (its reconsume count says how many so far), so every queue moves
    /// on even with unbounded retries.
    pub suspend_streak: i32,
    /// Orderly: the consumers' default suspension, ms.
    pub suspend_time: Millis,
    /// Orderly: one listener call in this many, before the calm, outlives a
    /// lock (15 to 45 s).
    pub very_slow_one_in: u64,
    /// Orderly: how long a release or a shutdown waits for the batch out, ms.
    pub shutdown_timeout: Millis,
    /// Orderly: messages per listener call.
    pub consume_batch: usize,
    /// Orderly: keyed sequences the producers send (each key to one queue by
    /// hash; none where the queue set changes: growth, broker crash).
    pub keys: usize,
    /// Orderly: consumers stall now and then (the whole process frozen, its
    /// listener calls too, for seconds to past a broker lock's lifetime).
    pub stalls: bool,
}

impl Knobs {
    /// The knobs of `seed`.
    pub fn draw(seed: u64) -> Self {
        let mut r = SimRng::derive(seed, "knobs");
        Self {
            brokers: r.between(1, 2) as usize,
            queues: r.between(1, 4) as u32,
            producers: r.between(1, 2) as usize,
            consumers: r.between(1, 3) as usize,
            broadcasters: *r.pick(&[0, 0, 1, 2]).unwrap_or(&0),
            reset: r.chance(1, 5),
            grow: r.chance(1, 5),
            messages: r.between(20, 200) as usize,
            churn: r.chance(1, 2),
            crashes: r.chance(1, 3),
            fail_one_in: *r.pick(&[1_000_000, 50, 10]).unwrap_or(&50),
            slow_one_in: *r.pick(&[1_000_000, 100, 20]).unwrap_or(&100),
            send_back_fails_one_in: *r.pick(&[1_000_000, 3, 1]).unwrap_or(&3),
            cuts: r.chance(1, 3),
            broker_crash: r.chance(1, 4),
            clogs: r.chance(1, 3),
            slow_links: r.chance(1, 4),
            pull_batch: r.between(1, 32) as u32,
            concurrency: r.between(1, 4) as usize,
            queue_cache: r.between(4, 100) as usize,
            max_reconsume: r.between(1, 3) as i32,
            orderly: false,
            orderly_broadcast: false,
            orderly_max_reconsume: -1,
            suspend_streak: 0,
            suspend_time: 1_000,
            very_slow_one_in: 1_000_000,
            shutdown_timeout: 10_000,
            consume_batch: 1,
            keys: 0,
            stalls: false,
        }
        .draw_orderly(&mut r)
    }

    /// The orderly knobs, drawn after the others (so that those keep their
    /// values): one seed in three runs the clustering group orderly.
    fn draw_orderly(mut self, r: &mut SimRng) -> Self {
        if !r.chance(1, 3) {
            return self;
        }
        self.orderly = true;
        self.orderly_broadcast = r.chance(1, 2);
        self.orderly_max_reconsume = if r.chance(1, 3) {
            r.between(1, 3) as i32
        } else {
            -1
        };
        self.suspend_streak = r.between(1, 4) as i32;
        self.suspend_time = *r.pick(&[1_000, 1_000, 100, 2_500]).unwrap_or(&1_000);
        self.very_slow_one_in = *r.pick(&[1_000_000, 40, 12]).unwrap_or(&40);
        self.shutdown_timeout = *r.pick(&[10_000, 3_000, 20_000]).unwrap_or(&10_000);
        self.consume_batch = r.between(1, 3) as usize;
        let keys = r.between(0, 3) as usize;
        if !self.grow && !self.broker_crash {
            self.keys = keys;
        }
        self.stalls = r.chance(1, 3);
        self
    }

    /// Whether the run may deliver a message twice: only across a change of
    /// queue owner (a join, a leave, a crash), or when there are several
    /// consumers settling on their queues.
    fn allows_duplicates(&self) -> bool {
        self.churn
            || self.crashes
            || self.consumers > 1
            || self.cuts
            || self.broker_crash
            || self.reset
            || self.grow
            || self.clogs
            || self.stalls
    }
}

/// What a finished run saw.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The knobs it drew.
    pub knobs: Knobs,
    /// One line per event, in virtual time.
    pub trace: Vec<String>,
    /// A hash of the trace (same seed, same digest).
    pub digest: u64,
    /// Messages stored in [`TOPIC`].
    pub stored: usize,
    /// Successful listener calls' messages, duplicates included.
    pub consumed: usize,
    /// Messages consumed successfully more than once (beyond the first).
    pub duplicates: usize,
    /// Messages that ended in the DLQ.
    pub dead: usize,
    /// Virtual time the run took.
    pub virtual_ms: Millis,
    /// The longest time two members held one queue at once.
    pub max_overlap_ms: Millis,
    /// Events handled.
    pub events: u64,
    /// What the orderly checks saw.
    pub orderly: Counters,
    /// Keyed messages sent (orderly seeds).
    pub keyed: usize,
}

/// A run whose checker found a broken invariant.
#[derive(Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What broke.
    pub reason: String,
    /// The knobs it drew.
    pub knobs: Knobs,
    /// The whole trace.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    /// The reason, the knobs and the trace's last 200 lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = self.trace.len().saturating_sub(200);
        writeln!(f, "seed {:#x}: {}", self.seed, self.reason)?;
        writeln!(f, "knobs: {:?}", self.knobs)?;
        writeln!(
            f,
            "last {} of {} trace lines:",
            self.trace.len() - tail,
            self.trace.len()
        )?;
        for line in &self.trace[tail..] {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Runs `seed` and judges it (known core shortcomings counted, not failed:
/// see [`orderly::Settings::strict`]).
pub fn run(seed: u64) -> Result<Outcome, Box<Failure>> {
    run_with(seed, false)
}

/// Runs `seed` and judges it; `strict`: known core shortcomings fail it.
pub fn run_with(seed: u64, strict: bool) -> Result<Outcome, Box<Failure>> {
    let knobs = Knobs::draw(seed);
    let mut world = World::new(seed, knobs, strict);
    let result = world.run().and_then(|()| world.check());
    let digest = digest(&world.trace);
    match result {
        Ok(()) => Ok(world.outcome(digest)),
        Err(reason) => Err(Box::new(Failure {
            seed,
            reason,
            knobs: world.knobs.clone(),
            trace: std::mem::take(&mut world.trace),
        })),
    }
}

/// A queue in a trace line: its queue id, or `R<id>` for a retry topic's.
fn short_queue(q: &MessageQueue) -> String {
    if q.topic.starts_with("%RETRY%") {
        format!("R{}", q.queue_id)
    } else {
        q.queue_id.to_string()
    }
}

/// FNV-1a over the trace lines.
fn digest(trace: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in trace {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Which server a link reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    NameServer,
    Broker(usize),
}

/// One TCP-like connection between a client process and a server: reliable
/// and in order while up; a cut drops what is in flight.
struct Link {
    proc: usize,
    /// The client incarnation that opened it.
    incarnation: u64,
    conn: ConnId,
    server: Server,
    up: bool,
    latency: Millis,
    /// The last scheduled arrival each way (to keep each direction in order).
    to_server_at: Millis,
    to_client_at: Millis,
    /// Clogged until then: nothing arrives before.
    clogged_until: Millis,
    /// The server side's frame decoder.
    decoder: FrameDecoder,
}

/// What a client process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Producer,
    /// A member of [`GROUP`] (clustering).
    Consumer,
    /// A member of [`BROADCAST_GROUP`].
    Broadcaster,
}

impl Role {
    fn group(self) -> Option<&'static str> {
        match self {
            Self::Producer => None,
            Self::Consumer => Some(GROUP),
            Self::Broadcaster => Some(BROADCAST_GROUP),
        }
    }
}

/// A client process: a core, its connections, and what it asked for.
struct Proc {
    name: String,
    role: Role,
    client: Option<Client>,
    /// Bumped at each restart: events of an earlier incarnation are stale.
    incarnation: u64,
    conns: BTreeMap<ConnId, LinkId>,
    calls: BTreeMap<CallId, CallKind>,
    /// A graceful shutdown is under way.
    stopping: bool,
    /// Files written through Output::Persist (survive a crash).
    disk: BTreeMap<String, Bytes>,
    /// The client id brokers know it by (the same in every incarnation).
    client_id: String,
    /// When its current incarnation started.
    booted_at: Millis,
    /// When its graceful shutdown began.
    stopping_at: Millis,
    /// Until when a fault touched its links to the brokers (a cut, a clog, a
    /// broker down, a stall): a lock it meant to give back may be left
    /// behind.
    trouble_until: Millis,
    /// Frozen until then: nothing reaches its core, no timer fires, its
    /// listener calls wait.
    stalled_until: Millis,
}

#[derive(Clone, Copy, Debug)]
enum CallKind {
    Send(usize),
    Start,
    Shutdown,
    Stats,
}

/// Scheduled things.
enum Event {
    ToServer(LinkId, Bytes),
    ToClient(LinkId, BytesMut),
    Connected(LinkId),
    ConnectFailed(usize, u64, ConnId),
    /// The client end learns its link closed.
    ClientClosed(LinkId),
    /// The server end learns its link closed.
    ServerClosed(LinkId),
    ConsumeDone {
        proc: usize,
        incarnation: u64,
        ticket: Ticket,
        result: Verdict,
    },
    /// The core's own input, fed back at once (file loads and writes).
    Feed(usize, u64, Input),
    Send(usize, usize),
    StartConsumer(usize),
    Shutdown(usize),
    Crash(usize),
    /// Cut one client-broker link (both ends hear of it).
    Cut,
    /// Clog one link (to a broker or the name server) for this long.
    Clog(Millis),
    BrokerCrash(usize),
    BrokerRestart(usize),
    /// Ask every running consumer for its counters (the cache-limit check).
    Probe,
    /// The broker of this index resets [`GROUP`]'s offsets to the start.
    Reset(usize),
    /// Every broker gives [`TOPIC`] more queues.
    Grow,
    /// An orderly member has read an offset reset (or an OFFSET_MOVED) on
    /// this link, if its core still had the link open.
    OffsetsReset(Member, LinkId, ResetScope),
    /// A process freezes for this long.
    Stall(usize, Millis),
    /// A frozen process runs again (its timers are due).
    Wake(usize),
}

/// The queues an offset reset moves.
#[derive(Debug)]
enum ResetScope {
    /// These.
    Queues(BTreeSet<MessageQueue>),
    /// The member's queues on the broker of this name (the world does not
    /// read which one an OFFSET_MOVED answer was for).
    Broker(String),
}

/// One listener call.
#[derive(Clone, Debug)]
struct Call1 {
    /// (index property, reconsume times) of each message.
    messages: Vec<(usize, i32)>,
    /// Where the messages came from: (broker name, topic, queue id), and
    /// each one's queue offset.
    queue: (String, String, i32),
    offsets: Vec<i64>,
    done_at: Option<Millis>,
    success: bool,
}

struct World {
    seed: u64,
    knobs: Knobs,
    now: Millis,
    base: Instant,
    net: SimRng,
    listen: SimRng,
    events: BTreeMap<(Millis, u64), Event>,
    seq: u64,
    namesrv: SimNameServer,
    brokers: Vec<SimBroker>,
    broker_up: Vec<bool>,
    links: BTreeMap<LinkId, Link>,
    next_link: u64,
    procs: Vec<Proc>,
    /// Listener calls by (proc, incarnation, ticket).
    calls: BTreeMap<(usize, u64, Ticket), Call1>,
    /// Acknowledged sends: index to the time of the acknowledgement.
    acked: BTreeMap<usize, Millis>,
    /// Send-backs on their way: (link, opaque) to (broker, commit-log offset).
    sending_back: BTreeMap<(LinkId, i32), (usize, i64)>,
    /// Send-backs the broker answered SUCCESS: (broker, commit-log offset) to
    /// when. From then the broker holds the message's retry.
    sent_back: BTreeMap<(usize, i64), Millis>,
    /// Pulls of the clustering group: (broker, topic, queue) to (when, by
    /// which process).
    pulls: BTreeMap<(usize, String, i32), Vec<(Millis, usize)>>,
    /// The final shutdowns have begun.
    shutting_down: bool,
    /// Which members of the clustering group hold each queue, and since
    /// when, as their last counters said.
    owners: BTreeMap<rocketmq_core::protocol::MessageQueue, BTreeMap<usize, Millis>>,
    /// The longest time two members held one queue at once.
    max_overlap: Millis,
    /// Each member's highest commit per queue since it last asked the broker
    /// for the queue's offset: (process, broker, topic, queue).
    tenures: BTreeMap<(usize, usize, String, i32), i64>,
    /// Queues whose offsets the broker moved or reset (their commits may go
    /// back): (broker, topic, queue).
    moved: BTreeSet<(usize, String, i32)>,
    /// The first broken invariant seen while running.
    violation: Option<String>,
    trace: Vec<String>,
    handled: u64,
    /// The orderly checks (idle unless some members consume orderly).
    orderly: OrderlyCheck,
    /// Keyed messages: index to (key, sequence number).
    keyed: BTreeMap<usize, (u32, u32)>,
    /// Each key's messages, by sequence number: (producer, index).
    chains: Vec<Vec<(usize, usize)>>,
    /// Orderly: locks held by a member on queues it no longer holds, and
    /// since when (by its counters): (process, queue).
    unowned_locks: BTreeMap<(usize, MessageQueue), Millis>,
    /// Each clustering member's queues as its last counters showed them:
    /// (queue, process) to (next pull offset, messages cached).
    progress: BTreeMap<(MessageQueue, usize), (i64, usize)>,
    /// Orderly: the last offset each member wrote for each queue, as it
    /// reached the broker.
    own_writes: BTreeMap<(Member, MessageQueue), i64>,
    /// Orderly: when each member's last granted lock request of each queue
    /// reached its broker.
    granted: BTreeMap<(Member, MessageQueue), Millis>,
    /// The offsets an admin reset moved queues to (a member that reads the
    /// reset writes them, lock or not).
    reset_to: BTreeMap<MessageQueue, i64>,
}

impl World {
    fn new(seed: u64, knobs: Knobs, strict: bool) -> Self {
        #[allow(clippy::disallowed_methods)]
        // One reading, as the origin of virtual time: the cores only ever see
        // it plus virtual milliseconds.
        let base = Instant::now();
        let mut brokers = Vec::new();
        for b in 0..knobs.brokers {
            let name = format!("broker-{}", (b'a' + b as u8) as char);
            let mut broker =
                SimBroker::new(&name, &format!("10.0.1.{}:10911", b + 1), "SimCluster");
            broker.create_topic(TOPIC, knobs.queues);
            brokers.push(broker);
        }
        let mut world = Self {
            seed,
            now: 0,
            base,
            net: SimRng::derive(seed, "net"),
            listen: SimRng::derive(seed, "listen"),
            events: BTreeMap::new(),
            seq: 0,
            namesrv: SimNameServer::new(NS_ADDR),
            broker_up: vec![true; brokers.len()],
            brokers,
            links: BTreeMap::new(),
            next_link: 0,
            procs: Vec::new(),
            calls: BTreeMap::new(),
            acked: BTreeMap::new(),
            sending_back: BTreeMap::new(),
            sent_back: BTreeMap::new(),
            pulls: BTreeMap::new(),
            shutting_down: false,
            owners: BTreeMap::new(),
            max_overlap: 0,
            tenures: BTreeMap::new(),
            moved: BTreeSet::new(),
            violation: None,
            trace: Vec::new(),
            handled: 0,
            orderly: OrderlyCheck::new(orderly::Settings {
                max_reconsume: knobs.orderly_max_reconsume,
                suspend_time: knobs.suspend_time,
                shutdown_timeout: knobs.shutdown_timeout,
                strict,
            }),
            keyed: BTreeMap::new(),
            chains: Vec::new(),
            unowned_locks: BTreeMap::new(),
            progress: BTreeMap::new(),
            own_writes: BTreeMap::new(),
            granted: BTreeMap::new(),
            reset_to: BTreeMap::new(),
            knobs,
        };
        world.plan();
        world
    }

    /// The run's script: the producer's sends, the consumers' starts, and
    /// (by the knobs) joins, leaves, crashes and restarts before
    /// [`CALM_AFTER`].
    fn plan(&mut self) {
        let mut r = SimRng::derive(self.seed, "plan");
        let producers: Vec<usize> = (0..self.knobs.producers)
            .map(|n| self.spawn(&format!("producer-{n}"), Role::Producer))
            .collect();
        for i in 0..self.knobs.messages {
            let at = r.between(1_000, 40_000);
            let producer = producers[i % producers.len()];
            self.schedule(at, Event::Send(producer, i));
        }
        // Keyed sequences (their own stream, so the rest of the plan keeps
        // its draws): each message of a key is sent once the one before it
        // is acknowledged.
        let mut k = SimRng::derive(self.seed, "keys");
        let mut index = self.knobs.messages;
        for key in 0..self.knobs.keys {
            let producer = producers[key % producers.len()];
            let length = k.between(5, 30) as usize;
            let chain: Vec<(usize, usize)> =
                (index..index + length).map(|i| (producer, i)).collect();
            for (n, (_, i)) in chain.iter().enumerate() {
                self.keyed.insert(*i, (key as u32, n as u32));
            }
            index += length;
            self.schedule(k.between(1_000, 30_000), Event::Send(producer, chain[0].1));
            self.chains.push(chain);
        }
        for b in 0..self.knobs.broadcasters {
            let p = self.spawn(&format!("broadcaster-{b}"), Role::Broadcaster);
            self.schedule(r.below(500), Event::StartConsumer(p));
            if self.knobs.crashes && r.chance(1, 2) {
                let at = r.between(3_000, 70_000);
                self.schedule(at, Event::Crash(p));
                self.schedule(at + r.between(1_000, 15_000), Event::StartConsumer(p));
            }
        }
        if self.knobs.reset {
            let b = r.below(self.brokers.len() as u64) as usize;
            self.schedule(r.between(10_000, 60_000), Event::Reset(b));
        }
        if self.knobs.grow {
            self.schedule(r.between(5_000, 50_000), Event::Grow);
        }
        let mut consumers = Vec::new();
        for c in 0..self.knobs.consumers {
            let p = self.spawn(&format!("consumer-{c}"), Role::Consumer);
            self.schedule(r.below(500), Event::StartConsumer(p));
            consumers.push(p);
        }
        if self.knobs.churn {
            for j in 0..r.between(1, 3) {
                let p = self.spawn(&format!("joiner-{j}"), Role::Consumer);
                let at = r.between(2_000, 60_000);
                self.schedule(at, Event::StartConsumer(p));
                if r.chance(1, 2) {
                    self.schedule(at + r.between(5_000, 25_000), Event::Shutdown(p));
                }
            }
            // One of the first consumers leaves, and comes back later.
            if let Some(&p) = r.pick(&consumers) {
                let at = r.between(5_000, 50_000);
                self.schedule(at, Event::Shutdown(p));
                self.schedule(at + r.between(10_000, 30_000), Event::StartConsumer(p));
            }
        }
        if self.knobs.cuts {
            for _ in 0..r.between(1, 6) {
                let at = r.between(2_000, CALM_AFTER - 5_000);
                self.schedule(at, Event::Cut);
            }
        }
        if self.knobs.clogs {
            for _ in 0..r.between(1, 4) {
                let at = r.between(2_000, CALM_AFTER - 10_000);
                let length = *r
                    .pick(&[500, 2_000, 5_000, 20_000, 40_000])
                    .unwrap_or(&2_000);
                self.schedule(at, Event::Clog(length));
            }
        }
        if self.knobs.broker_crash {
            let b = r.below(self.brokers.len() as u64) as usize;
            let at = r.between(5_000, 60_000);
            self.schedule(at, Event::BrokerCrash(b));
            self.schedule(at + r.between(2_000, 20_000), Event::BrokerRestart(b));
        }
        let mut at = 1_000;
        while at < CALM_AFTER + DRAIN_WITHIN {
            self.schedule(at, Event::Probe);
            at += 1_000;
        }
        if self.knobs.stalls {
            // Their own stream, so the rest of the plan keeps its draws.
            let mut s = SimRng::derive(self.seed, "stalls");
            for _ in 0..s.between(1, 3) {
                if let Some(&p) = s.pick(&consumers) {
                    let length = *s.pick(&[3_000, 12_000, 35_000, 65_000]).unwrap_or(&3_000);
                    // Over before the calm, as every fault.
                    let latest = CALM_AFTER - 10_000 - length;
                    self.schedule(s.between(3_000, latest), Event::Stall(p, length));
                }
            }
        }
        if self.knobs.crashes {
            for _ in 0..r.between(1, 2) {
                if let Some(&p) = r.pick(&consumers) {
                    let at = r.between(3_000, 70_000);
                    self.schedule(at, Event::Crash(p));
                    self.schedule(at + r.between(1_000, 15_000), Event::StartConsumer(p));
                }
            }
        }
    }

    fn spawn(&mut self, name: &str, role: Role) -> usize {
        self.procs.push(Proc {
            name: name.to_owned(),
            role,
            client: None,
            incarnation: 0,
            conns: BTreeMap::new(),
            calls: BTreeMap::new(),
            stopping: false,
            disk: BTreeMap::new(),
            client_id: String::new(),
            booted_at: 0,
            stopping_at: 0,
            trouble_until: 0,
            stalled_until: 0,
        });
        self.procs.len() - 1
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    fn instant(&self, at: Millis) -> Instant {
        self.base + Duration::from_millis(at)
    }

    fn log(&mut self, line: impl std::fmt::Display) {
        let mut text = String::new();
        let _ = write!(text, "+{}.{:03}s {line}", self.now / 1000, self.now % 1000);
        self.trace.push(text);
    }

    /// The client core of process `p`, started (or started again) now.
    fn boot(&mut self, p: usize) {
        let now = self.instant(self.now);
        let proc = &mut self.procs[p];
        proc.incarnation += 1;
        proc.conns.clear();
        proc.calls.clear();
        proc.stopping = false;
        let config = ClientConfig {
            name_servers: vec![NS_ADDR.to_owned()],
            client_ip: std::net::IpAddr::from([10, 2, 0, p as u8 + 1]),
            instance_name: "sim".to_owned(),
            pid: p as u32 + 1,
            id_salt: p as i32 + 1,
            seed: SimRng::derive(self.seed, &format!("client/{p}/{}", proc.incarnation)).next_u64(),
            ..ClientConfig::default()
        };
        proc.client_id = config.client_id();
        proc.booted_at = self.now;
        proc.client = Some(Client::new(config, now, WALL_EPOCH_MS + self.now as i64));
    }

    fn run(&mut self) -> Result<(), String> {
        let mut same_instant = 0u32;
        loop {
            self.drain_all()?;
            if self.finished()? {
                return Ok(());
            }
            let next = self.next_instant();
            let Some(next) = next else {
                return Err("nothing left to happen, and the run is not finished".into());
            };
            if next > CALM_AFTER + DRAIN_WITHIN {
                return Err(format!(
                    "the backlog did not drain within {} s of calm: {}",
                    DRAIN_WITHIN / 1000,
                    self.undrained()
                ));
            }
            if next == self.now {
                same_instant += 1;
                if same_instant > SAME_INSTANT_LIMIT {
                    return Err(format!("livelock at {} ms", self.now));
                }
            } else {
                same_instant = 0;
            }
            self.now = next;
            self.step()?;
            if self.handled > EVENT_LIMIT {
                return Err(format!("over {EVENT_LIMIT} events"));
            }
        }
    }

    /// Whether the run is over: calm for a while, every stored message
    /// consumed or dead, and every consumer shut down after that (the world
    /// shuts them down). Before the shutdowns, no queue may be pulled by two
    /// members of the group in the last [`SETTLED_WINDOW`] (checked
    /// [`SETTLE_AFTER`] into the calm).
    fn finished(&mut self) -> Result<bool, String> {
        if self.now < CALM_AFTER + SETTLE_AFTER || !self.all_done() {
            return Ok(false);
        }
        if !self.shutting_down {
            self.shutting_down = true;
            self.check_settled()?;
            self.check_locks_settled()?;
        }
        // Shut every running consumer down, once.
        let mut running = false;
        for p in 0..self.procs.len() {
            let proc = &self.procs[p];
            if proc.role != Role::Producer && proc.client.is_some() {
                running = true;
                if !proc.stopping {
                    self.shutdown(p);
                }
            }
        }
        Ok(!running)
    }

    /// Each queue of the clustering group was pulled by one member at most in
    /// the last [`SETTLED_WINDOW`]: no consumer is left pulling a queue it
    /// does not own.
    fn check_settled(&self) -> Result<(), String> {
        let since = self.now.saturating_sub(SETTLED_WINDOW);
        for ((b, topic, queue), pulls) in &self.pulls {
            let pullers: BTreeSet<usize> = pulls
                .iter()
                .filter(|(at, _)| *at >= since)
                .map(|(_, p)| *p)
                .collect();
            if pullers.len() > 1 {
                let names: Vec<&str> = pullers
                    .iter()
                    .map(|p| self.procs[*p].name.as_str())
                    .collect();
                return Err(format!(
                    "{}: {topic}#{queue} pulled by {names:?} in the last {} s of a settled group",
                    self.brokers[*b].name(),
                    SETTLED_WINDOW / 1000
                ));
            }
        }
        Ok(())
    }

    /// Every stored message of [`TOPIC`] consumed successfully or dead in
    /// [`GROUP`], and delivered to every broadcasting member.
    fn all_done(&self) -> bool {
        // The group's offsets reached every queue's end (a replay after a
        // reset, say, is over).
        let caught_up = self.brokers.iter().enumerate().all(|(b, broker)| {
            (0..self.queues_of(b)).all(|q| {
                let end = broker.log(TOPIC, q).len() as i64;
                let queue = MessageQueue::new(TOPIC, broker.name(), q);
                end == 0
                    || broker.committed(GROUP, TOPIC, q) == Some(end)
                    || self
                        .progress
                        .range((queue.clone(), 0)..=(queue, usize::MAX))
                        .any(|(_, (next, cached))| *next >= end && *cached == 0)
            })
        });
        if !caught_up {
            return false;
        }
        let consumed = self.consumed_indexes();
        let dead = self.dead_indexes();
        let stored = self.stored_indexes();
        stored
            .iter()
            .all(|i| consumed.contains(i) || dead.contains(i))
            && self.unseen_by_broadcasters(&stored).is_none()
            && self.keyed.keys().all(|i| self.acked.contains_key(i))
    }

    /// A broadcasting member and the first stored message it was never
    /// delivered (a broadcasting group drops a failed message: one delivery
    /// is what it owes).
    fn unseen_by_broadcasters(&self, stored: &BTreeSet<usize>) -> Option<(String, usize)> {
        for (p, proc) in self.procs.iter().enumerate() {
            if proc.role != Role::Broadcaster {
                continue;
            }
            let seen: BTreeSet<usize> = self
                .calls
                .iter()
                .filter(|((cp, _, _), c)| *cp == p && c.done_at.is_some())
                .flat_map(|(_, c)| c.messages.iter().map(|(i, _)| *i))
                .collect();
            if let Some(i) = stored.iter().find(|i| !seen.contains(i)) {
                return Some((proc.name.clone(), *i));
            }
        }
        None
    }

    /// The queues of [`TOPIC`] on broker `b` now.
    fn queues_of(&self, b: usize) -> i32 {
        self.brokers[b]
            .topics()
            .into_iter()
            .find(|(t, _)| t == TOPIC)
            .map_or(0, |(_, n)| n as i32)
    }

    /// What is left undone, for a run that did not drain: the stored
    /// messages neither consumed nor dead, and what broadcasting members
    /// missed.
    fn undrained(&self) -> String {
        let stored = self.stored_indexes();
        let consumed = self.consumed_indexes();
        let dead = self.dead_indexes();
        let left: Vec<usize> = stored
            .iter()
            .filter(|i| !consumed.contains(i) && !dead.contains(i))
            .copied()
            .collect();
        let mut text = format!(
            "{} of {} stored messages neither consumed nor dead, e.g. {:?}",
            left.len(),
            stored.len(),
            &left[..left.len().min(10)]
        );
        if let Some((member, i)) = self.unseen_by_broadcasters(&stored) {
            let _ = write!(text, "; broadcasting member {member} never got {i}");
        }
        for (b, broker) in self.brokers.iter().enumerate() {
            for q in 0..self.queues_of(b) {
                let end = broker.log(TOPIC, q).len() as i64;
                let committed = broker.committed(GROUP, TOPIC, q);
                if end > 0 && committed != Some(end) {
                    let _ = write!(
                        text,
                        "; {}#{q} ends at {end}, committed {committed:?}",
                        broker.name()
                    );
                }
            }
        }
        text
    }

    fn next_instant(&self) -> Option<Millis> {
        let mut next = self.events.keys().next().map(|(t, _)| *t);
        let mut see = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        for proc in self.procs.iter().filter(|p| p.stalled_until <= self.now) {
            if let Some(deadline) = proc.client.as_ref().and_then(Client::poll_timeout) {
                let ms = deadline.saturating_duration_since(self.base).as_millis() as Millis;
                // A deadline between two milliseconds is met at the later one.
                let ms = if self.instant(ms) < deadline {
                    ms + 1
                } else {
                    ms
                };
                see(ms.max(self.now));
            }
        }
        for (b, broker) in self.brokers.iter().enumerate() {
            if self.broker_up[b] {
                if let Some(t) = broker.next_deadline() {
                    see(t.max(self.now));
                }
            }
        }
        next
    }

    /// Handles everything due at `now`: scheduled events, then timers.
    fn step(&mut self) -> Result<(), String> {
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let event = entry.remove();
            self.handled += 1;
            self.handle(event)?;
            self.drain_all()?;
        }
        let now = self.instant(self.now);
        for p in 0..self.procs.len() {
            let due = self.procs[p].stalled_until <= self.now
                && self.procs[p]
                    .client
                    .as_ref()
                    .and_then(Client::poll_timeout)
                    .is_some_and(|d| d <= now);
            if due {
                self.handled += 1;
                if let Some(client) = self.procs[p].client.as_mut() {
                    client.handle_input(now, Input::Timeout);
                }
                self.drain(p)?;
            }
        }
        for b in 0..self.brokers.len() {
            let due = self.broker_up[b]
                && self.brokers[b]
                    .next_deadline()
                    .is_some_and(|t| t <= self.now);
            if due {
                self.handled += 1;
                let mut out = Vec::new();
                self.brokers[b].tick(self.now, &mut out);
                self.server_out(out);
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        if let Some(until) = self.target(&event).map(|p| self.procs[p].stalled_until) {
            if until > self.now {
                // A frozen process takes it when it runs again, in order.
                self.schedule(until, event);
                return Ok(());
            }
        }
        let now = self.instant(self.now);
        match event {
            Event::ToServer(link, data) => self.arrive_at_server(link, &data)?,
            Event::ToClient(link, data) => {
                if let Some((p, conn)) = self.client_end(link) {
                    if let Some(client) = self.procs[p].client.as_mut() {
                        client.handle_input(now, Input::Received(conn, data));
                    }
                }
            }
            Event::Connected(link) => {
                if let Some((p, conn)) = self.client_end(link) {
                    if let Some(client) = self.procs[p].client.as_mut() {
                        client.handle_input(now, Input::Connected(conn));
                    }
                }
            }
            Event::ConnectFailed(p, incarnation, conn) => {
                if self.procs[p].incarnation == incarnation {
                    if let Some(client) = self.procs[p].client.as_mut() {
                        client.handle_input(now, Input::ConnectFailed(conn, "refused".into()));
                    }
                }
            }
            Event::ClientClosed(link) => {
                if let Some((p, conn)) = self.client_end(link) {
                    self.procs[p].conns.remove(&conn);
                    if let Some(client) = self.procs[p].client.as_mut() {
                        client.handle_input(now, Input::Closed(conn));
                    }
                }
            }
            Event::ServerClosed(link) => {
                if let Some(Server::Broker(b)) = self.links.get(&link).map(|l| l.server) {
                    if self.broker_up[b] {
                        let mut out = Vec::new();
                        self.brokers[b].link_closed(self.now, link, &mut out);
                        self.server_out(out);
                    }
                }
            }
            Event::ConsumeDone {
                proc,
                incarnation,
                ticket,
                result,
            } => {
                if let Some(call) = self.calls.get_mut(&(proc, incarnation, ticket)) {
                    call.done_at = Some(self.now);
                    call.success = result.concurrent() == ConsumeResult::Success;
                }
                let line = format!("{} done {ticket} {result:?}", self.procs[proc].name);
                let mut fed = false;
                if self.procs[proc].incarnation == incarnation {
                    if let Some(client) = self.procs[proc].client.as_mut() {
                        let input = match result {
                            Verdict::Concurrent(result) => Input::Consumed { ticket, result },
                            Verdict::Orderly(result) => Input::ConsumedOrderly { ticket, result },
                        };
                        client.handle_input(now, input);
                        fed = true;
                    }
                }
                self.log(line);
                if self.is_orderly(proc) {
                    let name = self.procs[proc].name.clone();
                    self.orderly.done(
                        (proc, incarnation),
                        &name,
                        ticket,
                        result.orderly(),
                        fed,
                        self.now,
                    )?;
                }
            }
            Event::Feed(p, incarnation, input) => {
                if self.procs[p].incarnation == incarnation {
                    if let Some(client) = self.procs[p].client.as_mut() {
                        client.handle_input(now, input);
                    }
                }
            }
            Event::Send(p, index) => {
                if self.procs[p].client.is_none() {
                    self.boot(p);
                }
                let mut message = Message::new(TOPIC, format!("message {index}"))
                    .with_tags(format!("Tag{}", index % 3))
                    .with_property("index", index.to_string());
                let selector = match self.keyed.get(&index) {
                    Some(&(key, seq)) => {
                        message = message
                            .with_property("key", key.to_string())
                            .with_property("seq", seq.to_string());
                        QueueSelector::Hash(format!("key-{key}"))
                    }
                    None => QueueSelector::RoundRobin,
                };
                let call = Call::Send {
                    group: "SimProducer".into(),
                    message,
                    selector,
                };
                self.call(p, call, CallKind::Send(index));
                self.log(format!("producer sends {index}"));
            }
            Event::StartConsumer(p) => {
                if self.procs[p].client.is_some() {
                    if self.procs[p].stopping {
                        // Still shutting down: it starts once that is done.
                        self.schedule(self.now + 1_000, Event::StartConsumer(p));
                    }
                    return Ok(());
                }
                self.boot(p);
                let Some(group) = self.procs[p].role.group() else {
                    return Ok(());
                };
                let mut config = ConsumerConfig::new(group);
                if self.procs[p].role == Role::Broadcaster {
                    config.message_model = rocketmq_core::consumer::MessageModel::Broadcasting;
                    config.offset_store_dir = Some("/sim/offsets".to_owned());
                }
                config.consume_from = rocketmq_core::consumer::ConsumeFrom::FirstOffset;
                config.pull_batch_size = self.knobs.pull_batch;
                config.consume_concurrency = self.knobs.concurrency;
                config.queue_cache_count = self.knobs.queue_cache;
                config.max_reconsume_times = self.knobs.max_reconsume;
                if self.is_orderly(p) {
                    let k = &self.knobs;
                    config.orderly = true;
                    config.max_reconsume_times = k.orderly_max_reconsume;
                    config.suspend_time = Duration::from_millis(k.suspend_time);
                    config.shutdown_timeout = Duration::from_millis(k.shutdown_timeout);
                    config.consume_batch_size = k.consume_batch;
                }
                let call = Call::StartConsumer {
                    config: Box::new(config),
                    subscriptions: vec![(TOPIC.to_owned(), Selector::tag("*"))],
                };
                self.call(p, call, CallKind::Start);
                let line = format!("{} starts", self.procs[p].name);
                self.log(line);
            }
            Event::Shutdown(p) => self.shutdown(p),
            Event::Reset(b) => {
                if self.broker_up[b] {
                    let mut out = Vec::new();
                    let reset = self.brokers[b].reset_offsets(GROUP, TOPIC, 0, true, &mut out);
                    if let Ok(queues) = &reset {
                        for (q, offset) in queues {
                            self.moved.insert((b, q.topic.clone(), q.queue_id));
                            self.reset_to.insert(q.clone(), *offset);
                        }
                    }
                    self.log(format!(
                        "{} resets {GROUP} to the start: {reset:?}",
                        self.brokers[b].name()
                    ));
                    self.server_out(out);
                }
            }
            Event::Grow => {
                for b in 0..self.brokers.len() {
                    let n = self.queues_of(b) as u32 + 2;
                    self.brokers[b].set_queue_count(TOPIC, n);
                }
                self.log(format!(
                    "{TOPIC} grows to {} queues per broker",
                    self.queues_of(0)
                ));
            }
            Event::Cut => {
                let up: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.up && matches!(l.server, Server::Broker(_)))
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(&link) = self.net.pick(&up) {
                    self.log(format!("cut {link}"));
                    self.trouble(link, self.now);
                    self.close_link(link, true);
                }
            }
            Event::Clog(length) => {
                let up: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.up)
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(&link) = self.net.pick(&up) {
                    let until = self.now + length;
                    if let Some(l) = self.links.get_mut(&link) {
                        l.clogged_until = l.clogged_until.max(until);
                    }
                    self.trouble(link, until);
                    self.log(format!("clog {link} for {length} ms"));
                }
            }
            Event::BrokerCrash(b) => {
                self.log(format!("{} crashes", self.brokers[b].name()));
                self.broker_up[b] = false;
                self.brokers[b].crash();
                self.orderly.broker_crashed(b, self.now);
                for proc in &mut self.procs {
                    proc.trouble_until = proc.trouble_until.max(self.now);
                }
                let links: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.up && l.server == Server::Broker(b))
                    .map(|(id, _)| *id)
                    .collect();
                for link in links {
                    self.close_link(link, true);
                }
            }
            Event::BrokerRestart(b) => {
                self.log(format!("{} restarts", self.brokers[b].name()));
                self.broker_up[b] = true;
                for proc in &mut self.procs {
                    proc.trouble_until = proc.trouble_until.max(self.now);
                }
            }
            Event::Probe => {
                for p in 0..self.procs.len() {
                    let Some(group) = self.procs[p].role.group() else {
                        continue;
                    };
                    if !self.procs[p].stopping && self.procs[p].stalled_until <= self.now {
                        let group = group.to_owned();
                        self.call(p, Call::ConsumerStats { group }, CallKind::Stats);
                    }
                }
            }
            Event::OffsetsReset(member, link, scope) => {
                // Only if the core read those bytes: they reached it before
                // it heard that the link closed.
                let read = self
                    .client_end(link)
                    .is_some_and(|(p, conn)| self.procs[p].conns.get(&conn) == Some(&link));
                if read {
                    match scope {
                        ResetScope::Queues(queues) => {
                            self.orderly.reset(member, |q| queues.contains(q));
                        }
                        ResetScope::Broker(name) => {
                            self.orderly.reset(member, |q| q.broker_name == name);
                        }
                    }
                }
            }
            Event::Stall(p, length) => {
                if self.procs[p].client.is_some() && self.procs[p].stalled_until <= self.now {
                    let until = self.now + length;
                    let proc = &mut self.procs[p];
                    proc.stalled_until = until;
                    proc.trouble_until = proc.trouble_until.max(until);
                    self.forget_owner(p);
                    self.schedule(until, Event::Wake(p));
                    let line = format!("{} stalls for {length} ms", self.procs[p].name);
                    self.log(line);
                }
            }
            Event::Wake(p) => {
                if self.procs[p].client.is_some() && self.procs[p].stalled_until == self.now {
                    let line = format!("{} runs again", self.procs[p].name);
                    self.log(line);
                }
            }
            Event::Crash(p) => {
                let member = (p, self.procs[p].incarnation);
                if self.procs[p].client.take().is_some() {
                    self.orderly.crashed(member);
                    let line = format!("{} crashes", self.procs[p].name);
                    self.log(line);
                    self.cut_all(p);
                    self.forget_owner(p);
                }
            }
        }
        Ok(())
    }

    /// The process an event is for, if it is one a frozen process must wait
    /// for: what reaches it from outside, and the script's commands (a
    /// start, a shutdown, a crash: each in its turn once it runs again).
    fn target(&self, event: &Event) -> Option<usize> {
        match event {
            Event::ToClient(link, _) | Event::Connected(link) | Event::ClientClosed(link) => {
                self.links.get(link).map(|l| l.proc)
            }
            Event::ConnectFailed(p, _, _)
            | Event::ConsumeDone { proc: p, .. }
            | Event::Feed(p, _, _)
            | Event::StartConsumer(p)
            | Event::Shutdown(p)
            | Event::Crash(p) => Some(*p),
            // After the bytes it follows, which wait too.
            Event::OffsetsReset((p, _), _, _) => Some(*p),
            _ => None,
        }
    }

    /// Starts a call on process `p`'s core (if it runs), remembering what
    /// its reply is for.
    fn call(&mut self, p: usize, call: Call, kind: CallKind) {
        let now = self.instant(self.now);
        let proc = &mut self.procs[p];
        if let Some(client) = proc.client.as_mut() {
            let id = client.call(now, call, None);
            proc.calls.insert(id, kind);
        }
    }

    fn shutdown(&mut self, p: usize) {
        let proc = &mut self.procs[p];
        if proc.stopping || proc.client.is_none() {
            return;
        }
        let Some(group) = proc.role.group() else {
            return;
        };
        proc.stopping = true;
        proc.stopping_at = self.now;
        let group = group.to_owned();
        self.call(p, Call::ShutdownConsumer { group }, CallKind::Shutdown);
        let line = format!("{} shuts down", self.procs[p].name);
        self.log(line);
    }

    /// What member `p` holds now, by its counters; no queue may be held by two
    /// members for longer than [`OVERLAP_LIMIT`].
    fn note_owner<'q>(
        &mut self,
        p: usize,
        queues: impl Iterator<Item = &'q rocketmq_core::protocol::MessageQueue>,
    ) -> Result<(), String> {
        let held: BTreeSet<&rocketmq_core::protocol::MessageQueue> = queues.collect();

        for (queue, holders) in &mut self.owners {
            if !held.contains(queue) {
                holders.remove(&p);
            }
        }
        for queue in held {
            let holders = self.owners.entry(queue.clone()).or_default();
            holders.entry(p).or_insert(self.now);
            if holders.len() > 1 {
                // The overlap began when the later of the two began to hold it.
                let mut since: Vec<(Millis, usize)> =
                    holders.iter().map(|(p, t)| (*t, *p)).collect();
                since.sort_unstable();
                let (began, newer) = since[1];
                self.max_overlap = self.max_overlap.max(self.now - began);
                let limit = if self.knobs.broker_crash || self.knobs.clogs || self.knobs.stalls {
                    OVERLAP_LIMIT_AFTER_CRASH
                } else {
                    OVERLAP_LIMIT
                };
                if self.now - began > limit {
                    return Err(format!(
                        "{queue} held by {} (since {} ms) and {} (since {began} ms) at once for {} ms",
                        self.procs[since[0].1].name,
                        since[0].0,
                        self.procs[newer].name,
                        self.now - began
                    ));
                }
            }
        }
        Ok(())
    }

    /// A fault on `link` lasting until `until`: its process's lock checks
    /// are lenient until then.
    fn trouble(&mut self, link: LinkId, until: Millis) {
        if let Some(l) = self.links.get(&link) {
            let proc = &mut self.procs[l.proc];
            proc.trouble_until = proc.trouble_until.max(until);
        }
    }

    /// Whether a fault touched process `p`'s links since `since` (or a
    /// broker is down now).
    fn troubled_since(&self, p: usize, since: Millis) -> bool {
        self.procs[p].trouble_until >= since || self.broker_up.iter().any(|up| !up)
    }

    /// The live locks of [`GROUP`] on the running brokers: (broker, queue,
    /// holder, last renewal).
    fn live_locks(&self) -> Vec<(usize, MessageQueue, String, Millis)> {
        let mut locks = Vec::new();
        for (b, broker) in self.brokers.iter().enumerate() {
            if self.broker_up[b] {
                for (q, holder, at) in broker.locks(self.now, GROUP) {
                    locks.push((b, q, holder.to_owned(), at));
                }
            }
        }
        locks
    }

    /// Orderly, at a member's counters: each queue it counts as locked is
    /// locked to it on the broker (but just after a broker crash); each lock
    /// its current incarnation won on a queue it no longer holds is given
    /// back within [`UNLOCK_WITHIN`] (but under faults on its links).
    fn check_locks_of(
        &mut self,
        p: usize,
        stats: &rocketmq_core::consumer::ConsumerStats,
    ) -> Result<(), String> {
        let client_id = self.procs[p].client_id.clone();
        let member = (p, self.procs[p].incarnation);
        for (q, qs) in &stats.queues {
            if !qs.locked {
                continue;
            }
            let granted = self.granted.get(&(member, q.clone())).copied();
            if granted.is_none_or(|at| self.now > at + orderly::LOCK_LIFETIME_MS) {
                return Err(format!(
                    "{} counts {q} as locked with no lock granted in the last {} ms (last at {granted:?} ms)",
                    self.procs[p].name,
                    orderly::LOCK_LIFETIME_MS
                ));
            }
            let Some(b) = self.brokers.iter().position(|b| b.name() == q.broker_name) else {
                continue;
            };
            let owner = self.brokers[b].lock_owner(self.now, GROUP, q);
            if owner != Some(client_id.as_str()) {
                let since = self.now.saturating_sub(orderly::LOCK_LIFETIME_MS + 1_000);
                if !self.orderly.crashed_within(b, since, self.now) {
                    return Err(format!(
                        "{} counts {q} as locked while the broker's lock is {owner:?}",
                        self.procs[p].name
                    ));
                }
            }
        }
        let held: BTreeSet<&MessageQueue> = stats.queues.iter().map(|(q, _)| q).collect();
        let booted = self.procs[p].booted_at;
        let mut still = BTreeSet::new();
        for (b, q, holder, at) in self.live_locks() {
            if holder != client_id || at < booted || held.contains(&q) {
                continue;
            }
            let key = (p, q);
            let since = *self.unowned_locks.entry(key.clone()).or_insert(self.now);
            still.insert(key.clone());
            if since == Millis::MAX || self.now - since <= UNLOCK_WITHIN {
                continue;
            }
            // A fault up to a lock's lifetime on the broker before may have
            // left it: an unlock the member could not route (its route
            // lacked a restarted broker), a lock request that waited for a
            // connection past its deadline.
            if self.troubled_since(p, since.saturating_sub(super::broker::LOCK_EXPIRY_MS)) {
                self.orderly.counters.stale_locks += 1;
                self.unowned_locks.insert(key, Millis::MAX);
                continue;
            }
            return Err(format!(
                "{} still holds the lock of {} on {} (renewed at {at} ms), which it has not held since {since} ms",
                self.procs[p].name,
                key.1,
                self.brokers[b].name()
            ));
        }
        self.unowned_locks
            .retain(|(lp, q), _| *lp != p || still.contains(&(*lp, q.clone())));
        Ok(())
    }

    /// Orderly: once a member's graceful shutdown is done, no broker holds a
    /// lock its incarnation won (but under faults on its links).
    fn check_unlocked_at_shutdown(&mut self, p: usize) -> Result<(), String> {
        if !(self.knobs.orderly && self.procs[p].role == Role::Consumer) {
            return Ok(());
        }
        let proc = &self.procs[p];
        let left: Vec<(usize, MessageQueue)> = self
            .live_locks()
            .into_iter()
            .filter(|(_, _, holder, at)| *holder == proc.client_id && *at >= proc.booted_at)
            .map(|(b, q, _, _)| (b, q))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if self.troubled_since(p, proc.stopping_at.saturating_sub(TROUBLE_SLACK)) {
            self.orderly.counters.stale_locks += left.len() as u64;
            return Ok(());
        }
        let (b, q) = &left[0];
        let line = format!(
            "{} shut down (from {} ms) and still holds the lock of {q} on {} ({} left)",
            proc.name,
            proc.stopping_at,
            self.brokers[*b].name(),
            left.len()
        );
        if self.orderly.settings().strict {
            return Err(line);
        }
        self.orderly.counters.leaked_locks += left.len() as u64;
        self.log(line);
        Ok(())
    }

    /// Orderly, once the group settled: each queue's lock is held by a
    /// running member that holds the queue, or by nobody.
    fn check_locks_settled(&self) -> Result<(), String> {
        if !self.knobs.orderly {
            return Ok(());
        }
        for (b, q, holder, at) in self.live_locks() {
            let owner = self.procs.iter().position(|proc| {
                proc.role == Role::Consumer && proc.client.is_some() && proc.client_id == holder
            });
            let holds =
                owner.is_some_and(|o| self.owners.get(&q).is_some_and(|h| h.contains_key(&o)));
            if !holds {
                return Err(format!(
                    "{}: {q} is locked by {holder} (renewed at {at} ms), which does not hold it, once the group settled",
                    self.brokers[b].name()
                ));
            }
        }
        Ok(())
    }

    /// A member is gone: it holds nothing.
    fn forget_owner(&mut self, p: usize) {
        self.progress.retain(|(_, pp), _| *pp != p);
        for holders in self.owners.values_mut() {
            holders.remove(&p);
        }
    }

    /// Closes every link of process `p` (after a crash or a finished
    /// shutdown): the servers hear of it after the link's latency.
    fn cut_all(&mut self, p: usize) {
        let links: Vec<LinkId> = self.procs[p].conns.values().copied().collect();
        self.procs[p].conns.clear();
        for link in links {
            self.close_link(link, false);
        }
    }

    /// Takes a link down; the server end hears of it after the latency, and
    /// the client end too when `tell_client`.
    fn close_link(&mut self, link: LinkId, tell_client: bool) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.up {
            return;
        }
        l.up = false;
        let at = self.now + l.latency;
        self.schedule(at, Event::ServerClosed(link));
        if tell_client {
            self.schedule(at, Event::ClientClosed(link));
        }
    }

    /// The process and connection at the client end of `link`, if that
    /// process incarnation is still the one that opened it.
    fn client_end(&self, link: LinkId) -> Option<(usize, ConnId)> {
        let l = self.links.get(&link)?;
        let proc = self.procs.get(l.proc)?;
        (proc.incarnation == l.incarnation && proc.client.is_some()).then_some((l.proc, l.conn))
    }

    fn drain_all(&mut self) -> Result<(), String> {
        for p in 0..self.procs.len() {
            self.drain(p)?;
        }
        Ok(())
    }

    /// Carries out everything process `p`'s core asks for.
    fn drain(&mut self, p: usize) -> Result<(), String> {
        if self.procs[p].stalled_until > self.now {
            return Ok(());
        }
        let now = self.instant(self.now);
        loop {
            let Some(client) = self.procs[p].client.as_mut() else {
                return Ok(());
            };
            let Some(output) = client.poll_output(now) else {
                return Ok(());
            };
            self.output(p, output)?;
        }
    }

    fn output(&mut self, p: usize, output: Output) -> Result<(), String> {
        let incarnation = self.procs[p].incarnation;
        match output {
            Output::Connect { conn, addr } => self.connect(p, conn, &addr),
            Output::Transmit { conn, data } => {
                if let Some(&link) = self.procs[p].conns.get(&conn) {
                    self.transmit_to_server(link, data);
                }
            }
            Output::Close(conn) => {
                if let Some(link) = self.procs[p].conns.remove(&conn) {
                    self.close_link(link, false);
                }
            }
            Output::Reply { call, result } => {
                let kind = self.procs[p].calls.remove(&call);
                match (kind, result) {
                    (Some(CallKind::Send(index)), Ok(Reply::Sent(sent))) => {
                        self.acked.insert(index, self.now);
                        self.log(format!(
                            "producer stored {index} at {}@{}",
                            sent.queue, sent.queue_offset
                        ));
                        // A key's next message goes once this one is stored.
                        if let Some(&(key, seq)) = self.keyed.get(&index) {
                            let next = self.chains[key as usize].get(seq as usize + 1).copied();
                            if let Some((producer, next)) = next {
                                let gap = 20 + (index as u64 * 37) % 400;
                                self.schedule(self.now + gap, Event::Send(producer, next));
                            }
                        }
                    }
                    (Some(CallKind::Send(index)), Err(e)) => {
                        self.log(format!("producer send {index} failed: {e}"));
                        // A key's message is sent again until it is stored.
                        if self.keyed.contains_key(&index) {
                            self.schedule(self.now + 1_000, Event::Send(p, index));
                        }
                    }
                    (Some(CallKind::Start), Err(e)) => {
                        return Err(format!("{} failed to start: {e}", self.procs[p].name));
                    }
                    (Some(CallKind::Stats), Ok(Reply::ConsumerStats(stats))) => {
                        if self.procs[p].role == Role::Consumer {
                            self.progress.retain(|(_, pp), _| *pp != p);
                            for (q, qs) in &stats.queues {
                                self.progress
                                    .insert((q.clone(), p), (qs.next_pull_offset, qs.cached_count));
                            }
                            self.note_owner(p, stats.queues.iter().map(|(q, _)| q))?;
                            if self.knobs.orderly {
                                self.check_locks_of(p, &stats)?;
                            }
                        } else if self.is_orderly(p) {
                            let held = stats.queues.iter().map(|(q, _)| q).collect();
                            self.orderly.holds((p, incarnation), &held);
                        }
                        // The caches keep their limits: the count strictly
                        // (the consumer's default global budget is larger
                        // than any of these runs).
                        for (queue, q) in &stats.queues {
                            if q.cached_count > self.knobs.queue_cache {
                                return Err(format!(
                                    "{} caches {} messages of {queue}, over its limit {}",
                                    self.procs[p].name, q.cached_count, self.knobs.queue_cache
                                ));
                            }
                        }
                        // The consumer's own totals are its queues' sums: a
                        // dropped queue's cache is released, not leaked.
                        let (count, bytes) = stats.queues.iter().fold((0, 0), |(c, b), (_, q)| {
                            (c + q.cached_count, b + q.cached_bytes)
                        });
                        if (count, bytes) != (stats.cached_count, stats.cached_bytes) {
                            return Err(format!(
                                "{} counts {} cached messages ({} bytes) while its queues hold {count} ({bytes} bytes)",
                                self.procs[p].name, stats.cached_count, stats.cached_bytes
                            ));
                        }
                    }
                    (Some(CallKind::Shutdown), result) => {
                        let line =
                            format!("{} shut down: {:?}", self.procs[p].name, result.map(|_| ()));
                        self.log(line);
                        // Nothing of it runs any more: its deadlines must be gone
                        // with the consumer's, and its links close.
                        self.procs[p].client = None;
                        self.cut_all(p);
                        self.forget_owner(p);
                        self.check_unlocked_at_shutdown(p)?;
                    }
                    _ => {}
                }
            }
            Output::Deliver(delivery) => self.deliver(p, incarnation, delivery)?,
            Output::Load { path } => {
                let result = Ok(self.procs[p].disk.get(&path).cloned());
                self.schedule(
                    self.now,
                    Event::Feed(p, incarnation, Input::Loaded { path, result }),
                );
            }
            Output::Persist { path, data } => {
                self.procs[p].disk.insert(path.clone(), data);
                self.schedule(
                    self.now,
                    Event::Feed(
                        p,
                        incarnation,
                        Input::Persisted {
                            path,
                            result: Ok(()),
                        },
                    ),
                );
            }
            other => return Err(format!("an output the world does not know: {other:?}")),
        }
        Ok(())
    }

    fn connect(&mut self, p: usize, conn: ConnId, addr: &str) {
        let server = if addr == NS_ADDR {
            Some(Server::NameServer)
        } else {
            self.brokers
                .iter()
                .position(|b| b.addr() == addr)
                .map(Server::Broker)
        };
        let incarnation = self.procs[p].incarnation;
        let latency = if self.knobs.slow_links && self.net.chance(1, 2) {
            self.net.between(20, 300)
        } else {
            self.net.between(1, 5)
        };
        let reachable = match server {
            Some(Server::NameServer) => true,
            Some(Server::Broker(b)) => self.broker_up[b],
            None => false,
        };
        let name = self.procs[p].name.clone();
        let Some(server) = server.filter(|_| reachable) else {
            self.log(format!("{name} cannot reach {addr}"));
            self.schedule(
                self.now + 2 * latency,
                Event::ConnectFailed(p, incarnation, conn),
            );
            return;
        };
        self.next_link += 1;
        let link = LinkId(self.next_link);
        self.links.insert(
            link,
            Link {
                proc: p,
                incarnation,
                conn,
                server,
                up: true,
                latency,
                to_server_at: self.now,
                to_client_at: self.now,
                clogged_until: 0,
                decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_LEN),
            },
        );
        self.procs[p].conns.insert(conn, link);
        self.log(format!("{name} {conn} -> {addr} as {link}"));
        self.schedule(self.now + 2 * latency, Event::Connected(link));
    }

    /// Bytes from a client to its server, in order, sometimes split in two.
    fn transmit_to_server(&mut self, link: LinkId, data: Bytes) {
        let _ = self.carry(link, true, data);
    }

    /// Puts bytes on a link, toward its server or its client: they arrive
    /// after the link's latency, after what went before them the same way,
    /// and not before a clog clears; now and then split in two.
    /// When they arrive is returned (`None`: the link is down).
    fn carry(&mut self, link: LinkId, to_server: bool, data: Bytes) -> Option<Millis> {
        let l = self.links.get_mut(&link)?;
        if !l.up {
            return None;
        }
        let last = if to_server {
            &mut l.to_server_at
        } else {
            &mut l.to_client_at
        };
        let at = (self.now + l.latency).max(*last).max(l.clogged_until);
        *last = at;
        let event = |data: Bytes| {
            if to_server {
                Event::ToServer(link, data)
            } else {
                Event::ToClient(link, BytesMut::from(&data[..]))
            }
        };
        if data.len() > 1 && self.net.chance(1, 4) {
            let cut = self.net.between(1, data.len() as u64 - 1) as usize;
            self.schedule(at, event(data.slice(..cut)));
            self.schedule(at, event(data.slice(cut..)));
        } else {
            self.schedule(at, event(data));
        }
        Some(at)
    }

    /// Bytes arrive at a server: whole frames go to it, its answers go back.
    fn arrive_at_server(&mut self, link: LinkId, data: &[u8]) -> Result<(), String> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        if !l.up {
            return Ok(());
        }
        l.decoder.push(data);
        let server = l.server;
        let proc = l.proc;
        let member = (l.proc, l.incarnation);
        let latency = l.latency;
        let mut commands = Vec::new();
        let mut malformed = None;
        loop {
            match l.decoder.next_frame() {
                Ok(Some(frame)) => match RemotingCommand::decode(frame) {
                    Ok(cmd) => commands.push(cmd),
                    Err(e) => {
                        malformed = Some(e.to_string());
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    malformed = Some(e.to_string());
                    break;
                }
            }
        }
        for cmd in commands {
            let what = if cmd.is_response() {
                format!("response {:?}", cmd.response_code())
            } else {
                format!("{:?}", cmd.request_code())
            };
            self.log(format!("{link} > {server:?} {what}"));
            if let (Server::Broker(b), false) = (server, cmd.is_response()) {
                self.watch_offsets(b, proc, &cmd);
            }
            let locking = match (server, cmd.is_response()) {
                (Server::Broker(b), false) => self.watch_orderly(b, member, latency, &cmd)?,
                _ => None,
            };
            if let (Server::Broker(b), RequestCode::CONSUMER_SEND_MSG_BACK) =
                (server, cmd.request_code())
            {
                if self.net.chance(1, self.knobs.send_back_fails_one_in) {
                    let refused = RemotingCommand::response(
                        ResponseCode::SYSTEM_ERROR,
                        cmd.opaque,
                        Some("send-back refused by the simulation".into()),
                    );
                    self.server_out(vec![(link, refused)]);
                    continue;
                }
                if let Ok(h) = cmd.header::<ConsumerSendMsgBackRequestHeader>() {
                    self.sending_back.insert((link, cmd.opaque), (b, h.offset));
                }
            }
            match server {
                Server::NameServer => {
                    let brokers: Vec<&SimBroker> = self
                        .brokers
                        .iter()
                        .enumerate()
                        .filter(|(b, _)| self.broker_up[*b])
                        .map(|(_, b)| b)
                        .collect();
                    if let Some(answer) = self.namesrv.handle(self.now, cmd, &brokers) {
                        self.server_out(vec![(link, answer)]);
                    }
                }
                Server::Broker(b) => {
                    if self.broker_up[b] {
                        let mut out = Vec::new();
                        self.brokers[b].handle(self.now, link, cmd, &mut out);
                        if let Some((body, before)) = locking {
                            self.count_locks(b, member, &body, &before);
                        }
                        self.server_out(out);
                    }
                }
            }
        }
        if let Some(e) = malformed {
            self.log(format!("{link} malformed: {e}"));
            self.close_link(link, true);
        }
        Ok(())
    }

    /// What a member asks of a broker about orderly consumption: lock
    /// requests (only orderly clustering members lock; their holders before
    /// the broker answers are returned, to count grants), unlocks, offset
    /// queries (a new tenure, which an orderly member begins only under its
    /// lock), and DLQ send-backs.
    #[allow(clippy::type_complexity)]
    fn watch_orderly(
        &mut self,
        b: usize,
        member: Member,
        latency: Millis,
        cmd: &RemotingCommand,
    ) -> Result<Option<(LockBatchRequestBody, Vec<Option<String>>)>, String> {
        let p = member.0;
        let name = &self.procs[p].name;
        let orderly_member = self.procs[p].role == Role::Consumer && self.knobs.orderly;
        match cmd.request_code() {
            RequestCode::LOCK_BATCH_MQ | RequestCode::UNLOCK_BATCH_MQ => {
                let Ok(body) = LockBatchRequestBody::decode(&cmd.body) else {
                    return Ok(None);
                };
                if body.consumer_group != GROUP || !self.knobs.orderly {
                    return Err(format!(
                        "{name} sent {:?} for group {} (only orderly clustering members lock)",
                        cmd.request_code(),
                        body.consumer_group
                    ));
                }
                if cmd.request_code() == RequestCode::UNLOCK_BATCH_MQ {
                    self.orderly.counters.unlocks += 1;
                    let queues: Vec<String> = body.mq_set.iter().map(short_queue).collect();
                    self.log(format!(
                        "{} unlock {queues:?} for {}",
                        self.brokers[b].name(),
                        body.client_id
                    ));
                    let sent = self.now.saturating_sub(latency);
                    self.check_written_before_unlock(b, member, sent, &body)?;
                    return Ok(None);
                }
                let before = body
                    .mq_set
                    .iter()
                    .map(|q| {
                        self.brokers[b]
                            .lock_owner(self.now, GROUP, q)
                            .map(str::to_owned)
                    })
                    .collect();
                Ok(Some((body, before)))
            }
            RequestCode::QUERY_CONSUMER_OFFSET if orderly_member => {
                let Ok(h) = cmd.header::<QueryConsumerOffsetRequestHeader>() else {
                    return Ok(None);
                };
                let queue = MessageQueue::new(&h.topic, self.brokers[b].name(), h.queue_id);
                let owner = self.brokers[b].lock_owner(self.now, GROUP, &queue);
                if owner != Some(self.procs[p].client_id.as_str()) {
                    let since = self.now.saturating_sub(orderly::LOCK_LIFETIME_MS + 1_000);
                    if !self.orderly.crashed_within(b, since, self.now) {
                        return Err(format!(
                            "{name} read the offset of {queue} while the broker's lock is {owner:?}, not its own"
                        ));
                    }
                }
                self.orderly.offset_queried(member, &queue);
                Ok(None)
            }
            RequestCode::UPDATE_CONSUMER_OFFSET if orderly_member => {
                let Ok(h) = cmd.header::<UpdateConsumerOffsetRequestHeader>() else {
                    return Ok(None);
                };
                let queue = MessageQueue::new(&h.topic, self.brokers[b].name(), h.queue_id);
                let owner = self.brokers[b].lock_owner(self.now, GROUP, &queue);
                // Just after a broker crash, a member may still count a lock
                // the broker lost and another member won since.
                let since = self.now.saturating_sub(orderly::LOCK_LIFETIME_MS + 1_000);
                let lost = self.orderly.crashed_within(b, since, self.now);
                // An admin reset's offset, which a member writes when it reads
                // the reset, however late.
                let reset = self.reset_to.get(&queue) == Some(&h.commit_offset);
                if owner.is_some_and(|o| o != self.procs[p].client_id) && !lost && !reset {
                    let line = format!(
                        "{name} wrote offset {} of {queue} while {} holds its lock",
                        h.commit_offset,
                        owner.unwrap_or("?")
                    );
                    if self.orderly.settings().strict {
                        return Err(line);
                    }
                    self.orderly.counters.foreign_writes += 1;
                    self.log(line);
                }
                self.own_writes.insert((member, queue), h.commit_offset);
                Ok(None)
            }
            RequestCode::CONSUMER_SEND_MSG_BACK if orderly_member => {
                let Ok(h) = cmd.header::<ConsumerSendMsgBackRequestHeader>() else {
                    return Ok(None);
                };
                let name = name.clone();
                self.orderly
                    .dlq_sent(member, &name, b, h.offset, h.delay_level)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// An unlock reaches broker `b`: each queue the member holds there must
    /// have its offset written past everything the member consumed in its
    /// tenure, so that the next holder starts where it stopped (but when the
    /// write may have been lost: faults on the member's links).
    fn check_written_before_unlock(
        &mut self,
        b: usize,
        member: Member,
        sent: Millis,
        body: &LockBatchRequestBody,
    ) -> Result<(), String> {
        let p = member.0;
        for q in &body.mq_set {
            if self.brokers[b].lock_owner(self.now, GROUP, q) != Some(body.client_id.as_str()) {
                continue;
            }
            // What the member had surely consumed when it sent the unlock.
            let Some(done) = self.orderly.consumed_to(member, q, sent) else {
                continue;
            };
            let written = self.own_writes.get(&(member, q.clone())).copied();
            if written.unwrap_or(-1) >= done {
                continue;
            }
            let committed = self.brokers[b].committed(GROUP, &q.topic, q.queue_id);
            if self.troubled_since(p, self.now.saturating_sub(TROUBLE_SLACK)) {
                self.orderly.counters.stale_locks += 1;
                continue;
            }
            let writes: Vec<(Millis, i64)> = self.brokers[b]
                .offset_writes()
                .iter()
                .filter(|w| w.group == GROUP && w.topic == q.topic && w.queue_id == q.queue_id)
                .map(|w| (w.at, w.offset))
                .collect();
            return Err(format!(
                "{} unlocked {q} having written its offset as {written:?} (now {committed:?} on {}), though it had consumed everything below {done} (writes: {:?})",
                self.procs[p].name,
                self.brokers[b].name(),
                &writes[writes.len().saturating_sub(8)..]
            ));
        }
        Ok(())
    }

    /// Counts what broker `b` made of a lock request: queues won anew,
    /// renewed, or refused.
    fn count_locks(
        &mut self,
        b: usize,
        member: Member,
        body: &LockBatchRequestBody,
        before: &[Option<String>],
    ) {
        let (mut won, mut renewed, mut refused) = (Vec::new(), Vec::new(), Vec::new());
        for (q, before) in body.mq_set.iter().zip(before) {
            let after = self.brokers[b].lock_owner(self.now, GROUP, q);
            let c = &mut self.orderly.counters;
            match after {
                Some(holder) if holder == body.client_id => {
                    self.granted.insert((member, q.clone()), self.now);
                    if before.as_deref() == Some(holder) {
                        c.lock_renewals += 1;
                        renewed.push(short_queue(q));
                    } else {
                        c.lock_grants += 1;
                        won.push(short_queue(q));
                    }
                }
                _ => {
                    c.lock_refusals += 1;
                    refused.push(short_queue(q));
                }
            }
        }
        self.log(format!(
            "{} lock for {}: won {won:?} renewed {renewed:?} refused {refused:?}",
            self.brokers[b].name(),
            body.client_id
        ));
    }

    /// What a member asks of a broker about its offsets: its pulls (with
    /// their piggy-backed commits), offset writes, and offset queries (each
    /// of which starts a new tenure of the queue). Within a tenure, a
    /// member's committed offset never moves backwards, unless the broker
    /// reset or moved it.
    fn watch_offsets(&mut self, b: usize, proc: usize, cmd: &RemotingCommand) {
        let (topic, queue, commit) = match cmd.request_code() {
            RequestCode::PULL_MESSAGE => {
                let Ok(h) = cmd.header::<PullMessageRequestHeader>() else {
                    return;
                };
                if h.consumer_group != GROUP {
                    return;
                }
                self.pulls
                    .entry((b, h.topic.clone(), h.queue_id))
                    .or_default()
                    .push((self.now, proc));
                let commit =
                    (h.sys_flag & pull_flag::COMMIT_OFFSET != 0).then_some(h.commit_offset);
                (h.topic, h.queue_id, commit)
            }
            RequestCode::UPDATE_CONSUMER_OFFSET => {
                let Ok(h) = cmd.header::<UpdateConsumerOffsetRequestHeader>() else {
                    return;
                };
                if h.consumer_group != GROUP {
                    return;
                }
                (h.topic, h.queue_id, Some(h.commit_offset))
            }
            RequestCode::QUERY_CONSUMER_OFFSET => {
                if let Ok(h) = cmd.header::<QueryConsumerOffsetRequestHeader>() {
                    self.tenures.remove(&(proc, b, h.topic, h.queue_id));
                }
                return;
            }
            _ => return,
        };
        let Some(commit) = commit else {
            return;
        };
        let key = (proc, b, topic, queue);
        let last = self.tenures.entry(key.clone()).or_insert(commit);
        if commit < *last
            && !self.moved.contains(&(b, key.2.clone(), key.3))
            && self.violation.is_none()
        {
            self.violation = Some(format!(
                "{} committed {}#{} on {} back from {} to {commit} at {} ms within one tenure",
                self.procs[proc].name,
                key.2,
                key.3,
                self.brokers[b].name(),
                *last,
                self.now
            ));
        }
        *last = (*last).max(commit);
    }

    /// Server answers and requests, each on its link, in order.
    fn server_out(&mut self, out: Vec<(LinkId, RemotingCommand)>) {
        for (link, cmd) in out {
            let Ok(frame) = cmd.to_frame(SerializeType::Json) else {
                self.log(format!("{link} < cannot encode {:?}", cmd.request_code()));
                continue;
            };
            let Some(l) = self.links.get(&link).filter(|l| l.up) else {
                continue;
            };
            if cmd.is_response() && cmd.response_code() == ResponseCode::PULL_OFFSET_MOVED {
                // The broker moved one of this member's offsets there: its
                // commits on that broker start over.
                if let Server::Broker(b) = l.server {
                    let proc = l.proc;
                    self.tenures
                        .retain(|(p, tb, _, _), _| !(*p == proc && *tb == b));
                }
            }
            let member = (l.proc, l.incarnation);
            let mut acked = None;
            if cmd.is_response() {
                if let Some(message) = self.sending_back.remove(&(link, cmd.opaque)) {
                    if cmd.response_code() == ResponseCode::SUCCESS {
                        self.sent_back.entry(message).or_insert(self.now);
                        acked = Some(message);
                    }
                }
            }
            let what = if cmd.is_response() {
                format!("{:?}", cmd.response_code())
            } else {
                format!("request {:?}", cmd.request_code())
            };
            self.log(format!("{link} < {what}"));
            let Some(at) = self.carry(link, false, frame) else {
                continue;
            };
            if self.is_orderly(member.0) {
                self.orderly_news(member, link, &cmd, acked, at);
            }
        }
    }

    /// What an orderly member hears from a broker that the checks must
    /// know, and when it hears it: a DLQ send-back acknowledged, an offset
    /// reset, an offset moved.
    fn orderly_news(
        &mut self,
        member: Member,
        link: LinkId,
        cmd: &RemotingCommand,
        acked: Option<(usize, i64)>,
        at: Millis,
    ) {
        let Some(Server::Broker(b)) = self.links.get(&link).map(|l| l.server) else {
            return;
        };
        if let Some((ab, commit)) = acked {
            if self.procs[member.0].role == Role::Consumer {
                self.orderly.dlq_acked(member, ab, commit, at);
            }
        }
        // An offset reset or move takes effect when the member reads it:
        // just after its bytes arrive (no delivery of those queues can come
        // between, their caches being emptied).
        if cmd.is_response() && cmd.response_code() == ResponseCode::PULL_OFFSET_MOVED {
            let name = self.brokers[b].name().to_owned();
            let scope = ResetScope::Broker(name);
            self.schedule(at, Event::OffsetsReset(member, link, scope));
        }
        if !cmd.is_response() && cmd.request_code() == RequestCode::RESET_CONSUMER_CLIENT_OFFSET {
            if let Ok(body) = ResetOffsetBody::decode(&cmd.body) {
                let queues = body.offset_table.into_keys().collect();
                let scope = ResetScope::Queues(queues);
                self.schedule(at, Event::OffsetsReset(member, link, scope));
            }
        }
    }

    /// Whether process `p` consumes orderly.
    fn is_orderly(&self, p: usize) -> bool {
        match self.procs[p].role {
            Role::Producer => false,
            Role::Consumer => self.knobs.orderly,
            Role::Broadcaster => self.knobs.orderly_broadcast,
        }
    }

    /// A listener call: its outcome and duration drawn from the seed. An
    /// orderly one is checked first.
    fn deliver(&mut self, p: usize, incarnation: u64, delivery: Delivery) -> Result<(), String> {
        let messages: Vec<(usize, i32)> = delivery
            .messages
            .iter()
            .map(|m| {
                let index = m
                    .property("index")
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(usize::MAX);
                (index, m.reconsume_times)
            })
            .collect();
        let queue = (
            delivery.context.queue.broker_name.clone(),
            delivery.context.queue.topic.clone(),
            delivery.context.queue.queue_id,
        );
        let offsets: Vec<i64> = delivery.messages.iter().map(|m| m.queue_offset).collect();
        let ticket = delivery.ticket;
        let name = self.procs[p].name.clone();
        self.log(format!(
            "{name} deliver {ticket} {}#{} {messages:?} @{offsets:?}",
            delivery.context.queue, delivery.context.reconsume_times
        ));
        let (took, result, how) = if self.is_orderly(p) {
            self.check_orderly_delivery(p, incarnation, &delivery)?;
            self.orderly_listener(delivery.context.reconsume_times)
        } else {
            let r = &mut self.listen;
            let fail = r.chance(1, self.knobs.fail_one_in);
            let took = if r.chance(1, self.knobs.slow_one_in) {
                r.between(1_000, 5_000)
            } else {
                r.below(20)
            };
            let result = if fail {
                ConsumeResult::RETRY
            } else {
                ConsumeResult::Success
            };
            (took, Verdict::Concurrent(result), "")
        };
        if !how.is_empty() {
            self.log(format!("{name}'s listener of {ticket}{how}"));
        }
        self.calls.insert(
            (p, incarnation, ticket),
            Call1 {
                messages,
                queue,
                offsets,
                done_at: None,
                success: false,
            },
        );
        self.schedule(
            self.now + took,
            Event::ConsumeDone {
                proc: p,
                incarnation,
                ticket,
                result,
            },
        );
        Ok(())
    }

    /// An orderly listener: how long it runs, what it answers, and a note
    /// for the trace. It suspends a fresh batch now and then, and one it
    /// suspended before (its reconsume count says how often) half the time,
    /// never more than [`Knobs::suspend_streak`] times in a row; sometimes it
    /// names a delay (out of bounds too), sometimes it panics (read as a
    /// suspension), sometimes it answers as a concurrent listener would. Now
    /// and then, before the calm, it outlives a lock.
    fn orderly_listener(&mut self, reconsume: i32) -> (Millis, Verdict, &'static str) {
        let k = &self.knobs;
        let r = &mut self.listen;
        let fail = reconsume < k.suspend_streak
            && if reconsume > 0 {
                r.chance(1, 2)
            } else {
                r.chance(1, k.fail_one_in)
            };
        let took = if self.now < CALM_AFTER && r.chance(1, k.very_slow_one_in) {
            r.between(15_000, 45_000)
        } else if r.chance(1, k.slow_one_in) {
            r.between(1_000, 5_000)
        } else {
            r.below(20)
        };
        let (result, how) = if fail {
            match r.below(6) {
                0 | 1 => (Verdict::Orderly(OrderlyResult::SUSPEND), ""),
                2 | 3 => {
                    let delay = match r.below(8) {
                        0 => 0,
                        1 => 40_000,
                        _ => r.between(10, 3_000),
                    };
                    let delay = Duration::from_millis(delay);
                    (Verdict::Orderly(OrderlyResult::suspend_for(delay)), "")
                }
                4 => (Verdict::Orderly(OrderlyResult::SUSPEND), " (panics)"),
                _ => (Verdict::Concurrent(ConsumeResult::RETRY), ""),
            }
        } else if r.chance(1, 8) {
            (Verdict::Concurrent(ConsumeResult::Success), "")
        } else {
            (Verdict::Orderly(OrderlyResult::Success), "")
        };
        (took, result, how)
    }

    /// The orderly checks of a delivery (see [`OrderlyCheck::delivered`]),
    /// with the broker's lock table as it is now.
    fn check_orderly_delivery(
        &mut self,
        p: usize,
        incarnation: u64,
        delivery: &Delivery,
    ) -> Result<(), String> {
        let queue = &delivery.context.queue;
        let broker = self
            .brokers
            .iter()
            .position(|b| b.name() == queue.broker_name)
            .ok_or_else(|| format!("a delivery from an unknown broker: {queue}"))?;
        let clustering = self.procs[p].role == Role::Consumer;
        let lock_owner = self.brokers[broker]
            .lock_owner(self.now, GROUP, queue)
            .map(str::to_owned);
        let messages = delivery
            .messages
            .iter()
            .map(|m| {
                let key = m
                    .property("index")
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| self.keyed.get(&i).copied());
                (m.queue_offset, m.reconsume_times, m.commit_log_offset, key)
            })
            .collect();
        let lock_granted = self
            .granted
            .get(&((p, incarnation), queue.clone()))
            .copied();
        let proc = &self.procs[p];
        self.orderly.delivered(Delivered {
            member: (p, incarnation),
            name: &proc.name,
            clustering,
            queue,
            broker,
            ticket: delivery.ticket,
            messages,
            client_id: &proc.client_id,
            lock_owner: lock_owner.as_deref(),
            lock_granted,
            now: self.now,
        })
    }

    /// Indexes of the messages stored in [`TOPIC`] on every broker.
    fn stored_indexes(&self) -> BTreeSet<usize> {
        let mut stored = BTreeSet::new();
        for (b, broker) in self.brokers.iter().enumerate() {
            for q in 0..self.queues_of(b) {
                for m in broker.log(TOPIC, q) {
                    if let Some(i) = m.property("index").and_then(|i| i.parse().ok()) {
                        stored.insert(i);
                    }
                }
            }
        }
        stored
    }

    /// The listener calls of [`GROUP`]'s members that succeeded.
    fn clustering_successes(&self) -> impl Iterator<Item = &Call1> {
        self.calls
            .iter()
            .filter(|((p, _, _), c)| {
                self.procs[*p].role == Role::Consumer && c.success && c.done_at.is_some()
            })
            .map(|(_, c)| c)
    }

    /// Indexes some listener call of [`GROUP`] consumed successfully (and
    /// reported so).
    fn consumed_indexes(&self) -> BTreeSet<usize> {
        self.clustering_successes()
            .flat_map(|c| c.messages.iter().map(|(i, _)| *i))
            .collect()
    }

    /// Indexes in the group's DLQ.
    fn dead_indexes(&self) -> BTreeSet<usize> {
        let dlq = format!("%DLQ%{GROUP}");
        let mut dead = BTreeSet::new();
        for broker in &self.brokers {
            for m in broker.log(&dlq, 0) {
                if let Some(i) = m.property("index").and_then(|i| i.parse().ok()) {
                    dead.insert(i);
                }
            }
        }
        dead
    }

    /// The checks at the end of a run (the safety ones over its whole
    /// history).
    fn check(&mut self) -> Result<(), String> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        // Every acknowledged send is stored.
        let stored = self.stored_indexes();
        if let Some((i, _)) = self.acked.iter().find(|(i, _)| !stored.contains(i)) {
            return Err(format!("message {i} was acknowledged but is not stored"));
        }
        // No loss: every stored message consumed successfully or dead.
        let consumed = self.consumed_indexes();
        let dead = self.dead_indexes();
        let lost: Vec<usize> = stored
            .iter()
            .filter(|i| !consumed.contains(i) && !dead.contains(i))
            .copied()
            .collect();
        if !lost.is_empty() {
            return Err(format!("lost: {lost:?}"));
        }
        if let Some((member, i)) = self.unseen_by_broadcasters(&stored) {
            return Err(format!(
                "broadcasting member {member} never got message {i}"
            ));
        }
        // A broadcasting group keeps its offsets in its members' files: the
        // brokers hold none of it.
        for broker in &self.brokers {
            if let Some(w) = broker
                .offset_writes()
                .iter()
                .find(|w| w.group == BROADCAST_GROUP)
            {
                return Err(format!(
                    "{}: the broadcasting group wrote offset {} for {}#{} at {} ms",
                    broker.name(),
                    w.offset,
                    w.topic,
                    w.queue_id,
                    w.at
                ));
            }
        }
        // Offsets: no committed offset passes a message that was neither
        // consumed successfully nor sent back, at the time it was written.
        self.check_offsets()?;
        // Bounded duplicates: none unless the queues changed hands.
        let duplicates = self.duplicates();
        if duplicates > 0 && !self.knobs.allows_duplicates() {
            return Err(format!(
                "{duplicates} duplicates with one consumer that never left"
            ));
        }
        // Converged: after the final shutdowns, every queue's committed
        // offset is its end.
        for (b, broker) in self.brokers.iter().enumerate() {
            for q in 0..self.queues_of(b) {
                let end = broker.log(TOPIC, q).len() as i64;
                let committed = broker.committed(GROUP, TOPIC, q);
                if end > 0 && committed != Some(end) {
                    return Err(format!(
                        "{}: queue {q} ends at {end} but the group committed {committed:?}",
                        broker.name()
                    ));
                }
            }
        }
        Ok(())
    }

    fn duplicates(&self) -> usize {
        let mut times: BTreeMap<usize, usize> = BTreeMap::new();
        for c in self.clustering_successes() {
            for (i, _) in &c.messages {
                *times.entry(*i).or_default() += 1;
            }
        }
        times.values().map(|n| n - 1).sum()
    }

    /// Every offset write of the group, checked against what was finished
    /// when it arrived: each message below the written offset must have been
    /// consumed successfully (from that queue: a local retry counts, a copy's
    /// success elsewhere does not), or acknowledged by the broker as sent
    /// back.
    fn check_offsets(&self) -> Result<(), String> {
        // (broker name, topic, queue id, offset) -> when it was finished.
        type Key = (String, String, i32, i64);
        let mut finished: BTreeMap<Key, Millis> = BTreeMap::new();
        let mut note = |key: Key, at: Millis| {
            let e = finished.entry(key).or_insert(at);
            *e = (*e).min(at);
        };
        for c in self.clustering_successes() {
            if let Some(at) = c.done_at {
                for offset in &c.offsets {
                    let (broker, topic, queue) = &c.queue;
                    note((broker.clone(), topic.clone(), *queue, *offset), at);
                }
            }
        }
        for (b, broker) in self.brokers.iter().enumerate() {
            for (topic, queues) in broker.topics() {
                if topic != TOPIC && !topic.starts_with("%RETRY%") {
                    continue;
                }
                for q in 0..queues as i32 {
                    for m in broker.log(&topic, q) {
                        if let Some(at) = self.sent_back.get(&(b, m.commit_log_offset)) {
                            let key = (broker.name().to_owned(), topic.clone(), q, m.queue_offset);
                            note(key, *at);
                        }
                    }
                }
            }
        }
        for broker in &self.brokers {
            for w in broker.offset_writes() {
                if w.group != GROUP {
                    continue;
                }
                let log = broker.log(&w.topic, w.queue_id);
                for m in log.iter().take_while(|m| m.queue_offset < w.offset) {
                    let key = (
                        broker.name().to_owned(),
                        w.topic.clone(),
                        w.queue_id,
                        m.queue_offset,
                    );
                    if finished.get(&key).is_none_or(|at| *at > w.at) {
                        let index = m.property("index").unwrap_or("?");
                        return Err(format!(
                            "{}: offset {} written for {}#{} at {} ms passes message {index} (offset {}, reconsume {}), unfinished then (finished at {:?})",
                            broker.name(),
                            w.offset,
                            w.topic,
                            w.queue_id,
                            w.at,
                            m.queue_offset,
                            m.reconsume_times,
                            finished.get(&key)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn outcome(&self, digest: u64) -> Outcome {
        let consumed = self
            .calls
            .values()
            .filter(|c| c.success && c.done_at.is_some())
            .map(|c| c.messages.len())
            .sum();
        Outcome {
            seed: self.seed,
            knobs: self.knobs.clone(),
            trace: self.trace.clone(),
            digest,
            stored: self.stored_indexes().len(),
            consumed,
            duplicates: self.duplicates(),
            dead: self.dead_indexes().len(),
            virtual_ms: self.now,
            max_overlap_ms: self.max_overlap,
            events: self.handled,
            orderly: self.orderly.counters,
            keyed: self.keyed.len(),
        }
    }
}
