//! The connection table: one connection per address, each with its frame decoder
//! and the frames waiting for it to open, and a reconnect backoff per address.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::protocol::frame::{FrameDecoder, FrameError, RawFrame};

/// Identifies a connection between the core and its adapter. Chosen by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

#[derive(Debug)]
enum State {
    /// The address failed recently: connect at `at`; frames wait in `queued`.
    Waiting { at: Instant, queued: Vec<Bytes> },
    /// Asked the adapter to connect; frames wait in `queued`.
    Connecting { queued: Vec<Bytes> },
    /// Open: frames go straight out.
    Open,
}

#[derive(Debug)]
struct Conn {
    addr: String,
    state: State,
    decoder: FrameDecoder,
}

/// When an address may be connected to again, and the wait after its next failure.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    not_before: Instant,
    next: Duration,
}

/// Every connection of a client, by id and by address, and the reconnect backoff
/// of addresses whose connection failed or closed.
#[derive(Debug)]
pub(crate) struct Connections {
    conns: HashMap<ConnId, Conn>,
    by_addr: HashMap<String, ConnId>,
    next_id: u64,
    backoff: HashMap<String, Backoff>,
    backoff_min: Duration,
    backoff_max: Duration,
}

/// What sending a frame to an address needs from the adapter.
pub(crate) enum Route {
    /// A new connection: ask the adapter to connect; the frame waits.
    Connect(ConnId),
    /// A connection not open yet (being opened, or waiting out its address's
    /// backoff); the frame waits.
    Queued(ConnId),
    /// The connection is open: transmit now.
    Transmit(ConnId, Bytes),
}

impl Connections {
    /// An empty table: a failed address waits `backoff_min` before the next
    /// connect, doubling on each further failure up to `backoff_max`.
    pub(crate) fn new(backoff_min: Duration, backoff_max: Duration) -> Self {
        Self {
            conns: HashMap::new(),
            by_addr: HashMap::new(),
            next_id: 0,
            backoff: HashMap::new(),
            backoff_min,
            backoff_max,
        }
    }

    /// Routes a frame to `addr`, opening a connection if there is none.
    pub(crate) fn send(
        &mut self,
        now: Instant,
        addr: &str,
        frame: Bytes,
        max_frame_len: usize,
    ) -> Route {
        if let Some(conn) = self.by_addr.get(addr).and_then(|id| self.conns.get_mut(id)) {
            let id = self.by_addr[addr];
            return match &mut conn.state {
                State::Waiting { queued, .. } | State::Connecting { queued } => {
                    queued.push(frame);
                    Route::Queued(id)
                }
                State::Open => Route::Transmit(id, frame),
            };
        }
        self.next_id += 1;
        let id = ConnId(self.next_id);
        let queued = vec![frame];
        let (state, route) = match self.backoff.get(addr) {
            Some(b) if b.not_before > now => (
                State::Waiting {
                    at: b.not_before,
                    queued,
                },
                Route::Queued(id),
            ),
            _ => (State::Connecting { queued }, Route::Connect(id)),
        };
        self.conns.insert(
            id,
            Conn {
                addr: addr.to_owned(),
                state,
                decoder: FrameDecoder::new(max_frame_len),
            },
        );
        self.by_addr.insert(addr.to_owned(), id);
        route
    }

    /// Whether a connection to `addr` may be made (or exists) now: the address is
    /// not waiting out a reconnect backoff.
    pub(crate) fn usable(&self, addr: &str, now: Instant) -> bool {
        self.backoff.get(addr).is_none_or(|b| b.not_before <= now)
    }

    /// When the next delayed connection is due, if any.
    pub(crate) fn next_connect(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| match c.state {
                State::Waiting { at, .. } => Some(at),
                _ => None,
            })
            .min()
    }

    /// Delayed connections whose backoff is over: they are now connecting, and the
    /// adapter must be asked to open them.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(ConnId, String)> {
        let mut due = Vec::new();
        for (&id, conn) in &mut self.conns {
            if let State::Waiting { at, queued } = &mut conn.state {
                if *at <= now {
                    let queued = std::mem::take(queued);
                    conn.state = State::Connecting { queued };
                    due.push((id, conn.addr.clone()));
                }
            }
        }
        due.sort();
        due
    }

    /// Marks a connection open and hands back the frames that waited for it.
    pub(crate) fn opened(&mut self, id: ConnId) -> Option<Vec<Bytes>> {
        let conn = self.conns.get_mut(&id)?;
        self.backoff.remove(&conn.addr);
        match std::mem::replace(&mut conn.state, State::Open) {
            State::Waiting { queued, .. } | State::Connecting { queued } => Some(queued),
            State::Open => Some(Vec::new()),
        }
    }

    /// Forgets a connection that failed or closed, and puts its address in
    /// backoff; returns the address if the connection was known.
    pub(crate) fn remove(&mut self, now: Instant, id: ConnId) -> Option<String> {
        let conn = self.conns.remove(&id)?;
        if self.by_addr.get(&conn.addr) == Some(&id) {
            self.by_addr.remove(&conn.addr);
        }
        let wait = self
            .backoff
            .get(&conn.addr)
            .map_or(self.backoff_min, |b| b.next);
        self.backoff.insert(
            conn.addr.clone(),
            Backoff {
                not_before: now + wait,
                next: (wait * 2).min(self.backoff_max),
            },
        );
        Some(conn.addr)
    }

    /// The address of a connection.
    pub(crate) fn addr(&self, id: ConnId) -> Option<&str> {
        self.conns.get(&id).map(|c| c.addr.as_str())
    }

    /// Feeds received bytes to a connection's decoder and returns the whole frames,
    /// or the error that must close the connection.
    pub(crate) fn receive(
        &mut self,
        id: ConnId,
        data: BytesMut,
    ) -> Result<Vec<RawFrame>, FrameError> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(Vec::new()); // a connection already closed: its bytes are moot
        };
        conn.decoder.push_owned(data);
        let mut frames = Vec::new();
        while let Some(frame) = conn.decoder.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// Every connection id.
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }
}
