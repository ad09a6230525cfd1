//! An axum service whose request spans join the caller's trace and whose outgoing calls carry
//! it: the recipe for `tower_http`'s `TraceLayer`, which makes the request span before the
//! handler runs (and before anyone has looked at the headers).
//!
//! ```sh
//! cargo run --example axum_service            # console output
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 cargo run --example axum_service
//! ```
//!
//! `/checkout` calls `/orders/42` on the same service over HTTP with the `traceparent` header,
//! so one trace holds both requests.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use tower_http::trace::TraceLayer;
use tracing_offload::propagation::traceparent_from_headers;
use tracing_offload::OffloadSpanExt;

/// The span of every request, for `TraceLayer::make_span_with`: joined to the caller's trace
/// from its `traceparent` header, before the handler makes any child span.
pub fn request_span(req: &Request<Body>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        uri = %req.uri(),
        otel.kind = "server",
    );
    if let Some(header) = traceparent_from_headers(req.headers()) {
        // An invalid header starts a new trace, as W3C Trace Context says; the span has no
        // child yet, so nothing else can refuse it.
        let _ = span.set_parent_traceparent(header);
    }
    span
}

/// The service; `base` is its own address, for the call it makes to itself.
pub fn app(base: String) -> Router {
    Router::new()
        .route("/checkout", get(checkout))
        .route("/orders/{id}", get(order))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(base)
}

async fn checkout(State(base): State<String>) -> String {
    tracing::info!("checking out");
    // The outgoing call carries the current span's context, sampled (`-01`) or not (`-00`), so
    // the callee follows the decision and the trace stays whole.
    let header = tracing::Span::current().traceparent();
    let order = tokio::task::spawn_blocking(move || {
        let mut call = ureq::get(format!("{base}/orders/42"));
        if let Some(header) = header {
            call = call.header("traceparent", header);
        }
        call.call()?.body_mut().read_to_string()
    })
    .await;
    match order {
        Ok(Ok(order)) => format!("checked out {order}"),
        Ok(Err(e)) => format!("order service failed: {e}"),
        Err(e) => format!("order call panicked: {e}"),
    }
}

async fn order(Path(id): Path<u64>) -> String {
    let lookup = tracing::info_span!("lookup", order = id);
    lookup.in_scope(|| tracing::info!(order = id, "found"));
    format!("order {id}")
}

#[allow(dead_code)] // the test suite includes this file for `app` and `request_span`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _guard = tracing_offload::init()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let base_for_server = base.clone();
    tokio::spawn(async move { axum::serve(listener, app(base_for_server)).await });
    let checkout = base.clone();
    let reply = tokio::task::spawn_blocking(move || {
        ureq::get(format!("{checkout}/checkout"))
            .call()?
            .body_mut()
            .read_to_string()
    })
    .await??;
    println!("{reply}");
    Ok(())
}
