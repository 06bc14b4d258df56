//! The local offset store of broadcasting consumers: where its file lives, and
//! its contents. The core decides what to write and when; the adapter reads and
//! writes the file ([`Output::Load`](crate::Output::Load),
//! [`Output::Persist`](crate::Output::Persist)), replacing it atomically: the
//! bytes go to `<file>.tmp`, which is then renamed over the file.

use serde::{Deserialize, Serialize};

use crate::protocol::MessageQueue;

/// The directory used when the config names none (Java's `~/.rocketmq_offsets`);
/// `~` is the adapter's to expand ([`expand_home`]).
pub const DEFAULT_DIR: &str = "~/.rocketmq_offsets";

/// The file of a group's offsets: `<dir>/<client id>/<group>/offsets.json`.
pub fn file_path(dir: Option<&str>, client_id: &str, group: &str) -> String {
    let dir = dir.unwrap_or(DEFAULT_DIR).trim_end_matches('/');
    // A client id may hold characters a file name should not (IPv6 colons).
    let id: String = client_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{dir}/{id}/{group}/offsets.json")
}

/// `path` with a leading `~/` replaced by `home`.
pub fn expand_home(path: &str, home: Option<&str>) -> String {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => format!("{}/{rest}", home.trim_end_matches('/')),
        _ => path.to_owned(),
    }
}

/// The temporary file a new version is written to before the rename.
pub fn temp_path(path: &str) -> String {
    format!("{path}.tmp")
}

/// One queue's offset in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    topic: String,
    broker_name: String,
    queue_id: i32,
    offset: i64,
}

/// The file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    offset_table: Vec<Entry>,
}

/// Encodes offsets for the file.
pub fn encode<'a>(offsets: impl IntoIterator<Item = (&'a MessageQueue, i64)>) -> Vec<u8> {
    let file = File {
        offset_table: offsets
            .into_iter()
            .map(|(q, offset)| Entry {
                topic: q.topic.clone(),
                broker_name: q.broker_name.clone(),
                queue_id: q.queue_id,
                offset,
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&file).unwrap_or_default()
}

/// Reads the file's offsets; a damaged file is an error (the caller starts
/// those queues by its consume-from rule and says so).
pub fn decode(data: &[u8]) -> Result<Vec<(MessageQueue, i64)>, String> {
    let file: File = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    Ok(file
        .offset_table
        .into_iter()
        .filter(|e| e.offset >= 0)
        .map(|e| {
            (
                MessageQueue::new(e.topic, e.broker_name, e.queue_id),
                e.offset,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_round_trip() {
        assert_eq!(
            file_path(None, "10.0.0.1@main", "G"),
            "~/.rocketmq_offsets/10.0.0.1@main/G/offsets.json"
        );
        assert_eq!(
            file_path(Some("/var/lib/x/"), "::1@a", "G"),
            "/var/lib/x/__1@a/G/offsets.json"
        );
        assert_eq!(expand_home("~/.r/f", Some("/home/u/")), "/home/u/.r/f");
        assert_eq!(expand_home("/abs", Some("/home/u")), "/abs");
        let q = MessageQueue::new("T", "room1@broker-a", 3);
        let data = encode([(&q, 42)]);
        assert_eq!(decode(&data).unwrap(), [(q, 42)]);
        assert!(decode(b"{not json").is_err());
    }
}
