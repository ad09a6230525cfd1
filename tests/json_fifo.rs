//! A `JsonFile` path that is a FIFO (a named pipe) with no reader: opening it for writing
//! would block until a reader comes, so `build()` hung for ever. It now fails at once, saying
//! why; with a reader, the records go down the pipe.
#![cfg(unix)]
mod support;

use std::io::Read;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use support::*;
use tracing_offload::sink::JsonFile;
use tracing_offload::OffloadLayer;

fn mkfifo(path: &std::path::Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_without_a_reader_fails_the_build_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    mkfifo(&path);
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let result = OffloadLayer::builder().sink(JsonFile::new(p)).build();
        let _ = tx.send(result.map(drop).map_err(|e| error_chain(&e)));
    });
    let result = rx
        .recv_timeout(DEADLINE)
        .expect("build() returned (it blocked opening the FIFO)");
    let error = result.expect_err("no reader: the build fails");
    assert!(error.contains("no process is reading"), "{error}");
}

#[test]
fn a_fifo_with_a_reader_gets_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    mkfifo(&path);
    let p = path.clone();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::fs::File::open(p)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    });
    // The reader opens the FIFO at its own pace: `build()` may come first, and must then wait
    // for it rather than fail. Retry until the reader is there.
    let deadline = std::time::Instant::now() + DEADLINE;
    let (layer, guard) = loop {
        match OffloadLayer::builder().sink(JsonFile::new(&path)).build() {
            Ok(built) => break built,
            Err(e) if std::time::Instant::now() < deadline => {
                let chain = error_chain(&e);
                assert!(chain.contains("no process is reading"), "{chain}");
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    };
    with_layer(layer, || tracing::info!(n = 7u64, "down the pipe"));
    guard.shutdown(Duration::from_secs(10)).unwrap();
    let text = reader.join().unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["message"], "down the pipe");
    assert_eq!(line["fields"]["n"], 7);
}

/// A reader that stops at the end of the stream (`cat`, a log shipper reading one stream):
/// opening the FIFO must not show it one. A probe that opened the FIFO and closed it again
/// before the real open was the last writer gone: such a reader took that for the end and
/// left, and the real open then waited for a reader for ever. The reader here watches without
/// blocking, so that it sees a writer come and go however briefly; repeated, since it races.
#[test]
fn a_reader_that_stops_at_end_of_stream_gets_the_records() {
    use std::os::unix::fs::OpenOptionsExt;
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        mkfifo(&path);
        // Open for reading at once (no writer needed without blocking).
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let reader = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + DEADLINE;
            let (mut text, mut writer_seen, mut buf) = (Vec::new(), false, [0u8; 4096]);
            while std::time::Instant::now() < deadline {
                match fifo.read(&mut buf) {
                    // End of stream: every writer that came has gone.
                    Ok(0) if writer_seen => break,
                    Ok(0) => {}
                    Ok(n) => {
                        writer_seen = true;
                        text.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => writer_seen = true,
                    Err(e) => panic!("{e}"),
                }
                std::hint::spin_loop();
            }
            String::from_utf8(text).unwrap()
        });
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(OffloadLayer::builder().sink(JsonFile::new(&p)).build());
        });
        let (layer, guard) = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("round {round}: build() hung opening the FIFO"))
            .unwrap();
        with_layer(layer, || tracing::info!(round, "down the pipe"));
        guard.shutdown(Duration::from_secs(10)).unwrap();
        let text = reader.join().unwrap();
        assert!(
            text.contains("down the pipe"),
            "round {round}: the reader saw the stream end before any record: {text:?}"
        );
    }
}

/// A socket at the path fails as what it is: `open` says `ENXIO` for a socket as for a FIFO
/// without a reader, and the sink said the socket was "a FIFO that no process is reading"
/// (adversary pass 52).
#[test]
fn a_socket_at_the_path_is_not_called_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let result = OffloadLayer::builder()
        .sink(JsonFile::new(&path))
        .build()
        .map(drop)
        .map_err(|e| error_chain(&e));
    let err = result.expect_err("a socket is no file to write to");
    assert!(!err.contains("FIFO"), "{err}");
    assert!(err.contains("app.jsonl"), "{err}");
}
