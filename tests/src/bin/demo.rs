//! The demo: starts a real RocketMQ NameServer and broker on 127.0.0.1 through the
//! test harness (resolving them from Maven Central on first run), sends messages
//! with the tokio client, reads every one back, and stops the broker.
//!
//! Run: `cargo run -p rocketmq-tests --bin demo` (optionally a message count).

use std::io::Write;
use std::time::Instant;

use rocketmq_core::protocol::message::Message;
use rocketmq_core::PullStatus;
use rocketmq_tests::harness::{Cluster, ClusterConfig};

const TOPIC: &str = "DemoTopic";
const GROUP: &str = "demo-group";

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
        let client = rocketmq_tokio::Client::start(rocketmq_tokio::ClientConfig {
            name_servers: vec![namesrv],
            ..rocketmq_tokio::ClientConfig::default()
        });

        let sending = Instant::now();
        for i in 0..count {
            let body = format!("demo message {i}: {}", "payload ".repeat(i % 700));
            let message = Message::new(TOPIC, body)
                .with_tags(if i % 2 == 0 { "even" } else { "odd" })
                .with_keys([format!("order-{i}")]);
            client.send("demo-producer", message).await?;
            if (i + 1) % 50 == 0 || i + 1 == count {
                print!("\r  sent {:>6}/{count}", i + 1);
                std::io::stdout().flush()?;
            }
        }
        let send_time = sending.elapsed();
        println!(
            "  in {send_time:.2?} ({:.0} msg/s, bodies over 4 KiB zlib-compressed)",
            count as f64 / send_time.as_secs_f64()
        );

        let reading = Instant::now();
        let route = client.query_route(TOPIC).await?;
        let mut received = 0usize;
        let mut bytes = 0usize;
        for queue in route.subscribe_queues(TOPIC) {
            let mut offset = 0;
            loop {
                let pulled = client.pull(GROUP, queue.clone(), offset, 32).await?;
                if pulled.status != PullStatus::Found {
                    break;
                }
                offset = pulled.next_begin_offset;
                received += pulled.messages.len();
                bytes += pulled.messages.iter().map(|m| m.body.len()).sum::<usize>();
                print!("\r  read {received:>6}/{count}");
                std::io::stdout().flush()?;
            }
        }
        println!(
            "  in {:.2?} ({bytes} body bytes, decompressed)",
            reading.elapsed()
        );
        client.shutdown().await;
        if received != count {
            return Err(format!("read back {received} of {count} messages").into());
        }
        Ok(())
    });
    println!("stopping the broker and name server ...");
    drop(cluster);
    result?;
    println!(
        "done: {count} messages sent and read back in {:.1?}",
        started.elapsed()
    );
    Ok(())
}
