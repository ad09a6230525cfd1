//! Context propagation across processes with W3C Trace Context (`traceparent`).
//!
//! * **Incoming**: create the root span of a request with a `traceparent` field and it joins the
//!   caller's trace (see [`TRACEPARENT_FIELD`](crate::TRACEPARENT_FIELD)):
//!   `info_span!("request", traceparent = %header_value)`. With the `otlp` feature,
//!   [`traceparent_from_headers`] reads the header from an `http::HeaderMap`.
//! * **Outgoing**: [`OffloadSpanExt::traceparent`] gives the current span's `traceparent` to
//!   put on an outgoing request; [`inject_traceparent`] does that for an `http::HeaderMap`.
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

use tracing_subscriber::registry::LookupSpan;

use crate::ids::{SpanId, TraceId};
use crate::layer::{SpanState, Unsampled};

/// The trace context of a span recorded by an [`OffloadLayer`](crate::OffloadLayer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
}

/// Reads a span's trace context, for propagation to other processes.
pub trait OffloadSpanExt {
    /// The span's trace and span ids, when the layer records it (`None` for a disabled span,
    /// an unsampled one, or a subscriber without an `OffloadLayer` over a `Registry`).
    fn offload_context(&self) -> Option<SpanContext>;

    /// The W3C `traceparent` value for an outgoing request made inside this span:
    /// `00-<trace id>-<span id>-01`. `None` when the span is not recorded (see
    /// [`offload_context`](Self::offload_context)); an unsampled span propagates nothing, so
    /// the callee decides for itself.
    fn traceparent(&self) -> Option<String> {
        self.offload_context()
            .map(|c| crate::traceparent::format_traceparent(c.trace_id, c.span_id, true))
    }

    /// Whether the span is known to be unsampled (its trace is not recorded).
    fn is_unsampled(&self) -> bool;
}

impl OffloadSpanExt for tracing::Span {
    fn offload_context(&self) -> Option<SpanContext> {
        with_extensions(self, |ext| {
            ext.get::<SpanState>().map(|s| SpanContext {
                trace_id: s.trace_id,
                span_id: s.span_id,
            })
        })
        .flatten()
    }

    fn is_unsampled(&self) -> bool {
        with_extensions(self, |ext| ext.get::<Unsampled>().is_some()).unwrap_or(false)
    }
}

/// Runs `f` on the span's registry extensions, when its subscriber is (or wraps) a `Registry`.
fn with_extensions<T>(
    span: &tracing::Span,
    f: impl FnOnce(&tracing_subscriber::registry::Extensions<'_>) -> T,
) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        let ext = span.extensions();
        Some(f(&ext))
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
