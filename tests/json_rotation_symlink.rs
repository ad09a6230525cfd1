//! `JsonFile` size rotation through a symbolic link: a path that is a link (the log put on
//! another volume, `/var/log/app.jsonl -> /data/logs/app.jsonl`) is rotated where it leads. The
//! file at the end of the link is renamed to `<target>.1` … next to it and created again there,
//! and the link stays, pointing at the live file.
//!
//! Adversary pass 65 found the fault: the sink followed the link everywhere else (it writes to
//! the link's target, checks the target's device and inode before each batch, creates a
//! dangling link's target), but size rotation renamed the link itself. After the first
//! rotation the link was gone, the sink wrote a new regular file next to where the link was
//! (on the volume the link was meant to keep the log off), and the target file kept its lines
//! outside the rotation for good (never shifted, never deleted: `keep` did not bound it).
#![cfg(unix)]

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;

use support::*;
use tracing_offload::sink::{JsonFile, Rotation};
use tracing_offload::{Guard, OffloadLayer};

/// A pipeline with one JSON sink at `path`, rotating at 256 bytes.
fn rotating_at_256_bytes(path: &Path, keep: usize) -> (OffloadLayer, Guard) {
    OffloadLayer::builder()
        .sink(JsonFile::new(path).rotation(Rotation::Size {
            max_bytes: 256,
            keep,
        }))
        .build()
        .unwrap()
}

/// Writes the lines `from..to`, each in a batch of its own: one line of about 250 bytes, so
/// that each batch but the first into a file rotates it.
fn lines_one_per_batch(handle: &tracing_offload::Handle, from: u64, to: u64) {
    for i in from..to {
        tracing::info!(i, "padding padding padding padding padding padding padding");
        handle.flush(DEADLINE).unwrap();
    }
}

/// The names in `dir`, sorted, of regular files only (`DirEntry::file_type` does not follow
/// links).
#[track_caller]
fn regular_files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The `i` field of each line of `path`, in order.
#[track_caller]
fn numbers_in(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("whole JSON lines");
            v["fields"]["i"].as_u64().unwrap()
        })
        .collect()
}

#[track_caller]
fn assert_is_link_to(link: &Path, target: &Path) {
    let meta = std::fs::symlink_metadata(link).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "the path the user made a link to {} is now a regular file after rotation; regular \
         files next to it: {:?}; the target holds {} lines",
        target.display(),
        regular_files_in(link.parent().unwrap()),
        std::fs::read_to_string(target).map_or(0, |t| t.lines().count())
    );
    assert_eq!(std::fs::read_link(link).unwrap(), target);
}

#[test]
fn size_rotation_keeps_a_symlinked_path_pointing_where_the_user_put_the_log() {
    let var_log = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let target = data.path().join("app.jsonl");
    let link = var_log.path().join("app.jsonl");
    symlink(&target, &link).unwrap();
    let (layer, guard) = rotating_at_256_bytes(&link, 2);
    let handle = guard.handle();
    with_layer(layer, || lines_one_per_batch(&handle, 0, 8));
    guard.shutdown(DEADLINE).unwrap();
    let sink = handle.stats().sink("json").unwrap().clone();
    assert_eq!(sink.exported, 8, "{sink:?}");
    assert_eq!(sink.failed, 0, "{sink:?}");
    assert_is_link_to(&link, &target);
    assert!(
        regular_files_in(var_log.path()).is_empty(),
        "log files written next to the link: {:?}",
        regular_files_in(var_log.path())
    );
    // Rotated where the log is, `keep` bounding it: the newest three lines, one per file.
    assert_eq!(
        regular_files_in(data.path()),
        ["app.jsonl", "app.jsonl.1", "app.jsonl.2"]
    );
    assert_eq!(numbers_in(&target), [7]);
    assert_eq!(numbers_in(&data.path().join("app.jsonl.1")), [6]);
    assert_eq!(numbers_in(&data.path().join("app.jsonl.2")), [5]);
}

/// A relative target is taken from the link's directory (as the system takes it), through a
/// chain of links, and with `keep: 0` the live file is deleted and made again, the links
/// staying.
#[test]
fn a_relative_link_chain_is_rotated_at_its_end() {
    let root = tempfile::tempdir().unwrap();
    let var_log = root.path().join("var_log");
    let data = root.path().join("data");
    std::fs::create_dir(&var_log).unwrap();
    std::fs::create_dir(&data).unwrap();
    let link = var_log.join("app.jsonl");
    let middle = var_log.join("current.jsonl");
    symlink("current.jsonl", &link).unwrap();
    symlink("../data/real.jsonl", &middle).unwrap();
    let (layer, guard) = rotating_at_256_bytes(&link, 0);
    let handle = guard.handle();
    with_layer(layer, || lines_one_per_batch(&handle, 0, 4));
    guard.shutdown(DEADLINE).unwrap();
    let sink = handle.stats().sink("json").unwrap().clone();
    assert_eq!((sink.exported, sink.failed), (4, 0), "{sink:?}");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("current.jsonl")
    );
    assert_eq!(
        std::fs::read_link(&middle).unwrap(),
        Path::new("../data/real.jsonl")
    );
    assert!(regular_files_in(&var_log).is_empty());
    assert_eq!(regular_files_in(&data), ["real.jsonl"]);
    assert_eq!(numbers_in(&data.join("real.jsonl")), [3]);
}

/// A link to nothing gets its target created (at build), which then rotates; a link the
/// operator points elsewhere while the sink runs is followed (the device-and-inode check) and
/// the new target rotates next to it, the old one left as it was.
#[test]
fn a_dangling_link_and_a_link_pointed_elsewhere_rotate_where_they_lead() {
    let var_log = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let first = data.path().join("first/app.jsonl");
    let second = data.path().join("second.jsonl");
    let link = var_log.path().join("app.jsonl");
    std::fs::create_dir(first.parent().unwrap()).unwrap();
    symlink(&first, &link).unwrap();
    let (layer, guard) = rotating_at_256_bytes(&link, 1);
    assert!(first.is_file(), "build() creates the link's target");
    let handle = guard.handle();
    with_layer(layer, || {
        lines_one_per_batch(&handle, 0, 3);
        // The operator points the link at another file, replacing it as `ln -sfn` does.
        let new_link = var_log.path().join("app.jsonl.new");
        symlink(&second, &new_link).unwrap();
        std::fs::rename(&new_link, &link).unwrap();
        lines_one_per_batch(&handle, 3, 6);
    });
    guard.shutdown(DEADLINE).unwrap();
    let sink = handle.stats().sink("json").unwrap().clone();
    assert_eq!((sink.exported, sink.failed), (6, 0), "{sink:?}");
    assert_is_link_to(&link, &second);
    assert!(regular_files_in(var_log.path()).is_empty());
    let first_dir = first.parent().unwrap();
    assert_eq!(regular_files_in(first_dir), ["app.jsonl", "app.jsonl.1"]);
    assert_eq!(numbers_in(&first), [2]);
    assert_eq!(numbers_in(&first_dir.join("app.jsonl.1")), [1]);
    assert_eq!(numbers_in(&second), [5]);
    assert_eq!(numbers_in(&data.path().join("second.jsonl.1")), [4]);
    assert!(!data.path().join("second.jsonl.2").exists());
}
