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
    /// Whether this thread is one of the crate's own. `const` and without a destructor:
    /// readable until the thread is gone, including from other thread-locals' destructors.
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as the crate's own for the rest of its life, thread-local destructors
/// included (what a sink's connection pool logs when its thread ends): every thread the crate
/// starts calls this first, and a sink's private runtime has its blocking threads call it.
pub(crate) fn mark_thread() {
    INTERNAL.with(|m| m.set(true));
}

/// Whether this thread is one of the crate's own (see [`mark_thread`]).
#[inline]
pub(crate) fn is_internal() -> bool {
    INTERNAL.with(Cell::get)
}

thread_local! {
    /// The pipeline whose drain or sink thread this is (its identity; 0 for none): a flush or
    /// shutdown of that pipeline from here would wait for this very thread.
    static SERVES: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as one of the crate's own that serves the pipeline identified by `id`
/// (its drain or one of its sink threads).
pub(crate) fn mark_pipeline_thread(id: usize) {
    mark_thread();
    SERVES.with(|s| s.set(id));
}

/// Whether this thread serves the pipeline identified by `id` (see [`mark_pipeline_thread`]).
pub(crate) fn serves(id: usize) -> bool {
    id != 0 && SERVES.with(Cell::get) == id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_thread_stays_marked_through_its_thread_local_destructors() {
        struct Probe(std::sync::mpsc::Sender<bool>);
        impl Drop for Probe {
            fn drop(&mut self) {
                let _ = self.0.send(is_internal());
            }
        }
        thread_local! {
            static PROBE: std::cell::RefCell<Option<Probe>> = const { std::cell::RefCell::new(None) };
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            assert!(!is_internal());
            mark_thread();
            assert!(is_internal());
            PROBE.with(|p| *p.borrow_mut() = Some(Probe(tx)));
        })
        .join()
        .unwrap();
        assert!(rx.recv().unwrap(), "unmarked in a thread-local destructor");
        assert!(!is_internal(), "the mark is per thread");
    }
}
