//! A small synchronous request helper over `std::net::TcpStream`, for test set-up
//! and checks (admin requests, routes). It is test tooling, not client code: one
//! connection per request, no pipelining, no retries.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use rocketmq_core::protocol::body::{TopicRouteData, PERM_READ, PERM_WRITE};
use rocketmq_core::protocol::code::{RequestCode, ResponseCode};
use rocketmq_core::protocol::command::RemotingCommand;
use rocketmq_core::protocol::frame::{FrameDecoder, SerializeType};
use rocketmq_core::protocol::header::{CreateTopicRequestHeader, GetRouteInfoRequestHeader};

use super::error::HarnessError;

/// Timeout of one request when the caller has no better value.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// UPDATE_BROKER_CONFIG: not named in the core's request codes (admin only).
const UPDATE_BROKER_CONFIG: i32 = 25;

/// The template topic brokers create topics from.
const DEFAULT_TOPIC: &str = "TBW102";

/// A fresh opaque (correlation id).
pub fn next_opaque() -> i32 {
    static NEXT: AtomicI32 = AtomicI32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn code_name(code: i32) -> String {
    let rc = RequestCode::from_value(code);
    rc.name()
        .map_or_else(|| code.to_string(), |n| format!("{n}({code})"))
}

/// Sends `request` to `addr` (`host:port`) on a new connection and returns the
/// response with the same opaque, whatever its code. Fails on connect, IO, decode
/// errors or when `timeout` (for the whole exchange) passes.
pub fn call(
    addr: &str,
    request: &RemotingCommand,
    timeout: Duration,
) -> Result<RemotingCommand, HarnessError> {
    let name = code_name(request.code);
    let fail = |reason: String| HarnessError::Rpc {
        addr: addr.to_owned(),
        request: name.clone(),
        reason,
    };
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let sock: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| fail(format!("bad address: {e}")))?
        .next()
        .ok_or_else(|| fail("address resolves to nothing".into()))?;
    let mut stream = TcpStream::connect_timeout(&sock, remaining())
        .map_err(|e| fail(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let frame = request
        .to_frame(SerializeType::Json)
        .map_err(|e| fail(format!("encode: {e}")))?;
    stream
        .set_write_timeout(Some(remaining()))
        .and_then(|()| stream.write_all(&frame))
        .map_err(|e| fail(format!("send: {e}")))?;

    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(raw) = decoder
            .next_frame()
            .map_err(|e| fail(format!("bad frame: {e}")))?
        {
            let cmd =
                RemotingCommand::decode(raw).map_err(|e| fail(format!("bad command: {e}")))?;
            if cmd.is_response() && cmd.opaque == request.opaque {
                return Ok(cmd);
            }
            // Anything else (a server-initiated request) is not ours; skip it.
        }
        if Instant::now() >= deadline {
            return Err(fail(format!("no response within {timeout:?}")));
        }
        stream
            .set_read_timeout(Some(remaining()))
            .map_err(|e| fail(format!("set timeout: {e}")))?;
        let n = stream.read(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                fail(format!("no response within {timeout:?}"))
            }
            _ => fail(format!("receive: {e}")),
        })?;
        if n == 0 {
            return Err(fail("connection closed before the response".into()));
        }
        decoder.push(&buf[..n]);
    }
}

/// As [`call`], but a response code other than SUCCESS is an error
/// ([`HarnessError::Remote`]).
pub fn call_ok(
    addr: &str,
    request: &RemotingCommand,
    timeout: Duration,
) -> Result<RemotingCommand, HarnessError> {
    let response = call(addr, request, timeout)?;
    if response.response_code() == ResponseCode::SUCCESS {
        Ok(response)
    } else {
        Err(remote_error(addr, request.code, &response))
    }
}

fn remote_error(addr: &str, request: i32, response: &RemotingCommand) -> HarnessError {
    HarnessError::Remote {
        addr: addr.to_owned(),
        request: code_name(request),
        code: response.code,
        remark: response.remark.clone().unwrap_or_default(),
    }
}

/// Asks the NameServer at `namesrv` for `topic`'s route (GET_ROUTEINFO_BY_TOPIC).
/// `Ok(None)` when the NameServer answers TOPIC_NOT_EXIST.
pub fn query_route(
    namesrv: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Option<TopicRouteData>, HarnessError> {
    let request = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, next_opaque())
        .with_header(&GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: Some(true),
        });
    let response = call(namesrv, &request, timeout)?;
    match response.response_code() {
        ResponseCode::SUCCESS => TopicRouteData::decode(&response.body)
            .map(Some)
            .map_err(|e| HarnessError::Rpc {
                addr: namesrv.to_owned(),
                request: code_name(request.code),
                reason: format!("bad route body: {e}"),
            }),
        ResponseCode::TOPIC_NOT_EXIST => Ok(None),
        _ => Err(remote_error(namesrv, request.code, &response)),
    }
}

/// A topic to create with [`create_topic`] (or
/// [`Cluster::create_topic_with`](super::Cluster::create_topic_with)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Readable queues per broker.
    pub read_queues: u32,
    /// Writable queues per broker.
    pub write_queues: u32,
    /// Permission bits (default read and write: 6).
    pub perm: i32,
    /// Whether the topic is ordered.
    pub order: bool,
    /// Topic attributes as `+key=value` items, e.g. `+message.type=FIFO`.
    pub attributes: Vec<String>,
    /// Brokers to create it on, by name; empty means every broker of the cluster.
    pub brokers: Vec<String>,
}

impl TopicSpec {
    /// A read-write topic with `queues` read and write queues on every broker.
    pub fn new(name: impl Into<String>, queues: u32) -> Self {
        Self {
            name: name.into(),
            read_queues: queues,
            write_queues: queues,
            perm: PERM_READ | PERM_WRITE,
            order: false,
            attributes: Vec::new(),
            brokers: Vec::new(),
        }
    }

    /// Restricts the topic to the named brokers.
    pub fn on_brokers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, brokers: I) -> Self {
        self.brokers = brokers.into_iter().map(Into::into).collect();
        self
    }
}

/// Creates or updates a topic on the broker at `broker` (UPDATE_AND_CREATE_TOPIC)
/// and checks the answer. Does not wait for the NameServer route.
pub fn create_topic(broker: &str, spec: &TopicSpec, timeout: Duration) -> Result<(), HarnessError> {
    let queues = |n: u32| {
        i32::try_from(n).map_err(|_| HarnessError::Config(format!("{n} queues is too many")))
    };
    let header = CreateTopicRequestHeader {
        topic: spec.name.clone(),
        default_topic: DEFAULT_TOPIC.to_owned(),
        read_queue_nums: queues(spec.read_queues)?,
        write_queue_nums: queues(spec.write_queues)?,
        perm: spec.perm,
        topic_filter_type: "SINGLE_TAG".to_owned(),
        topic_sys_flag: Some(0),
        order: spec.order,
        attributes: (!spec.attributes.is_empty()).then(|| spec.attributes.join(",")),
        force: Some(false),
    };
    let request = RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC, next_opaque())
        .with_header(&header);
    call_ok(broker, &request, timeout).map(drop)
}

/// Changes broker settings at run time (UPDATE_BROKER_CONFIG, code 25): `body` is
/// `key=value` lines. The broker also rewrites its config file with every current
/// setting.
pub fn update_broker_config(
    broker: &str,
    properties: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), HarnessError> {
    let body: String = properties
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    let request =
        RemotingCommand::request(RequestCode::from_value(UPDATE_BROKER_CONFIG), next_opaque())
            .with_body(body.into_bytes());
    call_ok(broker, &request, timeout).map(drop)
}
