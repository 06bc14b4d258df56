//! `HeartbeatData` (HEART_BEAT body), subscriptions, and `CheckClientRequestBody`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::json_body;

/// The subscription expression meaning "all tags" (Java `SubscriptionData.SUB_ALL`).
pub const SUB_ALL: &str = "*";

/// Java's `String.hashCode()`: `h = 31*h + c` over UTF-16 code units, wrapping.
///
/// Brokers filter by this hash of a message's tag (`TagA` → 2598919, `*` → 42).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The body of HEART_BEAT: the client's producer groups and consumer groups with
/// their subscriptions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    /// The client id (`ip@instance`).
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Consumer groups of this client.
    pub consumer_data_set: Vec<ConsumerData>,
    /// Non-zero switches the broker to the heartbeat-v2 path; send 0.
    pub heartbeat_fingerprint: i32,
    /// Producer groups of this client.
    pub producer_data_set: Vec<ProducerData>,
    /// Heartbeat v2: subscriptions omitted because unchanged.
    pub without_sub: bool,
}

json_body!(HeartbeatData, "HeartbeatData");

/// A producer group in a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// The producer group.
    pub group_name: String,
}

/// A consumer group in a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// Where a queue without a stored offset starts.
    pub consume_from_where: ConsumeFromWhere,
    /// Push, pull or pop.
    pub consume_type: ConsumeType,
    /// The consumer group.
    pub group_name: String,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// The group's subscriptions (a set in Java).
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit (cell) mode; `false` normally.
    pub unit_mode: bool,
}

/// How a consumer gets messages (Java `ConsumeType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsumeType {
    /// Pull and lite-pull consumers.
    #[serde(rename = "CONSUME_ACTIVELY")]
    ConsumeActively,
    /// Push consumers (the default when missing).
    #[default]
    #[serde(rename = "CONSUME_PASSIVELY")]
    ConsumePassively,
    /// Pop consumers.
    #[serde(rename = "CONSUME_POP")]
    ConsumePop,
}

impl ConsumeType {
    /// The Java enum name, as written in JSON and in the `PROP_CONSUME_TYPE` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsumeActively => "CONSUME_ACTIVELY",
            Self::ConsumePassively => "CONSUME_PASSIVELY",
            Self::ConsumePop => "CONSUME_POP",
        }
    }
}

/// How a group shares messages (Java `MessageModel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageModel {
    /// Every consumer gets every message.
    #[serde(rename = "BROADCASTING")]
    Broadcasting,
    /// Queues are shared out among the group (the default when missing).
    #[default]
    #[serde(rename = "CLUSTERING")]
    Clustering,
}

/// Where a queue without a stored offset starts (Java `ConsumeFromWhere`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsumeFromWhere {
    /// From the end of the queue (the default when missing).
    #[default]
    #[serde(rename = "CONSUME_FROM_LAST_OFFSET")]
    ConsumeFromLastOffset,
    /// Deprecated; behaves as [`Self::ConsumeFromLastOffset`].
    #[serde(rename = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST")]
    ConsumeFromLastOffsetAndFromMinWhenBootFirst,
    /// Deprecated; behaves as [`Self::ConsumeFromLastOffset`].
    #[serde(rename = "CONSUME_FROM_MIN_OFFSET")]
    ConsumeFromMinOffset,
    /// Deprecated; behaves as [`Self::ConsumeFromLastOffset`].
    #[serde(rename = "CONSUME_FROM_MAX_OFFSET")]
    ConsumeFromMaxOffset,
    /// From the start of the queue.
    #[serde(rename = "CONSUME_FROM_FIRST_OFFSET")]
    ConsumeFromFirstOffset,
    /// From the consumer's `consumeTimestamp`.
    #[serde(rename = "CONSUME_FROM_TIMESTAMP")]
    ConsumeFromTimestamp,
}

/// The language of a subscription expression (Java `ExpressionType`, a string there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpressionType {
    /// Tags: `*` or `A || B` (the default when missing).
    #[default]
    #[serde(rename = "TAG")]
    Tag,
    /// An SQL92 expression over message properties.
    #[serde(rename = "SQL92")]
    Sql92,
}

/// A subscription to one topic (Java `SubscriptionData`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// Obsolete class filtering; `false`.
    pub class_filter_mode: bool,
    /// Java `String.hashCode()` of each tag in [`Self::tags_set`].
    pub code_set: BTreeSet<i32>,
    /// `TAG` or `SQL92`.
    pub expression_type: ExpressionType,
    /// The expression: `*`, `A || B`, or SQL92.
    pub sub_string: String,
    /// Version (ms timestamp); Java bumps it when the rebalance result changes.
    pub sub_version: i64,
    /// The tags of a tag expression (empty for `*` and SQL92).
    pub tags_set: BTreeSet<String>,
    /// The subscribed topic.
    pub topic: String,
}

impl SubscriptionData {
    /// A tag subscription, as Java's `FilterAPI.buildSubscriptionData`.
    ///
    /// An empty expression or exactly `*` subscribes to everything: `subString` `*`, no
    /// tags. Otherwise the expression is kept as `subString` and split on `||`; each
    /// part is trimmed, empty parts are skipped, and each tag's
    /// [`java_string_hash`] goes into `codeSet`. As in Java, ` * ` (with spaces) is the
    /// tag `*` (hash 42), not "all", and an expression of only separators yields no
    /// tags (Java throws for `||`, accepts blanks), which matches no message.
    pub fn from_tag_expression(
        topic: impl Into<String>,
        expression: &str,
        sub_version: i64,
    ) -> Self {
        let mut data = Self {
            topic: topic.into(),
            sub_version,
            ..Self::default()
        };
        if expression.is_empty() || expression == SUB_ALL {
            data.sub_string = SUB_ALL.to_owned();
            return data;
        }
        data.sub_string = expression.to_owned();
        for tag in expression
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            data.code_set.insert(java_string_hash(tag));
            data.tags_set.insert(tag.to_owned());
        }
        data
    }

    /// An SQL92 subscription: the expression as `subString`, no tags.
    pub fn from_sql92(topic: impl Into<String>, expression: &str, sub_version: i64) -> Self {
        Self {
            topic: topic.into(),
            sub_string: expression.to_owned(),
            sub_version,
            expression_type: ExpressionType::Sql92,
            ..Self::default()
        }
    }

    /// Whether this subscription takes every message of the topic (`*` tag expression).
    pub fn is_all(&self) -> bool {
        self.expression_type == ExpressionType::Tag && self.sub_string == SUB_ALL
    }
}

/// The body of CHECK_CLIENT_CONFIG, sent at consumer start for non-TAG subscriptions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckClientRequestBody {
    /// The client id.
    pub client_id: String,
    /// The consumer group.
    pub group: String,
    /// The v1 namespace, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The subscription to check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data: Option<SubscriptionData>,
}

json_body!(CheckClientRequestBody, "CheckClientRequestBody");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = r#"{"clientID":"10.0.0.5@12345#93284123","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
  "consumeType":"CONSUME_PASSIVELY","groupName":"g","messageModel":"CLUSTERING","unitMode":false,
  "subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG",
   "subString":"TagA","subVersion":1732500000000,"tagsSet":["TagA"],"topic":"T"},
   {"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1732500000000,"tagsSet":[],"topic":"%RETRY%g"}]}],
 "heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],"withoutSub":false}"#;

    #[test]
    fn java_hash() {
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("*"), 42);
        assert_eq!(java_string_hash(""), 0);
        // Wraps like Java int arithmetic: "polygenelubricants".hashCode() == i32::MIN.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // UTF-16 code units: U+1F600 is the surrogate pair D83D DE00.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn decodes_java_example() {
        let hb = HeartbeatData::decode(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(hb.client_id, "10.0.0.5@12345#93284123");
        assert_eq!(hb.producer_data_set[0].group_name, "CLIENT_INNER_PRODUCER");
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(
            c.consume_from_where,
            ConsumeFromWhere::ConsumeFromLastOffset
        );
        assert_eq!(
            c.subscription_data_set[0],
            SubscriptionData::from_tag_expression("T", "TagA", 1_732_500_000_000)
        );
        assert_eq!(
            c.subscription_data_set[1],
            SubscriptionData::from_tag_expression("%RETRY%g", "*", 1_732_500_000_000)
        );
        assert!(c.subscription_data_set[1].is_all());
    }

    #[test]
    fn encodes_like_fastjson() {
        let hb = HeartbeatData {
            client_id: "c".into(),
            consumer_data_set: vec![ConsumerData {
                consume_from_where: ConsumeFromWhere::ConsumeFromLastOffsetAndFromMinWhenBootFirst,
                consume_type: ConsumeType::ConsumeActively,
                group_name: "g".into(),
                message_model: MessageModel::Broadcasting,
                subscription_data_set: vec![SubscriptionData::from_tag_expression(
                    "T", "b || a", 5,
                )],
                unit_mode: false,
            }],
            heartbeat_fingerprint: 0,
            producer_data_set: vec![],
            without_sub: false,
        };
        assert_eq!(
            String::from_utf8(hb.encode()).unwrap(),
            r#"{"clientID":"c","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST","consumeType":"CONSUME_ACTIVELY","groupName":"g","messageModel":"BROADCASTING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[97,98],"expressionType":"TAG","subString":"b || a","subVersion":5,"tagsSet":["a","b"],"topic":"T"}],"unitMode":false}],"heartbeatFingerprint":0,"producerDataSet":[],"withoutSub":false}"#
        );
    }

    #[test]
    fn consume_type_names() {
        for t in [
            ConsumeType::ConsumeActively,
            ConsumeType::ConsumePassively,
            ConsumeType::ConsumePop,
        ] {
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
    }

    #[test]
    fn tag_expressions() {
        let all = SubscriptionData::from_tag_expression("T", "", 1);
        assert_eq!((all.sub_string.as_str(), all.tags_set.len()), ("*", 0));
        let s = SubscriptionData::from_tag_expression("T", " TagA ||TagB|| ||TagA", 1);
        assert_eq!(s.sub_string, " TagA ||TagB|| ||TagA");
        assert_eq!(s.tags_set, ["TagA".to_owned(), "TagB".to_owned()].into());
        assert_eq!(s.code_set, [2_598_919, java_string_hash("TagB")].into());
        let star = SubscriptionData::from_tag_expression("T", " * ", 1);
        assert_eq!(star.code_set, [42].into());
        assert!(!star.is_all());
        let sql = SubscriptionData::from_sql92("T", "a > 1", 1);
        assert_eq!(
            String::from_utf8(
                CheckClientRequestBody {
                    client_id: "c".into(),
                    group: "g".into(),
                    namespace: None,
                    subscription_data: Some(sql),
                }
                .encode()
            )
            .unwrap(),
            r#"{"clientId":"c","group":"g","subscriptionData":{"classFilterMode":false,"codeSet":[],"expressionType":"SQL92","subString":"a > 1","subVersion":1,"tagsSet":[],"topic":"T"}}"#
        );
    }

    #[test]
    fn check_client_decodes_java_form() {
        let body = br#"{"clientId":"c","group":"g","namespace":"ns","subscriptionData":{"expressionType":"SQL92","subString":"a IS NOT NULL","topic":"T"}}"#;
        let b = CheckClientRequestBody::decode(body).unwrap();
        assert_eq!(b.namespace.as_deref(), Some("ns"));
        let sub = b.subscription_data.unwrap();
        assert_eq!(sub.expression_type, ExpressionType::Sql92);
        assert_eq!(sub.sub_version, 0);
    }

    #[test]
    fn bad_inputs() {
        let deep = "[".repeat(10_000);
        let cases: Vec<&[u8]> = vec![
            &EXAMPLE.as_bytes()[..100],
            b"{\"clientID\":\"\xc3\x28\"}",
            deep.as_bytes(),
            br#"{"clientID":12}"#,
            br#"{"consumerDataSet":[{"consumeType":"CONSUME_SOMEHOW"}]}"#,
            br#"{"consumerDataSet":[{"subscriptionDataSet":[{"codeSet":["a"]}]}]}"#,
            br#"{"consumerDataSet":[{"subscriptionDataSet":[{"expressionType":"BNF"}]}]}"#,
            br#"{"heartbeatFingerprint":1e3}"#,
        ];
        for case in cases {
            assert!(
                HeartbeatData::decode(case).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    fn subscription() -> impl Strategy<Value = SubscriptionData> {
        (
            any::<bool>(),
            "[a-zA-Z0-9%_-]{1,10}",
            "[a-zA-Z *|]{0,16}",
            any::<i64>(),
            any::<bool>(),
        )
            .prop_map(|(class_filter_mode, topic, expr, version, sql)| {
                let mut s = if sql {
                    SubscriptionData::from_sql92(topic, &expr, version)
                } else {
                    SubscriptionData::from_tag_expression(topic, &expr, version)
                };
                s.class_filter_mode = class_filter_mode;
                s
            })
    }

    fn consumer() -> impl Strategy<Value = ConsumerData> {
        (
            prop::sample::select(vec![
                ConsumeFromWhere::ConsumeFromLastOffset,
                ConsumeFromWhere::ConsumeFromLastOffsetAndFromMinWhenBootFirst,
                ConsumeFromWhere::ConsumeFromMinOffset,
                ConsumeFromWhere::ConsumeFromMaxOffset,
                ConsumeFromWhere::ConsumeFromFirstOffset,
                ConsumeFromWhere::ConsumeFromTimestamp,
            ]),
            prop::sample::select(vec![
                ConsumeType::ConsumeActively,
                ConsumeType::ConsumePassively,
                ConsumeType::ConsumePop,
            ]),
            "[a-zA-Z0-9%_-]{1,10}",
            any::<bool>(),
            prop::collection::vec(subscription(), 0..4),
            any::<bool>(),
        )
            .prop_map(
                |(cfw, ct, group_name, broadcast, subs, unit_mode)| ConsumerData {
                    consume_from_where: cfw,
                    consume_type: ct,
                    group_name,
                    message_model: if broadcast {
                        MessageModel::Broadcasting
                    } else {
                        MessageModel::Clustering
                    },
                    subscription_data_set: subs,
                    unit_mode,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(
            client_id in "\\PC{0,20}",
            consumers in prop::collection::vec(consumer(), 0..3),
            fingerprint in any::<i32>(),
            producers in prop::collection::vec("[a-zA-Z0-9_-]{1,10}", 0..3),
            without_sub in any::<bool>(),
        ) {
            let hb = HeartbeatData {
                client_id,
                consumer_data_set: consumers,
                heartbeat_fingerprint: fingerprint,
                producer_data_set: producers.into_iter().map(|group_name| ProducerData { group_name }).collect(),
                without_sub,
            };
            prop_assert_eq!(HeartbeatData::decode(&hb.encode()).unwrap(), hb);
        }

        #[test]
        fn java_hash_matches_definition(s in "\\PC{0,20}") {
            let mut h: i64 = 0;
            for c in s.encode_utf16() {
                h = (h * 31 + i64::from(c)) as i32 as i64;
            }
            prop_assert_eq!(java_string_hash(&s), h as i32);
        }
    }
}
