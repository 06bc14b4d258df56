//! Apache RocketMQ client for async-std and smol.
//!
//! Built on the crates both runtimes run on (async-io, async-net, futures-lite),
//! so it works the same under either, or any executor: the client's futures only
//! wait on channels. A thin adapter: one driver thread runs the sans-IO
//! [`rocketmq_core::Client`] on async-io's reactor with a local executor for its
//! connection tasks, and loops over a user call, a connection event or the core's
//! next deadline. All RocketMQ logic lives in the core.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rocketmq_async_std::ClientError> {
//! use rocketmq_async_std::{Client, ClientConfig, Message};
//!
//! let client = Client::start(ClientConfig {
//!     name_servers: vec!["127.0.0.1:9876".into()],
//!     ..ClientConfig::default()
//! });
//! let sent = client.send("my-producer-group", Message::new("orders", "hello")).await?;
//! println!("stored at {} offset {}", sent.queue, sent.queue_offset);
//! client.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_executor::{LocalExecutor, Task};
use async_io::Timer;
use async_net::TcpStream;
use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use consumer::Handler;
use rocketmq_core::consumer::{local_store, Delivery};
use rocketmq_core::{Call, ConnId, Driver, Input, Io, Reply};

mod consumer;

pub use consumer::{PushConsumer, PushConsumerBuilder};
pub use rocketmq_core as core;
pub use rocketmq_core::consumer::{
    ConsumeContext, ConsumeFrom, ConsumeResult, ConsumerStats, MessageModel, Selector,
};
pub use rocketmq_core::protocol::message::{Message, MessageExt};
pub use rocketmq_core::{
    ClientConfig, ClientError, PullResult, PullStatus, QueueSelector, SendResult, SendStatus,
};

/// Size of each socket read.
const READ_CHUNK: usize = 64 * 1024;

type ReplyTx = Sender<Result<Reply, ClientError>>;

/// What a handle asks of the driver.
#[derive(Debug)]
enum Request {
    Call(Call, Option<Duration>, ReplyTx),
    Shutdown(Sender<()>),
    /// A consumer's listener, before the consumer starts.
    Listen(String, Handler, Sender<Result<(), ClientError>>),
    /// The consumer of this group is gone.
    Unlisten(String),
}

/// A handle to a running client. Cheap to clone; every clone talks to the same
/// connections.
#[derive(Clone, Debug)]
pub struct Client {
    requests: Sender<Request>,
    /// The driver thread, joined by whoever shuts the client down.
    driver: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Client {
    /// Starts a client on its own driver thread.
    pub fn start(mut config: ClientConfig) -> Self {
        config.pid = std::process::id();
        config.id_salt = salt();
        Self::spawn(config)
    }

    /// The client of `config`'s client id, shared by every caller in the process
    /// that asks for the same id (as Java keeps one client instance per id), and
    /// started on first use; later callers' other settings are not applied. With
    /// the default instance name, every caller in the process gets the same one.
    pub fn shared(mut config: ClientConfig) -> Self {
        type Driver = std::sync::Weak<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>;
        static CLIENTS: std::sync::Mutex<
            std::collections::BTreeMap<String, (async_channel::WeakSender<Request>, Driver)>,
        > = std::sync::Mutex::new(std::collections::BTreeMap::new());
        static PROCESS_SALT: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
        config.pid = std::process::id();
        config.id_salt = *PROCESS_SALT.get_or_init(salt);
        let id = config.client_id();
        let mut clients = CLIENTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((requests, driver)) = clients
            .get(&id)
            .and_then(|(requests, driver)| Some((requests.upgrade()?, driver.upgrade()?)))
        {
            return Self { requests, driver };
        }
        let client = Self::spawn(config);
        clients.insert(
            id,
            (client.requests.downgrade(), Arc::downgrade(&client.driver)),
        );
        client
    }

    fn spawn(config: ClientConfig) -> Self {
        let (requests, rx) = async_channel::unbounded();
        let spawned = std::thread::Builder::new()
            .name("rocketmq-driver".into())
            .spawn(move || {
                let ex = LocalExecutor::new();
                async_io::block_on(ex.run(drive(&ex, config, rx)));
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the driver thread"))
            .ok();
        Self {
            requests,
            driver: Arc::new(std::sync::Mutex::new(spawned)),
        }
    }

    /// Runs a call and waits for its reply.
    pub async fn call(&self, call: Call, timeout: Option<Duration>) -> Result<Reply, ClientError> {
        let (tx, rx) = async_channel::bounded(1);
        self.requests
            .send(Request::Call(call, timeout, tx))
            .await
            .map_err(|_| ClientError::Shutdown)?;
        rx.recv().await.map_err(|_| ClientError::Shutdown)?
    }

    rocketmq_core::typed_calls!([async] [.await]);

    /// Registers the listener of a consumer group; one per group.
    async fn listen(&self, group: &str, handler: Handler) -> Result<(), ClientError> {
        let (tx, rx) = async_channel::bounded(1);
        self.requests
            .send(Request::Listen(group.to_owned(), handler, tx))
            .await
            .map_err(|_| ClientError::Shutdown)?;
        rx.recv().await.map_err(|_| ClientError::Shutdown)?
    }

    fn unlisten(&self, group: &str) {
        let _ = self.requests.try_send(Request::Unlisten(group.to_owned()));
    }

    /// After a consumer's shutdown: its listener goes (its async calls are
    /// tasks of the driver, already finished by the drain), then the client
    /// itself if this is its last handle.
    async fn close_consumer(&self, group: &str) {
        self.unlisten(group);
        if Arc::strong_count(&self.driver) == 1 {
            self.shutdown().await;
        }
    }

    /// Closes every connection and stops the driver; the client's thread and
    /// tasks are gone when it returns. Calls still waiting fail with
    /// [`ClientError::Shutdown`].
    pub async fn shutdown(&self) {
        let (tx, rx) = async_channel::bounded(1);
        if self.requests.send(Request::Shutdown(tx)).await.is_ok() {
            let _ = rx.recv().await;
        }
        let driver = self
            .driver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_if(|d| d.thread().id() != std::thread::current().id());
        if let Some(driver) = driver {
            // The thread is ending: its executor and tasks are being dropped.
            let _ = blocking::unblock(move || driver.join()).await;
        }
    }
}

/// A per-process random value for message ids, from the standard library's
/// randomly seeded hasher.
fn salt() -> i32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as i32
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A connection task and the channel to its writer. Dropping it cancels the task.
struct Conn {
    writer: Sender<Bytes>,
    _task: Task<()>,
}

/// The async-io side of the driver: local tasks for connections, channels for calls.
struct AsyncIo<'a, 'ex> {
    ex: &'a LocalExecutor<'ex>,
    events: Sender<Input>,
    listeners: HashMap<String, Handler>,
}

impl<'ex> Io for AsyncIo<'_, 'ex> {
    type Conn = Conn;
    type Waiter = ReplyTx;

    fn connect(&mut self, conn: ConnId, addr: &str) -> Conn {
        let (writer, frames) = async_channel::unbounded();
        let task = self.ex.spawn(connection(
            conn,
            addr.to_owned(),
            frames,
            self.events.clone(),
        ));
        Conn {
            writer,
            _task: task,
        }
    }

    fn transmit(&mut self, conn: &mut Conn, data: Bytes) {
        let _ = conn.writer.try_send(data);
    }

    fn complete(&mut self, waiter: ReplyTx, result: Result<Reply, ClientError>) {
        let _ = waiter.try_send(result);
    }

    fn load(&mut self, path: String) {
        self.file_op(move || Input::Loaded {
            result: read_file(&path),
            path,
        });
    }

    fn persist(&mut self, path: String, data: Bytes) {
        self.file_op(move || Input::Persisted {
            result: write_file(&path, &data),
            path,
        });
    }

    fn deliver(&mut self, delivery: Delivery) {
        match self.listeners.get(&delivery.context.group) {
            Some(handler) => consumer::run(self.ex, handler.clone(), delivery, self.events.clone()),
            None => {
                // No listener (its consumer is going away): the messages stay
                // unconsumed and come back.
                let _ = self.events.try_send(Input::Consumed {
                    ticket: delivery.ticket,
                    result: ConsumeResult::RETRY,
                });
            }
        }
    }
}

impl AsyncIo<'_, '_> {
    fn file_op(&self, op: impl FnOnce() -> Input + Send + 'static) {
        let events = self.events.clone();
        self.ex
            .spawn(async move {
                let input = blocking::unblock(op).await;
                let _ = events.send(input).await;
            })
            .detach();
    }

    /// Handles a request; returns `Some(waiter)` for a shutdown.
    fn request(
        &mut self,
        driver: &mut Driver<Conn, ReplyTx>,
        request: Request,
    ) -> Option<Option<Sender<()>>> {
        match request {
            Request::Call(call, timeout, tx) => driver.call(Instant::now(), call, timeout, tx),
            Request::Shutdown(tx) => return Some(Some(tx)),
            Request::Listen(group, handler, tx) => {
                let result = match self.listeners.entry(group) {
                    Entry::Occupied(e) => Err(ClientError::ConsumerState(format!(
                        "a consumer of group {} already runs in this client",
                        e.key()
                    ))),
                    Entry::Vacant(e) => {
                        e.insert(handler);
                        Ok(())
                    }
                };
                let _ = tx.try_send(result);
            }
            Request::Unlisten(group) => {
                self.listeners.remove(&group);
            }
        }
        None
    }
}

/// Reads a broadcasting consumer's offset file (`None`: no file yet).
fn read_file(path: &str) -> Result<Option<Bytes>, String> {
    let path = local_store::expand_home(path, std::env::var("HOME").ok().as_deref());
    match std::fs::read(&path) {
        Ok(data) => Ok(Some(Bytes::from(data))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// Replaces a file atomically: write a temporary file, then rename it over.
fn write_file(path: &str, data: &[u8]) -> Result<(), String> {
    let path = local_store::expand_home(path, std::env::var("HOME").ok().as_deref());
    let tmp = local_store::temp_path(&path);
    let dir = std::path::Path::new(&path).parent();
    dir.map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, data))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{path}: {e}"))
}

/// What woke the driver.
enum Wake {
    Request(Option<Request>),
    Event(Input),
    Deadline,
}

/// The driver: waits for a call, a connection event or the core's deadline.
async fn drive(ex: &LocalExecutor<'_>, config: ClientConfig, requests: Receiver<Request>) {
    let mut driver = Driver::new(rocketmq_core::Client::new(
        config,
        Instant::now(),
        wall_clock_ms(),
    ));
    let (events_tx, events) = async_channel::unbounded::<Input>();
    let mut io = AsyncIo {
        ex,
        events: events_tx,
        listeners: HashMap::new(),
    };
    let mut shutdown = None;
    loop {
        driver.flush(Instant::now(), &mut io);
        if shutdown.is_some() {
            break;
        }
        let deadline = driver.poll_timeout();
        let wake = future::or(
            async { Wake::Request(requests.recv().await.ok()) },
            future::or(
                async {
                    match events.recv().await {
                        Ok(event) => Wake::Event(event),
                        Err(_) => future::pending().await,
                    }
                },
                async {
                    match deadline {
                        Some(d) => {
                            Timer::at(d).await;
                            Wake::Deadline
                        }
                        None => future::pending().await,
                    }
                },
            ),
        )
        .await;
        let now = Instant::now();
        match wake {
            Wake::Request(Some(request)) => shutdown = io.request(&mut driver, request),
            Wake::Request(None) => shutdown = Some(None),
            Wake::Event(event) => driver.handle_input(now, event),
            Wake::Deadline => driver.handle_input(now, Input::Timeout),
        }
        // Take in whatever else is ready before carrying out the outputs, so that
        // frames bound for one connection leave in one write.
        while shutdown.is_none() {
            if let Ok(event) = events.try_recv() {
                driver.handle_input(Instant::now(), event);
            } else if let Ok(request) = requests.try_recv() {
                shutdown = io.request(&mut driver, request);
            } else {
                break;
            }
        }
    }
    driver.shutdown(&mut io);
    // Calls that raced with the shutdown would wait forever: a closed async
    // channel keeps its queued messages (and their reply senders) alive.
    requests.close();
    while let Ok(request) = requests.try_recv() {
        match request {
            Request::Call(_, _, tx) => {
                let _ = tx.try_send(Err(ClientError::Shutdown));
            }
            Request::Shutdown(tx) => {
                let _ = tx.try_send(());
            }
            Request::Listen(_, _, tx) => {
                let _ = tx.try_send(Err(ClientError::Shutdown));
            }
            Request::Unlisten(_) => {}
        }
    }
    if let Some(Some(tx)) = shutdown {
        let _ = tx.try_send(());
    }
}

/// One connection: connect, then copy socket bytes to the driver and the
/// driver's frames to the socket until either side ends.
async fn connection(conn: ConnId, addr: String, frames: Receiver<Bytes>, events: Sender<Input>) {
    let stream = match TcpStream::connect(addr.as_str()).await {
        Ok(s) => s,
        Err(e) => {
            let _ = events.send(Input::ConnectFailed(conn, e.to_string())).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = events.send(Input::Connected(conn)).await;
    let mut reader = stream.clone();
    let mut writer = stream;
    let read = async {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                // Safe Rust cannot read into uninitialised memory: copy what arrived
                // rather than zero a fresh buffer for every read.
                Ok(n) => {
                    if events
                        .send(Input::Received(conn, BytesMut::from(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let write = async {
        while let Ok(frame) = frames.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    };
    future::or(read, write).await;
    let _ = events.send(Input::Closed(conn)).await;
}
