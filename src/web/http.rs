//! The HTTP/1.1 server under `serve`: hyper on a tokio runtime that only `serve` starts. hyper
//! reads and frames every request (a head of at most 16 KiB and 100 fields, else 431; two
//! lengths, a signed length, or a length with `Transfer-Encoding`, else 400; keep-alive and
//! pipelining); this module only sets its limits, keeps one client from holding every
//! connection, reads a body of at most 16 KiB, and hands each request to the synchronous
//! workers of `web/mod.rs`, whose answer goes back as one response on a `TCP_NODELAY` socket.
//!
//! Fairness: connections are counted per peer address (all of loopback is one peer) and in
//! total. A new connection over either cap closes the connection of that peer (or, over the
//! total, of the peer holding most) that has waited longest without a request in flight — a
//! flood of half-sent heads only ever evicts its own oldest sockets, and a probe that sends its
//! request at once is answered. An idle connection costs a task and hyper's read buffer, not a
//! thread.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, mpsc, oneshot};

/// Larger request heads are refused (431) as soon as they pass this size.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// More header fields than this are refused (431).
pub const MAX_FIELDS: usize = 100;
/// Largest request body (a form or JSON for an action); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A request head must arrive whole within this time of the connection opening or of the
/// previous response (then the connection closes); a body within this time of its head (408).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
/// Open connections of one peer address (all of loopback counts as one) before its oldest
/// idle one is closed for a new one.
pub const PEER_CONNECTIONS: usize = 64;
/// Open connections in all before the busiest peer's oldest idle one is closed.
pub const MAX_CONNECTIONS: usize = 1024;
/// How many connections that sent nothing yet may wait per connection counted.
const WAITING_PER_OPEN: usize = 8;
/// Threads of the runtime that reads and writes the connections (the answers are computed by
/// the workers of `web/mod.rs`).
const IO_THREADS: usize = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other(String),
}

impl Method {
    fn parse(m: &hyper::Method) -> Method {
        match m.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            other => Method::Other(other.to_string()),
        }
    }
}

/// A response as a worker gives it back.
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

/// One request, read whole; answered once with [`Request::respond`]. A request dropped
/// without an answer is answered 500, so its client never waits for nothing.
pub struct Request {
    pub method: Method,
    /// The path and query (`/api/activities?plan=crm`), whatever form the target came in.
    pub url: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    answer: Option<oneshot::Sender<Answer>>,
}

impl Request {
    /// The first field of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sends the response: status, fields, body (left out for HEAD, with the length it has).
    pub fn respond(mut self, status: u16, fields: &[(&str, String)], body: &[u8]) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(Answer {
                status,
                fields: fields
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .collect(),
                body: body.to_vec(),
            });
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(Answer {
                status: 500,
                fields: vec![("Content-Type".into(), TEXT.into())],
                body: b"error: the request was not answered\n".to_vec(),
            });
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

type Response = hyper::Response<Full<Bytes>>;

/// The response of an answer. A field whose name or value is not valid HTTP (a line break in
/// a value) is left out, never split into two fields.
fn response(a: Answer) -> Response {
    let mut r = hyper::Response::new(Full::new(Bytes::from(a.body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(a.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in a.fields {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    r
}

/// A refusal in plain text that closes the connection (what follows may not be a request).
fn refusal(status: u16, text: &str) -> Response {
    let mut r = response(Answer {
        status,
        fields: vec![("Content-Type".into(), TEXT.into())],
        body: format!("{text}\n").into_bytes(),
    });
    r.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Where requests go: actions (`POST /api/actions/…`, which may run for long and wait for
/// the apply lock) have workers of their own, so the page, `/healthz` and `/metrics` never
/// queue behind them. A full lane makes the connection wait (backpressure), not a thread.
#[derive(Clone)]
pub struct Lanes {
    pub requests: mpsc::Sender<Request>,
    pub actions: mpsc::Sender<Request>,
}

impl Lanes {
    fn lane(&self, method: &Method, url: &str) -> &mpsc::Sender<Request> {
        match (method, url.starts_with("/api/actions/")) {
            (Method::Post, true) => &self.actions,
            _ => &self.requests,
        }
    }
}

/// Reads what hyper framed into a [`Request`], hands it to a worker and waits for the answer.
async fn handle(req: hyper::Request<Incoming>, lanes: Lanes) -> Result<Response, Infallible> {
    let method = Method::parse(req.method());
    // Origin form `/a?b`, absolute form `http://host/a?b` (its authority is the Host), or `*`.
    let url = match req.uri().path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => pq.as_str().to_string(),
        Some(pq) if req.uri().authority().is_some() => format!("/{}", pq.as_str()),
        Some(pq) => pq.as_str().to_string(),
        None => "/".to_string(),
    };
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if let Some(authority) = req.uri().authority() {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
        headers.push(("host".into(), authority.as_str().to_string()));
    }
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if req.version() == hyper::Version::HTTP_11 && !has("host") {
        return Ok(refusal(400, "an HTTP/1.1 request needs a Host field"));
    }
    if has("transfer-encoding") {
        return Ok(refusal(411, "send the body with a Content-Length"));
    }
    let length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    if length > MAX_BODY_BYTES as u64 {
        return Ok(refusal(413, "the request body is larger than 16 KiB"));
    }
    let body = if length == 0 {
        Vec::new()
    } else {
        let read = Limited::new(req.into_body(), MAX_BODY_BYTES).collect();
        match tokio::time::timeout(HEAD_TIMEOUT, read).await {
            Ok(Ok(b)) => b.to_bytes().to_vec(),
            Ok(Err(_)) => return Ok(refusal(400, "the request body did not arrive whole")),
            Err(_) => return Ok(refusal(408, "the request body did not arrive in time")),
        }
    };
    let (answer, answered) = oneshot::channel();
    let request = Request {
        method,
        url,
        headers,
        body,
        answer: Some(answer),
    };
    let lane = lanes.lane(&request.method, &request.url).clone();
    if lane.send(request).await.is_err() {
        return Ok(refusal(503, "the server is shutting down"));
    }
    Ok(match answered.await {
        Ok(a) => response(a),
        Err(_) => refusal(500, "the request was not answered"),
    })
}

/// Who a connection counts against: its address, or one peer for all of loopback.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Peer {
    Loopback,
    Address(IpAddr),
}

impl Peer {
    fn of(addr: &SocketAddr) -> Peer {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if ip.is_loopback() {
            Peer::Loopback
        } else {
            Peer::Address(ip)
        }
    }
}

/// One connection that sent its first bytes: whether a request is in flight, when it last
/// did something, and how to close it.
struct Open {
    peer: Peer,
    /// Its socket, to see whether a request waits in it unread (never to read it).
    fd: std::os::fd::RawFd,
    busy: Arc<AtomicUsize>,
    /// Whether anything was ever read from it.
    seen: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    close: Arc<Notify>,
}

/// A connection accepted that has not sent anything yet.
struct Waiting {
    peer: Peer,
    fd: std::os::fd::RawFd,
    since: u64,
    close: Arc<Notify>,
}

/// The connections, per peer and in all. A connection counts once it has sent its first
/// bytes: until then it waits apart (as many again, the oldest of a peer going first), so a
/// request already in its socket is never pushed out by connections accepted after it but
/// read before it.
struct Registry {
    started: Instant,
    next: u64,
    open: HashMap<u64, Open>,
    waiting: HashMap<u64, Waiting>,
    peer_cap: usize,
    total_cap: usize,
}

/// A connection let in: its in-flight counter, whether it was ever read, when it last did
/// something, what closes it.
type Admitted = (
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
    Arc<AtomicU64>,
    Arc<Notify>,
);

impl Registry {
    fn new(peer_cap: usize, total_cap: usize) -> Registry {
        Registry {
            started: Instant::now(),
            next: 0,
            open: HashMap::new(),
            waiting: HashMap::new(),
            peer_cap: peer_cap.max(1),
            total_cap: total_cap.max(1),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A connection just accepted, waiting for its first bytes: its id and what closes it.
    /// Over the caps of waiting ones, the peer's (or the busiest peer's) oldest goes.
    fn accept(&mut self, peer: Peer, fd: std::os::fd::RawFd) -> (u64, Arc<Notify>) {
        let of_peer =
            |w: &HashMap<u64, Waiting>, p: Peer| w.values().filter(|x| x.peer == p).count();
        // Waiting costs a socket and a small task, no buffer: eight times as many may wait,
        // so a request whose bytes are still on their way is not pushed out by a burst.
        if of_peer(&self.waiting, peer) >= self.peer_cap * WAITING_PER_OPEN {
            self.drop_waiting(peer);
        }
        if self.waiting.len() >= self.total_cap * WAITING_PER_OPEN
            && let Some(p) = busiest(self.waiting.values().map(|w| w.peer))
        {
            self.drop_waiting(p);
        }
        let id = self.next;
        self.next += 1;
        let close = Arc::new(Notify::new());
        self.waiting.insert(
            id,
            Waiting {
                peer,
                fd,
                since: self.now(),
                close: Arc::clone(&close),
            },
        );
        (id, close)
    }

    /// Closes the oldest waiting connection of `peer` that still sent nothing (one whose
    /// bytes arrived meanwhile is about to be admitted, and stays).
    fn drop_waiting(&mut self, peer: Peer) {
        let mut of_peer: Vec<(u64, u64, std::os::fd::RawFd)> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.peer == peer)
            .map(|(id, w)| (w.since, *id, w.fd))
            .collect();
        of_peer.sort_unstable();
        let oldest = of_peer
            .iter()
            .find(|(_, _, fd)| !unread(*fd))
            .map(|(_, id, _)| *id);
        if let Some(w) = oldest.and_then(|id| self.waiting.remove(&id)) {
            w.close.notify_one();
        }
    }

    /// The waiting connection `id` sent its first bytes: it counts from now on. Makes room by
    /// closing the longest idle connection of its peer (over the total: of the peer holding
    /// most); `None` when every one that would have to go has a request in flight, or when
    /// it was closed meanwhile.
    fn admit(&mut self, id: u64, fd: std::os::fd::RawFd) -> Option<Admitted> {
        let w = self.waiting.remove(&id)?;
        let peer = w.peer;
        if self.open.values().filter(|o| o.peer == peer).count() >= self.peer_cap {
            self.evict(peer)?;
        }
        if self.open.len() >= self.total_cap {
            let p = busiest(self.open.values().map(|o| o.peer))?;
            self.evict(p)?;
        }
        let open = Open {
            peer,
            fd,
            busy: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(AtomicBool::new(false)),
            last: Arc::new(AtomicU64::new(self.now())),
            close: w.close,
        };
        let handles = (
            Arc::clone(&open.busy),
            Arc::clone(&open.seen),
            Arc::clone(&open.last),
            Arc::clone(&open.close),
        );
        self.open.insert(id, open);
        Some(handles)
    }

    /// Closes the connection of `peer` idle the longest — never one with a request in flight.
    /// Those with nothing waiting in their socket go first; then those read before whose
    /// socket holds more (a head trickling in); last those never read with bytes waiting: a
    /// request that arrived whole, whose task has not run yet under a flood of accepts.
    fn evict(&mut self, peer: Peer) -> Option<()> {
        let victim = self
            .open
            .iter()
            .filter(|(_, o)| o.peer == peer && o.busy.load(Ordering::SeqCst) == 0)
            .map(|(id, o)| {
                let rank = match (unread(o.fd), o.seen.load(Ordering::SeqCst)) {
                    (false, _) => 0,
                    (true, true) => 1,
                    (true, false) => 2,
                };
                (rank, o.last.load(Ordering::SeqCst), *id)
            })
            .min()
            .map(|(_, _, id)| id)?;
        if let Some(o) = self.open.remove(&victim) {
            o.close.notify_one();
        }
        Some(())
    }

    fn remove(&mut self, id: u64) {
        self.open.remove(&id);
        self.waiting.remove(&id);
    }
}

/// Whether bytes wait unread in the socket `fd` (a peek: nothing is taken from it).
fn unread(fd: std::os::fd::RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local buffer; an fd that is no longer a socket fails.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

/// The peer with the most connections.
fn busiest(peers: impl Iterator<Item = Peer>) -> Option<Peer> {
    let mut counts: HashMap<Peer, usize> = HashMap::new();
    for p in peers {
        *counts.entry(p).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(p, _)| p)
}

/// A response body that keeps its connection marked in flight until hyper drops it, once the
/// body is written.
struct Guarded {
    body: Full<Bytes>,
    _in_flight: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Marks a connection busy while a request is in flight, and active when it ends.
struct InFlight {
    busy: Arc<AtomicUsize>,
    last: Arc<AtomicU64>,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::SeqCst);
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The limits of a server: connections per peer and in all.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub peer_connections: usize,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            peer_connections: PEER_CONNECTIONS,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `listener` for ever on a runtime of its own, handing requests to `lanes`. An accept
/// error (EMFILE while descriptors are exhausted) waits a little and tries again, and says so
/// at most every ten seconds.
pub fn serve(listener: std::net::TcpListener, lanes: Lanes, limits: Limits) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(IO_THREADS)
        .thread_name("serve-http")
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(accept_loop(listener, lanes, limits))
}

async fn accept_loop(
    listener: std::net::TcpListener,
    lanes: Lanes,
    limits: Limits,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    // A longer queue of connections not yet accepted than the standard library's 128: a
    // flood must not fill it before the loop closes its sockets (listen again only resizes).
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `listen` on a socket this function owns; it only changes the backlog.
        unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    }
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let registry = Arc::new(Mutex::new(Registry::new(
        limits.peer_connections,
        limits.max_connections,
    )));
    // The clock of every connection's `last` (the registry's own).
    let started = lock(&registry).started;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_FIELDS)
        // The smallest read buffer hyper takes: a head larger than 16 KiB is refused anyway.
        .max_buf_size(MAX_HEAD_BYTES + 8 * 1024)
        // `Content-Type`, as clients and the tests of before read them.
        .title_case_headers(true)
        .keep_alive(true);
    let http = Arc::new(http);
    // Connections accepted whose task has not read yet: the accept loop waits while there are
    // fewer free than half a peer's cap, so a request just accepted is read before enough
    // later connections arrive to make it the longest idle.
    let unread_tasks = Arc::new(tokio::sync::Semaphore::new(
        (limits.peer_connections / 2).max(1),
    ));
    let mut said = Instant::now() - Duration::from_secs(60);
    loop {
        let Ok(ticket) = Arc::clone(&unread_tasks).acquire_owned().await else {
            return Ok(());
        };
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    if said.elapsed() >= Duration::from_secs(10) {
                        eprintln!("serve: cannot accept a connection ({e}); trying again");
                        said = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        use std::os::fd::AsRawFd;
        let fd = stream.as_raw_fd();
        let _ = stream.set_nodelay(true);
        // A connection whose request is already in its socket counts at once, and what it
        // sent is taken now and handed to hyper first: its task then needs no wake-up from
        // the reactor (which lags behind a flood of accepts) to see its request. A silent one
        // waits apart until it sends something.
        let early = take_waiting(fd);
        let (id, close, at_once) = {
            let mut r = lock(&registry);
            let (id, close) = r.accept(Peer::of(&addr), fd);
            let at_once = (!early.is_empty()).then(|| r.admit(id, fd));
            (id, close, at_once)
        };
        let (http, lanes, registry) = (Arc::clone(&http), lanes.clone(), Arc::clone(&registry));
        let mut ticket = Some(ticket);
        tokio::spawn(async move {
            let admitted = match at_once {
                Some(a) => a,
                None => {
                    // Silent: it waits apart, and holds up no accept.
                    drop(ticket.take());
                    let sent = tokio::select! {
                        r = stream.readable() => r.is_ok(),
                        _ = tokio::time::sleep(HEAD_TIMEOUT) => false,
                        _ = close.notified() => false,
                    };
                    if sent {
                        lock(&registry).admit(id, fd)
                    } else {
                        None
                    }
                }
            };
            if let Some((busy, seen, last, close)) = admitted {
                let service = service_fn(move |req| {
                    busy.fetch_add(1, Ordering::SeqCst);
                    let guard = InFlight {
                        busy: Arc::clone(&busy),
                        last: Arc::clone(&last),
                        started,
                    };
                    let lanes = lanes.clone();
                    async move {
                        // In flight until hyper has taken the whole body to write it.
                        let r = handle(req, lanes).await;
                        r.map(|res| {
                            res.map(|body| Guarded {
                                body,
                                _in_flight: guard,
                            })
                        })
                    }
                });
                seen.store(!early.is_empty(), Ordering::Relaxed);
                let io = TokioIo::new(Seen {
                    inner: stream,
                    early,
                    seen,
                    ticket: ticket.take(),
                });
                let connection = http.serve_connection(io, service);
                tokio::select! {
                    _ = connection => {}
                    _ = close.notified() => {}
                }
            }
            lock(&registry).remove(id);
        });
    }
}

/// What a socket already holds when it is accepted (at most 16 KiB), taken without waiting.
fn take_waiting(fd: std::os::fd::RawFd) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    // SAFETY: a non-blocking read into a buffer of that length, owned here.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    buf.truncate(n.max(0) as usize);
    buf.shrink_to_fit();
    buf
}

/// A socket that hands out first what was taken from it at accept, and says whether anything
/// was read from it (for eviction, never for parsing).
struct Seen {
    inner: tokio::net::TcpStream,
    early: Vec<u8>,
    seen: Arc<AtomicBool>,
    /// Given back at the first read: the accept loop may go on.
    ticket: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl tokio::io::AsyncRead for Seen {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.ticket = None;
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early[..n]);
            self.early.drain(..n);
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.seen.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl tokio::io::AsyncWrite for Seen {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn lock(r: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts and admits a connection of `peer`.
    fn open(r: &mut Registry, peer: Peer) -> (u64, Admitted) {
        let (id, _) = r.accept(peer, -1);
        // No socket behind -1: nothing is ever unread in it.
        (id, r.admit(id, -1).expect("admitted"))
    }

    #[test]
    fn a_full_peer_gives_up_its_longest_idle_connection_and_never_a_busy_one() {
        let mut r = Registry::new(2, 3);
        let a = Peer::Loopback;
        let b = Peer::Address("192.0.2.1".parse().unwrap());
        let (first, (busy1, _, last1, _)) = open(&mut r, a);
        let (second, (_, _, last2, close2)) = open(&mut r, a);
        last1.store(10, Ordering::SeqCst);
        last2.store(5, Ordering::SeqCst);
        // The third of peer a closes its longest idle: the second (active at 5).
        let (third, _) = open(&mut r, a);
        assert!(r.open.contains_key(&first) && !r.open.contains_key(&second));
        drop(close2);
        // With the first busy, the third is the one to go.
        busy1.fetch_add(1, Ordering::SeqCst);
        let (fourth, _) = open(&mut r, a);
        assert!(r.open.contains_key(&first), "a busy connection was closed");
        assert!(!r.open.contains_key(&third) && r.open.contains_key(&fourth));
        // Over the total, the busiest peer (a) gives way to peer b.
        open(&mut r, b);
        assert_eq!(r.open.len(), 3);
        open(&mut r, b);
        assert!(!r.open.contains_key(&fourth) && r.open.contains_key(&first));
        // Nothing idle to give: refused.
        let mut full = Registry::new(1, 10);
        let (_, (busy, _, _, _)) = open(&mut full, a);
        busy.fetch_add(1, Ordering::SeqCst);
        let (id, _) = full.accept(a, -1);
        assert!(full.admit(id, -1).is_none());
    }

    #[test]
    fn connections_that_sent_nothing_wait_apart_and_never_push_out_a_request() {
        let mut r = Registry::new(2, 10);
        let a = Peer::Loopback;
        // A connection, then more silent ones than may wait.
        let (probe, _) = r.accept(a, -1);
        for _ in 0..2 * WAITING_PER_OPEN {
            r.accept(a, -1);
        }
        // Silent ones over the cap closed the oldest waiting: the probe, which has not sent.
        assert!(!r.waiting.contains_key(&probe));
        // Admitted connections are not pushed out by waiting ones.
        let mut r = Registry::new(2, 10);
        let (one, _) = open(&mut r, a);
        let (two, _) = open(&mut r, a);
        for _ in 0..3 * WAITING_PER_OPEN {
            r.accept(a, -1);
        }
        assert!(r.open.contains_key(&one) && r.open.contains_key(&two));
        assert_eq!(r.waiting.len(), 2 * WAITING_PER_OPEN);
    }

    #[test]
    fn all_of_loopback_is_one_peer() {
        let p = |s: &str| Peer::of(&s.parse().unwrap());
        assert_eq!(p("127.0.0.1:1"), Peer::Loopback);
        assert_eq!(p("127.0.0.2:1"), Peer::Loopback);
        assert_eq!(p("[::1]:1"), Peer::Loopback);
        assert_eq!(p("[::ffff:127.0.0.1]:1"), Peer::Loopback);
        assert_eq!(
            p("[::ffff:192.0.2.7]:1"),
            Peer::Address("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn a_field_hyper_cannot_write_is_left_out() {
        let r = response(Answer {
            status: 200,
            fields: vec![
                ("X-A".into(), "b".into()),
                ("X-B".into(), "b\r\nSet-Cookie: x".into()),
            ],
            body: b"hello".to_vec(),
        });
        assert_eq!(r.headers()["x-a"], "b");
        assert!(r.headers().get("x-b").is_none());
        assert!(r.headers().get("set-cookie").is_none());
    }
}
