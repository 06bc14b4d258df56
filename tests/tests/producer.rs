//! The producer against a real two-broker cluster, on every runtime: every
//! selector spreads and stores every message; a broker killed during a send storm
//! loses nothing that was acknowledged.
//!
//! Needs `java` and (first run) `mvn` with access to Maven Central; fails, loudly,
//! without them.

use rocketmq_tests::conformance::{self, AsyncStd, Blocking, Runtime, Smol, Tokio};
use rocketmq_tests::harness::{Cluster, ClusterConfig};

const MESSAGES: usize = 10_000;

fn selectors<R: Runtime + Sync>() {
    let cluster = Cluster::start(ClusterConfig::with_brokers(2)).expect("two-broker cluster");
    let topic = format!("Selectors-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("create topic");
    let rates =
        conformance::selectors_over_two_brokers::<R>(&cluster.namesrv_addr(), &topic, MESSAGES);
    for (selector, rate) in rates {
        eprintln!(
            "[{}] {MESSAGES} messages, {selector}: {rate:.0} sends/s (8 threads, sync)",
            R::NAME
        );
    }
}

#[test]
fn selectors_tokio() {
    selectors::<Tokio>();
}

#[test]
fn selectors_async_std() {
    selectors::<AsyncStd>();
}

#[test]
fn selectors_smol() {
    selectors::<Smol>();
}

#[test]
fn selectors_blocking() {
    selectors::<Blocking>();
}

fn broker_kill<R: Runtime + Sync>() {
    let cluster = Cluster::start(ClusterConfig::with_brokers(2)).expect("two-broker cluster");
    let topic = format!("Storm-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("create topic");
    let (acked, failed, gap) = conformance::broker_kill_during_send_storm::<R>(&cluster, &topic);
    eprintln!(
        "[{}] broker SIGKILLed mid-storm: {acked} sends acknowledged (all stored), {failed} failed with typed errors, longest stall after the kill {gap:?}",
        R::NAME
    );
}

#[test]
fn broker_kill_tokio() {
    broker_kill::<Tokio>();
}

#[test]
fn broker_kill_async_std() {
    broker_kill::<AsyncStd>();
}

#[test]
fn broker_kill_smol() {
    broker_kill::<Smol>();
}

#[test]
fn broker_kill_blocking() {
    broker_kill::<Blocking>();
}
