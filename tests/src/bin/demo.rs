//! The demo: starts a real RocketMQ NameServer and broker on 127.0.0.1 through the
//! test harness (resolving them from Maven Central on first run), sends messages
//! with the tokio client, consumes every one with a push consumer (an async
//! listener) while showing progress, prints the consumer's stats, and stops the
//! broker.
//!
//! Run: `cargo run -p rocketmq-tests --bin demo` (optionally a message count).

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_core::consumer::{ConsumeContext, ConsumeFrom, ConsumeResult};
use rocketmq_core::protocol::message::{Message, MessageExt};
use rocketmq_tests::harness::{Cluster, ClusterConfig};

const TOPIC: &str = "DemoTopic";
const GROUP: &str = "demo-consumer-group";

/// A one-line progress bar.
fn bar(label: &str, done: usize, total: usize) {
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    print!(
        "\r  {label} [{}{}] {done:>6}/{total}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    );
    let _ = std::io::stdout().flush();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args().nth(1).map_or(Ok(1000), |n| n.parse())?;
    let started = Instant::now();
    println!("starting RocketMQ 5.3.3 (NameServer + 1 broker) on 127.0.0.1 ...");
    let cluster = Cluster::start(ClusterConfig::with_brokers(1))?;
    println!(
        "  name server {}, broker {} ready in {:.1?}",
        cluster.namesrv_addr(),
        cluster.broker(0).addr(),
        started.elapsed()
    );
    cluster.create_topic(TOPIC, 4)?;
    println!("  topic {TOPIC} with 4 queues created");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let namesrv = cluster.namesrv_addr();
    let result: Result<(), Box<dyn std::error::Error>> = rt.block_on(async move {
        let producer = rocketmq_tokio::Client::start(rocketmq_tokio::ClientConfig {
            name_servers: vec![namesrv.clone()],
            ..rocketmq_tokio::ClientConfig::default()
        });
        let sending = Instant::now();
        for i in 0..count {
            let body = format!("demo message {i}: {}", "payload ".repeat(i % 700));
            let message = Message::new(TOPIC, body)
                .with_tags(if i % 2 == 0 { "even" } else { "odd" })
                .with_keys([format!("order-{i}")]);
            producer.send("demo-producer", message).await?;
            if (i + 1) % 50 == 0 || i + 1 == count {
                bar("sent    ", i + 1, count);
            }
        }
        let send_time = sending.elapsed();
        println!(
            "  in {send_time:.2?} ({:.0} msg/s, bodies over 4 KiB zlib-compressed)",
            count as f64 / send_time.as_secs_f64()
        );
        producer.shutdown().await;

        // The push consumer: an async listener, awaited on this runtime.
        let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
        let consuming = Instant::now();
        let consumer = rocketmq_tokio::PushConsumer::builder(GROUP)
            .name_server(&namesrv)
            .subscribe(TOPIC, "even || odd")
            .consume_from(ConsumeFrom::FirstOffset)
            .start_async({
                let seen = seen.clone();
                move |messages: Vec<MessageExt>, _context: ConsumeContext| {
                    let seen = seen.clone();
                    async move {
                        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                        for m in &messages {
                            seen.insert(m.keys().next().unwrap_or_default().to_owned());
                        }
                        ConsumeResult::Success
                    }
                }
            })
            .await?;
        let mut consumed = 0;
        while consumed < count && consuming.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            consumed = seen.lock().map(|s| s.len()).unwrap_or(0);
            bar("consumed", consumed.min(count), count);
        }
        println!(
            "  in {:.2?} (push consumer, from the first offset)",
            consuming.elapsed()
        );
        let stats = consumer.stats().await?;
        println!(
            "  stats: {} consumed, {} failed, {} queues, {} cached, {} rebalance(s)",
            stats.consumed,
            stats.failed,
            stats.queues.len(),
            stats.cached_count,
            stats.rebalances
        );
        consumer.shutdown().await?;
        if consumed != count {
            return Err(format!("consumed {consumed} of {count} messages").into());
        }
        Ok(())
    });
    println!("stopping the broker and name server ...");
    drop(cluster);
    result?;
    println!(
        "done: {count} messages sent and consumed in {:.1?}",
        started.elapsed()
    );
    Ok(())
}
