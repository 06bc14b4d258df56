//! The orderly consumer driven by scripted broker frames and a virtual clock:
//! locks before offsets, one batch per queue in order, suspension and the
//! DLQ, lapsed locks, releases and shutdown.

use std::collections::BTreeSet;
use std::time::Duration;

use super::consumer_tests::{assigned, deliveries, found, pull_of, transmits};
use super::tests::{ok, Harness};
use super::*;
use crate::consumer::{ConsumerConfig, OrderlyResult};
use crate::protocol::body::{ConsumerIdList, LockBatchRequestBody, LockBatchResponseBody};
use crate::protocol::header::{
    ConsumerSendMsgBackRequestHeader, NotifyConsumerIdsChangedRequestHeader,
    PullMessageRequestHeader, QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};

fn orderly() -> ConsumerConfig {
    let mut c = ConsumerConfig::new("G");
    c.orderly = true;
    c
}

/// The requests of one code among the outputs.
fn of_code(out: &[Output], code: RequestCode) -> Vec<RemotingCommand> {
    transmits(out)
        .into_iter()
        .filter(|(_, r)| r.request_code() == code)
        .map(|(_, r)| r)
        .collect()
}

/// The queue ids a lock or unlock request names.
fn lock_ids(r: &RemotingCommand) -> BTreeSet<i32> {
    LockBatchRequestBody::decode(&r.body)
        .unwrap()
        .mq_set
        .iter()
        .map(|q| q.queue_id)
        .collect()
}

/// The broker locks queues `ids` of a lock request.
fn grant(h: &mut Harness, broker: ConnId, r: &RemotingCommand, ids: &[i32]) -> Vec<Output> {
    let asked = LockBatchRequestBody::decode(&r.body).unwrap();
    let body = LockBatchResponseBody {
        lock_ok_mq_set: asked
            .mq_set
            .into_iter()
            .filter(|q| ids.contains(&q.queue_id))
            .collect(),
    };
    h.respond(broker, ok(r.opaque).with_body(body.encode()))
}

/// An orderly consumer given all 4 queues of "T", with queues `locked` locked
/// and started at offset 10: the harness, the broker connection, and the
/// first pulls of those queues.
fn locked(config: ConsumerConfig, locked: &[i32]) -> (Harness, ConnId, Vec<Output>) {
    let (mut h, broker, out) = assigned(config);
    assert!(
        of_code(&out, RequestCode::QUERY_CONSUMER_OFFSET).is_empty(),
        "no offset is read before the queue is locked"
    );
    let locks = of_code(&out, RequestCode::LOCK_BATCH_MQ);
    assert_eq!(
        locks.len(),
        1,
        "one lock request for the broker's new queues"
    );
    assert_eq!(lock_ids(&locks[0]), BTreeSet::from([0, 1, 2, 3]));
    let out = grant(&mut h, broker, &locks[0], locked);
    let queries = of_code(&out, RequestCode::QUERY_CONSUMER_OFFSET);
    let ids: BTreeSet<i32> = queries
        .iter()
        .map(|q| {
            q.header::<QueryConsumerOffsetRequestHeader>()
                .unwrap()
                .queue_id
        })
        .collect();
    assert_eq!(
        ids,
        locked.iter().copied().collect(),
        "offsets of the locked queues only"
    );
    let mut pulls = Vec::new();
    for q in &queries {
        pulls.extend(h.respond(
            broker,
            ok(q.opaque).with_header(&QueryConsumerOffsetResponseHeader { offset: 10 }),
        ));
    }
    (h, broker, pulls)
}

/// The offsets of the messages delivered, per delivery.
fn delivered(out: &[Output]) -> Vec<(Ticket, i32, Vec<i64>, i32)> {
    deliveries(out)
        .iter()
        .map(|d| {
            (
                d.ticket,
                d.context.queue.queue_id,
                d.messages.iter().map(|m| m.queue_offset).collect(),
                d.context.reconsume_times,
            )
        })
        .collect()
}

fn finish(h: &mut Harness, ticket: Ticket, result: OrderlyResult) -> Vec<Output> {
    h.input(Input::ConsumedOrderly { ticket, result })
}

#[test]
fn new_queues_are_locked_at_once_and_refused_ones_ask_again_within_a_second() {
    let (mut h, _broker, pulls) = locked(orderly(), &[0, 1]);
    assert!(pull_of(&pulls, 0).is_some() && pull_of(&pulls, 1).is_some());
    assert!(pull_of(&pulls, 2).is_none(), "queue 2 waits for its lock");
    let out = h.advance(LOCK_RETRY);
    let again = of_code(&out, RequestCode::LOCK_BATCH_MQ);
    assert_eq!(
        again.len(),
        1,
        "the refused queues ask again, not at the next round"
    );
    assert_eq!(lock_ids(&again[0]), BTreeSet::from([2, 3]));
}

#[test]
fn one_batch_per_queue_in_offset_order_a_suspension_repeats_it_and_the_max_goes_to_the_dlq() {
    let mut config = orderly();
    config.max_reconsume_times = 1;
    let (mut h, broker, pulls) = locked(config, &[0, 1]);
    let (_, pull0) = pull_of(&pulls, 0).unwrap();
    let (_, pull1) = pull_of(&pulls, 1).unwrap();
    let out = h.respond(broker, found(pull0.opaque, 0, 10..14));
    let d = delivered(&out);
    assert_eq!(d.len(), 1, "one batch of the queue at a time: {d:?}");
    assert_eq!((d[0].1, d[0].2.as_slice()), (0, &[10][..]));
    // Another queue runs beside it.
    let out = h.respond(broker, found(pull1.opaque, 1, 10..12));
    assert_eq!(delivered(&out).len(), 1);

    let out = finish(&mut h, d[0].0, OrderlyResult::Success);
    let d = delivered(&out);
    assert_eq!(d[0].2, [11]);
    // Suspended: nothing of the queue until the suspension ends, then the
    // same message first, its reconsume count raised.
    let out = finish(&mut h, d[0].0, OrderlyResult::SUSPEND);
    assert!(delivered(&out).is_empty());
    assert!(delivered(&h.advance(Duration::from_millis(999))).is_empty());
    let d = delivered(&h.advance(Duration::from_millis(1)));
    assert_eq!((d[0].2.as_slice(), d[0].3), (&[11][..], 1));
    // Past the max: to the DLQ (delay level -1); the queue waits for the
    // broker to take it, then moves on.
    let out = finish(
        &mut h,
        d[0].0,
        OrderlyResult::suspend_for(Duration::from_secs(5)),
    );
    assert!(delivered(&out).is_empty());
    let backs = of_code(&out, RequestCode::CONSUMER_SEND_MSG_BACK);
    assert_eq!(backs.len(), 1);
    let header: ConsumerSendMsgBackRequestHeader = backs[0].header().unwrap();
    assert_eq!((header.delay_level, header.offset), (-1, 1011));
    let out = h.respond(broker, ok(backs[0].opaque));
    let d = delivered(&out);
    assert_eq!(d[0].2, [12], "moved on past the dead message");
    let stats = match h.client.consumer_stats("G").unwrap() {
        Reply::ConsumerStats(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!((stats.consumed, stats.failed, stats.sent_back), (1, 2, 1));
    assert!(stats
        .queues
        .iter()
        .all(|(q, s)| s.locked == (q.queue_id < 2)));
}

#[test]
fn a_lapsed_lock_stops_the_queue_until_a_lock_is_won_again() {
    let (mut h, broker, pulls) = locked(orderly(), &[0]);
    let (_, pull0) = pull_of(&pulls, 0).unwrap();
    let out = h.respond(broker, found(pull0.opaque, 0, 10..14));
    let first = delivered(&out)[0].0;
    // The renewal at 20 s fails; so do the retries, unanswered.
    let out = h.advance(LOCK_INTERVAL);
    let renew = of_code(&out, RequestCode::LOCK_BATCH_MQ);
    assert_eq!(lock_ids(&renew[0]), BTreeSet::from([0, 1, 2, 3]));
    h.respond(
        broker,
        RemotingCommand::response(ResponseCode::SYSTEM_ERROR, renew[0].opaque, None),
    );
    let mut asks = Vec::new();
    for _ in 0..22 {
        asks.extend(of_code(&h.advance(LOCK_RETRY), RequestCode::LOCK_BATCH_MQ));
    }
    // 31 s after the lock was won: the batch out ends, nothing follows it.
    let out = finish(&mut h, first, OrderlyResult::Success);
    assert!(delivered(&out).is_empty(), "no batch without a live lock");
    // A lock won again lets the queue go on where it stopped.
    assert!(
        lock_ids(&asks[0]).contains(&0),
        "a queue whose renewal failed asks again before its lock lapses"
    );
    let ask = (0..10)
        .flat_map(|_| of_code(&h.advance(LOCK_RETRY), RequestCode::LOCK_BATCH_MQ))
        .find(|r| lock_ids(r).contains(&0))
        .expect("the lapsed queue asks for its lock within 5 s");
    let out = grant(&mut h, broker, &ask, &[0]);
    assert_eq!(delivered(&out)[0].2, [11]);
}

#[test]
fn a_queue_taken_away_finishes_its_batch_writes_its_offset_then_unlocks() {
    let (mut h, broker, pulls) = locked(orderly(), &[0, 1, 2, 3]);
    let (_, pull2) = pull_of(&pulls, 2).unwrap();
    let out = h.respond(broker, found(pull2.opaque, 2, 10..14));
    let batch = delivered(&out)[0].0;
    // A second member joins: this one keeps the first two queues (its id
    // sorts first) and gives up 2 and 3.
    let notice = RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, 7)
        .with_header(&NotifyConsumerIdsChangedRequestHeader {
            consumer_group: "G".into(),
        })
        .with_oneway();
    let out = h.respond(broker, notice);
    let list = &of_code(&out, RequestCode::GET_CONSUMER_LIST_BY_GROUP)[0];
    let ids = ConsumerIdList {
        consumer_id_list: vec![h.client.client_id().to_owned(), "~other@1".into()],
    };
    let out = h.respond(broker, ok(list.opaque).with_body(ids.encode()));
    // Queue 3 has nothing out: its offset is written, then it is unlocked.
    let writes = of_code(&out, RequestCode::UPDATE_CONSUMER_OFFSET);
    let ids_written: Vec<i32> = writes
        .iter()
        .map(|w| {
            w.header::<UpdateConsumerOffsetRequestHeader>()
                .unwrap()
                .queue_id
        })
        .collect();
    assert_eq!(ids_written, [3]);
    assert!(of_code(&out, RequestCode::UNLOCK_BATCH_MQ).is_empty());
    let out = h.respond(broker, ok(writes[0].opaque));
    let unlocks = of_code(&out, RequestCode::UNLOCK_BATCH_MQ);
    assert_eq!(lock_ids(&unlocks[0]), BTreeSet::from([3]));
    // Queue 2 waits for its batch, then goes the same way, past it.
    let out = finish(&mut h, batch, OrderlyResult::Success);
    assert!(delivered(&out).is_empty(), "a released queue gets no batch");
    let writes = of_code(&out, RequestCode::UPDATE_CONSUMER_OFFSET);
    let header: UpdateConsumerOffsetRequestHeader = writes[0].header().unwrap();
    assert_eq!((header.queue_id, header.commit_offset), (2, 11));
    assert!(of_code(&out, RequestCode::UNLOCK_BATCH_MQ).is_empty());
    let out = h.respond(broker, ok(writes[0].opaque));
    assert_eq!(
        lock_ids(&of_code(&out, RequestCode::UNLOCK_BATCH_MQ)[0]),
        BTreeSet::from([2])
    );
    // Nothing of the released queues is left to run.
    let stats = match h.client.consumer_stats("G").unwrap() {
        Reply::ConsumerStats(s) => s,
        other => panic!("{other:?}"),
    };
    let held: Vec<i32> = stats.queues.iter().map(|(q, _)| q.queue_id).collect();
    assert_eq!(held, [0, 1]);
    // A minute on, nothing was asked of them: no lock, pull or offset write.
    let mut asked = BTreeSet::new();
    for _ in 0..120 {
        for (_, r) in transmits(&h.advance(Duration::from_millis(500))) {
            match r.request_code() {
                RequestCode::LOCK_BATCH_MQ => asked.extend(lock_ids(&r)),
                RequestCode::PULL_MESSAGE => {
                    asked.insert(r.header::<PullMessageRequestHeader>().unwrap().queue_id);
                }
                RequestCode::UPDATE_CONSUMER_OFFSET => {
                    let h: UpdateConsumerOffsetRequestHeader = r.header().unwrap();
                    asked.insert(h.queue_id);
                }
                _ => {}
            }
        }
    }
    assert!(asked.is_subset(&BTreeSet::from([0, 1])), "{asked:?}");
}

#[test]
fn shutdown_writes_the_offsets_then_unlocks_with_the_unregister_once_no_lock_is_out() {
    let (mut h, broker, _pulls) = locked(orderly(), &[0, 1]);
    // Queues 2 and 3 ask again; that request is still out at the shutdown.
    let retry = of_code(&h.advance(LOCK_RETRY), RequestCode::LOCK_BATCH_MQ);
    assert_eq!(lock_ids(&retry[0]), BTreeSet::from([2, 3]));
    let call = h
        .client
        .call(h.now, Call::ShutdownConsumer { group: "G".into() }, None);
    let out = h.outputs();
    let writes = of_code(&out, RequestCode::UPDATE_CONSUMER_OFFSET);
    assert_eq!(writes.len(), 2);
    assert!(of_code(&out, RequestCode::UNLOCK_BATCH_MQ).is_empty());
    let mut out = Vec::new();
    for w in &writes {
        out.extend(h.respond(broker, ok(w.opaque)));
    }
    // The broker runs requests on many threads: an unlock sent now could
    // be overtaken by the lock still out, which would hold the queue.
    assert!(of_code(&out, RequestCode::UNLOCK_BATCH_MQ).is_empty());
    assert!(of_code(&out, RequestCode::UNREGISTER_CLIENT).is_empty());
    let out = grant(&mut h, broker, &retry[0], &[2]);
    let unlocks = of_code(&out, RequestCode::UNLOCK_BATCH_MQ);
    assert_eq!(lock_ids(&unlocks[0]), BTreeSet::from([0, 1, 2]));
    let unregisters = of_code(&out, RequestCode::UNREGISTER_CLIENT);
    assert_eq!(unregisters.len(), 1);
    let mut out = h.respond(broker, ok(unlocks[0].opaque));
    out.extend(h.respond(broker, ok(unregisters[0].opaque)));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Reply { call: c, result: Ok(Reply::Done) } if *c == call)));
}

#[test]
fn a_released_queue_is_unlocked_after_its_offset_write_even_when_a_renewal_answers_first() {
    let (mut h, broker, _pulls) = locked(orderly(), &[0, 1, 2, 3]);
    // At 20 s the locks are renewed and the group listed again.
    let out = h.advance(LOCK_INTERVAL);
    let renew = of_code(&out, RequestCode::LOCK_BATCH_MQ);
    assert_eq!(lock_ids(&renew[0]), BTreeSet::from([0, 1, 2, 3]));
    // While the renewal is out, a second member takes queues 2 and 3.
    let list = &of_code(&out, RequestCode::GET_CONSUMER_LIST_BY_GROUP)[0];
    let ids = ConsumerIdList {
        consumer_id_list: vec![h.client.client_id().to_owned(), "~other@1".into()],
    };
    let out = h.respond(broker, ok(list.opaque).with_body(ids.encode()));
    let writes = of_code(&out, RequestCode::UPDATE_CONSUMER_OFFSET);
    assert_eq!(writes.len(), 2, "queues 2 and 3 write their offsets");
    assert!(of_code(&out, RequestCode::UNLOCK_BATCH_MQ).is_empty());
    // The renewal wins all four again: the released two are not unlocked
    // before their offsets are written.
    let out = grant(&mut h, broker, &renew[0], &[0, 1, 2, 3]);
    assert!(of_code(&out, RequestCode::UNLOCK_BATCH_MQ).is_empty());
    let mut unlocked = BTreeSet::new();
    for w in &writes {
        let out = h.respond(broker, ok(w.opaque));
        for u in of_code(&out, RequestCode::UNLOCK_BATCH_MQ) {
            unlocked.extend(lock_ids(&u));
        }
    }
    assert_eq!(unlocked, BTreeSet::from([2, 3]));
}
