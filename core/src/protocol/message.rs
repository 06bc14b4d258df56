//! Messages: the broker's stored layout that pull bodies carry, and the forms a
//! producer sends.
//!
//! Stored record (`MessageDecoder.java`), all integers big-endian:
//!
//! ```text
//! total_size: i32 | magic: i32 | body_crc: i32 | queue_id: i32 | flag: i32
//! queue_offset: i64 | commit_log_offset: i64 | sys_flag: i32 | born_timestamp: i64
//! born_host: 4 or 16 bytes + port i32 | store_timestamp: i64 | store_host: 4 or 16 + port i32
//! reconsume_times: i32 | prepared_transaction_offset: i64 | body_len: i32 | body
//! topic_len: i8 (v1) or i16 (v2) | topic | properties_len: i16 | properties
//! ```
//!
//! Decoding is zero-copy: a [`MessageExt`]'s topic, body and properties are slices
//! of the received body (a compressed body is the one exception: it is inflated
//! into a new buffer, bounded by [`DecodeOptions::max_body_len`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::compress::{CompressError, CompressionType, DEFAULT_MAX_DECOMPRESSED_LEN};
use super::wire::{Reader, UnexpectedEnd};

/// Magic code of a v1 record (one-byte topic length).
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic code of a v2 record (two-byte topic length, for topics over 127 bytes).
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;

/// Separates a property's name from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends each property.
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Sys-flag bits of a stored message (`MessageSysFlag.java`).
pub mod sys_flag {
    /// The body is compressed (the type is in bits 8..=10).
    pub const COMPRESSED: i32 = 0x1;
    /// The message has several tags (legacy).
    pub const MULTI_TAGS: i32 = 0x2;
    /// Mask of the transaction type bits.
    pub const TRANSACTION_MASK: i32 = 0xC;
    /// A prepared (half) transactional message.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// A committed transactional message.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// A rolled-back transactional message.
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// The born host is IPv6.
    pub const BORN_HOST_V6: i32 = 0x10;
    /// The store host is IPv6.
    pub const STORE_HOST_V6: i32 = 0x20;
    /// The body must be unwrapped (with [`INNER_BATCH`]).
    pub const NEED_UNWRAP: i32 = 0x40;
    /// The body is an inner batch of messages.
    pub const INNER_BATCH: i32 = 0x80;
}

/// Well-known property names (`MessageConst.java`).
pub mod property {
    /// The message's tag.
    pub const TAGS: &str = "TAGS";
    /// The message's keys, separated by spaces.
    pub const KEYS: &str = "KEYS";
    /// Whether the broker waits for the store before answering (`true` by default).
    pub const WAIT_STORE_MSG_OK: &str = "WAIT";
    /// Delay level, 1..=18.
    pub const DELAY_TIME_LEVEL: &str = "DELAY";
    /// The client-side unique message id.
    pub const UNIQ_CLIENT_MESSAGE_ID_KEYIDX: &str = "UNIQ_KEY";
    /// Original topic of a retried message.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// Original topic while parked in a system topic.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Original queue while parked in a system topic.
    pub const REAL_QUEUE_ID: &str = "REAL_QID";
    /// A transactional half message.
    pub const TRANSACTION_PREPARED: &str = "TRAN_MSG";
    /// Producer group of a transactional message.
    pub const PRODUCER_GROUP: &str = "PGROUP";
    /// Smallest offset of the queue at pull time (set by the client).
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    /// Largest offset of the queue at pull time (set by the client).
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    /// Id of the first delivery of a retried message.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// Reconsume count of a message re-sent by the client.
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    /// Retry limit of a message re-sent by the client.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// When consumption started (set by the client).
    pub const CONSUME_START_TIMESTAMP: &str = "CONSUME_START_TIME";
    /// Namespace of the message.
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    /// Arbitrary delivery time, ms since the epoch (5.x timer).
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// Sharding key of an ordered message.
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
}

/// How [`decode_messages`] treats bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Inflate compressed bodies (Java's `decodeDecompressBody`, default true).
    pub decompress: bool,
    /// Check each stored body against its CRC (default false, as Java).
    pub verify_crc: bool,
    /// Largest body accepted after decompression.
    pub max_body_len: usize,
    /// Expand inner batches into their messages (default true, as Java's
    /// `PullAPIWrapper`). A batch whose body stays compressed (with `decompress`
    /// off) is never expanded.
    pub unwrap_inner_batches: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            decompress: true,
            verify_crc: false,
            max_body_len: DEFAULT_MAX_DECOMPRESSED_LEN,
            unwrap_inner_batches: true,
        }
    }
}

/// Why a body does not hold valid stored messages. `offset` is the byte position,
/// in the body, of the record at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The record ends before a field it announced.
    #[error("message record at {offset} is truncated")]
    Truncated {
        /// Position of the record.
        offset: usize,
    },
    /// The record's total size is impossible or exceeds the body.
    #[error("message record at {offset} has total size {size}, {remaining} bytes remain")]
    BadTotalSize {
        /// Position of the record.
        offset: usize,
        /// The size announced.
        size: i32,
        /// Bytes left in the body.
        remaining: usize,
    },
    /// The magic code is not a message version.
    #[error("message record at {offset} has unknown magic code {magic:#x}")]
    BadMagic {
        /// Position of the record.
        offset: usize,
        /// The code found.
        magic: i32,
    },
    /// The fields do not add up to the record's total size.
    #[error("message record at {offset} declares {declared} bytes but its fields take {actual}")]
    LengthMismatch {
        /// Position of the record.
        offset: usize,
        /// The total size announced.
        declared: i32,
        /// Bytes its fields took.
        actual: usize,
    },
    /// A field's length is negative or exceeds the record.
    #[error("message record at {offset}: {field} length {len} is invalid")]
    BadLength {
        /// Position of the record.
        offset: usize,
        /// Which field.
        field: &'static str,
        /// The length found.
        len: i64,
    },
    /// A host port is outside 0..=65535.
    #[error("message record at {offset}: port {port} is invalid")]
    BadPort {
        /// Position of the record.
        offset: usize,
        /// The port found.
        port: i32,
    },
    /// The topic or properties are not UTF-8.
    #[error("message record at {offset}: {field} is not UTF-8")]
    InvalidUtf8 {
        /// Position of the record.
        offset: usize,
        /// Which field.
        field: &'static str,
    },
    /// The stored body does not match its CRC.
    #[error(
        "message record at {offset}: body CRC {computed:#x} does not match stored {stored:#x}"
    )]
    BodyCrc {
        /// Position of the record.
        offset: usize,
        /// CRC in the record.
        stored: u32,
        /// CRC of the body.
        computed: u32,
    },
    /// The compressed body could not be inflated.
    #[error("message record at {offset}: {source}")]
    Compression {
        /// Position of the record.
        offset: usize,
        /// What went wrong.
        source: CompressError,
    },
}

/// The record layout version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MessageVersion {
    /// One-byte topic length.
    #[default]
    V1,
    /// Two-byte topic length.
    V2,
}

impl MessageVersion {
    /// The magic code of this version.
    pub const fn magic(self) -> i32 {
        match self {
            Self::V1 => MAGIC_V1,
            Self::V2 => MAGIC_V2,
        }
    }
}

/// Message properties as received: one UTF-8 slice of the record, read in place.
///
/// Decoding only checks that the string is UTF-8; nothing is parsed, copied or
/// allocated per message. A lookup ([`get`](Self::get)) finds the name with a
/// vectorised substring search from the end, so reading the tag and the unique key
/// of each message costs a few tens of nanoseconds.
///
/// Parsing follows Java's `string2messageProperties`: entries end at `\u{2}`, the
/// name ends at the first `\u{1}`; entries with an empty name or value are
/// skipped, and a repeated name keeps its last value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties {
    raw: ByteString,
}

const NAME_END: u8 = NAME_VALUE_SEPARATOR as u8;
const ENTRY_END: u8 = PROPERTY_SEPARATOR as u8;

impl Properties {
    /// Properties from their wire form.
    pub fn parse(raw: ByteString) -> Self {
        Self { raw }
    }

    /// Every well-formed entry in wire order, repeated names included.
    fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        let raw: &str = &self.raw;
        raw.split(PROPERTY_SEPARATOR)
            .filter_map(|entry| entry.split_once(NAME_VALUE_SEPARATOR))
            .filter(|(name, value)| !name.is_empty() && !value.is_empty())
    }

    /// The value of property `name` (the last one, if repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        let raw: &str = &self.raw;
        let bytes = raw.as_bytes();
        if name.is_empty()
            || name.as_bytes().contains(&NAME_END)
            || name.as_bytes().contains(&ENTRY_END)
        {
            return None;
        }
        // Walk the entries from the last one back: the first match is the last value.
        let mut end = bytes.len();
        loop {
            let start = memchr::memrchr(ENTRY_END, &bytes[..end]).map_or(0, |i| i + 1);
            let entry = &bytes[start..end];
            if entry.len() > name.len() + 1
                && entry.starts_with(name.as_bytes())
                && entry[name.len()] == NAME_END
            {
                // Both ends sit next to ASCII separators: char boundaries.
                return raw.get(start + name.len() + 1..end);
            }
            if start == 0 {
                return None;
            }
            end = start - 1;
        }
    }

    /// Every property in wire order; a repeated name appears once, with its last
    /// value, at its last position.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries()
            .enumerate()
            .filter(|(i, (name, _))| !self.entries().skip(i + 1).any(|(n, _)| n == *name))
            .map(|(_, entry)| entry)
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries().next().is_none()
    }

    /// The properties string as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The properties as an owned map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.entries()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Appends properties in the wire form: `name \u{1} value \u{2}` for each.
/// Names and values must not contain the two separators (the producer checks).
pub fn encode_properties<'a>(
    props: impl IntoIterator<Item = (&'a str, &'a str)>,
    out: &mut String,
) {
    for (k, v) in props {
        out.push_str(k);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR);
    }
}

/// A message as stored by the broker and received by a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageExt {
    /// Topic as stored (for retried messages, the retry topic).
    pub topic: ByteString,
    /// The producer's flag.
    pub flag: i32,
    /// The body, inflated if it was stored compressed and decoding was asked to.
    pub body: Bytes,
    /// The properties.
    pub properties: Properties,
    /// Queue id.
    pub queue_id: i32,
    /// Offset in the queue.
    pub queue_offset: i64,
    /// Offset in the broker's commit log.
    pub commit_log_offset: i64,
    /// Sys flag as stored (see [`sys_flag`]).
    pub sys_flag: i32,
    /// When the producer sent it, ms since the epoch.
    pub born_timestamp: i64,
    /// Producer address as the broker saw it.
    pub born_host: SocketAddr,
    /// When the broker stored it, ms since the epoch.
    pub store_timestamp: i64,
    /// Broker address.
    pub store_host: SocketAddr,
    /// Times it was consumed and sent back before.
    pub reconsume_times: i32,
    /// Offset of the prepared transaction message.
    pub prepared_transaction_offset: i64,
    /// CRC32 (masked to 31 bits) of the stored body.
    pub body_crc: u32,
    /// Size of the stored record.
    pub store_size: i32,
    /// Record layout version.
    pub version: MessageVersion,
}

impl Default for MessageExt {
    /// An empty message at offset 0 from `0.0.0.0:0` (for building messages by hand).
    fn default() -> Self {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        Self {
            topic: ByteString::new(),
            flag: 0,
            body: Bytes::new(),
            properties: Properties::default(),
            queue_id: 0,
            queue_offset: 0,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: nowhere,
            store_timestamp: 0,
            store_host: nowhere,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body_crc: 0,
            store_size: 0,
            version: MessageVersion::default(),
        }
    }
}

impl MessageExt {
    /// A property's value.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name)
    }

    /// The tag.
    pub fn tags(&self) -> Option<&str> {
        self.property(property::TAGS)
    }

    /// The keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.property(property::KEYS)
            .unwrap_or_default()
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// The id Java's `MessageClientExt.getMsgId()` gives: the producer's unique key
    /// if set, else the offset message id.
    pub fn msg_id(&self) -> String {
        match self.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
            Some(id) => id.to_owned(),
            None => self.offset_msg_id(),
        }
    }

    /// The broker-side id: store host, port and commit-log offset in upper-case hex.
    pub fn offset_msg_id(&self) -> String {
        offset_msg_id(self.store_host, self.commit_log_offset)
    }

    /// Whether the stored body was compressed.
    pub fn was_compressed(&self) -> bool {
        self.sys_flag & sys_flag::COMPRESSED != 0
    }
}

/// The offset message id of a message stored at `commit_log_offset` on `store_host`
/// (`MessageDecoder.createMessageId`): 32 hex digits for IPv4, 56 for IPv6.
pub fn offset_msg_id(store_host: SocketAddr, commit_log_offset: i64) -> String {
    let mut raw = [0u8; 28];
    let ip_len = match store_host.ip() {
        IpAddr::V4(ip) => {
            raw[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            raw[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    raw[ip_len..ip_len + 4].copy_from_slice(&i32::from(store_host.port()).to_be_bytes());
    raw[ip_len + 4..ip_len + 12].copy_from_slice(&commit_log_offset.to_be_bytes());
    hex_upper(&raw[..ip_len + 12])
}

/// Parses an offset message id back into the store host and commit-log offset.
pub fn parse_offset_msg_id(id: &str) -> Option<(SocketAddr, i64)> {
    let raw = hex_decode(id)?;
    let (ip, rest): (IpAddr, &[u8]) = match raw.len() {
        16 => {
            let o: [u8; 4] = raw[..4].try_into().ok()?;
            (Ipv4Addr::from(o).into(), &raw[4..])
        }
        28 => {
            let o: [u8; 16] = raw[..16].try_into().ok()?;
            (Ipv6Addr::from(o).into(), &raw[16..])
        }
        _ => return None,
    };
    let port = u16::try_from(i32::from_be_bytes(rest[..4].try_into().ok()?)).ok()?;
    let offset = i64::from_be_bytes(rest[4..12].try_into().ok()?);
    Some((SocketAddr::new(ip, port), offset))
}

fn hex_upper(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02X}");
    }
    s
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Decodes every stored message in a pull (or query, view) body. Inner batches
/// (sys flag `INNER_BATCH | NEED_UNWRAP`) are unwrapped into their messages, as
/// the Java client's `PullAPIWrapper` does. Any malformed record fails the whole
/// body: its messages cannot be trusted, and the queue offset must not move past it.
pub fn decode_messages(
    body: &Bytes,
    opts: &DecodeOptions,
) -> Result<Vec<MessageExt>, MessageError> {
    let mut out = Vec::with_capacity(estimate_count(body));
    let mut pos = 0;
    while pos < body.len() {
        let (msg, next) = decode_record(body, pos, opts)?;
        pos = next;
        let inner_batch = msg.sys_flag & (sys_flag::INNER_BATCH | sys_flag::NEED_UNWRAP)
            == sys_flag::INNER_BATCH | sys_flag::NEED_UNWRAP;
        let still_compressed = msg.sys_flag & sys_flag::COMPRESSED != 0 && !opts.decompress;
        if inner_batch && opts.unwrap_inner_batches && !still_compressed {
            unwrap_inner_batch(&msg, pos - msg_len(&msg), &mut out)?;
        } else {
            out.push(msg);
        }
    }
    Ok(out)
}

/// Decodes a body holding exactly one stored message.
pub fn decode_message(body: &Bytes, opts: &DecodeOptions) -> Result<MessageExt, MessageError> {
    let (msg, next) = decode_record(body, 0, opts)?;
    if next != body.len() {
        return Err(MessageError::LengthMismatch {
            offset: 0,
            declared: msg.store_size,
            actual: body.len(),
        });
    }
    Ok(msg)
}

fn msg_len(msg: &MessageExt) -> usize {
    // `decode_record` accepted `store_size` as a positive length.
    msg.store_size as usize
}

/// Guess of the message count from the first record's size, for one allocation.
fn estimate_count(body: &Bytes) -> usize {
    match body.get(..4) {
        Some(b) => {
            let first = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            match usize::try_from(first) {
                Ok(n) if n >= MIN_RECORD_LEN => (body.len() / n + 1).min(1024),
                _ => 1,
            }
        }
        None => 0,
    }
}

/// Smallest possible record: the fixed fields with IPv4 hosts and empty body,
/// topic and properties.
const MIN_RECORD_LEN: usize = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2;

fn decode_record(
    buf: &Bytes,
    offset: usize,
    opts: &DecodeOptions,
) -> Result<(MessageExt, usize), MessageError> {
    let truncated = |_: UnexpectedEnd| MessageError::Truncated { offset };
    let (total, size) = record_size(buf, offset, MIN_RECORD_LEN)?;
    let record = &buf[offset..offset + size];
    let mut r = Reader::new(record);
    let at = |range: std::ops::Range<usize>| buf.slice(offset + range.start..offset + range.end);
    r.i32().map_err(truncated)?; // total size, read above
    let magic = r.i32().map_err(truncated)?;
    let version = match magic {
        MAGIC_V1 => MessageVersion::V1,
        MAGIC_V2 => MessageVersion::V2,
        _ => return Err(MessageError::BadMagic { offset, magic }),
    };
    let body_crc = r.i32().map_err(truncated)? as u32;
    let queue_id = r.i32().map_err(truncated)?;
    let flag = r.i32().map_err(truncated)?;
    let queue_offset = r.i64().map_err(truncated)?;
    let commit_log_offset = r.i64().map_err(truncated)?;
    let sys_flag = r.i32().map_err(truncated)?;
    let born_timestamp = r.i64().map_err(truncated)?;
    let born_host = read_host(&mut r, sys_flag & sys_flag::BORN_HOST_V6 != 0, offset)?;
    let store_timestamp = r.i64().map_err(truncated)?;
    let store_host = read_host(&mut r, sys_flag & sys_flag::STORE_HOST_V6 != 0, offset)?;
    let reconsume_times = r.i32().map_err(truncated)?;
    let prepared_transaction_offset = r.i64().map_err(truncated)?;

    let body_len = r.i32().map_err(truncated)?;
    let body_range = checked_len(&mut r, i64::from(body_len), "body", offset)?;
    let topic_len = match version {
        MessageVersion::V1 => i64::from(r.u8().map_err(truncated)? as i8),
        MessageVersion::V2 => i64::from(r.i16().map_err(truncated)?),
    };
    let topic_range = checked_len(&mut r, topic_len, "topic", offset)?;
    let props_len = r.i16().map_err(truncated)?;
    let props_range = checked_len(&mut r, i64::from(props_len), "properties", offset)?;
    if r.position() != size {
        return Err(MessageError::LengthMismatch {
            offset,
            declared: total,
            actual: r.position(),
        });
    }

    let stored_body = at(body_range);
    if opts.verify_crc {
        let computed = self::body_crc(&stored_body);
        if computed != body_crc {
            return Err(MessageError::BodyCrc {
                offset,
                stored: body_crc,
                computed,
            });
        }
    }
    let body = if opts.decompress && sys_flag & sys_flag::COMPRESSED != 0 {
        CompressionType::from_sys_flag(sys_flag)
            .and_then(|t| t.decompress(&stored_body, opts.max_body_len))
            .map_err(|source| MessageError::Compression { offset, source })?
    } else {
        stored_body
    };
    let topic = ByteString::try_from(at(topic_range)).map_err(|_| MessageError::InvalidUtf8 {
        offset,
        field: "topic",
    })?;
    let props = ByteString::try_from(at(props_range)).map_err(|_| MessageError::InvalidUtf8 {
        offset,
        field: "properties",
    })?;
    let msg = MessageExt {
        topic,
        flag,
        body,
        properties: Properties::parse(props),
        queue_id,
        queue_offset,
        commit_log_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body_crc,
        store_size: total,
        version,
    };
    Ok((msg, offset + size))
}

/// Reads the leading `total_size: i32` of the record at `offset` and checks that it
/// is at least `min` and fits in `buf`. Returns it as read and as a length.
fn record_size(buf: &[u8], offset: usize, min: usize) -> Result<(i32, usize), MessageError> {
    let remaining = buf.len() - offset;
    let total = Reader::new(&buf[offset..])
        .i32()
        .map_err(|_| MessageError::Truncated { offset })?;
    match usize::try_from(total) {
        Ok(n) if n >= min && n <= remaining => Ok((total, n)),
        _ => Err(MessageError::BadTotalSize {
            offset,
            size: total,
            remaining,
        }),
    }
}

fn checked_len(
    r: &mut Reader<'_>,
    len: i64,
    field: &'static str,
    offset: usize,
) -> Result<std::ops::Range<usize>, MessageError> {
    usize::try_from(len)
        .ok()
        .and_then(|n| r.range(n).ok())
        .ok_or(MessageError::BadLength { offset, field, len })
}

fn read_host(r: &mut Reader<'_>, v6: bool, offset: usize) -> Result<SocketAddr, MessageError> {
    let truncated = |_: UnexpectedEnd| MessageError::Truncated { offset };
    let ip: IpAddr = if v6 {
        let mut o = [0u8; 16];
        o.copy_from_slice(r.bytes(16).map_err(truncated)?);
        Ipv6Addr::from(o).into()
    } else {
        let mut o = [0u8; 4];
        o.copy_from_slice(r.bytes(4).map_err(truncated)?);
        Ipv4Addr::from(o).into()
    };
    let port = r.i32().map_err(truncated)?;
    let port = u16::try_from(port).map_err(|_| MessageError::BadPort { offset, port })?;
    Ok(SocketAddr::new(ip, port))
}

/// Expands an inner-batch record: each inner message gets the outer record's
/// topic, queue, hosts, timestamps and commit-log offset, and queue offset
/// `outer + index`; it keeps its own flag, body and properties.
fn unwrap_inner_batch(
    outer: &MessageExt,
    offset: usize,
    out: &mut Vec<MessageExt>,
) -> Result<(), MessageError> {
    let mut index = 0i64;
    let mut pos = 0usize;
    let body = &outer.body;
    while pos < body.len() {
        let (inner, next) = decode_batch_entry(body, pos).map_err(|e| rebase(e, offset))?;
        out.push(MessageExt {
            flag: inner.flag,
            body: inner.body,
            properties: inner.properties,
            queue_offset: outer.queue_offset + index,
            sys_flag: outer.sys_flag
                & !(sys_flag::COMPRESSED
                    | sys_flag::NEED_UNWRAP
                    | super::compress::COMPRESSION_TYPE_MASK),
            ..outer.clone()
        });
        index += 1;
        pos = next;
    }
    Ok(())
}

/// Reports an inner-batch error at the position of the record holding the batch.
fn rebase(e: MessageError, offset: usize) -> MessageError {
    match e {
        MessageError::Truncated { .. } => MessageError::Truncated { offset },
        MessageError::BadTotalSize {
            size, remaining, ..
        } => MessageError::BadTotalSize {
            offset,
            size,
            remaining,
        },
        MessageError::LengthMismatch {
            declared, actual, ..
        } => MessageError::LengthMismatch {
            offset,
            declared,
            actual,
        },
        MessageError::BadLength { field, len, .. } => {
            MessageError::BadLength { offset, field, len }
        }
        MessageError::InvalidUtf8 { field, .. } => MessageError::InvalidUtf8 { offset, field },
        other => other,
    }
}

/// One message of a batch as a producer sends it (and as an inner batch stores it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    /// The producer's flag.
    pub flag: i32,
    /// The body.
    pub body: Bytes,
    /// The properties.
    pub properties: Properties,
}

/// Decodes a batch body (`MessageDecoder.decodeMessages`): the inverse of
/// [`encode_batch`].
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>, MessageError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let (entry, next) = decode_batch_entry(body, pos)?;
        out.push(entry);
        pos = next;
    }
    Ok(out)
}

/// Batch entry layout: `total: i32 | magic: i32 (0) | crc: i32 (0) | flag: i32 |
/// body_len: i32 | body | properties_len: i16 | properties`.
fn decode_batch_entry(buf: &Bytes, offset: usize) -> Result<(BatchEntry, usize), MessageError> {
    const MIN_ENTRY: usize = 4 * 5 + 2;
    let truncated = |_: UnexpectedEnd| MessageError::Truncated { offset };
    let (total, size) = record_size(buf, offset, MIN_ENTRY)?;
    let mut r = Reader::new(&buf[offset..offset + size]);
    r.range(12).map_err(truncated)?; // total, magic, crc
    let flag = r.i32().map_err(truncated)?;
    let body_len = r.i32().map_err(truncated)?;
    let body = checked_len(&mut r, i64::from(body_len), "body", offset)?;
    let props_len = r.i16().map_err(truncated)?;
    let props = checked_len(&mut r, i64::from(props_len), "properties", offset)?;
    if r.position() != size {
        return Err(MessageError::LengthMismatch {
            offset,
            declared: total,
            actual: r.position(),
        });
    }
    let props = ByteString::try_from(buf.slice(offset + props.start..offset + props.end)).map_err(
        |_| MessageError::InvalidUtf8 {
            offset,
            field: "properties",
        },
    )?;
    Ok((
        BatchEntry {
            flag,
            body: buf.slice(offset + body.start..offset + body.end),
            properties: Properties::parse(props),
        },
        offset + size,
    ))
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Target topic.
    pub topic: String,
    /// User flag, stored and delivered as is.
    pub flag: i32,
    /// The body.
    pub body: Bytes,
    /// Properties, including tags, keys and the unique id.
    pub properties: BTreeMap<String, String>,
}

impl Message {
    /// A message to `topic` with `WAIT=true`, as Java's `Message` constructors set.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        let mut properties = BTreeMap::new();
        properties.insert(property::WAIT_STORE_MSG_OK.to_owned(), "true".to_owned());
        Self {
            topic: topic.into(),
            flag: 0,
            body: body.into(),
            properties,
        }
    }

    /// Sets the tag.
    pub fn with_tags(self, tags: impl Into<String>) -> Self {
        self.with_property(property::TAGS, tags)
    }

    /// Sets the keys (joined with spaces, as Java does).
    pub fn with_keys<I, S>(self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined = keys
            .into_iter()
            .map(|k| k.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        self.with_property(property::KEYS, joined)
    }

    /// Delays delivery by one of the broker's delay levels (1..=18: 1 s, 5 s, 10 s,
    /// 30 s, 1 m, 2 m, ... 2 h by default).
    pub fn with_delay_level(self, level: u32) -> Self {
        self.with_property(property::DELAY_TIME_LEVEL, level.to_string())
    }

    /// Sets a property.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// The tag.
    pub fn tags(&self) -> Option<&str> {
        self.properties.get(property::TAGS).map(String::as_str)
    }

    /// The unique id, if one is set.
    pub fn unique_id(&self) -> Option<&str> {
        self.properties
            .get(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            .map(String::as_str)
    }

    /// The properties in wire form, for the send header.
    pub fn properties_string(&self) -> String {
        let mut s = String::with_capacity(
            self.properties
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum(),
        );
        encode_properties(
            self.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            &mut s,
        );
        s
    }
}

/// Appends `msg` in the broker's stored layout, the inverse of [`decode_message`]:
/// what a broker puts in a pull body. The deterministic simulation's brokers and
/// the benches use it; the body is written as given (compress it first and set the
/// sys flag for a compressed record). The version follows `msg.version`; hosts
/// follow `born_host` / `store_host` and the sys flag's IPv6 bits are set to match.
pub fn encode_stored(msg: &MessageExt, out: &mut BytesMut) -> Result<(), MessageEncodeError> {
    let topic = msg.topic.as_bytes();
    let props = msg.properties.raw().as_bytes();
    let topic_max = match msg.version {
        MessageVersion::V1 => i8::MAX as usize,
        MessageVersion::V2 => i16::MAX as usize,
    };
    if topic.len() > topic_max {
        return Err(MessageEncodeError::TopicTooLong(topic.len()));
    }
    if props.len() > i16::MAX as usize {
        return Err(MessageEncodeError::PropertiesTooLong(props.len()));
    }
    let host_len = |h: &SocketAddr| if h.is_ipv6() { 20 } else { 8 };
    let topic_len_field = match msg.version {
        MessageVersion::V1 => 1,
        MessageVersion::V2 => 2,
    };
    let total = 4
        + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(&msg.born_host)
        + 8
        + host_len(&msg.store_host)
        + 4
        + 8
        + 4
        + msg.body.len()
        + topic_len_field
        + topic.len()
        + 2
        + props.len();
    let total =
        i32::try_from(total).map_err(|_| MessageEncodeError::BodyTooLong(msg.body.len()))?;
    let mut flag = msg.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
    if msg.born_host.is_ipv6() {
        flag |= sys_flag::BORN_HOST_V6;
    }
    if msg.store_host.is_ipv6() {
        flag |= sys_flag::STORE_HOST_V6;
    }
    // `total` fits an i32, so every length below does too.
    out.reserve(total as usize);
    out.put_i32(total);
    out.put_i32(msg.version.magic());
    out.put_u32(msg.body_crc);
    out.put_i32(msg.queue_id);
    out.put_i32(msg.flag);
    out.put_i64(msg.queue_offset);
    out.put_i64(msg.commit_log_offset);
    out.put_i32(flag);
    out.put_i64(msg.born_timestamp);
    put_host(out, &msg.born_host);
    out.put_i64(msg.store_timestamp);
    put_host(out, &msg.store_host);
    out.put_i32(msg.reconsume_times);
    out.put_i64(msg.prepared_transaction_offset);
    out.put_i32(msg.body.len() as i32);
    out.put_slice(&msg.body);
    match msg.version {
        MessageVersion::V1 => out.put_i8(topic.len() as i8),
        MessageVersion::V2 => out.put_i16(topic.len() as i16),
    }
    out.put_slice(topic);
    out.put_i16(props.len() as i16);
    out.put_slice(props);
    Ok(())
}

fn put_host(out: &mut BytesMut, host: &SocketAddr) {
    match host.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()),
    }
    out.put_i32(i32::from(host.port()));
}

/// CRC32 of a stored body as the broker computes it (`UtilAll.crc32`, masked to
/// 31 bits).
pub fn body_crc(stored_body: &[u8]) -> u32 {
    crc32fast::hash(stored_body) & 0x7FFF_FFFF
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageEncodeError {
    /// The properties exceed the 32767 bytes their length field holds.
    #[error("properties of {0} bytes exceed 32767")]
    PropertiesTooLong(usize),
    /// The topic exceeds what the record version's length field holds.
    #[error("topic of {0} bytes is too long for the record version")]
    TopicTooLong(usize),
    /// A body exceeds what its length field holds.
    #[error("body of {0} bytes is too long")]
    BodyTooLong(usize),
}

/// Appends a batch body (`MessageDecoder.encodeMessages`) for SEND_BATCH_MESSAGE.
/// Leaves `out` unchanged on error.
pub fn encode_batch(messages: &[Message], out: &mut BytesMut) -> Result<(), MessageEncodeError> {
    let props: Vec<String> = messages.iter().map(Message::properties_string).collect();
    let mut total = 0usize;
    for (m, p) in messages.iter().zip(&props) {
        if p.len() > i16::MAX as usize {
            return Err(MessageEncodeError::PropertiesTooLong(p.len()));
        }
        let size = 4 * 5 + m.body.len() + 2 + p.len();
        if size > i32::MAX as usize {
            return Err(MessageEncodeError::BodyTooLong(m.body.len()));
        }
        total += size;
    }
    out.reserve(total);
    for (m, p) in messages.iter().zip(&props) {
        // Sizes were checked above.
        out.put_i32((4 * 5 + m.body.len() + 2 + p.len()) as i32);
        out.put_i32(0); // magic
        out.put_i32(0); // body CRC
        out.put_i32(m.flag);
        out.put_i32(m.body.len() as i32);
        out.put_slice(&m.body);
        out.put_i16(p.len() as i16);
        out.put_slice(p.as_bytes());
    }
    Ok(())
}

/// Generates client unique message ids (`UNIQ_KEY`) in the Java client's layout:
/// upper-case hex of `ip | pid: i16 | salt: i32 | ms since month start: i32 |
/// counter: i16`.
///
/// The client's address, process id and a per-process salt come from the runtime
/// (the Java client uses its class loader's hash); the time comes in with each call.
#[derive(Clone, Debug)]
pub struct UniqueIdGenerator {
    prefix: String,
    month_start_ms: i64,
    next_month_ms: i64,
    counter: u16,
}

impl UniqueIdGenerator {
    /// A generator for a client at `ip` in process `pid`, with a per-process `salt`.
    pub fn new(ip: IpAddr, pid: u32, salt: i32) -> Self {
        let mut fixed = Vec::with_capacity(22);
        match ip {
            IpAddr::V4(v4) => fixed.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => fixed.extend_from_slice(&v6.octets()),
        }
        fixed.extend_from_slice(&(pid as u16).to_be_bytes());
        fixed.extend_from_slice(&salt.to_be_bytes());
        Self {
            prefix: hex_upper(&fixed),
            month_start_ms: 0,
            next_month_ms: i64::MIN,
            counter: 0,
        }
    }

    /// The next id, for a message sent at `now_ms` (ms since the Unix epoch).
    pub fn next_id(&mut self, now_ms: i64) -> String {
        if now_ms >= self.next_month_ms || now_ms < self.month_start_ms {
            (self.month_start_ms, self.next_month_ms) = month_bounds_utc(now_ms);
        }
        let diff = (now_ms - self.month_start_ms) as i32; // below 31 days of ms
        let counter = self.counter;
        self.counter = self.counter.wrapping_add(1);
        let mut id = String::with_capacity(self.prefix.len() + 12);
        id.push_str(&self.prefix);
        let _ = write!(id, "{:08X}{:04X}", diff as u32, counter);
        id
    }
}

/// Start of the UTC month holding `ms`, and start of the next, in ms.
fn month_bounds_utc(ms: i64) -> (i64, i64) {
    const DAY: i64 = 86_400_000;
    let days = ms.div_euclid(DAY);
    let (y, m, _) = civil_from_days(days);
    let start = days_from_civil(y, m, 1) * DAY;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, days_from_civil(ny, nm, 1) * DAY)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Day count since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
