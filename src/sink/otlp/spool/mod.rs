//! The spool: what the collector cannot take goes to disk as encoded OTLP requests, and is
//! replayed, oldest first, when it can.
//!
//! # How it runs
//!
//! With a spool the sink thread never waits on the network for long. Each request (one chunk of
//! at most `max_export_batch_size` spans or log records) is exported live on the spool's
//! runtime; the sink thread waits for it at most [`spool_after`](super::Otlp::spool_after):
//!
//! * delivered in time: `exported`;
//! * failed transiently after the exporter's retries (the collector is down, overloaded…): the
//!   request is written to the spool (`spooled`), and the collector is marked unreachable;
//! * refused for good (a permanent error): `failed`, as without a spool;
//! * still running: the request is written to the spool as well, held there until the live
//!   export ends (delivered: it leaves the spool, counted `replayed`; failed: it is replayed
//!   like the others), and the sink thread moves on.
//!
//! While the collector is unreachable, or a live export is still running, requests go straight
//! to the spool: the sink's buffer drains at the speed of the disk, so it does not fill during
//! an outage, and nothing is dropped there unless records come faster than the disk takes them.
//!
//! One thread per spool (`offload-spool-<sink>`) drives the runtime: the live exports, and the
//! replay, which sends the oldest spooled request (one attempt), and on a transient failure
//! backs off from 100 ms, doubling up to 5 s, before it tries again (the probe that finds the
//! collector back). The first success marks the collector reachable: live exports resume while
//! the replay drains the spool, so new records keep flowing. The spool is replayed by the next
//! process that opens the directory too: a restart loses nothing spooled.
//!
//! All of this is per signal. Spans and log records often go to separate endpoints (or
//! services), so each has its own reachability, its own live export and its own replay, oldest
//! first among its own requests: with the logs endpoint down, spans keep going live, and the
//! spans spooled meanwhile are replayed, while the log records wait for their endpoint.
//!
//! # Storage: segment files, not a database
//!
//! A spool is a queue written at one end and read at the other, never updated in place. It is
//! kept as append-only segment files of checksummed frames (the format is in `store.rs`), the
//! design of Vector's disk buffer (v2, which replaced LevelDB) and of write-ahead logs, rather
//! than an embedded B-tree store such as `redb` (or the Collector's bbolt), because:
//!
//! * the byte budget is the bytes on disk, exactly: evicting the oldest requests deletes their
//!   segment file, where a B-tree file does not shrink without compaction (the Collector's
//!   `file_storage` has a compaction setting for this);
//! * damage stays local: each frame has its own checksums, so a frame cut short by a crash, or
//!   damaged on disk, is found, counted and skipped, and every other frame is replayed, where a
//!   damaged page of a B-tree can make the whole file unreadable;
//! * a crash (`kill -9`) loses at most the frame being written: frames are only appended, and a
//!   new process never appends to an old segment;
//! * no new storage engine in the dependency tree: the checksum is `crc32fast`, the directory
//!   lock `fs4` (a second process or sink on the same directory is refused).
//!
//! Writes are not synced one by one: a crash of the process loses nothing written (the kernel
//! has it); the sink syncs the spool when its buffer runs dry, when a segment is full and at
//! shutdown, which bounds what a crash of the machine can lose. Delivery is at least once: a
//! crash between a replay's success and its "done" mark, or a live export that the collector
//! took after the sink stopped waiting for it at shutdown, replays that request once more
//! (collectors and backends keep one copy of a span id).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::sink::SinkError;
use crate::stats::SpoolStats;

mod replay;
mod store;

pub(super) use replay::{GrpcSenders, HttpSenders, Replayer, Senders};
pub(super) use store::{AppendError, EntryId, Kind};
use store::{Batch, Done, Store};

/// How many spooled requests of one signal the replay sends at once while its endpoint is
/// reachable: a collector that answers each request slowly still gets the spool emptied at
/// this many times the rate of one request at a time. While the endpoint is unreachable, one
/// lane alone probes it, backing off.
const REPLAY_LANES: usize = 4;

/// How long the replay of a signal goes on one request at a time after the collector throttled
/// it (HTTP 429, gRPC `RESOURCE_EXHAUSTED`): a collector that takes one request at a time and
/// throttles the others would otherwise be sent the others again after each wait.
const ONE_LANE_AFTER_THROTTLING: Duration = Duration::from_secs(60);

/// How a request ended, as the spool needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The collector took it.
    Delivered,
    /// It may succeed later (the collector is down, overloaded, a network error).
    Transient(String),
    /// The collector refused it for good.
    Permanent(String),
}

impl Outcome {
    /// The outcome of an export's result: a [`SinkError::Fatal`] is permanent.
    pub(super) fn of(result: &Result<(), SinkError>) -> Outcome {
        match result {
            Ok(()) => Outcome::Delivered,
            Err(e @ SinkError::Fatal(_)) => Outcome::Permanent(e.with_sources()),
            Err(e) => Outcome::Transient(e.with_sources()),
        }
    }
}

/// The spool's shared state: the store, and what the sink thread, the live exports and the
/// replay tell each other.
///
/// Spans and log records are told apart throughout: they often go to separate endpoints (or
/// services), so each signal has its own reachability, its own replay (oldest first among its
/// own requests) and its own back-off. One signal's endpoint being down holds nothing of the
/// other's back.
#[derive(Debug)]
pub(super) struct Spool {
    inner: Mutex<Inner>,
    /// Wakes a signal's replay lanes (by [`Kind::index`], then lane): a batch of it was
    /// spooled or released, or its endpoint is back; or stop.
    wake: [[tokio::sync::Notify; REPLAY_LANES]; 2],
    /// Wakes each signal's replay requests in flight (one per lane) when shutdown begins.
    stopping: [[tokio::sync::Notify; REPLAY_LANES]; 2],
}

#[derive(Debug)]
struct Inner {
    store: Store,
    /// Per signal (by [`Kind::index`]): since when its endpoint has been unreachable, that is,
    /// the last attempt (live or replayed) failed transiently. `None` after a success.
    down_since: [Option<Instant>; 2],
    /// Per signal: since when the live export handed to the spool (still running when the
    /// sink thread stopped waiting for it) has waited for its answer.
    held_since: [Option<Instant>; 2],
    /// Per signal: the replay's requests in flight, and since when each has waited for its
    /// answer.
    sending: [Vec<(EntryId, Instant)>; 2],
    /// Per signal: until when the collector asked the replay to wait (a `Retry-After` or
    /// `RetryInfo` it answered one of the requests in flight with; now, for a throttling answer
    /// without one). Every lane waits, and a success of another request in flight does not cut
    /// it short.
    throttled_until: [Option<Instant>; 2],
    /// Per signal: when the collector last throttled the replay. For
    /// [`ONE_LANE_AFTER_THROTTLING`] after that, one lane alone sends: a collector that
    /// throttles concurrent requests is not asked again and again.
    throttled_at: [Option<Instant>; 2],
    /// The last error of a live export or a replay, or the store's last problem, and when it
    /// was noted (see [`Inner::error`]).
    last_error: Option<(String, SystemTime)>,
    /// Set by shutdown: the replay finishes its request until then, and stops.
    stop_at: Option<Instant>,
    /// Per signal: whether this sink exports it (and replays it).
    exported: [bool; 2],
}

impl Inner {
    /// Notes `error` as the last one, now.
    fn error(&mut self, error: String) {
        self.last_error = Some((error, SystemTime::now()));
    }

    /// Takes the store's last problem (a corrupt frame, a failed delete) as the last error,
    /// with the time it was met, unless an error noted since is newer.
    fn take_store_problem(&mut self) {
        if let Some((problem, at)) = self.store.last_problem.take() {
            if self
                .last_error
                .as_ref()
                .is_none_or(|(_, noted)| *noted <= at)
            {
                self.last_error = Some((problem, at));
            }
        }
    }

    /// The replay's request `id` of `kind` is no longer in flight.
    fn answered(&mut self, id: EntryId, kind: Kind) {
        self.sending[kind.index()].retain(|(sent, _)| *sent != id);
    }
}

// === impl Spool ===

impl Spool {
    /// Opens (and locks) the spool directory; what earlier processes left is replayed.
    pub(super) fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Arc<Spool>> {
        let mut store = Store::open(dir, max_bytes)?;
        Ok(Arc::new(Spool {
            inner: Mutex::new(Inner {
                last_error: store.last_problem.take(),
                store,
                down_since: [None; 2],
                held_since: [None; 2],
                sending: Default::default(),
                throttled_until: [None; 2],
                throttled_at: [None; 2],
                stop_at: None,
                exported: [true; 2],
            }),
            wake: Default::default(),
            stopping: Default::default(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the events riding on spooled spans are counted lost after export when the spool
    /// loses their request (evicted, found corrupt, refused by the collector).
    pub(super) fn count_riders_in(&self, awaiting: Arc<crate::sink::AwaitingDelivery>) {
        self.lock().store.riders_lost_to = Some(awaiting);
    }

    /// Wakes every replay lane of `kind`.
    fn wake(&self, kind: Kind) {
        for lane in &self.wake[kind.index()] {
            lane.notify_one();
        }
    }

    /// Whether requests of `kind` go straight to the spool: its endpoint is unreachable, and
    /// the replay has a request of it to probe the endpoint with. (With none spooled, say
    /// because writing to the spool failed, a live export is the only way to find it back.)
    pub(super) fn straight_to_spool(&self, kind: Kind) -> bool {
        let inner = self.lock();
        inner.down_since[kind.index()].is_some() && !inner.store.is_empty_of(kind)
    }

    /// Which signals this sink exports. The requests of one it does not export (spooled under
    /// an earlier configuration) are kept, not replayed: a later configuration that exports it
    /// replays them. Noted in the spool's last error, so that health says why they wait.
    pub(super) fn set_exported(&self, traces: bool, logs: bool) {
        let mut inner = self.lock();
        inner.exported = [traces, logs];
        let waiting: Vec<String> = [Kind::Traces, Kind::Logs]
            .into_iter()
            .filter(|kind| !inner.exported[kind.index()])
            .filter_map(|kind| {
                let n = inner.store.batches_of(kind);
                (n > 0).then(|| format!("{n} requests of {}", kind.name()))
            })
            .collect();
        if !waiting.is_empty() {
            inner.error(format!(
                "the spool holds {}, which this sink does not export (its configuration \
                 changed): kept for a configuration that exports them",
                waiting.join(" and ")
            ));
        }
    }

    /// The collector throttled the replay of `kind` and asked it to wait until `until` (now,
    /// when it gave no delay; the latest such ask holds).
    fn throttle(&self, kind: Kind, until: Instant) {
        let mut inner = self.lock();
        let slot = &mut inner.throttled_until[kind.index()];
        *slot = Some(slot.map_or(until, |t| t.max(until)));
        inner.throttled_at[kind.index()] = Some(Instant::now());
    }

    /// Until when one lane alone replays `kind`, after the collector throttled it (see
    /// [`ONE_LANE_AFTER_THROTTLING`]).
    fn one_lane_until(&self, kind: Kind) -> Option<Instant> {
        self.lock().throttled_at[kind.index()]
            .map(|at| at + ONE_LANE_AFTER_THROTTLING)
            .filter(|until| *until > Instant::now())
    }

    /// Until when the replay of `kind` must wait, if the collector asked it to and that time
    /// has not passed.
    fn throttled_until(&self, kind: Kind) -> Option<Instant> {
        self.lock().throttled_until[kind.index()].filter(|t| *t > Instant::now())
    }

    /// Whether the endpoint of `kind` is marked unreachable.
    fn is_down(&self, kind: Kind) -> bool {
        self.lock().down_since[kind.index()].is_some()
    }

    /// A transient failure: the endpoint of `kind` is unreachable (since now, unless it
    /// already was).
    pub(super) fn note_failure(&self, kind: Kind, error: String) {
        let mut inner = self.lock();
        inner.down_since[kind.index()].get_or_insert_with(Instant::now);
        inner.error(error);
    }

    /// A success: the endpoint of `kind` is reachable; its replay may go on at once.
    pub(super) fn note_success(&self, kind: Kind) {
        let was_down = self.lock().down_since[kind.index()].take().is_some();
        if was_down {
            self.wake(kind);
        }
    }

    /// Writes a request to the spool. `held`: a live export of it is still running, and it is
    /// not replayed unless that fails (see [`late`](Self::late)).
    ///
    /// `riders`: the events that travel on the request's spans (see
    /// [`Riders`](super::riders::Riders)); the spool counts them lost after export if it loses
    /// the request.
    pub(super) fn append(
        &self,
        kind: Kind,
        records: u64,
        riders: u64,
        payload: &[u8],
        held: bool,
    ) -> Result<EntryId, AppendError> {
        let id = {
            let mut inner = self.lock();
            let id = inner.store.append(kind, records, payload, held)?;
            inner.store.carries(id, riders);
            id
        };
        if !held {
            self.wake(kind);
        }
        Ok(id)
    }

    /// The end of a live export whose request was spooled while it ran: delivered, it leaves
    /// the spool (counted replayed); failed transiently, it is replayed; refused, it is counted
    /// rejected.
    pub(super) fn late(&self, id: EntryId, kind: Kind, outcome: Outcome) {
        self.lock().held_since[kind.index()] = None;
        self.finish(id, kind, outcome);
        self.wake(kind);
    }

    /// The end of a live export of `kind` that the sink thread stopped waiting for with nothing
    /// spooled (see [`LiveExport::hand_off`]): whether the collector is reachable.
    fn detached_end(&self, kind: Kind, outcome: Outcome) {
        self.lock().held_since[kind.index()] = None;
        match outcome {
            Outcome::Delivered => self.note_success(kind),
            Outcome::Transient(error) => self.note_failure(kind, error),
            Outcome::Permanent(error) => self.lock().error(error),
        }
    }

    /// A live export of `kind`, started at `started`, still runs while its request waits in
    /// the spool: the collector has not answered it yet.
    fn held(&self, kind: Kind, started: Instant) {
        self.lock().held_since[kind.index()] = Some(started);
    }

    /// How the replay's request of `kind` in flight ended.
    fn replayed(&self, id: EntryId, kind: Kind, outcome: Outcome) {
        self.lock().answered(id, kind);
        self.finish(id, kind, outcome);
    }

    /// A replayed request still in flight when shutdown's time for it ran out: it stays in the
    /// spool for the next process. No failure of the collector's: its reachability and the
    /// last error stay as they were.
    fn left_in_flight(&self, id: EntryId, kind: Kind) {
        let mut inner = self.lock();
        inner.answered(id, kind);
        inner.store.release(id);
    }

    /// Records how a request of `kind` in flight ended.
    fn finish(&self, id: EntryId, kind: Kind, outcome: Outcome) {
        let mut inner = self.lock();
        let down = &mut inner.down_since[kind.index()];
        match outcome {
            Outcome::Delivered => {
                let was_down = down.take().is_some();
                inner.store.done(id, Done::Delivered);
                drop(inner);
                if was_down {
                    // The lanes that stopped while it was down go on.
                    self.wake(kind);
                }
            }
            Outcome::Transient(error) => {
                down.get_or_insert_with(Instant::now);
                inner.store.release(id);
                inner.error(error);
                drop(inner);
                // The first lane probes the endpoint with it, backing off; the others wait.
                self.wake(kind);
            }
            Outcome::Permanent(error) => {
                inner.store.done(id, Done::Rejected);
                inner.error(error);
            }
        }
    }

    /// Hurries what was spooled to the disk.
    pub(super) fn sync(&self) -> Result<(), SinkError> {
        self.lock()
            .store
            .sync()
            .map_err(|e| SinkError::io("syncing the spool", e))
    }

    /// Asks the replay to stop: it finishes the requests it is sending until `at`.
    fn stop(&self, at: Instant) {
        self.lock().stop_at.get_or_insert(at);
        for notify in self.wake.iter().chain(&self.stopping).flatten() {
            notify.notify_one();
        }
    }

    fn stop_at(&self) -> Option<Instant> {
        self.lock().stop_at
    }

    /// The next batch of `kind` to replay, unless stopping.
    fn take(&self, kind: Kind) -> Option<Batch> {
        let mut inner = self.lock();
        if inner.stop_at.is_some() {
            return None;
        }
        let batch = inner.store.take_oldest(kind);
        if let Some(batch) = &batch {
            inner.sending[kind.index()].push((batch.id, Instant::now()));
        }
        inner.take_store_problem();
        batch
    }

    /// What the spool holds and what became of what it took.
    pub(super) fn stats(&self) -> SpoolStats {
        let mut inner = self.lock();
        inner.take_store_problem();
        let s = inner.store.stats();
        let c = s.counts;
        SpoolStats {
            bytes: s.bytes,
            max_bytes: s.max_bytes,
            records: s.records,
            batches: s.batches,
            oldest_age: s
                .oldest_written
                .map(|t| SystemTime::now().duration_since(t).unwrap_or_default()),
            replaying: inner.stop_at.is_none()
                && [Kind::Traces, Kind::Logs].into_iter().any(|kind| {
                    inner.exported[kind.index()]
                        && !inner.store.is_empty_of(kind)
                        && inner.down_since[kind.index()].is_none()
                }),
            unreachable_for: inner.down_since.iter().flatten().min().map(|t| t.elapsed()),
            unanswered_for: inner
                .held_since
                .iter()
                .flatten()
                .chain(inner.sending.iter().flatten().map(|(_, since)| since))
                .min()
                .map(|t| t.elapsed()),
            unreachable_signals: [Kind::Traces, Kind::Logs]
                .into_iter()
                .filter(|kind| inner.down_since[kind.index()].is_some())
                .map(Kind::name)
                .collect(),
            restored: c.restored,
            spooled: c.spooled,
            replayed: c.delivered,
            evicted: c.evicted,
            corrupt_records: c.corrupt_records,
            corrupt_batches: c.corrupt_batches,
            rejected: c.rejected,
            // Errors quote the endpoint: its credentials hidden.
            last_error: inner
                .last_error
                .as_ref()
                .map(|(e, _)| super::endpoint::redact_in(e)),
            last_error_at: inner.last_error.as_ref().map(|(_, at)| *at),
        }
    }
}

/// A live export running on the spool's runtime, which the sink thread waits for only so long.
#[derive(Debug)]
pub(super) struct LiveExport {
    /// The signal it sends.
    kind: Kind,
    state: Mutex<LiveState>,
    changed: Condvar,
}

enum LiveState {
    Running,
    /// Ended; its result not yet taken by the sink thread.
    Finished(Result<(), SinkError>),
    /// Still running when the sink thread spooled its request: its end goes to the spool.
    Spooled(EntryId, Option<IfUndelivered>),
    /// Still running when the sink thread moved on, with nothing to spool (a request of drop
    /// markers alone): its end only tells whether the collector is reachable.
    Detached(Option<IfUndelivered>),
    /// Ended, and its result handed on.
    Over,
}

impl std::fmt::Debug for LiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveState::Running => f.write_str("Running"),
            LiveState::Finished(r) => f.debug_tuple("Finished").field(r).finish(),
            LiveState::Spooled(id, _) => f.debug_tuple("Spooled").field(id).finish(),
            LiveState::Detached(_) => f.write_str("Detached"),
            LiveState::Over => f.write_str("Over"),
        }
    }
}

/// What to do if a live export handed off (still running) ends without delivering its request
/// (failed or refused): the drop markers it carried, kept out of the spooled copy, are queued to
/// be sent again.
pub(super) type IfUndelivered = Box<dyn FnOnce() + Send>;

/// What became of a live export the sink thread stopped waiting for.
#[derive(Debug)]
pub(super) enum Handoff {
    /// Its request is in the spool, held until the export ends.
    Spooled,
    /// It ended just before: its result.
    Finished(Result<(), SinkError>),
    /// Spooling failed; it is still running.
    NotSpooled(AppendError),
}

// === impl LiveExport ===

impl LiveExport {
    pub(super) fn new(kind: Kind) -> Arc<LiveExport> {
        Arc::new(LiveExport {
            kind,
            state: Mutex::new(LiveState::Running),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the export's task when it ends.
    pub(super) fn finish(&self, result: Result<(), SinkError>, spool: &Spool) {
        let mut state = self.lock();
        let outcome = Outcome::of(&result);
        // Refused for good or failed for now, its markers were not delivered either way.
        let undelivered = |if_undelivered: Option<IfUndelivered>| {
            if let (false, Some(f)) = (outcome == Outcome::Delivered, if_undelivered) {
                f();
            }
        };
        match std::mem::replace(&mut *state, LiveState::Over) {
            LiveState::Spooled(id, if_undelivered) => {
                undelivered(if_undelivered);
                // Under the lock: the sink thread's shutdown sees `Over` only once this is done.
                spool.late(id, self.kind, outcome);
            }
            LiveState::Detached(if_undelivered) => {
                undelivered(if_undelivered);
                spool.detached_end(self.kind, outcome);
            }
            LiveState::Running => *state = LiveState::Finished(result),
            other => *state = other,
        }
        self.changed.notify_all();
    }

    /// Whether it has not ended yet (running, or spooled while running).
    pub(super) fn is_running(&self) -> bool {
        matches!(
            *self.lock(),
            LiveState::Running | LiveState::Spooled(..) | LiveState::Detached(_)
        )
    }

    /// Waits until it ends or `until`, and takes its result.
    pub(super) fn wait(&self, until: Instant) -> Option<Result<(), SinkError>> {
        let mut state = self.lock();
        loop {
            if let LiveState::Finished(_) = *state {
                let LiveState::Finished(result) = std::mem::replace(&mut *state, LiveState::Over)
                else {
                    unreachable!("matched above")
                };
                return Some(result);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || !matches!(*state, LiveState::Running) {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until it has ended and its result was handed on, or `until`.
    pub(super) fn wait_over(&self, until: Instant) -> bool {
        let mut state = self.lock();
        loop {
            if !matches!(
                *state,
                LiveState::Running | LiveState::Spooled(..) | LiveState::Detached(_)
            ) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The sink thread stops waiting: if it is still running, `spool_it` writes its request to
    /// the spool, held for it, under the lock (so that its end sees where the request went);
    /// `None` when there is nothing to spool (drop markers alone), and the export goes on
    /// detached. `if_undelivered` runs if the export then fails or is refused. Handed off, the
    /// export (started at `started`) counts as waiting for its answer in `spool`'s stats until
    /// it ends: noted under the lock, so that its end, which takes the lock first, cannot come
    /// between and leave it noted for good.
    pub(super) fn hand_off(
        &self,
        spool: &Spool,
        started: Instant,
        spool_it: Option<impl FnOnce() -> Result<EntryId, AppendError>>,
        if_undelivered: Option<IfUndelivered>,
    ) -> Handoff {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, LiveState::Over) {
            LiveState::Finished(result) => Handoff::Finished(result),
            LiveState::Running => match spool_it.map(|spool_it| spool_it()) {
                Some(Ok(id)) => {
                    *state = LiveState::Spooled(id, if_undelivered);
                    spool.held(self.kind, started);
                    Handoff::Spooled
                }
                None => {
                    *state = LiveState::Detached(if_undelivered);
                    spool.held(self.kind, started);
                    Handoff::Spooled
                }
                Some(Err(e)) => {
                    *state = LiveState::Running;
                    Handoff::NotSpooled(e)
                }
            },
            other => {
                *state = other;
                Handoff::Finished(Err(SinkError::Fatal(
                    "the live export was handed off twice".to_owned(),
                )))
            }
        }
    }
}

/// The spool's thread and runtime: the replay, and the live exports the sink thread starts.
pub(super) struct Engine {
    pub(super) spool: Arc<Spool>,
    /// Where the sink thread starts live exports.
    pub(super) runtime: tokio::runtime::Handle,
    /// Per signal (by [`Kind::index`]): the live export started last, while it may still run.
    pub(super) live: [Option<Arc<LiveExport>>; 2],
    thread: Option<JoinHandle<()>>,
    finished: Arc<Finished>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Set when the spool's thread has ended.
#[derive(Debug, Default)]
struct Finished {
    done: Mutex<bool>,
    changed: Condvar,
}

impl Finished {
    fn set(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }

    fn wait(&self, until: Instant) -> bool {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .changed
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

// === impl Engine ===

impl Engine {
    /// Starts the spool's thread, `offload-spool-<sink>`, which drives `runtime` (where the
    /// exporters were built) and replays.
    pub(super) fn start(
        sink: &str,
        runtime: tokio::runtime::Runtime,
        spool: Arc<Spool>,
        senders: Senders,
    ) -> std::io::Result<Engine> {
        let handle = runtime.handle().clone();
        spool.set_exported(senders.exports(Kind::Traces), senders.exports(Kind::Logs));
        let finished = Arc::new(Finished::default());
        let thread = {
            let spool = Arc::clone(&spool);
            let finished = Arc::clone(&finished);
            std::thread::Builder::new()
                .name(format!("offload-spool-{sink}"))
                .spawn(move || {
                    crate::silent::mark_thread();
                    runtime.block_on(replay::run(&spool, &senders));
                    let left = spool.stop_at().map_or(Duration::ZERO, |at| {
                        at.saturating_duration_since(Instant::now())
                    });
                    runtime.shutdown_timeout(left);
                    finished.set();
                })?
        };
        Ok(Engine {
            spool,
            runtime: handle,
            live: [None, None],
            thread: Some(thread),
            finished,
        })
    }

    /// Whether a live export of `kind` is still running.
    pub(super) fn live_running(&self, kind: Kind) -> bool {
        self.live[kind.index()]
            .as_ref()
            .is_some_and(|l| l.is_running())
    }

    /// Waits for the live export in flight and the replay's request, syncs the spool, and
    /// stops the replay and the runtime, all by `deadline`.
    ///
    /// The requests in flight are in the spool already: waiting for them only spares the next
    /// process a duplicate. So they get half the time left, and the rest of the pipeline the
    /// other half.
    pub(super) fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let now = Instant::now();
        let soft = now + deadline.saturating_duration_since(now) / 2;
        for live in self.live.iter_mut().filter_map(Option::take) {
            live.wait_over(soft);
        }
        let synced = self.spool.sync();
        self.spool.stop(soft);
        if self.finished.wait(deadline) {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        synced
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Not shut down (a failed build, say): stop at once, never wait here.
        self.spool.stop(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A problem the store met when the spool was opened keeps the time it was met: a warning
    /// noted after it stays the last error when the replay next takes from the store. It used
    /// to be noted again then, as new, over the warning (adversary pass 23: a torn frame hid
    /// the warning that the spool holds a signal the sink no longer exports).
    #[test]
    fn a_problem_found_at_open_does_not_replace_a_newer_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool
                .append(Kind::Logs, 3, 0, b"three log records", false)
                .unwrap();
            spool.sync().unwrap();
        }
        // A frame cut short at the end of the segment, as a crash mid-write leaves it.
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap()
            .write_all(&[0; 10])
            .unwrap();

        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let opened = spool.stats();
        assert!(
            opened.last_error.is_some() && opened.last_error_at.is_some(),
            "{opened:#?}"
        );
        spool.set_exported(true, false);
        let warned = spool.stats();
        let warning = warned.last_error.clone().unwrap();
        assert!(
            warning.contains("which this sink does not export"),
            "{warned:#?}"
        );
        assert!(warned.last_error_at >= opened.last_error_at, "{warned:#?}");
        // The replay of spans takes from the store (nothing there): the warning stays.
        assert!(spool.take(Kind::Traces).is_none());
        let after = spool.stats();
        assert_eq!(
            (after.last_error, after.last_error_at),
            (Some(warning), warned.last_error_at)
        );
    }
}
