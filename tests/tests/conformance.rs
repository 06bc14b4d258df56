//! The conformance suite on every runtime, against the real broker (one shared
//! cluster per test binary; each test uses its own topics and groups).
//!
//! Needs `java` and (first run) `mvn` with access to Maven Central; fails, loudly,
//! without them.

use rocketmq_tests::conformance::{self, AsyncStd, Blocking, Runtime, Smol, Tokio};
use rocketmq_tests::harness;

const MESSAGES: usize = 1000;

fn round_trip<R: Runtime>() {
    let cluster = harness::shared();
    let topic = format!("RoundTrip-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("create topic");
    let r = conformance::round_trip::<R>(&cluster.namesrv_addr(), &topic, MESSAGES);
    eprintln!(
        "[{}] {} messages: sent in {:?} ({:.0}/s), pulled in {:?}",
        R::NAME,
        r.messages,
        r.send,
        r.messages as f64 / r.send.as_secs_f64(),
        r.pull
    );
}

#[test]
fn round_trip_tokio() {
    round_trip::<Tokio>();
}

#[test]
fn round_trip_async_std() {
    round_trip::<AsyncStd>();
}

#[test]
fn round_trip_smol() {
    round_trip::<Smol>();
}

#[test]
fn round_trip_blocking() {
    round_trip::<Blocking>();
}

fn shared_clients<R: Runtime>() {
    let cluster = harness::shared();
    let topic = format!("Shared-{}", R::NAME);
    cluster.create_topic(&topic, 1).expect("create topic");
    conformance::shared_clients::<R>(&cluster.namesrv_addr(), &topic);
}

#[test]
fn shared_clients_tokio() {
    shared_clients::<Tokio>();
}

#[test]
fn shared_clients_async_std() {
    shared_clients::<AsyncStd>();
}

#[test]
fn shared_clients_smol() {
    shared_clients::<Smol>();
}

#[test]
fn shared_clients_blocking() {
    shared_clients::<Blocking>();
}

fn send_kinds<R: Runtime>() {
    let cluster = harness::shared();
    let topic = format!("SendKinds-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("create topic");
    conformance::send_kinds::<R>(&cluster.namesrv_addr(), &topic);
}

#[test]
fn send_kinds_tokio() {
    send_kinds::<Tokio>();
}

#[test]
fn send_kinds_async_std() {
    send_kinds::<AsyncStd>();
}

#[test]
fn send_kinds_smol() {
    send_kinds::<Smol>();
}

#[test]
fn send_kinds_blocking() {
    send_kinds::<Blocking>();
}

/// Messages the Java client wrote with each compression type, pulled and decoded
/// by every runtime.
#[test]
fn java_compressed_messages_decode_on_every_runtime() {
    let cluster = harness::shared();
    for compression in ["ZLIB", "LZ4", "ZSTD"] {
        let topic = format!("JavaCompressed-{compression}");
        cluster.create_topic(&topic, 2).expect("create topic");
        let sent = conformance::java_send_compressed(cluster, &topic, compression, 20);
        assert_eq!(sent.len(), 20);
        let ns = cluster.namesrv_addr();
        let counts = [
            conformance::pull_java_messages::<Tokio>(&ns, &topic, &sent),
            conformance::pull_java_messages::<AsyncStd>(&ns, &topic, &sent),
            conformance::pull_java_messages::<Smol>(&ns, &topic, &sent),
            conformance::pull_java_messages::<Blocking>(&ns, &topic, &sent),
        ];
        // Even-indexed bodies are over 4 KiB: the Java producer compressed those.
        assert_eq!(
            counts, [10; 4],
            "{compression}: compressed messages seen per runtime"
        );
    }
}

/// What every runtime's producer sends (zlib, lz4 and zstd over 4 KiB, plain
/// under it), the real Java push consumer receives intact: body, tags, keys and
/// properties.
#[test]
fn java_consumer_receives_what_every_runtime_sends() {
    use rocketmq_core::protocol::compress::CompressionType;
    let cluster = harness::shared();
    let topic = "ForJava";
    cluster.create_topic(topic, 4).expect("create topic");
    let ns = cluster.namesrv_addr();
    let mut sent = std::collections::HashMap::new();
    sent.extend(conformance::send_for_java::<Tokio>(
        &ns,
        topic,
        CompressionType::Zlib,
        10,
    ));
    sent.extend(conformance::send_for_java::<AsyncStd>(
        &ns,
        topic,
        CompressionType::Lz4,
        10,
    ));
    sent.extend(conformance::send_for_java::<Smol>(
        &ns,
        topic,
        CompressionType::Zstd,
        10,
    ));
    sent.extend(conformance::send_for_java::<Blocking>(
        &ns,
        topic,
        CompressionType::Zlib,
        10,
    ));
    let consumed = conformance::java_consume(cluster, topic, sent.len());
    assert_eq!(consumed.len(), sent.len());
    let mut compressed = 0;
    for got in consumed {
        let id = &got.msg_id;
        let message = sent
            .get(id)
            .unwrap_or_else(|| panic!("Java got a message we did not send: {id}"));
        assert_eq!(got.body, message.body.to_vec(), "body of {id}");
        for (k, v) in &message.properties {
            assert_eq!(got.properties.get(k), Some(v), "property {k} of {id}");
        }
        // Java clears the compressed bit after inflating and keeps the type bits.
        if got.sys_flag & 0x700 != 0 {
            compressed += 1;
        }
    }
    assert_eq!(
        compressed, 20,
        "the 20 bodies over 4 KiB were sent compressed"
    );
}

/// The blocking adapter's asynchronous send: many sends in flight from one
/// thread, each result collected later.
#[test]
fn blocking_async_sends() {
    let cluster = harness::shared();
    let topic = "BlockingAsync";
    cluster.create_topic(topic, 4).expect("create topic");
    let client = rocketmq_blocking::Client::start(conformance::config(&cluster.namesrv_addr()));
    let pending: Vec<_> = (0..200)
        .map(|i| client.send_async("async-producer", conformance::test_message(topic, i)))
        .collect();
    let mut ids: Vec<String> = pending
        .into_iter()
        .map(|p| p.wait().expect("async send").msg_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    client.shutdown();
}
