//! The part of every adapter's loop that is not about its runtime.
//!
//! An adapter implements [`Io`] (how to open a connection, write to it, and wake
//! whoever waits for a call) and keeps a [`Driver`]. The driver owns the
//! [`Client`], the adapter's handle for each open connection and the waiter of each
//! call, and turns every [`Output`] into one `Io` action. What is left in the
//! adapter is waiting: on sockets, user calls and [`Driver::poll_timeout`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client::{Call, CallId, Client, Input, Output, Reply};
use crate::connection::ConnId;
use crate::consumer::Delivery;
use crate::error::ClientError;

/// What an adapter does for the core, on its runtime.
pub trait Io {
    /// The adapter's handle to one connection; dropping it must close the
    /// connection (end its tasks or threads).
    type Conn;
    /// Whoever waits for a call's result (a oneshot sender, say).
    type Waiter;

    /// Starts opening a connection to `addr`. The outcome comes back later as
    /// [`Input::Connected`] or [`Input::ConnectFailed`], then bytes as
    /// [`Input::Received`] and the end as [`Input::Closed`].
    fn connect(&mut self, conn: ConnId, addr: &str) -> Self::Conn;

    /// Queues bytes to be written, in order, to a connection.
    fn transmit(&mut self, conn: &mut Self::Conn, data: Bytes);

    /// Hands a call's result to its waiter.
    fn complete(&mut self, waiter: Self::Waiter, result: Result<Reply, ClientError>);

    /// Runs the listener of `delivery.context.group` on its messages, off the
    /// driver, and later feeds [`Input::Consumed`] back with its ticket.
    fn deliver(&mut self, delivery: Delivery);

    /// Reads a file off the driver and feeds [`Input::Loaded`] back.
    fn load(&mut self, path: String);

    /// Replaces a file atomically off the driver and feeds [`Input::Persisted`]
    /// back (see [`Output::Persist`]).
    fn persist(&mut self, path: String, data: Bytes);
}

/// A [`Client`] with the adapter-side state every adapter keeps the same way.
#[derive(Debug)]
pub struct Driver<C, W> {
    client: Client,
    conns: HashMap<ConnId, C>,
    waiters: HashMap<CallId, W>,
}

impl<C, W> Driver<C, W> {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            conns: HashMap::new(),
            waiters: HashMap::new(),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Starts a user call; `waiter` gets its result from a later [`flush`](Self::flush).
    pub fn call(&mut self, now: Instant, call: Call, timeout: Option<Duration>, waiter: W) {
        let id = self.client.call(now, call, timeout);
        self.waiters.insert(id, waiter);
    }

    /// Feeds in a connection event or the passing of time.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if let Input::Closed(conn) | Input::ConnectFailed(conn, _) = &input {
            self.conns.remove(conn);
        }
        self.client.handle_input(now, input);
    }

    /// When [`Input::Timeout`] is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    /// Carries out everything the client asks for, until it asks for nothing.
    pub fn flush<I: Io<Conn = C, Waiter = W>>(&mut self, now: Instant, io: &mut I) {
        while let Some(output) = self.client.poll_output(now) {
            match output {
                Output::Connect { conn, addr } => {
                    let handle = io.connect(conn, &addr);
                    self.conns.insert(conn, handle);
                }
                Output::Transmit { conn, data } => {
                    if let Some(handle) = self.conns.get_mut(&conn) {
                        io.transmit(handle, data);
                    }
                }
                Output::Close(conn) => {
                    self.conns.remove(&conn);
                }
                Output::Reply { call, result } => {
                    if let Some(waiter) = self.waiters.remove(&call) {
                        io.complete(waiter, result);
                    }
                }
                Output::Deliver(delivery) => io.deliver(delivery),
                Output::Load { path } => io.load(path),
                Output::Persist { path, data } => io.persist(path, data),
            }
        }
    }

    /// Closes every connection and fails every waiting call with
    /// [`ClientError::Shutdown`].
    pub fn shutdown<I: Io<Conn = C, Waiter = W>>(&mut self, io: &mut I) {
        self.conns.clear();
        for (_, waiter) in self.waiters.drain() {
            io.complete(waiter, Err(ClientError::Shutdown));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientConfig;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records what the driver asked for; a connection handle logs its drop.
    #[derive(Default)]
    struct Recorder {
        log: Rc<RefCell<Vec<String>>>,
    }

    struct Handle(ConnId, Rc<RefCell<Vec<String>>>);

    impl Drop for Handle {
        fn drop(&mut self) {
            self.1.borrow_mut().push(format!("drop {}", self.0));
        }
    }

    impl Io for Recorder {
        type Conn = Handle;
        type Waiter = &'static str;
        fn connect(&mut self, conn: ConnId, addr: &str) -> Handle {
            self.log.borrow_mut().push(format!("connect {conn} {addr}"));
            Handle(conn, self.log.clone())
        }
        fn transmit(&mut self, conn: &mut Handle, data: Bytes) {
            self.log
                .borrow_mut()
                .push(format!("transmit {} {}", conn.0, !data.is_empty()));
        }
        fn complete(&mut self, waiter: &'static str, result: Result<Reply, ClientError>) {
            self.log
                .borrow_mut()
                .push(format!("complete {waiter} {}", result.is_ok()));
        }
        fn deliver(&mut self, delivery: Delivery) {
            self.log
                .borrow_mut()
                .push(format!("deliver {}", delivery.ticket));
        }
        fn load(&mut self, path: String) {
            self.log.borrow_mut().push(format!("load {path}"));
        }
        fn persist(&mut self, path: String, _: Bytes) {
            self.log.borrow_mut().push(format!("persist {path}"));
        }
    }

    #[test]
    fn outputs_become_io_actions_and_shutdown_fails_waiters() {
        #[allow(clippy::disallowed_methods)]
        // an arbitrary origin; the driver only sees it passed in
        let now = Instant::now();
        let mut io = Recorder::default();
        let log = io.log.clone();
        let mut driver = Driver::new(Client::new(ClientConfig::default(), now, 0));
        driver.call(now, Call::QueryRoute { topic: "a".into() }, None, "first");
        driver.call(now, Call::QueryRoute { topic: "b".into() }, None, "second");
        driver.flush(now, &mut io);
        driver.handle_input(now, Input::Connected(ConnId(1)));
        driver.flush(now, &mut io);
        driver.handle_input(now, Input::Closed(ConnId(1)));
        driver.flush(now, &mut io);
        driver.call(now, Call::QueryRoute { topic: "c".into() }, None, "third");
        driver.flush(now, &mut io);
        driver.shutdown(&mut io);
        assert_eq!(
            *log.borrow(),
            [
                "connect conn#1 127.0.0.1:9876",
                "transmit conn#1 true",
                "transmit conn#1 true",
                "drop conn#1",
                "complete first false",
                "complete second false",
                // The name server's address is in reconnect backoff: no connect yet.
                "complete third false",
            ]
        );
    }
}
