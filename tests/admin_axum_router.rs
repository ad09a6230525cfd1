//! The admin routes mounted into an application's own axum server, nested under a prefix.
#![cfg(feature = "axum")]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use tracing_offload::metrics::PROMETHEUS_CONTENT_TYPE;
use tracing_offload::{admin, OffloadLayer};

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let allow = resp
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let detail = if status == StatusCode::METHOD_NOT_ALLOWED {
        allow
    } else {
        body
    };
    (status, content_type, detail)
}

#[tokio::test]
async fn the_routes_work_nested_in_an_application_router() {
    let (_layer, guard) = OffloadLayer::builder().build().unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "app" }))
        .nest("/admin", admin::router(Arc::new(guard.handle())));

    let (status, ct, body) = call(&app, "GET", "/admin/metrics").await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::OK, PROMETHEUS_CONTENT_TYPE)
    );
    assert!(body.contains("offload_queue_capacity 65536\n"), "{body}");

    let (status, ct, body) = call(&app, "GET", "/admin/health").await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "application/json"));
    assert!(body.contains("\"status\":\"healthy\""), "{body}");

    let (status, _, body) = call(&app, "GET", "/admin/config").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"capacity\""), "{body}");

    let (status, _, allow) = call(&app, "POST", "/admin/metrics").await;
    assert_eq!(
        (status, allow.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD")
    );

    let (status, _, _) = call(&app, "GET", "/admin/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = call(&app, "GET", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "app"));
}

#[tokio::test]
async fn a_stopped_pipeline_answers_503_on_health() {
    let (_layer, guard) = OffloadLayer::builder().build().unwrap();
    let app: axum::Router = admin::router(Arc::new(guard.handle()));
    guard.shutdown(std::time::Duration::from_secs(5)).unwrap();
    let (status, _, body) = call(&app, "GET", "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

/// An `Accept` header over two lines is one list (RFC 9110 §5.3): the router read the first
/// line only (adversary pass 38).
#[tokio::test]
async fn accept_over_two_header_lines_is_one_list() {
    let (_layer, guard) = OffloadLayer::builder().build().unwrap();
    let app: axum::Router = admin::router(Arc::new(guard.handle()));
    let req = Request::builder()
        .uri("/metrics")
        .header("accept", "text/plain;q=0.1")
        .header("accept", "application/openmetrics-text")
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        tracing_offload::metrics::OPENMETRICS_CONTENT_TYPE
    );
}
