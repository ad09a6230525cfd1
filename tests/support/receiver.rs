//! A tiny OTLP/HTTP receiver that answers with scripted statuses (e.g. 400, 429 with
//! `Retry-After`) and counts the requests it gets, for the retry tests. Real sockets, real HTTP:
//! only the answers are scripted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// One scripted answer: a status and an optional `Retry-After` value.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// How long the receiver takes to answer (a slow collector).
    pub delay: std::time::Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Answer {
            status,
            retry_after: None,
            delay: std::time::Duration::ZERO,
        }
    }

    pub fn retry_after(status: u16, value: &str) -> Self {
        Answer {
            status,
            retry_after: Some(value.to_owned()),
            delay: std::time::Duration::ZERO,
        }
    }

    /// `status`, answered after `delay` (a slow collector).
    pub fn after(delay: std::time::Duration, status: u16) -> Self {
        Answer {
            delay,
            ..Self::status(status)
        }
    }
}

/// A request as received: its path and when it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub at: Instant,
    /// The request's body (protobuf, unless the client compressed it).
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

/// The receiver; stops on drop.
pub struct Receiver {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests read and not yet answered, and the most there were at once.
    in_flight: Arc<(AtomicUsize, AtomicUsize)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Answers the n-th request with `script[n]`, and every request past the script with its
    /// last answer.
    pub fn start(script: Vec<Answer>) -> Receiver {
        Self::start_with(0, script, false, None)
    }

    /// Like [`start`](Self::start), but answers each connection on a thread of its own, so
    /// that slow answers overlap (a collector serving several clients at once).
    pub fn start_concurrent(script: Vec<Answer>) -> Receiver {
        Self::start_with(0, script, true, None)
    }

    /// A collector that serves `limit` requests at once (each with `serve`) and answers any
    /// request beyond that at once with `over` (say, 429 with `Retry-After`), started on `port`
    /// (where a sink already points).
    /// On `port` (a collector started where a sink already points).
    pub fn start_limited_on(port: u16, limit: usize, serve: Answer, over: Answer) -> Receiver {
        Self::start_with(port, vec![serve], true, Some((limit, over)))
    }

    /// The statuses answered so far, in the order the requests arrived.
    pub fn statuses(&self) -> Vec<u16> {
        self.received().iter().map(|r| r.status).collect()
    }

    fn start_with(
        port: u16,
        script: Vec<Answer>,
        concurrent: bool,
        limit: Option<(usize, Answer)>,
    ) -> Receiver {
        assert!(!script.is_empty());
        let script = Arc::new(script);
        let in_flight = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            let in_flight = Arc::clone(&in_flight);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let Some((path, body)) = read_request(&stream) else {
                        continue;
                    };
                    let mut r = received.lock().unwrap();
                    let n = r.len();
                    let over = limit
                        .as_ref()
                        .filter(|(limit, _)| in_flight.0.load(Ordering::SeqCst) >= *limit)
                        .map(|(_, over)| over.clone());
                    let chosen = over
                        .clone()
                        .unwrap_or_else(|| script[n.min(script.len() - 1)].clone());
                    r.push(Received {
                        path,
                        at: Instant::now(),
                        body,
                        status: chosen.status,
                    });
                    drop(r);
                    if let Some(over) = over {
                        write_answer(stream, &over, || {});
                        continue;
                    }
                    let now = in_flight.0.fetch_add(1, Ordering::SeqCst) + 1;
                    in_flight.1.fetch_max(now, Ordering::SeqCst);
                    let in_flight = Arc::clone(&in_flight);
                    // Served once the answer is ready: before it is written, since the client
                    // may send its next request as soon as it reads it.
                    let answer = move || {
                        write_answer(stream, &chosen, || {
                            in_flight.0.fetch_sub(1, Ordering::SeqCst);
                        });
                    };
                    if concurrent {
                        std::thread::spawn(answer);
                    } else {
                        answer();
                    }
                }
            })
        };
        Receiver {
            port,
            received,
            in_flight,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The most requests this receiver held unanswered at once.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.1.load(Ordering::SeqCst)
    }

    /// The requests so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (headers and body); returns its path and body.
fn read_request(stream: &TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// Answers after the answer's delay; `ready` runs just before the answer is written.
fn write_answer(mut stream: TcpStream, answer: &Answer, ready: impl FnOnce()) {
    // A slow collector's answer (the test's scenario, not a wait for anything).
    std::thread::sleep(answer.delay);
    ready();
    let mut head = format!(
        "HTTP/1.1 {} Scripted\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n",
        answer.status
    );
    if let Some(v) = &answer.retry_after {
        head.push_str(&format!("retry-after: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.flush();
}
