//! A push consumer's shutdown leaves nothing of the client running, on every
//! runtime, against the real broker: no thread, no task, and the same group
//! starts again cleanly, three times over.
//!
//! One test in a process of its own: it counts every client thread of the
//! process, so nothing else may run beside it.
//!
//! Needs `java` and (first run) `mvn` with access to Maven Central; fails, loudly,
//! without them.

use rocketmq_tests::conformance::{AsyncStd, Blocking, Smol, Tokio};
use rocketmq_tests::consume::{self, ConsumerRuntime};
use rocketmq_tests::harness::shared;

fn cycles<R: ConsumerRuntime + Sync>() {
    let cluster = shared();
    let topic = format!("Shutdown-{}", R::NAME);
    cluster.create_topic(&topic, 4).expect("topic");
    let cycles = consume::shutdown_leaves_nothing::<R>(&cluster.namesrv_addr(), &topic);
    for (i, c) in cycles.iter().enumerate() {
        eprintln!(
            "[{}] cycle {i}: {} client threads and {} tasks while running, {} threads and {} tasks right after shutdown",
            R::NAME,
            c.threads_running,
            c.tasks_running,
            c.threads_after.len(),
            c.tasks_after
        );
    }
}

#[test]
fn shutdown_leaves_no_thread_or_task_on_every_runtime() {
    cycles::<Tokio>();
    cycles::<AsyncStd>();
    cycles::<Smol>();
    cycles::<Blocking>();
}
