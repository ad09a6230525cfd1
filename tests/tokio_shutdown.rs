//! A multi-thread tokio runtime whose tasks keep logging (events, and spans across `.await`)
//! while the runtime is shut down and the guard is dropped in async contexts (adversary pass
//! 60: held; kept as regression tests).
//! Each scenario runs in a child process with a deadline; the parent checks exact accounting:
//! what the user offered == stats.offered, and lines in the file + counted drops == offered.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use tracing_offload::{sink, Backpressure, OffloadLayer};
use tracing_subscriber::prelude::*;

#[path = "support/child_scenario.rs"]
mod child_scenario;
use child_scenario::{report, run_checked, Outcome, FILE, SCENARIO};

static EVENTS: AtomicU64 = AtomicU64::new(0);
static SPANS: AtomicU64 = AtomicU64::new(0);

/// The events and spans the scenario offered.
fn offered() -> u64 {
    EVENTS.load(SeqCst) + SPANS.load(SeqCst)
}

fn check(scenario: &str) {
    let Outcome {
        verdict: v,
        written,
        stderr,
        ..
    } = run_checked(scenario);
    assert_eq!(
        written + v["dropped"] + v["sampled_out"] + v["sink_dropped"] + v["sink_failed"],
        v["offered"],
        "lines + counted drops vs offered: {v:?}\n{stderr}"
    );
}

fn builder(file: &Path) -> tracing_offload::Builder {
    OffloadLayer::builder()
        .capacity(1024)
        .backpressure(Backpressure::DropNewest)
        .sink(sink::JsonFile::new(file))
}

/// A task that logs forever: a span per iteration, held across `.await`s, events inside.
async fn chatter(task: u64) {
    let mut i = 0u64;
    loop {
        SPANS.fetch_add(1, SeqCst);
        let span = tracing::info_span!("iteration", task, i);
        async {
            EVENTS.fetch_add(1, SeqCst);
            tracing::info!(task, i, "before await");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_micros(50)).await;
            EVENTS.fetch_add(1, SeqCst);
            tracing::info!(task, i, "after await");
        }
        .instrument(span)
        .await;
        i += 1;
    }
}

fn spawn_chatter(rt: &tokio::runtime::Handle, tasks: u64) {
    for t in 0..tasks {
        rt.spawn(chatter(t));
    }
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap()
}

/// Blocks until `cond`, at most 10 s, failing the child otherwise.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

fn scenario_runtime_shutdown_timeout(file: &Path) {
    let (layer, guard) = builder(file).build().unwrap();
    tracing_subscriber::registry().with(layer).init();
    let rt = multi_thread();
    spawn_chatter(rt.handle(), 6);
    // spawn_blocking loggers that outlive `shutdown_timeout` until told to stop
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(AtomicU64::new(0));
    for b in 0..2u64 {
        let (stop, live) = (stop.clone(), live.clone());
        live.fetch_add(1, SeqCst);
        rt.spawn_blocking(move || {
            let _span = {
                SPANS.fetch_add(1, SeqCst);
                tracing::info_span!("blocking", b).entered()
            };
            while !stop.load(SeqCst) {
                EVENTS.fetch_add(1, SeqCst);
                tracing::info!(b, "blocking work");
                std::thread::yield_now();
            }
            drop(_span);
            live.fetch_sub(1, SeqCst);
        });
    }
    wait_for("records", || EVENTS.load(SeqCst) > 20_000);
    rt.shutdown_timeout(Duration::from_millis(20));
    guard.shutdown(Duration::from_secs(5)).unwrap();
    stop.store(true, SeqCst);
    wait_for("blocking tasks", || live.load(SeqCst) == 0);
    report(&guard.handle(), offered());
}

fn scenario_guard_dropped_in_async_main(file: &Path) {
    let (layer, guard) = builder(file).build().unwrap();
    tracing_subscriber::registry().with(layer).init();
    let handle = guard.handle();
    let rt = multi_thread();
    rt.block_on(async move {
        spawn_chatter(&tokio::runtime::Handle::current(), 6);
        wait_for("records", || EVENTS.load(SeqCst) > 20_000);
        // like the end of `#[tokio::main] async fn main` with `let _guard = …` in it
        drop(guard);
    });
    drop(rt);
    report(&handle, offered());
}

fn scenario_guard_dropped_in_spawn_blocking(file: &Path) {
    let (layer, guard) = builder(file).build().unwrap();
    tracing_subscriber::registry().with(layer).init();
    let handle = guard.handle();
    let rt = multi_thread();
    spawn_chatter(rt.handle(), 6);
    wait_for("records", || EVENTS.load(SeqCst) > 20_000);
    let done = rt.spawn_blocking(move || drop(guard));
    rt.block_on(done).unwrap();
    drop(rt);
    report(&handle, offered());
}

fn scenario_init_from_dropped_in_async(file: &Path) {
    let guard = tracing_offload::init_from(
        tracing_offload::Builder::from_env()
            .capacity(1024)
            .sink(sink::JsonFile::new(file)),
    )
    .unwrap();
    let handle = guard.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mt = multi_thread();
    spawn_chatter(mt.handle(), 4);
    rt.block_on(async move {
        wait_for("records", || EVENTS.load(SeqCst) > 20_000);
        drop(guard);
    });
    mt.shutdown_timeout(Duration::from_secs(5));
    report(&handle, offered());
}

#[test]
#[ignore = "run by the tests below in a child process"]
fn child_process() {
    let file = PathBuf::from(std::env::var_os(FILE).unwrap());
    match std::env::var(SCENARIO).unwrap().as_str() {
        "runtime_shutdown_timeout" => scenario_runtime_shutdown_timeout(&file),
        "guard_dropped_in_async_main" => scenario_guard_dropped_in_async_main(&file),
        "guard_dropped_in_spawn_blocking" => scenario_guard_dropped_in_spawn_blocking(&file),
        "init_from_dropped_in_async" => scenario_init_from_dropped_in_async(&file),
        "tail_runtime_shutdown" => scenario_tail(&file, false),
        "tail_guard_drop_in_async" => scenario_tail(&file, true),
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn runtime_shutdown_timeout_while_tasks_log() {
    check("runtime_shutdown_timeout");
}

#[test]
fn guard_dropped_in_async_main_while_tasks_log() {
    check("guard_dropped_in_async_main");
}

#[test]
fn guard_dropped_in_spawn_blocking_while_tasks_log() {
    check("guard_dropped_in_spawn_blocking");
}

#[test]
fn init_from_guard_dropped_in_async_while_tasks_log() {
    check("init_from_dropped_in_async");
}

/// Tail sampling holds the tasks' traces on the drain thread while the runtime goes away.
fn scenario_tail(file: &Path, drop_in_async: bool) {
    let (layer, guard) = builder(file)
        .capacity(4096)
        .tail_sampling(
            tracing_offload::TailSampling::new()
                .keep_errors()
                .keep_ratio(0.5)
                .decision_wait(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    tracing_subscriber::registry().with(layer).init();
    let handle = guard.handle();
    let rt = multi_thread();
    // long-lived roots with children across awaits
    for t in 0..6u64 {
        rt.spawn(async move {
            SPANS.fetch_add(1, SeqCst);
            let root = tracing::info_span!("root", t);
            async move {
                loop {
                    chatter_once(t).await;
                }
            }
            .instrument(root)
            .await
        });
    }
    spawn_chatter(rt.handle(), 3);
    wait_for("records", || EVENTS.load(SeqCst) > 20_000);
    if drop_in_async {
        rt.block_on(async move { drop(guard) });
        drop(rt);
    } else {
        rt.shutdown_timeout(Duration::from_millis(20));
        guard.shutdown(Duration::from_secs(5)).unwrap();
    }
    report(&handle, offered());
}

async fn chatter_once(t: u64) {
    SPANS.fetch_add(1, SeqCst);
    let span = tracing::info_span!("child", t);
    async {
        EVENTS.fetch_add(1, SeqCst);
        tracing::info!(t, "in child");
        tokio::task::yield_now().await;
        EVENTS.fetch_add(1, SeqCst);
        tracing::warn!(t, "in child after await");
    }
    .instrument(span)
    .await
}

#[test]
fn tail_sampling_runtime_shutdown_timeout_while_tasks_log() {
    check("tail_runtime_shutdown");
}

#[test]
fn tail_sampling_guard_dropped_in_async_while_tasks_log() {
    check("tail_guard_drop_in_async");
}
