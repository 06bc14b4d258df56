//! The servers of a [`Cluster`](super::Cluster): its NameServer and brokers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::cluster::{merge, Ctx};
use super::error::HarnessError;
use super::ports;
use super::rpc;
use super::server::{Probe, Role, Server};

/// How long after its boot line an unregistered broker is asked to register.
const NUDGE_AFTER: Duration = Duration::from_secs(1);

/// How often an unregistered broker is asked again.
pub(super) const NUDGE_EVERY: Duration = Duration::from_secs(3);

/// Attempts at a first start, each with new ports, when a server cannot bind.
const BIND_ATTEMPTS: usize = 3;

/// The running NameServer of a [`Cluster`](super::Cluster).
#[derive(Debug)]
pub struct NameServer {
    pub(super) server: Server,
    port: u16,
    cluster_name: String,
}

impl NameServer {
    pub(super) fn launch(ctx: &Ctx) -> Result<Self, HarnessError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = ports::reserve_block(1)?;
            let server = Server::new(ctx, "namesrv", Role::Namesrv);
            let props = merge(
                vec![
                    ("listenPort".into(), port.to_string()),
                    ("bindAddress".into(), "127.0.0.1".into()),
                    (
                        "kvConfigPath".into(),
                        server.home.join("kvConfig.json").display().to_string(),
                    ),
                ],
                &ctx.config.namesrv_properties,
            )?;
            server.write_conf(&props)?;
            let ns = Self {
                server,
                port,
                cluster_name: ctx.config.cluster_name.clone(),
            };
            match ns.start() {
                Ok(()) => return Ok(ns),
                Err(HarnessError::Start {
                    bind_failure: true, ..
                }) if attempt < BIND_ATTEMPTS => {
                    tracing::warn!(
                        port,
                        "NameServer could not bind; retrying with another port"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listen port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JVM's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// The file its stdout and stderr go to.
    pub fn output_file(&self) -> PathBuf {
        self.server.out.clone()
    }

    /// Its log directory (`namesrv.log`, …).
    pub fn log_dir(&self) -> PathBuf {
        self.server.log_dir()
    }

    /// Starts it again after [`stop`](Self::stop) or [`kill`](Self::kill), on the
    /// same port, and waits until it answers. Brokers re-register within 10 s; see
    /// [`Cluster::wait_registered`](super::Cluster::wait_registered).
    pub fn start(&self) -> Result<(), HarnessError> {
        let addr = self.addr();
        let topic = self.cluster_name.clone();
        self.server.start(
            move |_| match rpc::query_route(&addr, &topic, Duration::from_secs(5)) {
                Ok(_) => Probe::Ready,
                Err(e) => Probe::NotYet(e.to_string()),
            },
        )
    }

    /// SIGTERM, wait up to the stop timeout, then SIGKILL.
    pub fn stop(&self) -> Result<(), HarnessError> {
        self.server.stop()
    }

    /// SIGKILL at once.
    pub fn kill(&self) -> Result<(), HarnessError> {
        self.server.kill()
    }

    /// [`stop`](Self::stop) if running, then [`start`](Self::start).
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.server.stop()?;
        self.start()
    }
}

/// A running broker of a [`Cluster`](super::Cluster): a master (`brokerId=0`) named `broker-a`,
/// `broker-b`, …, listening on `127.0.0.1:L` with its fast port `L-2` and HA port
/// `L+1`.
#[derive(Debug)]
pub struct Broker {
    pub(super) server: Server,
    port: u16,
    cluster_name: String,
    namesrv_addr: String,
    /// `brokerPermission` as configured (6 unless overridden).
    permission: String,
}

impl Broker {
    pub(super) fn launch(
        ctx: &Ctx,
        index: usize,
        namesrv_addr: &str,
    ) -> Result<Self, HarnessError> {
        let letter = char::from(b'a' + u8::try_from(index).unwrap_or(0));
        let name = format!("broker-{letter}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            // L-2 (fast), L-1 (unused), L (main), L+1 (HA).
            let port = ports::reserve_block(4)? + 2;
            let server = Server::new(ctx, &name, Role::Broker);
            let store = server.home.join("store");
            let defaults: Vec<(String, String)> = [
                ("brokerClusterName", ctx.config.cluster_name.clone()),
                ("brokerName", name.clone()),
                ("brokerId", "0".into()),
                ("brokerRole", "ASYNC_MASTER".into()),
                ("namesrvAddr", namesrv_addr.to_owned()),
                ("listenPort", port.to_string()),
                ("haListenPort", (port + 1).to_string()),
                ("bindAddress", "127.0.0.1".into()),
                ("brokerIP1", "127.0.0.1".into()),
                ("brokerIP2", "127.0.0.1".into()),
                ("storePathRootDir", store.display().to_string()),
                (
                    "storePathCommitLog",
                    store.join("commitlog").display().to_string(),
                ),
                // Small files: 64 MiB commit log, 30k-entry consume queues, ~4 MB index.
                ("mappedFileSizeCommitLog", (64u32 << 20).to_string()),
                ("mappedFileSizeConsumeQueue", "600000".into()),
                ("mappedFileSizeTimerLog", (16u32 << 20).to_string()),
                ("maxHashSlotNum", "50000".into()),
                ("maxIndexNum", "200000".into()),
                ("flushDiskType", "ASYNC_FLUSH".into()),
                ("deleteWhen", "04".into()),
                ("fileReservedTime", "48".into()),
                ("diskMaxUsedSpaceRatio", "95".into()),
                ("autoCreateTopicEnable", "true".into()),
                ("autoCreateSubscriptionGroup", "true".into()),
                // SQL92 filters (CHECK_CLIENT_CONFIG and SQL92 pulls need it).
                ("enablePropertyFilter", "true".into()),
                // Re-register every 10 s (the minimum) after a NameServer restart.
                ("registerNameServerPeriod", "10000".into()),
                // Busy 2-core CI machines: do not reject sends as SYSTEM_BUSY early.
                ("osPageCacheBusyTimeOutMills", "5000".into()),
                ("waitTimeMillsInSendQueue", "1000".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let props = merge(defaults, &ctx.config.broker_properties)?;
            server.write_conf(&props)?;
            let permission = props
                .iter()
                .find(|(k, _)| k == "brokerPermission")
                .map_or_else(|| "6".to_owned(), |(_, v)| v.clone());
            let broker = Self {
                server,
                port,
                cluster_name: ctx.config.cluster_name.clone(),
                namesrv_addr: namesrv_addr.to_owned(),
                permission,
            };
            match broker.start() {
                Ok(()) => return Ok(broker),
                Err(HarnessError::Start {
                    bind_failure: true, ..
                }) if attempt < BIND_ATTEMPTS => {
                    tracing::warn!(broker = %name, port, "broker could not bind; retrying with other ports");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `brokerName`: `broker-a`, `broker-b`, …
    pub fn name(&self) -> &str {
        &self.server.name
    }

    /// `127.0.0.1:<listen port>`, the address in routes.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The main listen port L (the fast port is L-2, the HA port L+1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JVM's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// The store root (`commitlog/`, `consumequeue/`, `config/`, …), kept across
    /// restarts.
    pub fn store_dir(&self) -> PathBuf {
        self.server.home.join("store")
    }

    /// The generated `broker.conf`. The broker rewrites it with all its settings
    /// whenever it gets UPDATE_BROKER_CONFIG, which includes
    /// [`register_now`](Self::register_now).
    pub fn config_file(&self) -> PathBuf {
        self.server.conf.clone()
    }

    /// The file its stdout and stderr go to (appended across restarts).
    pub fn output_file(&self) -> PathBuf {
        self.server.out.clone()
    }

    /// Its log directory (`broker.log`, `store.log`, …).
    pub fn log_dir(&self) -> PathBuf {
        self.server.log_dir()
    }

    /// Starts it after [`stop`](Self::stop) or [`kill`](Self::kill), with the same
    /// store and ports, and waits until it is ready: its boot line is printed and
    /// the NameServer lists it again.
    ///
    /// A broker registers during start-up only if its NameServer connection check
    /// (an asynchronous scan) has already finished; on a busy machine it often has
    /// not, and the next registration comes 10 s later. So when the boot line is out
    /// but the route lacks the broker, the harness asks for a registration with
    /// [`register_now`](Self::register_now) (every 3 s at most).
    pub fn start(&self) -> Result<(), HarnessError> {
        let namesrv = self.namesrv_addr.clone();
        let topic = self.cluster_name.clone();
        let name = self.name().to_owned();
        let addr = self.addr();
        let boot_line = format!("The broker[{name}, {addr}] boot success");
        let mut booted_at: Option<Instant> = None;
        let mut nudged_at: Option<Instant> = None;
        self.server.start(move |output| {
            if !output.contains(&boot_line) {
                return Probe::NotYet("no boot line in its output yet".into());
            }
            let booted = *booted_at.get_or_insert_with(Instant::now);
            let why = match rpc::query_route(&namesrv, &topic, Duration::from_secs(5)) {
                Ok(Some(route)) if route.master_addr(&name) == Some(addr.as_str()) => {
                    return Probe::Ready
                }
                Ok(Some(route)) => format!(
                    "route of {topic} does not list {name} at {addr}: {:?}",
                    route.broker_datas
                ),
                Ok(None) => format!("the NameServer has no route for {topic}"),
                Err(e) => e.to_string(),
            };
            let nudge_due = nudged_at.map_or(booted.elapsed() >= NUDGE_AFTER, |t| {
                t.elapsed() >= NUDGE_EVERY
            });
            if nudge_due {
                nudged_at = Some(Instant::now());
                tracing::debug!(broker = %name, "booted but not registered; asking it to register");
                if let Err(e) = self.register_now() {
                    tracing::debug!(broker = %name, error = %e, "registration request failed");
                }
            }
            Probe::NotYet(why)
        })
    }

    /// Asks the broker to register with the NameServer now, with all its topics:
    /// UPDATE_BROKER_CONFIG setting `brokerPermission` to its current value, which
    /// forces a full registration. (The broker rewrites its config file as a side
    /// effect.)
    pub fn register_now(&self) -> Result<(), HarnessError> {
        rpc::update_broker_config(
            &self.addr(),
            &[("brokerPermission", self.permission.as_str())],
            rpc::DEFAULT_TIMEOUT,
        )
    }

    /// SIGTERM (the broker unregisters, flushes and persists; about 15 s), wait up to
    /// the stop timeout, then SIGKILL.
    pub fn stop(&self) -> Result<(), HarnessError> {
        self.server.stop()
    }

    /// SIGKILL at once: no unregistration, no flush. The NameServer drops the route
    /// when the broker's connection closes; the store recovers on the next start.
    pub fn kill(&self) -> Result<(), HarnessError> {
        self.server.kill()
    }

    /// [`stop`](Self::stop) if running, then [`start`](Self::start), keeping store
    /// and ports.
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.server.stop()?;
        self.start()
    }
}
