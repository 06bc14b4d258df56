//! The real-broker harness itself: start, admin requests, faults, cleanup.
//!
//! These tests need `java` and (first run) `mvn` with access to Maven Central; they
//! fail, loudly, without them. Timings are printed to stderr (`--nocapture`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rocketmq_tests::harness::{
    self, java_processes_mentioning, Cluster, ClusterConfig, HarnessError, Resolver,
};

/// Polls `done` every 100 ms for up to `timeout`.
fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    done()
}

fn jvms(dir: &Path) -> Vec<u32> {
    java_processes_mentioning(&dir.display().to_string()).expect("process table")
}

#[test]
fn one_broker_topic_kill_restart_and_cleanup() {
    let test_start = Instant::now();
    let cluster = Cluster::start(ClusterConfig::with_brokers(1)).expect("cluster start");
    let started = test_start.elapsed();
    eprintln!(
        "[timing] 1-broker cluster ready in {started:?} (includes the Maven resolution if the cache was cold)"
    );
    let run_dir = cluster.run_dir().to_path_buf();
    let broker = cluster.broker(0);
    assert_eq!(broker.name(), "broker-a");
    assert_eq!(jvms(&run_dir).len(), 2, "namesrv and broker JVMs");

    // Our own UPDATE_AND_CREATE_TOPIC, then the NameServer route.
    let topic = "HarnessTopicFour";
    cluster.create_topic(topic, 4).expect("create topic");
    let route = cluster.route(topic).expect("route");
    assert_eq!(route.queue_datas.len(), 1, "{route:?}");
    let q = &route.queue_datas[0];
    assert_eq!(q.broker_name, "broker-a");
    assert_eq!((q.read_queue_nums, q.write_queue_nums), (4, 4));
    assert!(q.is_readable() && q.is_writable(), "{q:?}");
    assert_eq!(route.master_addr("broker-a"), Some(broker.addr().as_str()));
    assert!(cluster
        .try_route("NoSuchTopicHere")
        .expect("route query")
        .is_none());

    // The Java admin tool sees the same route.
    let t = Instant::now();
    let out = cluster
        .mqadmin(&["topicRoute", "-t", topic])
        .expect("mqadmin topicRoute");
    eprintln!("[timing] mqadmin topicRoute took {:?}", t.elapsed());
    assert!(
        out.contains("broker-a") && out.contains("\"readQueueNums\":4"),
        "{out}"
    );

    // SIGKILL: the NameServer drops the broker when its connection closes.
    let old_pid = broker.pid().expect("broker pid");
    let t = Instant::now();
    broker.kill().expect("kill");
    assert!(!broker.is_running());
    assert!(!jvms(&run_dir).contains(&old_pid));
    let dropped = eventually(Duration::from_secs(30), || {
        match cluster.try_route("DefaultCluster") {
            Ok(route) => route.is_none_or(|r| r.broker("broker-a").is_none()),
            Err(_) => false,
        }
    });
    assert!(dropped, "the NameServer still lists the killed broker");
    eprintln!("[timing] kill + route drop took {:?}", t.elapsed());

    // Restart on the same store and ports: it re-registers, and the topic survived.
    let t = Instant::now();
    broker.restart().expect("restart");
    eprintln!(
        "[timing] broker restart (after SIGKILL) ready in {:?}",
        t.elapsed()
    );
    let new_pid = broker.pid().expect("restarted pid");
    assert_ne!(new_pid, old_pid);
    let cluster_route = cluster.route("DefaultCluster").expect("cluster route");
    assert_eq!(
        cluster_route.master_addr("broker-a"),
        Some(broker.addr().as_str())
    );
    let route = cluster.route(topic).expect("route after restart");
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);

    // Dropping the cluster leaves no JVM and no run directory behind.
    let t = Instant::now();
    drop(cluster);
    eprintln!("[timing] drop took {:?}", t.elapsed());
    assert_eq!(
        jvms(&run_dir),
        Vec::<u32>::new(),
        "JVMs outlived the cluster"
    );
    assert!(!run_dir.exists(), "{} not removed", run_dir.display());
    eprintln!("[timing] whole test {:?}", test_start.elapsed());
}

#[test]
fn two_brokers_start_and_share_a_topic() {
    let test_start = Instant::now();
    let cluster = Cluster::start(ClusterConfig::with_brokers(2)).expect("cluster start");
    eprintln!(
        "[timing] 2-broker cluster ready in {:?}",
        test_start.elapsed()
    );
    let run_dir = cluster.run_dir().to_path_buf();
    assert_eq!(jvms(&run_dir).len(), 3);
    let route = cluster.route("DefaultCluster").expect("cluster route");
    for broker in cluster.brokers() {
        assert_eq!(
            route.master_addr(broker.name()),
            Some(broker.addr().as_str())
        );
    }
    assert_ne!(cluster.broker(0).port(), cluster.broker(1).port());

    cluster
        .create_topic("HarnessTopicTwoBrokers", 2)
        .expect("create topic");
    let route = cluster.route("HarnessTopicTwoBrokers").expect("route");
    let mut names: Vec<_> = route
        .queue_datas
        .iter()
        .map(|q| q.broker_name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["broker-a", "broker-b"]);
    assert!(route.queue_datas.iter().all(|q| q.write_queue_nums == 2));

    // Only on broker-b.
    let spec = harness::TopicSpec::new("HarnessTopicOnB", 3).on_brokers(["broker-b"]);
    cluster.create_topic_with(&spec).expect("create on b");
    let route = cluster.route("HarnessTopicOnB").expect("route");
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].broker_name, "broker-b");

    // A NameServer restart on the same port: the brokers register again, with topics.
    let t = Instant::now();
    cluster.namesrv().kill().expect("kill namesrv");
    cluster.namesrv().start().expect("start namesrv");
    cluster
        .wait_registered(Duration::from_secs(60))
        .expect("brokers re-register");
    eprintln!(
        "[timing] namesrv kill + restart + re-registration took {:?}",
        t.elapsed()
    );
    let route = cluster
        .route("HarnessTopicTwoBrokers")
        .expect("route after namesrv restart");
    assert_eq!(route.queue_datas.len(), 2, "{route:?}");

    // Graceful stop: the broker unregisters on its way out.
    let t = Instant::now();
    cluster.broker(1).stop().expect("stop broker-b");
    eprintln!("[timing] graceful broker stop took {:?}", t.elapsed());
    assert!(!cluster.broker(1).is_running());
    let route = cluster.route("DefaultCluster").expect("cluster route");
    assert!(route.broker("broker-b").is_none(), "{route:?}");
    assert!(route.broker("broker-a").is_some(), "{route:?}");

    drop(cluster);
    assert_eq!(jvms(&run_dir), Vec::<u32>::new());
    eprintln!("[timing] whole test {:?}", test_start.elapsed());
}

/// The run directory named in a start error (`--- last 40 lines of <dir>/x.out ---`).
fn run_dir_in(message: &str) -> PathBuf {
    let path = message
        .split("lines of ")
        .nth(1)
        .and_then(|rest| rest.split(" ---").next())
        .expect("a log path in the error");
    Path::new(path).parent().expect("run dir").to_path_buf()
}

#[test]
fn failed_starts_report_the_process_output() {
    // The JVM exits at once.
    let config = ClusterConfig::with_brokers(1).namesrv_jvm_arg("-XX:+NoSuchHarnessOption");
    let err = Cluster::start(config).expect_err("a bad JVM option must fail");
    let message = err.to_string();
    assert!(matches!(err, HarnessError::Start { .. }), "{message}");
    assert!(message.contains("namesrv failed to start"), "{message}");
    assert!(message.contains("exited with"), "{message}");
    assert!(message.contains("NoSuchHarnessOption"), "{message}");
    let run_dir = run_dir_in(&message);
    assert!(
        run_dir.join("namesrv.out").is_file(),
        "failed runs are kept"
    );
    assert!(jvms(&run_dir).is_empty());
    std::fs::remove_dir_all(&run_dir).expect("remove the kept run dir");

    // Not ready in time: killed, with its output.
    let config = ClusterConfig {
        start_timeout: Duration::from_millis(300),
        ..ClusterConfig::with_brokers(1)
    };
    let err = Cluster::start(config).expect_err("a 300 ms start timeout must fail");
    let message = err.to_string();
    assert!(message.contains("not ready within 300ms"), "{message}");
    assert!(message.contains("--- last 40 lines of"), "{message}");
    let run_dir = run_dir_in(&message);
    assert!(
        eventually(Duration::from_secs(10), || jvms(&run_dir).is_empty()),
        "a timed-out JVM survived"
    );
    std::fs::remove_dir_all(&run_dir).expect("remove the kept run dir");
}

#[test]
fn missing_maven_or_registry_fails_loudly() {
    let cache = std::env::temp_dir().join(format!("rmq-harness-nomvn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let base = Resolver {
        cache_root: cache.clone(),
        ..Resolver::from_env().expect("resolver")
    };

    let no_mvn = Resolver {
        mvn: PathBuf::from("/nonexistent/bin/mvn"),
        ..base.clone()
    };
    let err = no_mvn.resolve().expect_err("no mvn must fail");
    assert!(matches!(err, HarnessError::ToolMissing { .. }), "{err}");
    assert!(err.to_string().contains("Install Apache Maven"), "{err}");

    let no_java = Resolver {
        java: PathBuf::from("/nonexistent/bin/java"),
        ..base.clone()
    };
    let err = no_java.resolve().expect_err("no java must fail");
    assert!(err.to_string().contains("Install a Java 17+"), "{err}");

    // An unreachable registry: Maven offline with an empty local repository.
    let offline = Resolver {
        maven_repo: Some(cache.join("empty-m2")),
        maven_args: vec!["--offline".into()],
        ..base
    };
    let err = offline.resolve().expect_err("offline resolution must fail");
    assert!(matches!(err, HarnessError::Resolve { .. }), "{err}");
    assert!(err.to_string().contains("Maven Central"), "{err}");
    assert!(
        !cache.join("rocketmq-5.3.3").exists(),
        "a failed resolution was published"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// Env var telling [`shared_cluster_child`] to run, and how to end.
const CHILD_ENV: &str = "ROCKETMQ_HARNESS_TEST_CHILD";

/// Not a test by itself: the body of the child process the cleanup tests start.
/// It starts the shared cluster, prints its run directory, then either returns
/// (the process exits normally) or waits to be killed.
#[test]
#[ignore = "child process of the shared-cluster cleanup tests"]
fn shared_cluster_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cluster = harness::shared();
    println!("@@RUN_DIR={}@@", cluster.run_dir().display());
    if mode == "wait" {
        thread::sleep(Duration::from_secs(600));
    }
}

/// Starts this test binary as a child running [`shared_cluster_child`] and returns
/// it with the run directory it printed.
fn spawn_child(mode: &str) -> (std::process::Child, PathBuf) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "shared_cluster_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child test process");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("@@RUN_DIR=").nth(1) {
                let dir = rest.split("@@").next().unwrap_or_default().to_owned();
                let _ = tx.send(PathBuf::from(dir));
            }
        }
    });
    let run_dir = rx
        .recv_timeout(Duration::from_secs(400))
        .expect("the child did not report its shared cluster");
    (child, run_dir)
}

#[test]
fn shared_cluster_dies_with_a_sigkilled_test_process() {
    let (mut child, run_dir) = spawn_child("wait");
    assert_eq!(jvms(&run_dir).len(), 2, "the child's namesrv and broker");
    child.kill().expect("SIGKILL the child"); // std's kill is SIGKILL
    child.wait().expect("reap the child");
    let t = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || jvms(&run_dir).is_empty()),
        "JVMs outlived a SIGKILLed test process: {:?}",
        jvms(&run_dir)
    );
    eprintln!(
        "[timing] watchdogs killed the JVMs {:?} after the SIGKILL",
        t.elapsed()
    );
    assert!(
        eventually(Duration::from_secs(30), || !run_dir.exists()),
        "the janitor did not remove {}",
        run_dir.display()
    );
}

#[test]
fn shared_cluster_dies_with_a_test_process_that_exits() {
    let (mut child, run_dir) = spawn_child("exit");
    let status = child.wait().expect("child exit");
    assert!(status.success(), "child failed: {status}");
    assert!(
        eventually(Duration::from_secs(30), || jvms(&run_dir).is_empty()),
        "JVMs outlived the test process: {:?}",
        jvms(&run_dir)
    );
    assert!(
        eventually(Duration::from_secs(30), || !run_dir.exists()),
        "the janitor did not remove {}",
        run_dir.display()
    );
}
