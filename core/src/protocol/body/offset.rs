//! Bodies carrying per-queue offsets as `Map<MessageQueue, Long>` (raw object keys).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{decode_json, queue_keys, BodyError, ObjectWriter};
use crate::protocol::MessageQueue;

/// The body of RESET_CONSUMER_CLIENT_OFFSET (broker → client): the offsets to reset
/// the group's queues to. Java writes the map with raw object keys:
/// `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:42}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetOffsetBody {
    /// New offset per queue.
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

const RESET_OFFSET: &str = "ResetOffsetBody";

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawResetOffset {
    offset_table: BTreeMap<String, i64>,
}

impl ResetOffsetBody {
    /// Decodes the body as Java writes it (raw object keys, or string keys).
    pub fn decode(body: &[u8]) -> Result<Self, BodyError> {
        let raw: RawResetOffset = decode_json(RESET_OFFSET, body)?;
        Ok(Self {
            offset_table: queue_keys(RESET_OFFSET, raw.offset_table)?,
        })
    }

    /// Encodes the body as fastjson would, with raw object keys.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = ObjectWriter::new();
        w.queue_map("offsetTable", &self.offset_table);
        w.finish()
    }
}

/// The body answering GET_CONSUMER_STATUS_FROM_CLIENT (client → broker, deprecated in
/// Java): `{"consumerTable":{},"messageQueueTable":{{MQ}:offset,…}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetConsumerStatusBody {
    /// Per client id, offsets per queue (Java fills it only when aggregating).
    pub consumer_table: BTreeMap<String, BTreeMap<MessageQueue, i64>>,
    /// This client's consumer offset per queue.
    pub message_queue_table: BTreeMap<MessageQueue, i64>,
}

const CONSUMER_STATUS: &str = "GetConsumerStatusBody";

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawConsumerStatus {
    consumer_table: BTreeMap<String, BTreeMap<String, i64>>,
    message_queue_table: BTreeMap<String, i64>,
}

impl GetConsumerStatusBody {
    /// Decodes the body as Java writes it (raw object keys, or string keys).
    pub fn decode(body: &[u8]) -> Result<Self, BodyError> {
        let raw: RawConsumerStatus = decode_json(CONSUMER_STATUS, body)?;
        let consumer_table = raw
            .consumer_table
            .into_iter()
            .map(|(client, table)| Ok((client, queue_keys(CONSUMER_STATUS, table)?)))
            .collect::<Result<_, BodyError>>()?;
        Ok(Self {
            consumer_table,
            message_queue_table: queue_keys(CONSUMER_STATUS, raw.message_queue_table)?,
        })
    }

    /// Encodes the body as fastjson would, with raw object keys.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = ObjectWriter::new();
        w.key("consumerTable");
        let mut inner = ObjectWriter::new();
        for (client, table) in &self.consumer_table {
            inner.key(client);
            inner.queue_map_value(table);
        }
        w.raw_value(&inner.finish());
        w.queue_map("messageQueueTable", &self.message_queue_table);
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::arb_queue;
    use proptest::prelude::*;

    const RESET: &str = r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:42,{"brokerName":"broker-a","queueId":1,"topic":"T"}:-1}}"#;

    #[test]
    fn reset_offset_java_example() {
        let body = ResetOffsetBody::decode(RESET.as_bytes()).unwrap();
        assert_eq!(
            body.offset_table,
            [
                (MessageQueue::new("T", "broker-a", 0), 42),
                (MessageQueue::new("T", "broker-a", 1), -1)
            ]
            .into()
        );
        assert_eq!(body.encode(), RESET.as_bytes());
        // The WriteNonStringKeyAsString form reads the same.
        let quoted = r#"{"offsetTable":{"{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"T\"}":42,"{\"brokerName\":\"broker-a\",\"queueId\":1,\"topic\":\"T\"}":-1}}"#;
        assert_eq!(ResetOffsetBody::decode(quoted.as_bytes()).unwrap(), body);
    }

    #[test]
    fn consumer_status_java_example() {
        let text = r#"{"consumerTable":{},"messageQueueTable":{{"brokerName":"b","queueId":3,"topic":"T"}:7}}"#;
        let body = GetConsumerStatusBody::decode(text.as_bytes()).unwrap();
        assert_eq!(
            body.message_queue_table,
            [(MessageQueue::new("T", "b", 3), 7)].into()
        );
        assert_eq!(body.encode(), text.as_bytes());
    }

    #[test]
    fn bad_inputs() {
        let deep = "[".repeat(10_000);
        let cases: Vec<&[u8]> = vec![
            &RESET.as_bytes()[..RESET.len() - 3],
            b"{\"offsetTable\":{\"\xff\":1}}",
            deep.as_bytes(),
            br#"{"offsetTable":{0:42}}"#,
            br#"{"offsetTable":{"T":42}}"#,
            br#"{"offsetTable":{{"brokerName":"b","topic":"T"}:42}}"#,
            br#"{"offsetTable":{{"brokerName":1,"queueId":0,"topic":"T"}:42}}"#,
            br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:"42"}}"#,
            br#"{"offsetTable":[]}"#,
        ];
        for case in cases {
            assert!(
                ResetOffsetBody::decode(case).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        assert!(matches!(
            ResetOffsetBody::decode(br#"{"offsetTable":{0:42}}"#),
            Err(BodyError::BadQueueKey { key, .. }) if key == "0"
        ));
        assert!(matches!(
            GetConsumerStatusBody::decode(br#"{"consumerTable":{"c":{"x":1}}}"#),
            Err(BodyError::BadQueueKey { .. })
        ));
        for case in [
            &br#"{"consumerTable":[]}"#[..],
            br#"{"messageQueueTable":{{"topic":"T"}:1}}"#,
            br#"{"messageQueueTable":{{"brokerName":"b","queueId":0,"topic":"T"}:1.5}}"#,
        ] {
            assert!(
                GetConsumerStatusBody::decode(case).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    proptest! {
        #[test]
        fn reset_round_trip(table in prop::collection::btree_map(arb_queue(), any::<i64>(), 0..6)) {
            let body = ResetOffsetBody { offset_table: table };
            prop_assert_eq!(ResetOffsetBody::decode(&body.encode()).unwrap(), body);
        }

        #[test]
        fn consumer_status_round_trip(
            consumer_table in prop::collection::btree_map(
                "\\PC{0,8}",
                prop::collection::btree_map(arb_queue(), any::<i64>(), 0..3),
                0..3,
            ),
            message_queue_table in prop::collection::btree_map(arb_queue(), any::<i64>(), 0..6),
        ) {
            let body = GetConsumerStatusBody { consumer_table, message_queue_table };
            prop_assert_eq!(GetConsumerStatusBody::decode(&body.encode()).unwrap(), body);
        }
    }
}
