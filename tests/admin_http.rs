//! The admin endpoint over real HTTP: routes, status codes, content types, 404/405, `/config`
//! with env values and warnings, a bind failure naming the address, and stopping with the
//! guard.
#![cfg(feature = "admin")]

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::admin::*;
use support::*;
use tracing_offload::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use tracing_offload::{BuildError, Builder, OffloadLayer};

fn pipeline() -> (tracing_offload::OffloadLayer, tracing_offload::Guard) {
    OffloadLayer::builder()
        .admin_addr("127.0.0.1:0")
        .sink(Gate::new("gate"))
        .build()
        .unwrap()
}

#[test]
fn metrics_are_served_as_prometheus_text() {
    let (layer, guard) = pipeline();
    let addr = guard.admin_addr().unwrap();
    with_layer(layer, || tracing::info!("one"));
    guard.handle().flush(DEADLINE).unwrap();
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, PROMETHEUS_CONTENT_TYPE);
    assert!(
        r.body
            .contains("offload_records_total{outcome=\"enqueued\"} 1\n"),
        "{}",
        r.body
    );
    assert!(r
        .body
        .contains("offload_sink_records_total{sink=\"gate\",outcome=\"exported\"} 1\n"));
}

#[test]
fn metrics_are_served_as_openmetrics_when_asked() {
    let (_layer, guard) = pipeline();
    let addr = guard.admin_addr().unwrap();
    let r = http(
        "GET",
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, OPENMETRICS_CONTENT_TYPE);
    assert!(r.body.ends_with("# EOF\n"));
}

#[test]
fn health_is_json() {
    let (_layer, guard) = pipeline();
    let r = get(guard.admin_addr().unwrap(), "/health");
    assert_eq!(
        (r.status, r.content_type.as_str()),
        (200, "application/json")
    );
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json["status"], "healthy", "{json:#}");
    assert!(json["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(component(&json, "sink:gate")["status"], "healthy");
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let (_layer, guard) = pipeline();
    let addr = guard.admin_addr().unwrap();
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(get(addr, "/metricsx").status, 404);
    for path in ["/metrics", "/health", "/config"] {
        for method in ["POST", "PUT", "DELETE"] {
            let r = http(method, addr, path, None);
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.allow.as_deref(), Some("GET, HEAD"));
        }
        assert_eq!(http("HEAD", addr, path, None).status, 200, "HEAD {path}");
    }
}

#[test]
fn config_shows_env_values_their_source_and_warnings() {
    let env = |var: &str| match var {
        "OFFLOAD_CAPACITY" => Some("2048".to_owned()),
        "OFFLOAD_BACKPRESSURE" => Some("sometimes".to_owned()),
        "OFFLOAD_ADMIN_ADDR" => Some("127.0.0.1:0".to_owned()),
        _ => None,
    };
    let (_layer, guard) = Builder::from_env_with(&env).build().unwrap();
    let r = get(guard.admin_addr().unwrap(), "/config");
    assert_eq!(
        (r.status, r.content_type.as_str()),
        (200, "application/json")
    );
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json["capacity"]["value"], 2048, "{json:#}");
    assert_eq!(json["capacity"]["source"]["kind"], "env");
    assert_eq!(json["capacity"]["source"]["name"], "OFFLOAD_CAPACITY");
    assert_eq!(json["admin_addr"]["source"]["name"], "OFFLOAD_ADMIN_ADDR");
    assert_eq!(json["backpressure"]["source"]["kind"], "default");
    let warnings = json["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w["var"] == "OFFLOAD_BACKPRESSURE" && w["value"] == "sometimes"),
        "{json:#}"
    );
}

#[test]
fn a_taken_address_fails_the_build_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = OffloadLayer::builder()
        .admin_addr(addr.as_str())
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Admin(_)), "{err:?}");
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn a_malformed_address_fails_the_build_naming_it() {
    let err = OffloadLayer::builder()
        .admin_addr("not an address")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("not an address"), "{err}");
}

#[test]
fn the_endpoint_stops_with_the_guard() {
    let (_layer, guard) = pipeline();
    let addr = guard.admin_addr().unwrap();
    assert_eq!(get(addr, "/health").status, 200);
    drop(guard);
    // The port is released: it can be bound again, and nothing answers there.
    wait_until("the admin port to be released", DEADLINE, || {
        TcpListener::bind(addr).is_ok()
    });
    let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    assert!(refused.is_err(), "still listening on {addr}");
}

/// Sends `request` as it is and reads the whole response (the server closes the connection).
fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Requests written in forms HTTP allows name the routes they name (adversary pass 38: each
/// was a 404 or the wrong format): the absolute form of the target (RFC 9112 §3.2.2: a server
/// must accept it), percent-encoded unreserved characters (RFC 3986 §6.2.2.2), and an
/// `Accept` header over two lines, which is one list (RFC 9110 §5.3).
#[test]
fn requests_in_every_form_http_allows_name_their_route() {
    let (_layer, guard) = pipeline();
    let addr = guard.admin_addr().unwrap();
    for target in [
        format!("http://{addr}/health"),
        format!("HTTP://{addr}/health?x=1"),
        "/%68ealth".to_owned(),
        "/heal%74%68".to_owned(),
    ] {
        let r = raw(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        );
        assert!(r.starts_with("HTTP/1.1 200 "), "{target}: {r}");
        assert!(r.contains("\"status\""), "{target}: {r}");
    }
    // Reserved characters keep their meaning encoded: `%2F` is not a path separator.
    let r = raw(addr, "GET %2Fhealth HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = raw(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;q=0.1\r\n\
         Accept: application/openmetrics-text\r\n\r\n",
    );
    assert!(
        r.contains(&format!("Content-Type: {OPENMETRICS_CONTENT_TYPE}\r\n")),
        "{r}"
    );
}
