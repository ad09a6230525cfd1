//! What is decided once per callsite (per thread, per layer) and then looked up: the level, and
//! the facts about the callsite's fields that the hot path would otherwise look for on every
//! record.

use std::cell::{Cell, RefCell};
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
    /// In front of the map: one class per slot, at a slot chosen by the key's address bits.
    /// A hit costs an index and three compares where the map hashes and probes.
    static RECENT: Cell<[Recent; RECENT_SLOTS]> = const { Cell::new([Recent::EMPTY; RECENT_SLOTS]) };
}

/// Slots in front of the map, per thread: a power of two.
const RECENT_SLOTS: usize = 64;

/// A slot of [`RECENT`]: the key, the whitelist generation, and the class.
#[derive(Clone, Copy)]
struct Recent {
    layer: u64,
    /// The callsite's address; 0 in an empty slot (no callsite is at address 0).
    callsite: usize,
    generation: u64,
    class: CallsiteClass,
}

impl Recent {
    const EMPTY: Recent = Recent {
        layer: 0,
        callsite: 0,
        generation: 0,
        class: CallsiteClass {
            level: LogLevel::Info,
            may_be_critical: false,
            whitelisted: false,
            may_have_remote_parent: false,
            duplicate_names: false,
            from_log: false,
        },
    };
}

/// The slot of [`RECENT`] for a key: metadata are statics at least 8 bytes apart, and
/// consecutive layer ids should not share slots for one callsite.
#[inline]
fn recent_slot(layer: u64, callsite: usize) -> usize {
    ((callsite >> 3) ^ (layer as usize).wrapping_mul(7)) & (RECENT_SLOTS - 1)
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
    let callsite = meta as *const Metadata<'static> as usize;
    let slot = recent_slot(layer, callsite);
    let recent = RECENT.try_with(|r| {
        let slots: &Cell<[Recent]> = r;
        slots.as_slice_of_cells()[slot].get()
    });
    if let Ok(r) = recent {
        if r.callsite == callsite && r.layer == layer && r.generation == generation {
            return r.class;
        }
    }
    let class = cached_in_map(layer, callsite, meta, generation, classify);
    let _ = RECENT.try_with(|r| {
        let slots: &Cell<[Recent]> = r;
        slots.as_slice_of_cells()[slot].set(Recent {
            layer,
            callsite,
            generation,
            class,
        });
    });
    class
}

/// [`cached`] past [`RECENT`]: the map, which keeps every callsite seen.
#[inline(never)]
fn cached_in_map(
    layer: u64,
    callsite: usize,
    meta: &'static Metadata<'static>,
    generation: u64,
    classify: impl FnOnce() -> CallsiteClass,
) -> CallsiteClass {
    let key = (layer, callsite);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_core::callsite::Callsite;

    /// Classes computed for each (layer, callsite, generation), counting the computations.
    fn class_of(
        layer: u64,
        meta: &'static Metadata<'static>,
        generation: u64,
        computed: &mut u32,
        whitelisted: bool,
    ) -> CallsiteClass {
        cached(layer, meta, generation, || {
            *computed += 1;
            CallsiteClass::new(meta, &[], whitelisted)
        })
    }

    #[test]
    fn a_class_is_computed_once_per_layer_callsite_and_generation() {
        std::thread::spawn(|| {
            // 16 callsites for 3 layers: 48 keys for the 64 slots in front of the map, chosen
            // by address bits, so some share a slot and the map behind answers for them.
            let mut metas = Vec::new();
            macro_rules! callsites {
                ($($n:literal)*) => {$(
                    let cs = tracing::callsite!(name: $n, kind: tracing::metadata::Kind::EVENT, level: tracing::Level::INFO, fields: []);
                    metas.push(cs.metadata());
                )*};
            }
            callsites!("a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p");
            let mut computed = 0;
            for round in 0..3 {
                for layer in [1u64, 2, 9] {
                    for meta in &metas {
                        let class = class_of(layer, meta, 7, &mut computed, layer == 2);
                        // Each layer gets its own class back, not another layer's.
                        assert_eq!(class.whitelisted, layer == 2, "round {round}");
                    }
                }
            }
            assert_eq!(computed, 3 * metas.len() as u32);
            // A new generation is classified again, once.
            for _ in 0..2 {
                let class = class_of(1, metas[0], 8, &mut computed, true);
                assert!(class.whitelisted);
            }
            assert_eq!(computed, 3 * metas.len() as u32 + 1);
        })
        .join()
        .unwrap();
    }
}
