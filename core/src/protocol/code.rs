//! Request and response codes, and the sender's language.
//!
//! Codes are open sets: a peer may send a number this crate does not know, so every
//! enum keeps it in an `Unknown` variant and converts back to the same number.

macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A number this crate has no name for, kept as received.
            Unknown($repr),
        }

        impl $name {
            /// The number on the wire.
            pub const fn value(self) -> $repr {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Unknown(v) => v,
                }
            }

            /// The variant for a number on the wire (`Unknown` if unnamed).
            pub const fn from_value(v: $repr) -> Self {
                match v {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }

            /// The Java constant name, if the number has one.
            pub const fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$variant => Some(stringify!($variant)), )*
                    Self::Unknown(_) => None,
                }
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                Self::from_value(v)
            }
        }

        impl From<$name> for $repr {
            fn from(c: $name) -> Self {
                c.value()
            }
        }
    };
}

open_enum! {
    /// Request codes (`RequestCode.java`) a client sends or receives.
    #[allow(non_camel_case_types)]
    pub enum RequestCode: i32 {
        /// Send one message (V1 header keys).
        SEND_MESSAGE = 10,
        /// Pull messages from a queue.
        PULL_MESSAGE = 11,
        /// Query messages by key.
        QUERY_MESSAGE = 12,
        /// Read a group's committed offset of a queue.
        QUERY_CONSUMER_OFFSET = 14,
        /// Commit a group's offset of a queue.
        UPDATE_CONSUMER_OFFSET = 15,
        /// Create or update a topic on a broker.
        UPDATE_AND_CREATE_TOPIC = 17,
        /// Find the queue offset of a store timestamp.
        SEARCH_OFFSET_BY_TIMESTAMP = 29,
        /// One past the last offset of a queue.
        GET_MAX_OFFSET = 30,
        /// The first offset of a queue.
        GET_MIN_OFFSET = 31,
        /// Store time of a queue's earliest message.
        GET_EARLIEST_MSG_STORETIME = 32,
        /// Read one message by its commit-log offset.
        VIEW_MESSAGE_BY_ID = 33,
        /// Client heartbeat with producer and consumer data.
        HEART_BEAT = 34,
        /// Remove a client from its groups.
        UNREGISTER_CLIENT = 35,
        /// Return a message for a later retry.
        CONSUMER_SEND_MSG_BACK = 36,
        /// Commit or roll back a transactional message.
        END_TRANSACTION = 37,
        /// Client ids of a consumer group.
        GET_CONSUMER_LIST_BY_GROUP = 38,
        /// Broker asks a producer for a transaction's state.
        CHECK_TRANSACTION_STATE = 39,
        /// Broker tells a consumer that its group changed.
        NOTIFY_CONSUMER_IDS_CHANGED = 40,
        /// Lock queues for orderly consumption.
        LOCK_BATCH_MQ = 41,
        /// Unlock queues held for orderly consumption.
        UNLOCK_BATCH_MQ = 42,
        /// Check a non-tag subscription before using it.
        CHECK_CLIENT_CONFIG = 46,
        /// Route of a topic from the name server.
        GET_ROUTEINFO_BY_TOPIC = 105,
        /// Cluster and broker tables from the name server.
        GET_BROKER_CLUSTER_INFO = 106,
        /// Create or update a subscription group.
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200,
        /// Statistics of a topic.
        GET_TOPIC_STATS_INFO = 202,
        /// Delete a subscription group.
        DELETE_SUBSCRIPTIONGROUP = 207,
        /// Consumption statistics of a group.
        GET_CONSUME_STATS = 208,
        /// Delete a topic on a broker.
        DELETE_TOPIC_IN_BROKER = 215,
        /// Delete a topic on the name server.
        DELETE_TOPIC_IN_NAMESRV = 216,
        /// Broker tells a consumer to reset its offsets.
        RESET_CONSUMER_CLIENT_OFFSET = 220,
        /// Broker asks a consumer for its offsets.
        GET_CONSUMER_STATUS_FROM_CLIENT = 221,
        /// Admin asks a broker to reset a group's offsets.
        INVOKE_BROKER_TO_RESET_OFFSET = 222,
        /// Admin asks a consumer for its running state.
        GET_CONSUMER_RUNNING_INFO = 307,
        /// Admin asks a consumer to consume one message now.
        CONSUME_MESSAGE_DIRECTLY = 309,
        /// Send one message (V2 one-letter header keys).
        SEND_MESSAGE_V2 = 310,
        /// Send a batch of messages.
        SEND_BATCH_MESSAGE = 320,
        /// Send a reply message.
        SEND_REPLY_MESSAGE = 324,
        /// Send a reply message (V2 header keys).
        SEND_REPLY_MESSAGE_V2 = 325,
        /// Broker pushes a reply message to a requester.
        PUSH_REPLY_MESSAGE_TO_CLIENT = 326,
        /// Pull for the lite pull consumer.
        LITE_PULL_MESSAGE = 361,
        /// Recall a delayed message.
        RECALL_MESSAGE = 370,
        /// Broker-side queue assignment.
        QUERY_ASSIGNMENT = 400,
        /// Set a group's request mode (pull or pop).
        SET_MESSAGE_REQUEST_MODE = 401,
        /// Pop messages (JSON headers only: the code does not fit the binary form).
        POP_MESSAGE = 200050,
        /// Acknowledge a popped message.
        ACK_MESSAGE = 200051,
        /// Peek messages.
        PEEK_MESSAGE = 200052,
        /// Change a popped message's invisible time.
        CHANGE_MESSAGE_INVISIBLETIME = 200053,
        /// Pop notification.
        NOTIFICATION = 200054,
        /// Pop polling information.
        POLLING_INFO = 200055,
        /// Roll back a pop.
        POP_ROLLBACK = 200056,
        /// Acknowledge popped messages in a batch.
        BATCH_ACK_MESSAGE = 200151,
    }
}

open_enum! {
    /// Response codes (`ResponseCode.java`, `RemotingSysResponseCode.java`).
    #[allow(non_camel_case_types)]
    pub enum ResponseCode: i32 {
        /// The request succeeded.
        SUCCESS = 0,
        /// The server failed; the remark says why.
        SYSTEM_ERROR = 1,
        /// The server is overloaded; back off and retry.
        SYSTEM_BUSY = 2,
        /// The server does not handle this request code.
        REQUEST_CODE_NOT_SUPPORTED = 3,
        /// A transaction failed.
        TRANSACTION_FAILED = 4,
        /// Stored, but the flush to disk timed out.
        FLUSH_DISK_TIMEOUT = 10,
        /// Stored, but no slave is available.
        SLAVE_NOT_AVAILABLE = 11,
        /// Stored, but replication to the slave timed out.
        FLUSH_SLAVE_TIMEOUT = 12,
        /// The message is malformed or too large.
        MESSAGE_ILLEGAL = 13,
        /// The service is not available (e.g. broker shutting down).
        SERVICE_NOT_AVAILABLE = 14,
        /// The version is not supported.
        VERSION_NOT_SUPPORTED = 15,
        /// The operation is not permitted.
        NO_PERMISSION = 16,
        /// The topic does not exist.
        TOPIC_NOT_EXIST = 17,
        /// The topic already exists.
        TOPIC_EXIST_ALREADY = 18,
        /// No message at the requested offset yet.
        PULL_NOT_FOUND = 19,
        /// Pull again at once from the next offset.
        PULL_RETRY_IMMEDIATELY = 20,
        /// The requested offset is out of range; use the suggested one.
        PULL_OFFSET_MOVED = 21,
        /// Nothing found for the query.
        QUERY_NOT_FOUND = 22,
        /// The subscription expression does not parse.
        SUBSCRIPTION_PARSE_FAILED = 23,
        /// The broker has no subscription for the group.
        SUBSCRIPTION_NOT_EXIST = 24,
        /// The broker's subscription is older than the request's.
        SUBSCRIPTION_NOT_LATEST = 25,
        /// The subscription group does not exist.
        SUBSCRIPTION_GROUP_NOT_EXIST = 26,
        /// The broker has no filter data for the subscription.
        FILTER_DATA_NOT_EXIST = 27,
        /// The broker's filter data is older than the request's.
        FILTER_DATA_NOT_LATEST = 28,
        /// A request parameter is invalid.
        INVALID_PARAMETER = 29,
        /// The transaction should be committed.
        TRANSACTION_SHOULD_COMMIT = 200,
        /// The transaction should be rolled back.
        TRANSACTION_SHOULD_ROLLBACK = 201,
        /// The transaction state is unknown.
        TRANSACTION_STATE_UNKNOW = 202,
        /// The transaction's group is wrong.
        TRANSACTION_STATE_GROUP_WRONG = 203,
        /// No buyer id.
        NO_BUYER_ID = 204,
        /// Not in the current unit.
        NOT_IN_CURRENT_UNIT = 205,
        /// The consumer is not online.
        CONSUMER_NOT_ONLINE = 206,
        /// Consuming the message timed out.
        CONSUME_MSG_TIMEOUT = 207,
        /// No message.
        NO_MESSAGE = 208,
        /// Too many pop requests are parked.
        POLLING_FULL = 209,
        /// A pop request expired.
        POLLING_TIMEOUT = 210,
        /// The broker does not exist.
        BROKER_NOT_EXIST = 211,
        /// Dispatch is not complete.
        BROKER_DISPATCH_NOT_COMPLETE = 212,
        /// Broadcast consumption is not allowed here.
        BROADCAST_CONSUMPTION = 213,
        /// Flow control on the broker; retry shortly.
        FLOW_CONTROL = 215,
        /// Not the leader for the queue.
        NOT_LEADER_FOR_QUEUE = 501,
        /// Illegal operation.
        ILLEGAL_OPERATION = 604,
        /// The server is shutting down; reconnect and retry once.
        GO_AWAY = 1500,
        /// The user does not exist (ACL).
        USER_NOT_EXIST = 3001,
        /// The policy does not exist (ACL).
        POLICY_NOT_EXIST = 3002,
    }
}

open_enum! {
    /// The language a peer declares (`LanguageCode.java`).
    pub enum LanguageCode: u8 {
        /// Java.
        Java = 0,
        /// C++.
        Cpp = 1,
        /// .NET.
        Dotnet = 2,
        /// Python.
        Python = 3,
        /// Delphi.
        Delphi = 4,
        /// Erlang.
        Erlang = 5,
        /// Ruby.
        Ruby = 6,
        /// Other.
        Other = 7,
        /// HTTP.
        Http = 8,
        /// Go.
        Go = 9,
        /// PHP.
        Php = 10,
        /// OMS.
        Oms = 11,
        /// Rust (known to brokers since 4.9.4).
        Rust = 12,
        /// Node.js.
        NodeJs = 13,
    }
}

/// Java names of the languages, in code order.
const LANGUAGE_NAMES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

impl LanguageCode {
    /// The Java enum name, as JSON headers carry it. A code without a name is
    /// written as `OTHER`.
    pub fn java_name(self) -> &'static str {
        LANGUAGE_NAMES
            .get(usize::from(self.value()))
            .copied()
            .unwrap_or("OTHER")
    }

    /// The language for a Java enum name; `None` for a name this crate does not know.
    pub fn from_java_name(name: &str) -> Option<Self> {
        LANGUAGE_NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(Self::from_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_keep_unknown_numbers() {
        assert_eq!(
            RequestCode::from_value(105),
            RequestCode::GET_ROUTEINFO_BY_TOPIC
        );
        assert_eq!(
            RequestCode::from_value(424242),
            RequestCode::Unknown(424242)
        );
        assert_eq!(RequestCode::Unknown(424242).value(), 424242);
        assert_eq!(ResponseCode::from_value(1500), ResponseCode::GO_AWAY);
        assert_eq!(ResponseCode::from_value(-1006).value(), -1006);
        assert_eq!(
            ResponseCode::PULL_OFFSET_MOVED.name(),
            Some("PULL_OFFSET_MOVED")
        );
        for v in 0..=255u8 {
            assert_eq!(LanguageCode::from_value(v).value(), v);
        }
    }

    #[test]
    fn language_names_match_java() {
        assert_eq!(LanguageCode::Rust.java_name(), "RUST");
        assert_eq!(LanguageCode::NodeJs.java_name(), "NODE_JS");
        assert_eq!(LanguageCode::Unknown(99).java_name(), "OTHER");
        assert_eq!(LanguageCode::from_java_name("GO"), Some(LanguageCode::Go));
        assert_eq!(LanguageCode::from_java_name("COBOL"), None);
        for v in 0..14u8 {
            let l = LanguageCode::from_value(v);
            assert_eq!(LanguageCode::from_java_name(l.java_name()), Some(l));
        }
    }
}
