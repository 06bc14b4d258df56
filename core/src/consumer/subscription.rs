//! A consumer's subscriptions: which topics, with which filter, and the
//! client-side tag check after each pull.

use std::collections::BTreeMap;

use crate::protocol::body::{ExpressionType, SubscriptionData};

/// Which messages of a topic a subscription takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A tag expression: `*` for every message, or `A || B`.
    Tag(String),
    /// An SQL92 expression over message properties (the broker must run with
    /// `enablePropertyFilter=true`).
    Sql92(String),
}

impl Selector {
    /// Every message of the topic.
    pub fn all() -> Self {
        Self::Tag("*".into())
    }

    /// A tag expression (`*`, `A`, `A || B`).
    pub fn tag(expression: impl Into<String>) -> Self {
        Self::Tag(expression.into())
    }

    /// An SQL92 expression.
    pub fn sql92(expression: impl Into<String>) -> Self {
        Self::Sql92(expression.into())
    }

    /// The subscription as heartbeats and pulls carry it.
    pub fn to_data(&self, topic: &str, sub_version: i64) -> SubscriptionData {
        match self {
            Self::Tag(e) => SubscriptionData::from_tag_expression(topic, e, sub_version),
            Self::Sql92(e) => SubscriptionData::from_sql92(topic, e, sub_version),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tag(e) => write!(f, "tag expression {e:?}"),
            Self::Sql92(e) => write!(f, "SQL92 {e:?}"),
        }
    }
}

/// Why a subscription change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The topic is already subscribed with another selector, and the caller did
    /// not ask to replace it.
    #[error("topic {topic} is already subscribed with {existing}; asked for {requested} without replace")]
    Conflict {
        /// The topic.
        topic: String,
        /// The selector in force.
        existing: String,
        /// The selector asked for.
        requested: String,
    },
    /// The topic name breaks the broker's rules.
    #[error("cannot subscribe: {0}")]
    InvalidTopic(String),
    /// A broker refused the subscription when the consumer started (Java's
    /// CHECK_CLIENT_CONFIG): a bad SQL92 expression, or a broker without
    /// `enablePropertyFilter=true`.
    #[error("the broker refused the subscription to {topic}: {reason}")]
    Refused {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
}

/// One subscribed topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The selector as given.
    pub selector: Selector,
    /// Its wire form.
    pub data: SubscriptionData,
}

/// The topics a consumer takes messages from (the seed's SubscriptionManager).
#[derive(Clone, Debug, Default)]
pub struct Subscriptions {
    topics: BTreeMap<String, Subscription>,
}

impl Subscriptions {
    /// Subscribes `topic`. The same selector again changes nothing (`Ok(false)`);
    /// another selector is a [`SubscribeError::Conflict`] unless `replace`.
    /// `Ok(true)` means the subscription changed.
    pub fn subscribe(
        &mut self,
        topic: &str,
        selector: Selector,
        replace: bool,
        sub_version: i64,
    ) -> Result<bool, SubscribeError> {
        crate::producer::validate_topic(topic)
            .map_err(|e| SubscribeError::InvalidTopic(e.to_string()))?;
        if let Some(existing) = self.topics.get(topic) {
            if existing.selector == selector {
                return Ok(false);
            }
            if !replace {
                return Err(SubscribeError::Conflict {
                    topic: topic.to_owned(),
                    existing: existing.selector.to_string(),
                    requested: selector.to_string(),
                });
            }
        }
        let data = selector.to_data(topic, sub_version);
        self.topics
            .insert(topic.to_owned(), Subscription { selector, data });
        Ok(true)
    }

    /// Drops `topic`; whether it was subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.topics.remove(topic).is_some()
    }

    /// The subscription of `topic`.
    pub fn get(&self, topic: &str) -> Option<&Subscription> {
        self.topics.get(topic)
    }

    /// Subscribed topics, in name order.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    /// Every subscription.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Subscription)> {
        self.topics.iter().map(|(t, s)| (t.as_str(), s))
    }

    /// Whether nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }
}

/// The client-side check after a pull, as Java's `processPullResult`: a tag
/// subscription other than `*` takes only messages whose tag is one of its tags
/// (the broker filters by tag hash, which can collide). SQL92 is left to the
/// broker.
pub fn tag_matches(data: &SubscriptionData, tag: Option<&str>) -> bool {
    if data.expression_type != ExpressionType::Tag || data.is_all() {
        return true;
    }
    tag.is_some_and(|t| data.tags_set.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_selector_is_a_no_op_another_conflicts_unless_replaced() {
        let mut s = Subscriptions::default();
        assert_eq!(
            s.subscribe("T", Selector::tag("A || B"), false, 1),
            Ok(true)
        );
        assert_eq!(
            s.subscribe("T", Selector::tag("A || B"), false, 2),
            Ok(false)
        );
        assert!(matches!(
            s.subscribe("T", Selector::tag("C"), false, 3),
            Err(SubscribeError::Conflict { .. })
        ));
        assert_eq!(s.get("T").unwrap().selector, Selector::tag("A || B"));
        assert_eq!(
            s.subscribe("T", Selector::sql92("a > 1"), true, 4),
            Ok(true)
        );
        assert_eq!(
            s.get("T").unwrap().data.expression_type,
            ExpressionType::Sql92
        );
        assert!(matches!(
            s.subscribe("bad topic", Selector::all(), false, 5),
            Err(SubscribeError::InvalidTopic(_))
        ));
        assert!(s.unsubscribe("T"));
        assert!(!s.unsubscribe("T"));
        assert!(s.is_empty());
    }

    #[test]
    fn tags_are_rechecked_on_the_client() {
        let ab = Selector::tag("A || B").to_data("T", 0);
        assert!(tag_matches(&ab, Some("A")));
        assert!(tag_matches(&ab, Some("B")));
        assert!(!tag_matches(&ab, Some("C")));
        assert!(!tag_matches(&ab, None));
        let all = Selector::all().to_data("T", 0);
        assert!(tag_matches(&all, None));
        let sql = Selector::sql92("a > 1").to_data("T", 0);
        assert!(tag_matches(&sql, Some("anything")));
    }
}
