//! The push consumer against a real broker, on every runtime.
//!
//! Needs `java` and (first run) `mvn` with access to Maven Central; fails, loudly,
//! without them.

use rocketmq_tests::conformance::{AsyncStd, Blocking, Smol, Tokio};
use rocketmq_tests::consume::{self, ConsumerRuntime};
use rocketmq_tests::harness::shared;

/// Messages per drain run with a sync listener: enough to cross many pulls on
/// every queue, and the scale.
const DRAIN: usize = 100_000;

/// Messages per drain run with an async listener (kept smaller: the suite's
/// wall time; the listener path is what differs).
const DRAIN_ASYNC: usize = 20_000;

fn drain<R: ConsumerRuntime + Sync>(asynchronous: bool) {
    let cluster = shared();
    let topic = format!(
        "Drain-{}-{}",
        R::NAME,
        if asynchronous { "async" } else { "sync" }
    );
    cluster.create_topic(&topic, 8).expect("topic");
    let count = if asynchronous { DRAIN_ASYNC } else { DRAIN };
    let run =
        consume::consume_everything::<R>(&cluster.namesrv_addr(), &topic, count, asynchronous);
    let committed: i64 = run.broker.values().filter_map(|b| b.committed).sum();
    let max: i64 = run.broker.values().map(|b| b.max).sum();
    eprintln!(
        "[{}{}] {} messages over {} queues: {} consumed, {} duplicates, in {:?}; on the broker, {}/{} queues committed to their end before the shutdown, all after it (committed sum {committed} = max offsets sum {max})",
        R::NAME,
        if asynchronous { ", async listener" } else { "" },
        run.sent,
        run.broker.len(),
        run.consumed,
        run.duplicates,
        run.elapsed,
        run.at_end_before_shutdown,
        run.broker.len(),
    );
}

#[test]
fn drain_tokio() {
    drain::<Tokio>(false);
}

#[test]
fn drain_tokio_async_listener() {
    drain::<Tokio>(true);
}

#[test]
fn drain_async_std() {
    drain::<AsyncStd>(false);
}

#[test]
fn drain_async_std_async_listener() {
    drain::<AsyncStd>(true);
}

#[test]
fn drain_smol() {
    drain::<Smol>(false);
}

#[test]
fn drain_smol_async_listener() {
    drain::<Smol>(true);
}

#[test]
fn drain_blocking() {
    drain::<Blocking>(false);
}

fn retry<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("Retry-{}", R::NAME);
    cluster.create_topic(&topic, 2).expect("topic");
    consume::retry_and_dead_letter::<R>(&cluster.namesrv_addr(), &topic);
}

#[test]
fn retry_and_dead_letter_tokio() {
    retry::<Tokio>();
}

#[test]
fn retry_and_dead_letter_async_std() {
    retry::<AsyncStd>();
}

#[test]
fn retry_and_dead_letter_smol() {
    retry::<Smol>();
}

#[test]
fn retry_and_dead_letter_blocking() {
    retry::<Blocking>();
}

fn group<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("Group-{}", R::NAME);
    cluster.create_topic(&topic, 8).expect("topic");
    let run = consume::group_changes::<R>(&cluster.namesrv_addr(), &topic, 8000);
    let moved: Vec<String> = run
        .moved
        .iter()
        .map(|(q, owners, dups)| format!("q{} {}: {dups}", q.queue_id, owners.join(">")))
        .collect();
    eprintln!(
        "[{}] 3 consumers, one joining and one leaving mid-stream: {} messages, none lost, {} duplicates from moved queues (bound {} = {} handovers x window {}; per moved queue {}), in {:?}",
        R::NAME,
        run.sent,
        run.duplicates,
        run.bound,
        run.handovers,
        run.window,
        moved.join(", "),
        run.elapsed
    );
}

#[test]
fn group_changes_tokio() {
    group::<Tokio>();
}

#[test]
fn group_changes_async_std() {
    group::<AsyncStd>();
}

#[test]
fn group_changes_smol() {
    group::<Smol>();
}

#[test]
fn group_changes_blocking() {
    group::<Blocking>();
}

fn from<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("From-{}", R::NAME);
    cluster.create_topic(&topic, 2).expect("topic");
    consume::consume_from::<R>(&cluster.namesrv_addr(), &topic);
}

#[test]
fn consume_from_tokio() {
    from::<Tokio>();
}

#[test]
fn consume_from_async_std() {
    from::<AsyncStd>();
}

#[test]
fn consume_from_smol() {
    from::<Smol>();
}

#[test]
fn consume_from_blocking() {
    from::<Blocking>();
}

fn filters<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("Filter-{}", R::NAME);
    cluster.create_topic(&topic, 2).expect("topic");
    consume::filters::<R>(&cluster.namesrv_addr(), &topic);
}

#[test]
fn filters_tokio() {
    filters::<Tokio>();
}

#[test]
fn filters_async_std() {
    filters::<AsyncStd>();
}

#[test]
fn filters_smol() {
    filters::<Smol>();
}

#[test]
fn filters_blocking() {
    filters::<Blocking>();
}

fn broadcasting<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("Broadcast-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("topic");
    let dir = cluster.run_dir().join(format!("offsets-{}", R::NAME));
    consume::broadcasting::<R>(&cluster.namesrv_addr(), &topic, &dir);
}

#[test]
fn broadcasting_tokio() {
    broadcasting::<Tokio>();
}

#[test]
fn broadcasting_async_std() {
    broadcasting::<AsyncStd>();
}

#[test]
fn broadcasting_smol() {
    broadcasting::<Smol>();
}

#[test]
fn broadcasting_blocking() {
    broadcasting::<Blocking>();
}

fn restart<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("Restart-{}", R::NAME);
    cluster.create_topic(&topic, 8).expect("topic");
    let duplicates = consume::restart_mid_stream::<R>(&cluster.namesrv_addr(), &topic);
    eprintln!(
        "[{}] shutdown mid-stream and restart: nothing lost, {duplicates} duplicates",
        R::NAME
    );
}

#[test]
fn restart_mid_stream_tokio() {
    restart::<Tokio>();
}

#[test]
fn restart_mid_stream_async_std() {
    restart::<AsyncStd>();
}

#[test]
fn restart_mid_stream_smol() {
    restart::<Smol>();
}

#[test]
fn restart_mid_stream_blocking() {
    restart::<Blocking>();
}

fn bounded<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("Bounded-{}", R::NAME);
    cluster.create_topic(&topic, 8).expect("topic");
    let run = consume::bounded_cache::<R>(&cluster.namesrv_addr(), &topic);
    const KIB: u64 = 1024;
    eprintln!(
        "[{}] {} messages ({} KiB) with budget {} messages / {} KiB: peak cache {} messages, {} KiB (cap {} KiB); RSS {} -> {} KiB, growth {} KiB (cap {} KiB); delivered per queue {:?}",
        R::NAME,
        run.messages,
        run.backlog_bytes as u64 / KIB,
        run.budget.0,
        run.budget.1 as u64 / KIB,
        run.max_count,
        run.max_bytes as u64 / KIB,
        run.byte_cap as u64 / KIB,
        run.rss_before / KIB,
        run.rss_peak / KIB,
        run.rss_peak.saturating_sub(run.rss_before) / KIB,
        run.rss_cap / KIB,
        run.per_queue
    );
}

#[test]
fn bounded_cache_tokio() {
    bounded::<Tokio>();
}

#[test]
fn bounded_cache_async_std() {
    bounded::<AsyncStd>();
}

#[test]
fn bounded_cache_smol() {
    bounded::<Smol>();
}

#[test]
fn bounded_cache_blocking() {
    bounded::<Blocking>();
}

fn stuck_call<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("Stuck-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("topic");
    let took = consume::stuck_call_holds_up_nothing::<R>(&cluster.namesrv_addr(), &topic);
    eprintln!(
        "[{}] 199 messages consumed in {took:?} while message 0 was stuck in its listener",
        R::NAME
    );
}

#[test]
fn stuck_call_tokio() {
    stuck_call::<Tokio>();
}

#[test]
fn stuck_call_async_std() {
    stuck_call::<AsyncStd>();
}

#[test]
fn stuck_call_smol() {
    stuck_call::<Smol>();
}

#[test]
fn stuck_call_blocking() {
    stuck_call::<Blocking>();
}
