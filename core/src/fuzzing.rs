//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay test.
//!
//! Each function takes arbitrary bytes, runs one decoder on them, and checks what
//! must hold for any input: no panic, and whatever decodes re-encodes to the same
//! value. The fuzz targets are one-line wrappers, so the bodies compile (and the
//! committed corpus replays) with the crate on stable Rust.

use bytes::{Bytes, BytesMut};

use crate::protocol::command::RemotingCommand;
use crate::protocol::frame::{FrameDecoder, RawFrame, SerializeType, DEFAULT_MAX_FRAME_LEN};
use crate::protocol::message::{self, DecodeOptions};

/// Feeds `data` to a frame decoder in chunks whose sizes come from the data
/// itself, and decodes every frame as a command.
pub fn frame_stream(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(seed % 17) + 1;
    let mut d = FrameDecoder::new(64 * 1024);
    for part in rest.chunks(chunk) {
        d.push(part);
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => command_round_trip(frame),
                Ok(None) => break,
                Err(_) => {
                    assert!(d.next_frame().is_err(), "a failed decoder stays failed");
                    return;
                }
            }
        }
    }
    let _ = d.finish();
}

/// Decodes `data` as a JSON command header.
pub fn json_header(data: &[u8]) {
    command_round_trip(RawFrame {
        serialize_type: SerializeType::Json,
        header: Bytes::copy_from_slice(data),
        body: Bytes::new(),
    });
}

/// Decodes `data` as a ROCKETMQ binary command header.
pub fn binary_header(data: &[u8]) {
    command_round_trip(RawFrame {
        serialize_type: SerializeType::RocketMq,
        header: Bytes::copy_from_slice(data),
        body: Bytes::new(),
    });
}

fn command_round_trip(frame: RawFrame) {
    let ty = frame.serialize_type;
    let Ok(cmd) = RemotingCommand::decode(frame) else {
        return;
    };
    let mut out = BytesMut::new();
    if cmd.encode(ty, DEFAULT_MAX_FRAME_LEN, &mut out).is_err() {
        return; // e.g. a JSON header too large for one frame
    }
    let again = crate::protocol::frame::decode_frame(out.freeze(), DEFAULT_MAX_FRAME_LEN)
        .map(RemotingCommand::decode);
    match again {
        Ok(Ok(again)) => assert_eq!(again, cmd, "decode(encode(cmd)) != cmd"),
        other => panic!("re-encoded command does not decode: {other:?}"),
    }
}

/// Decodes `data` as a pull body of stored messages, and as a batch body.
/// Every record that decodes without inflating re-encodes to the same bytes.
pub fn message_batch(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let _ = message::decode_messages(
        &body,
        &DecodeOptions {
            max_body_len: 1 << 20,
            ..DecodeOptions::default()
        },
    );
    // Record by record, as stored: each re-encodes to exactly its bytes.
    let raw = DecodeOptions {
        decompress: false,
        verify_crc: false,
        max_body_len: 1 << 20,
        unwrap_inner_batches: false,
    };
    if let Ok(msgs) = message::decode_messages(&body, &raw) {
        let mut out = BytesMut::new();
        for m in &msgs {
            for (name, value) in m.properties.to_map() {
                assert_eq!(
                    m.properties.get(&name),
                    Some(value.as_str()),
                    "lookup disagrees with parse"
                );
            }
            if message::encode_stored(m, &mut out).is_err() {
                panic!("a decoded message does not re-encode");
            }
        }
        assert_eq!(&out[..], data, "encode_stored(decode(body)) != body");
    }
    if let Ok(entries) = message::decode_batch(&body) {
        assert!(entries.len() <= data.len() / 22);
    }
}

/// Decodes `data` as a JSON body of type `T`; a body that decodes re-encodes to
/// JSON that decodes to the same value.
macro_rules! body_targets {
    ($($(#[$doc:meta])* $name:ident => $ty:ty,)*) => {$(
        $(#[$doc])*
        pub fn $name(data: &[u8]) {
            if let Ok(body) = <$ty>::decode(data) {
                let again = <$ty>::decode(&body.encode());
                assert_eq!(again.as_ref().ok(), Some(&body), "decode(encode(body)) != body: {again:?}");
            }
        }
    )*};
}

body_targets! {
    /// `TopicRouteData` from a name server (standard and fastjson forms).
    route_data => crate::protocol::body::TopicRouteData,
    /// `HeartbeatData`, as a broker receives it.
    heartbeat => crate::protocol::body::HeartbeatData,
    /// `GetConsumerListByGroupResponseBody`.
    consumer_id_list => crate::protocol::body::ConsumerIdList,
    /// `LockBatchRequestBody` (and the unlock body of the same shape).
    lock_batch_request => crate::protocol::body::LockBatchRequestBody,
    /// `LockBatchResponseBody`.
    lock_batch_response => crate::protocol::body::LockBatchResponseBody,
    /// `ResetOffsetBody` (queue-keyed map).
    reset_offset => crate::protocol::body::ResetOffsetBody,
    /// `GetConsumerStatusBody` (queue-keyed maps).
    consumer_status => crate::protocol::body::GetConsumerStatusBody,
    /// `ConsumerRunningInfo` (queue-keyed maps).
    consumer_running_info => crate::protocol::body::ConsumerRunningInfo,
    /// `ConsumeMessageDirectlyResult`.
    consume_directly_result => crate::protocol::body::ConsumeMessageDirectlyResult,
    /// `CheckClientRequestBody`.
    check_client => crate::protocol::body::CheckClientRequestBody,
}
