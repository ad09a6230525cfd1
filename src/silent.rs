//! The subscriber the crate's own threads run under, so that nothing they (or the libraries
//! they call) log comes back into the pipeline.

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{span, Event, Metadata, Subscriber};

/// Records nothing, as `tracing`'s `NoSubscriber` does, and also says so in its level hint.
///
/// `NoSubscriber` gives no hint, which `tracing` reads as "may want `TRACE`": while one of
/// our threads held it as its default, the process-wide maximum level
/// (`LevelFilter::current()`) stayed `TRACE` whatever the application's filter, so level
/// checks never short-circuited and `init()`'s `log` bridge would have let every `log` record
/// through to be built and filtered. `OFF` leaves that maximum to the application's
/// subscribers.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Silent;

impl Subscriber for Silent {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::never()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::OFF)
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        // Never called for a disabled callsite; any id will do (NoSubscriber's choice).
        span::Id::from_u64(0xDEAD)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// Runs `f` with [`Silent`] as this thread's default subscriber, so nothing the crate's own
/// threads (or the libraries they call) log can re-enter the queue.
pub(crate) fn without_tracing<R>(f: impl FnOnce() -> R) -> R {
    let _guard = tracing::subscriber::set_default(Silent);
    f()
}
