//! Which of this layer's spans is current on this thread, kept by the layer itself.
//!
//! Asking the registry costs two lookups in its slab per question (the current span, then its
//! data), each a reference-count increment and decrement: about 30 ns for every event inside a
//! span and every child span. The layer sees every `on_enter` and `on_exit` of the spans it
//! records, so it keeps its own stack of entered span ids per thread, with the registry's rules:
//! a span entered again while it is already on the stack is a *duplicate* and does not become
//! current again, and an exit removes the innermost entry for that id.
//!
//! The stack answers only for spans this layer saw entered; callers check the answer against
//! the span store and ask the registry when it has none they can trust (`event_place` and
//! `parent_of` in `mod.rs`). For an event, the stack's answer is the registry's: with per-layer
//! filters, the registry too walks its stack down to the first span this layer records. For a
//! new span's parent it is trusted only when its top is also the registry's current span: a
//! span hidden by a per-layer filter and entered on top of ours (a task's span polled inside a
//! worker's) makes the registry walk that span's own ancestors instead.
//!
//! Each entry also keeps when it was entered, so that the exit can count the time in between as
//! the span's busy time without looking the span up on enter.

use std::cell::RefCell;
use std::num::NonZeroU64;

use tracing_core::span::Id;

use crate::clock::Tick;

/// One layer's stack on one thread.
struct Stack {
    layer: u64,
    /// Entered spans, innermost last.
    spans: Vec<Entered>,
}

/// One entry of a stack.
struct Entered {
    id: NonZeroU64,
    /// Entered again while already on the stack: not current, and not counted as busy.
    duplicate: bool,
    /// When it was entered.
    at: Tick,
}

/// Stacks kept per thread before empty ones of other layers are dropped (layers come and go in
/// tests; a thread's list stays short).
const MAX_STACKS: usize = 16;

thread_local! {
    static STACKS: RefCell<Vec<Stack>> = const { RefCell::new(Vec::new()) };
}

/// Notes that `layer`'s span `id` was entered on this thread, at `now`.
#[inline]
pub(super) fn enter(layer: u64, id: &Id, now: Tick) {
    let id = id.into_non_zero_u64();
    let _ = STACKS.try_with(|stacks| {
        let Ok(mut stacks) = stacks.try_borrow_mut() else {
            return;
        };
        let i = match position_of(&stacks, layer) {
            Some(i) => i,
            None => {
                if stacks.len() >= MAX_STACKS {
                    stacks.retain(|s| !s.spans.is_empty());
                }
                stacks.push(Stack {
                    layer,
                    spans: Vec::new(),
                });
                stacks.len() - 1
            }
        };
        let spans = &mut stacks[i].spans;
        let duplicate = spans.iter().any(|s| s.id == id);
        spans.push(Entered {
            id,
            duplicate,
            at: now,
        });
    });
}

/// Notes that `layer`'s span `id` was exited on this thread. Returns when it was entered, unless
/// the exit ends a duplicate entry (the span is still entered) or matches no entry.
#[inline]
pub(super) fn exit(layer: u64, id: &Id) -> Option<Tick> {
    let id = id.into_non_zero_u64();
    STACKS
        .try_with(|stacks| {
            let mut stacks = stacks.try_borrow_mut().ok()?;
            let i = position_of(&stacks, layer)?;
            let spans = &mut stacks[i].spans;
            // Spans are mostly exited innermost first.
            let exited = if spans.last().is_some_and(|s| s.id == id) {
                spans.pop()?
            } else {
                let i = spans.iter().rposition(|s| s.id == id)?;
                spans.remove(i)
            };
            (!exited.duplicate).then_some(exited.at)
        })
        .ok()
        .flatten()
}

/// Where `layer`'s stack is in this thread's list: nearly always the first (one layer per
/// subscriber), checked before the list is searched.
#[inline]
fn position_of(stacks: &[Stack], layer: u64) -> Option<usize> {
    match stacks.first() {
        Some(first) if first.layer == layer => Some(0),
        _ => stacks.iter().position(|s| s.layer == layer),
    }
}

/// What the stack says about `layer`'s current span on this thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Current {
    /// This span (the innermost entered one that is not a duplicate).
    Span(Id),
    /// No span of this layer is entered on this thread.
    None,
    /// The stack cannot tell (during thread teardown).
    Unknown,
}

/// `layer`'s current span on this thread.
#[inline]
pub(super) fn current(layer: u64) -> Current {
    STACKS
        .try_with(|stacks| {
            let Ok(stacks) = stacks.try_borrow() else {
                return Current::Unknown;
            };
            let top = position_of(&stacks, layer)
                .and_then(|i| stacks[i].spans.iter().rev().find(|s| !s.duplicate));
            match top {
                Some(top) => Current::Span(Id::from_non_zero_u64(top.id)),
                None => Current::None,
            }
        })
        .unwrap_or(Current::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        Id::from_u64(n)
    }

    fn at(raw: u64) -> Tick {
        Tick::from_raw(raw)
    }

    #[test]
    fn follows_the_registry_rules() {
        let layer = 1_000_001;
        assert_eq!(current(layer), Current::None);
        enter(layer, &id(1), at(10));
        enter(layer, &id(2), at(20));
        assert_eq!(current(layer), Current::Span(id(2)));
        // Entering 1 again is a duplicate: 2 stays current.
        enter(layer, &id(1), at(30));
        assert_eq!(current(layer), Current::Span(id(2)));
        // The exit removes the innermost 1 (the duplicate): 1 is still entered, not busy-counted.
        assert_eq!(exit(layer, &id(1)), None);
        assert_eq!(current(layer), Current::Span(id(2)));
        assert_eq!(exit(layer, &id(2)), Some(at(20)));
        assert_eq!(current(layer), Current::Span(id(1)));
        // An exit of a span not on the stack changes nothing.
        assert_eq!(exit(layer, &id(7)), None);
        assert_eq!(current(layer), Current::Span(id(1)));
        // The last exit of 1 counts from its first entry.
        assert_eq!(exit(layer, &id(1)), Some(at(10)));
        assert_eq!(current(layer), Current::None);
        // An exit out of order (not the innermost) removes that entry and keeps the others.
        enter(layer, &id(3), at(40));
        enter(layer, &id(4), at(50));
        assert_eq!(exit(layer, &id(3)), Some(at(40)));
        assert_eq!(current(layer), Current::Span(id(4)));
        assert_eq!(exit(layer, &id(4)), Some(at(50)));
        assert_eq!(current(layer), Current::None);
    }

    #[test]
    fn layers_have_their_own_stacks() {
        let (a, b) = (1_000_002, 1_000_003);
        enter(a, &id(5), at(1));
        assert_eq!(current(a), Current::Span(id(5)));
        assert_eq!(current(b), Current::None);
        exit(a, &id(5));
    }

    #[test]
    fn the_list_of_stacks_stays_short() {
        for layer in 2_000_000..2_000_100 {
            enter(layer, &id(1), at(1));
            exit(layer, &id(1));
        }
        STACKS.with(|s| assert!(s.borrow().len() <= MAX_STACKS, "{}", s.borrow().len()));
    }
}
