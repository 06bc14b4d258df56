//! `GetConsumerListByGroupResponseBody`: the client ids of a consumer group.

use serde::{Deserialize, Serialize};

use super::json_body;

/// The body answering GET_CONSUMER_LIST_BY_GROUP (Java
/// `GetConsumerListByGroupResponseBody`): `{"consumerIdList":["cid1","cid2"]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerIdList {
    /// Client ids of the group's live consumers, in the broker's order.
    pub consumer_id_list: Vec<String>,
}

json_body!(ConsumerIdList, "GetConsumerListByGroupResponseBody");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_java_example() {
        let body = br#"{"consumerIdList":["cid1","cid2"]}"#;
        let list = ConsumerIdList::decode(body).unwrap();
        assert_eq!(list.consumer_id_list, ["cid1", "cid2"]);
        assert_eq!(list.encode(), body);
        assert_eq!(
            ConsumerIdList::decode(b"{}").unwrap(),
            ConsumerIdList::default()
        );
    }

    #[test]
    fn bad_inputs() {
        let deep = "[".repeat(10_000);
        let cases: Vec<&[u8]> = vec![
            br#"{"consumerIdList":["cid1""#,
            b"{\"consumerIdList\":[\"\xff\"]}",
            deep.as_bytes(),
            br#"{"consumerIdList":[1,2]}"#,
            br#"{"consumerIdList":"cid1"}"#,
            br#"{"consumerIdList":null}"#,
        ];
        for case in cases {
            assert!(
                ConsumerIdList::decode(case).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }
}
