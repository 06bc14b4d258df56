//! Golden vectors written by the Java implementation (RocketMQ 5.3.3), decoded and
//! re-encoded by this crate. `testdata/golden/README.md` says how Java produced each
//! file; `tests/java/golden` is the program that wrote them.

use std::path::PathBuf;

use bytes::Bytes;
use rocketmq_core::protocol::code::LanguageCode;
use rocketmq_core::protocol::command::RemotingCommand;
use rocketmq_core::protocol::frame::{FrameDecoder, SerializeType, DEFAULT_MAX_FRAME_LEN};
use rocketmq_core::protocol::header::{
    CommandHeader, GetRouteInfoRequestHeader, PullMessageResponseHeader, SendMessageRequestHeaderV2,
};
use rocketmq_core::protocol::message::{
    decode_batch, decode_messages, encode_properties, offset_msg_id, parse_offset_msg_id,
    DecodeOptions, MessageExt, Properties, UniqueIdGenerator,
};
use serde_json::Value;

fn golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expect(name: &str) -> Value {
    serde_json::from_slice(&golden(name)).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string_map<T: FromIterator<(String, String)> + Default>(v: &Value) -> T {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes a whole frame file, feeding it one byte at a time.
fn decode_frame_file(name: &str) -> RemotingCommand {
    let bytes = golden(name);
    let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let mut frames = Vec::new();
    for b in &bytes {
        d.push(std::slice::from_ref(b));
        while let Some(f) = d.next_frame().unwrap() {
            frames.push(f);
        }
    }
    d.finish().unwrap();
    assert_eq!(frames.len(), 1, "{name}");
    RemotingCommand::decode(frames.remove(0)).unwrap()
}

const FRAMES: [&str; 10] = [
    "frame_request_json",
    "frame_request_rocketmq",
    "frame_worked_example_rocketmq",
    "frame_response_json",
    "frame_response_rocketmq",
    "frame_send_v2_json",
    "frame_send_v2_rocketmq",
    "frame_send_v2_rocketmq_dupkeys",
    "frame_pull_response_json",
    "frame_pull_response_rocketmq",
];

#[test]
fn frames_decode_as_java_decodes_them() {
    for name in FRAMES {
        let cmd = decode_frame_file(&format!("{name}.bin"));
        let want = expect(&format!("{name}.expect.json"));
        assert_eq!(
            i64::from(cmd.code),
            want["code"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            cmd.language.java_name(),
            want["language"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            i64::from(cmd.version),
            want["version"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            i64::from(cmd.opaque),
            want["opaque"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            i64::from(cmd.flag),
            want["flag"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            cmd.is_response(),
            want["isResponse"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(cmd.remark.as_deref(), want["remark"].as_str(), "{name}");
        assert_eq!(
            cmd.ext_fields,
            string_map::<rocketmq_core::protocol::command::ExtFields>(&want["extFields"]),
            "{name}"
        );
        assert_eq!(
            hex(&cmd.body),
            want["body"].as_str().unwrap_or(""),
            "{name}"
        );
    }
}

#[test]
fn frames_re_encode_to_what_java_decodes() {
    for name in FRAMES {
        let cmd = decode_frame_file(&format!("{name}.bin"));
        let ty = if name.ends_with("json") {
            SerializeType::Json
        } else {
            SerializeType::RocketMq
        };
        let again = RemotingCommand::decode(
            rocketmq_core::protocol::frame::decode_frame(
                cmd.to_frame(ty).unwrap(),
                DEFAULT_MAX_FRAME_LEN,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(again, cmd, "{name}");
    }
}

#[test]
fn binary_frames_are_byte_identical_where_java_writes_fields_in_key_order() {
    // Java writes the ext fields of these frames in key order (SendMessageRequestHeaderV2's
    // fast encoder goes a..n; the others have one field), which is this crate's
    // order. The pull response's fast encoder writes suggestWhichBrokerId first,
    // and the response and dupkeys frames come from a HashMap, so those three
    // differ in field order only (checked by the tests above).
    for name in ["frame_worked_example_rocketmq", "frame_send_v2_rocketmq"] {
        let cmd = decode_frame_file(&format!("{name}.bin"));
        assert_eq!(
            cmd.to_frame(SerializeType::RocketMq).unwrap(),
            Bytes::from(golden(&format!("{name}.bin"))),
            "{name}"
        );
    }
}

#[test]
fn typed_headers_read_java_frames() {
    let route = decode_frame_file("frame_request_json.bin");
    let h: GetRouteInfoRequestHeader = route.header().unwrap();
    assert_eq!(h.topic, "TopicTest");
    assert_eq!(h.accept_standard_json_only, Some(true));

    for name in ["frame_send_v2_json.bin", "frame_send_v2_rocketmq.bin"] {
        let send = decode_frame_file(name);
        let v2: SendMessageRequestHeaderV2 = send.header().unwrap();
        let h = &v2.0;
        assert_eq!(h.producer_group, "PG_TEST");
        assert_eq!(h.queue_id, 2);
        assert_eq!(h.born_timestamp, 1_732_500_000_000);
        assert_eq!(h.batch, Some(false));
        assert_eq!(h.broker_name.as_deref(), Some("broker-a"));
        let props = Properties::parse(h.properties.clone().unwrap().into());
        assert_eq!(props.get("TAGS"), Some("TagA"));
        assert_eq!(props.get("KEYS"), Some("KEY1 KEY2"));
        let mut ext = Default::default();
        v2.write(&mut ext);
        assert_eq!(SendMessageRequestHeaderV2::read(&ext).unwrap(), v2);
    }

    for name in [
        "frame_pull_response_json.bin",
        "frame_pull_response_rocketmq.bin",
    ] {
        let pull = decode_frame_file(name);
        let h: PullMessageResponseHeader = pull.header().unwrap();
        assert_eq!(
            (h.next_begin_offset, h.min_offset, h.max_offset),
            (32, 0, 100)
        );
        let msgs = decode_messages(&pull.body, &DecodeOptions::default()).unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(pull.body, Bytes::from(golden("stored_v1_ipv4.bin")));
    }
}

fn check_message(m: &MessageExt, want: &Value, stored: &Value, what: &str) {
    assert_eq!(m.topic, want["topic"].as_str().unwrap(), "{what}");
    assert_eq!(hex(&m.body), want["body"].as_str().unwrap_or(""), "{what}");
    assert_eq!(i64::from(m.flag), want["flag"].as_i64().unwrap(), "{what}");
    assert_eq!(
        i64::from(m.queue_id),
        want["queueId"].as_i64().unwrap(),
        "{what}"
    );
    assert_eq!(
        m.queue_offset,
        want["queueOffset"].as_i64().unwrap(),
        "{what}"
    );
    assert_eq!(
        m.commit_log_offset,
        want["commitLogOffset"].as_i64().unwrap(),
        "{what}"
    );
    // Java clears the compressed bit after inflating; this crate keeps the stored flag.
    let sys_flag = stored["storedSysFlag"]
        .as_i64()
        .or(want["sysFlag"].as_i64())
        .unwrap();
    assert_eq!(i64::from(m.sys_flag), sys_flag, "{what}");
    assert_eq!(
        m.born_timestamp,
        want["bornTimestamp"].as_i64().unwrap(),
        "{what}"
    );
    assert_eq!(
        m.store_timestamp,
        want["storeTimestamp"].as_i64().unwrap(),
        "{what}"
    );
    for (host, key) in [(m.born_host, "bornHost"), (m.store_host, "storeHost")] {
        let ip: std::net::IpAddr = want[format!("{key}Ip")].as_str().unwrap().parse().unwrap();
        assert_eq!(host.ip(), ip, "{what} {key}");
        assert_eq!(
            i64::from(host.port()),
            want[format!("{key}Port")].as_i64().unwrap(),
            "{what} {key}"
        );
    }
    assert_eq!(
        i64::from(m.reconsume_times),
        want["reconsumeTimes"].as_i64().unwrap(),
        "{what}"
    );
    assert_eq!(
        m.prepared_transaction_offset,
        want["preparedTransactionOffset"].as_i64().unwrap(),
        "{what}"
    );
    assert_eq!(
        i64::from(m.body_crc),
        want["bodyCRC"].as_i64().unwrap(),
        "{what}"
    );
    assert_eq!(
        i64::from(m.store_size),
        want["storeSize"].as_i64().unwrap(),
        "{what}"
    );
    assert_eq!(
        m.properties.to_map(),
        string_map(&want["properties"]),
        "{what}"
    );
    assert_eq!(m.msg_id(), want["msgId"].as_str().unwrap(), "{what}");
    assert_eq!(
        m.offset_msg_id(),
        want["offsetMsgId"].as_str().unwrap(),
        "{what}"
    );
    assert_eq!(m.tags(), want["tags"].as_str(), "{what}");
    assert_eq!(
        m.keys().collect::<Vec<_>>().join(" "),
        want["keys"].as_str().unwrap_or(""),
        "{what}"
    );
}

#[test]
fn stored_messages_decode_as_java_decodes_them() {
    let opts = DecodeOptions {
        verify_crc: true,
        ..DecodeOptions::default()
    };
    for name in [
        "stored_v1_ipv4",
        "stored_v2_ipv6",
        "stored_zlib",
        "stored_lz4",
        "stored_zstd",
    ] {
        let body = Bytes::from(golden(&format!("{name}.bin")));
        let want = expect(&format!("{name}.expect.json"));
        let msgs = decode_messages(&body, &opts).unwrap();
        let wanted = want["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), wanted.len(), "{name}");
        for (i, (m, w)) in msgs.iter().zip(wanted).enumerate() {
            check_message(m, w, &want, &format!("{name}[{i}]"));
        }
        if let Some(stored) = want["storedBody"].as_str() {
            let raw = decode_messages(
                &body,
                &DecodeOptions {
                    decompress: false,
                    ..opts.clone()
                },
            )
            .unwrap();
            assert_eq!(hex(&raw[0].body), stored, "{name} stored body");
        }
    }
}

#[test]
fn batch_body_decodes_as_java_decodes_it() {
    let body = Bytes::from(golden("batch_body.bin"));
    let want = expect("batch_body.expect.json");
    let entries = decode_batch(&body).unwrap();
    let wanted = want["messages"].as_array().unwrap();
    assert_eq!(entries.len(), wanted.len());
    for (e, w) in entries.iter().zip(wanted) {
        assert_eq!(i64::from(e.flag), w["flag"].as_i64().unwrap());
        assert_eq!(hex(&e.body), w["body"].as_str().unwrap());
        assert_eq!(e.properties.to_map(), string_map(&w["properties"]));
    }
}

#[test]
fn properties_match_java() {
    let want = expect("properties.expect.json");
    for case in want["messageProperties2String"].as_array().unwrap() {
        let Some(entries) = case["entriesInIterationOrder"].as_array() else {
            continue;
        };
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .filter_map(|e| Some((e[0].as_str()?, e[1].as_str()?))) // Java skips null values
            .collect();
        let mut s = String::new();
        encode_properties(pairs, &mut s);
        assert_eq!(s, case["text"].as_str().unwrap(), "{}", case["description"]);
    }
    for case in want["string2messageProperties"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap_or("");
        let parsed = Properties::parse(text.into());
        assert_eq!(
            parsed.to_map(),
            string_map(&case["result"]),
            "{}",
            case["description"]
        );
    }
}

#[test]
fn message_ids_match_java() {
    let want = expect("message_ids.expect.json");
    for case in want["createMessageId"].as_array().unwrap() {
        let offset = case["commitLogOffset"].as_i64().unwrap();
        let host = case["storeHost"].as_str().unwrap();
        // Java prints IPv6 hosts without brackets: the port follows the last colon.
        let (ip, port) = host.rsplit_once(':').unwrap();
        let addr = std::net::SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap());
        let id = case["msgId"].as_str().unwrap();
        assert_eq!(offset_msg_id(addr, offset), id);
        assert_eq!(parse_offset_msg_id(id), Some((addr, offset)));
    }
    let generated = want["uniqIds"]["generatedAtEpochMillis"].as_i64().unwrap();
    let first = &want["uniqIds"]["ids"][0];
    let ip_hex = first["field.ip"].as_str().unwrap();
    let ip: Vec<u8> = (0..ip_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&ip_hex[i..i + 2], 16).unwrap())
        .collect();
    let ip: std::net::IpAddr = match ip.len() {
        4 => <[u8; 4]>::try_from(ip).unwrap().into(),
        _ => <[u8; 16]>::try_from(ip).unwrap().into(),
    };
    let mut g = UniqueIdGenerator::new(
        ip,
        first["field.pid(u16)"].as_u64().unwrap() as u32,
        first["field.classLoaderHash(i32)"].as_i64().unwrap() as i32,
    );
    // Java's generator took its time once, at start-up, a moment before this stamp.
    let id = g.next_id(generated);
    let java = first["id"].as_str().unwrap();
    assert_eq!(id.len(), java.len());
    assert_eq!(id[..id.len() - 12], java[..java.len() - 12]);
    let ms = |s: &str| u32::from_str_radix(&s[s.len() - 12..s.len() - 4], 16).unwrap();
    assert!(ms(&id).abs_diff(ms(java)) < 60_000, "{id} vs {java}");
    assert_eq!(&id[id.len() - 4..], "0000");
}

#[test]
fn language_codes_in_java_frames() {
    assert_eq!(
        decode_frame_file("frame_worked_example_rocketmq.bin").language,
        LanguageCode::Rust
    );
    assert_eq!(
        decode_frame_file("frame_request_json.bin").language,
        LanguageCode::Java
    );
}

mod bodies {
    use super::{expect, golden};
    use rocketmq_core::protocol::body::*;
    use rocketmq_core::protocol::MessageQueue;

    fn mq(broker: &str, id: i32) -> MessageQueue {
        MessageQueue::new("TopicTest", broker, id)
    }

    #[test]
    fn route_data_in_both_name_server_forms() {
        let nonstandard = TopicRouteData::decode(&golden("route_nonstandard.json")).unwrap();
        let standard = TopicRouteData::decode(&golden("route_standard.json")).unwrap();
        assert_eq!(nonstandard, standard);
        assert_eq!(standard.master_addr("broker-a"), Some("10.0.0.1:10911"));
        assert_eq!(
            standard.broker("broker-b").unwrap().broker_addrs[&1],
            "10.0.0.4:10911"
        );
        assert_eq!(
            standard.broker("broker-b").unwrap().zone_name.as_deref(),
            Some("zone-中")
        );
        let subscribe = standard.subscribe_queues("TopicTest");
        assert_eq!(subscribe.len(), 8);
        assert_eq!(subscribe[0], mq("broker-a", 0));
        assert_eq!(subscribe[7], mq("broker-b", 3));
        assert_eq!(standard.publish_queues("TopicTest"), subscribe);
        assert_eq!(
            TopicRouteData::decode(&standard.encode()).unwrap(),
            standard
        );
    }

    #[test]
    fn heartbeat_as_java_writes_it() {
        let java = golden("heartbeat.json");
        let hb = HeartbeatData::decode(&java).unwrap();
        assert_eq!(hb.client_id, "10.0.0.5@12345#93284123");
        assert_eq!(hb.producer_data_set[0].group_name, "PG_TEST");
        let consumer = &hb.consumer_data_set[0];
        assert_eq!(consumer.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(consumer.message_model, MessageModel::Clustering);
        let ours =
            SubscriptionData::from_tag_expression("TopicTest", "TagA || TagB", 1_732_500_000_000);
        assert!(consumer.subscription_data_set.contains(&ours));
        let all = SubscriptionData::from_tag_expression("%RETRY%CG_TEST", "*", 1_732_500_000_001);
        assert!(consumer.subscription_data_set.contains(&all));
        // Every key and value in Java's order: the same bytes.
        assert_eq!(
            String::from_utf8(hb.encode()).unwrap(),
            String::from_utf8(java).unwrap()
        );
    }

    #[test]
    fn java_string_hashes() {
        for case in expect("tag_hashes.expect.json").as_array().unwrap() {
            let tag = case["tag"].as_str().unwrap();
            assert_eq!(
                i64::from(java_string_hash(tag)),
                case["hashCode"].as_i64().unwrap(),
                "{tag}"
            );
        }
    }

    #[test]
    fn small_bodies_byte_for_byte() {
        for name in [
            "consumer_id_list.json",
            "lock_batch_response.json",
            "consume_directly_result.json",
        ] {
            let java = golden(name);
            let ours = match name {
                "consumer_id_list.json" => ConsumerIdList::decode(&java).unwrap().encode(),
                "lock_batch_response.json" => {
                    LockBatchResponseBody::decode(&java).unwrap().encode()
                }
                _ => ConsumeMessageDirectlyResult::decode(&java)
                    .unwrap()
                    .encode(),
            };
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(java).unwrap(),
                "{name}"
            );
        }
        let r =
            ConsumeMessageDirectlyResult::decode(&golden("consume_directly_result.json")).unwrap();
        assert_eq!(r.consume_result, Some(CmResult::CrSuccess));
    }

    #[test]
    fn lock_bodies() {
        let req = LockBatchRequestBody::decode(&golden("lock_batch_request.json")).unwrap();
        assert_eq!(req.consumer_group, "CG_TEST");
        assert_eq!(
            req.mq_set.iter().cloned().collect::<Vec<_>>(),
            [mq("broker-a", 0), mq("broker-a", 1)]
        );
        assert_eq!(LockBatchRequestBody::decode(&req.encode()).unwrap(), req);
    }

    #[test]
    fn queue_keyed_maps() {
        let reset = ResetOffsetBody::decode(&golden("reset_offset_body.json")).unwrap();
        assert_eq!(reset.offset_table[&mq("broker-a", 0)], 42);
        assert_eq!(reset.offset_table[&mq("broker-a", 1)], 1_000_000_000_000);
        let ours = String::from_utf8(reset.encode()).unwrap();
        assert!(
            ours.contains(r#"{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}:42"#),
            "{ours}"
        );
        assert_eq!(ResetOffsetBody::decode(ours.as_bytes()).unwrap(), reset);

        let status = GetConsumerStatusBody::decode(&golden("consumer_status_body.json")).unwrap();
        assert_eq!(
            status.message_queue_table[&MessageQueue::new("TopicTest", "broker-b", 3)],
            20
        );
        assert_eq!(
            GetConsumerStatusBody::decode(&status.encode()).unwrap(),
            status
        );

        let info = ConsumerRunningInfo::decode(&golden("consumer_running_info.json")).unwrap();
        assert_eq!(info.properties[PROP_CONSUME_TYPE], "CONSUME_PASSIVELY");
        let pq = &info.mq_table[&mq("broker-a", 1)];
        assert!(pq.locked);
        assert_eq!(pq.commit_offset, 101);
        assert_eq!(info.status_table["TopicTest"].pull_tps, 20.25);
        assert_eq!(
            info.subscription_set[0]
                .code_set
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [2_598_919]
        );
        let ours = info.encode();
        assert!(String::from_utf8_lossy(&ours).contains("\"droped\":false"));
        assert_eq!(ConsumerRunningInfo::decode(&ours).unwrap(), info);
    }
}
