//! The client driven by scripted frames and a virtual clock: no sockets.

use super::*;
use crate::producer::MAX_MESSAGE_SIZE;
use crate::protocol::body::{BrokerData, HeartbeatData, QueueData, PERM_READ, PERM_WRITE};
use crate::protocol::frame::decode_frame;
use crate::protocol::header::CommandHeader;
use crate::protocol::header::UnregisterClientRequestHeader;
use crate::protocol::message;
use crate::protocol::message::{encode_stored, MessageVersion, Properties};

pub(super) const NS: &str = "127.0.0.1:9876";
pub(super) const BROKER: &str = "127.0.0.1:10911";

pub(super) struct Harness {
    pub(super) client: Client,
    pub(super) now: Instant,
}

impl Harness {
    pub(super) fn new() -> Self {
        // Any origin will do: the client only sees instants passed in, and the test
        // advances this one by hand.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Self {
            client: Client::new(ClientConfig::default(), now, 1_732_500_000_000),
            now,
        }
    }

    pub(super) fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.client.poll_output(self.now)).collect()
    }

    pub(super) fn input(&mut self, input: Input) -> Vec<Output> {
        self.client.handle_input(self.now, input);
        self.outputs()
    }

    pub(super) fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        self.input(Input::Timeout)
    }

    /// Answers a request frame with a response command, fed byte by byte.
    pub(super) fn respond(&mut self, conn: ConnId, response: RemotingCommand) -> Vec<Output> {
        let frame = response.to_frame(SerializeType::RocketMq).unwrap();
        let mut out = Vec::new();
        for b in frame.iter() {
            out.extend(self.input(Input::Received(conn, BytesMut::from(&[*b][..]))));
        }
        out
    }
}

pub(super) fn request_of(output: &Output) -> (ConnId, RemotingCommand) {
    match output {
        Output::Transmit { conn, data } => (
            *conn,
            RemotingCommand::decode(decode_frame(data.clone(), DEFAULT_MAX_FRAME_LEN).unwrap())
                .unwrap(),
        ),
        other => panic!("expected a transmit, got {other:?}"),
    }
}

pub(super) fn connect_of(output: &Output) -> (ConnId, String) {
    match output {
        Output::Connect { conn, addr } => (*conn, addr.clone()),
        other => panic!("expected a connect, got {other:?}"),
    }
}

pub(super) fn route() -> TopicRouteData {
    TopicRouteData {
        broker_datas: vec![BrokerData {
            broker_addrs: [(0, BROKER.to_owned())].into_iter().collect(),
            broker_name: "broker-a".into(),
            cluster: "DefaultCluster".into(),
            ..BrokerData::default()
        }],
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            perm: PERM_READ | PERM_WRITE,
            read_queue_nums: 4,
            write_queue_nums: 4,
            topic_sys_flag: 0,
        }],
        ..TopicRouteData::default()
    }
}

pub(super) fn ok(opaque: i32) -> RemotingCommand {
    RemotingCommand::response(ResponseCode::SUCCESS, opaque, None)
}

#[test]
fn route_query_round_trip() {
    let mut h = Harness::new();
    let call = h
        .client
        .call(h.now, Call::QueryRoute { topic: "T".into() }, None);
    let out = h.outputs();
    assert_eq!(out.len(), 1);
    let (conn, addr) = connect_of(&out[0]);
    assert_eq!(addr, NS);
    let out = h.input(Input::Connected(conn));
    let (_, req) = request_of(&out[0]);
    assert_eq!(req.request_code(), RequestCode::GET_ROUTEINFO_BY_TOPIC);
    assert_eq!(req.version, CLIENT_VERSION);
    let header: GetRouteInfoRequestHeader = req.header().unwrap();
    assert_eq!(header.topic, "T");
    let out = h.respond(conn, ok(req.opaque).with_body(route().encode()));
    match &out[..] {
        [Output::Reply {
            call: c,
            result: Ok(Reply::Route(r)),
        }] => {
            assert_eq!(*c, call);
            assert_eq!(r.master_addr("broker-a"), Some(BROKER));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_secs(30)),
        "only the route refresh is pending"
    );
}

#[test]
fn timed_out_request_fails_and_its_late_response_is_dropped() {
    let mut h = Harness::new();
    let call = h.client.call(
        h.now,
        Call::QueryRoute { topic: "T".into() },
        Some(Duration::from_millis(500)),
    );
    let (conn, _) = connect_of(&h.outputs()[0]);
    let (_, req) = request_of(&h.input(Input::Connected(conn))[0]);
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_millis(500))
    );
    assert!(h.advance(Duration::from_millis(499)).is_empty(), "not yet");
    let out = h.advance(Duration::from_millis(1));
    assert!(
        matches!(&out[..], [Output::Reply { call: c, result: Err(ClientError::Timeout(_)) }] if *c == call),
        "{out:?}"
    );
    assert!(h
        .respond(conn, ok(req.opaque).with_body(route().encode()))
        .is_empty());
    assert_eq!(h.client.poll_timeout(), None);
}

#[test]
fn a_send_waiting_for_its_route_times_out_with_its_own_timeout() {
    let mut h = Harness::new();
    let timeout = Duration::from_millis(250);
    let call = h.client.call(
        h.now,
        Call::Send {
            group: "G".into(),
            message: Message::new("T", "x"),
            selector: QueueSelector::RoundRobin,
        },
        Some(timeout),
    );
    let (conn, _) = connect_of(&h.outputs()[0]);
    h.input(Input::Connected(conn)); // the route query goes out, and is not answered
    assert!(h.advance(Duration::from_millis(249)).is_empty(), "not yet");
    let out = h.advance(Duration::from_millis(1));
    assert!(
        matches!(&out[..], [Output::Reply { call: c, result: Err(ClientError::Timeout(t)) }] if *c == call && *t == timeout),
        "{out:?}"
    );
}

#[test]
fn send_waits_for_the_route_then_goes_to_the_master() {
    let mut h = Harness::new();
    let message = Message::new("T", Bytes::from(vec![b'x'; 5000]))
        .with_tags("TagA")
        .with_keys(["k1"]);
    let call = h.client.call(
        h.now,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    let (ns, _) = connect_of(&h.outputs()[0]);
    let (_, req) = request_of(&h.input(Input::Connected(ns))[0]);
    let out = h.respond(ns, ok(req.opaque).with_body(route().encode()));
    let (broker, addr) = connect_of(&out[0]);
    assert_eq!(addr, BROKER);
    let (_, send) = request_of(&h.input(Input::Connected(broker))[0]);
    assert_eq!(send.request_code(), RequestCode::SEND_MESSAGE_V2);
    let header = SendMessageRequestHeaderV2::read(&send.ext_fields)
        .unwrap()
        .0;
    assert_eq!(header.topic, "T");
    assert_eq!(header.born_timestamp, 1_732_500_000_000);
    assert_eq!(
        header.sys_flag,
        CompressionType::Zlib.sys_flag(),
        "5000 B is over the 4 KiB threshold"
    );
    assert_eq!(
        &CompressionType::Zlib
            .decompress(&send.body, 1 << 20)
            .unwrap()[..],
        &[b'x'; 5000][..]
    );
    let props = Properties::parse(header.properties.unwrap().into());
    assert_eq!(props.get("TAGS"), Some("TagA"));
    let uniq = props.get("UNIQ_KEY").unwrap().to_owned();
    let response = ok(send.opaque).with_header(&SendMessageResponseHeader {
        msg_id: "C0A8000100002A9F0000000000001234".into(),
        queue_id: header.queue_id,
        queue_offset: 7,
        ..SendMessageResponseHeader::default()
    });
    let out = h.respond(broker, response);
    match &out[..] {
        [Output::Reply {
            call: c,
            result: Ok(Reply::Sent(r)),
        }] => {
            assert_eq!(*c, call);
            assert_eq!(r.msg_id, uniq);
            assert_eq!(r.queue_offset, 7);
            assert_eq!(r.status, SendStatus::Ok);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pull_decodes_messages_and_a_closed_connection_fails_what_waits_on_it() {
    let mut h = Harness::new();
    let q = MessageQueue::new("T", "broker-a", 2);
    let pull = |h: &mut Harness| {
        h.client.call(
            h.now,
            Call::Pull {
                group: "g".into(),
                queue: q.clone(),
                offset: 0,
                max_messages: 32,
            },
            None,
        )
    };
    let first = pull(&mut h);
    let (ns, _) = connect_of(&h.outputs()[0]);
    let (_, req) = request_of(&h.input(Input::Connected(ns))[0]);
    let (broker, _) = connect_of(&h.respond(ns, ok(req.opaque).with_body(route().encode()))[0]);
    let (_, preq) = request_of(&h.input(Input::Connected(broker))[0]);
    let header: PullMessageRequestHeader = preq.header().unwrap();
    assert_eq!(
        (header.queue_id, header.queue_offset, header.max_msg_nums),
        (2, 0, 32)
    );

    let mut body = BytesMut::new();
    let stored = MessageExt {
        topic: "T".into(),
        flag: 0,
        body: Bytes::from_static(b"hello"),
        properties: Properties::parse("TAGS\u{1}a\u{2}".into()),
        queue_id: 2,
        queue_offset: 0,
        commit_log_offset: 0,
        sys_flag: 0,
        born_timestamp: 1,
        born_host: "127.0.0.1:1".parse().unwrap(),
        store_timestamp: 2,
        store_host: BROKER.parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body_crc: 0,
        store_size: 0,
        version: MessageVersion::V1,
    };
    encode_stored(&stored, &mut body).unwrap();
    let response = ok(preq.opaque)
        .with_header(&PullMessageResponseHeader {
            next_begin_offset: 1,
            max_offset: 1,
            ..PullMessageResponseHeader::default()
        })
        .with_body(body.freeze());
    match &h.respond(broker, response)[..] {
        [Output::Reply {
            call,
            result: Ok(Reply::Pulled(r)),
        }] => {
            assert_eq!(*call, first);
            assert_eq!(r.status, PullStatus::Found);
            assert_eq!(r.next_begin_offset, 1);
            assert_eq!(&r.messages[0].body[..], b"hello");
        }
        other => panic!("{other:?}"),
    }

    // The route is cached now: the next pull goes straight to the open connection.
    let second = pull(&mut h);
    let (conn, _) = request_of(&h.outputs()[0]);
    assert_eq!(conn, broker);
    let out = h.input(Input::Closed(broker));
    assert!(
        matches!(&out[..], [Output::Reply { call, result: Err(ClientError::ConnectionClosed { .. }) }] if *call == second),
        "{out:?}"
    );
}

#[test]
fn server_requests_are_answered_and_bad_frames_close_only_their_connection() {
    let mut h = Harness::new();
    let call = h
        .client
        .call(h.now, Call::QueryRoute { topic: "T".into() }, None);
    let (conn, _) = connect_of(&h.outputs()[0]);
    h.input(Input::Connected(conn));

    let unknown = RemotingCommand::request(RequestCode::Unknown(9999), 77);
    let (_, answer) = request_of(&h.respond(conn, unknown)[0]);
    assert!(answer.is_response());
    assert_eq!(answer.opaque, 77);
    assert_eq!(
        answer.response_code(),
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED
    );
    let oneway =
        RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, 78).with_oneway();
    assert!(h.respond(conn, oneway).is_empty());

    let mut garbage = BytesMut::new();
    garbage.extend_from_slice(&(-5i32).to_be_bytes());
    let out = h.input(Input::Received(conn, garbage));
    assert!(matches!(out[0], Output::Close(c) if c == conn), "{out:?}");
    assert!(
        matches!(&out[1], Output::Reply { call: c, result: Err(ClientError::ConnectionClosed { .. }) } if *c == call),
        "{out:?}"
    );
    assert!(h.client.connections().is_empty());
}

#[test]
fn frames_wait_for_the_connection_and_go_out_in_order() {
    let mut h = Harness::new();
    let a = h
        .client
        .call(h.now, Call::QueryRoute { topic: "A".into() }, None);
    let b = h
        .client
        .call(h.now, Call::QueryRoute { topic: "B".into() }, None);
    let out = h.outputs();
    assert_eq!(out.len(), 1, "one connection for both: {out:?}");
    let (conn, _) = connect_of(&out[0]);
    let out = h.input(Input::Connected(conn));
    let topics: Vec<String> = out
        .iter()
        .map(|o| {
            request_of(o)
                .1
                .header::<GetRouteInfoRequestHeader>()
                .unwrap()
                .topic
        })
        .collect();
    assert_eq!(topics, ["A", "B"]);
    assert!(
        h.input(Input::ConnectFailed(ConnId(999), "nobody".into()))
            .is_empty(),
        "unknown connection"
    );
    let out = h.input(Input::Closed(conn));
    let failed: Vec<CallId> = out
        .iter()
        .map(|o| match o {
            Output::Reply {
                call,
                result: Err(ClientError::ConnectionClosed { .. }),
            } => *call,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(failed, [a, b]);
}

#[test]
fn empty_and_oversized_bodies_are_refused_before_anything_is_sent() {
    let mut h = Harness::new();
    for body in [Bytes::new(), Bytes::from(vec![0u8; MAX_MESSAGE_SIZE + 1])] {
        let call = h.client.call(
            h.now,
            Call::Send {
                group: "pg".into(),
                message: Message::new("T", body),
                selector: QueueSelector::RoundRobin,
            },
            None,
        );
        let out = h.outputs();
        assert!(
            matches!(&out[..], [Output::Reply { call: c, result: Err(ClientError::InvalidMessage(_)) }] if *c == call),
            "{out:?}"
        );
    }
}

#[test]
fn a_failed_connect_fails_the_calls_waiting_for_it() {
    let mut h = Harness::new();
    let message = Message::new("T", &b"x"[..]);
    let call = h.client.call(
        h.now,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    let (ns, _) = connect_of(&h.outputs()[0]);
    let out = h.input(Input::ConnectFailed(ns, "refused".into()));
    assert!(
        matches!(&out[..], [Output::Reply { call: c, result: Err(ClientError::ConnectFailed { reason, .. }) }] if *c == call && reason == "refused"),
        "{out:?}"
    );
    assert_eq!(h.client.poll_timeout(), None);
}

fn route_with(broker: &str) -> TopicRouteData {
    let mut r = route();
    r.broker_datas[0].broker_addrs.insert(0, broker.to_owned());
    r
}

/// Runs a send to topic `T` through route query and connect, answering the route
/// with `route`; returns the broker connection and every request sent on it.
fn send_until_broker(
    h: &mut Harness,
    ns_conn: Option<ConnId>,
    route: TopicRouteData,
) -> (ConnId, Vec<RemotingCommand>) {
    let message = Message::new("T", &b"x"[..]);
    h.client.call(
        h.now,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    let mut out = h.outputs();
    let ns = match ns_conn {
        Some(ns) => ns,
        None => {
            let (ns, _) = connect_of(&out[0]);
            out = h.input(Input::Connected(ns));
            ns
        }
    };
    let (_, req) = request_of(&out[0]);
    let out = h.respond(ns, ok(req.opaque).with_body(route.encode()));
    let (broker, _) = connect_of(&out[0]);
    let sent = h
        .input(Input::Connected(broker))
        .iter()
        .map(|o| request_of(o).1)
        .collect();
    (broker, sent)
}

#[test]
fn routes_are_refreshed_and_a_moved_broker_is_followed() {
    let mut h = Harness::new();
    let (_, sent) = send_until_broker(&mut h, None, route());
    assert_eq!(sent[0].request_code(), RequestCode::SEND_MESSAGE_V2);
    let ns = ConnId(1);
    // 30 s later the route is asked for again, on the open name server connection
    // (the unanswered send has timed out by then).
    let out = h.advance(Duration::from_secs(30));
    let transmit = out
        .iter()
        .find(|o| matches!(o, Output::Transmit { .. }))
        .unwrap();
    let (conn, refresh) = request_of(transmit);
    assert_eq!(conn, ns);
    assert_eq!(refresh.request_code(), RequestCode::GET_ROUTEINFO_BY_TOPIC);
    // The broker moved: the next send connects to its new address.
    let moved = "127.0.0.1:20911";
    assert!(h
        .respond(ns, ok(refresh.opaque).with_body(route_with(moved).encode()))
        .is_empty());
    let message = Message::new("T", &b"y"[..]);
    h.client.call(
        h.now,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    let (_, addr) = connect_of(&h.outputs()[0]);
    assert_eq!(addr, moved);
}

#[test]
fn a_failed_name_server_is_left_for_the_next() {
    let mut h = Harness::new();
    h.client = Client::new(
        ClientConfig {
            name_servers: vec!["10.0.0.1:9876".into(), "10.0.0.2:9876".into()],
            ..ClientConfig::default()
        },
        h.now,
        0,
    );
    let first = h
        .client
        .call(h.now, Call::QueryRoute { topic: "T".into() }, None);
    let (conn, addr) = connect_of(&h.outputs()[0]);
    assert_eq!(addr, "10.0.0.1:9876");
    let out = h.input(Input::ConnectFailed(conn, "refused".into()));
    assert!(matches!(&out[..], [Output::Reply { call, result: Err(_) }] if *call == first));
    h.client
        .call(h.now, Call::QueryRoute { topic: "T".into() }, None);
    let (_, addr) = connect_of(&h.outputs()[0]);
    assert_eq!(addr, "10.0.0.2:9876");
}

#[test]
fn producers_heartbeat_at_once_then_every_30_s_and_unregister() {
    let mut h = Harness::new();
    h.client
        .call(h.now, Call::RegisterProducer { group: "pg".into() }, None);
    let out = h.outputs();
    assert!(
        matches!(
            &out[..],
            [Output::Reply {
                result: Ok(Reply::Done),
                ..
            }]
        ),
        "{out:?}"
    );
    // No broker is known yet; the first route brings one, which gets a heartbeat.
    let (broker, sent) = send_until_broker(&mut h, None, route());
    let heartbeat = |h: &mut Harness| -> Vec<RemotingCommand> {
        h.outputs()
            .iter()
            .filter_map(|o| match o {
                Output::Transmit { .. } => Some(request_of(o).1),
                _ => None,
            })
            .filter(|c| c.request_code() == RequestCode::HEART_BEAT)
            .collect()
    };
    let beats: Vec<&RemotingCommand> = sent
        .iter()
        .filter(|c| c.request_code() == RequestCode::HEART_BEAT)
        .collect();
    assert_eq!(beats.len(), 1, "one heartbeat to the new broker");
    let hb = HeartbeatData::decode(&beats[0].body).unwrap();
    assert_eq!(hb.client_id, h.client.client_id());
    assert_eq!(hb.producer_data_set[0].group_name, "pg");
    assert!(h.client.client_id().starts_with("127.0.0.1@"));
    let opaque = beats[0].opaque;
    h.respond(broker, ok(opaque));

    h.now += Duration::from_secs(30);
    h.client.handle_input(h.now, Input::Timeout);
    assert_eq!(heartbeat(&mut h).len(), 1, "and again 30 s later");

    h.client
        .call(h.now, Call::UnregisterProducer { group: "pg".into() }, None);
    let unregister: Vec<RemotingCommand> = h
        .outputs()
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { .. } => Some(request_of(o).1),
            _ => None,
        })
        .collect();
    assert_eq!(unregister.len(), 1);
    assert_eq!(unregister[0].request_code(), RequestCode::UNREGISTER_CLIENT);
    let header: UnregisterClientRequestHeader = unregister[0].header().unwrap();
    assert_eq!(header.producer_group.as_deref(), Some("pg"));
}

#[test]
fn reconnects_back_off_and_the_backoff_doubles() {
    let mut h = Harness::new();
    // No retries: each failure shows up as the call's result.
    h.client = Client::new(
        ClientConfig {
            send_retries: 0,
            ..ClientConfig::default()
        },
        h.now,
        0,
    );
    let (broker, _) = send_until_broker(&mut h, None, route());
    h.input(Input::Closed(broker));
    let send = |h: &mut Harness| {
        let message = Message::new("T", &b"z"[..]);
        h.client.call(
            h.now,
            Call::Send {
                group: "pg".into(),
                message,
                selector: QueueSelector::RoundRobin,
            },
            Some(Duration::from_secs(10)),
        );
        h.outputs()
    };
    assert!(send(&mut h).is_empty(), "no connect inside the backoff");
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_millis(100))
    );
    let out = h.advance(Duration::from_millis(100));
    let (conn, addr) = connect_of(&out[0]);
    assert_eq!(addr, BROKER);
    // That connect fails too: the next waits twice as long.
    let out = h.input(Input::ConnectFailed(conn, "refused".into()));
    assert!(matches!(
        &out[..],
        [Output::Reply {
            result: Err(ClientError::ConnectFailed { .. }),
            ..
        }]
    ));
    assert!(send(&mut h).is_empty());
    assert!(h.advance(Duration::from_millis(199)).is_empty());
    let out = h.advance(Duration::from_millis(1));
    let (conn, _) = connect_of(&out[0]);
    // Once connected, the queued send goes out and the backoff resets.
    let out = h.input(Input::Connected(conn));
    assert_eq!(
        request_of(&out[0]).1.request_code(),
        RequestCode::SEND_MESSAGE_V2
    );
}

fn two_brokers() -> TopicRouteData {
    let mut r = route();
    let mut b = r.broker_datas[0].clone();
    b.broker_name = "broker-b".into();
    b.broker_addrs.insert(0, "127.0.0.1:20911".into());
    r.broker_datas.push(b);
    let mut q = r.queue_datas[0].clone();
    q.broker_name = "broker-b".into();
    r.queue_datas.push(q);
    r
}

/// Starts a call, answers its route query with `route`, and returns what follows.
fn with_route(h: &mut Harness, call: Call, route: TopicRouteData) -> (CallId, Vec<Output>) {
    let id = h.client.call(h.now, call, None);
    let (ns, _) = connect_of(&h.outputs()[0]);
    let (_, req) = request_of(&h.input(Input::Connected(ns))[0]);
    let out = h.respond(ns, ok(req.opaque).with_body(route.encode()));
    (id, out)
}

#[test]
fn a_failed_send_is_retried_on_the_other_broker() {
    let mut h = Harness::new();
    let message = Message::new("T", &b"x"[..]);
    let (call, out) = with_route(
        &mut h,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        two_brokers(),
    );
    let (first, first_addr) = connect_of(&out[0]);
    let (_, send1) = request_of(&h.input(Input::Connected(first))[0]);
    // The broker answers SYSTEM_BUSY: retryable.
    let out = h.respond(
        first,
        RemotingCommand::response(
            ResponseCode::SYSTEM_BUSY,
            send1.opaque,
            Some("[REJECTREQUEST]".into()),
        ),
    );
    let connect = out
        .iter()
        .find(|o| matches!(o, Output::Connect { .. }))
        .expect("a second broker");
    let (second, second_addr) = connect_of(connect);
    assert_ne!(first_addr, second_addr);
    let (_, send2) = request_of(&h.input(Input::Connected(second))[0]);
    let h1 = SendMessageRequestHeaderV2::read(&send1.ext_fields)
        .unwrap()
        .0;
    let h2 = SendMessageRequestHeaderV2::read(&send2.ext_fields)
        .unwrap()
        .0;
    assert_ne!(h1.broker_name, h2.broker_name);
    assert_eq!(
        h1.properties, h2.properties,
        "the same message, same unique id"
    );
    // The second attempt's connection drops: one attempt is left, on the first broker.
    let out = h.input(Input::Closed(second));
    let (_, send3) = request_of(
        out.iter()
            .find(|o| matches!(o, Output::Transmit { .. }))
            .expect("third attempt"),
    );
    let response = ok(send3.opaque).with_header(&SendMessageResponseHeader {
        msg_id: "X".into(),
        queue_id: 0,
        queue_offset: 3,
        ..SendMessageResponseHeader::default()
    });
    let out = h.respond(first, response);
    assert!(
        matches!(&out[..], [Output::Reply { call: c, result: Ok(Reply::Sent(r)) }] if *c == call && r.queue_offset == 3),
        "{out:?}"
    );
}

#[test]
fn errors_that_retrying_cannot_fix_complete_the_call() {
    let mut h = Harness::new();
    let message = Message::new("T", &b"x"[..]);
    let (call, out) = with_route(
        &mut h,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        two_brokers(),
    );
    let (conn, _) = connect_of(&out[0]);
    let (_, send) = request_of(&h.input(Input::Connected(conn))[0]);
    let out = h.respond(
        conn,
        RemotingCommand::response(
            ResponseCode::MESSAGE_ILLEGAL,
            send.opaque,
            Some("too big".into()),
        ),
    );
    assert!(
        matches!(&out[..], [Output::Reply { call: c, result: Err(ClientError::Remote { code: ResponseCode::MESSAGE_ILLEGAL, .. }) }] if *c == call),
        "{out:?}"
    );
}

#[test]
fn oneway_and_batch_sends() {
    let mut h = Harness::new();
    let message = Message::new("T", &b"fire"[..]);
    let (call, out) = with_route(
        &mut h,
        Call::SendOneway {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        route(),
    );
    assert!(
        matches!(&out[..], [Output::Connect { .. }, Output::Reply { call: c, result: Ok(Reply::Done) }] if *c == call),
        "{out:?}"
    );
    let (conn, _) = connect_of(&out[0]);
    let (_, oneway) = request_of(&h.input(Input::Connected(conn))[0]);
    assert!(oneway.is_oneway());
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_secs(30)),
        "nothing waits for it"
    );

    let messages: Vec<Message> = (0..3)
        .map(|i| Message::new("T", format!("m{i}")).with_keys([format!("k{i}")]))
        .collect();
    let call = h.client.call(
        h.now,
        Call::SendBatch {
            group: "pg".into(),
            messages: messages.clone(),
            selector: QueueSelector::Hash("k".into()),
        },
        None,
    );
    let (_, batch) = request_of(&h.outputs()[0]);
    assert_eq!(batch.request_code(), RequestCode::SEND_BATCH_MESSAGE);
    let header = SendMessageRequestHeaderV2::read(&batch.ext_fields)
        .unwrap()
        .0;
    assert_eq!(header.batch, Some(true));
    let entries = message::decode_batch(&batch.body).unwrap();
    assert_eq!(entries.len(), 3);
    let uniq: Vec<String> = entries
        .iter()
        .map(|e| e.properties.get("UNIQ_KEY").unwrap().to_owned())
        .collect();
    let response = ok(batch.opaque).with_header(&SendMessageResponseHeader {
        msg_id: "A,B,C".into(),
        queue_id: header.queue_id,
        queue_offset: 10,
        ..SendMessageResponseHeader::default()
    });
    let out = h.respond(conn, response);
    match &out[..] {
        [Output::Reply {
            call: c,
            result: Ok(Reply::Sent(r)),
        }] => {
            assert_eq!(*c, call);
            assert_eq!(r.msg_id, uniq.join(","));
        }
        other => panic!("{other:?}"),
    }
    let bad = h.client.call(
        h.now,
        Call::SendBatch {
            group: "pg".into(),
            messages: vec![],
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    assert!(
        matches!(&h.outputs()[..], [Output::Reply { call: c, result: Err(ClientError::InvalidMessage(_)) }] if *c == bad)
    );
}

#[test]
fn publish_queues_and_delay_level() {
    let mut h = Harness::new();
    let (call, out) = with_route(
        &mut h,
        Call::PublishQueues { topic: "T".into() },
        two_brokers(),
    );
    match &out[..] {
        [Output::Reply {
            call: c,
            result: Ok(Reply::Queues(q)),
        }] => {
            assert_eq!(*c, call);
            assert_eq!(q.len(), 8);
            assert_eq!(q[0], MessageQueue::new("T", "broker-a", 0));
            assert_eq!(q[7], MessageQueue::new("T", "broker-b", 3));
        }
        other => panic!("{other:?}"),
    }
    let message = Message::new("T", &b"later"[..]).with_delay_level(3);
    h.client.call(
        h.now,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    let out = h.outputs();
    let (conn, _) = connect_of(&out[0]);
    let (_, send) = request_of(&h.input(Input::Connected(conn))[0]);
    let header = SendMessageRequestHeaderV2::read(&send.ext_fields)
        .unwrap()
        .0;
    assert_eq!(
        Properties::parse(header.properties.unwrap().into()).get("DELAY"),
        Some("3")
    );
}

#[test]
fn sends_to_a_topic_without_route_use_the_auto_create_template() {
    let mut h = Harness::new();
    let message = Message::new("Fresh", &b"x"[..]);
    h.client.call(
        h.now,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    let (ns, _) = connect_of(&h.outputs()[0]);
    let (_, query) = request_of(&h.input(Input::Connected(ns))[0]);
    let out = h.respond(
        ns,
        RemotingCommand::response(ResponseCode::TOPIC_NOT_EXIST, query.opaque, None),
    );
    let (_, template) = request_of(&out[0]);
    let header: GetRouteInfoRequestHeader = template.header().unwrap();
    assert_eq!(header.topic, DEFAULT_TOPIC);
    let mut tbw = route();
    tbw.queue_datas[0].read_queue_nums = 8;
    tbw.queue_datas[0].write_queue_nums = 8;
    let out = h.respond(ns, ok(template.opaque).with_body(tbw.encode()));
    let (broker, _) = connect_of(&out[0]);
    let (_, send) = request_of(&h.input(Input::Connected(broker))[0]);
    let header = SendMessageRequestHeaderV2::read(&send.ext_fields)
        .unwrap()
        .0;
    assert_eq!(header.topic, "Fresh");
    assert!(
        header.queue_id < 4,
        "at most 4 queues, as Java's defaultTopicQueueNums"
    );
    assert_eq!(header.default_topic, DEFAULT_TOPIC);

    // Without a template either, the send fails at once: nothing spins.
    let message = Message::new("Nowhere", &b"x"[..]);
    let lost = h.client.call(
        h.now,
        Call::Send {
            group: "pg".into(),
            message,
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    let (_, query) = request_of(&h.outputs()[0]);
    let out = h.respond(
        ns,
        RemotingCommand::response(ResponseCode::TOPIC_NOT_EXIST, query.opaque, None),
    );
    let (_, template) = request_of(&out[0]);
    let out = h.respond(
        ns,
        RemotingCommand::response(ResponseCode::TOPIC_NOT_EXIST, template.opaque, None),
    );
    assert!(
        matches!(&out[..], [Output::Reply { call: c, result: Err(ClientError::TopicNotFound(t)) }] if *c == lost && t == "Nowhere"),
        "{out:?}"
    );
}

/// A broker forgets a client with its connection. Found by the simulation
/// (seed 0x5eed0019 of tests/tests/sim.rs, then checking that no queue is
/// pulled by two members once the group settles): a consumer whose link to a
/// broker was cut went on pulling there for up to a heartbeat interval while
/// the other members, told by that broker that it had left, took its queues.
/// As Java 5's channel listener does, a new connection to a broker met before
/// carries a heartbeat first; the first connection does not get a second one.
#[test]
fn a_broker_met_again_gets_a_heartbeat_before_anything_else() {
    let mut h = Harness::new();
    h.client
        .call(h.now, Call::RegisterProducer { group: "pg".into() }, None);
    h.outputs();
    let (broker, sent) = send_until_broker(&mut h, None, route());
    let codes: Vec<RequestCode> = sent.iter().map(RemotingCommand::request_code).collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == RequestCode::HEART_BEAT)
            .count(),
        1,
        "one heartbeat on the first connection: {codes:?}"
    );
    h.input(Input::Closed(broker));
    // The next send connects again (after the reconnect backoff).
    h.client.call(
        h.now,
        Call::Send {
            group: "pg".into(),
            message: Message::new("T", &b"y"[..]),
            selector: QueueSelector::RoundRobin,
        },
        None,
    );
    let mut out = h.outputs();
    for _ in 0..20 {
        if out.iter().any(|o| matches!(o, Output::Connect { .. })) {
            break;
        }
        out = h.advance(Duration::from_millis(500));
    }
    let again = out
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("a new connection to the broker");
    let codes: Vec<RequestCode> = h
        .input(Input::Connected(again))
        .iter()
        .map(|o| request_of(o).1.request_code())
        .collect();
    assert_eq!(
        codes.first(),
        Some(&RequestCode::HEART_BEAT),
        "the heartbeat goes first: {codes:?}"
    );
    assert!(
        codes.contains(&RequestCode::SEND_MESSAGE_V2) || codes.contains(&RequestCode::SEND_MESSAGE),
        "{codes:?}"
    );
}
