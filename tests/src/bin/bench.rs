//! The whole-client benchmark: sync-send throughput and client CPU of our producer
//! (tokio adapter) and of the Java client, against the same real broker in one
//! run, with the same body size and the same number of concurrent senders.
//!
//! Run: `cargo run --release -p rocketmq-tests --bin bench -- [threads] [size] [seconds]`
//! (defaults: 8 senders, 1024-byte bodies, 20 s measured after 5 s of warm-up).
//! Prints a table and one JSON line.
//!
//! `bench consume [count] [size]` is the consumer benchmark instead: a backlog of
//! `count` messages (default 1,000,000 of 128 B) on an 8-queue topic, drained by
//! a new group of our push consumer on each runtime and of the Java push
//! consumer, each in a process of its own with a no-op listener; it reports
//! msgs/s, client CPU seconds and peak RSS of each. While measuring a change
//! of ours: `BENCH_RUNTIMES=blocking,smol` picks runtimes, `BENCH_REPEAT=3`
//! drains three times with each, `BENCH_JAVA=0` skips the Java consumer, and
//! `BENCH_WRAP="perf record -g -o F"` runs each of our children under a tool.
//!
//! `bench orderly [count] [size]` is the same for orderly consumption: our
//! consumers started with `start_orderly` (a sync listener returning
//! `OrderlyResult::Success`, on every runtime) and the Java consumer with a
//! `MessageListenerOrderly`, all at the same settings (1 message per call, 20
//! consume threads, pulls of 32), on the same 8-queue layout; the ratios are
//! against the Java orderly consumer. A queue is processed one message at a
//! time, so the default backlog is smaller: 200,000 of 128 B. The same
//! `BENCH_RUNTIMES`, `BENCH_REPEAT`, `BENCH_JAVA` and `BENCH_WRAP` apply, e.g.
//! `BENCH_REPEAT=3 cargo run --release -p rocketmq-tests --bin bench -- orderly 200000 128`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_core::protocol::message::Message;
use rocketmq_tests::conformance::interop_classes;
use rocketmq_tests::harness::{Cluster, ClusterConfig};

/// Seconds of sending before the producer benchmark starts measuring.
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

/// One producer's measured window.
struct Run {
    /// Messages sent in the window.
    sent: u64,
    /// The window's length.
    seconds: f64,
    /// The process's CPU seconds over the window.
    cpu_seconds: f64,
}

impl Run {
    /// Messages per second.
    fn rate(&self) -> f64 {
        self.sent as f64 / self.seconds
    }
    /// CPU microseconds per message.
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

/// Sends from `threads` tasks of our tokio producer for [`WARMUP`] and then
/// `seconds` seconds, and measures the second part.
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

/// Runs `tests/java/interop/BenchProducer.java` with the same load as [`ours`].
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

/// `bench [threads] [size] [seconds]`, `bench consume …` or `bench orderly …`;
/// see the crate's documentation.
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    for listening in [Listening::Concurrent, Listening::Orderly] {
        if mode == listening.mode() {
            return consume_bench(listening);
        }
        if mode.strip_suffix("-child") == Some(listening.mode()) {
            return consume_child(listening);
        }
    }
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

/// This process's peak resident set, KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// How the consumer benchmarks' listeners take their messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listening {
    /// `bench consume`: concurrently (Java's `MessageListenerConcurrently`).
    Concurrent,
    /// `bench orderly`: one message per queue at a time, in offset order, under
    /// the queue's broker lock (Java's `MessageListenerOrderly`).
    Orderly,
}

impl Listening {
    /// The benchmark's mode on the command line; its children's is this
    /// followed by `-child`.
    fn mode(self) -> &'static str {
        match self {
            Self::Concurrent => "consume",
            Self::Orderly => "orderly",
        }
    }
    /// The word for it in the report and on `BenchConsumer.java`'s command line.
    fn label(self) -> &'static str {
        match self {
            Self::Concurrent => "concurrent",
            Self::Orderly => "orderly",
        }
    }
    /// The backlog drained when the command line names none.
    fn default_count(self) -> u64 {
        match self {
            Self::Concurrent => 1_000_000,
            Self::Orderly => 200_000,
        }
    }
    /// The prefix of the consumer groups, a new one per drain.
    fn group_prefix(self) -> &'static str {
        match self {
            Self::Concurrent => "bench-drain",
            Self::Orderly => "bench-orderly",
        }
    }
    /// The Java consumer's row in the table.
    fn java_name(self) -> &'static str {
        match self {
            Self::Concurrent => "Java push consumer",
            Self::Orderly => "Java orderly consumer",
        }
    }
}

/// One drain, as a child process reports it.
struct Drain {
    /// Messages the listener was given.
    consumed: u64,
    /// Seconds from the consumer's start to the last message of the backlog.
    seconds: f64,
    /// The process's CPU seconds over the drain.
    cpu_seconds: f64,
    /// The process's peak resident set, KiB.
    peak_rss_kib: u64,
}

impl Drain {
    /// The drain a child's output reports on its last result line; panics if
    /// there is none or the child did not consume the whole backlog.
    fn from_line(output: &str, who: &str) -> Self {
        let line = output
            .lines()
            .rev()
            .find(|l| l.starts_with("{\"consumed\""))
            .unwrap_or_else(|| panic!("{who} printed no result line:\n{output}"));
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert!(
            v["all"].as_bool().unwrap_or(false),
            "{who} did not drain the backlog: {line}"
        );
        Self {
            consumed: v["consumed"].as_u64().unwrap_or(0),
            seconds: v["seconds"].as_f64().unwrap_or(1.0),
            cpu_seconds: v["cpuSeconds"].as_f64().unwrap_or(0.0),
            peak_rss_kib: v["peakRssKib"].as_u64().unwrap_or(0),
        }
    }
    /// Messages per second.
    fn rate(&self) -> f64 {
        self.consumed as f64 / self.seconds
    }
    /// CPU microseconds per message.
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.consumed as f64
    }
}

/// Runs `future` to completion on smol's executor (`smol`) or async-std's.
fn block_on<F: std::future::Future>(smol: bool, future: F) -> F::Output {
    if smol {
        smol::block_on(future)
    } else {
        async_std::task::block_on(future)
    }
}

/// `bench consume-child <runtime> <namesrv> <topic> <group> <count>` (or
/// `orderly-child …`): drains with our consumer on one runtime, with a
/// listener that only counts, and prints one JSON line.
fn consume_child(listening: Listening) {
    use rocketmq_core::consumer::{ConsumeContext, ConsumeFrom, ConsumeResult, OrderlyResult};
    use rocketmq_core::protocol::message::MessageExt;
    use std::sync::atomic::AtomicU64;
    let args: Vec<String> = std::env::args().collect();
    let (runtime, namesrv, topic, group) = (&args[2], &args[3], &args[4], &args[5]);
    let count: u64 = args[6].parse().expect("count");
    let consumed = Arc::new(AtomicU64::new(0));
    let done_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let note = {
        let (consumed, done_at) = (consumed.clone(), done_at.clone());
        move |n: usize| {
            if consumed.fetch_add(n as u64, Ordering::Relaxed) + n as u64 >= count {
                let mut d = done_at
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                d.get_or_insert_with(Instant::now);
            }
        }
    };
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let wait = || {
        let started = Instant::now();
        while done_at.lock().map(|d| d.is_none()).unwrap_or(true)
            && started.elapsed() < Duration::from_secs(600)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    macro_rules! options {
        ($builder:expr) => {
            $builder
                .name_server(namesrv)
                .subscribe(topic, "*")
                .consume_from(ConsumeFrom::FirstOffset)
        };
    }
    match runtime.as_str() {
        "tokio" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let note = note.clone();
                let builder = options!(rocketmq_tokio::PushConsumer::builder(group.as_str()));
                let c = match listening {
                    Listening::Concurrent => {
                        builder
                            .start_async(move |m: Vec<MessageExt>, _: ConsumeContext| {
                                note(m.len());
                                async { ConsumeResult::Success }
                            })
                            .await
                    }
                    Listening::Orderly => {
                        builder
                            .start_orderly(move |m: &[MessageExt], _: &ConsumeContext| {
                                note(m.len());
                                OrderlyResult::Success
                            })
                            .await
                    }
                }
                .expect("start");
                while done_at.lock().map(|d| d.is_none()).unwrap_or(true)
                    && t0.elapsed() < Duration::from_secs(600)
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = c.shutdown().await;
            });
        }
        "async-std" | "smol" => {
            let note = note.clone();
            let smol = runtime == "smol";
            let builder = options!(rocketmq_async_std::PushConsumer::builder(group.as_str()));
            let c = match listening {
                Listening::Concurrent => block_on(
                    smol,
                    builder.start_async(move |m: Vec<MessageExt>, _: ConsumeContext| {
                        note(m.len());
                        async { ConsumeResult::Success }
                    }),
                ),
                Listening::Orderly => block_on(
                    smol,
                    builder.start_orderly(move |m: &[MessageExt], _: &ConsumeContext| {
                        note(m.len());
                        OrderlyResult::Success
                    }),
                ),
            }
            .expect("start");
            wait();
            let _ = smol::block_on(c.shutdown());
        }
        _ => {
            let builder = options!(rocketmq_blocking::PushConsumer::builder(group.as_str()));
            let c = match listening {
                Listening::Concurrent => {
                    builder.start(move |m: &[MessageExt], _: &ConsumeContext| {
                        note(m.len());
                        ConsumeResult::Success
                    })
                }
                Listening::Orderly => {
                    builder.start_orderly(move |m: &[MessageExt], _: &ConsumeContext| {
                        note(m.len());
                        OrderlyResult::Success
                    })
                }
            }
            .expect("start");
            wait();
            let _ = c.shutdown();
        }
    }
    let cpu = cpu_seconds() - cpu0;
    let end = done_at
        .lock()
        .ok()
        .and_then(|d| *d)
        .unwrap_or_else(Instant::now);
    let all = consumed.load(Ordering::Relaxed) >= count;
    println!(
        "{{\"consumed\":{},\"all\":{all},\"seconds\":{:.3},\"cpuSeconds\":{cpu:.3},\"peakRssKib\":{}}}",
        consumed.load(Ordering::Relaxed),
        end.duration_since(t0).as_secs_f64(),
        peak_rss_kib()
    );
}

/// Fills `topic` with `count` messages of `size` bytes, in batches from 8 tasks.
fn fill(namesrv: &str, topic: &str, count: usize, size: usize) {
    let rt = runtime();
    rt.block_on(async {
        let client = rocketmq_tokio::Client::start(rocketmq_tokio::ClientConfig {
            name_servers: vec![namesrv.to_owned()],
            compress_over: None,
            ..rocketmq_tokio::ClientConfig::default()
        });
        let body = bytes::Bytes::from(vec![b'c'; size]);
        let batches = count.div_ceil(256);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (client, body, topic) = (client.clone(), body.clone(), topic.to_owned());
            tasks.push(tokio::spawn(async move {
                for b in (t..batches).step_by(8) {
                    let n = 256.min(count - b * 256);
                    let batch: Vec<Message> = (0..n)
                        .map(|_| Message::new(topic.as_str(), body.clone()))
                        .collect();
                    client
                        .send_batch("bench-fill", batch)
                        .await
                        .expect("batch send");
                }
            }));
        }
        for t in tasks {
            t.await.expect("fill task");
        }
        client.shutdown().await;
    });
}

/// `bench consume [count] [size]` or `bench orderly [count] [size]`: loads the
/// backlog, drains it with each of our runtimes and then with the Java
/// consumer, each listening the same way, and prints the table.
fn consume_bench(listening: Listening) {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (count, size) = (
        arg(2, listening.default_count()) as usize,
        arg(3, 128) as usize,
    );
    let label = listening.label();
    println!("starting RocketMQ (NameServer + 1 broker) ...");
    let cluster = Cluster::start(ClusterConfig::with_brokers(1)).expect("cluster");
    let topic = "BenchDrain";
    cluster.create_topic(topic, 8).expect("topic");
    let filled = Instant::now();
    fill(&cluster.namesrv_addr(), topic, count, size);
    println!(
        "backlog: {count} messages of {size} B on 8 queues, written in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let timeout = 600;
    let mut runs: Vec<(String, Drain)> = Vec::new();
    let me = std::env::current_exe().expect("own path");
    // BENCH_RUNTIMES=blocking,smol (say) measures only those of ours.
    let only = std::env::var("BENCH_RUNTIMES").ok();
    // BENCH_REPEAT=n drains n times with each runtime (a new group each time).
    let repeat = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1);
    for runtime in ["tokio", "async-std", "smol", "blocking"] {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|r| r == runtime))
        {
            continue;
        }
        for round in 0..repeat {
            // BENCH_WRAP="strace -f -c -o /tmp/s" (say) runs each child under a tool.
            let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
            let mut command = wrap
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            command.push(me.display().to_string());
            let prefix = listening.group_prefix();
            let group = if round == 0 {
                format!("{prefix}-{runtime}")
            } else {
                format!("{prefix}-{runtime}-{round}")
            };
            let out = std::process::Command::new(&command[0])
                .args(&command[1..])
                .args([
                    &format!("{}-child", listening.mode()),
                    runtime,
                    &cluster.namesrv_addr(),
                    topic,
                    &group,
                    &count.to_string(),
                ])
                .output()
                .expect("run the consumer child");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            runs.push((
                format!("rocketmq-{runtime}"),
                Drain::from_line(&text, runtime),
            ));
        }
    }
    // BENCH_JAVA=0 skips the Java consumer (while measuring changes of ours).
    if std::env::var("BENCH_JAVA").is_ok_and(|v| v == "0") {
        println!("{label} consumption, {count} messages of {size} B (no Java consumer):");
        for (name, d) in &runs {
            println!(
                "{name:<22} {:>12.0} msgs/s {:>8.2} CPU s {:>8.1} peak RSS MiB",
                d.rate(),
                d.cpu_seconds,
                d.peak_rss_kib as f64 / 1024.0
            );
        }
        return;
    }
    let dist = cluster.distribution();
    let classes = interop_classes(&cluster);
    let work = cluster.run_dir().join(format!("bench-java-{label}"));
    std::fs::create_dir_all(&work).expect("work dir");
    let mut jvm = dist
        .jvm("BenchConsumer", work.join("bench.out"))
        .classpath(format!("{}:{}", classes.display(), dist.classpath()))
        .jvm_arg(format!("-Duser.home={}", work.display()))
        .jvm_arg("-Xms512m")
        .jvm_arg("-Xmx512m")
        .args([
            cluster.namesrv_addr(),
            topic.to_owned(),
            format!("{}-java", listening.group_prefix()),
            count.to_string(),
            timeout.to_string(),
            label.to_owned(),
        ])
        .spawn()
        .expect("start the Java consumer");
    let status = jvm
        .wait_timeout(Duration::from_secs(timeout + 120))
        .expect("wait");
    let output = jvm.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "the Java consumer failed:\n{output}"
    );
    let java = Drain::from_line(&output, "Java");
    let java_name = listening.java_name();
    println!(
        "{label} consumption, {count} messages of {size} B; x columns are against the {java_name}:"
    );
    println!(
        "{:<22} {:>12} {:>8} {:>12} {:>12} {:>10} {:>10} {:>8}",
        "client", "msgs/s", "CPU s", "CPU us/msg", "peak RSS MiB", "x msgs/s", "x CPU/msg", "x RSS"
    );
    let row = |name: &str, d: &Drain| {
        println!(
            "{name:<22} {:>12.0} {:>8.2} {:>12.2} {:>12.1} {:>10.2} {:>10.2} {:>8.3}",
            d.rate(),
            d.cpu_seconds,
            d.cpu_us_per_msg(),
            d.peak_rss_kib as f64 / 1024.0,
            d.rate() / java.rate(),
            d.cpu_us_per_msg() / java.cpu_us_per_msg(),
            d.peak_rss_kib as f64 / java.peak_rss_kib.max(1) as f64
        );
    };
    for (name, d) in &runs {
        row(name, d);
    }
    row(java_name, &java);
    let json: Vec<String> = runs
        .iter()
        .chain(std::iter::once(&("java".to_owned(), java)))
        .map(|(n, d)| {
            format!(
                "\"{n}\":{{\"msgs_per_s\":{:.0},\"cpu_s\":{:.2},\"peak_rss_kib\":{}}}",
                d.rate(),
                d.cpu_seconds,
                d.peak_rss_kib
            )
        })
        .collect();
    println!(
        "{{\"mode\":\"{label}\",\"count\":{count},\"size\":{size},{}}}",
        json.join(",")
    );
}
