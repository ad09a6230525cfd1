//! Slow clients cannot hold the admin endpoint: a client that trickles its request a byte at a
//! time is cut off (with a `408`) once the request has taken [`CONNECTION_TIMEOUT`] in all,
//! and one that keeps sending after its response is closed about a second later. Both used
//! to keep their connection (and one of the [`MAX_CONNECTIONS`] slots) for as long as they
//! kept trickling: the timeouts applied to each read, not to the request, so 256 such clients
//! refused every scrape and probe for good.
//!
//! Nor can many slow clients together: when they hold every slot, a new connection closes the
//! one that has waited longest for its request, so a scrape is answered at once. They used to
//! refuse every other client until their deadline (and again as soon as they reconnected).
#![cfg(feature = "admin")]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::admin::serve_admin;
use support::*;
use tracing_offload::admin::{CONNECTION_TIMEOUT, MAX_CONNECTIONS};

/// A byte every 300 ms: far inside any timeout that applies to one read (5 s for the request,
/// 1 s after the response).
const TRICKLE: Duration = Duration::from_millis(300);

fn server() -> (tracing_offload::Guard, SocketAddr) {
    serve_admin(Collect::new("collect"))
}

/// How a trickling client's connection ended.
#[derive(Debug)]
struct Cut {
    after: Duration,
    received: Vec<u8>,
}

/// Sends a request head that never ends, a byte every [`TRICKLE`], until the server closes
/// the connection (`Some`, with what it sent) or `give_up` has passed (`None`). Waiting for
/// the server's answer (a read with a timeout) paces the bytes.
fn trickle_request(addr: SocketAddr, give_up: Duration) -> Option<Cut> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TRICKLE)).unwrap();
    let head = b"GET /health HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain([b'a'].iter().cycle());
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    for byte in head {
        if start.elapsed() > give_up {
            return None;
        }
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    Some(Cut {
        after: start.elapsed(),
        received,
    })
}

#[test]
fn a_request_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline() {
    let (_guard, addr) = server();
    let give_up = CONNECTION_TIMEOUT + Duration::from_secs(3);
    let cut = trickle_request(addr, give_up).unwrap_or_else(|| {
        panic!("a request trickled a byte every {TRICKLE:?} was still being read after {give_up:?}")
    });
    assert!(
        cut.after >= CONNECTION_TIMEOUT - TRICKLE,
        "cut off early: {cut:?}"
    );
    let answer = String::from_utf8_lossy(&cut.received);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
}

#[test]
fn a_client_trickling_after_its_response_is_cut_off() {
    let (_guard, addr) = server();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: admin\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    // The server reads what is left for about a second after its response, then closes the
    // connection; a write after that is refused (the first one draws a reset).
    let give_up = Duration::from_secs(3);
    let start = Instant::now();
    while stream.write_all(b"x").is_ok() {
        assert!(
            start.elapsed() < give_up,
            "a client sending a byte every {TRICKLE:?} after its response still held its \
             connection after {give_up:?}"
        );
        // The client's pace, not a synchronisation: the condition is the failed write.
        std::thread::park_timeout(TRICKLE);
    }
}

/// `GET /health` on a connection of its own; what the server sent before closing it.
fn get_health(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: admin\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn slow_clients_in_every_slot_do_not_lock_out_a_scrape() {
    let (_guard, addr) = server();
    // Every slot taken by a client that has sent part of its request and waits. The listener
    // accepts in order, so they all hold a slot before any connection made after them is
    // accepted (and their deadline is seconds away).
    let slow: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nX-Slow: a").unwrap();
            c
        })
        .collect();
    for scrape in 0..3 {
        let response = get_health(addr);
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n"),
            "scrape {scrape} with {MAX_CONNECTIONS} slow clients connected: {response:?}"
        );
    }
    // A slow client made room for the first scrape: it was closed unanswered (before the
    // scrape was served, so its end of stream is there now). Which one depends on when each
    // connection's thread first read its bytes: those that have sent nothing go first.
    let closed = slow
        .iter()
        .filter(|c| {
            c.set_nonblocking(true).unwrap();
            let (mut stream, mut buf): (&TcpStream, _) = (c, [0u8; 64]);
            match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => panic!("a slow client was answered"),
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            }
        })
        .count();
    assert!(closed >= 1, "no slow client was closed to make room");
}

/// Clients that take their response and keep the connection open hold a slot for the second
/// the server reads after a response. Many of them (a flood of quick requests) used to fill
/// every slot, and a scrape then was closed unanswered: answered connections now make room
/// first.
#[test]
fn answered_clients_holding_every_slot_do_not_lock_out_a_scrape() {
    let (_guard, addr) = server();
    // Every slot held by a client that got its response and keeps the connection open, so the
    // server is in its lingering read (a second) for each.
    let started = Instant::now();
    let answered: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(DEADLINE)).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nHost: admin\r\n\r\n")
                .unwrap();
            let mut response = Vec::new();
            // Ends when the server shuts its side after the response (it then lingers).
            c.read_to_end(&mut response).unwrap();
            assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
            c
        })
        .collect();
    let response = get_health(addr);
    // Meaningful only while the first of them still lingers: else slots were free anyway.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "setting up took {:?}",
        started.elapsed()
    );
    assert!(
        response.starts_with("HTTP/1.1 200 OK\r\n"),
        "a scrape with {MAX_CONNECTIONS} answered clients connected: {response:?}"
    );
    drop(answered);
}
