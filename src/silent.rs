//! The crate's own threads are marked, and the layer records nothing that happens on them, so
//! that nothing they (or the libraries they call: the OTLP exporter's HTTP and gRPC stacks)
//! log comes back into the pipeline.
//!
//! They are marked, not given a subscriber of their own: a scoped default subscriber
//! (`tracing::subscriber::set_default`) on any thread switches `tracing` to its scoped
//! dispatch for the whole process, for as long as the guard lives. There, an event dispatched
//! while another is being dispatched on the same thread (from a field's `Debug`) and an event
//! from a thread-local destructor go to no subscriber at all: every layer of the application
//! lost them once a pipeline had been built. The application's other layers (a `fmt` layer)
//! still see what the libraries log on the crate's threads, as they would on any thread.

use std::cell::Cell;

thread_local! {
    /// Whether this thread is running the crate's own work. `const` and without a destructor:
    /// readable until the thread is gone, including from other thread-locals' destructors.
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread marked as the crate's own (the mark is restored after, also when
/// `f` panics), so that the layer records nothing from it.
pub(crate) fn without_tracing<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INTERNAL.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(INTERNAL.with(|m| m.replace(true)));
    f()
}

/// Marks this thread as the crate's own for the rest of its life: the threads a sink's runtime
/// starts for blocking work (name resolution).
pub(crate) fn mark_thread() {
    INTERNAL.with(|m| m.set(true));
}

/// Whether this thread is running the crate's own work (see [`without_tracing`]).
#[inline]
pub(crate) fn is_internal() -> bool {
    INTERNAL.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_holds_inside_and_is_restored_after_even_on_panic() {
        assert!(!is_internal());
        without_tracing(|| {
            assert!(is_internal());
            without_tracing(|| assert!(is_internal()));
            assert!(is_internal());
        });
        assert!(!is_internal());
        let _ = std::panic::catch_unwind(|| without_tracing(|| panic!("inside")));
        assert!(!is_internal());
    }
}
