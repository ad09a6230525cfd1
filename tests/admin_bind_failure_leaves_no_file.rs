//! A build that fails because the admin address cannot be bound leaves nothing behind: no
//! JSON-lines file, not even its directory. `build()` used to start the sinks (the file sink
//! creates its file and directory) before it bound the admin endpoint, so a taken port left an
//! empty file where the application's logs would have gone.
#![cfg(feature = "admin")]

mod support;

use std::net::TcpListener;

use tracing_offload::sink::JsonFile;
use tracing_offload::{BuildError, Builder, OffloadLayer};

/// A port bound by the test, so that the admin endpoint cannot bind it.
fn a_taken_address() -> (TcpListener, String) {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    (taken, addr)
}

#[track_caller]
fn assert_fails_naming(built: Result<impl Sized, BuildError>, addr: &str) {
    let Err(err) = built else {
        panic!("the build succeeded with {addr} taken");
    };
    assert!(matches!(err, BuildError::Admin(_)), "{err:?}");
    assert!(err.to_string().contains(addr), "{err}");
}

#[track_caller]
fn assert_absent(path: &std::path::Path) {
    assert!(
        !path.exists(),
        "the failed build created {}",
        path.display()
    );
}

#[test]
fn a_taken_admin_address_set_in_code_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let path = logs.join("app.jsonl");
    let (_taken, addr) = a_taken_address();
    let built = OffloadLayer::builder()
        .admin_addr(addr.as_str())
        .sink(JsonFile::new(&path))
        .build();
    assert_fails_naming(built, &addr);
    assert_absent(&path);
    assert_absent(&logs);
}

#[test]
fn a_taken_admin_address_from_the_environment_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let (_taken, addr) = a_taken_address();
    let lookup = |var: &str| (var == "OFFLOAD_ADMIN_ADDR").then(|| addr.clone());
    let built = Builder::from_env_with(&lookup)
        .sink(JsonFile::new(&path))
        .build();
    assert_fails_naming(built, &addr);
    assert_absent(&path);
}
