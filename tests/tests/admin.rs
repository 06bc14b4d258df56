//! The push consumer under the real Java admin tool (`mqadmin`, rocketmq-tools
//! 5.3.3 from Maven Central), on every runtime: an operator's offset reset by
//! time makes a running consumer read again from there, and `consumerStatus`
//! shows the consumer's running info (an orderly one's with its locks).
//!
//! Needs `java` and (first run) `mvn` with access to Maven Central; fails, loudly,
//! without them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocketmq_core::consumer::{ConsumeResult, OrderlyResult};
use rocketmq_core::protocol::message::Message;
use rocketmq_core::QueueSelector;
use rocketmq_tests::conformance::{
    config, send_concurrently, AsyncStd, Blocking, Runtime, Smol, Tokio,
};
use rocketmq_tests::consume::{
    counting, options, wait_until, ConsumerRuntime, RunningConsumer, Seen,
};
use rocketmq_tests::harness::{shared, Cluster};

/// Messages per run.
const COUNT: usize = 200;

/// Runs `mqadmin <args>` against the cluster and returns what it printed.
fn mqadmin(cluster: &Cluster, name: &str, args: &[String]) -> String {
    let work = cluster.run_dir().join(format!("mqadmin-{name}"));
    std::fs::create_dir_all(&work).expect("work dir");
    let mut jvm = cluster
        .distribution()
        .jvm(
            "org.apache.rocketmq.tools.command.MQAdminStartup",
            work.join("out.txt"),
        )
        .work_dir(&work)
        .jvm_arg(format!("-Duser.home={}", work.display()))
        .jvm_arg("-Xmx128m")
        .args(args.iter().cloned())
        .arg("-n")
        .arg(cluster.namesrv_addr())
        .spawn()
        .expect("start mqadmin");
    let status = jvm.wait_timeout(Duration::from_secs(60)).expect("wait");
    let output = jvm.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "mqadmin {args:?} failed:\n{output}"
    );
    output
}

/// `mqadmin consumerStatus` of one client of `group`: what it printed.
fn consumer_status(cluster: &Cluster, name: &str, group: &str, client_id: &str) -> String {
    let args = ["consumerStatus", "-g", group, "-i", client_id].map(str::to_owned);
    mqadmin(cluster, name, &args)
}

/// Sends [`COUNT`] test messages to `topic`, round robin over its queues.
fn send_all<R: Runtime + Sync>(producer: &R, topic: &str) {
    for (i, (_, r)) in send_concurrently(producer, "admin-producer", topic, COUNT, 4, |_| {
        QueueSelector::RoundRobin
    })
    .into_iter()
    .enumerate()
    {
        r.unwrap_or_else(|e| panic!("{}: send {i} failed: {e}", R::NAME));
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn admin<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let namesrv = cluster.namesrv_addr();
    let topic = format!("Admin-{}", R::NAME);
    let group = format!("admin-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("topic");
    let producer = R::start(config(&namesrv));
    let before = wall_ms() - 1000;
    send_all(&producer, &topic);
    let seen: Seen = Arc::default();
    let o = options(&namesrv, &group, &topic);
    let client_id = o.client.client_id();
    let consumer = R::start_consumer(o, counting(&seen), false)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    let all = wait_until(Duration::from_secs(60), || {
        seen.lock().map(|s| s.len() >= COUNT).unwrap_or(false)
    });
    assert!(all, "{}: first pass: {:?}", R::NAME, consumer.stats());

    // The running info, as the admin tool reads it from this client.
    let status = consumer_status(cluster, &format!("status-{}", R::NAME), &group, &client_id);
    for needle in [
        "CONSUME_PASSIVELY",
        "#Consumer Subscription#",
        &topic,
        "%RETRY%",
    ] {
        assert!(
            status.contains(needle),
            "{}: consumerStatus shows {needle:?}:\n{status}",
            R::NAME
        );
    }

    // An operator resets the group to a time before the first message: the
    // broker (5.x) answers the consumer's next pulls OFFSET_MOVED, and every
    // message is delivered again.
    let reset = mqadmin(
        cluster,
        &format!("reset-{}", R::NAME),
        &[
            "resetOffsetByTime".into(),
            "-g".into(),
            group.clone(),
            "-t".into(),
            topic.clone(),
            "-s".into(),
            before.to_string(),
        ],
    );
    let first_pass = seen
        .lock()
        .map(|s| s.values().map(|n| *n as usize).sum::<usize>())
        .unwrap_or(0);
    // New messages wake the pulls the broker holds (a long poll otherwise
    // answers within its 15 s suspend).
    for i in 0..8 {
        let wake = Message::new(topic.as_str(), format!("wake {i}")).with_property("index", "wake");
        producer
            .send("admin-producer", wake)
            .unwrap_or_else(|e| panic!("{}: wake-up send failed: {e}", R::NAME));
    }
    let again = wait_until(Duration::from_secs(60), || {
        seen.lock()
            .map(|s| (0..COUNT).all(|i| s.get(&i.to_string()).is_some_and(|n| *n >= 2)))
            .unwrap_or(false)
    });
    let total: usize = seen
        .lock()
        .map(|s| s.values().map(|n| *n as usize).sum())
        .unwrap_or(0);
    let stats = consumer.stats();
    consumer.shutdown().expect("shutdown");
    producer.shutdown();
    assert!(
        again,
        "{}: after the reset every message comes again ({first_pass} deliveries before, {total} after); mqadmin said:\n{reset}\n{stats:?}",
        R::NAME
    );
    eprintln!(
        "[{}] consumerStatus read the running info; resetOffsetByTime redelivered all {COUNT} messages ({} deliveries in all)",
        R::NAME,
        total
    );
}

#[test]
fn admin_tokio() {
    admin::<Tokio>();
}

#[test]
fn admin_async_std() {
    admin::<AsyncStd>();
}

#[test]
fn admin_smol() {
    admin::<Smol>();
}

#[test]
fn admin_blocking() {
    admin::<Blocking>();
}

/// `consumerStatus` of an orderly consumer shows it as orderly, with every
/// queue it holds locked.
fn orderly_status<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let namesrv = cluster.namesrv_addr();
    let topic = format!("AdminOrderly-{}", R::NAME);
    let group = format!("admin-orderly-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("topic");
    let producer = R::start(config(&namesrv));
    send_all(&producer, &topic);
    let seen: Seen = Arc::default();
    let counted = counting(&seen);
    let listener = Arc::new(move |m: &[_], c: &_| match counted(m, c) {
        ConsumeResult::Success => OrderlyResult::Success,
        ConsumeResult::ReconsumeLater { .. } => OrderlyResult::SUSPEND,
    });
    let o = options(&namesrv, &group, &topic);
    let client_id = o.client.client_id();
    let consumer = R::start_orderly(o, listener, false)
        .unwrap_or_else(|e| panic!("{}: start failed: {e}", R::NAME));
    let all = wait_until(Duration::from_secs(60), || {
        seen.lock().map(|s| s.len() >= COUNT).unwrap_or(false)
    });
    assert!(all, "{}: consumed: {:?}", R::NAME, consumer.stats());
    let status = consumer_status(
        cluster,
        &format!("orderly-status-{}", R::NAME),
        &group,
        &client_id,
    );
    let locked = status.matches("locked=true").count();
    consumer.shutdown().expect("shutdown");
    producer.shutdown();
    assert!(
        status
            .lines()
            .any(|l| l.contains("PROP_CONSUMEORDERLY") && l.contains("true")),
        "{}: consumerStatus shows an orderly consumer:\n{status}",
        R::NAME
    );
    // The topic's 4 queues and the retry topic's 1.
    assert_eq!(
        locked,
        5,
        "{}: consumerStatus shows each queue locked:\n{status}",
        R::NAME
    );
    eprintln!(
        "[{}] consumerStatus shows the orderly consumer with its {locked} queues locked",
        R::NAME
    );
}

#[test]
fn orderly_status_tokio() {
    orderly_status::<Tokio>();
}

#[test]
fn orderly_status_blocking() {
    orderly_status::<Blocking>();
}
