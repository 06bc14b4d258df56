//! Typed request and response headers, to and from a command's ext fields.
//!
//! Every header is a plain struct whose fields map to ext-field keys exactly as the
//! Java `CommandCustomHeader` classes name them (`P/header/*.java`). Required
//! fields (`@CFNotNull` in Java) are plain types: reading a command without them is
//! [`HeaderError::Missing`]. Optional fields are `Option`s. Values travel as
//! strings: numbers in decimal, booleans as `true`/`false`.

use super::command::ExtFields;

/// Bits of [`PullMessageRequestHeader::sys_flag`] (`PullSysFlag.java`).
pub mod pull_flag {
    /// The broker may commit `commitOffset` for the group.
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// The broker may hold the request until messages arrive (long polling).
    pub const SUSPEND: i32 = 0x2;
    /// The header carries the subscription; without it the broker uses the one the
    /// group registered by heartbeat.
    pub const SUBSCRIPTION: i32 = 0x4;
    /// Legacy class filter.
    pub const CLASS_FILTER: i32 = 0x8;
    /// A lite pull consumer's pull.
    pub const LITE_PULL: i32 = 0x10;
}

/// Why ext fields do not form the expected header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A required field is absent.
    #[error("header field {0} is missing")]
    Missing(&'static str),
    /// A field's value does not parse as its type.
    #[error("header field {field} = {value:?} is not a valid {expected}")]
    Malformed {
        /// The ext-field key.
        field: &'static str,
        /// The value found (cut to 64 characters).
        value: String,
        /// The type expected.
        expected: &'static str,
    },
}

/// A header that converts to and from ext fields.
pub trait CommandHeader: Sized {
    /// Writes every present field into `ext`.
    fn write(&self, ext: &mut ExtFields);
    /// Reads the header from `ext`, ignoring keys it does not know.
    fn read(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// A value type that travels as one ext-field string.
pub trait ExtValue: Sized {
    /// Name of the type, for errors.
    const TYPE: &'static str;
    /// Parses the wire string.
    fn parse(s: &str) -> Option<Self>;
    /// The wire string.
    fn render(&self) -> String;
}

impl ExtValue for String {
    const TYPE: &'static str = "string";
    fn parse(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
    fn render(&self) -> String {
        self.clone()
    }
}

macro_rules! int_ext_value {
    ($($t:ty => $name:literal),*) => {$(
        impl ExtValue for $t {
            const TYPE: &'static str = $name;
            fn parse(s: &str) -> Option<Self> {
                s.parse().ok()
            }
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
int_ext_value!(i32 => "32-bit integer", i64 => "64-bit integer");

impl ExtValue for bool {
    const TYPE: &'static str = "boolean";
    fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("true") {
            Some(true)
        } else if s.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        }
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

/// One field of a header: required (`T`) or optional (`Option<T>`).
pub trait HeaderField: Sized {
    /// Reads the field under `key`.
    fn get(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError>;
    /// Writes the field under `key` (nothing for an absent optional).
    fn put(&self, ext: &mut ExtFields, key: &'static str);
}

fn parse_value<T: ExtValue>(key: &'static str, s: &str) -> Result<T, HeaderError> {
    T::parse(s).ok_or_else(|| HeaderError::Malformed {
        field: key,
        value: s.chars().take(64).collect(),
        expected: T::TYPE,
    })
}

impl<T: ExtValue> HeaderField for T {
    fn get(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError> {
        let s = ext.get(key).ok_or(HeaderError::Missing(key))?;
        parse_value(key, s)
    }
    fn put(&self, ext: &mut ExtFields, key: &'static str) {
        ext.insert(key, self.render());
    }
}

impl<T: ExtValue> HeaderField for Option<T> {
    fn get(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError> {
        ext.get(key).map(|s| parse_value(key, s)).transpose()
    }
    fn put(&self, ext: &mut ExtFields, key: &'static str) {
        if let Some(v) = self {
            v.put(ext, key);
        }
    }
}

macro_rules! command_header {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty => $key:literal, )*
        }
    )*) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// The ext-field keys of this header, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$($key),*];
        }

        impl CommandHeader for $name {
            #[allow(unused_variables)]
            fn write(&self, ext: &mut ExtFields) {
                ext.reserve(Self::KEYS.len());
                $( HeaderField::put(&self.$field, ext, $key); )*
            }
            #[allow(unused_variables)]
            fn read(ext: &ExtFields) -> Result<Self, HeaderError> {
                Ok(Self { $( $field: HeaderField::get(ext, $key)?, )* })
            }
        }
    )*};
}

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105) request, to a name server.
    pub struct GetRouteInfoRequestHeader {
        /// The topic.
        pub topic: String => "topic",
        /// Ask for standard JSON (quoted map keys) in the answer.
        pub accept_standard_json_only: Option<bool> => "acceptStandardJsonOnly",
    }

    /// SEND_MESSAGE (10) request: the V1 long keys.
    pub struct SendMessageRequestHeader {
        /// Producer group.
        pub producer_group: String => "producerGroup",
        /// Target topic.
        pub topic: String => "topic",
        /// Template topic for auto-creation (`TBW102`).
        pub default_topic: String => "defaultTopic",
        /// Queue count for an auto-created topic.
        pub default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        /// Target queue.
        pub queue_id: i32 => "queueId",
        /// Compression and transaction bits of the message.
        pub sys_flag: i32 => "sysFlag",
        /// Client time of sending, ms since the epoch.
        pub born_timestamp: i64 => "bornTimestamp",
        /// The message's user flag.
        pub flag: i32 => "flag",
        /// Properties string (see [`crate::protocol::message::encode_properties`]).
        pub properties: Option<String> => "properties",
        /// Times the message was consumed before (retry topics).
        pub reconsume_times: Option<i32> => "reconsumeTimes",
        /// Unit mode.
        pub unit_mode: Option<bool> => "unitMode",
        /// Whether the body is a batch.
        pub batch: Option<bool> => "batch",
        /// Retry limit carried by a retried message.
        pub max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// Response to the send requests.
    pub struct SendMessageResponseHeader {
        /// Offset message id (comma-separated list for a batch).
        pub msg_id: String => "msgId",
        /// Queue the message was stored in.
        pub queue_id: i32 => "queueId",
        /// Queue offset of the (first) stored message.
        pub queue_offset: i64 => "queueOffset",
        /// The stored message's unique key (transactions).
        pub transaction_id: Option<String> => "transactionId",
        /// Unique id of a batch.
        pub batch_uniq_id: Option<String> => "batchUniqId",
        /// Handle to recall a delayed message (5.3+).
        pub recall_handle: Option<String> => "recallHandle",
    }

    /// PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361) request.
    pub struct PullMessageRequestHeader {
        /// Consumer group.
        pub consumer_group: String => "consumerGroup",
        /// Topic of the queue.
        pub topic: String => "topic",
        /// Queue id.
        pub queue_id: i32 => "queueId",
        /// First offset wanted.
        pub queue_offset: i64 => "queueOffset",
        /// Most messages to return.
        pub max_msg_nums: i32 => "maxMsgNums",
        /// Pull flags (commit offset, suspend, subscription, class filter, lite pull).
        pub sys_flag: i32 => "sysFlag",
        /// Consumed offset for the broker to commit (with the commit flag).
        pub commit_offset: i64 => "commitOffset",
        /// How long the broker may hold the request when nothing is there, ms.
        pub suspend_timeout_millis: i64 => "suspendTimeoutMillis",
        /// Subscription expression (with the subscription flag).
        pub subscription: Option<String> => "subscription",
        /// Version of the subscription.
        pub sub_version: i64 => "subVersion",
        /// `TAG` or `SQL92`.
        pub expression_type: Option<String> => "expressionType",
        /// Most bytes to return (5.x).
        pub max_msg_bytes: Option<i32> => "maxMsgBytes",
        /// Set by proxies only.
        pub request_source: Option<i32> => "requestSource",
        /// Set by proxies only (the Java key is misspelt).
        pub proxy_forward_client_id: Option<String> => "proxyFrowardClientId",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// Response to a pull.
    pub struct PullMessageResponseHeader {
        /// Broker id to pull this queue from next (0 = master).
        pub suggest_which_broker_id: i64 => "suggestWhichBrokerId",
        /// Offset to pull from next.
        pub next_begin_offset: i64 => "nextBeginOffset",
        /// Smallest offset of the queue.
        pub min_offset: i64 => "minOffset",
        /// One past the largest offset of the queue.
        pub max_offset: i64 => "maxOffset",
        /// Add to each message's queue offset when present.
        pub offset_delta: Option<i64> => "offsetDelta",
        /// The topic's system flag.
        pub topic_sys_flag: Option<i32> => "topicSysFlag",
        /// The group's system flag.
        pub group_sys_flag: Option<i32> => "groupSysFlag",
        /// Why consumption is forbidden, if it is.
        pub forbidden_type: Option<i32> => "forbiddenType",
    }

    /// QUERY_CONSUMER_OFFSET (14) request.
    pub struct QueryConsumerOffsetRequestHeader {
        /// Consumer group.
        pub consumer_group: String => "consumerGroup",
        /// Topic of the queue.
        pub topic: String => "topic",
        /// Queue id.
        pub queue_id: i32 => "queueId",
        /// `false` asks for QUERY_NOT_FOUND instead of 0 on a young queue.
        pub set_zero_if_not_found: Option<bool> => "setZeroIfNotFound",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// Response to QUERY_CONSUMER_OFFSET.
    pub struct QueryConsumerOffsetResponseHeader {
        /// The committed offset.
        pub offset: i64 => "offset",
    }

    /// UPDATE_CONSUMER_OFFSET (15) request.
    pub struct UpdateConsumerOffsetRequestHeader {
        /// Consumer group.
        pub consumer_group: String => "consumerGroup",
        /// Topic of the queue.
        pub topic: String => "topic",
        /// Queue id.
        pub queue_id: i32 => "queueId",
        /// The offset to commit.
        pub commit_offset: i64 => "commitOffset",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// UNREGISTER_CLIENT (35) request.
    pub struct UnregisterClientRequestHeader {
        /// The client id.
        pub client_id: String => "clientID",
        /// Producer group to leave.
        pub producer_group: Option<String> => "producerGroup",
        /// Consumer group to leave.
        pub consumer_group: Option<String> => "consumerGroup",
    }

    /// GET_CONSUMER_LIST_BY_GROUP (38) request.
    pub struct GetConsumerListByGroupRequestHeader {
        /// Consumer group.
        pub consumer_group: String => "consumerGroup",
    }

    /// CONSUMER_SEND_MSG_BACK (36) request.
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the message.
        pub offset: i64 => "offset",
        /// Consumer group.
        pub group: String => "group",
        /// Delay level for the retry (0: the broker's schedule; negative: DLQ).
        pub delay_level: i32 => "delayLevel",
        /// Id of the original message.
        pub origin_msg_id: Option<String> => "originMsgId",
        /// Topic of the original message.
        pub origin_topic: Option<String> => "originTopic",
        /// Unit mode.
        pub unit_mode: Option<bool> => "unitMode",
        /// Retries before the message goes to the DLQ.
        pub max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP (29) request.
    pub struct SearchOffsetRequestHeader {
        /// Topic.
        pub topic: String => "topic",
        /// Queue id.
        pub queue_id: i32 => "queueId",
        /// Store timestamp to search, ms since the epoch.
        pub timestamp: i64 => "timestamp",
        /// `LOWER` (default) or `UPPER`.
        pub boundary_type: Option<String> => "boundaryType",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// Response carrying one offset (SEARCH_OFFSET_BY_TIMESTAMP, GET_MAX_OFFSET,
    /// GET_MIN_OFFSET).
    pub struct OffsetResponseHeader {
        /// The offset.
        pub offset: i64 => "offset",
    }

    /// GET_MAX_OFFSET (30) request.
    pub struct GetMaxOffsetRequestHeader {
        /// Topic.
        pub topic: String => "topic",
        /// Queue id.
        pub queue_id: i32 => "queueId",
        /// Only count committed messages (Java default true).
        pub committed: Option<bool> => "committed",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// GET_MIN_OFFSET (31) request.
    pub struct GetMinOffsetRequestHeader {
        /// Topic.
        pub topic: String => "topic",
        /// Queue id.
        pub queue_id: i32 => "queueId",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// GET_EARLIEST_MSG_STORETIME (32) request.
    pub struct GetEarliestMsgStoretimeRequestHeader {
        /// Topic.
        pub topic: String => "topic",
        /// Queue id.
        pub queue_id: i32 => "queueId",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// Response to GET_EARLIEST_MSG_STORETIME.
    pub struct GetEarliestMsgStoretimeResponseHeader {
        /// Store time, ms since the epoch.
        pub timestamp: i64 => "timestamp",
    }

    /// VIEW_MESSAGE_BY_ID (33) request.
    pub struct ViewMessageRequestHeader {
        /// Topic (5.x).
        pub topic: Option<String> => "topic",
        /// Commit-log offset, from an offset message id.
        pub offset: i64 => "offset",
    }

    /// NOTIFY_CONSUMER_IDS_CHANGED (40), broker to client, oneway.
    pub struct NotifyConsumerIdsChangedRequestHeader {
        /// The group whose membership changed.
        pub consumer_group: String => "consumerGroup",
    }

    /// RESET_CONSUMER_CLIENT_OFFSET (220), broker to client, oneway.
    pub struct ResetOffsetRequestHeader {
        /// Consumer group.
        pub group: String => "group",
        /// Topic.
        pub topic: String => "topic",
        /// Queue id, -1 for all.
        pub queue_id: Option<i32> => "queueId",
        /// Target offset, when reset by offset.
        pub offset: Option<i64> => "offset",
        /// Target time, ms since the epoch.
        pub timestamp: i64 => "timestamp",
        /// Also move offsets forwards.
        pub is_force: bool => "isForce",
    }

    /// GET_CONSUMER_STATUS_FROM_CLIENT (221), broker to client.
    pub struct GetConsumerStatusRequestHeader {
        /// Topic.
        pub topic: String => "topic",
        /// Consumer group.
        pub group: String => "group",
        /// Address of the client asked.
        pub client_addr: Option<String> => "clientAddr",
    }

    /// GET_CONSUMER_RUNNING_INFO (307), admin through broker to client.
    pub struct GetConsumerRunningInfoRequestHeader {
        /// Consumer group.
        pub consumer_group: String => "consumerGroup",
        /// Client id asked.
        pub client_id: String => "clientId",
        /// Whether to include thread stacks.
        pub jstack_enable: Option<bool> => "jstackEnable",
    }

    /// CONSUME_MESSAGE_DIRECTLY (309), admin through broker to client.
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        /// Consumer group.
        pub consumer_group: String => "consumerGroup",
        /// Client id asked.
        pub client_id: Option<String> => "clientId",
        /// Message id.
        pub msg_id: Option<String> => "msgId",
        /// Broker holding the message.
        pub broker_name: Option<String> => "brokerName",
        /// Topic.
        pub topic: Option<String> => "topic",
        /// The topic's system flag.
        pub topic_sys_flag: Option<i32> => "topicSysFlag",
        /// The group's system flag.
        pub group_sys_flag: Option<i32> => "groupSysFlag",
    }

    /// END_TRANSACTION (37) request, oneway.
    pub struct EndTransactionRequestHeader {
        /// Topic.
        pub topic: Option<String> => "topic",
        /// Producer group.
        pub producer_group: String => "producerGroup",
        /// Queue offset of the half message.
        pub tran_state_table_offset: i64 => "tranStateTableOffset",
        /// Commit-log offset of the half message.
        pub commit_log_offset: i64 => "commitLogOffset",
        /// 0 unknown, 8 commit, 12 roll back.
        pub commit_or_rollback: i32 => "commitOrRollback",
        /// Whether this answers a broker check.
        pub from_transaction_check: Option<bool> => "fromTransactionCheck",
        /// Unique key of the message.
        pub msg_id: String => "msgId",
        /// Transaction id.
        pub transaction_id: Option<String> => "transactionId",
        /// Target broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// CHECK_TRANSACTION_STATE (39), broker to client, oneway.
    pub struct CheckTransactionStateRequestHeader {
        /// Topic.
        pub topic: Option<String> => "topic",
        /// Queue offset of the half message.
        pub tran_state_table_offset: i64 => "tranStateTableOffset",
        /// Commit-log offset of the half message.
        pub commit_log_offset: i64 => "commitLogOffset",
        /// Unique key of the message.
        pub msg_id: Option<String> => "msgId",
        /// Transaction id.
        pub transaction_id: Option<String> => "transactionId",
        /// Offset message id.
        pub offset_msg_id: Option<String> => "offsetMsgId",
        /// Broker name.
        pub broker_name: Option<String> => "bname",
    }

    /// UPDATE_AND_CREATE_TOPIC (17) request (tests and tools).
    pub struct CreateTopicRequestHeader {
        /// Topic to create.
        pub topic: String => "topic",
        /// Template topic (`TBW102`).
        pub default_topic: String => "defaultTopic",
        /// Readable queues.
        pub read_queue_nums: i32 => "readQueueNums",
        /// Writable queues.
        pub write_queue_nums: i32 => "writeQueueNums",
        /// Permission bits (6 = read and write).
        pub perm: i32 => "perm",
        /// `SINGLE_TAG` or `MULTI_TAG`.
        pub topic_filter_type: String => "topicFilterType",
        /// The topic's system flag.
        pub topic_sys_flag: Option<i32> => "topicSysFlag",
        /// Whether the topic is ordered.
        pub order: bool => "order",
        /// Topic attributes, `+key=value` comma list.
        pub attributes: Option<String> => "attributes",
        /// Force the update.
        pub force: Option<bool> => "force",
    }
}

/// SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) request: the fields of
/// [`SendMessageRequestHeader`] under one-letter keys, which is what the Java client
/// sends by default (and always for batches).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendMessageRequestHeaderV2(pub SendMessageRequestHeader);

/// The V2 key of each [`SendMessageRequestHeader`] field.
macro_rules! v2_keys {
    ($($field:ident => $key:literal,)*) => {
        impl SendMessageRequestHeaderV2 {
            /// The ext-field keys of this header, in Java's order.
            pub const KEYS: &'static [&'static str] = &[$($key),*];
        }

        impl CommandHeader for SendMessageRequestHeaderV2 {
            fn write(&self, ext: &mut ExtFields) {
                ext.reserve(Self::KEYS.len());
                $( HeaderField::put(&self.0.$field, ext, $key); )*
            }
            fn read(ext: &ExtFields) -> Result<Self, HeaderError> {
                Ok(Self(SendMessageRequestHeader { $( $field: HeaderField::get(ext, $key)?, )* }))
            }
        }
    };
}

v2_keys! {
    producer_group => "a",
    topic => "b",
    default_topic => "c",
    default_topic_queue_nums => "d",
    queue_id => "e",
    sys_flag => "f",
    born_timestamp => "g",
    flag => "h",
    properties => "i",
    reconsume_times => "j",
    unit_mode => "k",
    max_reconsume_times => "l",
    batch => "m",
    broker_name => "n",
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(pairs: &[(&str, &str)]) -> ExtFields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pull_response_reads_java_fields() {
        let h = PullMessageResponseHeader::read(&ext(&[
            ("suggestWhichBrokerId", "0"),
            ("nextBeginOffset", "32"),
            ("minOffset", "0"),
            ("maxOffset", "100"),
            ("unrelated", "x"),
        ]))
        .unwrap();
        assert_eq!(h.next_begin_offset, 32);
        assert_eq!(h.offset_delta, None);
    }

    #[test]
    fn bad_header_table() {
        let cases: Vec<(&str, ExtFields, HeaderError)> = vec![
            (
                "missing required",
                ext(&[("minOffset", "0")]),
                HeaderError::Missing("suggestWhichBrokerId"),
            ),
            (
                "text in a number",
                ext(&[("suggestWhichBrokerId", "zero")]),
                HeaderError::Malformed {
                    field: "suggestWhichBrokerId",
                    value: "zero".into(),
                    expected: "64-bit integer",
                },
            ),
            (
                "number out of range",
                ext(&[
                    ("suggestWhichBrokerId", "0"),
                    ("nextBeginOffset", "1"),
                    ("minOffset", "0"),
                    ("maxOffset", "1"),
                    ("topicSysFlag", "9999999999"),
                ]),
                HeaderError::Malformed {
                    field: "topicSysFlag",
                    value: "9999999999".into(),
                    expected: "32-bit integer",
                },
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(PullMessageResponseHeader::read(&input), Err(want), "{name}");
        }
        assert_eq!(
            ResetOffsetRequestHeader::read(&ext(&[
                ("group", "g"),
                ("topic", "t"),
                ("timestamp", "1"),
                ("isForce", "yes")
            ])),
            Err(HeaderError::Malformed {
                field: "isForce",
                value: "yes".into(),
                expected: "boolean"
            })
        );
    }

    #[test]
    fn v1_and_v2_send_headers_carry_the_same_fields() {
        let v1 = SendMessageRequestHeader {
            producer_group: "pg".into(),
            topic: "t".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 2,
            sys_flag: 0,
            born_timestamp: 1_732_500_000_000,
            flag: 0,
            properties: Some("TAGS\u{1}a\u{2}".into()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(false),
            max_reconsume_times: None,
            broker_name: Some("broker-a".into()),
        };
        let v2 = SendMessageRequestHeaderV2(v1.clone());
        let mut fields = ExtFields::new();
        v2.write(&mut fields);
        assert_eq!(fields.get("a"), Some("pg"));
        assert_eq!(fields.get("g"), Some("1732500000000"));
        assert!(!fields.contains_key("l"));
        assert_eq!(SendMessageRequestHeaderV2::read(&fields).unwrap().0, v1);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn check<H: CommandHeader + PartialEq + std::fmt::Debug>(
            h: H,
        ) -> Result<(), TestCaseError> {
            let mut ext = ExtFields::new();
            h.write(&mut ext);
            prop_assert_eq!(H::read(&ext)?, h);
            Ok(())
        }

        proptest! {
            #[test]
            fn pull_request_round_trip(
                group in ".{0,20}", topic in ".{0,20}", queue_id in any::<i32>(), offsets in any::<(i64, i64, i64, i64)>(),
                max in any::<i32>(), sys_flag in any::<i32>(), sub in proptest::option::of(".{0,30}"),
                expr in proptest::option::of("TAG|SQL92"), bytes in proptest::option::of(any::<i32>()),
                bname in proptest::option::of("[a-z-]{1,12}"),
            ) {
                check(PullMessageRequestHeader {
                    consumer_group: group, topic, queue_id, queue_offset: offsets.0, max_msg_nums: max, sys_flag,
                    commit_offset: offsets.1, suspend_timeout_millis: offsets.2, subscription: sub, sub_version: offsets.3,
                    expression_type: expr, max_msg_bytes: bytes, request_source: None, proxy_forward_client_id: None,
                    broker_name: bname,
                })?;
            }

            #[test]
            fn send_v2_round_trip(
                names in (".{0,20}", ".{0,20}"), ints in any::<(i32, i32, i32, i32)>(), born in any::<i64>(),
                props in proptest::option::of(".{0,60}"), opt in any::<(Option<i32>, Option<bool>, Option<i32>, Option<bool>)>(),
            ) {
                check(SendMessageRequestHeaderV2(SendMessageRequestHeader {
                    producer_group: names.0, topic: names.1, default_topic: "TBW102".into(), default_topic_queue_nums: ints.0,
                    queue_id: ints.1, sys_flag: ints.2, born_timestamp: born, flag: ints.3, properties: props,
                    reconsume_times: opt.0, unit_mode: opt.1, max_reconsume_times: opt.2, batch: opt.3, broker_name: None,
                }))?;
            }

            #[test]
            fn pull_response_and_reset_round_trip(
                v in any::<(i64, i64, i64, i64, Option<i64>, Option<i32>)>(), force in any::<bool>(), qid in any::<Option<i32>>(),
            ) {
                check(PullMessageResponseHeader {
                    suggest_which_broker_id: v.0, next_begin_offset: v.1, min_offset: v.2, max_offset: v.3,
                    offset_delta: v.4, topic_sys_flag: v.5, group_sys_flag: None, forbidden_type: v.5,
                })?;
                check(ResetOffsetRequestHeader {
                    group: "g".into(), topic: "t".into(), queue_id: qid, offset: v.4, timestamp: v.0, is_force: force,
                })?;
            }
        }
    }
}
