//! Apache RocketMQ client on tokio.
//!
//! A thin adapter: one driver task owns the sans-IO [`rocketmq_core::Client`] and
//! loops over four things: a user call, an event from a connection task, the
//! core's next deadline, or shutdown. It feeds each into the core and carries out
//! what the core asks (connect, transmit, close, complete a call). All RocketMQ
//! logic lives in the core.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rocketmq_tokio::{Client, ClientConfig, Message};
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

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use consumer::Handler;
use rocketmq_core::consumer::{local_store, Delivery};
use rocketmq_core::{Call, ConnId, Driver, Input, Io, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
/// Frames queued for a connection are gathered up to this size per write.
const WRITE_BUFFER: usize = 64 * 1024;

/// A handle to a running client. Cheap to clone; every clone talks to the same
/// connections.
#[derive(Clone, Debug)]
pub struct Client {
    calls: mpsc::UnboundedSender<Request>,
    /// The driver task, awaited by whoever shuts the client down.
    driver: DriverTask,
}

type DriverTask = std::sync::Arc<std::sync::Mutex<Option<JoinHandle<()>>>>;

/// What a handle asks of the driver.
#[derive(Debug)]
enum Request {
    Call(
        Call,
        Option<Duration>,
        oneshot::Sender<Result<Reply, ClientError>>,
    ),
    Shutdown(oneshot::Sender<()>),
    /// A consumer's listener, before the consumer starts.
    Listen(String, Handler, oneshot::Sender<Result<(), ClientError>>),
    /// The consumer of this group is gone.
    Unlisten(String),
}

impl Client {
    /// Starts a client on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(mut config: ClientConfig) -> Self {
        config.pid = std::process::id();
        config.id_salt = salt();
        Self::spawn(config)
    }

    /// The client of `config`'s client id, shared by every caller in the process
    /// that asks for the same id (as Java keeps one client instance per id), and
    /// started on first use; later callers' other settings are not applied. With
    /// the default instance name, every caller in the process gets the same one.
    /// The client runs on the runtime of its first caller and stops with it;
    /// a process with several runtimes gives each its own instance name.
    pub fn shared(mut config: ClientConfig) -> Self {
        type Weak = (
            mpsc::WeakUnboundedSender<Request>,
            std::sync::Weak<std::sync::Mutex<Option<JoinHandle<()>>>>,
        );
        static CLIENTS: std::sync::Mutex<std::collections::BTreeMap<String, Weak>> =
            std::sync::Mutex::new(std::collections::BTreeMap::new());
        static PROCESS_SALT: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
        config.pid = std::process::id();
        config.id_salt = *PROCESS_SALT.get_or_init(salt);
        let id = config.client_id();
        let mut clients = CLIENTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A client whose driver is gone (its runtime was dropped) is replaced.
        if let Some((calls, driver)) = clients
            .get(&id)
            .and_then(|(calls, driver)| Some((calls.upgrade()?, driver.upgrade()?)))
            .filter(|(calls, _)| !calls.is_closed())
        {
            return Self { calls, driver };
        }
        let client = Self::spawn(config);
        clients.insert(
            id,
            (
                client.calls.downgrade(),
                std::sync::Arc::downgrade(&client.driver),
            ),
        );
        client
    }

    fn spawn(config: ClientConfig) -> Self {
        let (calls, rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(config, rx));
        Self {
            calls,
            driver: std::sync::Arc::new(std::sync::Mutex::new(Some(driver))),
        }
    }

    /// Runs a call and waits for its reply.
    pub async fn call(&self, call: Call, timeout: Option<Duration>) -> Result<Reply, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(Request::Call(call, timeout, tx))
            .map_err(|_| ClientError::Shutdown)?;
        rx.await.map_err(|_| ClientError::Shutdown)?
    }

    rocketmq_core::typed_calls!([async] [.await]);

    /// Registers the listener of a consumer group; one per group.
    async fn listen(&self, group: &str, handler: Handler) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(Request::Listen(group.to_owned(), handler, tx))
            .map_err(|_| ClientError::Shutdown)?;
        rx.await.map_err(|_| ClientError::Shutdown)?
    }

    fn unlisten(&self, group: &str) {
        let _ = self.calls.send(Request::Unlisten(group.to_owned()));
    }

    /// After a consumer's shutdown: its listener goes (its calls finished in
    /// the drain), then the client itself if this is its last handle.
    async fn close_consumer(&self, group: &str) {
        self.unlisten(group);
        if std::sync::Arc::strong_count(&self.driver) == 1 {
            self.shutdown().await;
        }
    }

    /// Closes every connection and stops the driver; the client's tasks are
    /// gone when it returns. Calls still waiting fail with
    /// [`ClientError::Shutdown`].
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.calls.send(Request::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let driver = self
            .driver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(driver) = driver {
            let _ = driver.await;
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

/// A connection task and the channel to its writer. Dropping it ends the task.
struct Conn {
    writer: mpsc::UnboundedSender<Bytes>,
    task: tokio::task::AbortHandle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The tokio side of the driver: tasks for connections, oneshots for calls.
struct TokioIo {
    events: mpsc::UnboundedSender<Input>,
    listeners: HashMap<String, Handler>,
    /// Connection tasks, awaited when the driver ends.
    tasks: Vec<JoinHandle<()>>,
}

impl Io for TokioIo {
    type Conn = Conn;
    type Waiter = oneshot::Sender<Result<Reply, ClientError>>;

    fn connect(&mut self, conn: ConnId, addr: &str) -> Conn {
        let (writer, frames) = mpsc::unbounded_channel();
        let task = tokio::spawn(connection(
            conn,
            addr.to_owned(),
            frames,
            self.events.clone(),
        ));
        let abort = task.abort_handle();
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(task);
        Conn {
            writer,
            task: abort,
        }
    }

    fn transmit(&mut self, conn: &mut Conn, data: Bytes) {
        let _ = conn.writer.send(data);
    }

    fn complete(&mut self, waiter: Self::Waiter, result: Result<Reply, ClientError>) {
        let _ = waiter.send(result);
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
            Some(handler) => consumer::run(handler.clone(), delivery, self.events.clone()),
            None => {
                // No listener (its consumer is going away): the messages stay
                // unconsumed and come back.
                let _ = self.events.send(Input::Consumed {
                    ticket: delivery.ticket,
                    result: ConsumeResult::RETRY,
                });
            }
        }
    }
}

impl TokioIo {
    fn file_op(&self, op: impl FnOnce() -> Input + Send + 'static) {
        let events = self.events.clone();
        tokio::task::spawn_blocking(move || {
            let _ = events.send(op());
        });
    }

    /// Handles a request; returns `Some(waiter)` for a shutdown.
    fn request<C>(
        &mut self,
        driver: &mut Driver<C, oneshot::Sender<Result<Reply, ClientError>>>,
        request: Request,
    ) -> Option<Option<oneshot::Sender<()>>> {
        match request {
            Request::Call(call, timeout, tx) => driver.call(now(), call, timeout, tx),
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
                let _ = tx.send(result);
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

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The driver task: waits for a call, a connection event or the core's deadline.
async fn drive(config: ClientConfig, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut driver = Driver::new(rocketmq_core::Client::new(config, now(), wall_clock_ms()));
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut io = TokioIo {
        events: events_tx,
        listeners: HashMap::new(),
        tasks: Vec::new(),
    };
    let mut shutdown = None;
    loop {
        driver.flush(now(), &mut io);
        if shutdown.is_some() {
            break;
        }
        let deadline = driver.poll_timeout().map(Instant::from_std);
        tokio::select! {
            request = requests.recv() => match request {
                Some(request) => shutdown = io.request(&mut driver, request),
                None => shutdown = Some(None),
            },
            Some(event) = events.recv() => driver.handle_input(now(), event),
            () = sleep_until(deadline) => driver.handle_input(now(), Input::Timeout),
        }
        // Take in whatever else is ready before carrying out the outputs, so that
        // frames bound for one connection leave in one write.
        while shutdown.is_none() {
            if let Ok(event) = events.try_recv() {
                driver.handle_input(now(), event);
            } else if let Ok(request) = requests.try_recv() {
                shutdown = io.request(&mut driver, request);
            } else {
                break;
            }
        }
    }
    driver.shutdown(&mut io);
    // Every connection task is cancelled: wait for each to be gone.
    for task in std::mem::take(&mut io.tasks) {
        let _ = task.await;
    }
    // Calls that raced with the shutdown get their answer too.
    requests.close();
    while let Ok(request) = requests.try_recv() {
        match request {
            Request::Call(_, _, tx) => {
                let _ = tx.send(Err(ClientError::Shutdown));
            }
            Request::Shutdown(tx) => {
                let _ = tx.send(());
            }
            Request::Listen(_, _, tx) => {
                let _ = tx.send(Err(ClientError::Shutdown));
            }
            Request::Unlisten(_) => {}
        }
    }
    if let Some(Some(tx)) = shutdown {
        let _ = tx.send(());
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One connection: connect, then copy socket bytes to the driver and the
/// driver's frames to the socket until either side ends.
async fn connection(
    conn: ConnId,
    addr: String,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
    events: mpsc::UnboundedSender<Input>,
) {
    let stream = match TcpStream::connect(&addr).await {
        Ok(s) => s,
        Err(e) => {
            let _ = events.send(Input::ConnectFailed(conn, e.to_string()));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = events.send(Input::Connected(conn));
    let (mut reader, writer) = stream.into_split();
    let read = async {
        // One buffer, read into and split off: once the core has let go of
        // what was handed over, `reserve` takes the same allocation back.
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            if buf.capacity() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if events.send(Input::Received(conn, buf.split())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let write = async {
        // Frames queued together go out in one write: fewer syscalls under load.
        let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, writer);
        while let Some(frame) = frames.recv().await {
            let mut ok = writer.write_all(&frame).await.is_ok();
            while let (true, Ok(more)) = (ok, frames.try_recv()) {
                ok = writer.write_all(&more).await.is_ok();
            }
            if !ok || writer.flush().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = write => {}
    }
    let _ = events.send(Input::Closed(conn));
}
