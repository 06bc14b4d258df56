//! Push consumer settings: Java's defaults, checked before anything starts, and
//! loadable from environment variables.

use std::time::Duration;

use super::allocate::AllocateStrategy;

pub use crate::protocol::body::MessageModel;

/// Where a queue starts when the group has no stored offset for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsumeFrom {
    /// After the last message (Java's `CONSUME_FROM_LAST_OFFSET`). The broker may
    /// still answer 0 for a queue whose messages are all in memory.
    #[default]
    LastOffset,
    /// From the first message still stored.
    FirstOffset,
    /// From the first message stored at or after this time (ms since the epoch).
    /// Unlike Java, a new group starts there even while the broker still holds
    /// the queue's messages in memory (the client asks the broker not to answer
    /// 0 for a missing offset).
    Timestamp(i64),
}

/// A setting that cannot work, named so the user knows what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("consumer setting `{field}` {reason}")]
pub struct ConfigError {
    /// The setting's name, as in [`ConsumerConfig`] (and, upper-cased with the
    /// `ROCKETMQ_CONSUMER_` prefix, its environment variable).
    pub field: &'static str,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Everything a push consumer can be told. `ConsumerConfig::new(group)` has the
/// Java client's defaults.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Consumer group (required): 1..=255 characters of `[%|a-zA-Z0-9_-]`.
    pub group: String,
    /// Clustering (default) or broadcasting.
    pub message_model: MessageModel,
    /// Start point of a queue without a stored offset.
    pub consume_from: ConsumeFrom,
    /// How clustering consumers share queues (default AVG, Java's).
    pub allocate: AllocateStrategy,
    /// Deliveries of a failing message before it goes to the group's DLQ.
    /// -1, Java's default, means 16 for a concurrent consumer and no limit for
    /// an orderly one (its queue waits for the message however long it takes).
    pub max_reconsume_times: i32,
    /// Orderly consumption (Java's `MessageListenerOrderly`): each queue is
    /// locked on its broker before its messages are processed, and handed out
    /// one batch at a time in offset order. The adapters' `start_orderly` sets
    /// it.
    pub orderly: bool,
    /// Orderly: how long a queue waits after its listener asked to suspend it
    /// without saying for how long (Java's `suspendCurrentQueueTimeMillis`,
    /// 1 s).
    pub suspend_time: Duration,
    /// Listener calls running at once (Java's consume thread count, 20).
    pub consume_concurrency: usize,
    /// Listener calls handed to the adapter beyond `consume_concurrency`, to
    /// wait in its queue (0). The blocking adapter queues as many as it has
    /// threads, so that a thread done with one call takes the next at once
    /// instead of waiting for the driver (Java's consume pool queues every
    /// pulled message). Their consume timeout counts from the hand-over.
    pub dispatch_ahead: usize,
    /// How long a listener call may run before it is logged as overdue
    /// (15 min, checked at each rebalance round). An overdue call is never
    /// delivered a second time while it runs; its messages hold their queue's
    /// offset until it finishes.
    pub consume_timeout: Duration,
    /// Most messages per listener call (1).
    pub consume_batch_size: usize,
    /// Most messages per pull (32).
    pub pull_batch_size: u32,
    /// Pause between pulls of one queue (none).
    pub pull_interval: Duration,
    /// How often consumed offsets are written to the broker or the local file (5 s).
    pub persist_interval: Duration,
    /// Directory of the local offset store of broadcasting consumers; `None` is
    /// `~/.rocketmq_offsets`, as Java. The file is `<dir>/<client id>/<group>/offsets.json`.
    pub offset_store_dir: Option<String>,
    /// Most messages cached per queue before its pulls pause (1000).
    pub queue_cache_count: usize,
    /// Most body bytes cached per queue before its pulls pause (100 MiB).
    pub queue_cache_bytes: usize,
    /// Most messages cached by all queues of the consumer together (100,000).
    pub global_cache_count: usize,
    /// Most body bytes cached by all queues of the consumer together (512 MiB).
    pub global_cache_bytes: usize,
    /// Largest distance between the first and last cached offset of a queue
    /// before its pulls pause (2000).
    pub max_span: i64,
    /// How long shutdown waits for running listener calls (10 s).
    pub shutdown_timeout: Duration,
}

impl ConsumerConfig {
    /// Java's defaults for `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            message_model: MessageModel::Clustering,
            consume_from: ConsumeFrom::LastOffset,
            allocate: AllocateStrategy::default(),
            max_reconsume_times: -1,
            orderly: false,
            suspend_time: Duration::from_secs(1),
            consume_concurrency: 20,
            dispatch_ahead: 0,
            consume_timeout: Duration::from_secs(15 * 60),
            consume_batch_size: 1,
            pull_batch_size: 32,
            pull_interval: Duration::ZERO,
            persist_interval: Duration::from_secs(5),
            offset_store_dir: None,
            queue_cache_count: 1000,
            queue_cache_bytes: 100 * 1024 * 1024,
            global_cache_count: 100_000,
            global_cache_bytes: 512 * 1024 * 1024,
            max_span: 2000,
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    /// Checks every setting as Java's `checkConfig` does, and the ones Java
    /// lacks; the first bad one is named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-');
        if self.group.is_empty() || self.group.len() > 255 || !self.group.chars().all(ok_char) {
            return Err(ConfigError::new(
                "group",
                format!(
                    "is {:?}; it must be 1..=255 characters of [%|a-zA-Z0-9_-]",
                    self.group
                ),
            ));
        }
        if self.group == "DEFAULT_CONSUMER" {
            return Err(ConfigError::new(
                "group",
                "is DEFAULT_CONSUMER, which is reserved; choose a group name",
            ));
        }
        let range = |field: &'static str, v: i64, lo: i64, hi: i64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    field,
                    format!("is {v}; it must be in {lo}..={hi}"),
                ))
            }
        };
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        range(
            "max_reconsume_times",
            i64::from(self.max_reconsume_times),
            -1,
            16 * 1024,
        )?;
        range("consume_concurrency", n(self.consume_concurrency), 1, 1000)?;
        range("dispatch_ahead", n(self.dispatch_ahead), 0, 10_000)?;
        range("consume_batch_size", n(self.consume_batch_size), 1, 1024)?;
        range("pull_batch_size", i64::from(self.pull_batch_size), 1, 1024)?;
        range("queue_cache_count", n(self.queue_cache_count), 1, 65535)?;
        range(
            "queue_cache_bytes",
            n(self.queue_cache_bytes),
            1,
            1024 * 1024 * 1024,
        )?;
        range(
            "global_cache_count",
            n(self.global_cache_count),
            1,
            i64::MAX,
        )?;
        range(
            "global_cache_bytes",
            n(self.global_cache_bytes),
            1,
            i64::MAX,
        )?;
        range("max_span", self.max_span, 1, 65535)?;
        let millis = |field: &'static str, d: Duration, lo: u128, hi: u128| {
            if (lo..=hi).contains(&d.as_millis()) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    field,
                    format!("is {d:?}; it must be {lo} ms ..= {hi} ms"),
                ))
            }
        };
        millis("pull_interval", self.pull_interval, 0, 65535)?;
        millis("consume_timeout", self.consume_timeout, 1, 24 * 3_600_000)?;
        millis("persist_interval", self.persist_interval, 100, 3_600_000)?;
        millis("shutdown_timeout", self.shutdown_timeout, 0, 3_600_000)?;
        millis("suspend_time", self.suspend_time, 10, 30_000)?;
        if let ConsumeFrom::Timestamp(ms) = self.consume_from {
            if ms < 0 {
                return Err(ConfigError::new(
                    "consume_from",
                    format!("has timestamp {ms}; it must be ms since the epoch"),
                ));
            }
        }
        if let AllocateStrategy::ConsistentHash { virtual_nodes: 0 } = self.allocate {
            return Err(ConfigError::new(
                "allocate",
                "is CONSISTENT_HASH with no virtual nodes, which gives no consumer any queue",
            ));
        }
        Ok(())
    }

    /// Applies settings from environment variables named `ROCKETMQ_CONSUMER_<FIELD>`
    /// (`ROCKETMQ_CONSUMER_PULL_BATCH_SIZE=16`, say). Durations are in ms;
    /// `MESSAGE_MODEL` is `CLUSTERING` or `BROADCASTING`; `CONSUME_FROM` is
    /// `LAST_OFFSET`, `FIRST_OFFSET` or `TIMESTAMP:<ms>`; `ALLOCATE` is a strategy
    /// name (`AVG`, `AVG_BY_CIRCLE`, `CONSISTENT_HASH`, `HASH`). A
    /// `ROCKETMQ_CONSUMER_` variable that names no setting is an error, so a
    /// typo is not silently ignored; other variables are. The adapters pass in
    /// `std::env::vars()`; the core reads no environment itself.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        const PREFIX: &str = "ROCKETMQ_CONSUMER_";
        for (name, value) in vars {
            let Some(field) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let value = value.trim();
            self.apply_one(&field.to_ascii_lowercase(), value)?;
        }
        Ok(())
    }

    fn apply_one(&mut self, field: &str, value: &str) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, ConfigError> {
            value
                .parse()
                .map_err(|_| ConfigError::new(field, format!("is {value:?}, not a number")))
        }
        let ms = |field: &'static str| parse::<u64>(field, value).map(Duration::from_millis);
        match field {
            "group" => self.group = value.to_owned(),
            "message_model" => {
                self.message_model = match value.to_ascii_uppercase().as_str() {
                    "CLUSTERING" => MessageModel::Clustering,
                    "BROADCASTING" => MessageModel::Broadcasting,
                    _ => {
                        return Err(ConfigError::new(
                            "message_model",
                            format!("is {value:?}; use CLUSTERING or BROADCASTING"),
                        ))
                    }
                }
            }
            "consume_from" => {
                let upper = value.to_ascii_uppercase();
                self.consume_from = match upper.trim_start_matches("CONSUME_FROM_") {
                    "LAST_OFFSET" => ConsumeFrom::LastOffset,
                    "FIRST_OFFSET" => ConsumeFrom::FirstOffset,
                    other => match other.strip_prefix("TIMESTAMP:") {
                        Some(ms) => ConsumeFrom::Timestamp(parse("consume_from", ms)?),
                        None => {
                            return Err(ConfigError::new(
                                "consume_from",
                                format!(
                                    "is {value:?}; use LAST_OFFSET, FIRST_OFFSET or TIMESTAMP:<ms>"
                                ),
                            ))
                        }
                    },
                }
            }
            "allocate" => {
                self.allocate = AllocateStrategy::from_name(value).ok_or_else(|| {
                    ConfigError::new(
                        "allocate",
                        format!("is {value:?}; use AVG, AVG_BY_CIRCLE, CONSISTENT_HASH or HASH"),
                    )
                })?;
            }
            "max_reconsume_times" => {
                self.max_reconsume_times = parse("max_reconsume_times", value)?
            }
            "consume_concurrency" => {
                self.consume_concurrency = parse("consume_concurrency", value)?
            }
            "dispatch_ahead" => self.dispatch_ahead = parse("dispatch_ahead", value)?,
            "consume_timeout" => self.consume_timeout = ms("consume_timeout")?,
            "consume_batch_size" => self.consume_batch_size = parse("consume_batch_size", value)?,
            "pull_batch_size" => self.pull_batch_size = parse("pull_batch_size", value)?,
            "pull_interval" => self.pull_interval = ms("pull_interval")?,
            "persist_interval" => self.persist_interval = ms("persist_interval")?,
            "offset_store_dir" => self.offset_store_dir = Some(value.to_owned()),
            "queue_cache_count" => self.queue_cache_count = parse("queue_cache_count", value)?,
            "queue_cache_bytes" => self.queue_cache_bytes = parse("queue_cache_bytes", value)?,
            "global_cache_count" => self.global_cache_count = parse("global_cache_count", value)?,
            "global_cache_bytes" => self.global_cache_bytes = parse("global_cache_bytes", value)?,
            "max_span" => self.max_span = parse("max_span", value)?,
            "shutdown_timeout" => self.shutdown_timeout = ms("shutdown_timeout")?,
            "suspend_time" => self.suspend_time = ms("suspend_time")?,
            other => {
                return Err(ConfigError::new(
                    "ROCKETMQ_CONSUMER_*",
                    format!(
                        "`ROCKETMQ_CONSUMER_{}` names no setting (a typo?); the names are the fields of ConsumerConfig, upper-cased",
                        other.to_ascii_uppercase()
                    ),
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        ConsumerConfig::new("orders").validate().unwrap();
        let bad = |f: fn(&mut ConsumerConfig)| {
            let mut c = ConsumerConfig::new("orders");
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.group = String::new()), "group");
        assert_eq!(bad(|c| c.group = "a b".into()), "group");
        assert_eq!(bad(|c| c.group = "DEFAULT_CONSUMER".into()), "group");
        assert_eq!(bad(|c| c.consume_concurrency = 0), "consume_concurrency");
        assert_eq!(bad(|c| c.pull_batch_size = 1025), "pull_batch_size");
        assert_eq!(bad(|c| c.consume_batch_size = 0), "consume_batch_size");
        assert_eq!(bad(|c| c.queue_cache_count = 0), "queue_cache_count");
        assert_eq!(bad(|c| c.global_cache_bytes = 0), "global_cache_bytes");
        assert_eq!(bad(|c| c.max_span = 0), "max_span");
        assert_eq!(bad(|c| c.max_reconsume_times = -2), "max_reconsume_times");
        assert_eq!(
            bad(|c| c.suspend_time = Duration::from_secs(31)),
            "suspend_time"
        );
        assert_eq!(
            bad(|c| c.persist_interval = Duration::from_millis(1)),
            "persist_interval"
        );
        assert_eq!(
            bad(|c| c.consume_from = ConsumeFrom::Timestamp(-1)),
            "consume_from"
        );
        assert_eq!(
            bad(|c| c.allocate = AllocateStrategy::ConsistentHash { virtual_nodes: 0 }),
            "allocate"
        );
    }

    #[test]
    fn environment_variables_set_fields_and_bad_ones_are_named() {
        let mut c = ConsumerConfig::new("orders");
        let vars = [
            ("ROCKETMQ_CONSUMER_PULL_BATCH_SIZE", "16"),
            ("ROCKETMQ_CONSUMER_MESSAGE_MODEL", "broadcasting"),
            ("ROCKETMQ_CONSUMER_CONSUME_FROM", "TIMESTAMP:1732500000000"),
            ("ROCKETMQ_CONSUMER_PERSIST_INTERVAL", "1000"),
            ("ROCKETMQ_CONSUMER_ALLOCATE", "AVG_BY_CIRCLE"),
            ("PATH", "/usr/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        c.apply_env(vars).unwrap();
        assert_eq!(c.pull_batch_size, 16);
        assert_eq!(c.message_model, MessageModel::Broadcasting);
        assert_eq!(c.consume_from, ConsumeFrom::Timestamp(1_732_500_000_000));
        assert_eq!(c.persist_interval, Duration::from_secs(1));
        assert_eq!(c.allocate.name(), "AVG_BY_CIRCLE");
        let err = c
            .apply_env([("ROCKETMQ_CONSUMER_MAX_SPAN".to_owned(), "lots".to_owned())])
            .unwrap_err();
        assert_eq!(err.field, "max_span");
        let err = c
            .apply_env([("ROCKETMQ_CONSUMER_PULL_BATCH".to_owned(), "8".to_owned())])
            .unwrap_err();
        assert!(err.reason.contains("ROCKETMQ_CONSUMER_PULL_BATCH"), "{err}");
    }
}
