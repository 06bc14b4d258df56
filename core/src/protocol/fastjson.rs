//! Lenient reading of the JSON the Java side writes with fastjson.
//!
//! fastjson 1.2.83 writes a map key that is not a `String` without quotes: numbers
//! bare (`{0:"10.0.0.1:10911"}`) and objects as JSON objects
//! (`{{"brokerName":"b","queueId":0,"topic":"t"}:42}`). [`normalize`] turns such text
//! into standard JSON that `serde_json` accepts:
//!
//! * a bare scalar key (number, `true`, `false`, `null`) becomes a string key with the
//!   same text: `{0:"a"}` → `{"0":"a"}`;
//! * an object (or array) key becomes a string key holding the key's compact JSON
//!   text: `{{"queueId":0}:42}` → `{"{\"queueId\":0}":42}`, so a map keyed by
//!   [`MessageQueue`] deserialises with string keys, each then parsed as a queue.
//!
//! Text that is already standard JSON is returned borrowed and unchanged. The reader
//! is iterative (no recursion), rejects nesting deeper than [`MAX_DEPTH`], never
//! panics, and its output is at most about twice as long as its input.
//!
//! The other direction, [`write_queue_map`], writes a map keyed by [`MessageQueue`]
//! with raw object keys, the form Java's fastjson expects for `Map<MessageQueue, _>`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::MessageQueue;

/// Deepest nesting of objects and arrays [`normalize`] accepts.
pub const MAX_DEPTH: usize = 128;

/// Why [`normalize`] refused its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FastjsonError {
    /// The input is not UTF-8.
    #[error("JSON text is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// The input is not JSON, even allowing fastjson's non-string keys.
    #[error("malformed JSON at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset in the input where the problem was found.
        offset: usize,
        /// What was expected or found there.
        reason: &'static str,
    },
    /// Objects and arrays are nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// Byte offset of the container that went over the limit.
        offset: usize,
        /// The limit, [`MAX_DEPTH`].
        limit: usize,
    },
}

/// Turns fastjson output into standard JSON text (see the [module docs](self)).
///
/// Returns the input itself, borrowed, when it is already standard JSON; a rewritten
/// copy when it used non-string map keys; an error when it is not UTF-8, not JSON,
/// nested deeper than [`MAX_DEPTH`], or uses a composite key inside a composite key.
pub fn normalize(input: &[u8]) -> Result<Cow<'_, str>, FastjsonError> {
    let text = std::str::from_utf8(input).map_err(|e| FastjsonError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    Normalizer::new(text).run()
}

/// Writes `queue` as fastjson does: `{"brokerName":"b","queueId":0,"topic":"T"}`.
pub fn write_queue(out: &mut Vec<u8>, queue: &MessageQueue) -> serde_json::Result<()> {
    serde_json::to_writer(out, &SortedQueue(queue))
}

/// Writes a map keyed by [`MessageQueue`] as fastjson does, with raw object keys in the
/// map's order (Java's `MessageQueue` order):
/// `{{"brokerName":"b","queueId":0,"topic":"T"}:42}`.
///
/// Java parses `Map<MessageQueue, _>` fields (reset offsets, running info) only in this
/// form; the Go client writes the same. Fails only if a value's `Serialize` fails.
pub fn write_queue_map<V: Serialize>(
    out: &mut Vec<u8>,
    map: &BTreeMap<MessageQueue, V>,
) -> serde_json::Result<()> {
    out.push(b'{');
    for (i, (queue, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_queue(out, queue)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// A [`MessageQueue`] serialised with fastjson's key order (keys sorted by name).
#[derive(Clone, Copy, Debug)]
pub struct SortedQueue<'a>(pub &'a MessageQueue);

impl Serialize for SortedQueue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("MessageQueue", 3)?;
        s.serialize_field("brokerName", &self.0.broker_name)?;
        s.serialize_field("queueId", &self.0.queue_id)?;
        s.serialize_field("topic", &self.0.topic)?;
        s.end()
    }
}

/// What the scanner expects next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Any value (top level, after `:`, after `,` in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrClose,
    /// A key (after `,` in an object).
    Key,
    /// A key or `}` (just after `{`).
    KeyOrClose,
    /// The `:` after a key.
    Colon,
    /// `,` or the closing bracket of the innermost container.
    CommaOrClose,
    /// Nothing but whitespace (after the top-level value).
    End,
}

/// Where a composite (object or array) key started.
#[derive(Clone, Copy, Debug)]
struct CompositeKey {
    /// Stack depth of the key's own container.
    depth: usize,
    /// Output offset where the key's text starts.
    mark: usize,
}

/// The output: borrowed input until the first rewrite, then an owned copy.
struct Output<'a> {
    src: &'a [u8],
    buf: Option<Vec<u8>>,
    /// Input bytes before this offset are already in `buf` (or dropped).
    copied: usize,
}

impl<'a> Output<'a> {
    /// Replaces input `at..resume` by `insert`, copying pending input before `at` first.
    fn splice(&mut self, at: usize, resume: usize, insert: &[u8]) -> &mut Vec<u8> {
        let src = self.src;
        let buf = self
            .buf
            .get_or_insert_with(|| Vec::with_capacity(src.len() + src.len() / 4 + 16));
        buf.extend_from_slice(src.get(self.copied..at).unwrap_or_default());
        buf.extend_from_slice(insert);
        self.copied = resume;
        buf
    }

    fn finish(self, text: &'a str) -> Result<Cow<'a, str>, FastjsonError> {
        let Some(mut buf) = self.buf else {
            return Ok(Cow::Borrowed(text));
        };
        buf.extend_from_slice(self.src.get(self.copied..).unwrap_or_default());
        // Input is copied in runs split only at ASCII bytes and only ASCII is inserted,
        // so this cannot fail; report rather than panic if it ever does.
        String::from_utf8(buf)
            .map(Cow::Owned)
            .map_err(|_| FastjsonError::Syntax {
                offset: 0,
                reason: "rewrite produced invalid UTF-8",
            })
    }
}

struct Normalizer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Open containers; `true` for objects.
    stack: Vec<bool>,
    key: Option<CompositeKey>,
    out: Output<'a>,
}

impl<'a> Normalizer<'a> {
    fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        Self {
            text,
            bytes,
            pos: 0,
            stack: Vec::new(),
            key: None,
            out: Output {
                src: bytes,
                buf: None,
                copied: 0,
            },
        }
    }

    fn run(mut self) -> Result<Cow<'a, str>, FastjsonError> {
        let mut expect = Expect::Value;
        loop {
            self.skip_whitespace();
            let Some(&byte) = self.bytes.get(self.pos) else {
                if expect == Expect::End {
                    return self.out.finish(self.text);
                }
                return Err(self.syntax("unexpected end of input"));
            };
            expect = match expect {
                Expect::End => return Err(self.syntax("trailing characters after the value")),
                Expect::Colon if byte == b':' => {
                    self.pos += 1;
                    Expect::Value
                }
                Expect::Colon => return Err(self.syntax("expected ':' after an object key")),
                Expect::CommaOrClose => match (byte, self.stack.last()) {
                    (b',', Some(true)) => {
                        self.pos += 1;
                        Expect::Key
                    }
                    (b',', _) => {
                        self.pos += 1;
                        Expect::Value
                    }
                    (b'}', Some(true)) | (b']', Some(false)) => self.close(),
                    _ => return Err(self.syntax("expected ',' or a closing bracket")),
                },
                Expect::KeyOrClose if byte == b'}' => self.close(),
                Expect::ValueOrClose if byte == b']' => self.close(),
                Expect::Key | Expect::KeyOrClose => self.key(byte)?,
                Expect::Value | Expect::ValueOrClose => self.value(byte)?,
            };
        }
    }

    fn syntax(&self, reason: &'static str) -> FastjsonError {
        FastjsonError::Syntax {
            offset: self.pos,
            reason,
        }
    }

    fn skip_whitespace(&mut self) {
        let start = self.pos;
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        // Inside a composite key the key text is made compact.
        if self.key.is_some() && self.pos > start {
            self.out.splice(start, self.pos, b"");
        }
    }

    /// A value starting with `byte` at `pos`; returns what follows it.
    fn value(&mut self, byte: u8) -> Result<Expect, FastjsonError> {
        match byte {
            b'{' => self.open(true).map(|()| Expect::KeyOrClose),
            b'[' => self.open(false).map(|()| Expect::ValueOrClose),
            _ => {
                self.scalar(byte)?;
                Ok(self.after_value())
            }
        }
    }

    /// An object key starting with `byte` at `pos`; returns [`Expect::Colon`].
    fn key(&mut self, byte: u8) -> Result<Expect, FastjsonError> {
        let start = self.pos;
        match byte {
            b'"' => self.string()?,
            b'{' | b'[' => {
                if self.key.is_some() {
                    return Err(self.syntax("composite key inside a composite key"));
                }
                self.open(byte == b'{')?;
                let mark = self.out.splice(start, start, b"").len();
                self.key = Some(CompositeKey {
                    depth: self.stack.len(),
                    mark,
                });
                return Ok(if byte == b'{' {
                    Expect::KeyOrClose
                } else {
                    Expect::ValueOrClose
                });
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                // A bare number or literal key: quote it.
                self.scalar(byte)?;
                self.out.splice(start, start, b"\"");
                self.out.splice(self.pos, self.pos, b"\"");
            }
            _ => return Err(self.syntax("expected an object key")),
        }
        Ok(Expect::Colon)
    }

    fn open(&mut self, object: bool) -> Result<(), FastjsonError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(FastjsonError::TooDeep {
                offset: self.pos,
                limit: MAX_DEPTH,
            });
        }
        self.stack.push(object);
        self.pos += 1;
        Ok(())
    }

    /// Consumes the closing bracket at `pos` (already checked to match).
    fn close(&mut self) -> Expect {
        self.pos += 1;
        let depth = self.stack.len();
        self.stack.pop();
        match self.key {
            Some(key) if key.depth == depth => {
                self.key = None;
                self.finish_composite_key(key.mark);
                Expect::Colon
            }
            _ => self.after_value(),
        }
    }

    fn after_value(&self) -> Expect {
        if self.stack.is_empty() {
            Expect::End
        } else {
            Expect::CommaOrClose
        }
    }

    /// Turns the output from `mark` (a compact composite key) into a JSON string.
    fn finish_composite_key(&mut self, mark: usize) {
        let buf = self.out.splice(self.pos, self.pos, b"");
        let raw = buf.split_off(mark.min(buf.len()));
        buf.reserve(raw.len() + raw.len() / 4 + 2);
        buf.push(b'"');
        for &b in &raw {
            match b {
                b'"' => buf.extend_from_slice(b"\\\""),
                b'\\' => buf.extend_from_slice(b"\\\\"),
                _ => buf.push(b),
            }
        }
        buf.push(b'"');
    }

    /// A string, number or literal starting with `byte` at `pos`.
    fn scalar(&mut self, byte: u8) -> Result<(), FastjsonError> {
        match byte {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => Err(self.syntax("expected a value")),
        }
    }

    fn string(&mut self) -> Result<(), FastjsonError> {
        let mut i = self.pos + 1;
        loop {
            match self.bytes.get(i) {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => match self.bytes.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let hex = self.bytes.get(i + 2..i + 6).unwrap_or_default();
                        if hex.len() != 4 || !hex.iter().all(u8::is_ascii_hexdigit) {
                            self.pos = i;
                            return Err(self.syntax("invalid \\u escape"));
                        }
                        i += 6;
                    }
                    _ => {
                        self.pos = i;
                        return Err(self.syntax("invalid escape"));
                    }
                },
                Some(&b) if b < 0x20 => {
                    self.pos = i;
                    return Err(self.syntax("control character in string"));
                }
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        Ok(())
    }

    /// A JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<(), FastjsonError> {
        let digits = |bytes: &[u8], from: usize| {
            let mut i = from;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = self.pos;
        if self.bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match self.bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(self.bytes, i),
            _ => return Err(self.syntax("invalid number")),
        }
        if self.bytes.get(i) == Some(&b'.') {
            let end = digits(self.bytes, i + 1);
            if end == i + 1 {
                return Err(self.syntax("invalid number"));
            }
            i = end;
        }
        if let Some(b'e' | b'E') = self.bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = self.bytes.get(i) {
                i += 1;
            }
            let end = digits(self.bytes, i);
            if end == i {
                return Err(self.syntax("invalid number"));
            }
            i = end;
        }
        self.pos = i;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), FastjsonError> {
        if self.bytes.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(self.syntax("invalid literal"));
        }
        self.pos += word.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn norm(s: &str) -> Cow<'_, str> {
        match normalize(s.as_bytes()) {
            Ok(out) => out,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    #[test]
    fn standard_json_is_borrowed() {
        let s = r#" {"a": [1, -2.5e3, true, null, "x\"{:}\u00e9"], "b": {}} "#;
        assert!(matches!(norm(s), Cow::Borrowed(b) if b == s));
    }

    #[test]
    fn bare_number_keys_are_quoted() {
        assert_eq!(
            norm(r#"{0:"10.0.0.1:10911",1:"10.0.0.2:10911",-3:"x"}"#),
            r#"{"0":"10.0.0.1:10911","1":"10.0.0.2:10911","-3":"x"}"#
        );
        assert_eq!(norm("{ 12 : [ ] }"), r#"{ "12" : [ ] }"#);
        assert_eq!(norm("{true:1,null:2}"), r#"{"true":1,"null":2}"#);
    }

    #[test]
    fn object_keys_become_strings() {
        let s = r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:42}}"#;
        let out = norm(s);
        assert_eq!(
            out,
            r#"{"offsetTable":{"{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"t\"}":42}}"#
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        let key = v["offsetTable"].as_object().unwrap().keys().next().unwrap();
        let mq: MessageQueue = serde_json::from_str(key).unwrap();
        assert_eq!(mq, MessageQueue::new("t", "b", 0));
    }

    #[test]
    fn object_keys_are_compacted_and_keep_escapes() {
        let s = "{ { \"topic\" : \"a \\\"{:}\\\\ \\u0041\" , 7 : 1 } : 1 }";
        let out = norm(s);
        let v: Value = serde_json::from_str(&out).unwrap();
        let key = v.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(key, r#"{"topic":"a \"{:}\\ \u0041","7":1}"#);
        let inner: Value = serde_json::from_str(&key).unwrap();
        assert_eq!(inner["topic"], "a \"{:}\\ A");
    }

    #[test]
    fn array_keys_and_nested_values() {
        let out = norm(r#"{[1,2]:{3:[{4:5}]}}"#);
        assert_eq!(out, r#"{"[1,2]":{"3":[{"4":5}]}}"#);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let deep = "[".repeat(10_000);
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"{",
            b"{\"a\":1",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{\"a\":1]",
            b"[1}",
            b"\"abc",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"a\nb\"",
            b"01",
            b"-",
            b"1.",
            b"1e",
            b"tru",
            b"nul",
            b"{} {}",
            b"{{{\"a\":1}:2}:3}",
            b"{x:1}",
            b"\xff",
            b"\"\xc3\"",
            deep.as_bytes(),
        ];
        for case in cases {
            assert!(
                normalize(case).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(normalize(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            normalize(deep.as_bytes()),
            Err(FastjsonError::TooDeep {
                offset: MAX_DEPTH,
                limit: MAX_DEPTH
            })
        );
    }

    #[test]
    fn utf8_error_position() {
        assert_eq!(
            normalize(b"{\"a\":\"\xff\"}"),
            Err(FastjsonError::InvalidUtf8 { valid_up_to: 6 })
        );
    }

    #[test]
    fn queue_map_writer() {
        let mut map = BTreeMap::new();
        map.insert(MessageQueue::new("T", "b", 1), 7i64);
        map.insert(MessageQueue::new("T", "a", 0), 42i64);
        let mut out = Vec::new();
        write_queue_map(&mut out, &map).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{{"brokerName":"a","queueId":0,"topic":"T"}:42,{"brokerName":"b","queueId":1,"topic":"T"}:7}"#
        );
        let text = normalize(&out).unwrap();
        let back: BTreeMap<String, i64> = serde_json::from_str(&text).unwrap();
        let back: BTreeMap<MessageQueue, i64> = back
            .into_iter()
            .map(|(k, v)| (serde_json::from_str(&k).unwrap(), v))
            .collect();
        assert_eq!(back, map);
    }

    /// A map key in the fastjson model used by the property tests.
    #[derive(Clone, Debug)]
    enum Key {
        Str(String),
        Int(i64),
        Obj(Vec<(String, Value)>),
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z{}:\"\\\\ é\u{1F600}]{0,6}".prop_map(Value::String),
        ]
    }

    fn key() -> impl Strategy<Value = Key> {
        prop_oneof![
            "[a-z{}:\" ]{0,5}".prop_map(Key::Str),
            any::<i64>().prop_map(Key::Int),
            prop::collection::vec(("[a-zA-Z]{1,5}", scalar()), 0..4).prop_map(Key::Obj),
        ]
    }

    /// A JSON tree whose object keys may be non-strings.
    #[derive(Clone, Debug)]
    enum Node {
        Leaf(Value),
        Arr(Vec<Self>),
        Obj(Vec<(Key, Self)>),
    }

    fn node() -> impl Strategy<Value = Node> {
        scalar()
            .prop_map(Node::Leaf)
            .prop_recursive(4, 48, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Node::Arr),
                    prop::collection::vec((key(), inner), 0..5).prop_map(Node::Obj),
                ]
            })
    }

    fn compact(fields: &[(String, Value)]) -> String {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Writes `node` the way fastjson does (raw non-string keys); returns the text and
    /// the standard JSON value it must normalise to.
    fn fastjson_text(node: &Node, out: &mut String) -> Value {
        match node {
            Node::Leaf(v) => {
                out.push_str(&v.to_string());
                v.clone()
            }
            Node::Arr(items) => {
                out.push('[');
                let mut values = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    values.push(fastjson_text(item, out));
                }
                out.push(']');
                Value::Array(values)
            }
            Node::Obj(entries) => {
                out.push('{');
                let mut map = serde_json::Map::new();
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let name = match key {
                        Key::Str(s) => {
                            out.push_str(&Value::from(s.as_str()).to_string());
                            s.clone()
                        }
                        Key::Int(n) => {
                            out.push_str(&n.to_string());
                            n.to_string()
                        }
                        Key::Obj(fields) => {
                            // Spaces inside the key are dropped by the reader.
                            let text = compact(fields);
                            out.push_str(&text.replace(",", " , "));
                            text
                        }
                    };
                    out.push(':');
                    let v = fastjson_text(value, out);
                    map.insert(name, v);
                }
                out.push('}');
                Value::Object(map)
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(input in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(out) = normalize(&input) {
                prop_assert!(out.len() <= 2 * input.len() + 2);
                prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&out).is_ok());
            }
        }

        #[test]
        fn never_panics_on_jsonish(input in "[\\[\\]{}:,\" 0-9a-tv-z\\\\.eE+-]{0,64}") {
            if let Ok(out) = normalize(input.as_bytes()) {
                prop_assert!(out.len() <= 2 * input.len() + 2);
                prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&out).is_ok());
            }
        }

        #[test]
        fn identity_on_standard_json(node in node()) {
            let mut ignored = String::new();
            let value = fastjson_text(&node, &mut ignored);
            for text in [value.to_string(), serde_json::to_string_pretty(&value).unwrap()] {
                let out = normalize(text.as_bytes()).unwrap();
                prop_assert!(matches!(out, Cow::Borrowed(_)));
                prop_assert_eq!(&serde_json::from_str::<Value>(&out).unwrap(), &value);
            }
        }

        #[test]
        fn fastjson_keys_normalise(node in node()) {
            let mut text = String::new();
            let expected = fastjson_text(&node, &mut text);
            let out = normalize(text.as_bytes()).unwrap();
            prop_assert!(out.len() <= 2 * text.len() + 2);
            prop_assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), expected);
        }
    }
}
