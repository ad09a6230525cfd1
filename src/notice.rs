//! The crate's own lines on stderr. None goes through `eprintln!`, which panics when stderr
//! cannot be written (`2>/dev/full`, a pipe whose reader is gone): adversary pass 57 had
//! `build()`, `init()`, `reload_from_env()` and a refused remote parent (on the application's
//! thread, inside its `tracing` call) panic that way.
//!
//! Two ways out:
//! - [`say`] writes at once, on the calling thread: set-up and reloads, where the program waits
//!   for its own output anyway, and the line must be out before the call returns.
//! - [`post`] and [`post_and_wait`] hand the line to a thread of its own (`offload-notice`,
//!   started at the first such line), for threads that must not wait on stderr: an
//!   application thread inside its `tracing` call, a dropped guard past its deadline. A full
//!   stderr pipe nobody reads blocks every write, and the console sink, stuck writing to it,
//!   holds std's stderr lock, so such a write waits for ever (pass 57: a dropped guard never
//!   returned, an `info!` after it never returned). If that thread is stuck the same way, the
//!   lines queue behind it, up to [`QUEUED`]; past that they are not written.

use std::fmt;
use std::io::Write as _;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

/// How long a thread waits for a line that a program ending next must still show (a dropped
/// guard's, the first record's after it) to be written: a line takes well under a millisecond
/// to go out, unless stderr is stuck.
pub(crate) const LAST_WORDS_WAIT: Duration = Duration::from_millis(100);

/// The most lines waiting for the notice thread; later ones are not written.
pub(crate) const QUEUED: usize = 64;

/// A line for the notice thread, and who waits for it to be written.
struct Notice {
    line: String,
    written: Option<Sender<()>>,
}

/// Writes `tracing-offload: <line>` to stderr now, on this thread; a failed write is ignored.
pub(crate) fn say(line: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "tracing-offload: {line}");
}

/// Has the notice thread write `tracing-offload: <line>`; never waits. Returns whether the line
/// was queued (not when the thread could not be started or [`QUEUED`] lines wait already).
pub(crate) fn post(line: String) -> bool {
    send(Notice {
        line,
        written: None,
    })
}

/// [`post`], then waits up to `wait` for the line to be written; returns whether it was.
pub(crate) fn post_and_wait(line: String, wait: Duration) -> bool {
    let (tx, rx) = mpsc::channel();
    if !send(Notice {
        line,
        written: Some(tx),
    }) {
        return false;
    }
    rx.recv_timeout(wait).is_ok()
}

/// The notice thread of this process: where its lines go, and the forks this process
/// descended from when it was started (a forked child has none of its parent's threads, and
/// starts its own: adversary pass 58).
struct Writer {
    lines: SyncSender<Notice>,
    generation: u32,
}

fn send(notice: Notice) -> bool {
    static WRITER: Mutex<Option<Writer>> = Mutex::new(None);
    // Not `lock`: in a forked child, a thread of the parent's that held the lock at the fork
    // does not exist, and never lets it go.
    let mut writer = None;
    for _ in 0..1_000 {
        match WRITER.try_lock() {
            Ok(w) => {
                writer = Some(w);
                break;
            }
            Err(TryLockError::Poisoned(w)) => {
                writer = Some(w.into_inner());
                break;
            }
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    let Some(mut writer) = writer else {
        return false;
    };
    let generation = crate::fork::current();
    if writer.as_ref().is_none_or(|w| w.generation != generation) {
        // A forked child's copy of its parent's writer is let go of without dropping it:
        // dropping a sender takes the channel's own lock, which the parent's notice thread may
        // have held at the fork (adversary pass 59, read, not reproduced).
        if writer.as_ref().is_some_and(|w| w.generation != generation) {
            std::mem::forget(writer.take());
        }
        let (tx, rx) = mpsc::sync_channel(QUEUED);
        let started = std::thread::Builder::new()
            .name("offload-notice".into())
            .spawn(move || write_all(&rx));
        *writer = started.ok().map(|_| Writer {
            lines: tx,
            generation,
        });
    }
    match writer.as_ref().map(|w| w.lines.try_send(notice)) {
        Some(Ok(())) => true,
        Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
    }
}

/// The notice thread: writes each line, then tells whoever waits.
fn write_all(lines: &Receiver<Notice>) {
    crate::silent::mark_thread();
    for notice in lines {
        say(format_args!("{}", notice.line));
        if let Some(written) = notice.written {
            let _ = written.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A posted line is written (here, to the test's stderr) and the waiter told so.
    #[test]
    fn a_posted_line_is_written_and_its_waiter_told() {
        assert!(post_and_wait(
            "notice test: a line from the notice thread".into(),
            Duration::from_secs(30)
        ));
        assert!(post("notice test: another, not waited for".into()));
    }
}
