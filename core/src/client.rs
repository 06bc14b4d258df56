//! The client state machine: connections, request correlation, routes, and the
//! calls a user makes (route query, send, pull).
//!
//! # Driving it
//!
//! An adapter owns one [`Client`] and runs one loop:
//!
//! 1. wait for the earliest of: bytes on a connection, a connection opening or
//!    closing, a user call, or the instant [`Client::poll_timeout`] returned;
//! 2. feed what happened in with [`Client::handle_input`] (time passing is
//!    [`Input::Timeout`]) or start a call with [`Client::call`];
//! 3. drain [`Client::poll_output`] until it returns `None`, acting on each
//!    [`Output`]: connect, transmit, close, or complete a call.
//!
//! The core never reads a clock: every method takes `now`, and the wall-clock time
//! the protocol needs (born timestamps, message ids) is derived from the one the
//! adapter gave at construction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use core::net::{IpAddr, Ipv4Addr};
use tracing::{debug, trace, warn};

use crate::connection::{ConnId, Connections, Route};
use crate::consumer::{
    ConsumeResult, ConsumerConfig, ConsumerStats, Delivery, OrderlyResult, Selector, Ticket,
};
use crate::error::ClientError;
use crate::producer::{self, retryable, QueueSelector, Selection};
use crate::protocol::body::{HeartbeatData, ProducerData, TopicRouteData};
use crate::protocol::code::{LanguageCode, RequestCode, ResponseCode};
use crate::protocol::command::{RemotingCommand, CLIENT_VERSION};
use crate::protocol::compress::CompressionType;
use crate::protocol::frame::{SerializeType, DEFAULT_MAX_FRAME_LEN};
use crate::protocol::header::{
    pull_flag, GetConsumerRunningInfoRequestHeader, GetRouteInfoRequestHeader,
    PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UnregisterClientRequestHeader,
};
use crate::protocol::message::{
    self, property, DecodeOptions, Message, MessageExt, UniqueIdGenerator,
};
use crate::protocol::MessageQueue;

/// The topic whose route serves as the template for topics the broker creates on
/// first send (`TBW102`, Java's `createTopicKey`).
pub const DEFAULT_TOPIC: &str = "TBW102";

/// Identifies a user call. Chosen by the core when the call starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Settings of a client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Name server addresses (`host:port`).
    pub name_servers: Vec<String>,
    /// Deadline of a request without one of its own (Java's `mqClientApiTimeout`, 3 s).
    pub request_timeout: Duration,
    /// Largest frame sent or accepted (16 MiB, as Java).
    pub max_frame_len: usize,
    /// Header form this client sends (both are always read).
    pub serialize_type: SerializeType,
    /// Language this client announces.
    pub language: LanguageCode,
    /// The client's own address, for message ids.
    pub client_ip: IpAddr,
    /// The process id, for message ids.
    pub pid: u32,
    /// A per-process random value, for message ids.
    pub id_salt: i32,
    /// Bodies of at least this many bytes are compressed (Java's 4 KiB); `None`
    /// turns compression off.
    pub compress_over: Option<usize>,
    /// Algorithm for compressed bodies (zlib, as Java's default).
    pub compression: CompressionType,
    /// Level for compressed bodies (5, as Java).
    pub compression_level: u32,
    /// How pulled bodies are decoded.
    pub decode: DecodeOptions,
    /// Instance name in the client id (`ip@instance`); `DEFAULT` becomes
    /// `<pid>#<salt>`, as Java makes it unique per process.
    pub instance_name: String,
    /// Optional unit name, appended to the client id as `@unit`.
    pub unit_name: Option<String>,
    /// How often every used topic's route is refreshed (Java's 30 s).
    pub route_refresh_interval: Duration,
    /// How often every broker gets a heartbeat (Java's 30 s).
    pub heartbeat_interval: Duration,
    /// First wait before reconnecting to an address whose connection failed or
    /// closed; it doubles on each further failure up to `reconnect_backoff_max`.
    pub reconnect_backoff: Duration,
    /// Longest wait before reconnecting.
    pub reconnect_backoff_max: Duration,
    /// Extra attempts of a failed send on another broker (Java's 2); oneway
    /// sends are never retried.
    pub send_retries: u32,
    /// Seed of the client's random choices (the random queue selector); 0 takes
    /// the per-process salt.
    pub seed: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            name_servers: vec!["127.0.0.1:9876".to_owned()],
            request_timeout: Duration::from_secs(3),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            serialize_type: SerializeType::Json,
            language: LanguageCode::Rust,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            pid: 0,
            id_salt: 0,
            compress_over: Some(4096),
            compression: CompressionType::Zlib,
            compression_level: 5,
            decode: DecodeOptions::default(),
            instance_name: "DEFAULT".to_owned(),
            unit_name: None,
            route_refresh_interval: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(30),
            reconnect_backoff: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            send_retries: crate::producer::SEND_RETRIES,
            seed: 0,
        }
    }
}

impl ClientConfig {
    /// The client id brokers know this client by: `ip@instance[@unit]`.
    pub fn client_id(&self) -> String {
        let instance = if self.instance_name == "DEFAULT" {
            format!("{}#{}", self.pid, self.id_salt as u32)
        } else {
            self.instance_name.clone()
        };
        match &self.unit_name {
            Some(unit) => format!("{}@{instance}@{unit}", self.client_ip),
            None => format!("{}@{instance}", self.client_ip),
        }
    }
}

/// A user call.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Call {
    /// Ask a name server for a topic's route.
    QueryRoute {
        /// The topic.
        topic: String,
    },
    /// Send one message and wait until the broker stored it, trying other
    /// brokers on failure.
    Send {
        /// Producer group.
        group: String,
        /// The message.
        message: Message,
        /// How to pick the queue.
        selector: QueueSelector,
    },
    /// Send one message without waiting for the broker (no result, no retry).
    SendOneway {
        /// Producer group.
        group: String,
        /// The message.
        message: Message,
        /// How to pick the queue.
        selector: QueueSelector,
    },
    /// Send messages of one topic as one batch, stored in one queue.
    SendBatch {
        /// Producer group.
        group: String,
        /// The messages.
        messages: Vec<Message>,
        /// How to pick the queue.
        selector: QueueSelector,
    },
    /// The writable queues of a topic, in Java's order (what a user-supplied
    /// selector chooses from).
    PublishQueues {
        /// The topic.
        topic: String,
    },
    /// Register a producer group: heartbeats carry it from now on, starting at once.
    RegisterProducer {
        /// Producer group.
        group: String,
    },
    /// Unregister a producer group from every known broker.
    UnregisterProducer {
        /// Producer group.
        group: String,
    },
    /// Start a push consumer with its first subscriptions. Its messages come out
    /// as [`Output::Deliver`]; answer each with [`Input::Consumed`] (or
    /// [`Input::ConsumedOrderly`] for an orderly consumer; either is accepted
    /// from either kind, mapped as [`Verdict`](crate::consumer::Verdict) says).
    StartConsumer {
        /// Its settings (checked first; a bad one fails the call).
        config: Box<ConsumerConfig>,
        /// Topics and selectors.
        subscriptions: Vec<(String, Selector)>,
    },
    /// Subscribe a running consumer to a topic.
    Subscribe {
        /// Consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// Which messages.
        selector: Selector,
        /// Replace a different selector instead of failing with a conflict.
        replace: bool,
    },
    /// Drop a topic from a running consumer.
    Unsubscribe {
        /// Consumer group.
        group: String,
        /// The topic.
        topic: String,
    },
    /// Stop pulling (cached messages are still delivered).
    Suspend {
        /// Consumer group.
        group: String,
    },
    /// Pull again after [`Call::Suspend`].
    Resume {
        /// Consumer group.
        group: String,
    },
    /// A consumer's counters.
    ConsumerStats {
        /// Consumer group.
        group: String,
    },
    /// Stop a consumer: drain running listener calls up to its shutdown timeout,
    /// write offsets, unregister. Completes when all that is done.
    ShutdownConsumer {
        /// Consumer group.
        group: String,
    },
    /// Pull messages from one queue once, without waiting for new ones.
    Pull {
        /// Consumer group.
        group: String,
        /// The queue.
        queue: MessageQueue,
        /// First offset wanted.
        offset: i64,
        /// Most messages to return.
        max_messages: i32,
    },
}

/// What a call completes with.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// The route asked for.
    Route(TopicRouteData),
    /// Where a sent message was stored.
    Sent(SendResult),
    /// What a pull found.
    Pulled(PullResult),
    /// A topic's writable queues.
    Queues(Vec<MessageQueue>),
    /// A consumer's counters.
    ConsumerStats(ConsumerStats),
    /// The call was carried out and has nothing to return.
    Done,
}

impl Reply {
    /// The route, from a [`Call::QueryRoute`] reply.
    pub fn into_route(self) -> Result<TopicRouteData, ClientError> {
        match self {
            Self::Route(r) => Ok(r),
            other => Err(ClientError::BadResponse(format!(
                "expected a route, got {other:?}"
            ))),
        }
    }

    /// The send result, from a [`Call::Send`] reply.
    pub fn into_sent(self) -> Result<SendResult, ClientError> {
        match self {
            Self::Sent(r) => Ok(r),
            other => Err(ClientError::BadResponse(format!(
                "expected a send result, got {other:?}"
            ))),
        }
    }

    /// The queues, from a [`Call::PublishQueues`] reply.
    pub fn into_queues(self) -> Result<Vec<MessageQueue>, ClientError> {
        match self {
            Self::Queues(q) => Ok(q),
            other => Err(ClientError::BadResponse(format!(
                "expected queues, got {other:?}"
            ))),
        }
    }

    /// The counters, from a [`Call::ConsumerStats`] reply.
    pub fn into_consumer_stats(self) -> Result<ConsumerStats, ClientError> {
        match self {
            Self::ConsumerStats(s) => Ok(s),
            other => Err(ClientError::BadResponse(format!(
                "expected consumer stats, got {other:?}"
            ))),
        }
    }

    /// The pull result, from a [`Call::Pull`] reply.
    pub fn into_pulled(self) -> Result<PullResult, ClientError> {
        match self {
            Self::Pulled(r) => Ok(r),
            other => Err(ClientError::BadResponse(format!(
                "expected a pull result, got {other:?}"
            ))),
        }
    }
}

/// How the broker stored a sent message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Stored (and flushed/replicated as the broker is configured to).
    Ok,
    /// Stored, but the flush to disk timed out.
    FlushDiskTimeout,
    /// Stored, but replication to the slave timed out.
    FlushSlaveTimeout,
    /// Stored, but no slave is available.
    SlaveNotAvailable,
}

/// Result of a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendResult {
    /// How it was stored.
    pub status: SendStatus,
    /// The message's unique id (`UNIQ_KEY`).
    pub msg_id: String,
    /// The broker's offset message id.
    pub offset_msg_id: String,
    /// The queue it went to.
    pub queue: MessageQueue,
    /// Its offset in that queue.
    pub queue_offset: i64,
}

/// What a pull found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages were found.
    Found,
    /// Nothing new at the offset.
    NoNewMessage,
    /// Messages were there but none matched the subscription.
    NoMatchedMessage,
    /// The offset is out of range; use `next_begin_offset`.
    OffsetIllegal,
}

/// Result of a pull.
#[derive(Clone, Debug, PartialEq)]
pub struct PullResult {
    /// What was found.
    pub status: PullStatus,
    /// Offset to pull from next.
    pub next_begin_offset: i64,
    /// Smallest offset of the queue.
    pub min_offset: i64,
    /// One past the largest offset of the queue.
    pub max_offset: i64,
    /// The messages, in queue order.
    pub messages: Vec<MessageExt>,
}

/// Something that happened, fed to [`Client::handle_input`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// The connection asked for by [`Output::Connect`] is open.
    Connected(ConnId),
    /// The connection could not be opened.
    ConnectFailed(ConnId, String),
    /// Bytes arrived on a connection. The core adopts the buffer when it can.
    Received(ConnId, BytesMut),
    /// The connection closed.
    Closed(ConnId),
    /// Time passed (the instant from [`Client::poll_timeout`] was reached).
    Timeout,
    /// The file asked for by [`Output::Load`]: its bytes, `None` if there is no
    /// such file, or why it could not be read.
    Loaded {
        /// The path from the output.
        path: String,
        /// What was read.
        result: Result<Option<Bytes>, String>,
    },
    /// The write asked for by [`Output::Persist`] is done (or failed).
    Persisted {
        /// The path from the output.
        path: String,
        /// Whether the file now holds the bytes.
        result: Result<(), String>,
    },
    /// A listener call from [`Output::Deliver`] finished.
    Consumed {
        /// The delivery's ticket.
        ticket: Ticket,
        /// What the listener made of the messages.
        result: ConsumeResult,
    },
    /// An orderly listener call from [`Output::Deliver`] finished.
    ConsumedOrderly {
        /// The delivery's ticket.
        ticket: Ticket,
        /// What the listener made of the messages.
        result: OrderlyResult,
    },
}

impl Input {
    /// The input that reports a listener call's end, of either kind.
    pub fn consumed(ticket: Ticket, verdict: impl Into<crate::consumer::Verdict>) -> Self {
        match verdict.into() {
            crate::consumer::Verdict::Concurrent(result) => Self::Consumed { ticket, result },
            crate::consumer::Verdict::Orderly(result) => Self::ConsumedOrderly { ticket, result },
        }
    }
}

/// Something the adapter must do, from [`Client::poll_output`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Open a TCP connection to `addr`, then report [`Input::Connected`] or
    /// [`Input::ConnectFailed`].
    Connect {
        /// The id the core gave the connection.
        conn: ConnId,
        /// `host:port`.
        addr: String,
    },
    /// Write these bytes to the connection, in order.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// Close the connection; report nothing back.
    Close(ConnId),
    /// A call completed.
    Reply {
        /// The call.
        call: CallId,
        /// Its result.
        result: Result<Reply, ClientError>,
    },
    /// Run the consumer's listener on these messages, then report
    /// [`Input::Consumed`] (an orderly consumer's: [`Input::ConsumedOrderly`])
    /// with the ticket.
    Deliver(Delivery),
    /// Read this file (a broadcasting consumer's offsets; a leading `~/` is the
    /// user's home) and report [`Input::Loaded`].
    Load {
        /// The file.
        path: String,
    },
    /// Replace this file's contents atomically (write `<path>.tmp`, then rename
    /// it over the file, creating directories as needed), then report
    /// [`Input::Persisted`]. One write per path is out at a time.
    Persist {
        /// The file.
        path: String,
        /// Its new contents.
        data: Bytes,
    },
}

/// A request on the wire, waiting for its response.
#[derive(Debug)]
struct InFlight {
    /// The user call to complete; `None` for the client's own requests.
    call: Option<CallId>,
    conn: ConnId,
    deadline: Instant,
    timeout: Duration,
    kind: Expect,
}

/// How to read the response of a request.
#[derive(Debug)]
enum Expect {
    Route {
        topic: String,
    },
    Send {
        queue: MessageQueue,
        state: Box<SendState>,
    },
    Pull,
    Heartbeat,
    Unregister,
    Consumer {
        group: String,
        op: ConsumerOp,
    },
}

/// A send as the call gave it.
#[derive(Debug)]
struct Send {
    group: String,
    messages: Vec<Message>,
    selector: QueueSelector,
    kind: SendKind,
}

impl Send {
    /// The send a call asks for, if it asks for one.
    fn from_call(call: Call) -> Option<Self> {
        let (group, messages, selector, kind) = match call {
            Call::Send {
                group,
                message,
                selector,
            } => (group, vec![message], selector, SendKind::Single),
            Call::SendOneway {
                group,
                message,
                selector,
            } => (group, vec![message], selector, SendKind::Oneway),
            Call::SendBatch {
                group,
                messages,
                selector,
            } => (group, messages, selector, SendKind::Batch),
            _ => return None,
        };
        Some(Self {
            group,
            messages,
            selector,
            kind,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendKind {
    Single,
    Oneway,
    Batch,
}

/// A prepared send, kept until it succeeds or runs out of attempts.
#[derive(Debug)]
struct SendState {
    call: CallId,
    group: String,
    topic: String,
    selector: QueueSelector,
    kind: SendKind,
    body: Bytes,
    sys_flag: i32,
    properties: String,
    flag: i32,
    msg_id: String,
    attempts_left: u32,
    last_broker: Option<String>,
    deadline: Instant,
    timeout: Duration,
}

impl Call {
    /// The topic whose route the call needs, if it needs one.
    fn topic(&self) -> Option<&str> {
        match self {
            Self::Send { message, .. } | Self::SendOneway { message, .. } => Some(&message.topic),
            Self::SendBatch { messages, .. } => messages.first().map(|m| m.topic.as_str()),
            Self::Pull { queue, .. } => Some(&queue.topic),
            Self::PublishQueues { topic } => Some(topic),
            _ => None,
        }
    }
}

/// A call waiting for a route before it can go out.
#[derive(Debug)]
struct Parked {
    call: CallId,
    deadline: Instant,
    /// The call's own timeout, for the error if the deadline passes first.
    timeout: Duration,
    request: Call,
}

/// A topic's route with what every send reads from it, worked out once per route
/// update rather than once per send.
#[derive(Debug)]
struct KnownRoute {
    data: TopicRouteData,
    /// The writable queues, in Java's order.
    publish: Vec<MessageQueue>,
}

impl KnownRoute {
    fn new(topic: &str, data: TopicRouteData) -> Self {
        let publish = data.publish_queues(topic);
        Self { data, publish }
    }
}

/// The sans-IO client. See the [module docs](self) for the driving loop.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    start: Instant,
    start_wall_ms: i64,
    last_now: Instant,
    conns: Connections,
    next_opaque: i32,
    next_call: u64,
    in_flight: HashMap<i32, InFlight>,
    deadlines: BTreeMap<(Instant, i32), ()>,
    routes: HashMap<String, KnownRoute>,
    parked: HashMap<String, Vec<Parked>>,
    selection: Selection,
    ids: UniqueIdGenerator,
    outputs: VecDeque<Output>,
    client_id: String,
    /// Index of the name server to ask next; moves on after a failure.
    name_server: usize,
    /// Topics whose route query is on the wire.
    route_queries: HashSet<String>,
    /// When every used route is refreshed next.
    route_refresh_at: Instant,
    /// When every broker gets its next heartbeat.
    heartbeat_at: Option<Instant>,
    /// Broker addresses that have had a heartbeat.
    heartbeated: BTreeSet<String>,
    /// Addresses a connection has opened to before.
    met: BTreeSet<String>,
    producers: BTreeSet<String>,
    consumers: Consumers,
    /// Topics without a route whose sends wait for the auto-create template's.
    awaiting_default: BTreeSet<String>,
}

impl Client {
    /// A client starting at `now`, when the wall clock read `wall_clock_ms`
    /// (milliseconds since the Unix epoch).
    pub fn new(config: ClientConfig, now: Instant, wall_clock_ms: i64) -> Self {
        let ids = UniqueIdGenerator::new(config.client_ip, config.pid, config.id_salt);
        let client_id = config.client_id();
        let route_refresh_at = now + config.route_refresh_interval;
        let conns = Connections::new(config.reconnect_backoff, config.reconnect_backoff_max);
        let selection = Selection::new(match config.seed {
            0 => (u64::from(config.id_salt as u32) << 1) | 1,
            seed => seed,
        });
        Self {
            config,
            start: now,
            start_wall_ms: wall_clock_ms,
            last_now: now,
            conns,
            next_opaque: 0,
            next_call: 0,
            in_flight: HashMap::new(),
            deadlines: BTreeMap::new(),
            routes: HashMap::new(),
            parked: HashMap::new(),
            selection,
            ids,
            outputs: VecDeque::new(),
            client_id,
            name_server: 0,
            route_queries: HashSet::new(),
            route_refresh_at,
            heartbeat_at: None,
            heartbeated: BTreeSet::new(),
            met: BTreeSet::new(),
            producers: BTreeSet::new(),
            consumers: Consumers::default(),
            awaiting_default: BTreeSet::new(),
        }
    }

    /// The id brokers know this client by.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Starts a call; its result arrives later as [`Output::Reply`] with the
    /// returned id. `timeout` overrides the configured request timeout.
    pub fn call(&mut self, now: Instant, call: Call, timeout: Option<Duration>) -> CallId {
        let now = self.advance(now);
        self.next_call += 1;
        let id = CallId(self.next_call);
        let timeout = timeout.unwrap_or(self.config.request_timeout);
        match validate(&call) {
            Ok(()) => self.dispatch(now, id, call, now + timeout, timeout),
            Err(e) => self.reply(id, Err(e)),
        }
        id
    }

    /// Feeds in something that happened.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        let now = self.advance(now);
        match input {
            Input::Connected(conn) => {
                if let Some(frames) = self.conns.opened(conn) {
                    debug!(%conn, "connected");
                    self.reconnected(now, conn);
                    for data in frames {
                        self.outputs.push_back(Output::Transmit { conn, data });
                    }
                }
            }
            Input::ConnectFailed(conn, reason) => {
                if let Some(addr) = self.conns.remove(now, conn) {
                    warn!(%conn, %addr, %reason, "connect failed");
                    self.fail_connection(
                        conn,
                        |addr| ClientError::ConnectFailed {
                            addr: addr.to_owned(),
                            reason: reason.clone(),
                        },
                        &addr,
                    );
                }
            }
            Input::Received(conn, data) => match self.conns.receive(conn, data) {
                Ok(frames) => {
                    for frame in frames {
                        match RemotingCommand::decode(frame) {
                            Ok(cmd) => self.on_command(now, conn, cmd),
                            Err(e) => {
                                warn!(%conn, error = %e, "undecodable command; closing the connection");
                                self.close(conn);
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(%conn, error = %e, "bad frame; closing the connection");
                    self.close(conn);
                }
            },
            Input::Closed(conn) => {
                if let Some(addr) = self.conns.remove(now, conn) {
                    debug!(%conn, %addr, "closed");
                    self.fail_connection(
                        conn,
                        |addr| ClientError::ConnectionClosed {
                            addr: addr.to_owned(),
                        },
                        &addr,
                    );
                }
            }
            Input::Timeout => self.expire(now),
            Input::Consumed { ticket, result } => self.on_consumed(now, ticket, result.into()),
            Input::ConsumedOrderly { ticket, result } => {
                self.on_consumed(now, ticket, result.into())
            }
            Input::Loaded { path, result } => self.on_loaded(now, &path, result),
            Input::Persisted { path, result } => self.on_persisted(&path, result),
        }
    }

    /// The next thing the adapter must do, if any. Drain it after every input.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        let now = self.advance(now);
        if self.next_deadline().is_some_and(|d| d <= now) {
            self.expire(now);
        }
        self.outputs.pop_front()
    }

    /// When the core next needs [`Input::Timeout`], if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|d| d.max(self.last_now))
    }

    /// Time never goes backwards inside the core.
    fn advance(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn wall_ms(&self, now: Instant) -> i64 {
        self.start_wall_ms + now.saturating_duration_since(self.start).as_millis() as i64
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.deadlines.keys().next().map(|(d, _)| *d),
            self.parked.values().flatten().map(|p| p.deadline).min(),
            (!self.routes.is_empty()).then_some(self.route_refresh_at),
            self.heartbeat_at,
            self.conns.next_connect(),
            self.consumer_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn reply(&mut self, call: CallId, result: Result<Reply, ClientError>) {
        self.outputs.push_back(Output::Reply { call, result });
    }

    fn dispatch(
        &mut self,
        now: Instant,
        id: CallId,
        call: Call,
        deadline: Instant,
        timeout: Duration,
    ) {
        match call {
            Call::QueryRoute { topic } => self.query_route(Some(id), topic, deadline, timeout),
            Call::RegisterProducer { group } => {
                if self.producers.insert(group) {
                    self.heartbeat_at = Some(now);
                }
                self.reply(id, Ok(Reply::Done));
            }
            Call::UnregisterProducer { group } => {
                if self.producers.remove(&group) {
                    self.unregister(&group, deadline, timeout);
                }
                if self.producers.is_empty() && !self.has_consumers() {
                    self.heartbeat_at = None;
                }
                self.reply(id, Ok(Reply::Done));
            }
            Call::StartConsumer {
                config,
                subscriptions,
            } => match self.start_consumer(now, id, timeout, *config, subscriptions) {
                Ok(Some(reply)) => self.reply(id, Ok(reply)),
                Ok(None) => {}
                Err(e) => self.reply(id, Err(e)),
            },
            Call::Subscribe {
                group,
                topic,
                selector,
                replace,
            } => {
                let result = self.subscribe(now, &group, &topic, selector, replace);
                self.reply(id, result);
            }
            Call::Unsubscribe { group, topic } => {
                let result = self.unsubscribe(now, &group, &topic);
                self.reply(id, result);
            }
            Call::Suspend { group } => {
                let result = self.suspend(&group, true);
                self.reply(id, result);
            }
            Call::Resume { group } => {
                let result = self.suspend(&group, false);
                self.reply(id, result);
            }
            Call::ConsumerStats { group } => {
                let result = self.consumer_stats(&group);
                self.reply(id, result);
            }
            Call::ShutdownConsumer { group } => self.shutdown_consumer(now, id, &group),
            call => {
                let Some(topic) = call.topic() else {
                    return;
                };
                if self.routes.contains_key(topic) {
                    self.issue(now, id, call, deadline, timeout);
                } else {
                    let topic = topic.to_owned();
                    let first = !self.parked.contains_key(&topic);
                    self.parked.entry(topic.clone()).or_default().push(Parked {
                        call: id,
                        deadline,
                        timeout,
                        request: call,
                    });
                    if first {
                        // The client's own query: its answer fills the route table.
                        self.query_route(None, topic, deadline, timeout);
                    }
                }
            }
        }
    }

    fn query_route(
        &mut self,
        id: Option<CallId>,
        topic: String,
        deadline: Instant,
        timeout: Duration,
    ) {
        let servers = &self.config.name_servers;
        let Some(addr) = servers
            .get(self.name_server % servers.len().max(1))
            .cloned()
        else {
            let error = ClientError::NoQueue("no name server configured".into());
            for parked in self.parked.remove(&topic).unwrap_or_default() {
                self.reply(parked.call, Err(error.clone()));
            }
            if let Some(id) = id {
                self.reply(id, Err(error));
            }
            return;
        };
        let request = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 0).with_header(
            &GetRouteInfoRequestHeader {
                topic: topic.clone(),
                accept_standard_json_only: Some(true),
            },
        );
        self.route_queries.insert(topic.clone());
        self.send_request(
            id,
            &addr,
            request,
            Expect::Route { topic },
            deadline,
            timeout,
        );
    }

    /// Sends a call whose route is known.
    fn issue(
        &mut self,
        now: Instant,
        id: CallId,
        call: Call,
        deadline: Instant,
        timeout: Duration,
    ) {
        match call {
            send @ (Call::Send { .. } | Call::SendOneway { .. } | Call::SendBatch { .. }) => {
                if let Some(send) = Send::from_call(send) {
                    self.start_send(now, id, send, deadline, timeout);
                }
            }
            Call::Pull {
                group,
                queue,
                offset,
                max_messages,
            } => {
                let Some(addr) = self
                    .routes
                    .get(&queue.topic)
                    .and_then(|r| r.data.master_addr(&queue.broker_name))
                else {
                    self.reply(
                        id,
                        Err(ClientError::NoQueue(format!("no master for {queue}"))),
                    );
                    return;
                };
                let addr = addr.to_owned();
                let header = PullMessageRequestHeader {
                    consumer_group: group,
                    topic: queue.topic.clone(),
                    queue_id: queue.queue_id,
                    queue_offset: offset,
                    max_msg_nums: max_messages,
                    // Carry the subscription: a one-off pull has no heartbeat behind it.
                    sys_flag: pull_flag::SUBSCRIPTION,
                    commit_offset: 0,
                    suspend_timeout_millis: 0,
                    subscription: Some("*".into()),
                    sub_version: 0,
                    expression_type: Some("TAG".into()),
                    max_msg_bytes: None,
                    request_source: None,
                    proxy_forward_client_id: None,
                    broker_name: Some(queue.broker_name.clone()),
                };
                let request =
                    RemotingCommand::request(RequestCode::PULL_MESSAGE, 0).with_header(&header);
                self.send_request(Some(id), &addr, request, Expect::Pull, deadline, timeout);
            }
            Call::PublishQueues { topic } => {
                let queues = self
                    .routes
                    .get(&topic)
                    .map(|r| r.publish.clone())
                    .unwrap_or_default();
                self.reply(id, Ok(Reply::Queues(queues)));
            }
            other => self.dispatch(now, id, other, deadline, timeout),
        }
    }

    /// Prepares a send once (unique ids, compression, properties) and makes its
    /// first attempt.
    fn start_send(
        &mut self,
        now: Instant,
        id: CallId,
        send: Send,
        deadline: Instant,
        timeout: Duration,
    ) {
        let born = self.wall_ms(now);
        let Send {
            group,
            mut messages,
            selector,
            kind,
        } = send;
        for m in &mut messages {
            if m.unique_id().is_none() {
                let uniq = self.ids.next_id(born);
                m.properties
                    .insert(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX.to_owned(), uniq);
            }
        }
        let msg_id = messages
            .iter()
            .filter_map(Message::unique_id)
            .collect::<Vec<_>>()
            .join(",");
        let topic = messages[0].topic.clone();
        let (body, sys_flag, properties, flag) = if kind == SendKind::Batch {
            let mut body = BytesMut::new();
            if let Err(e) = message::encode_batch(&messages, &mut body) {
                self.reply(id, Err(ClientError::InvalidMessage(e.to_string())));
                return;
            }
            // The batch's own properties: WAIT only. Java also gives the batch a
            // unique id, but the broker appends the batch's properties to every
            // message it stores, so each message would then read back with the
            // batch's id instead of its own.
            let batch = Message::new(topic.clone(), Bytes::new());
            (body.freeze(), 0, batch.properties_string(), 0)
        } else {
            let m = &messages[0];
            let mut body = m.body.clone();
            let mut sys_flag = 0;
            if let Some(threshold) = self.config.compress_over {
                if body.len() >= threshold {
                    match self
                        .config
                        .compression
                        .compress(&body, self.config.compression_level)
                    {
                        Ok(compressed) => {
                            body = compressed;
                            sys_flag |= self.config.compression.sys_flag();
                        }
                        Err(e) => warn!(error = %e, "compression failed; sending the body as is"),
                    }
                }
            }
            (body, sys_flag, m.properties_string(), m.flag)
        };
        let attempts = match kind {
            SendKind::Oneway => 1,
            _ => 1 + self.config.send_retries,
        };
        let state = SendState {
            call: id,
            group,
            topic,
            selector,
            kind,
            body,
            sys_flag,
            properties,
            flag,
            msg_id,
            attempts_left: attempts,
            last_broker: None,
            deadline,
            timeout,
        };
        self.attempt_send(now, Box::new(state));
    }

    /// Sends one attempt of a prepared send to a queue its selector picks.
    fn attempt_send(&mut self, now: Instant, mut state: Box<SendState>) {
        let route = self.routes.get(&state.topic);
        let conns = &self.conns;
        let usable = |broker: &str| {
            route
                .and_then(|r| r.data.master_addr(broker))
                .is_some_and(|addr| conns.usable(addr, now))
        };
        let picked = self.selection.select(
            now,
            &state.topic,
            route.map_or(&[][..], |r| &r.publish[..]),
            &state.selector,
            state.last_broker.as_deref(),
            usable,
        );
        let Some(queue) = picked else {
            let why = format!("topic {} has no writable queue", state.topic);
            self.reply(state.call, Err(ClientError::NoQueue(why)));
            return;
        };
        let Some(addr) = route
            .and_then(|r| r.data.master_addr(&queue.broker_name))
            .map(str::to_owned)
        else {
            self.reply(
                state.call,
                Err(ClientError::NoQueue(format!("no master for {queue}"))),
            );
            return;
        };
        state.attempts_left -= 1;
        state.last_broker = Some(queue.broker_name.clone());
        let header = SendMessageRequestHeaderV2(SendMessageRequestHeader {
            producer_group: state.group.clone(),
            topic: state.topic.clone(),
            default_topic: DEFAULT_TOPIC.into(),
            default_topic_queue_nums: 4,
            queue_id: queue.queue_id,
            sys_flag: state.sys_flag,
            born_timestamp: self.wall_ms(now),
            flag: state.flag,
            properties: Some(state.properties.clone()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(state.kind == SendKind::Batch),
            max_reconsume_times: None,
            broker_name: Some(queue.broker_name.clone()),
        });
        let code = match state.kind {
            SendKind::Batch => RequestCode::SEND_BATCH_MESSAGE,
            _ => RequestCode::SEND_MESSAGE_V2,
        };
        let request = RemotingCommand::request(code, 0)
            .with_header(&header)
            .with_body(state.body.clone());
        if state.kind == SendKind::Oneway {
            let call = state.call;
            self.send_oneway(&addr, request.with_oneway());
            self.reply(call, Ok(Reply::Done));
            return;
        }
        let (deadline, timeout) = (state.deadline, state.timeout);
        self.send_request(
            None,
            &addr,
            request,
            Expect::Send { queue, state },
            deadline,
            timeout,
        );
    }

    /// A send attempt failed: try another broker while attempts and time remain,
    /// else complete the call with `error`. The failed broker is passed over for a
    /// while, and the topic's route is asked for again at once.
    fn retry_send(&mut self, now: Instant, state: Box<SendState>, error: ClientError) {
        if let Some(broker) = &state.last_broker {
            self.selection.failed(broker, now);
        }
        if !self.route_queries.contains(&state.topic) {
            let timeout = self.config.request_timeout;
            self.query_route(None, state.topic.clone(), now + timeout, timeout);
        }
        if state.attempts_left > 0 && now < state.deadline {
            debug!(topic = %state.topic, error = %error, "send failed; trying another broker");
            self.attempt_send(now, state);
        } else {
            self.reply(state.call, Err(error));
        }
    }

    /// Writes a oneway request: nothing waits for an answer.
    fn send_oneway(&mut self, addr: &str, mut request: RemotingCommand) {
        self.next_opaque = self.next_opaque.wrapping_add(1);
        request.opaque = self.next_opaque;
        request.language = self.config.language;
        request.version = CLIENT_VERSION;
        let mut buf = BytesMut::new();
        if let Err(e) = request.encode(
            self.config.serialize_type,
            self.config.max_frame_len,
            &mut buf,
        ) {
            warn!(error = %e, "oneway request not encodable; dropped");
            return;
        }
        match self
            .conns
            .send(self.last_now, addr, buf.freeze(), self.config.max_frame_len)
        {
            Route::Connect(conn) => self.outputs.push_back(Output::Connect {
                conn,
                addr: addr.to_owned(),
            }),
            Route::Queued(_) => {}
            Route::Transmit(conn, data) => self.outputs.push_back(Output::Transmit { conn, data }),
        }
    }

    fn send_request(
        &mut self,
        call: Option<CallId>,
        addr: &str,
        mut request: RemotingCommand,
        kind: Expect,
        deadline: Instant,
        timeout: Duration,
    ) {
        self.next_opaque = self.next_opaque.wrapping_add(1);
        let opaque = self.next_opaque;
        request.opaque = opaque;
        request.language = self.config.language;
        request.version = CLIENT_VERSION;
        let mut buf = BytesMut::new();
        if let Err(e) = request.encode(
            self.config.serialize_type,
            self.config.max_frame_len,
            &mut buf,
        ) {
            if let Some(call) = call {
                self.reply(call, Err(ClientError::Encode(e.to_string())));
            }
            return;
        }
        let route = self
            .conns
            .send(self.last_now, addr, buf.freeze(), self.config.max_frame_len);
        let conn = match route {
            Route::Connect(conn) => {
                self.outputs.push_back(Output::Connect {
                    conn,
                    addr: addr.to_owned(),
                });
                conn
            }
            Route::Queued(conn) => conn,
            Route::Transmit(conn, data) => {
                self.outputs.push_back(Output::Transmit { conn, data });
                conn
            }
        };
        trace!(%conn, opaque, code = request.code, "request");
        self.in_flight.insert(
            opaque,
            InFlight {
                call,
                conn,
                deadline,
                timeout,
                kind,
            },
        );
        self.deadlines.insert((deadline, opaque), ());
    }

    fn on_command(&mut self, now: Instant, conn: ConnId, cmd: RemotingCommand) {
        if !cmd.is_response() {
            self.on_server_request(conn, cmd);
            return;
        }
        let Some(req) = self.in_flight.remove(&cmd.opaque) else {
            trace!(%conn, opaque = cmd.opaque, "response to no pending request (late or unknown); dropped");
            return;
        };
        self.deadlines.remove(&(req.deadline, cmd.opaque));
        let result = match req.kind {
            Expect::Route { topic } => self.on_route(now, topic, &cmd),
            Expect::Send { queue, state } => {
                match on_send(queue, &state.msg_id, &cmd) {
                    Err(ClientError::Remote { code, remark }) if retryable(code) => {
                        self.retry_send(now, state, ClientError::Remote { code, remark });
                    }
                    result => self.reply(state.call, result),
                }
                return;
            }
            Expect::Pull => on_pull(&cmd, &self.config.decode),
            Expect::Consumer { group, op } => {
                self.on_consumer_answer(now, group, op, Ok(cmd));
                return;
            }
            Expect::Heartbeat | Expect::Unregister => match cmd.response_code() {
                ResponseCode::SUCCESS => Ok(Reply::Done),
                code => {
                    warn!(%conn, ?code, remark = ?cmd.remark, "heartbeat or unregister refused");
                    Err(remote(code, &cmd))
                }
            },
        };
        if let Some(call) = req.call {
            self.reply(call, result);
        }
    }

    /// Requests a broker sends to the client: the group-change notice, offset
    /// resets and running-info queries are handled; any other gets
    /// REQUEST_CODE_NOT_SUPPORTED
    /// (oneway ones get nothing), never silence.
    fn on_server_request(&mut self, conn: ConnId, cmd: RemotingCommand) {
        debug!(%conn, code = cmd.code, "server request");
        if cmd.request_code() == RequestCode::NOTIFY_CONSUMER_IDS_CHANGED {
            // Oneway from the broker: nothing to answer.
            self.on_ids_changed(self.last_now, &cmd);
            return;
        }
        if cmd.request_code() == RequestCode::RESET_CONSUMER_CLIENT_OFFSET {
            // Oneway from the broker too.
            self.on_reset_offset(self.last_now, &cmd);
            return;
        }
        if cmd.is_oneway() {
            return;
        }
        let mut response = if cmd.request_code() == RequestCode::GET_CONSUMER_RUNNING_INFO {
            let group = cmd
                .header::<GetConsumerRunningInfoRequestHeader>()
                .map(|h| h.consumer_group)
                .unwrap_or_default();
            match self.running_info(&group) {
                Some(info) => RemotingCommand::response(ResponseCode::SUCCESS, cmd.opaque, None)
                    .with_body(info.encode()),
                None => RemotingCommand::response(
                    ResponseCode::SYSTEM_ERROR,
                    cmd.opaque,
                    Some(format!(
                        "The Consumer Group <{group}> not exist in this consumer"
                    )),
                ),
            }
        } else {
            RemotingCommand::response(
                ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                cmd.opaque,
                Some(format!(" request type {} not supported", cmd.code)),
            )
        };
        response.language = self.config.language;
        let mut buf = BytesMut::new();
        if response
            .encode(
                self.config.serialize_type,
                self.config.max_frame_len,
                &mut buf,
            )
            .is_ok()
        {
            self.outputs.push_back(Output::Transmit {
                conn,
                data: buf.freeze(),
            });
        }
    }

    fn on_route(
        &mut self,
        now: Instant,
        topic: String,
        cmd: &RemotingCommand,
    ) -> Result<Reply, ClientError> {
        let result = match cmd.response_code() {
            ResponseCode::SUCCESS => TopicRouteData::decode(&cmd.body)
                .map_err(|e| ClientError::BadResponse(e.to_string()))
                .map(Reply::Route),
            ResponseCode::TOPIC_NOT_EXIST => Err(ClientError::TopicNotFound(topic.clone())),
            code => Err(remote(code, cmd)),
        };
        self.route_queries.remove(&topic);
        if let Ok(Reply::Route(route)) = &result {
            if self.routes.is_empty() {
                self.route_refresh_at = now + self.config.route_refresh_interval;
            }
            self.routes
                .insert(topic.clone(), KnownRoute::new(&topic, route.clone()));
            self.consumer_route_arrived(now, &topic);
            // A broker this client has not met yet gets a heartbeat at once.
            if (!self.producers.is_empty() || self.has_consumers())
                && self
                    .broker_addrs()
                    .iter()
                    .any(|a| !self.heartbeated.contains(a))
            {
                self.heartbeat_at = Some(now);
            }
        }
        if topic == DEFAULT_TOPIC {
            self.on_default_route(now, &result);
        } else if matches!(result, Err(ClientError::TopicNotFound(_)))
            && self.wait_for_default(now, &topic)
        {
            return result;
        }
        // Calls that waited for this route go out now, or fail with its error.
        for parked in self.parked.remove(&topic).unwrap_or_default() {
            match &result {
                Ok(_) => {
                    let timeout = parked.deadline.saturating_duration_since(now);
                    self.issue(now, parked.call, parked.request, parked.deadline, timeout);
                }
                Err(e) => self.reply(parked.call, Err(e.clone())),
            }
        }
        result
    }

    /// A topic has no route yet. As the Java producer does, its sends use the
    /// route of the auto-create template topic (`TBW102`): the broker creates the
    /// topic on the first message if it allows auto-creation. Other calls fail.
    /// Returns whether any send now waits for the template's route.
    fn wait_for_default(&mut self, now: Instant, topic: &str) -> bool {
        let parked = self.parked.remove(topic).unwrap_or_default();
        let (sends, others): (Vec<Parked>, Vec<Parked>) = parked.into_iter().partition(|p| {
            matches!(
                p.request,
                Call::Send { .. } | Call::SendOneway { .. } | Call::SendBatch { .. }
            )
        });
        for p in others {
            self.reply(p.call, Err(ClientError::TopicNotFound(topic.to_owned())));
        }
        let Some(deadline) = sends.iter().map(|p| p.deadline).max() else {
            return false;
        };
        self.parked.insert(topic.to_owned(), sends);
        self.awaiting_default.insert(topic.to_owned());
        if !self.route_queries.contains(DEFAULT_TOPIC) {
            let timeout = deadline.saturating_duration_since(now);
            self.query_route(None, DEFAULT_TOPIC.to_owned(), deadline, timeout);
        }
        true
    }

    /// The template's route arrived (or did not): topics waiting for it get a
    /// route made from it, with at most 4 queues per broker (Java's
    /// `defaultTopicQueueNums`), and their sends go out; or they fail.
    fn on_default_route(&mut self, now: Instant, result: &Result<Reply, ClientError>) {
        for topic in std::mem::take(&mut self.awaiting_default) {
            let parked = self.parked.remove(&topic).unwrap_or_default();
            match result {
                Ok(Reply::Route(template)) => {
                    let mut route = template.clone();
                    for q in &mut route.queue_datas {
                        let n = q.read_queue_nums.min(4);
                        q.read_queue_nums = n;
                        q.write_queue_nums = n;
                    }
                    self.routes
                        .insert(topic.clone(), KnownRoute::new(&topic, route));
                    for p in parked {
                        let timeout = p.deadline.saturating_duration_since(now);
                        self.issue(now, p.call, p.request, p.deadline, timeout);
                    }
                }
                _ => {
                    for p in parked {
                        self.reply(p.call, Err(ClientError::TopicNotFound(topic.clone())));
                    }
                }
            }
        }
    }

    /// Fires every timer that is due: request and call deadlines, delayed
    /// connects, route refresh, heartbeats.
    fn expire(&mut self, now: Instant) {
        while let Some((&(deadline, opaque), ())) = self.deadlines.iter().next() {
            if deadline > now {
                break;
            }
            if let Some(req) = self.in_flight.remove(&opaque) {
                debug!(opaque, conn = %req.conn, "request timed out");
                let timeout = req.timeout;
                self.fail_request(opaque, req, ClientError::Timeout(timeout));
            } else {
                self.deadlines.remove(&(deadline, opaque));
            }
        }
        let mut expired = Vec::new();
        for list in self.parked.values_mut() {
            list.retain(|p| {
                let keep = p.deadline > now;
                if !keep {
                    expired.push((p.call, p.timeout));
                }
                keep
            });
        }
        self.parked.retain(|_, list| !list.is_empty());
        for (call, timeout) in expired {
            self.reply(call, Err(ClientError::Timeout(timeout)));
        }
        for (conn, addr) in self.conns.due(now) {
            self.outputs.push_back(Output::Connect { conn, addr });
        }
        if !self.routes.is_empty() && self.route_refresh_at <= now {
            self.route_refresh_at = now + self.config.route_refresh_interval;
            self.refresh_routes(now);
        }
        if self.heartbeat_at.is_some_and(|at| at <= now) {
            self.heartbeat_at = Some(now + self.config.heartbeat_interval);
            self.send_heartbeats(now);
        }
        self.consumer_timers(now);
    }

    /// Asks for the route of every topic in use, unless a query is already out.
    fn refresh_routes(&mut self, now: Instant) {
        let mut topics: BTreeSet<String> = self.routes.keys().cloned().collect();
        topics.extend(self.consumer_topics());
        topics.retain(|t| !self.route_queries.contains(t));
        let timeout = self.config.request_timeout;
        for topic in topics {
            self.query_route(None, topic, now + timeout, timeout);
        }
    }

    /// Master addresses of every known route, in order.
    fn broker_addrs(&self) -> BTreeSet<String> {
        self.routes
            .values()
            .flat_map(|r| r.data.broker_datas.iter())
            .filter_map(|b| b.master_addr())
            .map(str::to_owned)
            .collect()
    }

    /// A connection opened to a broker this client had sent heartbeats to:
    /// that broker forgot the client with the old connection, so it gets a
    /// heartbeat at once, ahead of anything queued for it, and the consumers
    /// rebalance soon (as Java's channel listener does). Until then, the
    /// other members own this client's queues while it goes on pulling them.
    fn reconnected(&mut self, now: Instant, conn: ConnId) {
        let Some(addr) = self.conns.addr(conn).map(str::to_owned) else {
            return;
        };
        let again = !self.met.insert(addr.clone());
        if !again
            || !self.heartbeated.contains(&addr)
            || (self.producers.is_empty() && !self.has_consumers())
        {
            return;
        }
        debug!(%conn, %addr, "a broker met again: heartbeat");
        let body = self.heartbeat_body();
        self.send_heartbeat(now, &addr, body);
        self.rebalance_soon(now);
    }

    /// The heartbeat of every registered group.
    fn heartbeat_body(&self) -> Bytes {
        Bytes::from(
            HeartbeatData {
                client_id: self.client_id.clone(),
                producer_data_set: self
                    .producers
                    .iter()
                    .map(|g| ProducerData {
                        group_name: g.clone(),
                    })
                    .collect(),
                consumer_data_set: self.consumer_groups().collect(),
                ..HeartbeatData::default()
            }
            .encode(),
        )
    }

    /// Sends a heartbeat with every registered group to every known broker.
    fn send_heartbeats(&mut self, now: Instant) {
        let body = self.heartbeat_body();
        for addr in self.broker_addrs() {
            self.send_heartbeat(now, &addr, body.clone());
        }
    }

    fn send_heartbeat(&mut self, now: Instant, addr: &str, body: Bytes) {
        let timeout = self.config.request_timeout;
        let request = RemotingCommand::request(RequestCode::HEART_BEAT, 0).with_body(body);
        self.send_request(
            None,
            addr,
            request,
            Expect::Heartbeat,
            now + timeout,
            timeout,
        );
        self.heartbeated.insert(addr.to_owned());
    }

    /// Tells every broker that had a heartbeat that `group` is gone.
    fn unregister(&mut self, group: &str, deadline: Instant, timeout: Duration) {
        let header = UnregisterClientRequestHeader {
            client_id: self.client_id.clone(),
            producer_group: Some(group.to_owned()),
            consumer_group: None,
        };
        for addr in self.heartbeated.clone() {
            let request =
                RemotingCommand::request(RequestCode::UNREGISTER_CLIENT, 0).with_header(&header);
            self.send_request(None, &addr, request, Expect::Unregister, deadline, timeout);
        }
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(addr) = self.conns.remove(self.last_now, conn) {
            self.outputs.push_back(Output::Close(conn));
            self.fail_connection(
                conn,
                |addr| ClientError::ConnectionClosed {
                    addr: addr.to_owned(),
                },
                &addr,
            );
        }
    }

    /// Fails every request waiting on a connection that is gone.
    fn fail_connection(&mut self, conn: ConnId, error: impl Fn(&str) -> ClientError, addr: &str) {
        let mut failed: Vec<i32> = self
            .in_flight
            .iter()
            .filter(|(_, r)| r.conn == conn)
            .map(|(&o, _)| o)
            .collect();
        failed.sort_unstable();
        for opaque in failed {
            if let Some(req) = self.in_flight.remove(&opaque) {
                self.fail_request(opaque, req, error(addr));
            }
        }
    }

    /// Completes a request that got no response. A failed route query moves on to
    /// the next name server and fails the calls parked behind it.
    fn fail_request(&mut self, opaque: i32, req: InFlight, error: ClientError) {
        self.deadlines.remove(&(req.deadline, opaque));
        let kind = match req.kind {
            Expect::Send { state, .. } => {
                self.retry_send(self.last_now, state, error);
                return;
            }
            Expect::Consumer { group, op } => {
                self.on_consumer_answer(self.last_now, group, op, Err(error));
                return;
            }
            other => other,
        };
        let req = InFlight { kind, ..req };
        if let Expect::Route { topic } = &req.kind {
            self.route_queries.remove(topic);
            self.name_server = self.name_server.wrapping_add(1);
            for parked in self.parked.remove(topic).unwrap_or_default() {
                self.reply(parked.call, Err(error.clone()));
            }
        }
        if let Some(call) = req.call {
            self.reply(call, Err(error));
        }
    }

    /// Connections still open (for tests and shutdown).
    pub fn connections(&self) -> Vec<ConnId> {
        self.conns.ids()
    }

    /// The address of a connection.
    pub fn connection_addr(&self, conn: ConnId) -> Option<&str> {
        self.conns.addr(conn)
    }
}

/// Checks a call before anything goes out.
fn validate(call: &Call) -> Result<(), ClientError> {
    match call {
        Call::Send { message, .. } | Call::SendOneway { message, .. } => {
            producer::validate(message)
        }
        Call::SendBatch { messages, .. } => producer::validate_batch(messages),
        _ => Ok(()),
    }
}

fn remote(code: ResponseCode, cmd: &RemotingCommand) -> ClientError {
    ClientError::Remote {
        code,
        remark: cmd.remark.clone().unwrap_or_default(),
    }
}

fn on_send(queue: MessageQueue, msg_id: &str, cmd: &RemotingCommand) -> Result<Reply, ClientError> {
    let status = match cmd.response_code() {
        ResponseCode::SUCCESS => SendStatus::Ok,
        ResponseCode::FLUSH_DISK_TIMEOUT => SendStatus::FlushDiskTimeout,
        ResponseCode::FLUSH_SLAVE_TIMEOUT => SendStatus::FlushSlaveTimeout,
        ResponseCode::SLAVE_NOT_AVAILABLE => SendStatus::SlaveNotAvailable,
        code => return Err(remote(code, cmd)),
    };
    let header: SendMessageResponseHeader = cmd
        .header()
        .map_err(|e| ClientError::BadResponse(e.to_string()))?;
    Ok(Reply::Sent(SendResult {
        status,
        msg_id: msg_id.to_owned(),
        offset_msg_id: header.msg_id,
        queue: MessageQueue {
            queue_id: header.queue_id,
            ..queue
        },
        queue_offset: header.queue_offset,
    }))
}

fn on_pull(cmd: &RemotingCommand, decode: &DecodeOptions) -> Result<Reply, ClientError> {
    let status = match cmd.response_code() {
        ResponseCode::SUCCESS => PullStatus::Found,
        ResponseCode::PULL_NOT_FOUND => PullStatus::NoNewMessage,
        ResponseCode::PULL_RETRY_IMMEDIATELY => PullStatus::NoMatchedMessage,
        ResponseCode::PULL_OFFSET_MOVED => PullStatus::OffsetIllegal,
        code => return Err(remote(code, cmd)),
    };
    let header: PullMessageResponseHeader = cmd
        .header()
        .map_err(|e| ClientError::BadResponse(e.to_string()))?;
    let mut messages = match status {
        PullStatus::Found => message::decode_messages(&cmd.body, decode)
            .map_err(|e| ClientError::BadResponse(e.to_string()))?,
        _ => Vec::new(),
    };
    if let Some(delta) = header.offset_delta {
        for m in &mut messages {
            m.queue_offset = m.queue_offset.checked_add(delta).ok_or_else(|| {
                ClientError::BadResponse(format!(
                    "offset delta {delta} overflows queue offset {}",
                    m.queue_offset
                ))
            })?;
        }
    }
    if header.next_begin_offset < 0 {
        return Err(ClientError::BadResponse(format!(
            "negative next offset {}",
            header.next_begin_offset
        )));
    }
    Ok(Reply::Pulled(PullResult {
        status,
        next_begin_offset: header.next_begin_offset,
        min_offset: header.min_offset,
        max_offset: header.max_offset,
        messages,
    }))
}

mod consumer;
pub use consumer::{
    retry_topic, DLQ_PREFIX, LOCAL_RETRY_DELAY, LOCK_INTERVAL, LOCK_LIFETIME, LOCK_RETRY,
    PULL_RETRY_DELAY, PULL_SUSPEND, PULL_TIMEOUT, REBALANCE_INTERVAL, REBALANCE_RETRY,
    RETRY_PREFIX, ROUTE_RETRY,
};
use consumer::{ConsumerOp, Consumers};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod consumer_tests;

#[cfg(test)]
mod orderly_tests;

#[cfg(test)]
mod consumer_props;
