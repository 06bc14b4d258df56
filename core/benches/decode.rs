//! Decoding a pull body: 32 stored messages with 128 B and with 1 KiB bodies, each
//! with the properties a Java producer sets (UNIQ_KEY, TAGS, KEYS, WAIT) plus two
//! user properties. Target: at least 5 million 128 B messages per second per core,
//! with no body copied (checked before measuring).
//!
//! Run: `cargo bench -p rocketmq-core --bench decode`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rocketmq_core::protocol::message::{
    body_crc, decode_messages, encode_properties, encode_stored, DecodeOptions, MessageExt,
    MessageVersion, Properties,
};

fn pull_body(count: usize, body_len: usize) -> Bytes {
    let mut out = BytesMut::new();
    for i in 0..count {
        let body: Vec<u8> = (0..body_len).map(|j| (i + j) as u8).collect();
        let uniq = format!("7F0000010D2C18B4AAC2665D7E50{i:04X}");
        let keys = format!("order-{i} user-{}", i * 7);
        let mut props = String::new();
        encode_properties(
            [
                ("UNIQ_KEY", uniq.as_str()),
                ("TAGS", "TagA"),
                ("KEYS", keys.as_str()),
                ("WAIT", "true"),
                ("region", "eu-west-1"),
                ("traceId", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ],
            &mut props,
        );
        let msg = MessageExt {
            topic: ByteString::from_static("BenchmarkTopic"),
            flag: 0,
            body_crc: body_crc(&body),
            body: Bytes::from(body),
            properties: Properties::parse(ByteString::from(props)),
            queue_id: 3,
            queue_offset: 1_000 + i as i64,
            commit_log_offset: 1 << 30,
            sys_flag: 0,
            born_timestamp: 1_732_500_000_000,
            born_host: "10.0.0.5:54321".parse().unwrap(),
            store_timestamp: 1_732_500_000_100,
            store_host: "192.168.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            store_size: 0,
            version: MessageVersion::V1,
        };
        encode_stored(&msg, &mut out).unwrap();
    }
    out.freeze()
}

fn decode(c: &mut Criterion) {
    let opts = DecodeOptions::default();
    let mut group = c.benchmark_group("decode_pull_body");
    for body_len in [128usize, 1024] {
        let body = pull_body(32, body_len);
        // No body is copied: each one points into the pull body.
        let msgs = decode_messages(&body, &opts).unwrap();
        assert_eq!(msgs.len(), 32);
        let span = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        assert!(msgs
            .iter()
            .all(|m| span.contains(&(m.body.as_ptr() as usize))));

        group.throughput(Throughput::Elements(32));
        group.bench_function(format!("32x{body_len}B/messages"), |b| {
            b.iter(|| decode_messages(black_box(&body), &opts).unwrap())
        });
        // What a consumer reads of each message anyway: the tag for the client-side
        // filter and the unique key for its message id. Properties are read in place,
        // so this shows the lookup cost that decoding does not pay up front.
        group.bench_function(format!("32x{body_len}B/messages+tag+key"), |b| {
            b.iter(|| {
                let msgs = decode_messages(black_box(&body), &opts).unwrap();
                let mut n = 0;
                for m in &msgs {
                    n += m.tags().map_or(0, str::len) + m.property("UNIQ_KEY").map_or(0, str::len);
                }
                (msgs, n)
            })
        });
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("32x{body_len}B/bytes"), |b| {
            b.iter(|| decode_messages(black_box(&body), &opts).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
