//! A process killed (`SIGKILL`) while it spools through an outage loses nothing it spooled: the
//! next process on the same directory replays all of it when the collector is up. What the
//! kill cut short (at most the request being written) is found by its checksum, counted, and
//! does not keep the rest from being replayed.
//!
//! The spooling process is this test binary run again (the `#[ignore]`d `child_…` entry point,
//! as `panic_hook_flush.rs` does): it spools numbered spans until it is killed, printing how
//! many are in the spool after each flush.
#![cfg(feature = "otlp")]
mod support;

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::collector::{span_numbers, Collector};
use support::*;
use tracing_offload::sink::otlp::EventsAsLogs;
use tracing_offload::sink::Otlp;
use tracing_offload::{Backpressure, OffloadLayer};

const DIR: &str = "CHILD_SPOOL_DIR";
const ENDPOINT: &str = "CHILD_ENDPOINT";

fn sink(endpoint: String, dir: &std::path::Path) -> Otlp {
    spooling_sink(endpoint, "offload-spool-restart", dir)
        .events_as_logs(EventsAsLogs::None)
        .max_export_batch_size(50)
}

/// The spooling process: the collector is down; spans go to the spool, as fast as they come,
/// until the process is killed. Prints `spooled N` every 100 spans: N records are in the
/// spool's files by then.
#[test]
#[ignore = "run by the test below, in a child process"]
fn child_spools_until_killed() {
    let (Ok(dir), Ok(endpoint)) = (std::env::var(DIR), std::env::var(ENDPOINT)) else {
        return;
    };
    // Blocking, so that no span is dropped before the spool: their numbers have no gaps.
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        .sink(sink(endpoint, dir.as_ref()))
        .build()
        .unwrap();
    let handle = guard.handle();
    let mut stdout = std::io::stdout();
    tracing::dispatcher::with_default(&dispatch(layer), || {
        for i in 0u64.. {
            drop(tracing::info_span!("work", i).entered());
            if i % 100 == 99 {
                let spooled = handle.stats().sink("otlp").unwrap().spooled;
                writeln!(stdout, "spooled {spooled}").unwrap();
                stdout.flush().unwrap();
            }
        }
    });
}

/// Kills the child when dropped, whatever happens to the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn spans_spooled_by_a_killed_process_are_delivered_by_the_next_one() {
    // Two free ports, where a collector will listen later.
    let Some((grpc, http)) = Collector::ports_for_later() else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let dir = tempfile::tempdir().unwrap();

    // 1. The first process spools through the outage, and is killed mid-stream.
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "child_spools_until_killed",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(DIR, dir.path())
            .env(ENDPOINT, &endpoint)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test binary runs again"),
    );
    let spooled = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stdout, spooled) = (child.0.stdout.take().unwrap(), Arc::clone(&spooled));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("spooled ") {
                    spooled.store(n.parse().unwrap(), Ordering::Relaxed);
                }
            }
        })
    };
    wait_until("the child to spool 5000 spans", DEADLINE, || {
        spooled.load(Ordering::Relaxed) >= 5000
    });
    drop(child); // SIGKILL, while it goes on spooling
    reader.join().unwrap();
    let durable = spooled.load(Ordering::Relaxed);

    // 2. The next process, with the collector up, replays what the first one left.
    let collector = Collector::start_on(grpc, http).unwrap();
    let (_layer, guard) = OffloadLayer::builder()
        .sink(sink(endpoint, dir.path()))
        .build()
        .unwrap();
    let handle = guard.handle();
    let restored = otlp_spool(&handle);
    assert!(
        restored.restored >= durable,
        "every record spooled before the kill is found: {restored:#?}, {durable} spooled"
    );
    assert!(
        restored.corrupt_batches <= 1,
        "at most the request being written is lost: {restored:#?}"
    );
    wait_spool_replayed("the spool replayed", &handle);
    guard.shutdown(DEADLINE).unwrap();
    let spool = otlp_spool(&handle);
    assert_eq!(
        spool.replayed + spool.corrupt_records,
        spool.restored,
        "{spool:#?}"
    );
    assert_eq!(spool.lost(), spool.corrupt_records, "{spool:#?}");
    assert!(spool.replayed >= durable, "{spool:#?}, {durable} spooled");

    // The collector got every replayed span, once: spans 0.. in order of spooling, none missing.
    let received = collector.wait_spans(spool.replayed as usize);
    let ids: HashSet<&str> = received.iter().map(|s| s.span_id.as_str()).collect();
    let numbers = span_numbers(&received);
    assert_eq!(received.len() as u64, spool.replayed);
    assert_eq!(ids.len() as u64, spool.replayed);
    assert_eq!(numbers, (0..spool.replayed).collect::<BTreeSet<_>>());
}
