//! `fork()`: a child process forked after a pipeline was built has none of the pipeline's
//! threads (only the thread that called `fork` goes on in the child). The drain and sink threads
//! are in the parent; so may be a thread that was half-way through a push to one of the
//! lock-free queues, which a take in the child would then wait for for ever (adversary pass 58:
//! 1 to 3 forks in 300, made while other threads logged, hung the child's first `info_span!`
//! under `DropNewest`). A handler the system runs in the child counts the forks; a pipeline
//! compares the count with the one at its build, and in a child it records nothing, counts
//! what is offered as dropped (`shutdown`), and says it is not running.

use std::sync::atomic::{AtomicU32, Ordering};

/// Forks since the first pipeline was built, counted in each child.
static FORKS: AtomicU32 = AtomicU32::new(0);

/// The forks this process descends from, for a pipeline being built: registers the handler
/// that counts them (once per process).
pub(crate) fn generation() -> u32 {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        #[cfg(unix)]
        #[allow(unsafe_code)]
        // SAFETY: `pthread_atfork` with a child handler only; the handler does one atomic add,
        // which is async-signal-safe as a handler run in a forked child must be, and it is a
        // plain function that lives as long as the process. A failure (ENOMEM) leaves forks
        // uncounted, as before; nothing else depends on it. Tested by a real fork
        // (`tests/fork.rs`): Miri and loom cannot run it.
        unsafe {
            libc::pthread_atfork(None, None, Some(count_fork));
        }
    });
    current()
}

/// The forks this process descends from (0 in a process that did not fork, or forked before
/// any pipeline was built).
#[inline(always)]
pub(crate) fn current() -> u32 {
    FORKS.load(Ordering::Relaxed)
}

/// Whether this process was forked since [`generation`] returned `generation`.
#[inline(always)]
pub(crate) fn forked_since(generation: u32) -> bool {
    current() != generation
}

/// Run by the system in each child of a `fork`.
#[cfg(unix)]
extern "C" fn count_fork() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}
