//! `/metrics` content negotiation over real HTTP: an `Accept` header that gives OpenMetrics a
//! weight of zero refuses it, however the zero is written (`q=0`, `q=0.0`, `q=0.000`, `Q=0`),
//! and gets the Prometheus text format. A malformed weight answers with the Prometheus text
//! format too, never an error. Only the literal `q=0` used to count as a refusal.
#![cfg(feature = "admin")]

mod support;

use support::admin::*;
use tracing_offload::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};

#[test]
fn a_zero_weight_refuses_openmetrics_however_it_is_written() {
    let (_guard, addr) = serve_admin(Gate::new("gate"));
    let metrics = |accept: &str| http("GET", addr, "/metrics", Some(accept));
    for accept in [
        "application/openmetrics-text;q=0",
        "application/openmetrics-text;q=0.0",
        "application/openmetrics-text;q=0.00",
        "application/openmetrics-text;q=0.000",
        "application/openmetrics-text;Q=0",
        "application/openmetrics-text; version=1.0.0 ; q=0.0, text/plain;version=0.0.4",
        "application/openmetrics-text;version=\"1.0.0;q=1\";q=0.0",
        "application/openmetrics-text;x=\"a,b\";q=0",
        // Malformed weights: not an acceptable range, so the default format.
        "application/openmetrics-text;q=",
        "application/openmetrics-text;q=abc",
        "application/openmetrics-text;q=1.5",
        "application/openmetrics-text;q=0.0001",
        "application/openmetrics-text;q=-1",
        "application/openmetrics-text;q=\u{e9}",
    ] {
        let r = metrics(accept);
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.content_type, PROMETHEUS_CONTENT_TYPE, "{accept}");
    }
    for accept in [
        "application/openmetrics-text",
        "application/openmetrics-text;q=0.001",
        "application/openmetrics-text;Q=1",
        "application/openmetrics-text;q=1.000",
        "APPLICATION/OpenMetrics-Text;version=1.0.0;q=0.5",
        "text/plain;q=0.5, application/openmetrics-text;q=0.0, application/openmetrics-text;version=1.0.0",
    ] {
        let r = metrics(accept);
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.content_type, OPENMETRICS_CONTENT_TYPE, "{accept}");
        assert!(r.body.ends_with("# EOF\n"), "{accept}");
    }
}

/// The weights decide between the two formats, as RFC 9110 says: the one the client prefers
/// is served, each judged by the most specific range that names it (`*/*` names both, and
/// then the Prometheus text format, the default, is served). Any weight above zero for
/// OpenMetrics used to win.
#[test]
fn the_format_with_the_higher_weight_is_served() {
    let (_guard, addr) = serve_admin(Gate::new("gate"));
    let served = |accept: &str| http("GET", addr, "/metrics", Some(accept)).content_type;
    for (accept, expected) in [
        (
            "text/plain;q=1, application/openmetrics-text;q=0.1",
            PROMETHEUS_CONTENT_TYPE,
        ),
        (
            "text/*;q=0.9, application/openmetrics-text;q=0.5",
            PROMETHEUS_CONTENT_TYPE,
        ),
        ("*/*", PROMETHEUS_CONTENT_TYPE),
        ("*/*;q=0.5, text/plain;q=0.1", OPENMETRICS_CONTENT_TYPE),
        ("application/*", OPENMETRICS_CONTENT_TYPE),
        // What Prometheus 3 sends.
        (
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,\
             text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            OPENMETRICS_CONTENT_TYPE,
        ),
        (
            "text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.9",
            OPENMETRICS_CONTENT_TYPE,
        ),
    ] {
        assert_eq!(served(accept), expected, "{accept}");
    }
}
