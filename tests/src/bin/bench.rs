//! The whole-client benchmark: sync-send throughput and client CPU of our producer
//! (tokio adapter) and of the Java client, against the same real broker in one
//! run, with the same body size and the same number of concurrent senders.
//!
//! Run: `cargo run --release -p rocketmq-tests --bin bench -- [threads] [size] [seconds]`
//! (defaults: 8 senders, 1024-byte bodies, 20 s measured after 5 s of warm-up).
//! Prints a table and one JSON line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_core::protocol::message::Message;
use rocketmq_tests::conformance::interop_classes;
use rocketmq_tests::harness::{Cluster, ClusterConfig};

const WARMUP: u64 = 5;

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`
/// (clock ticks of 1/100 s, Linux's `USER_HZ`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime field 11, stime field 12.
    (ticks(11) + ticks(12)) / 100.0
}

struct Run {
    sent: u64,
    seconds: f64,
    cpu_seconds: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.seconds
    }
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.sent as f64
    }
}

/// The tokio runtime our producer runs on: a current-thread runtime by default
/// (one thread drives the client and every sender), or `BENCH_TOKIO_WORKERS=n`
/// worker threads.
fn runtime() -> tokio::runtime::Runtime {
    match std::env::var("BENCH_TOKIO_WORKERS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .expect("tokio runtime")
}

fn ours(namesrv: &str, topic: &str, threads: usize, size: usize, seconds: u64) -> Run {
    let rt = runtime();
    rt.block_on(async {
        let client = rocketmq_tokio::Client::start(rocketmq_tokio::ClientConfig {
            name_servers: vec![namesrv.to_owned()],
            compress_over: None,
            ..rocketmq_tokio::ClientConfig::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let body = bytes::Bytes::from(vec![b'r'; size]);
        for _ in 0..threads {
            let (client, stop, sent, failed, body, topic) = (
                client.clone(),
                stop.clone(),
                sent.clone(),
                failed.clone(),
                body.clone(),
                topic.to_owned(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let message = Message::new(topic.as_str(), body.clone()).with_tags("bench");
                    match client.send("bench-rust-producer", message).await {
                        Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(WARMUP)).await;
        let (sent0, failed0, cpu0, t0) = (
            sent.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            cpu_seconds(),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (sent1, failed1, cpu1, elapsed) = (
            sent.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            cpu_seconds(),
            t0.elapsed(),
        );
        stop.store(true, Ordering::Relaxed);
        // Sends still in flight now fail with Shutdown; only the measured window counts.
        client.shutdown().await;
        if failed1 > failed0 {
            eprintln!("rust: {} sends failed while measured", failed1 - failed0);
        }
        Run {
            sent: sent1 - sent0,
            seconds: elapsed.as_secs_f64(),
            cpu_seconds: cpu1 - cpu0,
        }
    })
}

fn java(cluster: &Cluster, topic: &str, threads: usize, size: usize, seconds: u64) -> Run {
    let dist = cluster.distribution();
    let classes = interop_classes(cluster);
    let work = cluster.run_dir().join("bench-java");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut jvm = dist
        .jvm("BenchProducer", work.join("bench.out"))
        .classpath(format!("{}:{}", classes.display(), dist.classpath()))
        .jvm_arg(format!("-Duser.home={}", work.display()))
        .jvm_arg("-Xms512m")
        .jvm_arg("-Xmx512m")
        .args([
            cluster.namesrv_addr(),
            topic.to_owned(),
            threads.to_string(),
            size.to_string(),
            WARMUP.to_string(),
            seconds.to_string(),
        ])
        .spawn()
        .expect("start the Java producer");
    let status = jvm
        .wait_timeout(Duration::from_secs(seconds + WARMUP + 120))
        .expect("wait");
    let output = jvm.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "the Java producer failed:\n{output}"
    );
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"sent\""))
        .expect("Java's result line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
    Run {
        sent: v["sent"].as_u64().unwrap_or(0),
        seconds: v["seconds"].as_f64().unwrap_or(1.0),
        cpu_seconds: v["cpuSeconds"].as_f64().unwrap_or(0.0),
    }
}

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (threads, size, seconds) = (arg(1, 8) as usize, arg(2, 1024) as usize, arg(3, 20));
    println!("starting RocketMQ (NameServer + 1 broker) ...");
    let cluster = Cluster::start(ClusterConfig::with_brokers(1)).expect("cluster");
    for topic in ["BenchRust", "BenchJava"] {
        cluster.create_topic(topic, 8).expect("topic");
    }
    println!("sync send, {threads} concurrent senders, {size} B bodies, {WARMUP} s warm-up, {seconds} s measured");
    let rust = ours(&cluster.namesrv_addr(), "BenchRust", threads, size, seconds);
    let java = java(&cluster, "BenchJava", threads, size, seconds);
    println!(
        "{:<22} {:>12} {:>14} {:>16}",
        "client", "msgs/s", "CPU s", "CPU us/msg"
    );
    for (name, r) in [("rocketmq-tokio", &rust), ("Java rocketmq-client", &java)] {
        println!(
            "{name:<22} {:>12.0} {:>14.2} {:>16.1}",
            r.rate(),
            r.cpu_seconds,
            r.cpu_us_per_msg()
        );
    }
    let throughput = rust.rate() / java.rate();
    let cpu = rust.cpu_us_per_msg() / java.cpu_us_per_msg();
    println!("ratio: {throughput:.2}x Java's msgs/s at {cpu:.2}x its CPU per message");
    println!(
        "{{\"threads\":{threads},\"size\":{size},\"seconds\":{seconds},\"rust\":{{\"msgs_per_s\":{:.0},\"cpu_s\":{:.2}}},\"java\":{{\"msgs_per_s\":{:.0},\"cpu_s\":{:.2}}},\"throughput_ratio\":{throughput:.3},\"cpu_per_msg_ratio\":{cpu:.3}}}",
        rust.rate(),
        rust.cpu_seconds,
        java.rate(),
        java.cpu_seconds
    );
}
