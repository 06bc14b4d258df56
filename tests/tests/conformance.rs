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
