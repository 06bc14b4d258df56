//! The table of bad input: every decoder gives a typed error for each kind of
//! malformed data, without panicking, allocating from an unchecked length, or
//! looping. Module tests hold finer cases; this is the one-page overview.

use bytes::{BufMut, Bytes, BytesMut};
use rocketmq_core::protocol::body::{
    BodyError, ConsumerRunningInfo, ResetOffsetBody, TopicRouteData,
};
use rocketmq_core::protocol::command::{CommandError, RemotingCommand};
use rocketmq_core::protocol::compress::{CompressError, CompressionType};
use rocketmq_core::protocol::fastjson::FastjsonError;
use rocketmq_core::protocol::frame::{
    decode_frame, FrameDecoder, FrameError, RawFrame, SerializeType,
};
use rocketmq_core::protocol::header::{HeaderError, PullMessageResponseHeader};
use rocketmq_core::protocol::message::{decode_messages, DecodeOptions, MessageError, MAGIC_V1};

macro_rules! case {
    ($name:expr, $result:expr, $pattern:pat) => {{
        let result = $result;
        assert!(
            matches!(result, Err($pattern)),
            "{}: got {:?}",
            $name,
            result.map(|_| ())
        );
    }};
}

fn frame(len: i32, type_and_header_len: u32, rest: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(len);
    b.put_u32(type_and_header_len);
    b.put_slice(rest);
    b.freeze()
}

fn json_header(text: &[u8]) -> Result<RemotingCommand, CommandError> {
    RemotingCommand::decode(RawFrame {
        serialize_type: SerializeType::Json,
        header: Bytes::copy_from_slice(text),
        body: Bytes::new(),
    })
}

fn binary_header(bytes: &[u8]) -> Result<RemotingCommand, CommandError> {
    RemotingCommand::decode(RawFrame {
        serialize_type: SerializeType::RocketMq,
        header: Bytes::copy_from_slice(bytes),
        body: Bytes::new(),
    })
}

/// A v1 record with IPv4 hosts: `body` then topic "T" and no properties.
fn record(total: Option<i32>, magic: i32, sys_flag: i32, body: &[u8], topic: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    let size = 84 + 4 + body.len() + 1 + topic.len() + 2;
    b.put_i32(total.unwrap_or(size as i32));
    b.put_i32(magic);
    b.put_i32(0); // body CRC
    b.put_i32(0); // queue id
    b.put_i32(0); // flag
    b.put_i64(0); // queue offset
    b.put_i64(0); // commit-log offset
    b.put_i32(sys_flag);
    b.put_i64(0);
    b.put_slice(&[127, 0, 0, 1]);
    b.put_i32(1);
    b.put_i64(0);
    b.put_slice(&[127, 0, 0, 1]);
    b.put_i32(10911);
    b.put_i32(0); // reconsume times
    b.put_i64(0); // prepared transaction offset
    b.put_i32(body.len() as i32);
    b.put_slice(body);
    b.put_i8(topic.len() as i8);
    b.put_slice(topic);
    b.put_i16(0);
    b.freeze()
}

#[test]
fn frames() {
    let mut d = FrameDecoder::default();
    d.push(&frame(100, 2, b"short")[..]);
    assert_eq!(d.next_frame(), Ok(None));
    case!(
        "truncated frame at end of stream",
        d.finish(),
        FrameError::Truncated { .. }
    );
    case!(
        "negative length",
        decode_frame(frame(-8, 0, b""), 1 << 20),
        FrameError::BadLength(-8)
    );
    case!(
        "length over the limit, refused from the prefix",
        decode_frame(frame(i32::MAX, 0, b""), 1 << 20),
        FrameError::TooLarge { .. }
    );
    case!(
        "header longer than the frame",
        decode_frame(frame(8, 9, b"abcd"), 1 << 20),
        FrameError::HeaderTooLong { .. }
    );
    case!(
        "unknown serialise type",
        decode_frame(frame(4, 7 << 24, b""), 1 << 20),
        FrameError::UnknownSerializeType(7)
    );
}

#[test]
fn headers() {
    case!(
        "JSON header not UTF-8",
        json_header(b"{\"remark\":\"\xff\"}"),
        CommandError::Json(_)
    );
    case!(
        "JSON header not JSON",
        json_header(b"{\"code\":"),
        CommandError::Json(_)
    );
    case!(
        "JSON header field of the wrong type",
        json_header(br#"{"code":"ten"}"#),
        CommandError::Json(_)
    );
    case!(
        "JSON ext field that is an object",
        json_header(br#"{"extFields":{"k":{"x":1}}}"#),
        CommandError::ExtFieldType(_)
    );
    case!(
        "binary header cut short",
        binary_header(&[0, 10, 0]),
        CommandError::Truncated
    );
    let mut long_remark = vec![0, 10, 12, 1, 223, 0, 0, 0, 1, 0, 0, 0, 0];
    long_remark.extend_from_slice(&i32::MAX.to_be_bytes());
    case!(
        "binary string longer than the header",
        binary_header(&long_remark),
        CommandError::BadLength {
            field: "remark",
            ..
        }
    );
    let mut bad_utf8 = vec![
        0, 10, 12, 1, 223, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xC3, 0, 0, 0, 0,
    ];
    bad_utf8.truncate(22);
    case!(
        "binary string not UTF-8",
        binary_header(&bad_utf8),
        CommandError::InvalidUtf8("remark")
    );
    let mut cmd =
        RemotingCommand::request(rocketmq_core::protocol::code::RequestCode::PULL_MESSAGE, 1);
    cmd.ext_fields.insert("suggestWhichBrokerId", "abc");
    case!(
        "ext field of the wrong type",
        cmd.header::<PullMessageResponseHeader>(),
        HeaderError::Malformed {
            field: "suggestWhichBrokerId",
            ..
        }
    );
    cmd.ext_fields.clear();
    case!(
        "required ext field missing",
        cmd.header::<PullMessageResponseHeader>(),
        HeaderError::Missing(_)
    );
}

#[test]
fn messages() {
    let opts = DecodeOptions::default();
    let good = record(None, MAGIC_V1, 0, b"body", b"T");
    assert!(decode_messages(&good, &opts).is_ok());
    case!(
        "record size past the body",
        decode_messages(&good.slice(..good.len() - 1), &opts),
        MessageError::BadTotalSize { .. }
    );
    case!(
        "record size shorter than its fields",
        decode_messages(
            &record(Some(good.len() as i32 - 1), MAGIC_V1, 0, b"body", b"T"),
            &opts
        ),
        MessageError::Truncated { .. }
    );
    let mut padded = record(Some(good.len() as i32 + 2), MAGIC_V1, 0, b"body", b"T").to_vec();
    padded.extend_from_slice(&[0, 0]);
    case!(
        "fields shorter than the record size",
        decode_messages(&Bytes::from(padded), &opts),
        MessageError::LengthMismatch { .. }
    );
    case!(
        "bad magic",
        decode_messages(&record(None, 0x0BAD_CAFE, 0, b"body", b"T"), &opts),
        MessageError::BadMagic {
            magic: 0x0BAD_CAFE,
            ..
        }
    );
    case!(
        "topic not UTF-8",
        decode_messages(&record(None, MAGIC_V1, 0, b"body", b"\xff"), &opts),
        MessageError::InvalidUtf8 { field: "topic", .. }
    );
    case!(
        "corrupt compressed body",
        decode_messages(
            &record(
                None,
                MAGIC_V1,
                CompressionType::Zlib.sys_flag(),
                b"not zlib",
                b"T"
            ),
            &opts
        ),
        MessageError::Compression {
            source: CompressError::Corrupt { .. },
            ..
        }
    );
    case!(
        "unknown compression type",
        decode_messages(&record(None, MAGIC_V1, 0x701, b"x", b"T"), &opts),
        MessageError::Compression {
            source: CompressError::UnknownType(7),
            ..
        }
    );
    let bomb = CompressionType::Zlib
        .compress(&vec![0u8; 8 << 20], 9)
        .unwrap();
    let small = DecodeOptions {
        max_body_len: 1 << 20,
        ..DecodeOptions::default()
    };
    case!(
        "decompression bomb, capped",
        decode_messages(
            &record(
                None,
                MAGIC_V1,
                CompressionType::Zlib.sys_flag(),
                &bomb,
                b"T"
            ),
            &small
        ),
        MessageError::Compression {
            source: CompressError::TooLarge { .. },
            ..
        }
    );
}

#[test]
fn json_bodies() {
    case!(
        "body not UTF-8",
        TopicRouteData::decode(b"{\"a\":\"\xff\"}"),
        BodyError::Json(FastjsonError::InvalidUtf8 { .. })
    );
    case!(
        "body not JSON",
        TopicRouteData::decode(b"{\"brokerDatas\":["),
        BodyError::Json(FastjsonError::Syntax { .. })
    );
    let deep = "[".repeat(10_000);
    case!(
        "nesting too deep",
        TopicRouteData::decode(deep.as_bytes()),
        BodyError::Json(FastjsonError::TooDeep { .. })
    );
    case!(
        "field of the wrong type",
        TopicRouteData::decode(br#"{"queueDatas":"four"}"#),
        BodyError::Shape { .. }
    );
    case!(
        "queue-keyed map with a key that is not a queue",
        ResetOffsetBody::decode(br#"{"offsetTable":{{"topic":1}:5}}"#),
        BodyError::BadQueueKey { .. }
    );
    case!(
        "running info with a bare-number queue key",
        ConsumerRunningInfo::decode(br#"{"mqTable":{0:{}}}"#),
        BodyError::BadQueueKey { .. }
    );
}
