//! `OFFLOAD_ADMIN_ADDR` follows the rule of every variable: a value that is not an address
//! (`http://127.0.0.1:9464`, `localhost:99999`, `127.0.0.1:9464x`) is ignored with one warning
//! naming the variable (no admin endpoint; the pipeline and `init()` still work), and the
//! strict `try_from_env` refuses it. It used to pass the strict reader and then fail `build()`
//! (so `init()`, leaving the application without logging) with "could not bind …; pick a free
//! port". A host name is an address (`localhost:0`); a well-formed address that cannot be
//! bound (in use) still fails the build, as `Builder::admin_addr` documents.
#![cfg(feature = "admin")]

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::admin::get;
use support::stderr_of_child_test;
use tracing_offload::{BuildError, Builder, OffloadLayer, Source};

const VAR: &str = "OFFLOAD_ADMIN_ADDR";

/// Values that are not `host:port`.
const NOT_ADDRESSES: [&str; 8] = [
    "http://127.0.0.1:9464",
    "localhost:99999",
    "127.0.0.1:9464x",
    "127.0.0.1",
    ":9464",
    "127.0.0.1:9464/metrics",
    "::1:9464",
    "local host:9464",
];

fn admin_addr_env(value: &str) -> impl Fn(&str) -> Option<String> + '_ {
    move |var| (var == VAR).then(|| value.to_owned())
}

#[test]
fn a_value_that_is_not_an_address_is_ignored_with_one_warning() {
    for value in NOT_ADDRESSES {
        let (_layer, guard) = Builder::from_env_with(&admin_addr_env(value))
            .build()
            .unwrap_or_else(|e| panic!("{value:?}: the build failed: {e}"));
        assert_eq!(guard.admin_addr(), None, "{value:?}");
        let config = guard.handle().config();
        assert_eq!(config.admin_addr.value, None, "{value:?}");
        assert_eq!(config.admin_addr.source, Source::Default, "{value:?}");
        assert_eq!(config.warnings.len(), 1, "{value:?}: {:?}", config.warnings);
        let w = &config.warnings[0];
        assert_eq!((w.var.as_str(), w.value.as_str()), (VAR, value));
        let text = w.to_string();
        assert!(
            text.contains("host:port") && text.contains("no admin endpoint"),
            "{text}"
        );
        assert!(
            !text.contains("could not bind"),
            "not a bind problem: {text}"
        );
    }
}

#[test]
fn the_strict_reader_refuses_a_value_that_is_not_an_address() {
    for value in NOT_ADDRESSES {
        match Builder::try_from_env_with(&admin_addr_env(value)) {
            Err(BuildError::InvalidEnv(warnings)) => {
                assert_eq!(warnings.len(), 1, "{value:?}: {warnings:?}");
                assert_eq!(warnings[0].var, VAR);
            }
            Err(other) => panic!("{value:?}: another error: {other}"),
            Ok(_) => panic!("{value:?}: accepted"),
        }
    }
}

#[test]
fn addresses_and_host_names_are_accepted() {
    for value in ["127.0.0.1:0", "localhost:0", "[::1]:0"] {
        let builder = Builder::try_from_env_with(&admin_addr_env(value))
            .unwrap_or_else(|e| panic!("{value:?}: refused: {e}"));
        let built = builder.build();
        if value == "[::1]:0" && built.is_err() {
            continue; // a host without IPv6
        }
        let (_layer, guard) = built.unwrap_or_else(|e| panic!("{value:?}: {e}"));
        let addr = guard.admin_addr().expect("an admin endpoint");
        assert!(addr.ip().is_loopback(), "{value:?}: {addr}");
        assert_eq!(get(addr, "/config").status, 200);
        let config = guard.handle().config();
        assert_eq!(config.admin_addr.source, Source::Env(VAR.into()));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }
}

#[test]
fn an_address_in_use_still_fails_the_build_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let builder = Builder::try_from_env_with(&admin_addr_env(&addr)).unwrap();
    let err = builder.build().unwrap_err();
    assert!(matches!(err, BuildError::Admin(_)), "{err:?}");
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn an_address_set_in_code_that_is_not_one_fails_the_build_saying_so() {
    let err = OffloadLayer::builder()
        .admin_addr("http://127.0.0.1:9464")
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Admin(_)), "{err:?}");
    let text = support::error_chain(&err);
    assert!(
        text.contains("\"http://127.0.0.1:9464\"") && text.contains("host:port"),
        "{text}"
    );
    assert!(
        !text.contains("could not bind"),
        "not a bind problem: {text}"
    );
}

// === init() in a process of its own (it sets the global subscriber) ===

#[test]
#[ignore = "run in a child process by init_logs_without_the_admin_endpoint_when_the_address_is_not_one"]
fn child_init_with_an_admin_address_that_is_not_one() {
    std::env::set_var(VAR, "http://127.0.0.1:9464");
    std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
    std::env::remove_var("RUST_LOG");
    let guard = tracing_offload::init().expect("init succeeds without the admin endpoint");
    assert_eq!(guard.admin_addr(), None);
    tracing::info!("logging-still-works");
    let handle = guard.handle();
    handle.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(handle.stats().sink("console").unwrap().exported, 1);
    let vars: Vec<String> = handle
        .config()
        .warnings
        .iter()
        .map(|w| w.var.clone())
        .collect();
    assert_eq!(vars, [VAR]);
    guard.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn init_logs_without_the_admin_endpoint_when_the_address_is_not_one() {
    let stderr = stderr_of_child_test("child_init_with_an_admin_address_that_is_not_one");
    let warning = "tracing-offload: ignoring OFFLOAD_ADMIN_ADDR=\"http://127.0.0.1:9464\"";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
    assert!(stderr.contains("logging-still-works"), "{stderr}");
}
