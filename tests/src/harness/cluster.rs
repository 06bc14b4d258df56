//! A NameServer and its brokers on 127.0.0.1, started from the cached jars.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rocketmq_core::protocol::body::TopicRouteData;
use rocketmq_core::protocol::command::RemotingCommand;

use super::dist::Distribution;
use super::error::{HarnessError, IoContext};
use super::process::{self, Janitor};
use super::rpc::{self, TopicSpec};
use super::server::{Server, POLL, TAIL_LINES};
use super::servers::{Broker, NameServer, NUDGE_EVERY};

/// Environment variable: default start timeout in seconds (see
/// [`ClusterConfig::start_timeout`]).
pub const START_TIMEOUT_ENV: &str = "ROCKETMQ_TEST_START_TIMEOUT_SECS";

/// Environment variable: when set to anything but `0` or empty, run directories are
/// kept after the cluster is gone (their path is logged).
pub const KEEP_ENV: &str = "ROCKETMQ_TEST_KEEP_RUN_DIR";

/// What to start. [`Default`] is one broker in `DefaultCluster`.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of brokers (`broker-a`, `broker-b`, …), each its own master. 0 starts
    /// a NameServer alone.
    pub brokers: usize,
    /// `brokerClusterName` of every broker.
    pub cluster_name: String,
    /// Extra `broker.conf` entries; they replace the harness's defaults of the same
    /// key (e.g. `("messageDelayLevel", "1s 1s …")`).
    pub broker_properties: Vec<(String, String)>,
    /// Extra `namesrv.conf` entries, as for brokers.
    pub namesrv_properties: Vec<(String, String)>,
    /// Extra JVM options for brokers, after the defaults (so `-Xmx1g` wins).
    pub broker_jvm_args: Vec<String>,
    /// Extra JVM options for the NameServer, after the defaults.
    pub namesrv_jvm_args: Vec<String>,
    /// How long one server may take to become ready. Default: 180 s, or
    /// `$ROCKETMQ_TEST_START_TIMEOUT_SECS`.
    pub start_timeout: Duration,
    /// How long a graceful stop may take before SIGKILL (a broker's shutdown hook
    /// alone takes about 15 s). Default: 60 s.
    pub stop_timeout: Duration,
    /// Keep the run directory when the cluster is gone. Default: whether
    /// `$ROCKETMQ_TEST_KEEP_RUN_DIR` is set. It is also kept when the cluster is
    /// dropped during a panic.
    pub keep_run_dir: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let start_secs = std::env::var(START_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(180);
        Self {
            brokers: 1,
            cluster_name: "DefaultCluster".into(),
            broker_properties: Vec::new(),
            namesrv_properties: Vec::new(),
            broker_jvm_args: Vec::new(),
            namesrv_jvm_args: Vec::new(),
            start_timeout: Duration::from_secs(start_secs),
            stop_timeout: Duration::from_secs(60),
            keep_run_dir: std::env::var(KEEP_ENV).is_ok_and(|v| !v.is_empty() && v != "0"),
        }
    }
}

impl ClusterConfig {
    /// The default configuration with `brokers` brokers.
    pub fn with_brokers(brokers: usize) -> Self {
        Self {
            brokers,
            ..Self::default()
        }
    }

    /// Adds (or overrides) a `broker.conf` entry for every broker.
    pub fn broker_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.broker_properties.push((key.into(), value.into()));
        self
    }

    /// Adds (or overrides) a `namesrv.conf` entry.
    pub fn namesrv_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.namesrv_properties.push((key.into(), value.into()));
        self
    }

    /// Adds a JVM option for every broker.
    pub fn broker_jvm_arg(mut self, arg: impl Into<String>) -> Self {
        self.broker_jvm_args.push(arg.into());
        self
    }

    /// Adds a JVM option for the NameServer.
    pub fn namesrv_jvm_arg(mut self, arg: impl Into<String>) -> Self {
        self.namesrv_jvm_args.push(arg.into());
        self
    }
}

/// A running NameServer with `config.brokers` brokers, in a fresh run directory.
///
/// Dropping it kills every process at once (SIGKILL: the run directory is deleted
/// anyway, so a graceful stop would only cost time) and removes the run directory,
/// unless it is kept (see [`ClusterConfig::keep_run_dir`]). Use
/// [`shutdown`](Self::shutdown) for a graceful stop.
#[derive(Debug)]
pub struct Cluster {
    run_dir: PathBuf,
    dist: Distribution,
    config: ClusterConfig,
    namesrv: NameServer,
    brokers: Vec<Broker>,
    janitor: Mutex<Janitor>,
    mqadmin_runs: AtomicU32,
}

impl Cluster {
    /// Resolves the jars (see [`Distribution::resolve`]), then starts the NameServer
    /// and the brokers and waits until each is ready: the NameServer answers a
    /// route request, and every broker has printed its boot line and is listed in
    /// the NameServer's route of the cluster-name topic.
    pub fn start(config: ClusterConfig) -> Result<Self, HarnessError> {
        let dist = Distribution::resolve()?;
        Self::start_with(dist, config)
    }

    /// As [`start`](Self::start), with an already resolved distribution.
    pub fn start_with(dist: Distribution, config: ClusterConfig) -> Result<Self, HarnessError> {
        if config.brokers > 26 {
            return Err(HarnessError::Config(format!(
                "{} brokers requested; at most 26 (broker-a ..= broker-z)",
                config.brokers
            )));
        }
        let started = Instant::now();
        let run_dir = new_run_dir()?;
        // From here on the janitor removes the directory even if we never return.
        let janitor = Janitor::spawn(&run_dir)?;
        if config.keep_run_dir {
            fs::write(run_dir.join(".keep"), b"").ctx(|| "writing .keep")?;
        }
        tracing::info!(run_dir = %run_dir.display(), brokers = config.brokers, "starting RocketMQ cluster");
        let ctx = Ctx {
            run_dir: run_dir.clone(),
            home: run_dir.join("home"),
            classpath: dist.classpath(),
            config: config.clone(),
        };
        match start_servers(&ctx) {
            Ok((namesrv, brokers)) => {
                tracing::info!(elapsed = ?started.elapsed(), namesrv = %namesrv.addr(), "RocketMQ cluster ready");
                Ok(Self {
                    run_dir,
                    dist,
                    config,
                    namesrv,
                    brokers,
                    janitor: Mutex::new(janitor),
                    mqadmin_runs: AtomicU32::new(0),
                })
            }
            Err(e) => {
                // Everything started was killed when the servers were dropped. Keep
                // the logs for diagnosis; the janitor leaves a kept directory alone.
                let _ = fs::write(run_dir.join(".keep"), b"");
                tracing::error!(run_dir = %run_dir.display(), "cluster start failed; run directory kept");
                eprintln!(
                    "rocketmq-tests harness: start failed; kept the run directory {}",
                    run_dir.display()
                );
                drop(janitor);
                Err(e)
            }
        }
    }

    /// The NameServer address, `127.0.0.1:<port>`.
    pub fn namesrv_addr(&self) -> String {
        self.namesrv.addr()
    }

    /// The NameServer.
    pub fn namesrv(&self) -> &NameServer {
        &self.namesrv
    }

    /// Broker `i` (0 is `broker-a`).
    ///
    /// # Panics
    ///
    /// If the cluster has no broker `i`.
    pub fn broker(&self, i: usize) -> &Broker {
        &self.brokers[i]
    }

    /// All brokers, in order.
    pub fn brokers(&self) -> &[Broker] {
        &self.brokers
    }

    /// The broker named `name`, if any.
    pub fn broker_named(&self, name: &str) -> Option<&Broker> {
        self.brokers.iter().find(|b| b.name() == name)
    }

    /// The cluster name.
    pub fn cluster_name(&self) -> &str {
        &self.config.cluster_name
    }

    /// The run directory: configs, outputs, stores and logs of every process.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The jars the cluster runs.
    pub fn distribution(&self) -> &Distribution {
        &self.dist
    }

    /// Creates (or updates) `topic` with `queues` read and write queues on every
    /// broker, then waits until the NameServer's route shows it so.
    pub fn create_topic(&self, topic: &str, queues: u32) -> Result<(), HarnessError> {
        self.create_topic_with(&TopicSpec::new(topic, queues))
    }

    /// Creates (or updates) a topic as `spec` says, with our own
    /// UPDATE_AND_CREATE_TOPIC requests, then waits until the NameServer's route
    /// lists it on each target broker with the requested queue counts.
    pub fn create_topic_with(&self, spec: &TopicSpec) -> Result<(), HarnessError> {
        let targets: Vec<&Broker> = if spec.brokers.is_empty() {
            self.brokers.iter().collect()
        } else {
            spec.brokers
                .iter()
                .map(|name| {
                    self.broker_named(name)
                        .ok_or_else(|| HarnessError::Config(format!("no broker named {name}")))
                })
                .collect::<Result<_, _>>()?
        };
        if targets.is_empty() {
            return Err(HarnessError::Config("the cluster has no broker".into()));
        }
        for broker in &targets {
            rpc::create_topic(&broker.addr(), spec, rpc::DEFAULT_TIMEOUT)?;
        }
        let names: Vec<&str> = targets.iter().map(|b| b.name()).collect();
        self.wait_for_route(&spec.name, Duration::from_secs(30), |route| {
            names.iter().all(|name| {
                route.queue_datas.iter().any(|q| {
                    q.broker_name == *name
                        && i64::from(q.read_queue_nums) == i64::from(spec.read_queues)
                        && i64::from(q.write_queue_nums) == i64::from(spec.write_queues)
                        && q.perm == spec.perm
                }) && route.master_addr(name).is_some()
            })
        })
        .map(drop)
    }

    /// `topic`'s route from the NameServer; an error ([`HarnessError::Remote`]
    /// with code 17, TOPIC_NOT_EXIST) if it has none.
    pub fn route(&self, topic: &str) -> Result<TopicRouteData, HarnessError> {
        self.try_route(topic)?.ok_or_else(|| HarnessError::Remote {
            addr: self.namesrv_addr(),
            request: "GET_ROUTEINFO_BY_TOPIC(105)".into(),
            code: 17,
            remark: format!("no route for topic {topic}"),
        })
    }

    /// `topic`'s route from the NameServer, `None` if it has none.
    pub fn try_route(&self, topic: &str) -> Result<Option<TopicRouteData>, HarnessError> {
        rpc::query_route(&self.namesrv_addr(), topic, rpc::DEFAULT_TIMEOUT)
    }

    /// Polls `topic`'s route until `ready` accepts it, up to `timeout`.
    pub fn wait_for_route(
        &self,
        topic: &str,
        timeout: Duration,
        mut ready: impl FnMut(&TopicRouteData) -> bool,
    ) -> Result<TopicRouteData, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.try_route(topic) {
                Ok(Some(route)) if ready(&route) => return Ok(route),
                Ok(Some(route)) => format!("; last route: {route:?}"),
                Ok(None) => format!("; the NameServer has no route for {topic}"),
                Err(e) => format!("; last error: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("the route of {topic}"),
                    waited: timeout,
                    detail: last,
                });
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until the NameServer lists every running broker in the cluster's
    /// route, e.g. after a NameServer restart. Brokers re-register every 10 s by
    /// themselves; this asks missing ones to register at once
    /// ([`Broker::register_now`], every 3 s at most).
    pub fn wait_registered(&self, timeout: Duration) -> Result<(), HarnessError> {
        let running: Vec<&Broker> = self.brokers.iter().filter(|b| b.is_running()).collect();
        let topic = &self.config.cluster_name;
        let deadline = Instant::now() + timeout;
        let mut nudged_at: Option<Instant> = None;
        loop {
            let route = self.try_route(topic);
            let missing: Vec<&Broker> = running
                .iter()
                .copied()
                .filter(|b| match &route {
                    Ok(Some(route)) => route.master_addr(b.name()) != Some(b.addr().as_str()),
                    _ => true,
                })
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = missing.iter().map(|b| b.name()).collect();
                return Err(HarnessError::Timeout {
                    what: format!("brokers to register in the route of {topic}"),
                    waited: timeout,
                    detail: format!("; missing: {names:?}; last answer: {route:?}"),
                });
            }
            if nudged_at.is_none_or(|t| t.elapsed() >= NUDGE_EVERY) {
                nudged_at = Some(Instant::now());
                for broker in &missing {
                    if let Err(e) = broker.register_now() {
                        tracing::debug!(broker = %broker.name(), error = %e, "registration request failed");
                    }
                }
            }
            thread::sleep(POLL);
        }
    }

    /// Sends one request to `addr` (a broker's or the NameServer's) and returns the
    /// response, whatever its code. See [`rpc::call`].
    pub fn request(
        &self,
        addr: &str,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, HarnessError> {
        rpc::call(addr, request, rpc::DEFAULT_TIMEOUT)
    }

    /// Runs `mqadmin <args> -n <namesrv>` (one JVM, `MQAdminStartup`) and returns
    /// its output. The tool exits 0 on most failures, so callers must check the
    /// text. Slow (a JVM start): keep it for cross-checks.
    pub fn mqadmin(&self, args: &[&str]) -> Result<String, HarnessError> {
        let n = self.mqadmin_runs.fetch_add(1, Ordering::Relaxed);
        let home = self.run_dir.join("tools");
        let out = home.join(format!("mqadmin-{n}.out"));
        let addr = self.namesrv_addr();
        let mut cmd = self
            .dist
            .jvm("org.apache.rocketmq.tools.command.MQAdminStartup", &out)
            .jvm_args([
                "-Xms64m".to_owned(),
                "-Xmx256m".to_owned(),
                "-XX:+UseSerialGC".to_owned(),
                "-XX:TieredStopAtLevel=1".to_owned(),
                "-XX:-UsePerfData".to_owned(),
                "-Dfile.encoding=UTF-8".to_owned(),
                format!(
                    "-Drocketmq.home.dir={}",
                    self.run_dir.join("home").display()
                ),
                format!("-Duser.home={}", home.display()),
                format!("-Djava.io.tmpdir={}", home.display()),
                "-Drmq.logback.configurationFile=rmq.tools.logback.xml".to_owned(),
                format!("-Drocketmq.namesrv.addr={addr}"),
            ])
            .args(args.iter().copied());
        if !args.contains(&"-n") {
            cmd = cmd.args(["-n", addr.as_str()]);
        }
        let line = format!("mqadmin {}", args.join(" "));
        let mut jvm = cmd.spawn()?;
        let timeout = Duration::from_secs(180);
        match jvm.wait_timeout(timeout)? {
            Some(status) if status.success() => Ok(jvm.output()),
            Some(status) => Err(HarnessError::Command {
                command: line,
                reason: format!("exited with {status}"),
                output: process::tail(&out, TAIL_LINES),
            }),
            None => {
                jvm.kill()?;
                Err(HarnessError::Command {
                    command: line,
                    reason: format!("did not finish within {timeout:?}"),
                    output: process::tail(&out, TAIL_LINES),
                })
            }
        }
    }

    /// Stops the brokers gracefully (SIGTERM, all at once), then the NameServer,
    /// each with SIGKILL after [`ClusterConfig::stop_timeout`], then cleans up as
    /// `Drop` does.
    pub fn shutdown(self) -> Result<(), HarnessError> {
        let mut first_error = None;
        for broker in &self.brokers {
            if let Err(e) = broker.server.signal_term() {
                first_error.get_or_insert(e);
            }
        }
        for broker in &self.brokers {
            if let Err(e) = broker.stop() {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.namesrv.stop() {
            first_error.get_or_insert(e);
        }
        drop(self);
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Close every lifeline first so the JVMs die together, then reap them.
        for server in self.servers() {
            server.begin_kill();
        }
        for server in self.servers() {
            if let Err(e) = server.kill() {
                tracing::warn!(server = %server.name, error = %e, "could not kill");
            }
        }
        let keep = self.config.keep_run_dir || thread::panicking();
        if keep {
            let _ = fs::write(self.run_dir.join(".keep"), b"");
            eprintln!(
                "rocketmq-tests harness: kept the run directory {}",
                self.run_dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.run_dir) {
            tracing::warn!(run_dir = %self.run_dir.display(), error = %e, "could not remove the run directory");
        }
        match self.janitor.lock() {
            Ok(mut janitor) => janitor.finish(),
            Err(poisoned) => poisoned.into_inner().finish(),
        }
    }
}

impl Cluster {
    fn servers(&self) -> impl Iterator<Item = &Server> {
        self.brokers
            .iter()
            .map(|b| &b.server)
            .chain(std::iter::once(&self.namesrv.server))
    }
}

/// Starts the NameServer, then every broker in parallel, each waited for.
fn start_servers(ctx: &Ctx) -> Result<(NameServer, Vec<Broker>), HarnessError> {
    fs::create_dir_all(ctx.home.join("conf")).ctx(|| "creating the RocketMQ home")?;
    let namesrv = NameServer::launch(ctx)?;
    let namesrv_addr = namesrv.addr();
    let results = thread::scope(|s| {
        let handles: Vec<_> = (0..ctx.config.brokers)
            .map(|i| {
                let namesrv_addr = namesrv_addr.as_str();
                s.spawn(move || Broker::launch(ctx, i, namesrv_addr))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(HarnessError::Config(
                        "a broker start-up thread panicked".into(),
                    ))
                })
            })
            .collect::<Vec<_>>()
    });
    // On error, the brokers that did start are dropped (killed) with `results`.
    let brokers = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((namesrv, brokers))
}

/// What every server of one cluster shares.
pub(super) struct Ctx {
    pub(super) run_dir: PathBuf,
    pub(super) home: PathBuf,
    pub(super) classpath: String,
    pub(super) config: ClusterConfig,
}

/// `defaults` with `overrides` applied (same key: replaced; new key: appended).
/// Keys and values are trimmed (RocketMQ silently ignores a value with a trailing
/// space) and must not contain line breaks.
pub(super) fn merge(
    mut defaults: Vec<(String, String)>,
    overrides: &[(String, String)],
) -> Result<Vec<(String, String)>, HarnessError> {
    for (k, v) in overrides {
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || k.contains(['=', ':', '\n', '\r']) || v.contains(['\n', '\r']) {
            return Err(HarnessError::Config(format!("bad property {k:?} = {v:?}")));
        }
        match defaults.iter_mut().find(|(dk, _)| dk == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => defaults.push((k.to_owned(), v.to_owned())),
        }
    }
    Ok(defaults)
}

/// A new, empty run directory under the system temp directory.
fn new_run_dir() -> Result<PathBuf, HarnessError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir().join("rocketmq-harness");
    fs::create_dir_all(&base).ctx(|| format!("creating {}", base.display()))?;
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "run-{}-{}-{nanos:08x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(HarnessError::io(format!("creating {}", dir.display()), e)),
        }
    }
}
