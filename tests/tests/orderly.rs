//! The orderly consumer against a real broker, on every runtime.
//!
//! Needs `java` and (first run) `mvn` with access to Maven Central; fails, loudly,
//! without them.

use rocketmq_tests::conformance::{AsyncStd, Blocking, Smol, Tokio};
use rocketmq_tests::consume::ConsumerRuntime;
use rocketmq_tests::harness::shared;
use rocketmq_tests::orderly::{self, summary};

fn group<R: ConsumerRuntime + Sync>(asynchronous: bool) {
    let cluster = shared();
    let topic = format!(
        "Orderly-{}-{}",
        R::NAME,
        if asynchronous { "async" } else { "sync" }
    );
    cluster.create_topic(&topic, 16).expect("topic");
    let run = orderly::orderly_group::<R>(&cluster.namesrv_addr(), &topic, asynchronous);
    eprintln!(
        "[{}{}] {} messages of 64 keys over 16 queues, in order, in {:?}: {} suspensions, {} duplicates over {} queues that changed hands; the joiner's queues from lock won to first message: {}; from its start to first message: {}",
        R::NAME,
        if asynchronous { ", async listener" } else { "" },
        run.sent,
        run.elapsed,
        run.suspended,
        run.duplicates,
        run.handovers,
        summary(&run.lock_to_first),
        summary(&run.start_to_first),
    );
}

#[test]
fn orderly_group_tokio() {
    group::<Tokio>(false);
}

#[test]
fn orderly_group_tokio_async_listener() {
    group::<Tokio>(true);
}

#[test]
fn orderly_group_async_std() {
    group::<AsyncStd>(false);
}

#[test]
fn orderly_group_smol_async_listener() {
    group::<Smol>(true);
}

#[test]
fn orderly_group_blocking() {
    group::<Blocking>(false);
}

fn dead_letter<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("OrderlyDlq-{}", R::NAME);
    cluster.create_topic(&topic, 1).expect("topic");
    orderly::orderly_dead_letter::<R>(&cluster.namesrv_addr(), &topic);
    eprintln!(
        "[{}] orderly: each failing message delivered 3 times in place, then to the DLQ; the queue moved on after each",
        R::NAME
    );
}

#[test]
fn orderly_dead_letter_tokio() {
    dead_letter::<Tokio>();
}

#[test]
fn orderly_dead_letter_async_std() {
    dead_letter::<AsyncStd>();
}

#[test]
fn orderly_dead_letter_smol() {
    dead_letter::<Smol>();
}

#[test]
fn orderly_dead_letter_blocking() {
    dead_letter::<Blocking>();
}
