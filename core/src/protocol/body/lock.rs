//! Batch queue lock and unlock bodies (LOCK_BATCH_MQ, UNLOCK_BATCH_MQ).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{json_body, serialize_queue_set};
use crate::protocol::MessageQueue;

/// The body of LOCK_BATCH_MQ: lock `mq_set` for `client_id` in `consumer_group`.
///
/// Also the body of UNLOCK_BATCH_MQ ([`UnlockBatchRequestBody`], same shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    /// The locking client's id.
    pub client_id: String,
    /// The consumer group.
    pub consumer_group: String,
    /// The queues to lock (a set in Java).
    #[serde(serialize_with = "serialize_queue_set")]
    pub mq_set: BTreeSet<MessageQueue>,
    /// Lock only on the receiving broker (no forwarding in 5.x controller mode).
    pub only_this_broker: bool,
}

json_body!(LockBatchRequestBody, "LockBatchRequestBody");

/// The body of UNLOCK_BATCH_MQ (Java `UnlockBatchRequestBody`, same keys as
/// [`LockBatchRequestBody`]).
pub type UnlockBatchRequestBody = LockBatchRequestBody;

/// The answer to LOCK_BATCH_MQ: the queues now locked by the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    /// The requested queues the broker locked for the client.
    #[serde(rename = "lockOKMQSet", serialize_with = "serialize_queue_set")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

json_body!(LockBatchResponseBody, "LockBatchResponseBody");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::arb_queue as queue;
    use proptest::prelude::*;

    #[test]
    fn request_java_example() {
        let body = br#"{"clientId":"c","consumerGroup":"g","mqSet":[{"brokerName":"b","queueId":0,"topic":"T"}],"onlyThisBroker":false}"#;
        let req = LockBatchRequestBody::decode(body).unwrap();
        assert_eq!(req.client_id, "c");
        assert_eq!(req.consumer_group, "g");
        assert_eq!(req.mq_set, [MessageQueue::new("T", "b", 0)].into());
        assert_eq!(req.encode(), body);
    }

    #[test]
    fn response_java_example() {
        let body = br#"{"lockOKMQSet":[{"brokerName":"b","queueId":1,"topic":"T"},{"brokerName":"a","queueId":0,"topic":"T"}]}"#;
        let resp = LockBatchResponseBody::decode(body).unwrap();
        assert_eq!(
            resp.lock_ok_mq_set,
            [
                MessageQueue::new("T", "a", 0),
                MessageQueue::new("T", "b", 1)
            ]
            .into()
        );
        assert_eq!(
            LockBatchResponseBody::decode(b"{}")
                .unwrap()
                .lock_ok_mq_set
                .len(),
            0
        );
    }

    #[test]
    fn bad_inputs() {
        let deep = "{\"lockOKMQSet\":".repeat(5_000);
        let cases: Vec<&[u8]> = vec![
            br#"{"lockOKMQSet":[{"brokerName":"b","queueId":1,"topic":"T"}"#,
            b"{\"lockOKMQSet\":[{\"brokerName\":\"\xc0\"}]}",
            deep.as_bytes(),
            br#"{"lockOKMQSet":[{"brokerName":"b","queueId":"1","topic":"T"}]}"#,
            br#"{"lockOKMQSet":[{"brokerName":"b","topic":"T"}]}"#,
            br#"{"lockOKMQSet":[{"brokerName":"b","queueId":4294967296,"topic":"T"}]}"#,
        ];
        for case in cases {
            assert!(
                LockBatchResponseBody::decode(case).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    proptest! {
        #[test]
        fn request_round_trip(
            client_id in "\\PC{0,16}",
            consumer_group in "\\PC{0,16}",
            mq_set in prop::collection::btree_set(queue(), 0..6),
            only_this_broker in any::<bool>(),
        ) {
            let req = UnlockBatchRequestBody { client_id, consumer_group, mq_set, only_this_broker };
            prop_assert_eq!(LockBatchRequestBody::decode(&req.encode()).unwrap(), req);
        }

        #[test]
        fn response_round_trip(lock_ok_mq_set in prop::collection::btree_set(queue(), 0..6)) {
            let resp = LockBatchResponseBody { lock_ok_mq_set };
            prop_assert_eq!(LockBatchResponseBody::decode(&resp.encode()).unwrap(), resp);
        }
    }
}
