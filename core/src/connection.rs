//! The connection table: one connection per address, each with its frame decoder
//! and the frames waiting for it to open.

use std::collections::HashMap;

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

/// Every connection of a client, by id and by address.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    conns: HashMap<ConnId, Conn>,
    by_addr: HashMap<String, ConnId>,
    next_id: u64,
}

/// What sending a frame to an address needs from the adapter.
pub(crate) enum Route {
    /// A new connection: ask the adapter to connect; the frame waits.
    Connect(ConnId),
    /// The connection is being opened; the frame waits.
    Queued(ConnId),
    /// The connection is open: transmit now.
    Transmit(ConnId),
}

impl Connections {
    /// Routes a frame to `addr`, opening a connection if there is none.
    pub(crate) fn send(
        &mut self,
        addr: &str,
        frame: Bytes,
        max_frame_len: usize,
    ) -> (Route, Option<Bytes>) {
        if let Some(&id) = self.by_addr.get(addr) {
            if let Some(conn) = self.conns.get_mut(&id) {
                return match &mut conn.state {
                    State::Connecting { queued } => {
                        queued.push(frame);
                        (Route::Queued(id), None)
                    }
                    State::Open => (Route::Transmit(id), Some(frame)),
                };
            }
        }
        self.next_id += 1;
        let id = ConnId(self.next_id);
        self.conns.insert(
            id,
            Conn {
                addr: addr.to_owned(),
                state: State::Connecting {
                    queued: vec![frame],
                },
                decoder: FrameDecoder::new(max_frame_len),
            },
        );
        self.by_addr.insert(addr.to_owned(), id);
        (Route::Connect(id), None)
    }

    /// Marks a connection open and hands back the frames that waited for it.
    pub(crate) fn opened(&mut self, id: ConnId) -> Option<Vec<Bytes>> {
        let conn = self.conns.get_mut(&id)?;
        match std::mem::replace(&mut conn.state, State::Open) {
            State::Connecting { queued } => Some(queued),
            State::Open => Some(Vec::new()),
        }
    }

    /// Forgets a connection; returns its address if it was known.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<String> {
        let conn = self.conns.remove(&id)?;
        if self.by_addr.get(&conn.addr) == Some(&id) {
            self.by_addr.remove(&conn.addr);
        }
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
