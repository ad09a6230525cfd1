//! The admin HTTP endpoint (feature `admin`): `/metrics`, `/health` and `/config`.
//!
//! | route | response |
//! |---|---|
//! | `GET /metrics` | the [metrics](crate::metrics) in the Prometheus text format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`), or OpenMetrics 1.0 when the `Accept` header prefers `application/openmetrics-text` (as Prometheus does): its weight above zero and above the text format's, each format judged by the most specific range naming it (`q=0`, `q=0.0`, … refuse a format; a malformed `q` does not ask) |
//! | `GET /health` | [`Health`] as JSON; `200` when healthy or degraded, `503` when unhealthy |
//! | `GET /config` | the effective [`Config`](crate::Config) as JSON |
//! | anything else | `404` for an unknown path, `405` (with `Allow: GET, HEAD`) for another method |
//!
//! Two ways to serve them:
//!
//! * [`AdminServer`]: a small HTTP/1.1 server on a thread this crate owns
//!   (`offload-admin`); [`Builder::admin_addr`](crate::Builder::admin_addr) starts one with
//!   the pipeline and the [`Guard`](crate::Guard) stops it.
//! * [`respond`]: the routing as a plain function from method, path and `Accept` header to an
//!   [`AdminResponse`], to mount the same routes into the application's own web server (no
//!   second port); with feature `axum`, `router` does that for axum as an `axum::Router`.
//!
//! Both read an [`AdminSource`] — implemented by [`Handle`](crate::Handle) — so they answer
//! from the live pipeline and also keep answering (with the final counters) after shutdown.
//!
//! ```
//! use std::sync::Arc;
//! use tracing_offload::admin::{respond, AdminServer};
//! use tracing_offload::OffloadLayer;
//!
//! let (_layer, guard) = OffloadLayer::builder().build()?;
//!
//! // Routes as a function, for mounting into another server:
//! let response = respond(&guard.handle(), "GET", "/health", None);
//! assert_eq!(response.status, 200);
//! assert_eq!(response.content_type, "application/json");
//!
//! // Or a server of its own on loopback (port 0 picks a free port):
//! let mut server = AdminServer::start("127.0.0.1:0", Arc::new(guard.handle()))?;
//! println!("metrics at http://{}/metrics", server.local_addr());
//! server.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Why a small server of our own on `std::net`: the endpoint serves three small GET routes to a
// scraper and a probe a few times a minute. Blocking I/O on crate-owned threads fits the
// crate's rule of no ambient async runtime, with no dependency. It answers one request per
// connection, each on a short-lived thread with a deadline for the whole request and one for
// the whole response (not a timeout per read or write, which a client trickling a byte at a
// time never meets), so that no client can hold the endpoint (tiny_http, used before,
// answered on one thread that a client which never read its responses blocked for good, and
// the guard's drop with it). hyper on a private runtime would do the same with far more
// machinery; users who already run an async web server mount [`respond`] (or the axum
// router) there instead.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::health::{Health, HealthStatus};
use crate::metrics::{
    render_openmetrics, render_prometheus, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE,
};
use crate::stats::Stats;

/// The content type of `/health` and `/config`.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// The content type of error responses.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// The methods the routes accept (the `Allow` header of a `405`).
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// What the admin routes read. [`Handle`](crate::Handle) implements it; implement it yourself
/// to serve something else (e.g. in tests).
pub trait AdminSource: Send + Sync + 'static {
    /// A stats snapshot, for `/metrics`.
    fn stats(&self) -> Stats;

    /// The current health, for `/health`.
    fn health(&self) -> Health;

    /// The effective configuration as a JSON document, for `/config`. Secrets must already be
    /// redacted.
    fn config_json(&self) -> String;

    /// The effective sampling rate (0–1), exported as `offload_sampling_rate`; `None` (the
    /// default) leaves it out.
    fn sampling_rate(&self) -> Option<f64> {
        None
    }
}

impl<T: AdminSource + ?Sized> AdminSource for Arc<T> {
    fn stats(&self) -> Stats {
        (**self).stats()
    }
    fn health(&self) -> Health {
        (**self).health()
    }
    fn config_json(&self) -> String {
        (**self).config_json()
    }
    fn sampling_rate(&self) -> Option<f64> {
        (**self).sampling_rate()
    }
}

/// One response of the admin routes, independent of any HTTP library.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The `Allow` header, set on `405` responses.
    pub allow: Option<&'static str>,
    /// The body. For `HEAD` it is the `GET` body, so that `Content-Length` matches; HTTP
    /// servers ([`AdminServer`], hyper/axum) leave it out of a `HEAD` response.
    pub body: String,
}

impl AdminResponse {
    fn new(status: u16, content_type: &'static str, body: String) -> Self {
        AdminResponse {
            status,
            content_type,
            allow: None,
            body,
        }
    }

    fn text(status: u16, body: impl Into<String>) -> Self {
        AdminResponse::new(status, TEXT_CONTENT_TYPE, body.into())
    }
}

/// The admin routes: answers `method` and `path` (a query string is ignored) from `source`.
/// `accept` is the request's `Accept` header, used by `/metrics` to choose the format.
///
/// Never panics on any input; a panic inside `source` is not caught here (the
/// [`AdminServer`] catches it and answers `500`).
pub fn respond(
    source: &dyn AdminSource,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> AdminResponse {
    let path = route_path(path);
    let route = match path.as_ref() {
        "/metrics" => Route::Metrics,
        "/health" => Route::Health,
        "/config" => Route::Config,
        _ => {
            return AdminResponse::text(
                404,
                "not found; the admin endpoint serves /metrics, /health and /config\n",
            )
        }
    };
    if !(method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")) {
        let mut r = AdminResponse::text(405, format!("method not allowed; use GET {path}\n"));
        r.allow = Some(ALLOWED_METHODS);
        return r;
    }
    route.respond(source, accept)
}

/// The path a request target names, as RFC 9112 and RFC 3986 let it be written: without its
/// query; the absolute form (`http://host:port/health`, which a server must accept) reduced to
/// its path; percent-encoded unreserved characters (`/%68ealth`) decoded. Reserved ones stay
/// encoded: `%2F` is not a path separator.
fn route_path(target: &str) -> std::borrow::Cow<'_, str> {
    let mut path = target.split(['?', '#']).next().unwrap_or("");
    if let Some((scheme, after)) = path.split_once("://") {
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            path = after.find('/').map_or("/", |at| &after[at..]);
        }
    }
    if !path.contains('%') {
        return path.into();
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
        match decoded {
            Some(b) => {
                out.push(char::from(b));
                i += 3;
            }
            None => {
                let c = path[i..].chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
    }
    out.into()
}

/// The values of a header's lines, as one comma-separated list (RFC 9110 §5.3); `None` when
/// there is none.
fn one_list<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let values: Vec<&str> = values.collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[derive(Clone, Copy, Debug)]
enum Route {
    Metrics,
    Health,
    Config,
}

impl Route {
    fn respond(self, source: &dyn AdminSource, accept: Option<&str>) -> AdminResponse {
        match self {
            Route::Metrics => {
                let stats = source.stats();
                let rate = source.sampling_rate();
                if wants_openmetrics(accept) {
                    let body = render_openmetrics(&stats, rate);
                    AdminResponse::new(200, OPENMETRICS_CONTENT_TYPE, body)
                } else {
                    let body = render_prometheus(&stats, rate);
                    AdminResponse::new(200, PROMETHEUS_CONTENT_TYPE, body)
                }
            }
            Route::Health => {
                let health = source.health();
                let status = if health.status == HealthStatus::Unhealthy {
                    503
                } else {
                    200
                };
                AdminResponse::new(status, JSON_CONTENT_TYPE, health.to_json())
            }
            Route::Config => AdminResponse::new(200, JSON_CONTENT_TYPE, source.config_json()),
        }
    }
}

/// Whether an `Accept` header prefers OpenMetrics to the Prometheus text format (RFC 9110
/// §12.5.1): each format gets the weight of the most specific range that matches it
/// (`application/openmetrics-text` or `text/plain`, then `application/*` or `text/*`, then
/// `*/*`; the highest weight among ranges equally specific), and OpenMetrics is served when its
/// weight is above zero and above the text format's, or equal to it and OpenMetrics was named.
/// A weight of zero (`q=0`, `q=0.0`, `Q=0.000`, …) refuses a format; a malformed weight makes
/// that range count for nothing. Without a header, the text format.
fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    // Per format: how specific the best range naming it is, and its weight.
    type Best = Option<(u8, u16)>;
    let (mut openmetrics, mut text): (Best, Best) = (None, None);
    for range in split_unquoted(accept, b',') {
        let mut params = split_unquoted(range, b';').map(str::trim);
        let media = params.next().unwrap_or("");
        let Some(q) = weight(params) else {
            continue;
        };
        let (kind, sub) = media.split_once('/').unwrap_or((media, ""));
        let (kind, sub) = (kind.trim(), sub.trim());
        let specificity = |k: &str, s: &str| match (kind, sub) {
            ("*", "*") => Some(0),
            (kind, "*") if kind.eq_ignore_ascii_case(k) => Some(1),
            (kind, sub) if kind.eq_ignore_ascii_case(k) && sub.eq_ignore_ascii_case(s) => Some(2),
            _ => None,
        };
        for (best, k, s) in [
            (&mut openmetrics, "application", "openmetrics-text"),
            (&mut text, "text", "plain"),
        ] {
            if let Some(spec) = specificity(k, s) {
                *best = match *best {
                    Some((b, w)) if b > spec || (b == spec && w >= q) => Some((b, w)),
                    _ => Some((spec, q)),
                };
            }
        }
    }
    match (openmetrics, text) {
        (Some((_, 0)), _) => false,
        (Some(_), None) => true,
        (Some((spec, om)), Some((_, text))) => om > text || (om == text && spec == 2),
        (None, _) => false,
    }
}

/// The weight of a media range from its parameters, in thousandths: 1000 when it has none,
/// `None` when its `q` is malformed.
fn weight<'a>(mut params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let q = params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("q").then(|| value.trim())
    });
    q.map_or(Some(1000), parse_qvalue)
}

/// An RFC 9110 qvalue (`"0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]`) in thousandths; `None`
/// when it is anything else.
fn parse_qvalue(q: &str) -> Option<u16> {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |n, digit| n * 10 + u16::from(digit - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Splits `s` at each `sep` outside a quoted-string (`"…"`, with `\` escapes), so that a
/// quoted parameter value may hold commas and semicolons.
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    let mut cuts = s.bytes().enumerate().filter_map(move |(i, b)| {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => quoted = !quoted,
            (false, _, b) if b == sep => return Some(i),
            _ => {}
        }
        None
    });
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let end = cuts.next().unwrap_or_else(|| {
            done = true;
            s.len()
        });
        let part = &s[start..end];
        start = end + 1;
        Some(part)
    })
}

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The address is not `host:port` (a scheme, a path, no port or one past 65535…); the
    /// message says what is expected.
    #[error("the admin endpoint's address {addr:?} is not a valid address: expected {expected}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is expected instead.
        expected: String,
    },
    /// The address could not be bound (in use, not local, or no permission).
    #[error("could not bind the admin endpoint to {addr}; pick a free port (e.g. `127.0.0.1:9464`, or port 0 for any), or unset OFFLOAD_ADMIN_ADDR if it came from there")]
    Bind {
        /// The address as given.
        addr: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server's thread could not be started.
    #[error("could not start the admin endpoint's thread")]
    Spawn(#[source] io::Error),
}

/// An HTTP server for the admin routes on a thread this crate owns (`offload-admin`).
///
/// It stops on [`stop`](Self::stop) or when dropped. The layer records nothing from its
/// threads, so serving a scrape never records into the pipeline it reports on.
///
/// One request per connection (`Connection: close`), each connection on a short-lived thread of
/// its own, at most [`MAX_CONNECTIONS`] at once. A connection's deadlines bound each step as a
/// whole, not each read or write:
///
/// * its request head must have arrived [`CONNECTION_TIMEOUT`] after the connection was
///   accepted, however it trickles in; else it is answered `408 Request Timeout`;
/// * its response must have been taken within [`CONNECTION_TIMEOUT`];
/// * what it sends after its response (a body, pipelined requests) is read for one second in
///   all, then the connection is closed.
///
/// So a client that sends slowly, however little at a time, or never reads what it asked
/// for, holds one connection thread for `2 × CONNECTION_TIMEOUT` and a second at most. Nor
/// can many clients take the endpoint: when every connection is taken, a new one closes a
/// connection already answered (in its second of reading after the response), else the one
/// that has waited longest for its request (unanswered; one that has sent nothing for 100 ms
/// goes before those whose request has begun to arrive, so a flood of idle connections does
/// not close a client whose request comes in pieces), and only when every connection is being
/// answered is the new one closed unanswered itself.
pub struct AdminServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The listening socket, a second descriptor of it: shut down to wake the accepting thread.
    listener: Option<TcpListener>,
}

/// The longest a connection may take to send its request (from its accept to the end of its
/// head, in all; then it is answered `408 Request Timeout`), and, once the response is ready,
/// to take it (in all).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// The most connections served at once. One more closes the connection that has waited
/// longest for its request to make room, or is itself closed without an answer when none
/// waits (see [`AdminServer`]).
pub const MAX_CONNECTIONS: usize = 256;
/// The stack of a connection's thread: it renders one response.
const CONNECTION_STACK: usize = 256 * 1024;
/// The largest request head (request line and headers) read, in bytes.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

impl fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.addr)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

// === impl AdminServer ===

impl AdminServer {
    /// Binds `addr` and serves the admin routes from `source` until stopped.
    ///
    /// Fails with [`AdminError::InvalidAddress`] when `addr` (as displayed) is not
    /// `host:port`, and with [`AdminError::Bind`] naming the address when it cannot be bound.
    pub fn start(
        addr: impl ToSocketAddrs + fmt::Display,
        source: Arc<dyn AdminSource>,
    ) -> Result<Self, AdminError> {
        Self::bind(addr)?.serve(source)
    }

    /// Binds `addr` (the errors of [`start`](Self::start)), serving nothing yet.
    pub(crate) fn bind(addr: impl ToSocketAddrs + fmt::Display) -> Result<BoundAdmin, AdminError> {
        // An address that is not `host:port` (`http://…`, no port) would otherwise fail as a
        // name lookup or a bind, and be reported as a busy port.
        if let Err(expected) = crate::env::host_port(&addr.to_string()) {
            return Err(AdminError::InvalidAddress {
                addr: addr.to_string(),
                expected,
            });
        }
        let bind_error = |source: io::Error| AdminError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(&addr).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(BoundAdmin { listener, local })
    }

    /// The address the server listens on (with the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and joins the accepting thread. Idempotent. Connections
    /// already accepted are still answered, each on its own thread and within its deadlines
    /// (see [`AdminServer`]).
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Release: the accepting thread that sees the flag (Acquire) stops at once.
        self.stopping.store(true, Ordering::Release);
        // Wake its `accept` with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        // On Linux, shutting the listening socket down wakes `accept` (it fails), with no
        // connection needed: one can fail (a firewall on loopback, no port left), and the
        // thread would keep the address bound.
        let listener = self.listener.take();
        if listener.is_some_and(|l| wake_accept(&l)) {
            let _ = thread.join();
            return;
        }
        let woken = !wake_fails() && TcpStream::connect_timeout(&wake, CONNECTION_TIMEOUT).is_ok();
        if woken {
            let _ = thread.join();
        }
        // Otherwise the thread is left to stop at its next connection: never wait for ever.
    }
}

/// Whether the wake-up connection is to fail (a test's seam).
fn wake_fails() -> bool {
    #[cfg(test)]
    return tests::wake_fails();
    #[cfg(not(test))]
    false
}

/// Wakes a thread blocked in `listener`'s `accept`, where shutting the socket down does (Linux:
/// the `accept` fails, and so does every later one); says whether it did.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn wake_accept(listener: &TcpListener) -> bool {
    rustix::net::shutdown(listener, rustix::net::Shutdown::Read).is_ok()
}

/// Elsewhere a shut-down listening socket may go on blocking: the server wakes it with a
/// connection.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn wake_accept(_: &TcpListener) -> bool {
    false
}

/// An admin address bound, not yet served: `build()` binds it before it starts the sinks, so
/// that an address in use fails the build before a sink has created a file. Dropped, it
/// releases the address.
pub(crate) struct BoundAdmin {
    listener: TcpListener,
    local: SocketAddr,
}

// === impl BoundAdmin ===

impl BoundAdmin {
    /// Serves the admin routes from `source` on a thread of its own until stopped.
    pub(crate) fn serve(self, source: Arc<dyn AdminSource>) -> Result<AdminServer, AdminError> {
        let BoundAdmin { listener, local } = self;
        let second = listener.try_clone().ok();
        let stopping = Arc::new(AtomicBool::new(false));
        let thread =
            crate::pipeline::spawn_thread(thread::Builder::new().name("offload-admin".into()), {
                let stopping = Arc::clone(&stopping);
                move || {
                    crate::silent::mark_thread();
                    accept_loop(&listener, &stopping, &source, Limits::DEFAULT)
                }
            })
            .map_err(AdminError::Spawn)?;
        Ok(AdminServer {
            addr: local,
            stopping,
            thread: Some(thread),
            listener: second,
        })
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts connections until stopped; each is served on a thread of its own.
fn accept_loop(
    listener: &TcpListener,
    stopping: &AtomicBool,
    source: &Arc<dyn AdminSource>,
    limits: Limits,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(Waiting::default());
    loop {
        let accepted = listener.accept();
        // Acquire: pairs with the store in `stop`.
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let accepted_at = Instant::now();
        let Ok((stream, _)) = accepted else {
            // A failed accept (e.g. out of file descriptors): go on, without spinning.
            thread::park_timeout(Duration::from_millis(10));
            continue;
        };
        // Relaxed: a count, not a handshake; a few connections over the limit do no harm (a
        // closed one leaves the count when its thread ends).
        if active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS && !waiting.close_oldest() {
            active.fetch_sub(1, Ordering::Relaxed);
            continue; // closed unanswered
        }
        let ticket = Waiting::add(&waiting, &stream);
        let (active_here, source) = (Arc::clone(&active), Arc::clone(source));
        let waiting_here = Arc::clone(&waiting);
        let spawned = thread::Builder::new()
            .name("offload-admin-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                crate::silent::mark_thread();
                serve_connection(stream, accepted_at, ticket, &waiting_here, &*source, limits);
                active_here.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

// === impl Waiting ===

/// The connections still sending their request head, oldest first. When every slot is taken,
/// a new connection closes the oldest of them to make room: a well-behaved client sends its
/// request at once, so the one that has waited longest is the slowest, and slow clients
/// cannot refuse everyone else by taking every slot (and taking them again as soon as their
/// deadline closes them). Connections that have sent nothing for [`SILENT_GRACE`] go before
/// those whose request has begun to arrive: a flood of idle connections does not close a
/// client whose request comes in pieces, nor one just accepted whose request is not read yet.
#[derive(Debug, Default)]
struct Waiting {
    queue: Mutex<WaitingQueue>,
}

/// A connection in [`Waiting`]: its id, a handle to it, and when it was added.
#[derive(Debug)]
struct Held {
    id: u64,
    stream: TcpStream,
    since: Instant,
}

/// A connection that has sent nothing for this long is closed to make room before one whose
/// request has begun to arrive; a younger one may just not have been read yet (a client
/// that sends its request at once).
const SILENT_GRACE: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct WaitingQueue {
    /// Each connection's id and a handle to it, oldest first: those that have sent nothing.
    connections: VecDeque<Held>,
    /// The same for connections whose request has begun to arrive.
    started: VecDeque<Held>,
    /// The same for connections already answered, in their lingering close: the first to
    /// make room (closing one early only cuts short the reading of what its client sent after
    /// its request).
    answered: VecDeque<Held>,
    next_id: u64,
}

/// A connection's place in [`Waiting`]; dropping it takes the connection out.
#[derive(Debug)]
struct WaitingTicket {
    waiting: Arc<Waiting>,
    id: u64,
}

impl Waiting {
    /// Adds `stream` as the newest waiting connection; `None` (it cannot be closed to make
    /// room) when its handle cannot be cloned.
    fn add(this: &Arc<Self>, stream: &TcpStream) -> Option<WaitingTicket> {
        Self::add_to(this, stream, false)
    }

    /// Adds `stream`, answered, as the newest lingering connection.
    fn add_answered(this: &Arc<Self>, stream: &TcpStream) -> Option<WaitingTicket> {
        Self::add_to(this, stream, true)
    }

    fn add_to(this: &Arc<Self>, stream: &TcpStream, answered: bool) -> Option<WaitingTicket> {
        let handle = stream.try_clone().ok()?;
        let mut queue = this.lock();
        let id = queue.next_id;
        queue.next_id += 1;
        let held = Held {
            id,
            stream: handle,
            since: Instant::now(),
        };
        match answered {
            true => queue.answered.push_back(held),
            false => queue.connections.push_back(held),
        }
        Some(WaitingTicket {
            waiting: Arc::clone(this),
            id,
        })
    }

    /// Closes an answered connection in its lingering close, else the oldest connection that
    /// has sent nothing for [`SILENT_GRACE`], else the oldest whose request has begun to
    /// arrive, else the oldest of the rest (its thread's read returns at once, and it ends
    /// without an answer); `false` when there is none.
    fn close_oldest(&self) -> bool {
        let mut queue = self.lock();
        let silent_for_long = queue
            .connections
            .front()
            .is_some_and(|h| h.since.elapsed() >= SILENT_GRACE);
        let oldest = queue
            .answered
            .pop_front()
            .or_else(|| {
                silent_for_long
                    .then(|| queue.connections.pop_front())
                    .flatten()
            })
            .or_else(|| queue.started.pop_front())
            .or_else(|| queue.connections.pop_front());
        drop(queue);
        oldest.is_some_and(|h| {
            let _ = h.stream.shutdown(Shutdown::Both);
            true
        })
    }

    fn lock(&self) -> MutexGuard<'_, WaitingQueue> {
        // Nothing panics while holding the lock; were it poisoned, the queue is still whole.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WaitingTicket {
    /// Its request has begun to arrive: it is closed to make room only after every connection
    /// that has sent nothing.
    fn started(&self) {
        let mut queue = self.waiting.lock();
        if let Some(at) = queue.connections.iter().position(|h| h.id == self.id) {
            if let Some(entry) = queue.connections.remove(at) {
                queue.started.push_back(entry);
            }
        }
    }
}

impl Drop for WaitingTicket {
    fn drop(&mut self) {
        let mut queue = self.waiting.lock();
        let WaitingQueue {
            connections,
            started,
            answered,
            ..
        } = &mut *queue;
        for list in [connections, started, answered] {
            if let Some(at) = list.iter().position(|h| h.id == self.id) {
                list.remove(at);
                return;
            }
        }
    }
}

/// Reads one request from `stream`, answers it, and closes the connection. Every step has a
/// deadline for the whole step, not for each read or write: the request head must have come
/// `limits.request` after `accepted_at`, the response must have been taken `limits.response`
/// after it is ready, and what the client sends after that is read for `limits.linger`. A
/// client that trickles a byte at a time is cut off like one that sends nothing.
fn serve_connection(
    mut stream: TcpStream,
    accepted_at: Instant,
    ticket: Option<WaitingTicket>,
    waiting: &Arc<Waiting>,
    source: &dyn AdminSource,
    limits: Limits,
) {
    let head = read_request_head(&mut stream, accepted_at + limits.request, || {
        if let Some(ticket) = &ticket {
            ticket.started();
        }
    });
    // It has its request (or never will): no longer one to close to make room.
    drop(ticket);
    let reply = match head {
        Ok(head) => match parse_request(&head) {
            Some(req) => {
                let response = catch_unwind(AssertUnwindSafe(|| {
                    respond(source, &req.method, &req.target, req.accept.as_deref())
                }))
                .unwrap_or_else(|_| {
                    AdminResponse::text(500, "internal error while reading the pipeline\n")
                });
                let head_only = req.method.eq_ignore_ascii_case("HEAD");
                encode_response(&response, head_only)
            }
            None => encode_response(&AdminResponse::text(400, "bad request\n"), false),
        },
        Err(HeadError::TooLarge) => {
            encode_response(&AdminResponse::text(431, "request head too large\n"), false)
        }
        Err(HeadError::TimedOut) => encode_response(
            &AdminResponse::text(
                408,
                "request timeout: the request took too long to arrive\n",
            ),
            false,
        ),
        // Gone: nothing to answer.
        Err(HeadError::Io) => return,
    };
    // The client may have gone away, or not taken the response in time; nothing to do about it.
    if write_all_before(&mut stream, &reply, Instant::now() + limits.response).is_err() {
        return;
    }
    // Answered: the first to make room for a new connection while it lingers.
    let _answered = Waiting::add_answered(waiting, &stream);
    linger(&mut stream, Instant::now() + limits.linger);
}

/// A lingering close: closing with unread bytes (a request body, pipelined requests) would
/// reset the connection, and the client could lose the response. Once the response is on its
/// way, reads what is left until the client closes, [`MAX_LINGER_BYTES`] have come, or
/// `deadline`, whichever is first.
fn linger(stream: &mut TcpStream, deadline: Instant) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut left = MAX_LINGER_BYTES;
    while left > 0 {
        match read_before(stream, &mut sink, deadline) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

/// How long a connection is read after its response, in all, before it is closed.
const LINGER: Duration = Duration::from_secs(1);
/// The most bytes read after a response, before the connection is closed.
const MAX_LINGER_BYTES: usize = MAX_REQUEST_HEAD * 4;

/// The time limits of one connection ([`Limits::DEFAULT`] but in tests).
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// From the accept to the end of the request head.
    request: Duration,
    /// From the response being ready to the last byte of it handed to the kernel.
    response: Duration,
    /// Reading what comes after the response, in all.
    linger: Duration,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        request: CONNECTION_TIMEOUT,
        response: CONNECTION_TIMEOUT,
        linger: LINGER,
    };
}

/// Why a request head could not be read.
enum HeadError {
    TooLarge,
    TimedOut,
    Io,
}

/// Reads up to the end of the request head (`\r\n\r\n`), at most [`MAX_REQUEST_HEAD`] bytes,
/// all of it before `deadline`.
/// `started` is called once, when the first bytes have come.
fn read_request_head(
    stream: &mut TcpStream,
    deadline: Instant,
    started: impl FnOnce(),
) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let mut started = Some(started);
    loop {
        let n = read_before(stream, &mut chunk, deadline).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => HeadError::TimedOut,
            _ => HeadError::Io,
        })?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        if let Some(started) = started.take() {
            started();
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// One `read`, waiting no later than `deadline`; an error of kind `TimedOut` once it has
/// passed.
fn read_before(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        stream.set_read_timeout(Some(time_left(deadline)?))?;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::ErrorKind::TimedOut.into())
            }
            read => return read,
        }
    }
}

/// Writes all of `bytes`, giving up at `deadline` with an error of kind `TimedOut`: a client
/// that takes its response a little at a time is not waited for past it.
fn write_all_before(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(time_left(deadline)?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::ErrorKind::TimedOut.into())
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The time until `deadline` (never zero, which a socket timeout refuses), or an error of
/// kind `TimedOut` once it has passed.
fn time_left(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| io::ErrorKind::TimedOut.into())
}

/// What the routes need of a request.
struct Request {
    method: String,
    target: String,
    accept: Option<String>,
}

/// Parses a request line (`METHOD target HTTP/1.x`) and finds the `Accept` header.
fn parse_request(head: &[u8]) -> Option<Request> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let accept = one_list(lines.filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("accept")
            .then(|| value.trim())
    }));
    Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        accept,
    })
}

/// The bytes of an HTTP/1.1 response (no body for `HEAD`, with the `GET` body's length).
fn encode_response(response: &AdminResponse, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    if let Some(allow) = response.allow {
        out.push_str("Allow: ");
        out.push_str(allow);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(response.body.as_bytes());
    }
    out
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

// === axum ===

/// The admin routes (`/metrics`, `/health`, `/config`) as an [`axum::Router`][Router] to merge
/// or nest into the application's own server, so it needs no second port (feature `axum`).
///
/// The routes answer exactly as [`respond`] does, also when nested under a prefix
/// (`Router::new().nest("/admin", router(…))` serves `/admin/metrics`).
///
/// ```
/// use std::sync::Arc;
/// use tracing_offload::OffloadLayer;
///
/// let (_layer, guard) = OffloadLayer::builder().build()?;
/// let app: axum::Router = axum::Router::new()
///     .nest("/admin", tracing_offload::admin::router(Arc::new(guard.handle())));
/// # drop(app);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [Router]: https://docs.rs/axum/0.8/axum/struct.Router.html
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub fn router<S>(source: Arc<dyn AdminSource>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::routing::any;
    let route = |path: &'static str| {
        let source = Arc::clone(&source);
        any(
            move |method: axum::http::Method, headers: axum::http::HeaderMap| {
                let source = Arc::clone(&source);
                async move {
                    let accept = one_list(
                        headers
                            .get_all(axum::http::header::ACCEPT)
                            .iter()
                            .filter_map(|v| v.to_str().ok()),
                    );
                    into_axum(respond(&*source, method.as_str(), path, accept.as_deref()))
                }
            },
        )
    };
    axum::Router::new()
        .route("/metrics", route("/metrics"))
        .route("/health", route("/health"))
        .route("/config", route("/config"))
}

#[cfg(feature = "axum")]
fn into_axum(r: AdminResponse) -> axum::response::Response {
    use axum::http::{header, HeaderValue, StatusCode};
    let mut response = axum::response::Response::new(axum::body::Body::from(r.body));
    *response.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    if let Some(allow) = r.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static WAKE_FAILS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Whether the wake-up connection is to fail (as a firewall on loopback makes it).
    pub(super) fn wake_fails() -> bool {
        WAKE_FAILS.with(|f| f.get())
    }

    /// A stopped server no longer holds its address, even when no connection can reach it to
    /// wake its accepting thread: the address used to stay bound, its connections queued and
    /// never answered, until the next connection came.
    #[test]
    fn a_stopped_server_releases_its_address_when_no_connection_can_wake_it() {
        let mut server =
            AdminServer::start("127.0.0.1:0", Arc::new(Fake { running: true })).unwrap();
        let addr = server.local_addr();
        WAKE_FAILS.with(|f| f.set(true));
        server.stop();
        WAKE_FAILS.with(|f| f.set(false));
        let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
        assert!(connected.is_err(), "the address is still served after stop");
        assert!(
            TcpListener::bind(addr).is_ok(),
            "the address is still bound"
        );
    }

    #[test]
    fn connections_silent_for_a_while_make_room_before_those_whose_request_has_begun() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pairs: Vec<(TcpStream, TcpStream)> = (0..3)
            .map(|_| {
                let client = TcpStream::connect(addr).unwrap();
                (client, listener.accept().unwrap().0)
            })
            .collect();
        let waiting = Arc::new(Waiting::default());
        let tickets: Vec<WaitingTicket> = pairs
            .iter()
            .map(|(_, server)| Waiting::add(&waiting, server).unwrap())
            .collect();
        // The oldest has begun to send its request; the two younger ones have sent nothing,
        // the first of them for longer than the grace, the second not (it may just not have
        // been read yet).
        tickets[0].started();
        waiting.lock().connections[0].since -= SILENT_GRACE;
        let ids = |list: &VecDeque<Held>| -> Vec<u64> { list.iter().map(|h| h.id).collect() };
        let closed_client = |i: usize| {
            let mut client = &pairs[i].0;
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            matches!(client.read(&mut [0u8; 8]), Ok(0) | Err(_))
        };
        assert!(waiting.close_oldest());
        assert!(
            closed_client(1),
            "the connection silent for longer than the grace is closed first"
        );
        {
            let queue = waiting.lock();
            assert_eq!(ids(&queue.connections), [tickets[2].id]);
            assert_eq!(ids(&queue.started), [tickets[0].id]);
        }
        assert!(waiting.close_oldest());
        assert!(closed_client(0), "then the one whose request had begun");
        assert!(waiting.close_oldest());
        assert!(closed_client(2), "then the one just accepted");
        assert!(!waiting.close_oldest(), "none left");
        drop(tickets);
        let queue = waiting.lock();
        assert!(queue.connections.is_empty() && queue.started.is_empty());
    }
    use crate::health::HealthMonitor;
    use crate::stats::tests_support::sample_stats;

    struct Fake {
        running: bool,
    }

    impl AdminSource for Fake {
        fn stats(&self) -> Stats {
            sample_stats()
        }
        fn health(&self) -> Health {
            let mut s = sample_stats();
            s.sinks[0].failing_for = None;
            HealthMonitor::default().check(&s, self.running)
        }
        fn config_json(&self) -> String {
            r#"{"capacity":1024}"#.into()
        }
    }

    #[test]
    fn an_address_that_does_not_parse_is_said_to_be_invalid_not_busy() {
        for addr in ["http://127.0.0.1:9464", "127.0.0.1", "127.0.0.1:99999"] {
            let err = AdminServer::start(addr, Arc::new(Fake { running: true }))
                .err()
                .unwrap_or_else(|| panic!("{addr} started"));
            assert!(
                matches!(err, AdminError::InvalidAddress { .. }),
                "{addr}: {err:?}"
            );
            assert!(!err.to_string().contains("pick a free port"), "{err}");
        }
    }

    #[test]
    fn routes_status_codes_and_content_types() {
        let f = Fake { running: true };
        let r = respond(&f, "GET", "/metrics", None);
        assert_eq!((r.status, r.content_type), (200, PROMETHEUS_CONTENT_TYPE));
        let r = respond(&f, "GET", "/health?verbose=1", None);
        assert_eq!((r.status, r.content_type), (200, JSON_CONTENT_TYPE));
        let r = respond(&f, "GET", "/config", None);
        assert_eq!(r.body, r#"{"capacity":1024}"#);
        assert_eq!(respond(&f, "GET", "/nope", None).status, 404);
        assert_eq!(respond(&f, "GET", "", None).status, 404);
        let r = respond(&f, "POST", "/metrics", None);
        assert_eq!((r.status, r.allow), (405, Some(ALLOWED_METHODS)));
        let r = respond(&f, "HEAD", "/metrics", None);
        assert_eq!((r.status, r.content_type), (200, PROMETHEUS_CONTENT_TYPE));
        assert!(!r.body.is_empty());
    }

    #[test]
    fn a_target_names_its_path_in_every_form_http_allows() {
        for (target, path) in [
            ("/health", "/health"),
            ("/health?x=%2F#f", "/health"),
            ("http://h:1/health", "/health"),
            ("HTTPS://h/metrics?q", "/metrics"),
            ("http://h", "/"),
            ("/%68e%61lt%68", "/health"),
            ("/%7e%2d%2E", "/~-."),
            ("/a%2Fb", "/a%2Fb"),
            ("/%zz%4", "/%zz%4"),
            ("/é%41", "/éA"),
            ("ftp://h/health", "ftp://h/health"),
        ] {
            assert_eq!(route_path(target), path, "{target}");
        }
    }

    #[test]
    fn unhealthy_is_503() {
        let r = respond(&Fake { running: false }, "GET", "/health", None);
        assert_eq!(r.status, 503);
        assert!(r.body.contains("\"unhealthy\""));
    }

    #[test]
    fn openmetrics_is_served_when_asked_for() {
        let f = Fake { running: true };
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let r = respond(&f, "GET", "/metrics", Some(prom));
        assert_eq!(r.content_type, OPENMETRICS_CONTENT_TYPE);
        assert!(r.body.ends_with("# EOF\n"));
        for accept in ["text/plain", "*/*", "application/openmetrics-text; q=0", ""] {
            let r = respond(&f, "GET", "/metrics", Some(accept));
            assert_eq!(r.content_type, PROMETHEUS_CONTENT_TYPE, "{accept}");
        }
    }

    #[test]
    fn qvalues_are_parsed_as_rfc_9110_writes_them() {
        for (q, thousandths) in [
            ("0", 0),
            ("0.", 0),
            ("0.0", 0),
            ("0.000", 0),
            ("0.001", 1),
            ("0.5", 500),
            ("0.75", 750),
            ("0.999", 999),
            ("1", 1000),
            ("1.", 1000),
            ("1.000", 1000),
        ] {
            assert_eq!(parse_qvalue(q), Some(thousandths), "{q}");
        }
        for q in [
            "", ".", ".5", "00", "0.0000", "1.001", "1.5", "2", "-0", "+1", "0,5", "0.a", "1e0",
            "\"0\"", "0 .5", "\u{e9}", "0.\u{e9}",
        ] {
            assert_eq!(parse_qvalue(q), None, "{q:?}");
        }
    }

    #[test]
    fn accept_is_split_outside_quoted_strings() {
        let parts = |s, sep| split_unquoted(s, sep).collect::<Vec<_>>();
        assert_eq!(parts("", b','), [""]);
        assert_eq!(parts("a,b,", b','), ["a", "b", ""]);
        assert_eq!(parts(r#"a;x="1,2";q=0,b"#, b','), [r#"a;x="1,2";q=0"#, "b"]);
        assert_eq!(
            parts(r#"a;x="\";q=1";q=0"#, b';'),
            ["a", r#"x="\";q=1""#, "q=0"]
        );
        // An unclosed quote runs to the end, and nothing panics.
        assert_eq!(parts(r#"a;x="1,2"#, b','), [r#"a;x="1,2"#]);
        assert_eq!(parts("\u{e9},\u{e9}", b','), ["\u{e9}", "\u{e9}"]);
    }

    #[test]
    fn a_zero_or_malformed_weight_refuses_openmetrics() {
        let om = |accept| wants_openmetrics(Some(accept));
        for refused in [
            "application/openmetrics-text;q=0.0",
            "application/openmetrics-text; Q = 0.00",
            "application/openmetrics-text;q=0.5x",
            r#"application/openmetrics-text;v="a,b";q=0"#,
        ] {
            assert!(!om(refused), "{refused}");
        }
        for wanted in [
            "application/openmetrics-text;q=0.001",
            "application/openmetrics-text;version=1.0.0",
            "text/plain, application/openmetrics-text;q=1.",
        ] {
            assert!(om(wanted), "{wanted}");
        }
        assert!(!wants_openmetrics(None));
    }

    /// A source whose `/config` is `len` bytes long.
    struct LongConfig(usize);

    impl AdminSource for LongConfig {
        fn stats(&self) -> Stats {
            sample_stats()
        }
        fn health(&self) -> Health {
            Fake { running: true }.health()
        }
        fn config_json(&self) -> String {
            "x".repeat(self.0)
        }
    }

    /// Serves one connection with `limits` on a thread of its own; returns the client's end
    /// and that thread.
    fn serve_one(source: impl AdminSource, limits: Limits) -> (TcpStream, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let serving = thread::spawn(move || {
            serve_connection(
                server,
                Instant::now(),
                None,
                &Arc::default(),
                &source,
                limits,
            )
        });
        (client, serving)
    }

    #[test]
    fn a_client_taking_its_response_slowly_is_given_up_at_the_deadline() {
        let limits = Limits {
            request: Duration::from_millis(300),
            response: Duration::from_millis(300),
            linger: Duration::from_millis(100),
        };
        // Far more than the socket buffers hold, so that writing it waits for the client.
        let (mut client, serving) = serve_one(LongConfig(32 << 20), limits);
        client.write_all(b"GET /config HTTP/1.1\r\n\r\n").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                // Always taking a little, so that no single write waits long.
                let mut buf = [0u8; 4096];
                let mut read = 0;
                while !stop.load(Ordering::Relaxed) {
                    match client.read(&mut buf) {
                        Ok(n) if n > 0 => read += n,
                        _ => break,
                    }
                    thread::park_timeout(Duration::from_millis(1));
                }
                read
            }
        });
        let start = Instant::now();
        while !serving.is_finished() && start.elapsed() < Duration::from_secs(3) {
            thread::park_timeout(Duration::from_millis(5));
        }
        let finished = serving.is_finished();
        stop.store(true, Ordering::Relaxed);
        let read = reader.join().unwrap();
        assert!(
            finished,
            "the connection was still being written to after {:?} ({read} bytes read)",
            start.elapsed()
        );
        assert!(read < 32 << 20, "the client read the whole response");
    }

    #[test]
    fn binding_a_taken_address_names_it() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = AdminServer::start(addr.as_str(), Arc::new(Fake { running: true })).unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
