//! `TopicRouteData`, the NameServer's answer to GET_ROUTEINFO_BY_TOPIC.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::json_body;
use crate::protocol::MessageQueue;

/// Queue permission bit: the queue's broker has priority (Java `PermName.PERM_PRIORITY`).
pub const PERM_PRIORITY: i32 = 8;
/// Queue permission bit: consumers may read (Java `PermName.PERM_READ`).
pub const PERM_READ: i32 = 4;
/// Queue permission bit: producers may write (Java `PermName.PERM_WRITE`).
pub const PERM_WRITE: i32 = 2;
/// Queue permission bit: inherited from the default topic (Java `PermName.PERM_INHERIT`).
pub const PERM_INHERIT: i32 = 1;

/// Broker id of a master in [`BrokerData::broker_addrs`] (Java `MixAll.MASTER_ID`).
pub const MASTER_ID: i64 = 0;

/// Most queues [`TopicRouteData::publish_queues`] and
/// [`TopicRouteData::subscribe_queues`] return: a bound on what a route body can make
/// us allocate (real topics have at most a few thousand queues).
pub const MAX_ROUTE_QUEUES: usize = 65_536;

/// A topic's route: which brokers serve it and how many queues each has.
///
/// Decodes both forms the NameServer writes: standard JSON (requests with version
/// ≥ 401 or `acceptStandardJsonOnly`) and fastjson's `{0:"addr"}` broker maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    /// The brokers (master/slave sets) serving the topic.
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers per broker address (obsolete class filtering; usually empty).
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// `brokerName:queueNum;…` when the NameServer has ordered-message config for the
    /// topic; overrides the publish queue list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// The topic's queues on each broker.
    pub queue_datas: Vec<QueueData>,
    /// Static-topic queue mappings, kept as opaque JSON (not interpreted here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

json_body!(TopicRouteData, "TopicRouteData");

/// One broker set (a master and its slaves) of a route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// Broker id → `host:port`; id [`MASTER_ID`] (0) is the master.
    pub broker_addrs: BTreeMap<i64, String>,
    /// Name of the broker set.
    pub broker_name: String,
    /// Cluster the broker belongs to.
    pub cluster: String,
    /// Whether a slave may act as master while the master is down (5.x).
    pub enable_acting_master: bool,
    /// Zone of the broker, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

/// One broker's queues of a topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    /// Name of the broker set holding the queues.
    pub broker_name: String,
    /// Permission bits: [`PERM_READ`], [`PERM_WRITE`], [`PERM_INHERIT`], [`PERM_PRIORITY`].
    pub perm: i32,
    /// Number of queues consumers read (`0..readQueueNums`).
    pub read_queue_nums: i32,
    /// Topic system flags.
    pub topic_sys_flag: i32,
    /// Number of queues producers write (`0..writeQueueNums`).
    pub write_queue_nums: i32,
}

impl QueueData {
    /// Whether consumers may read these queues ([`PERM_READ`] set).
    pub fn is_readable(&self) -> bool {
        self.perm & PERM_READ != 0
    }

    /// Whether producers may write these queues ([`PERM_WRITE`] set).
    pub fn is_writable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }
}

impl BrokerData {
    /// Address of the master (id 0), if the broker set has one.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

impl TopicRouteData {
    /// The broker set named `broker_name`, if the route has it.
    pub fn broker(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
    }

    /// Address of the master of `broker_name`, if the route has one.
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.broker(broker_name).and_then(BrokerData::master_addr)
    }

    /// The queues a producer sends to, in Java's order (`topicRouteData2TopicPublishInfo`).
    ///
    /// With a non-empty `orderTopicConf`: `queueNum` queues per `brokerName:queueNum`
    /// entry, in order (malformed entries are skipped; Java would fail). Otherwise: for
    /// each [`QueueData`] sorted by broker name (stable), if writable and its broker has
    /// a master, queues `0..writeQueueNums`. At most [`MAX_ROUTE_QUEUES`] queues.
    /// Static topics (`topicQueueMappingByBroker`) are not handled.
    pub fn publish_queues(&self, topic: &str) -> Vec<MessageQueue> {
        let mut queues = Vec::new();
        let mut push = |broker: &str, nums: i32| {
            for id in 0..nums {
                if queues.len() >= MAX_ROUTE_QUEUES {
                    return;
                }
                queues.push(MessageQueue::new(topic, broker, id));
            }
        };
        match self.order_topic_conf.as_deref() {
            Some(conf) if !conf.is_empty() => {
                for entry in conf.split(';') {
                    let mut parts = entry.split(':');
                    if let (Some(broker), Some(Ok(nums))) =
                        (parts.next(), parts.next().map(str::parse::<i32>))
                    {
                        push(broker, nums);
                    }
                }
            }
            _ => {
                let mut datas: Vec<&QueueData> = self.queue_datas.iter().collect();
                datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
                for data in datas {
                    let has_master = self
                        .broker(&data.broker_name)
                        .is_some_and(|b| b.broker_addrs.contains_key(&MASTER_ID));
                    if data.is_writable() && has_master {
                        push(&data.broker_name, data.write_queue_nums);
                    }
                }
            }
        }
        queues
    }

    /// The queues consumers rebalance, sorted (`topicRouteData2TopicSubscribeInfo`):
    /// for each readable [`QueueData`], queues `0..readQueueNums`. At most
    /// [`MAX_ROUTE_QUEUES`] queues. Static topics are not handled.
    pub fn subscribe_queues(&self, topic: &str) -> Vec<MessageQueue> {
        let mut queues = BTreeSet::new();
        for data in self.queue_datas.iter().filter(|d| d.is_readable()) {
            for id in 0..data.read_queue_nums {
                if queues.len() >= MAX_ROUTE_QUEUES {
                    break;
                }
                queues.insert(MessageQueue::new(topic, &*data.broker_name, id));
            }
        }
        queues.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::BodyError;
    use crate::protocol::fastjson::FastjsonError;
    use proptest::prelude::*;

    const STANDARD: &str = r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"broker-a",
  "cluster":"DefaultCluster","enableActingMaster":false,"zoneName":"z1"}],
 "filterServerTable":{},"orderTopicConf":"broker-a:4",
 "queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}],
 "topicQueueMappingByBroker":{"broker-a":{"bname":"broker-a","currIdMap":{"0":0},"epoch":1,"totalQueues":4}}}"#;

    const FASTJSON: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false},{"brokerAddrs":{1:"10.0.0.4:10911"},"brokerName":"broker-b","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-b","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2},{"brokerName":"broker-a","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":3},{"brokerName":"broker-c","perm":2,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8}],"topicQueueMappingByBroker":{"broker-a":{"currIdMap":{0:0,1:1}}}}"#;

    #[test]
    fn decodes_standard_form() {
        let route = TopicRouteData::decode(STANDARD.as_bytes()).unwrap();
        assert_eq!(route.broker_datas.len(), 1);
        let broker = &route.broker_datas[0];
        assert_eq!(broker.broker_name, "broker-a");
        assert_eq!(broker.cluster, "DefaultCluster");
        assert_eq!(broker.zone_name.as_deref(), Some("z1"));
        assert_eq!(
            broker.broker_addrs.get(&1).map(String::as_str),
            Some("10.0.0.2:10911")
        );
        assert_eq!(route.master_addr("broker-a"), Some("10.0.0.1:10911"));
        assert_eq!(route.master_addr("nope"), None);
        assert_eq!(route.order_topic_conf.as_deref(), Some("broker-a:4"));
        assert_eq!(
            route.queue_datas,
            vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4,
            }]
        );
        assert!(route.topic_queue_mapping_by_broker.is_some());
        // orderTopicConf drives the publish list.
        let publish = route.publish_queues("T");
        assert_eq!(publish.len(), 4);
        assert_eq!(publish[3], MessageQueue::new("T", "broker-a", 3));
    }

    #[test]
    fn decodes_fastjson_form() {
        let route = TopicRouteData::decode(FASTJSON.as_bytes()).unwrap();
        assert_eq!(route.master_addr("broker-a"), Some("10.0.0.1:10911"));
        assert_eq!(route.master_addr("broker-b"), None);
        assert_eq!(
            route.broker_datas[1]
                .broker_addrs
                .get(&1)
                .map(String::as_str),
            Some("10.0.0.4:10911")
        );
        let mapping = route.topic_queue_mapping_by_broker.as_ref().unwrap();
        assert_eq!(mapping["broker-a"]["currIdMap"]["1"], 1);
    }

    #[test]
    fn publish_and_subscribe_queues() {
        let route = TopicRouteData::decode(FASTJSON.as_bytes()).unwrap();
        // broker-a sorted first; broker-b has no master; broker-c has no BrokerData.
        let publish = route.publish_queues("T");
        assert_eq!(
            publish,
            (0..3)
                .map(|i| MessageQueue::new("T", "broker-a", i))
                .collect::<Vec<_>>()
        );
        // broker-c (perm 2) is not readable; a and b are, sorted.
        let subscribe = route.subscribe_queues("T");
        let expected: Vec<_> = [
            ("broker-a", 0),
            ("broker-a", 1),
            ("broker-b", 0),
            ("broker-b", 1),
        ]
        .into_iter()
        .map(|(b, i)| MessageQueue::new("T", b, i))
        .collect();
        assert_eq!(subscribe, expected);
    }

    #[test]
    fn huge_queue_counts_are_bounded() {
        let route = TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: [(0, "a:1".to_owned())].into(),
                broker_name: "b".into(),
                ..BrokerData::default()
            }],
            queue_datas: vec![QueueData {
                broker_name: "b".into(),
                perm: 6,
                read_queue_nums: i32::MAX,
                write_queue_nums: i32::MAX,
                topic_sys_flag: 0,
            }],
            ..TopicRouteData::default()
        };
        assert_eq!(route.publish_queues("T").len(), MAX_ROUTE_QUEUES);
        assert_eq!(route.subscribe_queues("T").len(), MAX_ROUTE_QUEUES);
        let order = TopicRouteData {
            order_topic_conf: Some("b:2;bad;c:x;d:-1;e:1".into()),
            ..TopicRouteData::default()
        };
        let names: Vec<_> = order
            .publish_queues("T")
            .into_iter()
            .map(|q| (q.broker_name, q.queue_id))
            .collect();
        assert_eq!(names, [("b".into(), 0), ("b".into(), 1), ("e".into(), 0)]);
    }

    #[test]
    fn encode_is_sorted_standard_json() {
        let route = TopicRouteData::decode(FASTJSON.as_bytes()).unwrap();
        let text = String::from_utf8(route.encode()).unwrap();
        assert!(text.starts_with(r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false},"#));
        assert!(!text.contains("orderTopicConf"));
    }

    #[test]
    fn bad_inputs() {
        let deep = "[".repeat(10_000);
        let cases: Vec<&[u8]> = vec![
            &STANDARD.as_bytes()[..STANDARD.len() / 2],
            b"\xff\xfe",
            deep.as_bytes(),
            br#"{"brokerDatas":[{"brokerName":7}]}"#,
            br#"{"brokerDatas":[{"brokerAddrs":{"x":"a"}}]}"#,
            br#"{"brokerDatas":{}}"#,
            br#"{"queueDatas":[{"perm":"6"}]}"#,
            br#""route""#,
            b"42",
        ];
        for case in cases {
            assert!(
                TopicRouteData::decode(case).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        assert!(matches!(
            TopicRouteData::decode(deep.as_bytes()),
            Err(BodyError::Json(FastjsonError::TooDeep { .. }))
        ));
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_%|-]{1,12}"
    }

    fn broker_data() -> impl Strategy<Value = BrokerData> {
        (
            prop::collection::btree_map(-2i64..4, "[0-9.:]{1,21}", 0..4),
            name(),
            name(),
            any::<bool>(),
            prop::option::of(name()),
        )
            .prop_map(
                |(broker_addrs, broker_name, cluster, enable_acting_master, zone_name)| {
                    BrokerData {
                        broker_addrs,
                        broker_name,
                        cluster,
                        enable_acting_master,
                        zone_name,
                    }
                },
            )
    }

    fn queue_data() -> impl Strategy<Value = QueueData> {
        (name(), 0i32..16, 0i32..64, any::<i32>(), 0i32..64).prop_map(
            |(broker_name, perm, read_queue_nums, topic_sys_flag, write_queue_nums)| QueueData {
                broker_name,
                perm,
                read_queue_nums,
                topic_sys_flag,
                write_queue_nums,
            },
        )
    }

    fn route() -> impl Strategy<Value = TopicRouteData> {
        (
            prop::collection::vec(broker_data(), 0..4),
            prop::collection::btree_map(name(), prop::collection::vec(name(), 0..3), 0..2),
            prop::option::of("[a-z0-9:;-]{0,20}"),
            prop::collection::vec(queue_data(), 0..4),
            prop::option::of(prop::collection::btree_map(name(), any::<i64>(), 0..3)),
        )
            .prop_map(
                |(broker_datas, filter_server_table, order_topic_conf, queue_datas, mapping)| {
                    TopicRouteData {
                        broker_datas,
                        filter_server_table,
                        order_topic_conf,
                        queue_datas,
                        topic_queue_mapping_by_broker: mapping.map(|m| serde_json::json!(m)),
                    }
                },
            )
    }

    /// The route as an old NameServer writes it: bare numeric `brokerAddrs` keys.
    fn fastjson_form(route: &TopicRouteData) -> String {
        let mut text = String::from_utf8(route.encode()).unwrap();
        for broker in &route.broker_datas {
            for id in broker.broker_addrs.keys() {
                text = text.replace(&format!("\"{id}\":"), &format!("{id}:"));
            }
        }
        text
    }

    proptest! {
        #[test]
        fn round_trip(route in route()) {
            prop_assert_eq!(TopicRouteData::decode(&route.encode()).unwrap(), route);
        }

        #[test]
        fn fastjson_form_round_trip(route in route()) {
            let text = fastjson_form(&route);
            prop_assert_eq!(TopicRouteData::decode(text.as_bytes()).unwrap(), route);
        }

        #[test]
        fn publish_queues_are_writable_with_master(route in route()) {
            let route = TopicRouteData { order_topic_conf: None, ..route };
            for q in route.publish_queues("T") {
                prop_assert!(route.master_addr(&q.broker_name).is_some());
                prop_assert!(route.queue_datas.iter().any(|d| d.broker_name == q.broker_name
                    && d.is_writable() && q.queue_id < d.write_queue_nums));
            }
        }
    }
}
