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
use rocketmq_core::consumer::{ConsumeResult, ConsumerConfig, Delivery, Selector, Ticket};
use rocketmq_core::protocol::code::{RequestCode, ResponseCode};
use rocketmq_core::protocol::command::RemotingCommand;
use rocketmq_core::protocol::frame::{FrameDecoder, SerializeType, DEFAULT_MAX_FRAME_LEN};
use rocketmq_core::protocol::header::{
    pull_flag, ConsumerSendMsgBackRequestHeader, PullMessageRequestHeader,
    QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use rocketmq_core::protocol::message::Message;
use rocketmq_core::{
    Call, CallId, Client, ClientConfig, ConnId, Input, Output, QueueSelector, Reply,
};

use super::broker::SimBroker;
use super::namesrv::SimNameServer;
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
        }
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

/// Runs `seed` and judges it.
pub fn run(seed: u64) -> Result<Outcome, Box<Failure>> {
    let knobs = Knobs::draw(seed);
    let mut world = World::new(seed, knobs);
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
        result: ConsumeResult,
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
}

impl World {
    fn new(seed: u64, knobs: Knobs) -> Self {
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
        let consumed = self.consumed_indexes();
        let dead = self.dead_indexes();
        let stored = self.stored_indexes();
        stored
            .iter()
            .all(|i| consumed.contains(i) || dead.contains(i))
            && self.unseen_by_broadcasters(&stored).is_none()
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
        text
    }

    fn next_instant(&self) -> Option<Millis> {
        let mut next = self.events.keys().next().map(|(t, _)| *t);
        let mut see = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        for proc in &self.procs {
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
            let due = self.procs[p]
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
        let now = self.instant(self.now);
        match event {
            Event::ToServer(link, data) => self.arrive_at_server(link, &data),
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
                    call.success = result == ConsumeResult::Success;
                }
                let line = format!("{} done {ticket} {result:?}", self.procs[proc].name);
                if self.procs[proc].incarnation == incarnation {
                    if let Some(client) = self.procs[proc].client.as_mut() {
                        client.handle_input(now, Input::Consumed { ticket, result });
                    }
                }
                self.log(line);
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
                let message = Message::new(TOPIC, format!("message {index}"))
                    .with_tags(format!("Tag{}", index % 3))
                    .with_property("index", index.to_string());
                let call = Call::Send {
                    group: "SimProducer".into(),
                    message,
                    selector: QueueSelector::RoundRobin,
                };
                self.call(p, call, CallKind::Send(index));
                self.log(format!("producer sends {index}"));
            }
            Event::StartConsumer(p) => {
                if self.procs[p].client.is_some() {
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
                        for q in queues.keys() {
                            self.moved.insert((b, q.topic.clone(), q.queue_id));
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
                    self.log(format!("clog {link} for {length} ms"));
                }
            }
            Event::BrokerCrash(b) => {
                self.log(format!("{} crashes", self.brokers[b].name()));
                self.broker_up[b] = false;
                self.brokers[b].crash();
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
            }
            Event::Probe => {
                for p in 0..self.procs.len() {
                    let Some(group) = self.procs[p].role.group() else {
                        continue;
                    };
                    if !self.procs[p].stopping {
                        let group = group.to_owned();
                        self.call(p, Call::ConsumerStats { group }, CallKind::Stats);
                    }
                }
            }
            Event::Crash(p) => {
                if self.procs[p].client.take().is_some() {
                    let line = format!("{} crashes", self.procs[p].name);
                    self.log(line);
                    self.cut_all(p);
                    self.forget_owner(p);
                }
            }
        }
        Ok(())
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
                let limit = if self.knobs.broker_crash || self.knobs.clogs {
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

    /// A member is gone: it holds nothing.
    fn forget_owner(&mut self, p: usize) {
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
                    }
                    (Some(CallKind::Send(index)), Err(e)) => {
                        self.log(format!("producer send {index} failed: {e}"));
                    }
                    (Some(CallKind::Start), Err(e)) => {
                        return Err(format!("{} failed to start: {e}", self.procs[p].name));
                    }
                    (Some(CallKind::Stats), Ok(Reply::ConsumerStats(stats))) => {
                        if self.procs[p].role == Role::Consumer {
                            self.note_owner(p, stats.queues.iter().map(|(q, _)| q))?;
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
                    }
                    _ => {}
                }
            }
            Output::Deliver(delivery) => self.deliver(p, incarnation, delivery),
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
        self.carry(link, true, data);
    }

    /// Puts bytes on a link, toward its server or its client: they arrive
    /// after the link's latency, after what went before them the same way,
    /// and not before a clog clears; now and then split in two.
    fn carry(&mut self, link: LinkId, to_server: bool, data: Bytes) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.up {
            return;
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
    }

    /// Bytes arrive at a server: whole frames go to it, its answers go back.
    fn arrive_at_server(&mut self, link: LinkId, data: &[u8]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.up {
            return;
        }
        l.decoder.push(data);
        let server = l.server;
        let proc = l.proc;
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
                        self.server_out(out);
                    }
                }
            }
        }
        if let Some(e) = malformed {
            self.log(format!("{link} malformed: {e}"));
            self.close_link(link, true);
        }
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
            if cmd.is_response() {
                if let Some(message) = self.sending_back.remove(&(link, cmd.opaque)) {
                    if cmd.response_code() == ResponseCode::SUCCESS {
                        self.sent_back.entry(message).or_insert(self.now);
                    }
                }
            }
            let what = if cmd.is_response() {
                format!("{:?}", cmd.response_code())
            } else {
                format!("request {:?}", cmd.request_code())
            };
            self.log(format!("{link} < {what}"));
            self.carry(link, false, frame);
        }
    }

    /// A listener call: its outcome and duration drawn from the seed.
    fn deliver(&mut self, p: usize, incarnation: u64, delivery: Delivery) {
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
        let offsets = delivery.messages.iter().map(|m| m.queue_offset).collect();
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
        let ticket = delivery.ticket;
        let name = self.procs[p].name.clone();
        self.log(format!(
            "{name} deliver {ticket} {}#{} {messages:?}",
            delivery.context.queue, delivery.context.reconsume_times
        ));
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
        }
    }
}
