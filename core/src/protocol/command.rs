//! Remoting commands: the request or response a frame carries.
//!
//! A command's header is serialised either as JSON or in RocketMQ's binary form
//! (see [`SerializeType`]). A Java server answers in its own configured form, not
//! the request's, so [`RemotingCommand::decode`] reads both whatever the client
//! sends.
//!
//! Binary header layout (`RocketMQSerializable`), all big-endian:
//!
//! ```text
//! code: i16 | language: u8 | version: i16 | opaque: i32 | flag: i32
//! remark_len: i32 | remark | ext_len: i32 | { key_len: i16 | key | value_len: i32 | value }*
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::code::{LanguageCode, RequestCode, ResponseCode};
use super::frame::{
    header_length_field, RawFrame, SerializeType, DEFAULT_MAX_FRAME_LEN, LENGTH_PREFIX_LEN,
    MAX_HEADER_LEN,
};
use super::header::{CommandHeader, HeaderError};
use super::wire::{Reader, UnexpectedEnd};

pub use super::ext::ExtFields;
use super::ext::ExtFieldsIn;

/// Flag bit: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit: the request expects no response.
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// The `version` this client announces: the ordinal of Java's `MQVersion.V5_3_3`.
/// Name servers answer clients at or above 401 (V4_9_4) with standard JSON routes.
pub const CLIENT_VERSION: i32 = 479;

/// Why a frame does not hold a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The JSON header is not valid JSON, not UTF-8, or has a field of the wrong type.
    #[error("invalid JSON header: {0}")]
    Json(String),
    /// The binary header ends before a field it announced.
    #[error("binary header truncated")]
    Truncated,
    /// A length inside the binary header is negative or exceeds the header.
    #[error("binary header field {field} has invalid length {len}")]
    BadLength {
        /// Which field.
        field: &'static str,
        /// The length found.
        len: i64,
    },
    /// A string in the binary header is not UTF-8.
    #[error("binary header field {0} is not UTF-8")]
    InvalidUtf8(&'static str),
    /// An ext field value in a JSON header is an object or array.
    #[error("ext field {0} is not a string, number or boolean")]
    ExtFieldType(String),
}

impl From<UnexpectedEnd> for CommandError {
    fn from(_: UnexpectedEnd) -> Self {
        Self::Truncated
    }
}

/// Why a command cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The code or version does not fit the binary header's 16 bits (pop-family
    /// codes such as 200050 need JSON headers).
    #[error("{field} {value} does not fit a binary header; use JSON")]
    NotRepresentable {
        /// `code` or `version`.
        field: &'static str,
        /// The value.
        value: i32,
    },
    /// The header is larger than the 24-bit header length field allows.
    #[error("header of {0} bytes exceeds 16 MiB")]
    HeaderTooLarge(usize),
    /// The frame would exceed the peer's frame size limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Whole frame size, length prefix included.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string in the binary header is longer than its length field allows.
    #[error("binary header string of {0} bytes is too long")]
    StringTooLong(usize),
}

/// A request or response, with its header fields and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code (requests) or response code (responses); see
    /// [`request_code`](Self::request_code) and [`response_code`](Self::response_code).
    pub code: i32,
    /// The sender's language.
    pub language: LanguageCode,
    /// The sender's version (`MQVersion` ordinal).
    pub version: i32,
    /// Correlation id: a response carries its request's.
    pub opaque: i32,
    /// Bit flags: [`FLAG_RESPONSE`], [`FLAG_ONEWAY`].
    pub flag: i32,
    /// Free text, mostly error descriptions in responses.
    pub remark: Option<String>,
    /// Custom header fields.
    pub ext_fields: ExtFields,
    /// The body, a slice of the received frame when decoded.
    pub body: Bytes,
}

impl RemotingCommand {
    /// A request with no header fields and no body.
    pub fn request(code: RequestCode, opaque: i32) -> Self {
        Self {
            code: code.value(),
            language: LanguageCode::Rust,
            version: CLIENT_VERSION,
            opaque,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
        }
    }

    /// A response to the request with `opaque`.
    pub fn response(code: ResponseCode, opaque: i32, remark: Option<String>) -> Self {
        Self {
            flag: FLAG_RESPONSE,
            remark,
            ..Self::request(RequestCode::Unknown(code.value()), opaque)
        }
    }

    /// Sets the typed header, replacing ext fields of the same keys.
    pub fn with_header<H: CommandHeader>(mut self, header: &H) -> Self {
        header.write(&mut self.ext_fields);
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Marks a request as oneway: the peer sends no response.
    pub fn with_oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    /// Reads the typed header from the ext fields.
    pub fn header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::read(&self.ext_fields)
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this is a oneway request.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The code read as a request code.
    pub fn request_code(&self) -> RequestCode {
        RequestCode::from_value(self.code)
    }

    /// The code read as a response code.
    pub fn response_code(&self) -> ResponseCode {
        ResponseCode::from_value(self.code)
    }

    /// Decodes a frame's header and adopts its body without copying.
    pub fn decode(frame: RawFrame) -> Result<Self, CommandError> {
        let mut cmd = match frame.serialize_type {
            SerializeType::Json => decode_json(&frame.header)?,
            SerializeType::RocketMq => decode_binary(&frame.header)?,
        };
        cmd.body = frame.body;
        Ok(cmd)
    }

    /// Appends the whole frame (length prefix, header, body) to `out`, reserving
    /// once. Fails, leaving `out` as it was, if the frame would exceed
    /// `max_frame_len`.
    pub fn encode(
        &self,
        serialize_type: SerializeType,
        max_frame_len: usize,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_inner(serialize_type, max_frame_len, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// The whole frame as one buffer, with the default frame size limit.
    pub fn to_frame(&self, serialize_type: SerializeType) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(serialize_type, DEFAULT_MAX_FRAME_LEN, &mut out)?;
        Ok(out.freeze())
    }

    fn encode_inner(
        &self,
        serialize_type: SerializeType,
        max_frame_len: usize,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        match serialize_type {
            SerializeType::Json => {
                out.reserve(8 + 96 + 32 * self.ext_fields.len() + self.body.len());
                out.put_u64(0); // length and header length, patched below
                let header = JsonHeaderOut {
                    code: self.code,
                    ext_fields: (!self.ext_fields.is_empty()).then_some(&self.ext_fields),
                    flag: self.flag,
                    language: self.language.java_name(),
                    opaque: self.opaque,
                    remark: self.remark.as_deref(),
                    serialize_type: "JSON",
                    version: self.version,
                };
                if serde_json::to_writer(out.writer(), &header).is_err() {
                    // Strings, integers and a string map always serialise, and a
                    // BytesMut writer never fails.
                    unreachable!("JSON header serialisation cannot fail");
                }
            }
            SerializeType::RocketMq => {
                let header_len = self.binary_header_len()?;
                out.reserve(8 + header_len + self.body.len());
                out.put_u64(0);
                self.write_binary_header(out)?;
            }
        }
        let header_len = out.len() - start - 8;
        if header_len > MAX_HEADER_LEN {
            return Err(EncodeError::HeaderTooLarge(header_len));
        }
        let frame_len = 8 + header_len + self.body.len();
        if frame_len > max_frame_len {
            return Err(EncodeError::FrameTooLarge {
                len: frame_len,
                max: max_frame_len,
            });
        }
        let length = (frame_len - LENGTH_PREFIX_LEN) as u32;
        out[start..start + 4].copy_from_slice(&length.to_be_bytes());
        out[start + 4..start + 8]
            .copy_from_slice(&header_length_field(serialize_type, header_len).to_be_bytes());
        out.extend_from_slice(&self.body);
        Ok(())
    }

    /// Ext fields as the binary form carries them: empty keys and values are
    /// left out, since Java reads an empty string there as null.
    fn binary_ext_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.ext_fields
            .iter()
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
    }

    fn binary_header_len(&self) -> Result<usize, EncodeError> {
        let remark = self.remark.as_deref().map_or(0, str::len);
        let mut ext = 0usize;
        for (k, v) in self.binary_ext_fields() {
            if k.len() > i16::MAX as usize {
                return Err(EncodeError::StringTooLong(k.len()));
            }
            ext += 2 + k.len() + 4 + v.len();
        }
        let total = 21 + remark + ext;
        if total > MAX_HEADER_LEN {
            return Err(EncodeError::HeaderTooLarge(total));
        }
        Ok(total)
    }

    fn write_binary_header(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let code = i16::try_from(self.code).map_err(|_| EncodeError::NotRepresentable {
            field: "code",
            value: self.code,
        })?;
        let version = i16::try_from(self.version).map_err(|_| EncodeError::NotRepresentable {
            field: "version",
            value: self.version,
        })?;
        out.put_i16(code);
        out.put_u8(self.language.value());
        out.put_i16(version);
        out.put_i32(self.opaque);
        out.put_i32(self.flag);
        let remark = self.remark.as_deref().unwrap_or("");
        // Lengths below were bounded by `binary_header_len` (header <= 16 MiB).
        out.put_i32(remark.len() as i32);
        out.put_slice(remark.as_bytes());
        let len_at = out.len();
        out.put_i32(0);
        for (k, v) in self.binary_ext_fields() {
            out.put_i16(k.len() as i16);
            out.put_slice(k.as_bytes());
            out.put_i32(v.len() as i32);
            out.put_slice(v.as_bytes());
        }
        let ext_len = (out.len() - len_at - 4) as i32;
        out[len_at..len_at + 4].copy_from_slice(&ext_len.to_be_bytes());
        Ok(())
    }
}

/// The JSON header as Java's fastjson writes it: keys in name order, nulls left out.
#[derive(Serialize)]
struct JsonHeaderOut<'a> {
    code: i32,
    #[serde(rename = "extFields", skip_serializing_if = "Option::is_none")]
    ext_fields: Option<&'a ExtFields>,
    flag: i32,
    language: &'static str,
    opaque: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: Option<&'a str>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type: &'static str,
    version: i32,
}

/// The JSON header as read: unknown keys ignored, absent numbers zero (as fastjson
/// leaves Java's primitive fields).
#[derive(Deserialize)]
struct JsonHeaderIn {
    #[serde(default)]
    code: i32,
    #[serde(default)]
    language: Option<JsonLanguage>,
    #[serde(default)]
    version: i32,
    #[serde(default)]
    opaque: i32,
    #[serde(default)]
    flag: i32,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default, rename = "extFields")]
    ext_fields: Option<ExtFieldsIn>,
}

/// `language` as a Java enum name or, from some peers, its ordinal. JSON carries
/// names, so a code without one reads as OTHER, as a name without a code does.
struct JsonLanguage(LanguageCode);

impl<'de> Deserialize<'de> for JsonLanguage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LanguageVisitor;
        impl serde::de::Visitor<'_> for LanguageVisitor {
            type Value = JsonLanguage;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a language name or code")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonLanguage, E> {
                Ok(JsonLanguage(
                    LanguageCode::from_java_name(v).unwrap_or(LanguageCode::Other),
                ))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<JsonLanguage, E> {
                let code = u8::try_from(v).map_err(|_| {
                    E::invalid_value(serde::de::Unexpected::Unsigned(v), &"a language code")
                })?;
                Ok(JsonLanguage(match LanguageCode::from_value(code) {
                    LanguageCode::Unknown(_) => LanguageCode::Other,
                    known => known,
                }))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<JsonLanguage, E> {
                let v = u64::try_from(v).map_err(|_| {
                    E::invalid_value(serde::de::Unexpected::Signed(v), &"a language code")
                })?;
                self.visit_u64(v)
            }
        }
        deserializer.deserialize_any(LanguageVisitor)
    }
}

fn decode_json(header: &[u8]) -> Result<RemotingCommand, CommandError> {
    let h: JsonHeaderIn =
        serde_json::from_slice(header).map_err(|e| CommandError::Json(e.to_string()))?;
    let language = h.language.map_or(LanguageCode::Other, |l| l.0);
    let ExtFieldsIn {
        fields: ext_fields,
        bad_key,
    } = h.ext_fields.unwrap_or_default();
    if let Some(key) = bad_key {
        return Err(CommandError::ExtFieldType(key));
    }
    Ok(RemotingCommand {
        code: h.code,
        language,
        version: h.version,
        opaque: h.opaque,
        flag: h.flag,
        remark: h.remark,
        ext_fields,
        body: Bytes::new(),
    })
}

fn decode_binary(header: &[u8]) -> Result<RemotingCommand, CommandError> {
    let mut r = Reader::new(header);
    let code = i32::from(r.i16()?);
    let language = LanguageCode::from_value(r.u8()?);
    let version = i32::from(r.i16()?);
    let opaque = r.i32()?;
    let flag = r.i32()?;
    let remark_len = r.i32()?;
    let remark = read_str(&mut r, i64::from(remark_len), "remark")?;
    let ext_len = r.i32()?;
    let mut ext_fields = ExtFields::new();
    if ext_len != 0 {
        let Some(ext) = usize::try_from(ext_len)
            .ok()
            .filter(|&n| n <= r.remaining())
        else {
            return Err(CommandError::BadLength {
                field: "extFields",
                len: i64::from(ext_len),
            });
        };
        let mut block = Reader::new(r.bytes(ext)?);
        while block.remaining() > 0 {
            let key_len = i64::from(block.i16()?);
            let key = read_str(&mut block, key_len, "ext key")?;
            let value_len = i64::from(block.i32()?);
            let value = read_str(&mut block, value_len, "ext value")?;
            // Java reads an empty string as null; such an entry carries nothing.
            if let (Some(k), Some(v)) = (key, value) {
                ext_fields.insert(k, v); // a repeated key: the last one wins, as in Java
            }
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
    })
}

/// A length-prefixed string; `None` for length zero, as Java's `readStr`.
fn read_str(
    r: &mut Reader<'_>,
    len: i64,
    field: &'static str,
) -> Result<Option<String>, CommandError> {
    let n = usize::try_from(len)
        .ok()
        .filter(|&n| n <= r.remaining())
        .ok_or(CommandError::BadLength { field, len })?;
    if n == 0 {
        return Ok(None);
    }
    let s = std::str::from_utf8(r.bytes(n)?).map_err(|_| CommandError::InvalidUtf8(field))?;
    Ok(Some(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{decode_frame, FrameDecoder};

    fn sample() -> RemotingCommand {
        let mut cmd = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 1);
        cmd.ext_fields.insert("topic", "T");
        cmd
    }

    fn round_trip(cmd: &RemotingCommand, ty: SerializeType) -> RemotingCommand {
        let frame = cmd.to_frame(ty).unwrap();
        RemotingCommand::decode(decode_frame(frame, DEFAULT_MAX_FRAME_LEN).unwrap()).unwrap()
    }

    #[test]
    fn binary_header_matches_the_worked_example() {
        // protocol.md §1: code 105, language RUST, version 479, opaque 1, {topic: "T"}.
        let want = [
            0x00, 0x00, 0x00, 0x25, 0x01, 0x00, 0x00, 0x21, 0x00, 0x69, 0x0C, 0x01, 0xDF, 0x00,
            0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x0C, 0x00, 0x05, 0x74, 0x6F, 0x70, 0x69, 0x63, 0x00, 0x00, 0x00, 0x01, 0x54,
        ];
        assert_eq!(
            &sample().to_frame(SerializeType::RocketMq).unwrap()[..],
            &want[..]
        );
    }

    #[test]
    fn json_header_has_java_key_order() {
        let frame = sample().to_frame(SerializeType::Json).unwrap();
        let header = std::str::from_utf8(&frame[8..]).unwrap();
        assert_eq!(
            header,
            r#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"RUST","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#
        );
    }

    #[test]
    fn both_forms_round_trip_with_body() {
        let mut cmd =
            RemotingCommand::response(ResponseCode::SYSTEM_ERROR, 42, Some("busy, 中文".into()))
                .with_body(Bytes::from_static(b"hello"));
        cmd.ext_fields.insert("a", "1");
        cmd.ext_fields.insert("props", "K\u{1}V\u{2}");
        for ty in [SerializeType::Json, SerializeType::RocketMq] {
            assert_eq!(round_trip(&cmd, ty), cmd, "{ty:?}");
        }
        assert!(cmd.is_response());
        assert_eq!(cmd.response_code(), ResponseCode::SYSTEM_ERROR);
    }

    #[test]
    fn pop_codes_need_json() {
        let cmd = RemotingCommand::request(RequestCode::POP_MESSAGE, 3);
        let mut out = BytesMut::from(&b"keep"[..]);
        assert_eq!(
            cmd.encode(SerializeType::RocketMq, DEFAULT_MAX_FRAME_LEN, &mut out),
            Err(EncodeError::NotRepresentable {
                field: "code",
                value: 200050
            })
        );
        assert_eq!(&out[..], b"keep");
        assert_eq!(round_trip(&cmd, SerializeType::Json), cmd);
    }

    #[test]
    fn encode_refuses_frames_over_the_limit() {
        let cmd = sample().with_body(vec![0u8; 1000]);
        let mut out = BytesMut::new();
        assert!(matches!(
            cmd.encode(SerializeType::Json, 1000, &mut out),
            Err(EncodeError::FrameTooLarge { max: 1000, .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn json_decode_is_lenient_where_java_is() {
        let h = br#"{"code":"x"}"#;
        assert!(matches!(decode_json(h), Err(CommandError::Json(_))));
        let h =
            br#"{"language":9,"opaque":5,"extFields":{"n":12,"b":true,"z":null},"unknown":[1]}"#;
        let cmd = decode_json(h).unwrap();
        assert_eq!(cmd.language, LanguageCode::Go);
        assert_eq!(cmd.ext_fields.get("n"), Some("12"));
        assert_eq!(cmd.ext_fields.get("b"), Some("true"));
        assert!(!cmd.ext_fields.contains_key("z"));
        let h = br#"{"language":"KLINGON","extFields":{"o":{"x":1}}}"#;
        assert_eq!(decode_json(h), Err(CommandError::ExtFieldType("o".into())));
    }

    #[test]
    fn bad_binary_headers() {
        let fixed = |remark_len: i32, ext_len: i32| {
            let mut v = vec![0, 11, 12, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
            v.extend_from_slice(&remark_len.to_be_bytes());
            v.extend_from_slice(&ext_len.to_be_bytes());
            v
        };
        let mut bad_utf8 = fixed(2, 0);
        bad_utf8.truncate(17);
        bad_utf8.extend_from_slice(&[0xFF, 0xFE, 0, 0, 0, 0]);
        let mut ext_overrun = fixed(0, 7);
        ext_overrun.extend_from_slice(&[0, 1, b'k', 0, 0, 0, 9]);
        let cases: Vec<(&str, Vec<u8>, CommandError)> = vec![
            ("empty", vec![], CommandError::Truncated),
            ("fixed part cut", vec![0, 1, 2], CommandError::Truncated),
            (
                "negative remark",
                fixed(-1, 0),
                CommandError::BadLength {
                    field: "remark",
                    len: -1,
                },
            ),
            (
                "remark past end",
                fixed(100, 0),
                CommandError::BadLength {
                    field: "remark",
                    len: 100,
                },
            ),
            (
                "ext past end",
                fixed(0, 1000),
                CommandError::BadLength {
                    field: "extFields",
                    len: 1000,
                },
            ),
            (
                "negative ext",
                fixed(0, -5),
                CommandError::BadLength {
                    field: "extFields",
                    len: -5,
                },
            ),
            (
                "bad utf-8 remark",
                bad_utf8,
                CommandError::InvalidUtf8("remark"),
            ),
            (
                "value past ext block",
                ext_overrun,
                CommandError::BadLength {
                    field: "ext value",
                    len: 9,
                },
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(decode_binary(&input).err(), Some(want), "{name}");
        }
    }

    #[test]
    fn binary_repeated_key_last_wins_and_empty_is_absent() {
        let mut v = vec![0, 11, 12, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut ext = Vec::new();
        for (k, val) in [("a", "1"), ("a", "2"), ("e", "")] {
            ext.extend_from_slice(&(k.len() as i16).to_be_bytes());
            ext.extend_from_slice(k.as_bytes());
            ext.extend_from_slice(&(val.len() as i32).to_be_bytes());
            ext.extend_from_slice(val.as_bytes());
        }
        v.extend_from_slice(&(ext.len() as i32).to_be_bytes());
        v.extend(ext);
        let cmd = decode_binary(&v).unwrap();
        assert_eq!(cmd.ext_fields.len(), 1);
        assert_eq!(cmd.ext_fields.get("a"), Some("2"));
        assert_eq!(cmd.code, 11);
    }

    #[test]
    fn stream_of_mixed_forms() {
        let a = sample();
        let b =
            RemotingCommand::response(ResponseCode::SUCCESS, 1, None).with_body(vec![7u8; 5000]);
        let mut wire = BytesMut::new();
        a.encode(SerializeType::Json, DEFAULT_MAX_FRAME_LEN, &mut wire)
            .unwrap();
        b.encode(SerializeType::RocketMq, DEFAULT_MAX_FRAME_LEN, &mut wire)
            .unwrap();
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(RemotingCommand::decode(f).unwrap());
            }
        }
        assert_eq!(got, vec![a, b]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn arb_command(binary: bool) -> impl Strategy<Value = RemotingCommand> {
            let code = if binary {
                (i16::MIN as i32..=i16::MAX as i32).boxed()
            } else {
                any::<i32>().boxed()
            };
            let version = if binary {
                (i16::MIN as i32..=i16::MAX as i32).boxed()
            } else {
                any::<i32>().boxed()
            };
            // JSON carries language names, so only named languages survive it.
            let language = if binary {
                any::<u8>().boxed()
            } else {
                (0u8..14).boxed()
            };
            let value = if binary { ".{1,40}" } else { ".{0,40}" };
            (
                code,
                language,
                version,
                any::<i32>(),
                any::<i32>(),
                proptest::option::of(".{1,60}"),
                proptest::collection::btree_map(".{1,16}", value, 0..8),
                proptest::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(
                    |(code, language, version, opaque, flag, remark, ext_fields, body)| {
                        RemotingCommand {
                            code,
                            language: LanguageCode::from_value(language),
                            version,
                            opaque,
                            flag,
                            remark,
                            ext_fields: ext_fields.into_iter().collect(),
                            body: Bytes::from(body),
                        }
                    },
                )
        }

        proptest! {
            #[test]
            fn json_round_trip(cmd in arb_command(false)) {
                prop_assert_eq!(round_trip(&cmd, SerializeType::Json), cmd);
            }

            #[test]
            fn binary_round_trip(cmd in arb_command(true)) {
                prop_assert_eq!(round_trip(&cmd, SerializeType::RocketMq), cmd);
            }

            #[test]
            fn decoding_never_panics(header in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = decode_json(&header);
                let _ = decode_binary(&header);
            }
        }
    }
}
