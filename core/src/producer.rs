//! What a send needs besides the wire: message checks, queue selection, and when
//! to try another broker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::ClientError;
use crate::protocol::body::java_string_hash;
use crate::protocol::code::ResponseCode;
use crate::protocol::message::{property, Message};
use crate::protocol::MessageQueue;

/// Largest body a producer sends (Java's `maxMessageSize`, 4 MiB).
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Longest topic name (Java's `TopicValidator`).
pub const MAX_TOPIC_LEN: usize = 127;

/// How long a broker that just failed a send is passed over by the selectors that
/// may choose (round robin, random).
pub const FAILED_BROKER_ISOLATION: Duration = Duration::from_secs(10);

/// Extra attempts of a send on another broker (Java's `retryTimesWhenSendFailed`).
pub const SEND_RETRIES: u32 = 2;

/// How a send picks its queue among the topic's writable queues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum QueueSelector {
    /// The next queue in turn, passing over brokers that just failed (the
    /// default, as Java's).
    #[default]
    RoundRobin,
    /// A random queue (from the client's seeded generator), passing over brokers
    /// that just failed.
    Random,
    /// The queue at `java_string_hash(key) % count`: the same queue Java's
    /// `SelectMessageQueueByHash` picks for the same key, so messages with one key
    /// stay in order whichever client sent them.
    Hash(String),
    /// Exactly this queue (what a user-supplied selector resolves to).
    Queue(MessageQueue),
}

/// Checks a message against the rules the broker and the Java client enforce.
pub fn validate(message: &Message) -> Result<(), ClientError> {
    validate_topic(&message.topic)?;
    // The broker fails on an empty body (Java reads it as null), and the Java
    // client refuses one, as it refuses bodies over its 4 MiB maximum.
    if message.body.is_empty() || message.body.len() > MAX_MESSAGE_SIZE {
        return Err(ClientError::InvalidMessage(format!(
            "body of {} bytes (must be 1..={MAX_MESSAGE_SIZE})",
            message.body.len()
        )));
    }
    for (k, v) in &message.properties {
        if k.is_empty() || [k, v].iter().any(|s| s.contains(['\u{1}', '\u{2}'])) {
            return Err(ClientError::InvalidMessage(format!(
                "property {k:?} is empty or contains a separator character"
            )));
        }
    }
    if let Some(level) = message.properties.get(property::DELAY_TIME_LEVEL) {
        if level.parse::<u32>().is_err() {
            return Err(ClientError::InvalidMessage(format!(
                "delay level {level:?} is not a number"
            )));
        }
    }
    Ok(())
}

/// Checks a topic name (Java's `Validators.checkTopic`): 1 to 127 characters of
/// `[%|a-zA-Z0-9_-]`.
pub fn validate_topic(topic: &str) -> Result<(), ClientError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-');
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || !topic.chars().all(ok_char) {
        return Err(ClientError::InvalidMessage(format!(
            "topic {topic:?} must be 1..={MAX_TOPIC_LEN} characters of [%|a-zA-Z0-9_-]"
        )));
    }
    Ok(())
}

/// Checks a batch (Java's `MessageBatch.generateFromList`): every message valid,
/// one topic, no delay, not a retry topic, and the same `WAIT` flag.
pub fn validate_batch(messages: &[Message]) -> Result<(), ClientError> {
    let Some(first) = messages.first() else {
        return Err(ClientError::InvalidMessage(
            "a batch needs at least one message".into(),
        ));
    };
    for m in messages {
        validate(m)?;
        if m.topic != first.topic {
            return Err(ClientError::InvalidMessage(
                "a batch must have one topic".into(),
            ));
        }
        if m.properties.contains_key(property::DELAY_TIME_LEVEL) {
            return Err(ClientError::InvalidMessage(
                "a batch cannot carry delayed messages".into(),
            ));
        }
        if m.properties.get(property::WAIT_STORE_MSG_OK)
            != first.properties.get(property::WAIT_STORE_MSG_OK)
        {
            return Err(ClientError::InvalidMessage(
                "a batch must agree on WAIT".into(),
            ));
        }
    }
    if first.topic.starts_with("%RETRY%") {
        return Err(ClientError::InvalidMessage(
            "a batch cannot go to a retry topic".into(),
        ));
    }
    Ok(())
}

/// Response codes after which Java's sync send tries another broker.
pub fn retryable(code: ResponseCode) -> bool {
    matches!(
        code,
        ResponseCode::TOPIC_NOT_EXIST
            | ResponseCode::SERVICE_NOT_AVAILABLE
            | ResponseCode::SYSTEM_ERROR
            | ResponseCode::SYSTEM_BUSY
            | ResponseCode::NO_PERMISSION
            | ResponseCode::NO_BUYER_ID
            | ResponseCode::NOT_IN_CURRENT_UNIT
            | ResponseCode::GO_AWAY
    )
}

/// Picks queues for sends: per-topic turns, a seeded random generator, and the
/// brokers that just failed.
#[derive(Debug)]
pub(crate) struct Selection {
    turns: HashMap<String, usize>,
    rng: u64,
    failed: HashMap<String, Instant>,
}

impl Selection {
    pub(crate) fn new(seed: u64) -> Self {
        // Spread the seed (splitmix64) so that near seeds give unrelated
        // sequences; xorshift must not start at zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self {
            turns: HashMap::new(),
            rng: (z ^ (z >> 31)) | 1,
            failed: HashMap::new(),
        }
    }

    /// Remembers that `broker` just failed a send.
    pub(crate) fn failed(&mut self, broker: &str, now: Instant) {
        self.failed
            .insert(broker.to_owned(), now + FAILED_BROKER_ISOLATION);
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: small, fast, and reproducible from the client's seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The queue for a send. `usable(broker)` says whether a broker is reachable
    /// now (not in reconnect backoff); `avoid` is the broker of the previous
    /// attempt. Round robin and random pass over failed, unusable and avoided
    /// brokers while any other is left.
    pub(crate) fn select<'q>(
        &mut self,
        now: Instant,
        topic: &str,
        queues: &'q [MessageQueue],
        selector: &QueueSelector,
        avoid: Option<&str>,
        usable: impl Fn(&str) -> bool,
    ) -> Option<MessageQueue> {
        if queues.is_empty() {
            return None;
        }
        let i = match selector {
            QueueSelector::Queue(q) => return Some(q.clone()),
            QueueSelector::Hash(key) => {
                let i = (java_string_hash(key) % queues.len() as i32).unsigned_abs() as usize;
                return queues.get(i).cloned();
            }
            QueueSelector::RoundRobin => match self.turns.get_mut(topic) {
                Some(turn) => {
                    *turn = turn.wrapping_add(1);
                    *turn
                }
                None => {
                    self.turns.insert(topic.to_owned(), 1);
                    1
                }
            },
            QueueSelector::Random => self.next_random() as usize,
        };
        if !self.failed.is_empty() {
            self.failed.retain(|_, until| *until > now);
        }
        // Queues come grouped by broker, so each broker is judged once per run.
        let failed = &self.failed;
        let mut last: Option<(&str, bool)> = None;
        let mut fine = |q: &'q MessageQueue| match last {
            Some((broker, ok)) if broker == q.broker_name => ok,
            _ => {
                let ok = !failed.contains_key(&q.broker_name)
                    && Some(q.broker_name.as_str()) != avoid
                    && usable(&q.broker_name);
                last = Some((&q.broker_name, ok));
                ok
            }
        };
        let candidates = queues.iter().filter(|q| fine(q)).count();
        if candidates == 0 {
            // Every broker is out of favour: take the turn among all of them.
            return queues.get(i % queues.len()).cloned();
        }
        queues
            .iter()
            .filter(|q| fine(q))
            .nth(i % candidates)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues() -> Vec<MessageQueue> {
        ["a", "b"]
            .iter()
            .flat_map(|b| (0..2).map(move |i| MessageQueue::new("T", format!("broker-{b}"), i)))
            .collect()
    }

    #[allow(clippy::disallowed_methods)] // an arbitrary origin, passed in as the client's would be
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn round_robin_turns_and_passes_over_a_failed_broker() {
        let now = origin();
        let mut s = Selection::new(7);
        let picks: Vec<String> = (0..4)
            .map(|_| {
                s.select(
                    now,
                    "T",
                    &queues(),
                    &QueueSelector::RoundRobin,
                    None,
                    |_| true,
                )
                .unwrap()
                .to_string()
            })
            .collect();
        assert_eq!(
            picks,
            [
                "T@broker-a#1",
                "T@broker-b#0",
                "T@broker-b#1",
                "T@broker-a#0"
            ]
        );
        s.failed("broker-a", now);
        for _ in 0..8 {
            let q = s
                .select(
                    now,
                    "T",
                    &queues(),
                    &QueueSelector::RoundRobin,
                    None,
                    |_| true,
                )
                .unwrap();
            assert_eq!(q.broker_name, "broker-b");
        }
        // The isolation ends; so does an avoided broker when it is the only one left.
        let later = now + FAILED_BROKER_ISOLATION;
        let brokers: Vec<String> = (0..4)
            .map(|_| {
                s.select(
                    later,
                    "T",
                    &queues(),
                    &QueueSelector::RoundRobin,
                    None,
                    |_| true,
                )
                .unwrap()
                .broker_name
            })
            .collect();
        assert!(brokers.contains(&"broker-a".to_owned()));
        let only_b = &queues()[2..];
        let q = s
            .select(
                later,
                "T",
                only_b,
                &QueueSelector::RoundRobin,
                Some("broker-b"),
                |_| true,
            )
            .unwrap();
        assert_eq!(q.broker_name, "broker-b");
        let q = s
            .select(later, "T", &queues(), &QueueSelector::Random, None, |b| {
                b != "broker-a"
            })
            .unwrap();
        assert_eq!(q.broker_name, "broker-b");
    }

    #[test]
    fn hash_matches_java_select_message_queue_by_hash() {
        let now = origin();
        let mut s = Selection::new(1);
        // Java: Math.abs("order-1".hashCode() % 4).
        let h = java_string_hash("order-1");
        let want = (h % 4).unsigned_abs() as usize;
        let q = s
            .select(
                now,
                "T",
                &queues(),
                &QueueSelector::Hash("order-1".into()),
                None,
                |_| true,
            )
            .unwrap();
        assert_eq!(q, queues()[want]);
        // The same key always lands on the same queue, failed broker or not.
        s.failed(&q.broker_name, now);
        assert_eq!(
            s.select(
                now,
                "T",
                &queues(),
                &QueueSelector::Hash("order-1".into()),
                None,
                |_| true
            ),
            Some(q)
        );
    }

    #[test]
    fn random_is_reproducible_from_the_seed() {
        let now = origin();
        let run = |seed| {
            let mut s = Selection::new(seed);
            (0..16)
                .map(|_| {
                    s.select(now, "T", &queues(), &QueueSelector::Random, None, |_| true)
                        .unwrap()
                        .queue_id
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn message_rules() {
        let ok = Message::new("Topic_1-%|x", &b"x"[..]);
        assert!(validate(&ok).is_ok());
        for bad in [
            Message::new("", &b"x"[..]),
            Message::new("has space", &b"x"[..]),
            Message::new("t".repeat(128), &b"x"[..]),
            Message::new("T", &b""[..]),
            Message::new("T", &b"x"[..]).with_property("k", "v\u{1}"),
            Message::new("T", &b"x"[..]).with_property(property::DELAY_TIME_LEVEL, "soon"),
        ] {
            assert!(
                matches!(validate(&bad), Err(ClientError::InvalidMessage(_))),
                "{bad:?}"
            );
        }
        let a = Message::new("T", &b"1"[..]);
        assert!(validate_batch(&[a.clone(), a.clone()]).is_ok());
        assert!(validate_batch(&[]).is_err());
        assert!(validate_batch(&[a.clone(), Message::new("U", &b"2"[..])]).is_err());
        assert!(
            validate_batch(&[a.clone().with_property(property::DELAY_TIME_LEVEL, "3")]).is_err()
        );
        assert!(validate_batch(&[Message::new("%RETRY%g", &b"1"[..])]).is_err());
    }
}
