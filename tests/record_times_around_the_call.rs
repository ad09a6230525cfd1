//! Each event's time lies between `SystemTime::now()` read just before and just after the call,
//! and one thread's events are in order, on a busy machine (a thread spinning on each CPU) with
//! a fresh anchor for every record (batches of one). The drain thread anchors the counter to the
//! system clock once per batch; an anchor whose readings a time slice fell between dated the
//! whole batch that much late (4 – 16 ms), and put one thread's events out of order (found by
//! an adversary, pass 44: 5 runs in 6). Busy threads: a test binary of its own.
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use support::*;
use tracing_offload::{FieldValue, OffloadLayer, Record};

#[test]
fn event_times_lie_between_the_system_clock_read_around_the_call() {
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(1 << 16)
        .batch_size(1)
        .sink(sink.clone())
        .build()
        .unwrap();
    const N: usize = 50_000;
    let mut around = Vec::with_capacity(N);
    with_layer(layer, || {
        for seq in 0..N as u64 {
            let before = SystemTime::now();
            tracing::info!(seq, "tick");
            around.push((before, SystemTime::now()));
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    // The counter's rate is refined against the OS's clock; this is far above its error.
    let slack = Duration::from_micros(20);
    let mut outside = Vec::new();
    let mut last = SystemTime::UNIX_EPOCH;
    let mut inversions = 0;
    let events: Vec<_> = sink
        .data()
        .into_iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), N);
    for e in &events {
        let Some(FieldValue::U64(seq)) = e.fields().get("seq") else {
            panic!("no seq: {e:?}");
        };
        let (before, after) = around[seq as usize];
        let ts = e.timestamp();
        if ts + slack < before || ts > after + slack {
            outside.push((seq, before.duration_since(ts), ts.duration_since(after)));
        }
        inversions += usize::from(ts < last);
        last = ts;
    }
    assert!(
        outside.is_empty(),
        "{} of {N} events dated outside the call: {:?}",
        outside.len(),
        &outside[..outside.len().min(5)]
    );
    assert_eq!(inversions, 0, "one thread's events out of order");
}
