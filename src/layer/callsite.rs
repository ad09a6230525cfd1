//! What is decided once per callsite (per thread, per layer) and then looked up: the level, and
//! the facts about the callsite's fields that the hot path would otherwise look for on every
//! record.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tracing_core::Metadata;

use crate::level::LogLevel;
use crate::traceparent::TRACEPARENT_FIELD;

/// The facts of one callsite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CallsiteClass {
    pub(super) level: LogLevel,
    /// An `ERROR` callsite with a `critical` field: the value decides per event.
    pub(super) may_be_critical: bool,
    /// The target or name matches an event-sampling whitelist prefix: never sampled out.
    pub(super) whitelisted: bool,
    /// A span callsite with a `traceparent` field: a root may join a remote trace.
    pub(super) may_have_remote_parent: bool,
    /// Two fields share a name (`info!(user = a, user = b)`): the last value wins.
    pub(super) duplicate_names: bool,
    /// An event from the `log` crate through `tracing-log`: its `log.*` fields say where it
    /// really came from.
    pub(super) from_log: bool,
}

impl CallsiteClass {
    /// Classifies a callsite. `critical_targets` make its `ERROR`s critical; `whitelisted`
    /// says whether the sampler's whitelist matches it.
    pub(super) fn new(
        meta: &'static Metadata<'static>,
        critical_targets: &[String],
        whitelisted: bool,
    ) -> Self {
        let mut level = LogLevel::from_tracing(meta.level());
        if level == LogLevel::Error
            && critical_targets
                .iter()
                .any(|p| meta.target().starts_with(p.as_str()))
        {
            level = LogLevel::Critical;
        }
        let fields = meta.fields();
        let duplicate_names = fields
            .iter()
            .enumerate()
            .any(|(i, f)| fields.iter().skip(i + 1).any(|g| g.name() == f.name()));
        CallsiteClass {
            level,
            may_be_critical: level == LogLevel::Error && fields.field("critical").is_some(),
            whitelisted,
            may_have_remote_parent: meta.is_span() && fields.field(TRACEPARENT_FIELD).is_some(),
            duplicate_names,
            from_log: meta.is_event() && fields.field("log.target").is_some(),
        }
    }
}

/// Thread-local cache of callsite classes, keyed by (layer id, callsite address), with the
/// whitelist generation each class was computed under.
type CallsiteCache = HashMap<(u64, usize), (u64, CallsiteClass), BuildHasherDefault<AddrHasher>>;

/// Bounds the cache; callsites are static, so this is only reached by pathological programs.
const CALLSITE_CACHE_LIMIT: usize = 16_384;

thread_local! {
    static CALLSITES: RefCell<CallsiteCache> = RefCell::new(HashMap::default());
}

/// The class of `meta` for layer `layer`, computed by `classify` once per thread and whitelist
/// generation.
#[inline]
pub(super) fn cached(
    layer: u64,
    meta: &'static Metadata<'static>,
    generation: u64,
    classify: impl FnOnce() -> CallsiteClass,
) -> CallsiteClass {
    let key = (layer, meta as *const Metadata<'static> as usize);
    let mut classify = Some(classify);
    let mut run = || match classify.take() {
        Some(f) => f(),
        None => CallsiteClass::new(meta, &[], false),
    };
    let lookup = CALLSITES.try_with(|cache| {
        // A `Debug` impl that logs runs inside a capture, not inside this borrow: the cache is
        // never borrowed twice. `try_borrow` still guards it.
        let hit = cache
            .try_borrow()
            .ok()
            .and_then(|c| c.get(&key).copied())
            .filter(|(g, _)| *g == generation)
            .map(|(_, class)| class);
        match hit {
            Some(class) => class,
            None => {
                let class = run();
                if let Ok(mut cache) = cache.try_borrow_mut() {
                    if cache.len() >= CALLSITE_CACHE_LIMIT {
                        cache.clear();
                    }
                    cache.insert(key, (generation, class));
                }
                class
            }
        }
    });
    // During thread teardown the cache is gone: classify without it.
    lookup.unwrap_or_else(|_| run())
}

/// A fast hasher for (id, address) keys: addresses are already well spread.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
}
