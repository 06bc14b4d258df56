//! `ConsumerRunningInfo` (GET_CONSUMER_RUNNING_INFO) and `ConsumeMessageDirectlyResult`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    decode_json, json_body, null_as_default, queue_keys, BodyError, ObjectWriter, SubscriptionData,
};
use crate::protocol::MessageQueue;

/// Property naming the [`ConsumeType`](super::ConsumeType) (`CONSUME_PASSIVELY`, …);
/// Java's `mqadmin` fails with a NullPointerException when it is missing.
pub const PROP_CONSUME_TYPE: &str = "PROP_CONSUME_TYPE";
/// Property: consumer start time in ms, as a decimal string.
pub const PROP_CONSUMER_START_TIMESTAMP: &str = "PROP_CONSUMER_START_TIMESTAMP";
/// Property: `true`/`false`, whether the push consumer is orderly.
pub const PROP_CONSUME_ORDERLY: &str = "PROP_CONSUMEORDERLY";
/// Property: the NameServer addresses, `addr1;addr2;`.
pub const PROP_NAMESERVER_ADDR: &str = "PROP_NAMESERVER_ADDR";
/// Property: the consume thread pool's core size.
pub const PROP_THREADPOOL_CORE_SIZE: &str = "PROP_THREADPOOL_CORE_SIZE";
/// Property: the client version name, e.g. `V5_3_3`.
pub const PROP_CLIENT_VERSION: &str = "PROP_CLIENT_VERSION";

/// The answer to GET_CONSUMER_RUNNING_INFO: what `mqadmin consumerStatus` shows.
///
/// The queue tables are written with raw object keys (`{{"brokerName":…}:{…}}`), as
/// Java's `TreeMap<MessageQueue, _>` fields are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConsumerRunningInfo {
    /// Thread dump, when the request asked for one.
    pub jstack: Option<String>,
    /// Pop consumption state per queue.
    pub mq_pop_table: BTreeMap<MessageQueue, PopProcessQueueInfo>,
    /// Push/pull consumption state per queue.
    pub mq_table: BTreeMap<MessageQueue, ProcessQueueInfo>,
    /// Consumer properties: the `PROP_*` keys plus the consumer's configuration.
    pub properties: BTreeMap<String, String>,
    /// Per-topic statistics.
    pub status_table: BTreeMap<String, ConsumeStatus>,
    /// Subscriptions (Java keeps them sorted by `topic@subString`).
    pub subscription_set: Vec<SubscriptionData>,
    /// Free-form user information.
    pub user_consumer_info: BTreeMap<String, String>,
}

const RUNNING_INFO: &str = "ConsumerRunningInfo";

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawRunningInfo {
    jstack: Option<String>,
    mq_pop_table: BTreeMap<String, PopProcessQueueInfo>,
    mq_table: BTreeMap<String, ProcessQueueInfo>,
    properties: BTreeMap<String, String>,
    status_table: BTreeMap<String, ConsumeStatus>,
    subscription_set: Vec<SubscriptionData>,
    user_consumer_info: BTreeMap<String, String>,
}

impl ConsumerRunningInfo {
    /// Decodes the body as Java writes it (raw object keys, or string keys).
    pub fn decode(body: &[u8]) -> Result<Self, BodyError> {
        let raw: RawRunningInfo = decode_json(RUNNING_INFO, body)?;
        Ok(Self {
            jstack: raw.jstack,
            mq_pop_table: queue_keys(RUNNING_INFO, raw.mq_pop_table)?,
            mq_table: queue_keys(RUNNING_INFO, raw.mq_table)?,
            properties: raw.properties,
            status_table: raw.status_table,
            subscription_set: raw.subscription_set,
            user_consumer_info: raw.user_consumer_info,
        })
    }

    /// Encodes the body as fastjson would: keys sorted, raw object keys for the queue
    /// tables, `jstack` omitted when `None`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = ObjectWriter::new();
        if let Some(jstack) = &self.jstack {
            w.field("jstack", jstack);
        }
        w.queue_map("mqPopTable", &self.mq_pop_table);
        w.queue_map("mqTable", &self.mq_table);
        w.field("properties", &self.properties);
        w.field("statusTable", &self.status_table);
        w.field("subscriptionSet", &self.subscription_set);
        w.field("userConsumerInfo", &self.user_consumer_info);
        w.finish()
    }
}

/// Consumption state of one push/pull queue (Java `ProcessQueueInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessQueueInfo {
    /// Messages cached for consumption.
    pub cached_msg_count: i32,
    /// Highest cached offset.
    pub cached_msg_max_offset: i64,
    /// Lowest cached offset.
    pub cached_msg_min_offset: i64,
    /// Size of the cached messages in MiB.
    #[serde(rename = "cachedMsgSizeInMiB")]
    pub cached_msg_size_in_mib: i32,
    /// The consumer offset to commit.
    pub commit_offset: i64,
    /// Whether the queue was dropped (Java spells the key `droped`; `dropped` is
    /// accepted on decode).
    #[serde(rename = "droped", alias = "dropped")]
    pub dropped: bool,
    /// Last consumption time (ms).
    pub last_consume_timestamp: i64,
    /// Last lock time (ms).
    pub last_lock_timestamp: i64,
    /// Last pull time (ms).
    pub last_pull_timestamp: i64,
    /// Whether the queue is locked (orderly).
    pub locked: bool,
    /// Messages taken for orderly consumption and not yet committed.
    pub transaction_msg_count: i32,
    /// Highest offset taken for orderly consumption.
    pub transaction_msg_max_offset: i64,
    /// Lowest offset taken for orderly consumption.
    pub transaction_msg_min_offset: i64,
    /// Unlock attempts while consumption was running.
    pub try_unlock_times: i64,
}

/// Consumption state of one pop queue (Java `PopProcessQueueInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PopProcessQueueInfo {
    /// Whether the queue was dropped (Java key `droped`; `dropped` accepted on decode).
    #[serde(rename = "droped", alias = "dropped")]
    pub dropped: bool,
    /// Last pop time (ms).
    pub last_pop_timestamp: i64,
    /// Popped messages not yet acknowledged.
    pub wait_ack_count: i32,
}

/// Per-topic consumption statistics (Java `ConsumeStatus`).
///
/// fastjson writes non-finite doubles as `null`; those read as 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumeStatus {
    /// Messages that failed in the last hour.
    #[serde(rename = "consumeFailedMsgs", deserialize_with = "null_as_default")]
    pub consume_failed_msgs: i64,
    /// Failed consumptions per second.
    #[serde(rename = "consumeFailedTPS", deserialize_with = "null_as_default")]
    pub consume_failed_tps: f64,
    /// Successful consumptions per second.
    #[serde(rename = "consumeOKTPS", deserialize_with = "null_as_default")]
    pub consume_ok_tps: f64,
    /// Mean consumption time (ms).
    #[serde(rename = "consumeRT", deserialize_with = "null_as_default")]
    pub consume_rt: f64,
    /// Mean pull round trip (ms).
    #[serde(rename = "pullRT", deserialize_with = "null_as_default")]
    pub pull_rt: f64,
    /// Pulled messages per second.
    #[serde(rename = "pullTPS", deserialize_with = "null_as_default")]
    pub pull_tps: f64,
}

/// Outcome of CONSUME_MESSAGE_DIRECTLY (Java `CMResult`), written by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmResult {
    /// Consumed.
    #[serde(rename = "CR_SUCCESS")]
    CrSuccess,
    /// The listener asked to retry later.
    #[serde(rename = "CR_LATER")]
    CrLater,
    /// Orderly listener: rollback.
    #[serde(rename = "CR_ROLLBACK")]
    CrRollback,
    /// Orderly listener: commit.
    #[serde(rename = "CR_COMMIT")]
    CrCommit,
    /// The listener threw (panicked).
    #[serde(rename = "CR_THROW_EXCEPTION")]
    CrThrowException,
    /// The listener returned nothing.
    #[serde(rename = "CR_RETURN_NULL")]
    CrReturnNull,
}

/// The answer to CONSUME_MESSAGE_DIRECTLY: how the listener handled the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeMessageDirectlyResult {
    /// Whether the message would be auto-committed (orderly; Java default `true`).
    pub auto_commit: bool,
    /// The outcome (Java writes nothing when it is null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consume_result: Option<CmResult>,
    /// Whether the consumer is orderly.
    pub order: bool,
    /// Free text, e.g. the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// Time spent in the listener (ms; Java's spelling `spentTimeMills`).
    pub spent_time_mills: i64,
}

impl Default for ConsumeMessageDirectlyResult {
    fn default() -> Self {
        Self {
            auto_commit: true,
            consume_result: None,
            order: false,
            remark: None,
            spent_time_mills: 0,
        }
    }
}

json_body!(ConsumeMessageDirectlyResult, "ConsumeMessageDirectlyResult");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::{arb_queue, ConsumeType};
    use proptest::prelude::*;

    const JAVA: &str = r#"{"jstack":"main thread","mqPopTable":{},"mqTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"cachedMsgCount":3,"cachedMsgMaxOffset":12,"cachedMsgMinOffset":10,"cachedMsgSizeInMiB":0,"commitOffset":10,"droped":false,"lastConsumeTimestamp":1732500000000,"lastLockTimestamp":0,"lastPullTimestamp":1732500000001,"locked":true,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0}},"properties":{"PROP_CONSUMEORDERLY":"false","PROP_CONSUMER_START_TIMESTAMP":"1732500000000","PROP_CONSUME_TYPE":"CONSUME_PASSIVELY","consumerGroup":"g"},"statusTable":{"T":{"consumeFailedMsgs":0,"consumeFailedTPS":0.0,"consumeOKTPS":1.5,"consumeRT":2.25,"pullRT":null,"pullTPS":3.0}},"subscriptionSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1,"tagsSet":[],"topic":"T"}],"userConsumerInfo":{}}"#;

    #[test]
    fn decodes_java_form() {
        let info = ConsumerRunningInfo::decode(JAVA.as_bytes()).unwrap();
        assert_eq!(info.jstack.as_deref(), Some("main thread"));
        let pq = &info.mq_table[&MessageQueue::new("T", "broker-a", 1)];
        assert_eq!(
            (pq.cached_msg_count, pq.commit_offset, pq.locked),
            (3, 10, true)
        );
        assert_eq!(info.properties[PROP_CONSUME_TYPE], "CONSUME_PASSIVELY");
        assert_eq!(info.status_table["T"].consume_rt, 2.25);
        assert_eq!(info.status_table["T"].pull_rt, 0.0);
        assert_eq!(info.subscription_set.len(), 1);
    }

    #[test]
    fn encodes_java_form() {
        let mut info = ConsumerRunningInfo::decode(JAVA.as_bytes()).unwrap();
        info.status_table.get_mut("T").unwrap().pull_rt = f64::NAN;
        // NaN is written as null, as fastjson does; everything else is byte-identical.
        assert_eq!(String::from_utf8(info.encode()).unwrap(), JAVA);
        let plain = ConsumerRunningInfo {
            properties: [(
                PROP_CONSUME_TYPE.to_owned(),
                ConsumeType::ConsumePop.as_str().to_owned(),
            )]
            .into(),
            ..ConsumerRunningInfo::default()
        };
        assert_eq!(
            String::from_utf8(plain.encode()).unwrap(),
            r#"{"mqPopTable":{},"mqTable":{},"properties":{"PROP_CONSUME_TYPE":"CONSUME_POP"},"statusTable":{},"subscriptionSet":[],"userConsumerInfo":{}}"#
        );
    }

    #[test]
    fn pop_table_and_dropped_alias() {
        let text = r#"{"mqPopTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"dropped":true,"lastPopTimestamp":5,"waitAckCount":2}}}"#;
        let info = ConsumerRunningInfo::decode(text.as_bytes()).unwrap();
        let pop = &info.mq_pop_table[&MessageQueue::new("T", "b", 0)];
        assert_eq!(
            pop,
            &PopProcessQueueInfo {
                dropped: true,
                last_pop_timestamp: 5,
                wait_ack_count: 2
            }
        );
        let out = String::from_utf8(info.encode()).unwrap();
        assert!(out.contains(r#"{{"brokerName":"b","queueId":0,"topic":"T"}:{"droped":true,"lastPopTimestamp":5,"waitAckCount":2}}"#));
    }

    #[test]
    fn direct_result_java_example() {
        let text = r#"{"autoCommit":true,"consumeResult":"CR_SUCCESS","order":false,"remark":"…","spentTimeMills":12}"#;
        let r = ConsumeMessageDirectlyResult::decode(text.as_bytes()).unwrap();
        assert_eq!(r.consume_result, Some(CmResult::CrSuccess));
        assert_eq!(r.remark.as_deref(), Some("…"));
        assert_eq!(r.encode(), text.as_bytes());
        let missing = ConsumeMessageDirectlyResult::decode(b"{}").unwrap();
        assert!(missing.auto_commit);
        for (result, name) in [
            (CmResult::CrLater, "CR_LATER"),
            (CmResult::CrRollback, "CR_ROLLBACK"),
            (CmResult::CrCommit, "CR_COMMIT"),
            (CmResult::CrThrowException, "CR_THROW_EXCEPTION"),
            (CmResult::CrReturnNull, "CR_RETURN_NULL"),
        ] {
            assert_eq!(
                serde_json::to_string(&result).unwrap(),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn bad_inputs() {
        let deep = "{\"a\":".repeat(10_000);
        let cases: Vec<&[u8]> = vec![
            &JAVA.as_bytes()[..JAVA.len() - 1],
            b"{\"jstack\":\"\xed\xa0\x80\"}",
            deep.as_bytes(),
            br#"{"mqTable":{0:{}}}"#,
            br#"{"mqTable":{{"topic":"T"}:{}}}"#,
            br#"{"mqTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"locked":"yes"}}}"#,
            br#"{"properties":{"a":1}}"#,
            br#"{"statusTable":{"T":{"pullRT":"fast"}}}"#,
            br#"{"subscriptionSet":{}}"#,
        ];
        for case in cases {
            assert!(
                ConsumerRunningInfo::decode(case).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        for case in [
            &br#"{"consumeResult":0}"#[..],
            br#"{"consumeResult":"CR_MAYBE"}"#,
            br#"{"spentTimeMills":"1"}"#,
        ] {
            assert!(ConsumeMessageDirectlyResult::decode(case).is_err());
        }
    }

    fn process_queue() -> impl Strategy<Value = ProcessQueueInfo> {
        (
            (
                any::<i32>(),
                any::<i64>(),
                any::<i64>(),
                any::<i32>(),
                any::<i64>(),
                any::<bool>(),
                any::<i64>(),
            ),
            (
                any::<i64>(),
                any::<i64>(),
                any::<bool>(),
                any::<i32>(),
                any::<i64>(),
                any::<i64>(),
                any::<i64>(),
            ),
        )
            .prop_map(
                |((a, b, c, d, e, f, g), (h, i, j, k, l, m, n))| ProcessQueueInfo {
                    cached_msg_count: a,
                    cached_msg_max_offset: b,
                    cached_msg_min_offset: c,
                    cached_msg_size_in_mib: d,
                    commit_offset: e,
                    dropped: f,
                    last_consume_timestamp: g,
                    last_lock_timestamp: h,
                    last_pull_timestamp: i,
                    locked: j,
                    transaction_msg_count: k,
                    transaction_msg_max_offset: l,
                    transaction_msg_min_offset: m,
                    try_unlock_times: n,
                },
            )
    }

    fn rate() -> impl Strategy<Value = f64> {
        (0u32..10_000_000).prop_map(|n| f64::from(n) / 100.0)
    }

    fn status() -> impl Strategy<Value = ConsumeStatus> {
        (any::<i64>(), rate(), rate(), rate(), rate(), rate()).prop_map(|(a, b, c, d, e, f)| {
            ConsumeStatus {
                consume_failed_msgs: a,
                consume_failed_tps: b,
                consume_ok_tps: c,
                consume_rt: d,
                pull_rt: e,
                pull_tps: f,
            }
        })
    }

    proptest! {
        #[test]
        fn round_trip(
            jstack in prop::option::of("\\PC{0,40}"),
            mq_pop_table in prop::collection::btree_map(
                arb_queue(),
                (any::<bool>(), any::<i64>(), any::<i32>()).prop_map(|(dropped, last_pop_timestamp, wait_ack_count)| {
                    PopProcessQueueInfo { dropped, last_pop_timestamp, wait_ack_count }
                }),
                0..3,
            ),
            mq_table in prop::collection::btree_map(arb_queue(), process_queue(), 0..4),
            properties in prop::collection::btree_map("\\PC{0,10}", "\\PC{0,10}", 0..4),
            status_table in prop::collection::btree_map("\\PC{0,10}", status(), 0..3),
            topics in prop::collection::vec(("[a-zA-Z%_-]{1,8}", "[a-zA-Z |*]{0,10}", any::<i64>()), 0..3),
            user_consumer_info in prop::collection::btree_map("\\PC{0,10}", "\\PC{0,10}", 0..3),
        ) {
            let info = ConsumerRunningInfo {
                jstack,
                mq_pop_table,
                mq_table,
                properties,
                status_table,
                subscription_set: topics
                    .into_iter()
                    .map(|(t, e, v)| SubscriptionData::from_tag_expression(t, &e, v))
                    .collect(),
                user_consumer_info,
            };
            prop_assert_eq!(ConsumerRunningInfo::decode(&info.encode()).unwrap(), info);
        }

        #[test]
        fn direct_result_round_trip(
            auto_commit in any::<bool>(),
            result in prop::option::of(prop::sample::select(vec![
                CmResult::CrSuccess, CmResult::CrLater, CmResult::CrRollback,
                CmResult::CrCommit, CmResult::CrThrowException, CmResult::CrReturnNull,
            ])),
            order in any::<bool>(),
            remark in prop::option::of("\\PC{0,20}"),
            spent in any::<i64>(),
        ) {
            let r = ConsumeMessageDirectlyResult { auto_commit, consume_result: result, order, remark, spent_time_mills: spent };
            prop_assert_eq!(ConsumeMessageDirectlyResult::decode(&r.encode()).unwrap(), r);
        }
    }
}
