//! Bad input gets a clear error or a valid, marked record — never a panic.
mod support;

use support::*;
use tracing_offload::{sink, BuildError, OffloadLayer};

#[test]
fn an_unwritable_path_is_a_build_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let bad = file.join("under-a-file.jsonl"); // a directory that is a file
    let err = OffloadLayer::builder()
        .sink(sink::JsonFile::new(&bad))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Sink { .. }), "{err:?}");
    let msg = error_chain(&err);
    assert!(
        msg.contains("under-a-file.jsonl") && msg.contains("json"),
        "{msg}"
    );
}

#[test]
fn capacity_zero_and_duplicate_sink_names_are_errors() {
    let err = OffloadLayer::builder().capacity(0).build().unwrap_err();
    assert!(err.to_string().contains("capacity"), "{err}");
    let err = OffloadLayer::builder()
        .sink(Collect::new("same"))
        .sink(Collect::new("same"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BuildError::DuplicateSinkName(ref n) if n == "same"),
        "{err}"
    );
}

#[test]
fn hostile_values_become_valid_marked_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .max_field_len(1024)
        .sink(sink::JsonFile::new(&path))
        .build()
        .unwrap();
    let huge = "é".repeat(512 * 1024); // 1 MiB of two-byte characters
    let control = "tab\tnul\0bell\u{7}\nnewline \"quoted\" \\ back";
    let json_like = r#"{"level":"fake","nested":[1,2,{"x":"}"}]"#;
    with_layer(layer, || {
        tracing::info!(
            control,
            json_like,
            huge = huge.as_str(),
            "hostile {}",
            control
        );
        tracing::info!(debug = ?vec![huge.as_str()], nan = f64::NAN, big = u128::MAX, "debug");
    });
    guard.shutdown(DEADLINE).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is valid JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    let f = &lines[0]["fields"];
    assert_eq!(f["control"], control);
    assert_eq!(f["json_like"], json_like);
    let cut = f["huge"].as_str().unwrap();
    assert!(
        cut.ends_with("…[truncated from 1048576 bytes]"),
        "{}",
        &cut[cut.len() - 40..]
    );
    assert!(cut.len() < 1100, "capped at 1024 bytes plus the marker");
    assert_eq!(lines[0]["message"], format!("hostile {control}"));
    assert!(lines[1]["fields"]["debug"]
        .as_str()
        .unwrap()
        .contains("truncated from"));
    assert_eq!(lines[1]["fields"]["nan"], "NaN");
    // 128-bit integers are written exactly (a JSON number; `Value` itself would round it).
    assert!(
        text.contains(&format!("\"big\":{}", u128::MAX)),
        "{}",
        text.lines().nth(1).unwrap()
    );
    assert_eq!(guard.handle().stats().truncated_values, 2);
}
