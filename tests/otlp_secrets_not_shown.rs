//! Secrets in the OTLP settings stay secret wherever the crate shows its configuration or its
//! problems: `/config` (served without authentication), the warnings (stderr and
//! `Config::warnings`), build errors, the sink's last error in stats and `/health`, and
//! `Debug`.
//!
//! Two leaks this guards against: a malformed `OTEL_EXPORTER_OTLP_HEADERS` (a colon typed for
//! `=`, `Authorization: Bearer <token>`) went whole into its warning, the valid entries of a
//! mixed value with it; and an endpoint with credentials in its URL
//! (`http://user:<password>@host:4318`) was shown as given. A warning still says what is wrong
//! and which entry; an endpoint is shown as `user:***@host`, and the real URL is still used.
#![cfg(all(feature = "otlp", feature = "admin"))]

mod support;

use std::time::Duration;

use support::admin::{component, get};
use support::{error_chain, stderr_of_child_test, wait_until, DEADLINE};
use tracing_offload::sink::otlp::Protocol;
use tracing_offload::sink::Otlp;
use tracing_offload::{Config, Guard, OffloadLayer};

const SECRET: &str = "s3cr3t-token";
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";

fn lookup(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |var| {
        pairs
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.clone())
    }
}

/// A pipeline with `sink` and the admin endpoint on a free port.
fn serve(sink: Otlp) -> (tracing_offload::OffloadLayer, Guard) {
    OffloadLayer::builder()
        .admin_addr("127.0.0.1:0")
        .sink(sink)
        .build()
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
}

/// `/config` over HTTP, checked for the secret; the parsed document.
#[track_caller]
fn config_over_http(guard: &Guard) -> serde_json::Value {
    let r = get(guard.admin_addr().unwrap(), "/config");
    assert_eq!(r.status, 200);
    assert!(
        !r.body.contains(SECRET),
        "secret served at /config: {}",
        r.body
    );
    serde_json::from_str(&r.body).unwrap()
}

/// The one warning about `var` in `config`.
#[track_caller]
fn warning_about(config: &serde_json::Value, var: &str) -> String {
    let found: Vec<&serde_json::Value> = config["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["var"] == var)
        .collect();
    assert_eq!(found.len(), 1, "{config:#}");
    found[0].to_string()
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "secret in {what}: {text}");
}

#[test]
fn a_malformed_header_variable_is_reported_without_its_value() {
    let cases = [
        // A colon typed for `=`.
        (format!("Authorization: Bearer {SECRET}"), "entry 1"),
        // Valid entries beside a bad one are not shown either.
        (
            format!("x-api-key={SECRET},Authorization Bearer"),
            "entry 2",
        ),
        // With an `=` further on (base64 padding), the colon form has a "name" holding the
        // token: not a header name.
        (format!("Authorization: Bearer {SECRET}=="), "entry 1"),
        // A value HTTP cannot carry (a line break, percent-encoded).
        (format!("x-api-key={SECRET}%0A"), "entry 1"),
    ];
    for (value, entry) in cases {
        let sink = Otlp::from_env_with(&lookup(vec![(HEADERS, value.clone())]));
        for w in sink.warnings() {
            assert_no_secret("a warning", &w.to_string());
            assert_no_secret("a warning", &serde_json::to_string(w).unwrap());
        }
        let (_layer, guard) = serve(sink);
        let config = config_over_http(&guard);
        let warning = warning_about(&config, HEADERS);
        assert!(warning.contains(entry), "{value:?}: {warning}");
        assert!(
            config["sink_settings"]["otlp"]["headers"]
                .as_object()
                .unwrap()
                .is_empty(),
            "{config:#}"
        );
    }
}

#[test]
fn a_header_set_in_code_with_an_invalid_name_fails_the_build_without_showing_it() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let err = OffloadLayer::builder()
            .sink(
                Otlp::new()
                    .protocol(protocol)
                    .header("x-team", "core")
                    .header(format!("Authorization: Bearer {SECRET}"), "x"),
            )
            .build()
            .unwrap_err();
        let text = error_chain(&err);
        assert_no_secret("a build error", &text);
        assert!(text.contains("header 2"), "{text}");
    }
}

#[test]
fn credentials_in_an_endpoint_are_redacted_where_it_is_shown() {
    let url = format!("http://user:{SECRET}@127.0.0.1:4318");
    let sink = Otlp::new().endpoint(&url).protocol(Protocol::HttpProtobuf);
    assert_no_secret("Debug", &format!("{sink:?}"));
    let (_layer, guard) = serve(sink);
    let config = config_over_http(&guard);
    assert_eq!(
        config["sink_settings"]["otlp"]["traces_endpoint"],
        "http://user:***@127.0.0.1:4318/v1/traces",
        "{config:#}"
    );

    // A build error that quotes the endpoint.
    let url = format!("http://user:{SECRET}@127.0.0.1:4318");
    let tls = tracing_offload::sink::otlp::Tls::new().certificate("/nonexistent/ca.pem");
    let err = OffloadLayer::builder()
        .sink(Otlp::new().endpoint(url).tls(tls))
        .build()
        .unwrap_err();
    let text = error_chain(&err);
    assert_no_secret("a build error", &text);
    assert!(text.contains("user:***@127.0.0.1:4318"), "{text}");
}

/// A key in the base endpoint's query (`?api_key=…`, as some services take it): the signal's
/// path goes on the URL's path, the query stays on the request as given, and the key is hidden
/// wherever the endpoint is shown. The path used to be glued after the query
/// (`/otlp?api_key=<key>/v1/traces`): both signals went to `/otlp`, with a corrupted key, and
/// `/config` showed the key (found by an adversary).
#[test]
fn a_key_in_the_endpoints_query_stays_on_the_request_and_out_of_what_is_shown() {
    use support::receiver::{Answer, Receiver};
    let collector = Receiver::start(vec![Answer::status(200)]);
    let sink = Otlp::new()
        .endpoint(format!("{}/otlp?api_key={SECRET}", collector.endpoint()))
        .protocol(Protocol::HttpProtobuf);
    assert_no_secret("Debug", &format!("{sink:?}"));
    let (layer, guard) = serve(sink);
    let config = config_over_http(&guard);
    assert_eq!(
        config["sink_settings"]["otlp"]["logs_endpoint"],
        format!("{}/otlp/v1/logs?api_key=***", collector.endpoint()),
        "{config:#}"
    );
    support::with_layer(layer, || {
        let _span = tracing::info_span!("work").entered();
        tracing::info!("done");
    });
    guard.shutdown(DEADLINE).unwrap();
    let mut paths: Vec<String> = collector.received().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            format!("/otlp/v1/logs?api_key={SECRET}"),
            format!("/otlp/v1/traces?api_key={SECRET}")
        ]
    );
}

/// A token before the host, with an `@` later in the query or the path: the `:` before the
/// port is not a password's, and the token was shown as a user name (found by an adversary).
#[test]
fn a_token_before_the_host_stays_hidden_when_an_at_sign_follows() {
    for url in [
        format!("http://{SECRET}@127.0.0.1:4318/otlp?key=x@y"),
        format!("http://{SECRET}@127.0.0.1:4318/a@b/otlp"),
    ] {
        let sink = Otlp::new().endpoint(&url).protocol(Protocol::HttpProtobuf);
        assert_no_secret("Debug", &format!("{sink:?}"));
        let (_layer, guard) = serve(sink);
        config_over_http(&guard);
    }
}

/// An endpoint with credentials (in its user information and its query) where nothing listens:
/// the sink's export errors (which quote the URL) reach the stats, `/health` and, with a spool,
/// the spool's last error. A `'` in the user information is written raw in the URL the HTTP
/// client quotes (it used to end the URL for the redaction, which then hid nothing); a
/// backtick, an `@` and a `)` in a query value are the value's (they used to show the rest of
/// it).
fn failing_sink(spool: Option<&std::path::Path>) -> Otlp {
    let port = support::collector::free_port();
    let sink = Otlp::new()
        .endpoint(format!(
            "http://o'brien:pa'{SECRET}@127.0.0.1:{port}/?k=a`{SECRET}&api_key=k)@{SECRET}"
        ))
        .protocol(Protocol::HttpProtobuf)
        .timeout(Duration::from_millis(200))
        .max_retries(0)
        .events_as_logs(tracing_offload::sink::otlp::EventsAsLogs::None);
    match spool {
        Some(dir) => sink.spool(dir),
        None => sink,
    }
}

#[test]
fn export_errors_do_not_show_the_endpoints_credentials() {
    let (layer, guard) = serve(failing_sink(None));
    support::with_layer(layer, || drop(tracing::info_span!("work").entered()));
    let handle = guard.handle();
    wait_until("the export to fail", DEADLINE, || {
        handle.stats().sink("otlp").unwrap().last_error.is_some()
    });
    let error = handle
        .stats()
        .sink("otlp")
        .unwrap()
        .last_error
        .clone()
        .unwrap();
    assert_no_secret("the sink's last error", &error);
    let health = get(guard.admin_addr().unwrap(), "/health").body;
    assert_no_secret("/health", &health);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert!(
        !component(&health, "sink:otlp")["last_error"].is_null(),
        "{health:#}"
    );
}

#[test]
fn spool_errors_do_not_show_the_endpoints_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, guard) = serve(failing_sink(Some(dir.path())));
    support::with_layer(layer, || drop(tracing::info_span!("work").entered()));
    let handle = guard.handle();
    wait_until("the spool to note the failure", DEADLINE, || {
        support::otlp_spool(&handle).last_error.is_some()
    });
    let error = support::otlp_spool(&handle).last_error.unwrap();
    assert_no_secret("the spool's last error", &error);
    assert_no_secret("/health", &get(guard.admin_addr().unwrap(), "/health").body);
    let config: Config = handle.config();
    assert_no_secret("the config", &serde_json::to_string(&config).unwrap());
}

// === init() in a process of its own, as the application would run it ===

#[test]
#[ignore = "run in a child process by init_shows_neither_a_header_nor_endpoint_secret"]
fn child_init_with_secrets_in_the_otlp_variables() {
    std::env::set_var(HEADERS, format!("Authorization: Bearer {SECRET}"));
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://user:{SECRET}@127.0.0.1:9"),
    );
    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    std::env::set_var("OTEL_EXPORTER_OTLP_TIMEOUT", "200");
    std::env::set_var("OFFLOAD_ADMIN_ADDR", "127.0.0.1:0");
    std::env::remove_var("RUST_LOG");
    let guard = tracing_offload::init().unwrap();
    let config = config_over_http(&guard);
    assert!(
        warning_about(&config, HEADERS).contains("entry 1"),
        "{config:#}"
    );
    tracing::info!("an event for the collector");
    let handle = guard.handle();
    wait_until("the export to fail", DEADLINE, || {
        handle.stats().sink("otlp").unwrap().last_error.is_some()
    });
    assert_no_secret("/health", &get(guard.admin_addr().unwrap(), "/health").body);
    config_over_http(&guard);
    drop(guard); // reports what it could not deliver on stderr
}

#[test]
fn init_shows_neither_a_header_nor_endpoint_secret() {
    let stderr = stderr_of_child_test("child_init_with_secrets_in_the_otlp_variables");
    assert_no_secret("stderr", &stderr);
    assert!(
        stderr.contains("tracing-offload: ignoring OTEL_EXPORTER_OTLP_HEADERS"),
        "{stderr}"
    );
}
