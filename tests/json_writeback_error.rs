//! An error the system finds only when it writes its page cache back to the device (a failing
//! disk, a thin volume or a network file system out of space) is reported by the JSON sink:
//! `write` took the records, which were counted exported, and only a sync of the file says they
//! may be lost. The sink used to never sync its file: it stayed healthy, shutdown said all was
//! written, and 4 199 of 6 000 records were not in the file (adversary pass 51).
//!
//! The device: an ext4 image on a loop device, whose backing file is sparse on a tmpfs too
//! small for it. Needs root and loop devices; skipped, saying so, where they are not available
//! (`OFFLOAD_REQUIRE_LOOP_DEVICE=1` makes that a failure).
#![cfg(target_os = "linux")]
mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::sink::JsonFile;
use tracing_offload::{Backpressure, OffloadLayer};

/// A file system whose device runs out of space at write-back.
struct ThinVolume {
    base: PathBuf,
}

fn sh(script: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .is_ok_and(|s| s.success())
}

impl ThinVolume {
    /// `tag`: the test's own, so that the tests of this binary, run at once, each have one.
    fn new(tag: &str) -> Option<ThinVolume> {
        let base = std::env::temp_dir().join(format!("offload-thin-{tag}-{}", std::process::id()));
        let volume = ThinVolume { base };
        let b = volume.base.display();
        let made = sh(&format!(
            "mkdir -p {b}/back {b}/fs && mount -t tmpfs -o size=3m tmpfs {b}/back && \
             truncate -s 64M {b}/back/img && \
             mkfs.ext4 -q -F -O ^has_journal -E lazy_itable_init=1,nodiscard {b}/back/img && \
             mount -o loop {b}/back/img {b}/fs"
        ));
        made.then_some(volume)
    }

    fn fs(&self) -> PathBuf {
        self.base.join("fs")
    }

    /// Mounts the image again: the file then holds what reached the device.
    fn remount(&self) {
        let b = self.base.display();
        assert!(sh(&format!(
            "umount {b}/fs && mount -o loop {b}/back/img {b}/fs"
        )));
    }
}

impl Drop for ThinVolume {
    fn drop(&mut self) {
        let b = self.base.display();
        sh(&format!("umount -l {b}/fs; umount -l {b}/back; rm -rf {b}"));
    }
}

/// Records written in one burst to a JSON file on a thin volume.
const RECORDS: u64 = 6_000;

/// A pipeline writing to a file on a [`ThinVolume`], after a burst of [`RECORDS`] records of
/// about 1 KB (twice what the volume holds) and a flush; `None`, having said why, where there
/// is no loop device.
fn burst_on_a_thin_volume(
    tag: &str,
) -> Option<(
    ThinVolume,
    PathBuf,
    tracing_offload::Guard,
    tracing_offload::Handle,
    tracing::Dispatch,
)> {
    let Some(volume) = ThinVolume::new(tag) else {
        skip_unless_required(
            "OFFLOAD_REQUIRE_LOOP_DEVICE",
            "cannot mount a loop device here (needs root, loop devices and mkfs.ext4)",
        );
        return None;
    };
    let path = volume.fs().join("app.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block { timeout: DEADLINE })
        .sink(JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    let pad = "p".repeat(900);
    let dispatch = dispatch(layer);
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..RECORDS {
            tracing::info!(i, pad = pad.as_str(), "tick");
        }
    });
    handle.flush(DEADLINE).unwrap();
    Some((volume, path, guard, handle, dispatch))
}

#[test]
fn a_write_back_error_is_reported_not_hidden() {
    let Some((volume, path, guard, handle, dispatch)) = burst_on_a_thin_volume("shutdown") else {
        return;
    };
    let records = RECORDS;
    drop(dispatch);
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let json = stats.sink("json").unwrap().clone();
    let health = handle.health();
    let component = health.component("sink:json").unwrap().clone();
    volume.remount();
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    let whole = text
        .split_terminator('\n')
        .filter(|line| serde_json::from_str::<serde_json::Value>(line).is_ok())
        .count() as u64;
    // The volume holds 3 MiB of the 6 MB written: records were lost, by the system.
    assert!(whole < records, "{whole} of {records} records in the file");
    assert_eq!(json.exported, records, "{json:#?}");
    // Counted: at least every record missing from the file, at most every record written.
    assert!(
        (records - whole..=records).contains(&json.lost_after_export),
        "{} records missing, {} counted lost after export",
        records - whole,
        json.lost_after_export
    );
    let error = json.last_error.unwrap_or_default();
    assert!(
        error.contains("syncing") && error.contains("may be lost"),
        "the loss was not reported: {error:?}"
    );
    assert_ne!(component.status, HealthStatus::Healthy, "{component:#?}");
}

/// A burst, then quiet: the sink syncs while idle too, so the error shows within seconds, not
/// at the next batch or at shutdown (the burst ended within a second of the last sync, and the
/// sink, idle, never synced again: healthy for as long as the program stayed quiet; adversary
/// pass 54).
#[test]
fn a_write_back_error_shows_while_the_sink_is_idle() {
    let Some((_volume, _path, guard, handle, dispatch)) = burst_on_a_thin_volume("idle") else {
        return;
    };
    wait_until("the write-back error in health", DEADLINE, || {
        let health = handle.health();
        let sink = health.component("sink:json").unwrap();
        sink.status != HealthStatus::Healthy
            && sink
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("may be lost"))
    });
    // The next batch goes into the system's cache as usual (the device is still full): the
    // loss stays in health for the drop window, as drops do, and is counted; the next batch's
    // success made the sink healthy again at once, and nothing counted it (adversary pass 54).
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("one more"));
    handle.flush(DEADLINE).unwrap();
    let health = handle.health();
    let sink = health.component("sink:json").unwrap();
    assert_ne!(sink.status, HealthStatus::Healthy, "{sink:#?}");
    assert!(sink.message.contains("possibly lost"), "{sink:#?}");
    let stats = handle.stats();
    assert!(stats.sink("json").unwrap().lost_after_export > 0);
    drop(dispatch);
    guard.shutdown(DEADLINE).unwrap();
}

/// A failed sync is a loss the sink learned of, not a failure to export: the sink is not
/// "failing" for it (an idle sink went unhealthy for good: adversary pass 55), and drop
/// markers written before it are not counted as records lost (`lost_after_export` went above
/// `exported` by the markers: pass 55).
#[test]
fn a_failed_sync_counts_records_only_and_does_not_make_the_sink_failing() {
    let Some(volume) = ThinVolume::new("markers") else {
        skip_unless_required(
            "OFFLOAD_REQUIRE_LOOP_DEVICE",
            "cannot mount a loop device here (needs root, loop devices and mkfs.ext4)",
        );
        return;
    };
    let path = volume.fs().join("app.jsonl");
    // A small queue that overflows: drop markers go into the file between the records.
    let (layer, guard) = OffloadLayer::builder()
        .capacity(16)
        .sink(JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    let pad = "p".repeat(3000);
    let dispatch = dispatch(layer);
    // Bursts (each overflows the queue: markers) until twice what the volume holds is written.
    while handle.stats().sink("json").unwrap().exported * 3_000 < 6 << 20 {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..2_000u64 {
                tracing::info!(i, pad = pad.as_str(), "tick");
            }
        });
        handle.flush(DEADLINE).unwrap();
    }
    wait_until("the failed sync", DEADLINE, || {
        handle.stats().sink("json").unwrap().lost_after_export > 0
    });
    let stats = handle.stats();
    let json = stats.sink("json").unwrap();
    assert!(stats.dropped > 0, "no marker was written: {stats:#?}");
    assert!(json.lost_after_export <= json.exported, "{json:#?}");
    assert_eq!(json.failing_for, None, "{json:#?}");
    let health = handle.health();
    let sink = health.component("sink:json").unwrap();
    assert_eq!(sink.status, HealthStatus::Degraded, "{sink:#?}");
    drop(dispatch);
    guard.shutdown(DEADLINE).unwrap();
    let json = handle.stats().sink("json").unwrap().clone();
    assert!(json.lost_after_export <= json.exported, "{json:#?}");
}
