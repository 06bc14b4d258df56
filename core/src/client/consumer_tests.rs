//! The push consumer driven by scripted broker frames and a virtual clock.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::tests::{connect_of, ok, request_of, route, Harness, BROKER};
use super::*;
use crate::consumer::{ConsumeFrom, ConsumeResult, ConsumerConfig, Selector};
use crate::protocol::body::{ConsumerIdList, HeartbeatData};
use crate::protocol::header::{
    ConsumerSendMsgBackRequestHeader, NotifyConsumerIdsChangedRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use crate::protocol::message::{encode_stored, MessageExt, MessageVersion, Properties};

fn stored(queue_id: i32, offset: i64, tag: &str) -> MessageExt {
    MessageExt {
        topic: "T".into(),
        body: Bytes::from(format!("m{offset}")),
        properties: Properties::parse(format!("TAGS\u{1}{tag}\u{2}").into()),
        queue_id,
        queue_offset: offset,
        commit_log_offset: 1000 + offset,
        born_host: "127.0.0.1:1".parse().unwrap(),
        store_host: BROKER.parse().unwrap(),
        version: MessageVersion::V1,
        ..MessageExt::default()
    }
}

pub(super) fn transmits(out: &[Output]) -> Vec<(ConnId, RemotingCommand)> {
    out.iter()
        .filter(|o| matches!(o, Output::Transmit { .. }))
        .map(request_of)
        .collect()
}

pub(super) fn deliveries(out: &[Output]) -> Vec<&crate::consumer::Delivery> {
    out.iter()
        .filter_map(|o| match o {
            Output::Deliver(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// A consumer of group "G" on topic "T" (tags `a || b`), started, notified,
/// given all 4 queues at offset 10: the harness, the broker connection and
/// the 4 first pulls.
fn started(config: ConsumerConfig) -> (Harness, ConnId, Vec<(ConnId, RemotingCommand)>) {
    let (h, broker, pulls) = started_with(config, |opaque| {
        ok(opaque).with_header(&QueryConsumerOffsetResponseHeader { offset: 10 })
    });
    let pulls: Vec<_> = pulls
        .into_iter()
        .filter(|(_, r)| r.request_code() == RequestCode::PULL_MESSAGE)
        .collect();
    assert_eq!(pulls.len(), 4);
    (h, broker, pulls)
}

/// As [`started`], with each offset query answered by `answer(opaque)`;
/// what the client sent to the broker after those answers.
fn started_with(
    config: ConsumerConfig,
    answer: impl Fn(i32) -> RemotingCommand,
) -> (Harness, ConnId, Vec<(ConnId, RemotingCommand)>) {
    let (mut h, broker, out) = assigned(config);
    // One offset query per queue; every queue of "T" is ours.
    // (A heartbeat follows any change of assignment, as Java's.)
    let queries: Vec<_> = transmits(&out)
        .into_iter()
        .filter(|(_, r)| r.request_code() == RequestCode::QUERY_CONSUMER_OFFSET)
        .collect();
    assert_eq!(queries.len(), 4);
    let mut sent = Vec::new();
    for (_, q) in &queries {
        assert_eq!(q.request_code(), RequestCode::QUERY_CONSUMER_OFFSET);
        let header: QueryConsumerOffsetRequestHeader = q.header().unwrap();
        assert_eq!(header.consumer_group, "G");
        sent.extend(transmits(&h.respond(broker, answer(q.opaque))));
    }
    (h, broker, sent)
}

/// A consumer of group "G" on topic "T" (tags `a || b`), started, notified,
/// and told it is the group's only member: the harness, the broker
/// connection, and what the client did on that answer.
pub(super) fn assigned(config: ConsumerConfig) -> (Harness, ConnId, Vec<Output>) {
    let mut h = Harness::new();
    let start = h.client.call(
        h.now,
        Call::StartConsumer {
            config: Box::new(config),
            subscriptions: vec![("T".into(), Selector::tag("a || b"))],
        },
        None,
    );
    let out = h.outputs();
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Reply { call, result: Ok(Reply::Done) } if *call == start)
        ),
        "{out:?}"
    );
    let ns = out.iter().find_map(|o| match o {
        Output::Connect { conn, .. } => Some(*conn),
        _ => None,
    });
    let ns = ns.expect("a name server connection");
    // Routes for the topic and the group's retry topic.
    let queries = transmits(&h.input(Input::Connected(ns)));
    let topics: Vec<String> = queries
        .iter()
        .map(|(_, r)| r.header::<GetRouteInfoRequestHeader>().unwrap().topic)
        .collect();
    assert_eq!(topics, ["T", "%RETRY%G"]);
    let mut out = h.respond(ns, ok(queries[0].1.opaque).with_body(route().encode()));
    out.extend(h.respond(
        ns,
        RemotingCommand::response(ResponseCode::TOPIC_NOT_EXIST, queries[1].1.opaque, None),
    ));
    // The broker gets a heartbeat with the consumer's subscriptions first.
    let (broker, addr) = connect_of(&out[0]);
    assert_eq!(addr, BROKER);
    let sent = transmits(&h.input(Input::Connected(broker)));
    let heartbeat = sent
        .iter()
        .find(|(_, r)| r.request_code() == RequestCode::HEART_BEAT)
        .expect("a heartbeat");
    let data = HeartbeatData::decode(&heartbeat.1.body).unwrap();
    let consumer = &data.consumer_data_set[0];
    assert_eq!(consumer.group_name, "G");
    let subs: Vec<&str> = consumer
        .subscription_data_set
        .iter()
        .map(|s| s.topic.as_str())
        .collect();
    assert_eq!(subs, ["T", "%RETRY%G"]);
    assert!(
        !sent
            .iter()
            .any(|(_, r)| r.request_code() == RequestCode::GET_CONSUMER_LIST_BY_GROUP),
        "the rebalance waits for the broker's notice"
    );

    // The broker's notice of the group change starts the rebalance.
    let mut notice = RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, 99)
        .with_header(&NotifyConsumerIdsChangedRequestHeader {
            consumer_group: "G".into(),
        })
        .with_oneway();
    notice.language = LanguageCode::Java;
    let out = h.respond(broker, notice);
    // (The retry topic's route is asked for again too: it does not exist yet.)
    let sent = transmits(&out);
    let (_, list) = sent
        .iter()
        .find(|(_, r)| r.request_code() == RequestCode::GET_CONSUMER_LIST_BY_GROUP)
        .expect("the consumer list asked for");
    let ids = ConsumerIdList {
        consumer_id_list: vec![h.client.client_id().to_owned()],
    };
    let out = h.respond(broker, ok(list.opaque).with_body(ids.encode()));
    (h, broker, out)
}

#[test]
fn from_the_last_offset_a_queue_the_broker_has_no_offset_for_starts_at_its_end() {
    use crate::protocol::header::{GetMaxOffsetRequestHeader, OffsetResponseHeader};
    // (ConsumeFrom::LastOffset is the default.)
    let (mut h, broker, sent) = started_with(ConsumerConfig::new("G"), |opaque| {
        RemotingCommand::response(ResponseCode::QUERY_NOT_FOUND, opaque, None)
    });
    let asks: Vec<_> = sent
        .iter()
        .filter(|(_, r)| r.request_code() == RequestCode::GET_MAX_OFFSET)
        .collect();
    assert_eq!(asks.len(), 4, "{sent:?}");
    let (_, ask) = asks
        .iter()
        .find(|(_, r)| r.header::<GetMaxOffsetRequestHeader>().unwrap().queue_id == 2)
        .unwrap();
    let out = h.respond(
        broker,
        ok(ask.opaque).with_header(&OffsetResponseHeader { offset: 42 }),
    );
    let (_, pull) = transmits(&out)
        .into_iter()
        .find(|(_, r)| r.request_code() == RequestCode::PULL_MESSAGE)
        .expect("queue 2 pulled");
    let header: PullMessageRequestHeader = pull.header().unwrap();
    assert_eq!((header.queue_id, header.queue_offset), (2, 42));
}

#[test]
fn a_consumer_rebalances_pulls_delivers_retries_and_commits() {
    let mut config = ConsumerConfig::new("G");
    config.consume_from = ConsumeFrom::FirstOffset;
    let (mut h, broker, pulls) = started(config);
    let (_, pull0) = pulls
        .iter()
        .find(|(_, p)| p.header::<PullMessageRequestHeader>().unwrap().queue_id == 0)
        .unwrap();
    let header: PullMessageRequestHeader = pull0.header().unwrap();
    assert_eq!(header.queue_offset, 10);
    assert_eq!(
        header.sys_flag,
        pull_flag::COMMIT_OFFSET | pull_flag::SUSPEND | pull_flag::SUBSCRIPTION
    );
    assert_eq!(header.subscription.as_deref(), Some("a || b"));
    assert_eq!(header.suspend_timeout_millis, 15_000);

    // Three messages; the one tagged "c" is filtered out on the client.
    let mut body = BytesMut::new();
    for (offset, tag) in [(10, "a"), (11, "b"), (12, "c")] {
        encode_stored(&stored(0, offset, tag), &mut body).unwrap();
    }
    let found = ok(pull0.opaque)
        .with_header(&PullMessageResponseHeader {
            next_begin_offset: 13,
            max_offset: 13,
            ..PullMessageResponseHeader::default()
        })
        .with_body(body.freeze());
    let out = h.respond(broker, found);
    let delivered = deliveries(&out);
    assert_eq!(delivered.len(), 2, "one message per call: {out:?}");
    let (t10, t11) = (delivered[0].ticket, delivered[1].ticket);
    assert_eq!(delivered[0].messages[0].queue_offset, 10);
    assert_eq!(
        delivered[0].context.queue,
        MessageQueue::new("T", "broker-a", 0)
    );
    // The next pull of that queue goes out at once, from 13.
    let next = transmits(&out);
    assert_eq!(
        next[0]
            .1
            .header::<PullMessageRequestHeader>()
            .unwrap()
            .queue_offset,
        13
    );

    // 11 succeeds, 10 asks for a retry: it is sent back; the send-back fails.
    h.client.handle_input(
        h.now,
        Input::Consumed {
            ticket: t11,
            result: ConsumeResult::Success,
        },
    );
    let out = h.outputs();
    assert!(transmits(&out).is_empty());
    h.client.handle_input(
        h.now,
        Input::Consumed {
            ticket: t10,
            result: ConsumeResult::RETRY,
        },
    );
    let (_, back) = transmits(&h.outputs()).remove(0);
    assert_eq!(back.request_code(), RequestCode::CONSUMER_SEND_MSG_BACK);
    let header: ConsumerSendMsgBackRequestHeader = back.header().unwrap();
    assert_eq!((header.offset, header.group.as_str()), (1010, "G"));
    assert_eq!(header.max_reconsume_times, Some(16));
    let refused =
        RemotingCommand::response(ResponseCode::SYSTEM_ERROR, back.opaque, Some("busy".into()));
    assert!(deliveries(&h.respond(broker, refused)).is_empty());
    let stats = |h: &mut Harness| {
        h.client
            .call(h.now, Call::ConsumerStats { group: "G".into() }, None);
        h.outputs()
            .into_iter()
            .find_map(|o| match o {
                Output::Reply {
                    result: Ok(Reply::ConsumerStats(s)),
                    ..
                } => Some(s),
                _ => None,
            })
            .unwrap()
    };
    let q0 = |s: &crate::consumer::ConsumerStats| {
        s.queues
            .iter()
            .find(|(q, _)| q.queue_id == 0 && q.topic == "T")
            .map(|(_, qs)| qs.clone())
            .unwrap()
    };
    let s = stats(&mut h);
    assert_eq!(q0(&s).committable_offset, Some(10), "10 holds the offset");
    // The failure is counted where the user can see it.
    assert_eq!(s.errors.send_back, 1);
    assert!(
        matches!(
            &s.errors.last,
            Some(crate::consumer::ConsumerError::SendBack { offset: 10, .. })
        ),
        "{:?}",
        s.errors
    );

    // Five seconds later it is delivered here again, counted as a reconsume.
    let out = h.advance(LOCAL_RETRY_DELAY);
    let again = deliveries(&out);
    assert_eq!(again.len(), 1, "{out:?}");
    assert_eq!(again[0].messages[0].queue_offset, 10);
    assert_eq!(again[0].context.reconsume_times, 1);
    let ticket = again[0].ticket;
    h.client.handle_input(
        h.now,
        Input::Consumed {
            ticket,
            result: ConsumeResult::Success,
        },
    );
    h.outputs();
    assert_eq!(q0(&stats(&mut h)).committable_offset, Some(13));

    // The persist timer writes it.
    let out = h.advance(Duration::from_secs(5));
    let writes: Vec<UpdateConsumerOffsetRequestHeader> = transmits(&out)
        .iter()
        .filter(|(_, r)| r.request_code() == RequestCode::UPDATE_CONSUMER_OFFSET)
        .map(|(_, r)| r.header().unwrap())
        .collect();
    let w0 = writes
        .iter()
        .find(|w| w.queue_id == 0)
        .expect("queue 0 written");
    assert_eq!(w0.commit_offset, 13);
}

/// The pull of `queue_id` among `out`, if any.
pub(super) fn pull_of(out: &[Output], queue_id: i32) -> Option<(ConnId, RemotingCommand)> {
    transmits(out).into_iter().find(|(_, r)| {
        r.request_code() == RequestCode::PULL_MESSAGE
            && r.header::<PullMessageRequestHeader>().unwrap().queue_id == queue_id
    })
}

/// The listener call `ticket` finished with `result`.
fn finish(h: &mut Harness, ticket: Ticket, result: ConsumeResult) -> Vec<Output> {
    h.input(Input::Consumed { ticket, result })
}

pub(super) fn found(opaque: i32, queue_id: i32, offsets: std::ops::Range<i64>) -> RemotingCommand {
    let mut body = BytesMut::new();
    for offset in offsets.clone() {
        encode_stored(&stored(queue_id, offset, "a"), &mut body).unwrap();
    }
    ok(opaque)
        .with_header(&PullMessageResponseHeader {
            next_begin_offset: offsets.end,
            max_offset: offsets.end,
            ..PullMessageResponseHeader::default()
        })
        .with_body(body.freeze())
}

#[test]
fn the_global_budget_caps_the_cache_and_pulls_resume_as_room_frees() {
    let mut config = ConsumerConfig::new("G");
    config.global_cache_count = 8; // two per queue
    config.consume_concurrency = 1;
    let (mut h, broker, pulls) = started(config);
    for (_, p) in &pulls {
        let header: PullMessageRequestHeader = p.header().unwrap();
        assert_eq!(
            header.max_msg_nums, 2,
            "a pull asks for no more than its share"
        );
    }
    // Queue 0 answers with more than it asked for (as a broker may): only its
    // share is kept, and it waits instead of pulling again.
    let (_, p0) = pulls
        .iter()
        .find(|(_, p)| p.header::<PullMessageRequestHeader>().unwrap().queue_id == 0)
        .unwrap();
    let out = h.respond(broker, found(p0.opaque, 0, 10..20));
    let first = deliveries(&out);
    assert_eq!(first.len(), 1, "one call at a time");
    assert!(
        !transmits(&out)
            .iter()
            .any(|(_, r)| r.request_code() == RequestCode::PULL_MESSAGE),
        "queue 0 is full: no pull"
    );
    let cached = |h: &mut Harness| {
        h.client
            .call(h.now, Call::ConsumerStats { group: "G".into() }, None);
        h.outputs()
            .into_iter()
            .find_map(|o| match o {
                Output::Reply {
                    result: Ok(Reply::ConsumerStats(s)),
                    ..
                } => Some(s.cached_count),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(cached(&mut h), 2);
    // The first message done: room for one, and the pull goes out at once,
    // from the first offset not kept.
    let ticket = first[0].ticket;
    h.client.handle_input(
        h.now,
        Input::Consumed {
            ticket,
            result: ConsumeResult::Success,
        },
    );
    let out = h.outputs();
    let pull = transmits(&out)
        .into_iter()
        .find(|(_, r)| r.request_code() == RequestCode::PULL_MESSAGE)
        .expect("a pull as soon as room frees");
    let header: PullMessageRequestHeader = pull.1.header().unwrap();
    assert_eq!(
        (header.queue_id, header.queue_offset, header.max_msg_nums),
        (0, 12, 1)
    );
    assert_eq!(
        deliveries(&out).len(),
        1,
        "the second message goes to the listener"
    );
}

#[test]
fn a_topic_without_route_is_asked_for_again_until_it_has_one() {
    let (mut h, _broker, _pulls) = started(ConsumerConfig::new("G"));
    let retry_queries = |out: &[Output]| -> Vec<(ConnId, RemotingCommand)> {
        transmits(out)
            .into_iter()
            .filter(|(_, r)| {
                r.request_code() == RequestCode::GET_ROUTEINFO_BY_TOPIC
                    && r.header::<GetRouteInfoRequestHeader>().unwrap().topic == "%RETRY%G"
            })
            .collect()
    };
    // The broker creates the retry topic later: until then it is asked for
    // every ROUTE_RETRY, not only at the next 20 s rebalance.
    let mut asked = Vec::new();
    let mut waited = Duration::ZERO;
    while waited < Duration::from_secs(10) {
        let out = h.advance(ROUTE_RETRY);
        waited += ROUTE_RETRY;
        for (ns, q) in retry_queries(&out) {
            asked.push(waited);
            h.respond(
                ns,
                RemotingCommand::response(ResponseCode::TOPIC_NOT_EXIST, q.opaque, None),
            );
        }
    }
    assert!(asked.len() >= 4, "asked at {asked:?}");
    // Once it has a route, it is not asked for again before the refresh.
    let out = h.advance(ROUTE_RETRY);
    let (ns, q) = retry_queries(&out).remove(0);
    let mut retry_route = route();
    retry_route.queue_datas[0].read_queue_nums = 1;
    h.respond(ns, ok(q.opaque).with_body(retry_route.encode()));
    for _ in 0..5 {
        let out = h.advance(ROUTE_RETRY);
        assert!(retry_queries(&out).is_empty(), "{out:?}");
    }
}

#[test]
fn broadcasting_keeps_a_dropped_queues_offset_and_commits_nothing_on_the_broker() {
    let mut config = ConsumerConfig::new("G");
    config.message_model = crate::consumer::MessageModel::Broadcasting;
    config.consume_from = ConsumeFrom::FirstOffset;
    config.offset_store_dir = Some("/store".into());
    let mut h = Harness::new();
    h.client.call(
        h.now,
        Call::StartConsumer {
            config: Box::new(config),
            subscriptions: vec![("T".into(), Selector::tag("*"))],
        },
        None,
    );
    let out = h.outputs();
    let path = out
        .iter()
        .find_map(|o| match o {
            Output::Load { path } => Some(path.clone()),
            _ => None,
        })
        .expect("the offset file is read first");
    let ns = out
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    h.input(Input::Loaded {
        path: path.clone(),
        result: Ok(None),
    });
    let queries = transmits(&h.input(Input::Connected(ns)));
    let (_, q) = queries
        .iter()
        .find(|(_, r)| r.header::<GetRouteInfoRequestHeader>().unwrap().topic == "T")
        .unwrap();
    let out = h.respond(ns, ok(q.opaque).with_body(route().encode()));
    let (broker, _) = connect_of(
        out.iter()
            .find(|o| matches!(o, Output::Connect { .. }))
            .unwrap(),
    );
    let mut out = h.input(Input::Connected(broker));
    out.extend(h.advance(REBALANCE_RETRY));
    let (_, p0) = pull_of(&out, 0).expect("every queue is pulled, from 0");
    // Queue 0: three messages, all consumed.
    let out = h.respond(broker, found(p0.opaque, 0, 0..3));
    let (_, next) = pull_of(&out, 0).expect("the next pull");
    let tickets: Vec<Ticket> = deliveries(&out).iter().map(|d| d.ticket).collect();
    assert_eq!(tickets.len(), 3);
    for ticket in tickets {
        finish(&mut h, ticket, ConsumeResult::Success);
    }
    // The pull in flight answers nothing new; the one after it carries no
    // commit for the broker: a broadcasting consumer's offsets are its own.
    let none = RemotingCommand::response(ResponseCode::PULL_NOT_FOUND, next.opaque, None)
        .with_header(&PullMessageResponseHeader {
            next_begin_offset: 3,
            max_offset: 3,
            ..PullMessageResponseHeader::default()
        });
    let out = h.respond(broker, none);
    let (_, again) = pull_of(&out, 0).expect("pulls on");
    let header: PullMessageRequestHeader = again.header().unwrap();
    assert_eq!(header.queue_offset, 3);
    assert_eq!(header.sys_flag & pull_flag::COMMIT_OFFSET, 0, "{header:?}");

    // The topic goes: the file is written with queue 0 at 3.
    h.client.call(
        h.now,
        Call::Unsubscribe {
            group: "G".into(),
            topic: "T".into(),
        },
        None,
    );
    let mut out = h.outputs();
    out.extend(h.advance(REBALANCE_INTERVAL));
    let written = out
        .iter()
        .find_map(|o| match o {
            Output::Persist { data, .. } => Some(data.clone()),
            _ => None,
        })
        .expect("the offset file written");
    let offsets = crate::consumer::local_store::decode(&written).unwrap();
    assert!(
        offsets.contains(&(MessageQueue::new("T", "broker-a", 0), 3)),
        "{offsets:?}"
    );
    h.input(Input::Persisted {
        path: path.clone(),
        result: Ok(()),
    });
    // It comes back: queue 0 resumes at 3, not from the consume-from rule.
    h.client.call(
        h.now,
        Call::Subscribe {
            group: "G".into(),
            topic: "T".into(),
            selector: Selector::tag("*"),
            replace: false,
        },
        None,
    );
    let mut out = h.outputs();
    out.extend(h.advance(REBALANCE_INTERVAL));
    let (_, back) = pull_of(&out, 0).expect("queue 0 pulled again");
    assert_eq!(
        back.header::<PullMessageRequestHeader>()
            .unwrap()
            .queue_offset,
        3
    );
}

#[test]
fn the_broker_resets_offsets_backwards_and_calls_on_the_old_cache_no_longer_count() {
    let (mut h, broker, pulls) = started(ConsumerConfig::new("G"));
    let writes = |out: &[Output]| -> Vec<UpdateConsumerOffsetRequestHeader> {
        transmits(out)
            .iter()
            .filter(|(_, r)| r.request_code() == RequestCode::UPDATE_CONSUMER_OFFSET)
            .map(|(_, r)| r.header().unwrap())
            .collect()
    };
    let (_, p0) = pulls
        .iter()
        .find(|(_, p)| p.header::<PullMessageRequestHeader>().unwrap().queue_id == 0)
        .unwrap();
    let out = h.respond(broker, found(p0.opaque, 0, 10..13));
    let tickets: Vec<Ticket> = deliveries(&out).iter().map(|d| d.ticket).collect();
    assert_eq!(tickets.len(), 3);
    finish(&mut h, tickets[0], ConsumeResult::Success);

    // An operator resets the group to offset 5 (a broker that leaves resets to
    // its clients): the new offset is written at once and pulled from.
    let body = crate::protocol::body::ResetOffsetBody {
        offset_table: [(MessageQueue::new("T", "broker-a", 0), 5)]
            .into_iter()
            .collect(),
    };
    let mut reset = RemotingCommand::request(RequestCode::RESET_CONSUMER_CLIENT_OFFSET, 77)
        .with_header(&crate::protocol::header::ResetOffsetRequestHeader {
            group: "G".into(),
            topic: "T".into(),
            queue_id: None,
            offset: None,
            timestamp: 0,
            is_force: true,
        })
        .with_body(body.encode())
        .with_oneway();
    reset.language = LanguageCode::Java;
    let out = h.respond(broker, reset);
    let w = writes(&out);
    assert_eq!(
        (w.len(), w[0].queue_id, w[0].commit_offset),
        (1, 0, 5),
        "{out:?}"
    );
    let (_, again) = pull_of(&out, 0).expect("pulled again from the new offset");
    assert_eq!(
        again
            .header::<PullMessageRequestHeader>()
            .unwrap()
            .queue_offset,
        5
    );
    // The calls still running on the old cache finish: they move nothing.
    let mut out = Vec::new();
    for ticket in &tickets[1..] {
        out.extend(finish(&mut h, *ticket, ConsumeResult::Success));
    }
    assert!(writes(&out).is_empty());
    let out = h.advance(Duration::from_secs(5));
    assert!(
        writes(&out)
            .iter()
            .all(|w| w.queue_id != 0 || w.commit_offset == 5),
        "queue 0 stays at 5: {:?}",
        writes(&out)
    );

    // The broker's own reset (5.x) comes as OFFSET_MOVED on a pull: the same.
    let moved = RemotingCommand::response(ResponseCode::PULL_OFFSET_MOVED, again.opaque, None)
        .with_header(&PullMessageResponseHeader {
            next_begin_offset: 2,
            max_offset: 20,
            ..PullMessageResponseHeader::default()
        });
    let out = h.respond(broker, moved);
    let w = writes(&out);
    assert_eq!((w.len(), w[0].commit_offset), (1, 2), "{out:?}");
    let (_, after) = pull_of(&out, 0).expect("pulled from the broker's offset");
    assert_eq!(
        after
            .header::<PullMessageRequestHeader>()
            .unwrap()
            .queue_offset,
        2
    );
}

#[test]
fn running_info_answers_for_the_group_in_javas_shape() {
    use crate::protocol::body::{ConsumerRunningInfo, PROP_CONSUME_TYPE};
    use crate::protocol::header::GetConsumerRunningInfoRequestHeader;
    let (mut h, broker, _pulls) = started(ConsumerConfig::new("G"));
    let ask = |h: &mut Harness, group: &str, opaque: i32| {
        let mut q = RemotingCommand::request(RequestCode::GET_CONSUMER_RUNNING_INFO, opaque)
            .with_header(&GetConsumerRunningInfoRequestHeader {
                consumer_group: group.into(),
                client_id: h.client.client_id().to_owned(),
                jstack_enable: Some(false),
            });
        q.language = LanguageCode::Java;
        let out = h.respond(broker, q);
        let (_, answer) = transmits(&out).remove(0);
        assert!(answer.is_response());
        assert_eq!(answer.opaque, opaque);
        answer
    };
    let answer = ask(&mut h, "G", 501);
    assert_eq!(answer.response_code(), ResponseCode::SUCCESS);
    let info = ConsumerRunningInfo::decode(&answer.body).unwrap();
    assert_eq!(
        info.properties.get(PROP_CONSUME_TYPE).map(String::as_str),
        Some("CONSUME_PASSIVELY")
    );
    let topics: Vec<&str> = info
        .subscription_set
        .iter()
        .map(|s| s.topic.as_str())
        .collect();
    assert_eq!(topics, ["T", "%RETRY%G"]);
    assert_eq!(info.mq_table.len(), 4);
    let q0 = &info.mq_table[&MessageQueue::new("T", "broker-a", 0)];
    assert_eq!((q0.commit_offset, q0.cached_msg_count), (10, 0));
    let unknown = ask(&mut h, "other", 502);
    assert_eq!(unknown.response_code(), ResponseCode::SYSTEM_ERROR);
}

/// Starts a consumer of "T" with a SQL92 selector and answers the broker's
/// check with `code`; what the start call is answered.
fn start_checked(code: ResponseCode) -> (Harness, Result<Reply, ClientError>) {
    let mut h = Harness::new();
    let start = h.client.call(
        h.now,
        Call::StartConsumer {
            config: Box::new(ConsumerConfig::new("G")),
            subscriptions: vec![("T".into(), Selector::sql92("a > 1"))],
        },
        None,
    );
    let out = h.outputs();
    assert!(
        !out.iter().any(|o| matches!(o, Output::Reply { .. })),
        "no answer before the broker's check: {out:?}"
    );
    let ns = out
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    let queries = transmits(&h.input(Input::Connected(ns)));
    let out = h.respond(ns, ok(queries[0].1.opaque).with_body(route().encode()));
    let (broker, _) = connect_of(
        out.iter()
            .find(|o| matches!(o, Output::Connect { .. }))
            .unwrap(),
    );
    let sent = transmits(&h.input(Input::Connected(broker)));
    let (_, check) = sent
        .iter()
        .find(|(_, r)| r.request_code() == RequestCode::CHECK_CLIENT_CONFIG)
        .expect("the subscription checked on the broker");
    let body: crate::protocol::body::CheckClientRequestBody =
        serde_json::from_slice(&check.body).unwrap();
    assert_eq!(body.group, "G");
    assert_eq!(body.subscription_data.unwrap().sub_string, "a > 1");
    let out = h.respond(
        broker,
        RemotingCommand::response(code, check.opaque, Some("refused here".into())),
    );
    let result = out
        .into_iter()
        .find_map(|o| match o {
            Output::Reply { call, result } if call == start => Some(result),
            _ => None,
        })
        .expect("the start answered");
    (h, result)
}

#[test]
fn a_sql92_subscription_the_broker_refuses_fails_the_start() {
    let (h, result) = start_checked(ResponseCode::SUBSCRIPTION_PARSE_FAILED);
    assert!(
        matches!(
            &result,
            Err(ClientError::Subscribe(crate::consumer::SubscribeError::Refused { topic, reason }))
                if topic == "T" && reason == "refused here"
        ),
        "{result:?}"
    );
    assert!(!h.client.has_consumer("G"));
    let (h, result) = start_checked(ResponseCode::SUCCESS);
    assert!(matches!(result, Ok(Reply::Done)), "{result:?}");
    assert!(h.client.has_consumer("G"));
}
