//! Context propagation across processes with W3C Trace Context (`traceparent`).
//!
//! * **Incoming**: create the root span of a request with a `traceparent` field and it joins the
//!   caller's trace (see [`TRACEPARENT_FIELD`](crate::TRACEPARENT_FIELD)):
//!   `info_span!("request", traceparent = %header_value)`. When the span is made before the
//!   header is known (middleware, the `instrument` attribute), [`OffloadSpanExt::set_parent_traceparent`] or
//!   `span.record("traceparent", header)` does the same later. With the `otlp` feature,
#![cfg_attr(
    feature = "otlp",
    doc = "  [`traceparent_from_headers`] reads the header from an `http::HeaderMap`."
)]
#![cfg_attr(
    not(feature = "otlp"),
    doc = "  `traceparent_from_headers` reads the header from an `http::HeaderMap`."
)]
//! * **Outgoing**: [`OffloadSpanExt::traceparent`] gives the current span's `traceparent` to
#![cfg_attr(
    feature = "otlp",
    doc = "  put on an outgoing request; [`inject_traceparent`] does that for an `http::HeaderMap`."
)]
#![cfg_attr(
    not(feature = "otlp"),
    doc = "  put on an outgoing request; `inject_traceparent` does that for an `http::HeaderMap`."
)]
//!
//! ```
//! use tracing_offload::{OffloadLayer, OffloadSpanExt};
//! use tracing_subscriber::prelude::*;
//!
//! let (layer, _guard) = OffloadLayer::builder().build()?;
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//!     let span = tracing::info_span!("request", traceparent = incoming);
//!     let outgoing = span.traceparent().unwrap();
//!     // Same trace, a new span id of ours, still sampled.
//!     assert!(outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//!     assert!(outgoing.ends_with("-01"));
//! });
//! # Ok::<(), tracing_offload::BuildError>(())
//! ```

use crate::ids::SpanContext;
use crate::layer::OffloadLayer;
pub use crate::layer::SetParentError;
use crate::traceparent::{format_traceparent, parse_traceparent};

/// Reads and sets a span's trace context, for propagation to and from other processes.
pub trait OffloadSpanExt {
    /// The span's trace id, span id and sampled flag, for any span an [`OffloadLayer`] knows,
    /// sampled or not (`None` for a disabled span, or a subscriber without an `OffloadLayer`;
    /// with two of them, the outermost that records the span answers: the layers give a span
    /// the same ids, though each makes its own sampling decision). For a span the layers'
    /// filters hide (a `debug_span!` under an `INFO` filter), the context of its nearest
    /// recorded ancestor, which its events and child spans belong to (found through the
    /// subscriber's `tracing_subscriber::Registry`).
    fn offload_context(&self) -> Option<SpanContext>;

    /// The W3C `traceparent` value for an outgoing request made inside this span:
    /// `00-<trace id>-<span id>-<flags>`, the flags `01` when the trace is sampled and `00` when
    /// it is not, so that the callee follows the decision (under a parent-based sampler) and the
    /// trace stays whole, or whole-ly absent, across services. The callee joins the span's
    /// trace: a remote parent set on the span after this is refused
    /// ([`SetParentError::Propagated`]).
    fn traceparent(&self) -> Option<String> {
        self.offload_context()
            .map(|c| format_traceparent(c.trace_id, c.span_id, c.sampled))
    }

    /// Whether the span is known to be unsampled (its trace is propagated, not recorded).
    fn is_unsampled(&self) -> bool {
        self.offload_context().is_some_and(|c| !c.sampled)
    }

    /// Makes the span a child of a remote parent given as a W3C `traceparent` (e.g. the header
    /// of the request it handles), after it was created: it joins that trace, and the
    /// parent-based samplers follow the remote sampled flag. This is for spans made before the
    /// header is known, in middleware such as `tower_http::trace::TraceLayer` or by the
    /// `instrument` attribute. Recording the span's `traceparent` field
    /// (`span.record("traceparent", header)`) does the same.
    ///
    /// Only a local root (no parent span in this process) with no child span and no kept event
    /// yet can change its trace (an event sampled out never left the process, so it does not
    /// count): otherwise the trace would split, so the call is refused
    /// ([`SetParentError::HasLocalParent`], [`HasChildren`](SetParentError::HasChildren),
    /// [`HasEvents`](SetParentError::HasEvents); and a span whose `traceparent` was already
    /// handed out for an outgoing call, [`Propagated`](SetParentError::Propagated)), counted,
    /// and reported once on stderr.
    ///
    /// With several `OffloadLayer`s on one registry, it reaches each of them, and they decide
    /// together: where the span is still a local root with no child span and no event in every
    /// layer, it joins the remote trace in each; where it is not in one (a per-layer filter can
    /// make one layer see a child or an event that another does not), every layer that records
    /// the span refuses and counts it, and the refusal is returned: the span keeps one trace at
    /// every destination. Layers inside a `Vec` or an `Option` are not reached, because
    /// `tracing-subscriber` 0.3 does not hand them the subscriber's `Dispatch`; recording the
    /// `traceparent` field reaches every layer.
    fn set_parent_traceparent(&self, traceparent: &str) -> Result<(), SetParentError>;
}

impl OffloadSpanExt for tracing::Span {
    fn offload_context(&self) -> Option<SpanContext> {
        context_of(self, false)
    }

    fn traceparent(&self) -> Option<String> {
        // Marked as sent on: a remote parent set later is refused, as it would leave the
        // callee's part of the trace behind (adversary pass 62).
        context_of(self, true).map(|c| format_traceparent(c.trace_id, c.span_id, c.sampled))
    }

    fn set_parent_traceparent(&self, traceparent: &str) -> Result<(), SetParentError> {
        let remote = parse_traceparent(traceparent)
            .ok_or_else(|| SetParentError::InvalidTraceparent(traceparent.to_owned()))?;
        self.with_subscriber(|(id, dispatch)| {
            dispatch
                .downcast_ref::<OffloadLayer>()
                .ok_or(SetParentError::NotRecorded)?
                .set_remote_parent_everywhere(id, remote)
        })
        .unwrap_or(Err(SetParentError::NotRecorded))
    }
}

/// The span's context (see [`OffloadSpanExt::offload_context`]); `propagated`: marks the span
/// whose context it is as having handed out its `traceparent`.
fn context_of(span: &tracing::Span, propagated: bool) -> Option<SpanContext> {
    span.with_subscriber(|(id, dispatch)| {
        let layer = dispatch.downcast_ref::<OffloadLayer>()?;
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>();
        let recorded = match layer.span_context_in_any_layer(id) {
            Some(_) => id.clone(),
            None => {
                // A span the layers' filters hide: its nearest recorded ancestor's, which its
                // events and child spans belong to (adversary pass 62: `None`, and an outgoing
                // call made there started a new trace downstream).
                crate::layer::recorded_ancestor(registry?, id, |a| {
                    layer.span_context_in_any_layer(a).is_some()
                })?
            }
        };
        if propagated {
            layer.mark_propagated(id, registry);
        }
        layer.span_context_in_any_layer(&recorded)
    })
    .flatten()
}

/// Puts the current span's `traceparent` on outgoing request headers; returns whether it did.
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub fn inject_traceparent(span: &tracing::Span, headers: &mut http::HeaderMap) -> bool {
    let Some(value) = span.traceparent() else {
        return false;
    };
    match http::HeaderValue::from_str(&value) {
        Ok(v) => {
            headers.insert(crate::TRACEPARENT_FIELD, v);
            true
        }
        Err(_) => false,
    }
}

/// The `traceparent` header of an incoming request, to give to the request's root span as the
/// `traceparent` field. Invalid values are ignored by the layer (a new trace starts).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub fn traceparent_from_headers(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(crate::TRACEPARENT_FIELD)?.to_str().ok()
}
