//! One client that never reads its responses cannot take the admin endpoint down: `/health`
//! still answers other clients, and dropping the guard still stops the server. A client that
//! pipelined requests and read nothing used to block the endpoint's only thread in a write:
//! `/health` went unanswered (a liveness probe would restart the service), and dropping the
//! guard waited for that thread for ever.
#![cfg(feature = "admin")]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::admin::{health, serve_admin};
use support::*;

/// Sends pipelined `GET /metrics` requests without reading a byte, until the connection takes
/// no more (the server's responses fill the socket buffers).
fn hog(addr: std::net::SocketAddr) -> TcpStream {
    let mut hog = TcpStream::connect(addr).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for _ in 0..100_000 {
        if hog
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
            .is_err()
        {
            break;
        }
    }
    hog
}

#[test]
fn a_client_that_never_reads_does_not_block_the_endpoint() {
    let (guard, addr) = serve_admin(Collect::new("collect"));
    // Dropped first when an assertion fails (locals drop in reverse order): a server blocked
    // on it is let go, so that a failure does not hang the test.
    let hog = hog(addr);
    let (status, _) = health(addr);
    assert_eq!(status, 200);
    let dropping = std::thread::spawn(move || drop(guard));
    wait_until(
        "the guard to drop (and the server to stop)",
        DEADLINE,
        || dropping.is_finished(),
    );
    drop(hog);
}
