//! The length-prefixed frame stream under every remoting command.
//!
//! ```text
//! | length: i32 | type << 24 | header_len: i32 | header | body |
//!   ^ counts everything after itself
//! ```
//!
//! [`FrameDecoder`] takes bytes as they arrive, in any split, and yields whole
//! [`RawFrame`]s whose header and body are zero-copy slices of the received buffer.
//! It checks the length prefix against its limit before it buffers a frame, so a
//! peer cannot make it allocate more than the limit.

use bytes::{Buf, Bytes, BytesMut};

/// Size of the frame's length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Default limit on a whole frame, length prefix included: the Java side's
/// `com.rocketmq.remoting.frameMaxLength` default (16 MiB), checked as Netty's
/// `LengthFieldBasedFrameDecoder` does (`length + 4 <= limit`).
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Largest header the 24-bit header length field can describe.
pub const MAX_HEADER_LEN: usize = 0x00FF_FFFF;

/// How a frame's header is serialised (the high byte of the header length field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SerializeType {
    /// A JSON object (the Java and Go clients' default).
    #[default]
    Json,
    /// RocketMQ's own binary form (`RocketMQSerializable`).
    RocketMq,
}

impl SerializeType {
    /// The type byte on the wire.
    pub const fn value(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::RocketMq => 1,
        }
    }

    /// The type for a byte on the wire.
    pub const fn from_value(v: u8) -> Result<Self, FrameError> {
        match v {
            0 => Ok(Self::Json),
            1 => Ok(Self::RocketMq),
            other => Err(FrameError::UnknownSerializeType(other)),
        }
    }
}

/// Why a frame stream cannot be decoded. The connection it came from must be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is negative or too small to hold the header length field.
    #[error("frame length {0} is invalid (must be at least 4)")]
    BadLength(i32),
    /// The frame is larger than the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Whole frame size announced by the peer, length prefix included.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The header length does not fit in the frame.
    #[error("header length {header_len} exceeds the {available} bytes the frame holds")]
    HeaderTooLong {
        /// Header length announced by the peer.
        header_len: usize,
        /// Bytes after the header length field.
        available: usize,
    },
    /// The header's serialise type is neither JSON (0) nor ROCKETMQ (1).
    #[error("unknown header serialise type {0}")]
    UnknownSerializeType(u8),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the unfinished frame.
        buffered: usize,
    },
    /// Bytes follow a frame that was expected to be alone.
    #[error("{0} bytes follow the frame")]
    TrailingBytes(usize),
}

/// One frame: its header (still serialised) and its body, both slices of the
/// received bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// How `header` is serialised.
    pub serialize_type: SerializeType,
    /// The serialised header.
    pub header: Bytes,
    /// The body; empty when the command has none.
    pub body: Bytes,
}

/// A streaming frame decoder for one connection.
///
/// Feed it bytes with [`push`](Self::push) (or read straight into
/// [`buffer_mut`](Self::buffer_mut)), then call [`next_frame`](Self::next_frame)
/// until it returns `Ok(None)`. After an error the decoder stays failed: the
/// connection is not recoverable and must be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_len: usize,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max_frame_len` bytes (length prefix
    /// included).
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame_len,
            failed: None,
        }
    }

    /// The frame size limit.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Appends received bytes, adopting the buffer without a copy when nothing is
    /// pending (the common case: a read that ends on a frame boundary).
    pub fn push_owned(&mut self, data: BytesMut) {
        if self.failed.is_some() {
            return;
        }
        if self.buf.is_empty() {
            self.buf = data;
        } else {
            self.buf.extend_from_slice(&data);
        }
    }

    /// The receive buffer, for reading from a socket straight into it (one copy
    /// from the kernel, none after). Only append to it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<RawFrame>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.decode() {
            Err(e) => {
                self.failed = Some(e);
                self.buf = BytesMut::new();
                Err(e)
            }
            ok => ok,
        }
    }

    /// Checks that the stream ended on a frame boundary (call at end of stream).
    pub fn finish(&self) -> Result<(), FrameError> {
        match (self.failed, self.buf.len()) {
            (Some(e), _) => Err(e),
            (None, 0) => Ok(()),
            (None, buffered) => Err(FrameError::Truncated { buffered }),
        }
    }

    fn decode(&mut self) -> Result<Option<RawFrame>, FrameError> {
        let Some(prefix) = self.buf.get(..LENGTH_PREFIX_LEN) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let frame_len = check_length(len, self.max_frame_len)?;
        if self.buf.len() < frame_len {
            // Room for exactly this frame, now that its size is known to be allowed.
            self.buf.reserve(frame_len - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(frame_len).freeze();
        frame.advance(LENGTH_PREFIX_LEN);
        split_frame(frame).map(Some)
    }
}

/// Decodes one complete frame (length prefix included) that must fill `data`
/// exactly.
pub fn decode_frame(data: Bytes, max_frame_len: usize) -> Result<RawFrame, FrameError> {
    let Some(prefix) = data.get(..LENGTH_PREFIX_LEN) else {
        return Err(FrameError::Truncated {
            buffered: data.len(),
        });
    };
    let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let frame_len = check_length(len, max_frame_len)?;
    match data.len().cmp(&frame_len) {
        std::cmp::Ordering::Less => Err(FrameError::Truncated {
            buffered: data.len(),
        }),
        std::cmp::Ordering::Greater => Err(FrameError::TrailingBytes(data.len() - frame_len)),
        std::cmp::Ordering::Equal => split_frame(data.slice(LENGTH_PREFIX_LEN..)),
    }
}

/// Validates a length prefix; returns the whole frame size including the prefix.
fn check_length(len: i32, max_frame_len: usize) -> Result<usize, FrameError> {
    if len < 4 {
        return Err(FrameError::BadLength(len));
    }
    // `len` is positive and below 2^31, so this neither truncates nor overflows.
    let frame_len = len as u64 + LENGTH_PREFIX_LEN as u64;
    if frame_len > max_frame_len as u64 {
        return Err(FrameError::TooLarge {
            len: frame_len,
            max: max_frame_len,
        });
    }
    Ok(frame_len as usize)
}

/// Splits a frame without its length prefix into header and body.
fn split_frame(mut frame: Bytes) -> Result<RawFrame, FrameError> {
    // `check_length` guaranteed at least the 4-byte header length field.
    let field = frame.get_u32();
    let serialize_type = SerializeType::from_value((field >> 24) as u8)?;
    let header_len = (field & 0x00FF_FFFF) as usize;
    if header_len > frame.len() {
        return Err(FrameError::HeaderTooLong {
            header_len,
            available: frame.len(),
        });
    }
    let header = frame.split_to(header_len);
    Ok(RawFrame {
        serialize_type,
        header,
        body: frame,
    })
}

/// The header length field: serialise type in the high byte, length below.
pub(crate) fn header_length_field(serialize_type: SerializeType, header_len: usize) -> u32 {
    (u32::from(serialize_type.value()) << 24) | (header_len as u32 & 0x00FF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
        v.extend_from_slice(&((u32::from(ty) << 24) | header.len() as u32).to_be_bytes());
        v.extend_from_slice(header);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn decodes_frames_fed_one_byte_at_a_time() {
        let mut stream = frame(0, b"{\"code\":1}", b"body-1");
        stream.extend(frame(1, b"\x00\x01", b""));
        stream.extend(frame(0, b"", b"only-body"));
        let mut d = FrameDecoder::default();
        let mut frames = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f);
            }
        }
        d.finish().unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[0].header[..], b"{\"code\":1}");
        assert_eq!(&frames[0].body[..], b"body-1");
        assert_eq!(frames[1].serialize_type, SerializeType::RocketMq);
        assert!(frames[1].body.is_empty());
        assert!(frames[2].header.is_empty());
        assert_eq!(&frames[2].body[..], b"only-body");
    }

    #[test]
    fn refuses_oversized_frame_from_its_prefix_alone() {
        let mut d = FrameDecoder::new(1024);
        d.push(&(2_000_000_000i32).to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                len: 2_000_000_004,
                max: 1024
            })
        );
        // Nothing was reserved for the announced size, and the decoder stays failed.
        assert!(d.buffer_mut().capacity() < 1024);
        d.push(b"more");
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn limit_counts_the_length_prefix_as_java_does() {
        let exact = frame(0, b"", &[0u8; 92]); // 4 + 4 + 92 = 100 bytes
        let mut d = FrameDecoder::new(100);
        d.push(&exact);
        assert!(d.next_frame().unwrap().is_some());
        let mut d = FrameDecoder::new(99);
        d.push(&exact);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 100, .. })
        ));
    }

    #[test]
    fn bad_input_table() {
        let cases: Vec<(&str, Vec<u8>, FrameError)> = vec![
            (
                "negative length",
                (-1i32).to_be_bytes().to_vec(),
                FrameError::BadLength(-1),
            ),
            (
                "length below 4",
                3i32.to_be_bytes().to_vec(),
                FrameError::BadLength(3),
            ),
            (
                "i32::MAX length",
                i32::MAX.to_be_bytes().to_vec(),
                FrameError::TooLarge {
                    len: i32::MAX as u64 + 4,
                    max: DEFAULT_MAX_FRAME_LEN,
                },
            ),
            (
                "header longer than frame",
                [&8i32.to_be_bytes()[..], &5u32.to_be_bytes(), b"abcd"].concat(),
                FrameError::HeaderTooLong {
                    header_len: 5,
                    available: 4,
                },
            ),
            (
                "unknown serialise type",
                [&4i32.to_be_bytes()[..], &(2u32 << 24).to_be_bytes()].concat(),
                FrameError::UnknownSerializeType(2),
            ),
        ];
        for (name, input, want) in cases {
            let mut d = FrameDecoder::default();
            d.push(&input);
            assert_eq!(d.next_frame(), Err(want), "{name}");
            assert_eq!(
                decode_frame(Bytes::from(input), DEFAULT_MAX_FRAME_LEN).err(),
                Some(want),
                "{name}"
            );
        }
    }

    #[test]
    fn truncated_and_trailing() {
        let f = frame(0, b"{}", b"xyz");
        let mut d = FrameDecoder::default();
        d.push(&f[..f.len() - 1]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                buffered: f.len() - 1
            })
        );
        assert_eq!(
            decode_frame(Bytes::copy_from_slice(&f[..5]), DEFAULT_MAX_FRAME_LEN),
            Err(FrameError::Truncated { buffered: 5 })
        );
        let mut long = f.clone();
        long.push(0);
        assert_eq!(
            decode_frame(Bytes::from(long), DEFAULT_MAX_FRAME_LEN),
            Err(FrameError::TrailingBytes(1))
        );
    }

    #[test]
    fn frames_are_slices_of_the_received_buffer() {
        let f = Bytes::from(frame(0, b"{}", b"payload"));
        let raw = decode_frame(f.clone(), DEFAULT_MAX_FRAME_LEN).unwrap();
        let base = f.as_ptr() as usize;
        assert_eq!(raw.body.as_ptr() as usize, base + 10);
        assert_eq!(raw.header.as_ptr() as usize, base + 8);
    }
}
