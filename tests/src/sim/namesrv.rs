//! A simulated name server.
//!
//! Stateless: [`SimNameServer::handle`] answers GET_ROUTEINFO_BY_TOPIC from the
//! topics the given (live) brokers hold at that moment, as a name server whose
//! brokers registered just now would; registration delays and expiry are the
//! world's business (it chooses which brokers to pass). Routes are standard
//! JSON for clients at or above version 401 or asking for it
//! (`acceptStandardJsonOnly`), and fastjson's `{0:"addr"}` form otherwise, as
//! a 4.9.4+ name server writes them. GET_BROKER_CLUSTER_INFO is answered too;
//! anything else REQUEST_CODE_NOT_SUPPORTED, a malformed header SYSTEM_ERROR.

use std::collections::BTreeMap;

use rocketmq_core::protocol::body::{BrokerData, QueueData, TopicRouteData, MASTER_ID};
use rocketmq_core::protocol::code::{LanguageCode, RequestCode, ResponseCode};
use rocketmq_core::protocol::command::{RemotingCommand, FLAG_RESPONSE};
use rocketmq_core::protocol::header::GetRouteInfoRequestHeader;

use crate::sim::broker::SimBroker;
use crate::sim::Millis;

/// Permission of every simulated queue: read and write.
const PERM_READ_WRITE: i32 = 6;

/// First client version the name server answers with standard JSON (`V4_9_4`).
const STANDARD_JSON_VERSION: i32 = 401;

/// A simulated name server at one address.
#[derive(Clone, Debug)]
pub struct SimNameServer {
    addr: String,
}

impl SimNameServer {
    /// A name server at `addr` (`host:port`).
    pub fn new(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
        }
    }

    /// The name server's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Answers a request: GET_ROUTEINFO_BY_TOPIC from the given brokers'
    /// current topics (TOPIC_NOT_EXIST when none has it),
    /// GET_BROKER_CLUSTER_INFO, and REQUEST_CODE_NOT_SUPPORTED for anything
    /// else (even a oneway request, as Java does). `None` for responses and
    /// for oneway requests it serves.
    pub fn handle(
        &mut self,
        _now: Millis,
        cmd: RemotingCommand,
        brokers: &[&SimBroker],
    ) -> Option<RemotingCommand> {
        if cmd.is_response() {
            return None;
        }
        let (mut answer, served) = match cmd.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC => (route(&cmd, brokers), true),
            RequestCode::GET_BROKER_CLUSTER_INFO => (cluster_info(brokers), true),
            _ => (
                response(
                    ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                    Some(format!(" request type {} not supported", cmd.code)),
                ),
                false,
            ),
        };
        if served && cmd.is_oneway() {
            return None;
        }
        answer.opaque = cmd.opaque;
        answer.flag |= FLAG_RESPONSE;
        Some(answer)
    }
}

/// The route of a topic over `brokers` (Java's `RouteInfoManager.pickupTopicRouteData`).
pub fn route_of(topic: &str, brokers: &[&SimBroker]) -> Option<TopicRouteData> {
    let mut route = TopicRouteData::default();
    for b in brokers {
        let Some((_, queues)) = b.topics().into_iter().find(|(t, _)| t == topic) else {
            continue;
        };
        let queues = i32::try_from(queues).unwrap_or(i32::MAX);
        route.queue_datas.push(QueueData {
            broker_name: b.name().to_owned(),
            perm: PERM_READ_WRITE,
            read_queue_nums: queues,
            topic_sys_flag: 0,
            write_queue_nums: queues,
        });
        if route.broker(b.name()).is_none() {
            route.broker_datas.push(broker_data(b));
        }
    }
    (!route.queue_datas.is_empty()).then_some(route)
}

fn broker_data(b: &SimBroker) -> BrokerData {
    BrokerData {
        broker_addrs: [(MASTER_ID, b.addr().to_owned())].into(),
        broker_name: b.name().to_owned(),
        cluster: b.cluster().to_owned(),
        enable_acting_master: false,
        zone_name: None,
    }
}

fn response(code: ResponseCode, remark: Option<String>) -> RemotingCommand {
    let mut cmd = RemotingCommand::response(code, 0, remark);
    cmd.language = LanguageCode::Java;
    cmd
}

fn route(cmd: &RemotingCommand, brokers: &[&SimBroker]) -> RemotingCommand {
    let h: GetRouteInfoRequestHeader = match cmd.header() {
        Ok(h) => h,
        Err(e) => return response(ResponseCode::SYSTEM_ERROR, Some(e.to_string())),
    };
    let Some(route) = route_of(&h.topic, brokers) else {
        return response(
            ResponseCode::TOPIC_NOT_EXIST,
            Some(format!(
                "No topic route info in name server for the topic: {}\nSee http://rocketmq.apache.org/docs/faq/ for further details.",
                h.topic
            )),
        );
    };
    let standard =
        cmd.version >= STANDARD_JSON_VERSION || h.accept_standard_json_only == Some(true);
    let mut body = route.encode();
    if !standard {
        body = unquote_addr_keys(&body);
    }
    response(ResponseCode::SUCCESS, None).with_body(body)
}

/// `ClusterInfo`: `{brokerAddrTable: {name: BrokerData}, clusterAddrTable:
/// {cluster: [name]}}`, with fastjson's bare broker-id keys.
fn cluster_info(brokers: &[&SimBroker]) -> RemotingCommand {
    let mut addr_table = BTreeMap::new();
    let mut clusters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in brokers {
        addr_table.insert(b.name().to_owned(), broker_data(b));
        clusters
            .entry(b.cluster().to_owned())
            .or_default()
            .push(b.name().to_owned());
    }
    let value = serde_json::json!({
        "brokerAddrTable": addr_table,
        "clusterAddrTable": clusters,
    });
    match serde_json::to_vec(&value) {
        Ok(body) => response(ResponseCode::SUCCESS, None).with_body(unquote_addr_keys(&body)),
        Err(e) => response(ResponseCode::SYSTEM_ERROR, Some(e.to_string())),
    }
}

/// Rewrites `"brokerAddrs":{"0":"a"}` as fastjson writes a `Map<Long, String>`
/// without `BrowserCompatible`: `"brokerAddrs":{0:"a"}`.
fn unquote_addr_keys(json: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"\"brokerAddrs\":{";
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    while i < json.len() {
        if json[i..].starts_with(KEY) {
            out.extend_from_slice(KEY);
            i += KEY.len();
            // Entries `"<digits>":"<addr>"` until `}`; addresses hold no quotes.
            while i < json.len() && json[i] != b'}' {
                if json[i] == b'"' {
                    let digits = json[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_digit() || **c == b'-')
                        .count();
                    let close = i + 1 + digits;
                    if digits > 0
                        && json.get(close) == Some(&b'"')
                        && json.get(close + 1) == Some(&b':')
                    {
                        out.extend_from_slice(&json[i + 1..close]);
                        i = close + 1;
                        continue;
                    }
                    // A value: copy through its closing quote.
                    let end = json[i + 1..]
                        .iter()
                        .position(|c| *c == b'"')
                        .map_or(json.len(), |p| i + 2 + p);
                    out.extend_from_slice(&json[i..end]);
                    i = end;
                    continue;
                }
                out.push(json[i]);
                i += 1;
            }
            continue;
        }
        out.push(json[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_request(topic: &str) -> RemotingCommand {
        RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 5).with_header(
            &GetRouteInfoRequestHeader {
                topic: topic.into(),
                accept_standard_json_only: Some(true),
            },
        )
    }

    fn brokers() -> (SimBroker, SimBroker) {
        let mut a = SimBroker::new("broker-a", "10.0.0.1:10911", "C");
        let mut b = SimBroker::new("broker-b", "10.0.0.2:10911", "C");
        a.create_topic("T", 4);
        b.create_topic("T", 2);
        a.create_topic("ONLY_A", 1);
        (a, b)
    }

    #[test]
    fn route_of_a_topic() {
        let (a, b) = brokers();
        let mut ns = SimNameServer::new("10.0.0.100:9876");
        let answer = ns.handle(0, route_request("T"), &[&a, &b]).unwrap();
        assert!(answer.is_response());
        assert_eq!(answer.opaque, 5);
        assert_eq!(answer.response_code(), ResponseCode::SUCCESS);
        let route = TopicRouteData::decode(&answer.body).unwrap();
        assert_eq!(route.master_addr("broker-a"), Some("10.0.0.1:10911"));
        assert_eq!(route.master_addr("broker-b"), Some("10.0.0.2:10911"));
        assert_eq!(route.publish_queues("T").len(), 6);
        assert_eq!(route.subscribe_queues("T").len(), 6);
        // Only the brokers passed count: a dead broker's queues are gone.
        let answer = ns.handle(0, route_request("T"), &[&b]).unwrap();
        let route = TopicRouteData::decode(&answer.body).unwrap();
        assert_eq!(route.broker_datas.len(), 1);
        // The template topic is served while auto-creation is on.
        let answer = ns.handle(0, route_request("TBW102"), &[&a]).unwrap();
        assert_eq!(answer.response_code(), ResponseCode::SUCCESS);
    }

    #[test]
    fn old_clients_get_fastjson_keys_that_still_decode() {
        let (a, _) = brokers();
        let mut ns = SimNameServer::new("ns");
        let mut req = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 1).with_header(
            &GetRouteInfoRequestHeader {
                topic: "T".into(),
                accept_standard_json_only: None,
            },
        );
        req.version = 317;
        let answer = ns.handle(0, req, &[&a]).unwrap();
        let text = String::from_utf8(answer.body.to_vec()).unwrap();
        assert!(
            text.contains(r#""brokerAddrs":{0:"10.0.0.1:10911"}"#),
            "{text}"
        );
        let route = TopicRouteData::decode(&answer.body).unwrap();
        assert_eq!(route.master_addr("broker-a"), Some("10.0.0.1:10911"));
    }

    #[test]
    fn topic_not_exist_and_unsupported() {
        let (a, b) = brokers();
        let mut ns = SimNameServer::new("ns");
        let answer = ns.handle(0, route_request("NOPE"), &[&a, &b]).unwrap();
        assert_eq!(answer.response_code(), ResponseCode::TOPIC_NOT_EXIST);
        let answer = ns.handle(0, route_request("ONLY_A"), &[&b]).unwrap();
        assert_eq!(answer.response_code(), ResponseCode::TOPIC_NOT_EXIST);
        let answer = ns
            .handle(
                0,
                RemotingCommand::request(RequestCode::PULL_MESSAGE, 9),
                &[&a],
            )
            .unwrap();
        assert_eq!(
            answer.response_code(),
            ResponseCode::REQUEST_CODE_NOT_SUPPORTED
        );
        assert_eq!(answer.opaque, 9);
        let answer = ns
            .handle(
                0,
                RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 2),
                &[&a],
            )
            .unwrap();
        assert_eq!(answer.response_code(), ResponseCode::SYSTEM_ERROR);
        let answer = ns
            .handle(
                0,
                RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO, 3),
                &[&a, &b],
            )
            .unwrap();
        let text = String::from_utf8(answer.body.to_vec()).unwrap();
        assert!(text.contains(r#"{0:"10.0.0.2:10911"}"#), "{text}");
        assert!(text.contains(r#""clusterAddrTable":{"C":["broker-a","broker-b"]}"#));
    }
}
