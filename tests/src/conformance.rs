//! The conformance suite: one body of checks, run against the real broker on every
//! runtime. Each runtime's client is wrapped in a [`Runtime`] that exposes the same
//! blocking calls, so a check is written once and means the same on all of them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocketmq_core::protocol::body::java_string_hash;
use rocketmq_core::protocol::body::TopicRouteData;
use rocketmq_core::protocol::message::{property, Message, MessageExt};
use rocketmq_core::protocol::MessageQueue;
use rocketmq_core::{
    ClientConfig, ClientError, PullResult, PullStatus, QueueSelector, SendResult, SendStatus,
};

/// A runtime's client behind the calls the suite makes.
pub trait Runtime: Sized {
    /// Name for test output.
    const NAME: &'static str;
    /// Starts a client.
    fn start(config: ClientConfig) -> Self;
    /// The process's client for the config's client id.
    fn shared(config: ClientConfig) -> Self;
    /// A topic's route.
    fn query_route(&self, topic: &str) -> Result<TopicRouteData, ClientError>;
    /// Sends to the next writable queue.
    fn send(&self, group: &str, message: Message) -> Result<SendResult, ClientError>;
    /// Sends to the queue the selector picks.
    fn send_with(
        &self,
        group: &str,
        message: Message,
        selector: QueueSelector,
    ) -> Result<SendResult, ClientError>;
    /// Sends to the next writable queue within `timeout` instead of the default.
    fn send_timeout(
        &self,
        group: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<SendResult, ClientError>;
    /// Sends to the queue a user-supplied selector picks.
    fn send_select(
        &self,
        group: &str,
        message: Message,
        select: &dyn Fn(&[MessageQueue], &Message) -> MessageQueue,
    ) -> Result<SendResult, ClientError>;
    /// Sends without waiting for the broker.
    fn send_oneway(&self, group: &str, message: Message) -> Result<(), ClientError>;
    /// Sends a batch.
    fn send_batch(&self, group: &str, messages: Vec<Message>) -> Result<SendResult, ClientError>;
    /// Pulls once.
    fn pull(
        &self,
        group: &str,
        queue: MessageQueue,
        offset: i64,
        max: i32,
    ) -> Result<PullResult, ClientError>;
    /// Stops the client.
    fn shutdown(self);
}

/// The tokio adapter, on a runtime of its own.
pub struct Tokio {
    rt: tokio::runtime::Runtime,
    client: rocketmq_tokio::Client,
}

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";
    fn start(config: ClientConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = rt.block_on(async { rocketmq_tokio::Client::start(config) });
        Self { rt, client }
    }
    fn shared(config: ClientConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = rt.block_on(async { rocketmq_tokio::Client::shared(config) });
        Self { rt, client }
    }
    fn query_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        self.rt.block_on(self.client.query_route(topic))
    }
    fn send(&self, group: &str, message: Message) -> Result<SendResult, ClientError> {
        self.rt.block_on(self.client.send(group, message))
    }
    fn send_with(
        &self,
        group: &str,
        message: Message,
        selector: QueueSelector,
    ) -> Result<SendResult, ClientError> {
        self.rt
            .block_on(self.client.send_with(group, message, selector))
    }
    fn send_timeout(
        &self,
        group: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<SendResult, ClientError> {
        self.rt
            .block_on(self.client.send_timeout(group, message, timeout))
    }
    fn send_select(
        &self,
        group: &str,
        message: Message,
        select: &dyn Fn(&[MessageQueue], &Message) -> MessageQueue,
    ) -> Result<SendResult, ClientError> {
        self.rt
            .block_on(self.client.send_select(group, message, select))
    }
    fn send_oneway(&self, group: &str, message: Message) -> Result<(), ClientError> {
        self.rt.block_on(self.client.send_oneway(group, message))
    }
    fn send_batch(&self, group: &str, messages: Vec<Message>) -> Result<SendResult, ClientError> {
        self.rt.block_on(self.client.send_batch(group, messages))
    }
    fn pull(
        &self,
        group: &str,
        queue: MessageQueue,
        offset: i64,
        max: i32,
    ) -> Result<PullResult, ClientError> {
        self.rt
            .block_on(self.client.pull(group, queue, offset, max))
    }
    fn shutdown(self) {
        self.rt.block_on(self.client.shutdown());
    }
}

/// The async-io adapter, awaited by async-std's executor.
pub struct AsyncStd(rocketmq_async_std::Client);

impl Runtime for AsyncStd {
    const NAME: &'static str = "async-std";
    fn start(config: ClientConfig) -> Self {
        Self(async_std::task::block_on(async {
            rocketmq_async_std::Client::start(config)
        }))
    }
    fn shared(config: ClientConfig) -> Self {
        Self(rocketmq_async_std::Client::shared(config))
    }
    fn query_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        async_std::task::block_on(self.0.query_route(topic))
    }
    fn send(&self, group: &str, message: Message) -> Result<SendResult, ClientError> {
        async_std::task::block_on(self.0.send(group, message))
    }
    fn send_with(
        &self,
        group: &str,
        message: Message,
        selector: QueueSelector,
    ) -> Result<SendResult, ClientError> {
        async_std::task::block_on(self.0.send_with(group, message, selector))
    }
    fn send_timeout(
        &self,
        group: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<SendResult, ClientError> {
        async_std::task::block_on(self.0.send_timeout(group, message, timeout))
    }
    fn send_select(
        &self,
        group: &str,
        message: Message,
        select: &dyn Fn(&[MessageQueue], &Message) -> MessageQueue,
    ) -> Result<SendResult, ClientError> {
        async_std::task::block_on(self.0.send_select(group, message, select))
    }
    fn send_oneway(&self, group: &str, message: Message) -> Result<(), ClientError> {
        async_std::task::block_on(self.0.send_oneway(group, message))
    }
    fn send_batch(&self, group: &str, messages: Vec<Message>) -> Result<SendResult, ClientError> {
        async_std::task::block_on(self.0.send_batch(group, messages))
    }
    fn pull(
        &self,
        group: &str,
        queue: MessageQueue,
        offset: i64,
        max: i32,
    ) -> Result<PullResult, ClientError> {
        async_std::task::block_on(self.0.pull(group, queue, offset, max))
    }
    fn shutdown(self) {
        async_std::task::block_on(self.0.shutdown());
    }
}

/// The async-io adapter, awaited by smol's executor.
pub struct Smol(rocketmq_async_std::Client);

impl Runtime for Smol {
    const NAME: &'static str = "smol";
    fn start(config: ClientConfig) -> Self {
        Self(smol::block_on(async {
            rocketmq_async_std::Client::start(config)
        }))
    }
    fn shared(config: ClientConfig) -> Self {
        Self(rocketmq_async_std::Client::shared(config))
    }
    fn query_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        smol::block_on(self.0.query_route(topic))
    }
    fn send(&self, group: &str, message: Message) -> Result<SendResult, ClientError> {
        smol::block_on(self.0.send(group, message))
    }
    fn send_with(
        &self,
        group: &str,
        message: Message,
        selector: QueueSelector,
    ) -> Result<SendResult, ClientError> {
        smol::block_on(self.0.send_with(group, message, selector))
    }
    fn send_timeout(
        &self,
        group: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<SendResult, ClientError> {
        smol::block_on(self.0.send_timeout(group, message, timeout))
    }
    fn send_select(
        &self,
        group: &str,
        message: Message,
        select: &dyn Fn(&[MessageQueue], &Message) -> MessageQueue,
    ) -> Result<SendResult, ClientError> {
        smol::block_on(self.0.send_select(group, message, select))
    }
    fn send_oneway(&self, group: &str, message: Message) -> Result<(), ClientError> {
        smol::block_on(self.0.send_oneway(group, message))
    }
    fn send_batch(&self, group: &str, messages: Vec<Message>) -> Result<SendResult, ClientError> {
        smol::block_on(self.0.send_batch(group, messages))
    }
    fn pull(
        &self,
        group: &str,
        queue: MessageQueue,
        offset: i64,
        max: i32,
    ) -> Result<PullResult, ClientError> {
        smol::block_on(self.0.pull(group, queue, offset, max))
    }
    fn shutdown(self) {
        smol::block_on(self.0.shutdown());
    }
}

/// The blocking adapter.
pub struct Blocking(rocketmq_blocking::Client);

impl Runtime for Blocking {
    const NAME: &'static str = "blocking";
    fn start(config: ClientConfig) -> Self {
        Self(rocketmq_blocking::Client::start(config))
    }
    fn shared(config: ClientConfig) -> Self {
        Self(rocketmq_blocking::Client::shared(config))
    }
    fn query_route(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        self.0.query_route(topic)
    }
    fn send(&self, group: &str, message: Message) -> Result<SendResult, ClientError> {
        self.0.send(group, message)
    }
    fn send_with(
        &self,
        group: &str,
        message: Message,
        selector: QueueSelector,
    ) -> Result<SendResult, ClientError> {
        self.0.send_with(group, message, selector)
    }
    fn send_timeout(
        &self,
        group: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<SendResult, ClientError> {
        self.0.send_timeout(group, message, timeout)
    }
    fn send_select(
        &self,
        group: &str,
        message: Message,
        select: &dyn Fn(&[MessageQueue], &Message) -> MessageQueue,
    ) -> Result<SendResult, ClientError> {
        self.0.send_select(group, message, select)
    }
    fn send_oneway(&self, group: &str, message: Message) -> Result<(), ClientError> {
        self.0.send_oneway(group, message)
    }
    fn send_batch(&self, group: &str, messages: Vec<Message>) -> Result<SendResult, ClientError> {
        self.0.send_batch(group, messages)
    }
    fn pull(
        &self,
        group: &str,
        queue: MessageQueue,
        offset: i64,
        max: i32,
    ) -> Result<PullResult, ClientError> {
        self.0.pull(group, queue, offset, max)
    }
    fn shutdown(self) {
        self.0.shutdown();
    }
}

/// A client configuration for the cluster whose name server is `namesrv`.
pub fn config(namesrv: &str) -> ClientConfig {
    ClientConfig {
        name_servers: vec![namesrv.to_owned()],
        ..ClientConfig::default()
    }
}

/// The `i`-th test message: tags, keys and user properties that vary, and a body
/// size that cycles through empty, small, medium and over-4-KiB (compressed).
pub fn test_message(topic: &str, i: usize) -> Message {
    let len = match i % 4 {
        0 => 1 + i % 7,
        1 => 100 + i % 50,
        2 => 1000 + i,
        _ => 4096 + 512 * (i % 9),
    };
    // Text-like, so that compression has something to do, and distinct per message.
    let body: Vec<u8> = format!("message {i} of the round trip; ")
        .bytes()
        .cycle()
        .take(len)
        .collect();
    Message::new(topic, Bytes::from(body))
        .with_tags(format!("Tag{}", i % 3))
        .with_keys([format!("key-{i}"), format!("batch-{}", i / 100)])
        .with_property("index", i.to_string())
        .with_property("note", format!("user property {i} ünïcödé"))
}

/// What the round trip measured.
#[derive(Debug)]
pub struct RoundTrip {
    /// Messages sent and pulled back.
    pub messages: usize,
    /// Time to send them, one at a time.
    pub send: Duration,
    /// Time to pull every queue to its end.
    pub pull: Duration,
}

/// Sends `count` messages to a 4-queue topic, pulls every queue from offset 0 to its
/// end, and checks every message byte for byte against what was sent: body, topic,
/// tags, keys, properties, and contiguous queue offsets.
pub fn round_trip<R: Runtime>(namesrv: &str, topic: &str, count: usize) -> RoundTrip {
    let client = R::start(config(namesrv));
    let group = format!("conformance-{}", R::NAME);

    let started = Instant::now();
    let mut sent: HashMap<String, (Message, SendResult)> = HashMap::new();
    for i in 0..count {
        let message = test_message(topic, i);
        let result = client
            .send(&group, message.clone())
            .unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
        assert_eq!(result.status, SendStatus::Ok, "{}: send {i}", R::NAME);
        sent.insert(result.msg_id.clone(), (message, result));
    }
    let send = started.elapsed();
    assert_eq!(sent.len(), count, "{}: every message id is unique", R::NAME);

    let route = client.query_route(topic).expect("route");
    let queues = route.subscribe_queues(topic);
    assert_eq!(queues.len(), 4, "{}: the topic has 4 queues", R::NAME);

    let started = Instant::now();
    let ends = ends(sent.values().map(|(_, r)| r));
    let mut pulled: BTreeMap<MessageQueue, Vec<MessageExt>> = BTreeMap::new();
    for queue in &queues {
        let messages = pull_all(&client, &group, queue, ends.get(queue).copied());
        pulled.insert(queue.clone(), messages);
    }
    let pull = started.elapsed();

    let mut seen = 0;
    for (queue, messages) in &pulled {
        for (expected_offset, got) in messages.iter().enumerate() {
            assert_eq!(
                got.queue_offset,
                expected_offset as i64,
                "{}: {queue} offsets are contiguous",
                R::NAME
            );
            assert_eq!(got.queue_id, queue.queue_id);
            let id = got.msg_id();
            let (message, result) = sent
                .get(&id)
                .unwrap_or_else(|| panic!("{}: pulled a message that was not sent: {id}", R::NAME));
            assert_eq!(
                result.queue.queue_id,
                got.queue_id,
                "{}: {id} in the queue the send reported",
                R::NAME
            );
            assert_eq!(
                result.queue_offset,
                got.queue_offset,
                "{}: {id} at the offset the send reported",
                R::NAME
            );
            assert_eq!(got.topic, message.topic.as_str());
            assert_eq!(got.body, message.body, "{}: body of {id}", R::NAME);
            assert_eq!(got.flag, message.flag);
            assert_eq!(got.tags(), message.tags());
            assert_eq!(
                got.property(property::KEYS),
                message.properties.get(property::KEYS).map(String::as_str)
            );
            for (k, v) in &message.properties {
                assert_eq!(
                    got.property(k),
                    Some(v.as_str()),
                    "{}: property {k} of {id}",
                    R::NAME
                );
            }
            seen += 1;
        }
    }
    assert_eq!(
        seen,
        count,
        "{}: every sent message pulled back exactly once",
        R::NAME
    );
    client.shutdown();
    RoundTrip {
        messages: count,
        send,
        pull,
    }
}

/// One message the Java producer sent, as its manifest recorded it.
#[derive(Debug, Clone)]
pub struct JavaSent {
    /// The Java client's message id (`UNIQ_KEY`).
    pub msg_id: String,
    /// Queue it was stored in.
    pub queue_id: i32,
    /// Its queue offset.
    pub queue_offset: i64,
    /// The body before compression.
    pub body: Vec<u8>,
    /// Its properties as the Java client set them.
    pub properties: BTreeMap<String, String>,
}

/// Compiles our Java interop programs in `tests/java/interop` (once per process)
/// against the harness's RocketMQ classpath; returns the class directory.
pub fn interop_classes(cluster: &crate::harness::Cluster) -> &'static std::path::Path {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    static CLASSES: OnceLock<PathBuf> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let dir = cluster.run_dir().join("interop-classes");
        std::fs::create_dir_all(&dir).expect("class dir");
        let sources = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("java/interop");
        let javac = match std::env::var_os("JAVA_HOME") {
            Some(home) => PathBuf::from(home).join("bin/javac"),
            None => PathBuf::from("javac"),
        };
        let out = std::process::Command::new(&javac)
            .arg("-cp")
            .arg(cluster.distribution().classpath())
            .arg("-d")
            .arg(&dir)
            .arg(sources.join("CompressedProducer.java"))
            .arg(sources.join("PushConsumer.java"))
            .arg(sources.join("BenchProducer.java"))
            .arg(sources.join("BenchConsumer.java"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} (install a JDK 17+): {e}", javac.display()));
        assert!(
            out.status.success(),
            "javac failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// One message the Java consumer received.
#[derive(Debug, Clone)]
pub struct JavaReceived {
    /// Its id as Java gives it (`UNIQ_KEY`).
    pub msg_id: String,
    /// Its sys flag after Java's decoding.
    pub sys_flag: i64,
    /// The body Java delivered (inflated).
    pub body: Vec<u8>,
    /// Its properties.
    pub properties: BTreeMap<String, String>,
}

/// Runs `tests/java/interop/PushConsumer.java`, the real Java push consumer, on
/// `topic` until it has `count` messages, and returns them.
pub fn java_consume(
    cluster: &crate::harness::Cluster,
    topic: &str,
    count: usize,
) -> Vec<JavaReceived> {
    let lines = run_java_program(
        cluster,
        "PushConsumer",
        &format!("java-consumer-{topic}"),
        |manifest| {
            vec![
                cluster.namesrv_addr(),
                topic.to_owned(),
                format!("java-consumer-{topic}"),
                count.to_string(),
                "120".to_owned(),
                manifest.to_owned(),
            ]
        },
    );
    lines
        .iter()
        .map(|v| JavaReceived {
            msg_id: v["msgId"].as_str().expect("msgId").to_owned(),
            sys_flag: v["sysFlag"].as_i64().expect("sysFlag"),
            body: hex_field(v, "body"),
            properties: string_map(&v["properties"]),
        })
        .collect()
}

/// Runs one of our Java interop programs (`main_class`) with the arguments
/// `args(manifest_path)` gives, waits for it (3 minutes at most), fails loudly with
/// its output if it fails, and returns the JSON lines it wrote to its manifest.
fn run_java_program(
    cluster: &crate::harness::Cluster,
    main_class: &str,
    work_name: &str,
    args: impl FnOnce(&str) -> Vec<String>,
) -> Vec<serde_json::Value> {
    let dist = cluster.distribution();
    let work = cluster.run_dir().join(work_name);
    std::fs::create_dir_all(&work).expect("work dir");
    let classes = interop_classes(cluster);
    let manifest = work.join("manifest.jsonl");
    let mut jvm = dist
        .jvm(main_class, work.join("program.out"))
        .classpath(format!("{}:{}", classes.display(), dist.classpath()))
        .jvm_arg(format!("-Duser.home={}", work.display()))
        .jvm_arg("-Xmx256m")
        .args(args(&manifest.display().to_string()))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {main_class}: {e}"));
    let status = jvm
        .wait_timeout(Duration::from_secs(180))
        .expect("wait for the Java program")
        .unwrap_or_else(|| panic!("{main_class} did not finish in 180 s:\n{}", jvm.output()));
    assert!(status.success(), "{main_class} failed:\n{}", jvm.output());
    std::fs::read_to_string(&manifest)
        .expect("manifest")
        .lines()
        .map(|line| serde_json::from_str(line).expect("manifest line"))
        .collect()
}

/// A hex string field of a manifest line, as bytes.
fn hex_field(v: &serde_json::Value, field: &str) -> Vec<u8> {
    let hex = v[field].as_str().expect("hex field");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A JSON object of strings, as a map.
fn string_map(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Sends `count` messages with this runtime's producer (bodies alternating under
/// and over the 4 KiB compression threshold, compressed with `compression`), for
/// the Java consumer to check. Returns what was sent, by message id.
pub fn send_for_java<R: Runtime>(
    namesrv: &str,
    topic: &str,
    compression: rocketmq_core::protocol::compress::CompressionType,
    count: usize,
) -> HashMap<String, Message> {
    let client = R::start(ClientConfig {
        compression,
        ..config(namesrv)
    });
    let mut sent = HashMap::new();
    for i in 0..count {
        let len = if i % 2 == 0 { 6000 + i } else { 20 + i };
        let body: Vec<u8> = format!("{} message {i} for Java; ", R::NAME)
            .bytes()
            .cycle()
            .take(len)
            .collect();
        let message = Message::new(topic, body)
            .with_tags(format!("Tag{}", i % 3))
            .with_keys([format!("{}-{i}", R::NAME)])
            .with_property("runtime", R::NAME)
            .with_property("index", i.to_string());
        let r = client
            .send(&format!("for-java-{}", R::NAME), message.clone())
            .unwrap_or_else(|e| panic!("{}: send failed: {e}", R::NAME));
        sent.insert(r.msg_id, message);
    }
    client.shutdown();
    sent
}

/// Compiles (once per process) and runs `tests/java/interop/CompressedProducer.java`
/// with the real Java client from the harness's RocketMQ classpath: it sends `count`
/// messages to `topic` compressing bodies over 4 KiB with `compression` (`ZLIB`,
/// `LZ4` or `ZSTD`), and returns what it sent.
pub fn java_send_compressed(
    cluster: &crate::harness::Cluster,
    topic: &str,
    compression: &str,
    count: usize,
) -> Vec<JavaSent> {
    let lines = run_java_program(
        cluster,
        "CompressedProducer",
        &format!("interop-{compression}"),
        |manifest| {
            vec![
                cluster.namesrv_addr(),
                topic.to_owned(),
                compression.to_owned(),
                count.to_string(),
                manifest.to_owned(),
            ]
        },
    );
    lines
        .iter()
        .map(|v| JavaSent {
            msg_id: v["msgId"].as_str().expect("msgId").to_owned(),
            queue_id: v["queueId"].as_i64().expect("queueId") as i32,
            queue_offset: v["queueOffset"].as_i64().expect("queueOffset"),
            body: hex_field(v, "body"),
            properties: string_map(&v["properties"]),
        })
        .collect()
}

/// Pulls every message the Java producer sent and checks each byte for byte:
/// the body (decompressed), the properties, the queue and offset. Returns how many
/// of them were stored compressed.
pub fn pull_java_messages<R: Runtime>(namesrv: &str, topic: &str, sent: &[JavaSent]) -> usize {
    let client = R::start(config(namesrv));
    let group = format!("interop-{}", R::NAME);
    let mut compressed = 0;
    for want in sent {
        let queue = MessageQueue::new(topic, "broker-a", want.queue_id);
        let result = client
            .pull(&group, queue, want.queue_offset, 1)
            .unwrap_or_else(|e| panic!("{}: pull {} failed: {e}", R::NAME, want.msg_id));
        assert_eq!(
            result.status,
            PullStatus::Found,
            "{}: {}",
            R::NAME,
            want.msg_id
        );
        let got = &result.messages[0];
        assert_eq!(
            got.msg_id(),
            want.msg_id,
            "{}: message at the offset Java reported",
            R::NAME
        );
        assert_eq!(got.queue_offset, want.queue_offset);
        assert_eq!(
            &got.body[..],
            &want.body[..],
            "{}: body of {}",
            R::NAME,
            want.msg_id
        );
        for (k, v) in &want.properties {
            assert_eq!(
                got.property(k),
                Some(v.as_str()),
                "{}: property {k} of {}",
                R::NAME,
                want.msg_id
            );
        }
        if got.was_compressed() {
            compressed += 1;
        }
    }
    client.shutdown();
    compressed
}

/// Pulls a whole queue from offset 0 to its end, or at least to `end`: the broker
/// makes a message pullable a moment after acknowledging it (its consume queue is
/// built asynchronously), so a queue short of `end` is polled again, for 10 s at
/// most.
pub fn pull_all<R: Runtime>(
    client: &R,
    group: &str,
    queue: &MessageQueue,
    end: Option<i64>,
) -> Vec<MessageExt> {
    let mut offset = 0;
    let mut out = Vec::new();
    let started = Instant::now();
    loop {
        let r = client
            .pull(group, queue.clone(), offset, 32)
            .unwrap_or_else(|e| panic!("{}: pull {queue} failed: {e}", R::NAME));
        if r.status == PullStatus::Found {
            offset = r.next_begin_offset;
            out.extend(r.messages);
        } else if end.is_some_and(|end| offset < end) && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        } else {
            return out;
        }
    }
}

/// One past the highest acknowledged offset of each queue.
pub fn ends<'a>(results: impl IntoIterator<Item = &'a SendResult>) -> HashMap<MessageQueue, i64> {
    let mut ends = HashMap::new();
    for r in results {
        let end = ends.entry(r.queue.clone()).or_insert(0);
        *end = (*end).max(r.queue_offset + 1);
    }
    ends
}

/// The other ways to send: by key hash (every key's messages in the queue Java's
/// hash selector picks), oneway, and as a batch (contiguous offsets in one queue).
pub fn send_kinds<R: Runtime>(namesrv: &str, topic: &str) {
    let client = R::start(config(namesrv));
    let group = format!("send-kinds-{}", R::NAME);
    let queues = client
        .query_route(topic)
        .expect("route")
        .publish_queues(topic);
    assert_eq!(queues.len(), 4);
    for i in 0..20 {
        let key = format!("customer-{}", i % 4);
        let message = Message::new(topic, format!("hash {i}")).with_keys([key.clone()]);
        let r = client
            .send_with(&group, message, QueueSelector::Hash(key.clone()))
            .unwrap_or_else(|e| panic!("{}: hash send failed: {e}", R::NAME));
        let want = (java_string_hash(&key) % 4).unsigned_abs() as usize;
        assert_eq!(
            r.queue,
            queues[want],
            "{}: {key} lands where Java's hash selector puts it",
            R::NAME
        );
    }
    // A topic nobody created: the broker creates it from the template on the
    // first send, and the message reads back.
    let fresh = format!("{topic}-auto");
    let r = client
        .send(&group, Message::new(fresh.as_str(), "auto-created"))
        .unwrap_or_else(|e| panic!("{}: send to a new topic failed: {e}", R::NAME));
    // The broker makes a stored message pullable a moment after it acknowledges
    // it (its consume queue is built asynchronously): poll, bounded.
    let started = Instant::now();
    let pulled = loop {
        let pulled = client
            .pull(&group, r.queue.clone(), r.queue_offset, 1)
            .expect("pull");
        if pulled.status == PullStatus::Found || started.elapsed() > Duration::from_secs(10) {
            break pulled;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pulled.status, PullStatus::Found, "{}", R::NAME);
    assert_eq!(&pulled.messages[0].body[..], b"auto-created", "{}", R::NAME);
    // A user-supplied selector: always the last queue.
    // A per-call timeout: one shorter than any round trip fails with that
    // timeout, not the client's default; a roomy one succeeds.
    let late = client.send_timeout(&group, Message::new(topic, "late"), Duration::ZERO);
    assert_eq!(
        late.map(|_| ()),
        Err(ClientError::Timeout(Duration::ZERO)),
        "{}",
        R::NAME
    );
    client
        .send_timeout(
            &group,
            Message::new(topic, "roomy"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{}: send with a 10 s timeout failed: {e}", R::NAME));
    let last = |queues: &[MessageQueue], _: &Message| queues[queues.len() - 1].clone();
    let r = client
        .send_select(&group, Message::new(topic, "selected"), &last)
        .unwrap_or_else(|e| panic!("{}: selector send failed: {e}", R::NAME));
    assert_eq!(
        r.queue,
        queues[3],
        "{}: the user's selector chose the queue",
        R::NAME
    );
    for i in 0..10 {
        client
            .send_oneway(&group, Message::new(topic, format!("oneway {i}")))
            .unwrap_or_else(|e| panic!("{}: oneway send failed: {e}", R::NAME));
    }
    let batch: Vec<Message> = (0..5)
        .map(|i| Message::new(topic, format!("batch {i}")))
        .collect();
    let r = client
        .send_batch(&group, batch)
        .unwrap_or_else(|e| panic!("{}: batch failed: {e}", R::NAME));
    assert_eq!(r.msg_id.split(',').count(), 5);

    // Oneway sends have no result: poll (bounded) until the broker shows all ten.
    let started = Instant::now();
    let all = loop {
        let all: Vec<MessageExt> = queues
            .iter()
            .flat_map(|q| pull_all(&client, &group, q, None))
            .collect();
        let oneway = all.iter().filter(|m| m.body.starts_with(b"oneway")).count();
        if oneway == 10 || started.elapsed() > Duration::from_secs(10) {
            break all;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let bodies = |prefix: &[u8]| all.iter().filter(|m| m.body.starts_with(prefix)).count();
    assert_eq!(bodies(b"hash"), 20, "{}", R::NAME);
    assert_eq!(
        bodies(b"oneway"),
        10,
        "{}: every oneway message stored",
        R::NAME
    );
    let batch: Vec<&MessageExt> = all
        .iter()
        .filter(|m| m.body.starts_with(b"batch"))
        .collect();
    assert_eq!(batch.len(), 5, "{}", R::NAME);
    for (i, m) in batch.iter().enumerate() {
        assert_eq!(
            m.queue_id,
            r.queue.queue_id,
            "{}: a batch is stored in one queue",
            R::NAME
        );
        assert_eq!(
            m.queue_offset,
            r.queue_offset + i as i64,
            "{}: at contiguous offsets",
            R::NAME
        );
        assert_eq!(&m.body[..], format!("batch {i}").as_bytes());
        assert_eq!(Some(m.msg_id().as_str()), r.msg_id.split(',').nth(i));
    }
    client.shutdown();
}

/// Sends `count` messages to `topic` from `threads` threads at once, the `i`-th
/// with `selector(i)`; returns each message and its result, in index order.
pub fn send_concurrently<R: Runtime + Sync>(
    client: &R,
    group: &str,
    topic: &str,
    count: usize,
    threads: usize,
    selector: impl Fn(usize) -> QueueSelector + Sync,
) -> Vec<(Message, Result<SendResult, ClientError>)> {
    let mut results: Vec<Option<(Message, Result<SendResult, ClientError>)>> =
        (0..count).map(|_| None).collect();
    let chunks: Vec<&mut [Option<_>]> =
        results.chunks_mut(count.div_ceil(threads).max(1)).collect();
    std::thread::scope(|scope| {
        let mut start = 0;
        for chunk in chunks {
            let first = start;
            start += chunk.len();
            let selector = &selector;
            scope.spawn(move || {
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let i = first + k;
                    let message = test_message(topic, i).with_keys([format!("key-{i}")]);
                    let result = client.send_with(group, message.clone(), selector(i));
                    *slot = Some((message, result));
                }
            });
        }
    });
    results.into_iter().flatten().collect()
}

/// Every message of `topic` on every broker of its route, by unique key, each
/// queue pulled at least to its entry in `ends`.
pub fn pull_topic<R: Runtime>(
    client: &R,
    group: &str,
    topic: &str,
    ends: &HashMap<MessageQueue, i64>,
) -> HashMap<String, MessageExt> {
    let route = client.query_route(topic).expect("route");
    route
        .subscribe_queues(topic)
        .iter()
        .flat_map(|q| pull_all(client, group, q, ends.get(q).copied()))
        .map(|m| (m.msg_id(), m))
        .collect()
}

/// Sends `count` messages with each selector over a two-broker topic (8 threads at
/// once) and accounts for every one by pulling every queue afterwards: stored
/// once, byte for byte, in the queue its result named. Returns the sends per
/// second of each selector.
pub fn selectors_over_two_brokers<R: Runtime + Sync>(
    namesrv: &str,
    topic: &str,
    count: usize,
) -> Vec<(String, f64)> {
    let client = R::start(config(namesrv));
    let group = format!("selectors-{}", R::NAME);
    let mut rates = Vec::new();
    type Choose = fn(usize) -> QueueSelector;
    let selectors: [(&str, Choose); 3] = [
        ("round-robin", |_| QueueSelector::RoundRobin),
        ("random", |_| QueueSelector::Random),
        ("hash", |i| {
            QueueSelector::Hash(format!("customer-{}", i % 97))
        }),
    ];
    let mut all_sent: HashMap<String, (Message, SendResult)> = HashMap::new();
    for (name, selector) in selectors {
        let started = Instant::now();
        let results = send_concurrently(&client, &group, topic, count, 8, selector);
        rates.push((
            name.to_owned(),
            count as f64 / started.elapsed().as_secs_f64(),
        ));
        let mut brokers: BTreeMap<String, usize> = BTreeMap::new();
        for (message, result) in results {
            let result = result.unwrap_or_else(|e| panic!("{} {name}: send failed: {e}", R::NAME));
            *brokers.entry(result.queue.broker_name.clone()).or_default() += 1;
            all_sent.insert(result.msg_id.clone(), (message, result));
        }
        assert_eq!(
            brokers.len(),
            2,
            "{} {name}: both brokers used: {brokers:?}",
            R::NAME
        );
    }
    let stored = pull_topic(
        &client,
        &group,
        topic,
        &ends(all_sent.values().map(|(_, r)| r)),
    );
    assert_eq!(
        stored.len(),
        all_sent.len(),
        "{}: every message stored once",
        R::NAME
    );
    for (id, (message, result)) in &all_sent {
        let got = stored
            .get(id)
            .unwrap_or_else(|| panic!("{}: {id} was acknowledged but not stored", R::NAME));
        assert_eq!(got.body, message.body);
        assert_eq!(got.queue_id, result.queue.queue_id);
        assert_eq!(got.queue_offset, result.queue_offset);
    }
    client.shutdown();
    rates
}

/// What happened to one send of a storm.
#[derive(Debug)]
pub struct StormSend {
    /// When the send returned, since the storm began.
    pub at: Duration,
    /// The message.
    pub message: Message,
    /// Its result.
    pub result: Result<SendResult, ClientError>,
}

/// Sends from `threads` threads without pause until `stop` is set, recording
/// every result with the moment it came back.
pub fn send_storm<R: Runtime + Sync>(
    client: &R,
    group: &str,
    topic: &str,
    threads: usize,
    stop: &std::sync::atomic::AtomicBool,
    log: &std::sync::Mutex<Vec<StormSend>>,
    started: Instant,
) {
    use std::sync::atomic::Ordering;
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let message = Message::new(topic, format!("storm message {i}"));
                    let result = client.send(group, message.clone());
                    let entry = StormSend {
                        at: started.elapsed(),
                        message,
                        result,
                    };
                    log.lock().expect("storm log").push(entry);
                    i += threads;
                }
            });
        }
    });
}

/// A two-broker send storm in which broker 1 is SIGKILLed and later restarted:
/// every acknowledged send is stored, failures are typed errors, sending goes on
/// with the other broker within one route refresh, and the restarted broker is
/// used again. Returns (acknowledged, failed, longest gap without an
/// acknowledgement after the kill).
pub fn broker_kill_during_send_storm<R: Runtime + Sync>(
    cluster: &crate::harness::Cluster,
    topic: &str,
) -> (usize, usize, Duration) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    let client = R::start(config(&cluster.namesrv_addr()));
    let group = format!("storm-{}", R::NAME);
    let victim = cluster.broker(1).name().to_owned();
    let stop = AtomicBool::new(false);
    let log = Mutex::new(Vec::new());
    let started = Instant::now();
    let (killed_at, restarted_at) = std::thread::scope(|scope| {
        scope.spawn(|| send_storm(&client, &group, topic, 4, &stop, &log, started));
        let wait_for = |what: &str, limit: Duration, done: &dyn Fn(&[StormSend]) -> bool| {
            let deadline = Instant::now() + limit;
            while !done(&log.lock().expect("storm log")) {
                assert!(
                    Instant::now() < deadline,
                    "{}: timed out waiting for {what}",
                    R::NAME
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let acked_on = |since: Duration, broker: &str, n: usize| {
            let broker = broker.to_owned();
            move |log: &[StormSend]| {
                log.iter()
                    .filter(|s| s.at > since)
                    .filter(|s| {
                        s.result
                            .as_ref()
                            .is_ok_and(|r| r.queue.broker_name == broker)
                    })
                    .count()
                    >= n
            }
        };
        wait_for(
            "sends on both brokers",
            Duration::from_secs(30),
            &acked_on(Duration::ZERO, &victim, 50),
        );
        cluster.broker(1).kill().expect("kill broker");
        let killed_at = started.elapsed();
        // Keep the storm going on the surviving broker for a while.
        let survivor = cluster.broker(0).name().to_owned();
        wait_for(
            "sends on the survivor",
            Duration::from_secs(30),
            &acked_on(killed_at, &survivor, 500),
        );
        cluster.broker(1).restart().expect("restart broker");
        let restarted_at = started.elapsed();
        wait_for(
            "the restarted broker used again",
            Duration::from_secs(90),
            &acked_on(restarted_at, &victim, 50),
        );
        stop.store(true, Ordering::Relaxed);
        (killed_at, restarted_at)
    });
    let log = log.into_inner().expect("storm log");
    let mut acked: Vec<&StormSend> = log.iter().filter(|s| s.result.is_ok()).collect();
    acked.sort_by_key(|s| s.at);
    let failed = log.len() - acked.len();
    for s in log.iter().filter(|s| s.result.is_err()) {
        // Typed errors only, and only around the kill.
        let e = s.result.as_ref().expect_err("a failure");
        assert!(
            s.at >= killed_at,
            "{}: a send failed before the kill: {e}",
            R::NAME
        );
    }
    let mut gap = Duration::ZERO;
    let mut last = killed_at;
    for s in acked
        .iter()
        .filter(|s| s.at > killed_at && s.at < restarted_at)
    {
        gap = gap.max(s.at - last);
        last = s.at;
    }
    assert!(
        gap < Duration::from_secs(30),
        "{}: sending stalled {gap:?} after the kill",
        R::NAME
    );
    let acked_ends = ends(acked.iter().filter_map(|s| s.result.as_ref().ok()));
    let stored = pull_topic(&client, &group, topic, &acked_ends);
    for s in &acked {
        let r = s.result.as_ref().expect("acknowledged");
        let got = stored.get(&r.msg_id).unwrap_or_else(|| {
            panic!(
                "{}: {} was acknowledged but is not stored",
                R::NAME,
                r.msg_id
            )
        });
        assert_eq!(got.body, s.message.body);
    }
    client.shutdown();
    (acked.len(), failed, gap)
}

/// Clients asked for with the same client id are one client: shutting one handle
/// down shuts the other's calls down too; a different instance name is another
/// client.
pub fn shared_clients<R: Runtime>(namesrv: &str, topic: &str) {
    let named = |name: &str| ClientConfig {
        instance_name: format!("{name}-{}", R::NAME),
        ..config(namesrv)
    };
    let a = R::shared(named("one"));
    let b = R::shared(named("one"));
    let other = R::shared(named("two"));
    a.query_route(topic)
        .expect("route through the shared client");
    a.shutdown();
    assert!(
        matches!(b.query_route(topic), Err(ClientError::Shutdown)),
        "{}: the second handle shares the first's client",
        R::NAME
    );
    other
        .query_route(topic)
        .expect("another instance name is another client");
    other.shutdown();
}
