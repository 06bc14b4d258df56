//! The push consumer against a real broker.
//!
//! Needs `java` and (first run) `mvn` with access to Maven Central; fails, loudly,
//! without them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_core::consumer::{ConsumeFrom, ConsumeResult};
use rocketmq_core::protocol::message::Message;
use rocketmq_tests::harness::shared;

#[test]
fn tokio_consumer_receives_every_message() {
    let cluster = shared();
    let topic = "ConsumeSmoke";
    cluster.create_topic(topic, 8).expect("topic");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let producer = rocketmq_tokio::Client::start(rocketmq_tokio::ClientConfig {
            name_servers: vec![cluster.namesrv_addr()],
            ..rocketmq_tokio::ClientConfig::default()
        });
        for i in 0..1000 {
            producer
                .send("smoke-producer", Message::new(topic, format!("m{i}")))
                .await
                .expect("send");
        }
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let seen2 = seen.clone();
        let consumer = rocketmq_tokio::PushConsumer::builder("smoke-consumer")
            .name_server(&cluster.namesrv_addr())
            .subscribe(topic, "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .start(
                move |msgs: &[rocketmq_core::protocol::message::MessageExt],
                      _: &rocketmq_core::consumer::ConsumeContext| {
                    for m in msgs {
                        seen2.lock().unwrap().insert(m.body.clone());
                    }
                    ConsumeResult::Success
                },
            )
            .await
            .expect("start");
        let started = Instant::now();
        while seen.lock().unwrap().len() < 1000 && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = consumer.stats().await.expect("stats");
        eprintln!("{stats:?}");
        assert_eq!(
            seen.lock().unwrap().len(),
            1000,
            "after {:?}",
            started.elapsed()
        );
        eprintln!("all 1000 after {:?}", started.elapsed());
        consumer.shutdown().await.expect("shutdown");
        producer.shutdown().await;
    });
}
