//! The core's share of one synchronous send: the call goes in, the request frame
//! comes out, the broker's response frame (a JSON header, as a Java broker writes
//! it) goes in and the typed result comes out. No sockets, no runtime: this is the
//! user-space CPU a send costs in the state machine, which the whole-client bench
//! (`tests/src/bin/bench.rs`) measures together with the kernel and the adapter.
//!
//! Run: `cargo bench -p rocketmq-core --bench send`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rocketmq_core::protocol::body::{BrokerData, QueueData, TopicRouteData, PERM_READ, PERM_WRITE};
use rocketmq_core::protocol::code::{RequestCode, ResponseCode};
use rocketmq_core::protocol::command::RemotingCommand;
use rocketmq_core::protocol::frame::{decode_frame, SerializeType, DEFAULT_MAX_FRAME_LEN};
use rocketmq_core::protocol::header::SendMessageResponseHeader;
use rocketmq_core::protocol::message::Message;
use rocketmq_core::{Call, Client, ClientConfig, ConnId, Input, Output, QueueSelector, Reply};

const TOPIC: &str = "BenchTopic";
const BROKER: &str = "127.0.0.1:10911";

fn route() -> TopicRouteData {
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
            read_queue_nums: 8,
            write_queue_nums: 8,
            topic_sys_flag: 0,
        }],
        ..TopicRouteData::default()
    }
}

/// The response a 5.3 broker writes for a stored message, JSON header included.
fn send_response(opaque: i32) -> Bytes {
    let mut response = RemotingCommand::response(ResponseCode::SUCCESS, opaque, None).with_header(
        &SendMessageResponseHeader {
            msg_id: "7F00000100002A9F00000000001D2C4E".into(),
            queue_id: 3,
            queue_offset: 1_234_567,
            transaction_id: Some("7F0000010D2C18B4AAC2665D7E500001".into()),
            batch_uniq_id: None,
            recall_handle: None,
        },
    );
    response.ext_fields.insert("MSG_REGION", "DefaultRegion");
    response.ext_fields.insert("TRACE_ON", "true");
    response.to_frame(SerializeType::Json).expect("encode")
}

/// A client with its route, producer heartbeat and broker connection in place,
/// and the opaque its next request will carry.
fn ready_client(now: Instant) -> (Client, ConnId, i32) {
    let mut client = Client::new(ClientConfig::default(), now, 1_732_500_000_000);
    let send = |client: &mut Client| {
        client.call(
            now,
            Call::Send {
                group: "bench".into(),
                message: Message::new(TOPIC, "warm"),
                selector: QueueSelector::RoundRobin,
            },
            None,
        )
    };
    send(&mut client);
    let mut broker = None;
    let mut last_opaque = 0;
    let mut replied = false;
    while !replied {
        let Some(output) = client.poll_output(now) else {
            panic!("the client stopped before the first send was answered");
        };
        match output {
            Output::Connect { conn, addr } => {
                if addr == BROKER {
                    broker = Some(conn);
                }
                client.handle_input(now, Input::Connected(conn));
            }
            Output::Transmit { conn, data } => {
                let request = RemotingCommand::decode(
                    decode_frame(data, DEFAULT_MAX_FRAME_LEN).expect("frame"),
                )
                .expect("command");
                last_opaque = request.opaque;
                let response = match request.request_code() {
                    RequestCode::GET_ROUTEINFO_BY_TOPIC => {
                        RemotingCommand::response(ResponseCode::SUCCESS, request.opaque, None)
                            .with_body(route().encode())
                            .to_frame(SerializeType::Json)
                            .expect("encode")
                    }
                    RequestCode::SEND_MESSAGE | RequestCode::SEND_MESSAGE_V2 => {
                        send_response(request.opaque)
                    }
                    _ => RemotingCommand::response(ResponseCode::SUCCESS, request.opaque, None)
                        .to_frame(SerializeType::Json)
                        .expect("encode"),
                };
                client.handle_input(now, Input::Received(conn, BytesMut::from(&response[..])));
            }
            Output::Reply { result, .. } => {
                assert!(matches!(result, Ok(Reply::Sent(_))), "{result:?}");
                replied = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (
        client,
        broker.expect("a broker connection"),
        last_opaque + 1,
    )
}

fn bench_send(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)] // the bench's own virtual origin
    let now = Instant::now();
    let body = Bytes::from(vec![b'r'; 1024]);
    let mut group = c.benchmark_group("send");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sync send, 1 KiB, JSON response", |b| {
        let (mut client, broker, mut next_opaque) = ready_client(now);
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // Responses for the coming opaques are built before the clock runs.
                let chunk = left.min(4096);
                let responses: Vec<BytesMut> = (0..chunk as i32)
                    .map(|i| BytesMut::from(&send_response(next_opaque + i)[..]))
                    .collect();
                #[allow(clippy::disallowed_methods)] // measuring the bench itself
                let start = Instant::now();
                for response in responses {
                    client.call(
                        now,
                        Call::Send {
                            group: "bench".into(),
                            message: Message::new(TOPIC, body.clone()).with_tags("bench"),
                            selector: QueueSelector::RoundRobin,
                        },
                        None,
                    );
                    while let Some(output) = client.poll_output(now) {
                        if let Output::Transmit { data, .. } = output {
                            black_box(data);
                        }
                    }
                    client.handle_input(now, Input::Received(broker, response));
                    let reply = client.poll_output(now);
                    assert!(matches!(
                        reply,
                        Some(Output::Reply {
                            result: Ok(Reply::Sent(_)),
                            ..
                        })
                    ));
                }
                elapsed += start.elapsed();
                next_opaque += chunk as i32;
                left -= chunk;
            }
            elapsed
        });
    });
    group.finish();
}

criterion_group!(benches, bench_send);
criterion_main!(benches);
