//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same
//! entry points the cargo-fuzz targets call, on stable Rust, in `cargo test`.

use std::path::PathBuf;

use rocketmq_core::fuzzing;

/// A fuzz target's entry point.
type Target = fn(&[u8]);

/// Every fuzz target, by the name of its corpus directory.
const TARGETS: &[(&str, Target)] = &[
    ("frame_stream", fuzzing::frame_stream),
    ("json_header", fuzzing::json_header),
    ("binary_header", fuzzing::binary_header),
    ("message_batch", fuzzing::message_batch),
    ("route_data", fuzzing::route_data),
    ("heartbeat", fuzzing::heartbeat),
    ("consumer_id_list", fuzzing::consumer_id_list),
    ("lock_batch_request", fuzzing::lock_batch_request),
    ("lock_batch_response", fuzzing::lock_batch_response),
    ("reset_offset", fuzzing::reset_offset),
    ("consumer_status", fuzzing::consumer_status),
    ("consumer_running_info", fuzzing::consumer_running_info),
    ("consume_directly_result", fuzzing::consume_directly_result),
    ("check_client", fuzzing::check_client),
];

#[test]
fn corpus_replays_without_failure() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut known: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    known.sort();
    assert_eq!(
        dirs, known,
        "each corpus directory needs its entry here, and each target a corpus"
    );
    let targets_rs = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml"),
    )
    .unwrap();
    for (name, run) in TARGETS {
        assert!(
            targets_rs.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks target {name}"
        );
        let mut files = 0;
        for entry in std::fs::read_dir(root.join(name)).unwrap() {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            files += 1;
        }
        assert!(files > 0, "corpus of {name} is empty");
    }
}
