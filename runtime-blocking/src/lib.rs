//! Apache RocketMQ client on std threads and blocking sockets.
//!
//! A thin adapter: one driver thread owns the sans-IO [`rocketmq_core::Client`]
//! and waits on one channel for a user call, an event from a connection thread,
//! or the core's next deadline; it feeds each into the core and carries out what
//! the core asks. Each connection has a reader and a writer thread. All RocketMQ
//! logic lives in the core.
//!
//! ```no_run
//! use rocketmq_blocking::{Client, ClientConfig, Message};
//!
//! let client = Client::start(ClientConfig {
//!     name_servers: vec!["127.0.0.1:9876".into()],
//!     ..ClientConfig::default()
//! });
//! let sent = client.send("my-producer-group", Message::new("orders", "hello"))?;
//! println!("stored at {} offset {}", sent.queue, sent.queue_offset);
//! client.shutdown();
//! # Ok::<(), rocketmq_blocking::ClientError>(())
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use consumer::{Pool, Results};
use rocketmq_core::consumer::{local_store, Delivery, SyncListener};
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
/// How long a connect may take (Java's 3 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a consumer's shutdown waits for its consume threads once the core
/// has drained: idle threads end at once; this is for a listener call still
/// running past the drain deadline.
const POOL_END: Duration = Duration::from_secs(1);

type ReplyTx = mpsc::SyncSender<Result<Reply, ClientError>>;

/// Everything the driver thread waits for, on one channel.
enum Event {
    Call(Call, Option<Duration>, ReplyTx),
    Input(Input),
    /// Stop; the sender (if any) learns when the driver is done.
    Shutdown(Option<mpsc::SyncSender<()>>),
    /// A consumer's listener and its thread count, before the consumer starts.
    Listen(
        String,
        usize,
        SyncListener,
        mpsc::SyncSender<Result<(), ClientError>>,
    ),
    /// The consumer of this group is gone; its pool goes to the sender, if
    /// any, to be closed there.
    Unlisten(String, Option<mpsc::SyncSender<Option<Pool>>>),
    /// Listener results are waiting in [`consumer::Results`].
    Consumed,
}

/// A handle to a running client. Cheap to clone; every clone talks to the same
/// connections. When the last clone is dropped the client shuts down.
#[derive(Clone, Debug)]
pub struct Client {
    inner: std::sync::Arc<Handle>,
}

/// The channel to the driver. The driver's connection threads hold senders too,
/// so the channel alone never tells the driver that the user is gone: dropping
/// the last handle says so, and waits for the driver to end.
#[derive(Debug)]
struct Handle {
    events: mpsc::Sender<Event>,
    driver: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
}

impl Handle {
    /// Waits for the driver thread to end, unless this is that thread (a
    /// listener's last handle can be dropped there).
    fn join(&self) {
        let mut driver = self
            .driver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if driver
            .as_ref()
            .is_some_and(|d| d.thread().id() != thread::current().id())
        {
            if let Some(driver) = driver.take() {
                let _ = driver.join();
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Shutdown(None));
        self.join();
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call(call, ..) => write!(f, "Call({call:?})"),
            Self::Input(input) => write!(f, "Input({input:?})"),
            Self::Shutdown(_) => write!(f, "Shutdown"),
            Self::Listen(group, ..) => write!(f, "Listen({group})"),
            Self::Unlisten(group, _) => write!(f, "Unlisten({group})"),
            Self::Consumed => write!(f, "Consumed"),
        }
    }
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
        static CLIENTS: std::sync::Mutex<
            std::collections::BTreeMap<String, std::sync::Weak<Handle>>,
        > = std::sync::Mutex::new(std::collections::BTreeMap::new());
        static PROCESS_SALT: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
        config.pid = std::process::id();
        config.id_salt = *PROCESS_SALT.get_or_init(salt);
        let id = config.client_id();
        let mut clients = CLIENTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(inner) = clients.get(&id).and_then(|weak| weak.upgrade()) {
            return Self { inner };
        }
        let client = Self::spawn(config);
        clients.insert(id, std::sync::Arc::downgrade(&client.inner));
        client
    }

    fn spawn(config: ClientConfig) -> Self {
        let (events, rx) = mpsc::channel();
        let own = events.clone();
        let driver = thread::Builder::new()
            .name("rocketmq-driver".into())
            .spawn(move || drive(config, rx, own))
            .map_err(|e| tracing::error!(error = %e, "cannot start the driver thread"))
            .ok();
        Self {
            inner: std::sync::Arc::new(Handle {
                events,
                driver: std::sync::Mutex::new(driver),
            }),
        }
    }

    /// Runs a call and waits for its reply.
    pub fn call(&self, call: Call, timeout: Option<Duration>) -> Result<Reply, ClientError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner
            .events
            .send(Event::Call(call, timeout, tx))
            .map_err(|_| ClientError::Shutdown)?;
        rx.recv().map_err(|_| ClientError::Shutdown)?
    }

    rocketmq_core::typed_calls!([] []);

    /// Registers the listener of a consumer group; one per group.
    fn listen(
        &self,
        group: &str,
        threads: usize,
        listener: SyncListener,
    ) -> Result<(), ClientError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner
            .events
            .send(Event::Listen(group.to_owned(), threads, listener, tx))
            .map_err(|_| ClientError::Shutdown)?;
        rx.recv().map_err(|_| ClientError::Shutdown)?
    }

    fn unlisten(&self, group: &str) {
        let _ = self
            .inner
            .events
            .send(Event::Unlisten(group.to_owned(), None));
    }

    /// After a consumer's shutdown: its consume threads end (waiting up to
    /// [`POOL_END`] for calls past the drain deadline), then the client itself
    /// if this is its last handle.
    fn close_consumer(&self, group: &str) {
        let (tx, rx) = mpsc::sync_channel(1);
        let pool = self
            .inner
            .events
            .send(Event::Unlisten(group.to_owned(), Some(tx)))
            .ok()
            .and_then(|()| rx.recv().ok().flatten());
        if let Some(pool) = pool {
            if !pool.close(POOL_END) {
                tracing::warn!(%group, "a listener call still runs after shutdown; its thread ends when it returns");
            }
        }
        if std::sync::Arc::strong_count(&self.inner) == 1 {
            self.shutdown();
        }
    }

    /// Starts a send and returns at once; [`Pending::wait`] gives its result
    /// later. Many sends can be in flight at once this way, from one thread.
    pub fn send_async(&self, group: &str, message: Message) -> Pending<SendResult> {
        let (tx, rx) = mpsc::sync_channel(1);
        let call = Call::Send {
            group: group.into(),
            message,
            selector: QueueSelector::RoundRobin,
        };
        let rx = self
            .inner
            .events
            .send(Event::Call(call, None, tx))
            .ok()
            .map(|()| rx);
        Pending {
            rx,
            map: Reply::into_sent,
        }
    }

    /// Closes every connection and stops the driver thread; none of the
    /// client's threads is left when it returns. Calls still waiting fail with
    /// [`ClientError::Shutdown`].
    pub fn shutdown(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.inner.events.send(Event::Shutdown(Some(tx))).is_ok() {
            let _ = rx.recv();
        }
        self.inner.join();
    }
}

/// A call started with a `*_async` method; its result arrives later.
#[derive(Debug)]
pub struct Pending<T> {
    rx: Option<mpsc::Receiver<Result<Reply, ClientError>>>,
    map: fn(Reply) -> Result<T, ClientError>,
}

impl<T> Pending<T> {
    /// Waits for the result.
    pub fn wait(self) -> Result<T, ClientError> {
        let rx = self.rx.ok_or(ClientError::Shutdown)?;
        (self.map)(rx.recv().map_err(|_| ClientError::Shutdown)??)
    }

    /// The result if it has arrived, else the call back to wait on later.
    pub fn try_wait(self) -> Result<Result<T, ClientError>, Self> {
        let Some(rx) = &self.rx else {
            return Ok(Err(ClientError::Shutdown));
        };
        match rx.try_recv() {
            Ok(reply) => Ok(reply.and_then(self.map)),
            Err(mpsc::TryRecvError::Empty) => Err(self),
            Err(mpsc::TryRecvError::Disconnected) => Ok(Err(ClientError::Shutdown)),
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

/// A connection, as the driver sees it: the channel to its writer thread.
/// Dropping it ends the writer, which shuts the socket down, which ends the reader.
struct Conn {
    writer: mpsc::Sender<Bytes>,
}

/// The thread side of the driver: threads for connections, channels for calls.
struct ThreadIo {
    events: mpsc::Sender<Event>,
    /// Connection threads, joined when the driver ends.
    threads: Vec<thread::JoinHandle<()>>,
    pools: HashMap<String, Pool>,
    results: Arc<Results>,
    /// Deliveries of the current flush, not yet handed to their pools.
    deliveries: Vec<Delivery>,
}

impl Io for ThreadIo {
    type Conn = Conn;
    type Waiter = ReplyTx;

    fn connect(&mut self, conn: ConnId, addr: &str) -> Conn {
        let (writer, frames) = mpsc::channel();
        let events = self.events.clone();
        let addr = addr.to_owned();
        let spawned = thread::Builder::new()
            .name(format!("rocketmq-{conn}"))
            .spawn(move || connection(conn, &addr, frames, &events));
        match spawned {
            Ok(handle) => {
                self.threads.retain(|t| !t.is_finished());
                self.threads.push(handle);
            }
            Err(e) => {
                let _ = self
                    .events
                    .send(Event::Input(Input::ConnectFailed(conn, e.to_string())));
            }
        }
        Conn { writer }
    }

    fn transmit(&mut self, conn: &mut Conn, data: Bytes) {
        let _ = conn.writer.send(data);
    }

    fn complete(&mut self, waiter: ReplyTx, result: Result<Reply, ClientError>) {
        let _ = waiter.send(result);
    }

    fn load(&mut self, path: String) {
        // A small file, read on the driver thread.
        let result = read_file(&path);
        let _ = self
            .events
            .send(Event::Input(Input::Loaded { path, result }));
    }

    fn persist(&mut self, path: String, data: Bytes) {
        let result = write_file(&path, &data);
        let _ = self
            .events
            .send(Event::Input(Input::Persisted { path, result }));
    }

    fn deliver(&mut self, delivery: Delivery) {
        // Handed to the pools together once the driver's outputs are done.
        self.deliveries.push(delivery);
    }
}

impl ThreadIo {
    /// Hands the deliveries of the last flush to their pools, each pool's in
    /// one go.
    fn hand_out(&mut self) {
        while let Some(first) = self.deliveries.first() {
            let group = first.context.group.clone();
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deliveries)
                .into_iter()
                .partition(|d| d.context.group == group);
            self.deliveries = rest;
            match self.pools.get(&group) {
                Some(pool) => pool.run(mine),
                // No listener (its consumer is going away): the messages stay
                // unconsumed and come back.
                None => {
                    for delivery in mine {
                        let _ = self.events.send(Event::Input(Input::Consumed {
                            ticket: delivery.ticket,
                            result: ConsumeResult::RETRY,
                        }));
                    }
                }
            }
        }
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

/// The driver thread: waits on one channel for a call or a connection event, or
/// until the core's deadline.
fn drive(config: ClientConfig, events: mpsc::Receiver<Event>, own: mpsc::Sender<Event>) {
    let mut driver = Driver::new(rocketmq_core::Client::new(
        config,
        Instant::now(),
        wall_clock_ms(),
    ));
    let mut io = ThreadIo {
        events: own,
        threads: Vec::new(),
        pools: HashMap::new(),
        results: Arc::default(),
        deliveries: Vec::new(),
    };
    let mut shutdown = None;
    loop {
        driver.flush(Instant::now(), &mut io);
        io.hand_out();
        if shutdown.is_some() {
            break;
        }
        // The core's next deadline, or sooner if a pool's queued work turns
        // stale before it.
        let deadline = io
            .pools
            .values()
            .filter_map(Pool::check_at)
            .chain(driver.poll_timeout())
            .min();
        let event = match deadline {
            Some(deadline) => {
                match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(event) => Some(event),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let now = Instant::now();
                        io.pools.values().for_each(|pool| pool.check(now));
                        None
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match events.recv() {
                Ok(event) => Some(event),
                Err(_) => break,
            },
        };
        // Take in this and whatever else is ready before carrying out the outputs,
        // so that frames bound for one connection leave together.
        let mut next = Some(event);
        while let Some(event) = next.take() {
            let now = Instant::now();
            match event {
                None => driver.handle_input(now, Input::Timeout),
                Some(Event::Call(call, timeout, tx)) => driver.call(now, call, timeout, tx),
                Some(Event::Shutdown(tx)) => shutdown = Some(tx),
                Some(Event::Input(input)) => driver.handle_input(now, input),
                Some(Event::Listen(group, threads, listener, tx)) => {
                    let result = if io.pools.contains_key(&group) {
                        Err(ClientError::ConsumerState(format!(
                            "a consumer of group {group} already runs in this client"
                        )))
                    } else {
                        Pool::start(&group, threads, listener, &io.results, &io.events)
                            .map(|pool| drop(io.pools.insert(group, pool)))
                    };
                    let _ = tx.send(result);
                }
                Some(Event::Unlisten(group, tx)) => {
                    let pool = io.pools.remove(&group);
                    if let Some(tx) = tx {
                        // Closed (and waited for) by the consumer's shutdown,
                        // off the driver.
                        let _ = tx.send(pool);
                    }
                }
                Some(Event::Consumed) => {
                    for (ticket, result, messages) in io.results.take() {
                        drop(messages);
                        driver.handle_input(now, Input::consumed(ticket, result));
                    }
                }
            }
            if shutdown.is_none() {
                next = events.try_recv().ok().map(Some);
            }
        }
    }
    driver.shutdown(&mut io);
    // Every connection is closed: its threads end at once (a connect under
    // way within its timeout).
    for t in std::mem::take(&mut io.threads) {
        let _ = t.join();
    }
    // Calls that raced with the shutdown get their answer too.
    while let Ok(event) = events.try_recv() {
        match event {
            Event::Call(_, _, tx) => {
                let _ = tx.send(Err(ClientError::Shutdown));
            }
            Event::Shutdown(Some(tx)) => {
                let _ = tx.send(());
            }
            Event::Listen(_, _, _, tx) => {
                let _ = tx.send(Err(ClientError::Shutdown));
            }
            _ => {}
        }
    }
    if let Some(Some(tx)) = shutdown {
        let _ = tx.send(());
    }
}

/// One connection: connect, then read on this thread while a writer thread
/// sends the driver's frames, until either side ends.
fn connection(
    conn: ConnId,
    addr: &str,
    frames: mpsc::Receiver<Bytes>,
    events: &mpsc::Sender<Event>,
) {
    let stream = match connect(addr) {
        Ok(s) => s,
        Err(e) => {
            let _ = events.send(Event::Input(Input::ConnectFailed(conn, e.to_string())));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            let _ = events.send(Event::Input(Input::ConnectFailed(conn, e.to_string())));
            return;
        }
    };
    let writing = thread::Builder::new()
        .name(format!("rocketmq-{conn}-w"))
        .spawn(move || {
            let mut writer = writer;
            while let Ok(frame) = frames.recv() {
                if writer.write_all(&frame).is_err() {
                    break;
                }
            }
            let _ = writer.shutdown(Shutdown::Both);
        });
    let writing = match writing {
        Ok(w) => w,
        Err(e) => {
            let _ = events.send(Event::Input(Input::ConnectFailed(conn, e.to_string())));
            return;
        }
    };
    let _ = events.send(Event::Input(Input::Connected(conn)));
    let mut reader = stream;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Safe Rust cannot read into uninitialised memory: copy what arrived
                // rather than zero a fresh buffer for every read.
                let data = BytesMut::from(&buf[..n]);
                if events
                    .send(Event::Input(Input::Received(conn, data)))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = reader.shutdown(Shutdown::Both);
    let _ = events.send(Event::Input(Input::Closed(conn)));
    // The writer ends once the driver drops the connection.
    let _ = writing.join();
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{addr} resolves to nothing"),
    );
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}
