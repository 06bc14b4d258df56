//! A real Apache RocketMQ 5.3.3 NameServer and brokers on 127.0.0.1, for
//! integration tests, demos and benchmarks.
//!
//! ```no_run
//! use rocketmq_tests::harness::{Cluster, ClusterConfig};
//!
//! # fn main() -> Result<(), rocketmq_tests::harness::HarnessError> {
//! let cluster = Cluster::start(ClusterConfig::with_brokers(1))?;
//! cluster.create_topic("T", 4)?;
//! let route = cluster.route("T")?;
//! assert_eq!(route.queue_datas[0].write_queue_nums, 4);
//! cluster.broker(0).kill()?;
//! cluster.broker(0).restart()?; // same store, same ports
//! # Ok(()) }
//! // dropping `cluster` kills every JVM and deletes its run directory
//! ```
//!
//! Or, for tests that can share one cluster per test binary (give each test its own
//! topics and groups): [`shared()`].
//!
//! # What it needs
//!
//! Only `java` (17+) and, for the first run, `mvn` and access to Maven Central. The
//! first run resolves the RocketMQ jars into a cache ([`Distribution`]); later runs
//! reuse it. A missing tool or an unreachable registry is an error that says what
//! to install or what failed; nothing is skipped.
//!
//! # Environment
//!
//! | variable | effect |
//! |---|---|
//! | `ROCKETMQ_TEST_CACHE` | cache root (default `$XDG_CACHE_HOME/rocketmq-rust-tests` or `~/.cache/rocketmq-rust-tests`) |
//! | `ROCKETMQ_TEST_MAVEN_REPO` | Maven local repository (default Maven's own, `~/.m2/repository`) |
//! | `ROCKETMQ_TEST_MVN` | Maven executable (default `mvn`) |
//! | `JAVA_HOME` | `java` is `$JAVA_HOME/bin/java` when set, else `java` from `PATH` |
//! | `ROCKETMQ_TEST_START_TIMEOUT_SECS` | how long one server may take to become ready (default 180) |
//! | `ROCKETMQ_TEST_KEEP_RUN_DIR` | keep run directories (configs, outputs, logs, stores) |
//!
//! Run directories live under `$TMPDIR/rocketmq-harness/`. Each process gets its own
//! `user.home` there, so nothing is written to the real home directory.
//!
//! # Cleanup guarantee
//!
//! Every JVM runs under a watchdog (see [`process`]): a `sh` wrapper whose stdin is
//! a pipe only the test process can write. When the test process ends in any way
//! (normal exit, panic, `std::process::exit`, SIGKILL), the kernel closes that pipe
//! and the watchdog SIGKILLs the JVM. A second `sh` (the janitor) does the same for
//! the run directory. This is what cleans up after [`shared()`], whose `static`
//! cluster is never dropped; a [`Cluster`] that is dropped cleans up at once.

mod cluster;
mod dist;
mod error;
mod ports;
pub mod process;
pub mod rpc;
mod server;
mod servers;

use std::sync::OnceLock;

pub use cluster::{Cluster, ClusterConfig, KEEP_ENV, START_TIMEOUT_ENV};
pub use dist::{
    cache_root, Distribution, Resolver, CACHE_ENV, MAVEN_REPO_ENV, MVN_ENV, ROCKETMQ_VERSION,
};
pub use error::HarnessError;
pub use process::{java_processes_mentioning, Jvm, JvmCommand};
pub use rpc::TopicSpec;
pub use servers::{Broker, NameServer};

/// The cluster shared by every test of this test binary: one broker
/// ([`ClusterConfig::default`]), started on first use, never stopped by Rust (a
/// `static` is not dropped). The watchdogs kill its JVMs and the janitor removes its
/// run directory when the test process exits, however it exits (see the module
/// docs).
///
/// Do not kill, stop or restart its servers: other tests use them. Start a
/// [`Cluster`] of your own for fault tests.
///
/// # Panics
///
/// If the cluster cannot start (the message says why); every later call panics
/// with the same message rather than trying again.
pub fn shared() -> &'static Cluster {
    match try_shared() {
        Ok(cluster) => cluster,
        Err(e) => panic!("the shared RocketMQ test cluster did not start: {e}"),
    }
}

/// As [`shared()`], returning the start-up error instead of panicking.
pub fn try_shared() -> Result<&'static Cluster, &'static HarnessError> {
    static SHARED: OnceLock<Result<Cluster, HarnessError>> = OnceLock::new();
    SHARED
        .get_or_init(|| Cluster::start(ClusterConfig::default()))
        .as_ref()
}
